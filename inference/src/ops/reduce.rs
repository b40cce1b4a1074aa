//! Reductions: masked `mean_pool` and `argmax`.

use super::fixed_point::{
    Element, Isa, for_each_rows, round_div, vectorized, with_dtype, with_elements,
};
use super::rows_of;
use crate::error::Result;
use crate::tensor::{DType, Tensor};

/// `mean_pool` (spec: `docs/ops.md`): the masked mean over the last axis of `x [B, D, S]`
/// (the sequence axis last, so that one output's operands are one contiguous run of `x`).
pub fn mean_pool(
    x: &Tensor,
    mask: &Tensor,
    x_zp: i32,
    frac_bits: u32,
    y_zp: i32,
    out: DType,
) -> Result<Tensor> {
    let (b, d, s) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let keep: Vec<i64> = with_elements!(mask, v => v.iter().map(|&m| i64::from(m != 0)).collect());
    let isa = Isa::detect();
    let data = with_elements!(x, xs => with_dtype!(out, Y => {
        let mut y = vec![Y::default(); b * d];
        for_each_rows(&mut y, d, d * s, |first, block| {
            for (i, dst) in block.chunks_exact_mut(d).enumerate() {
                let bi = first + i;
                let rows = &xs[bi * d * s..(bi + 1) * d * s];
                pool(isa, rows, &keep[bi * s..(bi + 1) * s], x_zp, frac_bits, y_zp, dst);
            }
        });
        Y::into_data(y)
    }));
    Tensor::new(vec![b, d], data)
}

/// One batch: `rows` is `D x S`, `keep` the `S` mask values (0 or 1), `dst` the `D` outputs.
fn pool<X: Element, Y: Element>(
    isa: Isa,
    rows: &[X],
    keep: &[i64],
    x_zp: i32,
    frac_bits: u32,
    y_zp: i32,
    dst: &mut [Y],
) {
    let s = keep.len();
    let count = keep.iter().sum::<i64>();
    if count == 0 {
        dst.fill(Y::sat(y_zp as i64));
        return;
    }
    let (c, zp) = (count as i128, x_zp as i128);
    for (y, row) in dst.iter_mut().zip(rows.chunks_exact(s)) {
        // Blocks of 2^31 elements of |x| <= 2^31 sum exactly in i64.
        let sum: i128 = row
            .chunks(1 << 31)
            .zip(keep.chunks(1 << 31))
            .map(|(r, k)| masked_sum(isa, r, k) as i128)
            .sum();
        // |sum - C zp| <= C 2^32 < 2^96 and 2^frac_bits <= 2^30: below 2^127.
        let v = round_div((sum - c * zp) << frac_bits, c);
        *y = Y::sat_wide(y_zp as i128 + v);
    }
}

vectorized! {
    /// `sum row[i] keep[i]` (`keep` is 0 or 1; at most 2^31 elements, so no overflow).
    fn masked_sum<X: Element>(row: &[X], keep: &[i64]) -> i64 {
        row.iter().zip(keep).map(|(&v, &k)| v.to_i64() * k).sum()
    }
}

/// `argmax` over the last axis: the first index of the maximum, as `i32`.
pub fn argmax(x: &Tensor) -> Result<Tensor> {
    let (rows, n) = rows_of(x.shape());
    let isa = Isa::detect();
    let data = with_elements!(x, xs => {
        let mut y = vec![0i32; rows];
        for_each_rows(&mut y, 1, n, |first, block| {
            for (i, dst) in block.iter_mut().enumerate() {
                let r = first + i;
                *dst = first_max(isa, &xs[r * n..(r + 1) * n]);
            }
        });
        y
    });
    Tensor::from_i32(x.shape()[..x.shape().len() - 1].to_vec(), data)
}

vectorized! {
    /// The first index of the maximum of a non-empty row (`N >= 1`, checked by
    /// `Op::check`; the output is `i32` by the spec).
    fn first_max<X: Element>(row: &[X]) -> i32 {
        // Two vectorized passes: the maximum, then the first block of 64 holding it; only
        // that block is searched element by element.
        const BLOCK: usize = 64;
        let max = row.iter().fold(X::MIN, |m, &v| m.max(v.to_i64()));
        let block = row
            .chunks(BLOCK)
            .position(|c| c.iter().fold(false, |hit, &v| hit | (v.to_i64() == max)))
            .unwrap_or(0);
        let offset = row[block * BLOCK..]
            .iter()
            .position(|&v| v.to_i64() == max)
            .unwrap_or(0);
        (block * BLOCK + offset) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(super::super::fixed_point::test_config(256))]

        #[test]
        fn vector_paths_agree(row in proptest::collection::vec(-3i16..3, 1..300)) {
            let max = *row.iter().max().unwrap();
            let want = row.iter().position(|&v| v == max).unwrap() as i32;
            for isa in Isa::available() {
                prop_assert_eq!(first_max(isa, &row), want, "{:?}", isa);
                let keep: Vec<i64> = row.iter().map(|&v| i64::from(v > 0)).collect();
                let want: i64 = row.iter().filter(|&&v| v > 0).map(|&v| v as i64).sum();
                prop_assert_eq!(masked_sum(isa, &row, &keep), want, "{:?}", isa);
            }
        }
    }
}
