//! `softmax` over the last axis through an exp table and exact integer division, and its
//! two halves `softmax_exp` (the table entries) and `softmax_norm` (the division).

use super::fixed_point::{
    Element, FloorDiv, Isa, for_each_rows, vectorized, with_dtype, with_elements,
};
use crate::error::Result;
use crate::tensor::{DType, Tensor};
use std::borrow::Cow;

/// `softmax` (spec: `docs/ops.md`).
pub fn softmax(
    x: &Tensor,
    exp_table: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
    frac_bits: u32,
    y_zp: i32,
    out: DType,
) -> Result<Tensor> {
    let params = (causal, frac_bits, y_zp, out);
    softmax_with(Isa::detect(), x, exp_table, mask, params)
}

/// [`softmax`] on the given vector path.
fn softmax_with(
    isa: Isa,
    x: &Tensor,
    exp_table: &Tensor,
    mask: Option<&Tensor>,
    (causal, frac_bits, y_zp, out): (bool, u32, i32, DType),
) -> Result<Tensor> {
    let table = clamped_table(exp_table)?;
    let keep = keep_rows(mask);
    let rows = Rows::new(x, &table, mask, keep.as_deref(), causal, isa);
    let norm = Norm {
        frac_bits,
        y_zp: y_zp as i64,
    };
    let n = rows.n;
    let data = with_elements!(x, xs => with_dtype!(out, Y => {
        let mut y = vec![Y::default(); xs.len()];
        // Per element: a compare, a table load, a division.
        for_each_rows(&mut y, n, 8 * n, |first, block| {
            let x = &xs[first * n..first * n + block.len()];
            softmax_rows(isa, &rows, &norm, first, x, block);
        });
        Y::into_data(y)
    }));
    Tensor::new(x.shape().to_vec(), data)
}

/// `softmax_exp` (spec: `docs/ops.md`): the `e[c]` of [`softmax`] as `i32`.
pub fn softmax_exp(
    x: &Tensor,
    exp_table: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
) -> Result<Tensor> {
    softmax_exp_with(Isa::detect(), x, exp_table, mask, causal)
}

/// [`softmax_exp`] on the given vector path.
fn softmax_exp_with(
    isa: Isa,
    x: &Tensor,
    exp_table: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
) -> Result<Tensor> {
    let table = clamped_table(exp_table)?;
    let keep = keep_rows(mask);
    let rows = Rows::new(x, &table, mask, keep.as_deref(), causal, isa);
    let n = rows.n;
    let data = with_elements!(x, xs => {
        let mut y = vec![0i32; xs.len()];
        // Per element: a compare and a table load.
        for_each_rows(&mut y, n, 4 * n, |first, block| {
            let x = &xs[first * n..first * n + block.len()];
            exp_rows(isa, &rows, first, x, block);
        });
        i32::into_data(y)
    });
    Tensor::new(x.shape().to_vec(), data)
}

/// `softmax_norm` (spec: `docs/ops.md`): each row of `e` (negative entries read as 0)
/// divided by its sum as [`softmax`] divides.
pub fn softmax_norm(e: &Tensor, frac_bits: u32, y_zp: i32, out: DType) -> Result<Tensor> {
    let es = e.as_i32("softmax_norm e")?;
    let n = e.shape()[e.shape().len() - 1];
    let norm = Norm {
        frac_bits,
        y_zp: y_zp as i64,
    };
    let data = with_dtype!(out, Y => {
        let mut y = vec![Y::default(); es.len()];
        // Per element: a division.
        for_each_rows(&mut y, n, 4 * n, |first, block| {
            let mut scratch = vec![0u32; n];
            let e = &es[first * n..first * n + block.len()];
            for (e, dst) in e.chunks_exact(n).zip(block.chunks_exact_mut(n)) {
                for (s, &v) in scratch.iter_mut().zip(e) {
                    *s = v.max(0) as u32;
                }
                norm.row(&scratch, dst);
            }
        });
        Y::into_data(y)
    });
    Tensor::new(e.shape().to_vec(), data)
}

/// The exp table with negative entries read as 0 (spec): clamped once, so the rows index a
/// table of entries in `[0, 2^31)` (a copy only when some entry is negative).
fn clamped_table(exp_table: &Tensor) -> Result<Cow<'_, [i32]>> {
    let table = exp_table.as_i32("softmax exp_table")?;
    Ok(if table.iter().any(|&e| e < 0) {
        Cow::Owned(table.iter().map(|&e| e.max(0)).collect())
    } else {
        Cow::Borrowed(table)
    })
}

/// Which columns each mask row keeps (all ones) or drops (0), once for all the rows that
/// share it.
fn keep_rows(mask: Option<&Tensor>) -> Option<Vec<i32>> {
    mask.map(|mk| with_elements!(mk, v => v.iter().map(|&e| -i32::from(e != 0)).collect()))
}

vectorized! {
    /// Rows `first..` of the `L x M` rows.
    fn softmax_rows<X: Element, Y: Element>(rows: &Rows, norm: &Norm, first: usize, x: &[X], dst: &mut [Y]) {
        let n = rows.n;
        let mut e = vec![0u32; n];
        for (i, (x, dst)) in x.chunks_exact(n).zip(dst.chunks_exact_mut(n)).enumerate() {
            match rows.exps(first + i, x, &mut e) {
                Some(width) => norm.row(&e[..width], dst),
                None => dst.fill(Y::sat(norm.y_zp)),
            }
        }
    }
}

vectorized! {
    /// Rows `first..` of the `L x M` rows of `softmax_exp`.
    fn exp_rows<X: Element>(rows: &Rows, first: usize, x: &[X], dst: &mut [i32]) {
        let n = rows.n;
        let mut e = vec![0u32; n];
        for (i, (x, dst)) in x.chunks_exact(n).zip(dst.chunks_exact_mut(n)).enumerate() {
            let width = rows.exps(first + i, x, &mut e).unwrap_or(0);
            // Entries of the clamped table are in [0, 2^31).
            for (y, &v) in dst.iter_mut().zip(&e[..width]) {
                *y = v as i32;
            }
            dst[width..].fill(0);
        }
    }
}

/// What every row needs.
struct Rows<'a> {
    n: usize,
    m: usize,
    group: usize,
    /// `G x N`: -1 where the mask keeps a column, 0 where it drops it.
    keep: Option<&'a [i32]>,
    causal: bool,
    table: &'a [i32],
    /// The vector path, for the table lookups.
    isa: Isa,
}

/// The division of a row of `e` by its sum.
struct Norm {
    frac_bits: u32,
    y_zp: i64,
}

impl<'a> Rows<'a> {
    fn new(
        x: &Tensor,
        table: &'a [i32],
        mask: Option<&Tensor>,
        keep: Option<&'a [i32]>,
        causal: bool,
        isa: Isa,
    ) -> Self {
        let shape = x.shape();
        let r = shape.len();
        let l: usize = shape[..r.saturating_sub(2)].iter().product();
        Self {
            n: shape[r - 1],
            m: if r >= 2 { shape[r - 2] } else { 1 },
            group: mask.map_or(1, |mk| l / mk.shape()[0]),
            keep,
            causal,
            table,
            isa,
        }
    }

    /// Row `row` of the `L x M` rows: `e[c]` (0 for a dropped column) of its first `width`
    /// columns, every later one past the causal limit (e = 0), and `Some(width)`; `None`
    /// when no column is kept. `e` is scratch of `N`.
    #[inline(always)]
    fn exps<X: Element>(&self, row: usize, x: &[X], e: &mut [u32]) -> Option<usize> {
        let n = self.n;
        let (li, ri) = (row / self.m, row % self.m);
        // Causal: column c is kept when c + M <= r + N, i.e. c < r + N + 1 - M.
        let width = if self.causal {
            (ri + n + 1).saturating_sub(self.m).min(n)
        } else {
            n
        };
        let (x, e) = (&x[..width], &mut e[..width]);
        // x is i8 or i16: i32::MIN marks "nothing kept".
        let max = match self.keep {
            None => x.iter().fold(i32::MIN, |mx, &v| mx.max(v.to_i32())),
            Some(k) => {
                let k = &k[(li / self.group) * n..][..width];
                let max = x.iter().zip(k).fold(i32::MIN, |mx, (&v, &kp)| {
                    mx.max((v.to_i32() & kp) | (i32::MIN & !kp))
                });
                self.exp(x, max, e);
                for (e, &kp) in e.iter_mut().zip(k) {
                    *e &= kp as u32;
                }
                max
            }
        };
        if max == i32::MIN {
            return None;
        }
        if self.keep.is_none() {
            self.exp(x, max, e);
        }
        Some(width)
    }

    /// `e[c] = table[min(max - x[c], T - 1)]` (masking is the caller's; the table is
    /// already clamped at 0).
    #[inline(always)]
    fn exp<X: Element>(&self, x: &[X], max: i32, e: &mut [u32]) {
        // T <= 2^32 entries: an i32 table that big would not be indexed by u32 otherwise.
        let last = u32::try_from(self.table.len() - 1).unwrap_or(u32::MAX);
        for (e, &v) in e.iter_mut().zip(x) {
            // For a kept column max - x is in [0, 2^16) (i8, i16 x); a dropped one may be
            // negative: wrapped to a large index, clamped, and masked afterwards.
            *e = (max.wrapping_sub(v.to_i32()) as u32).min(last);
        }
        lookup(self.isa, self.table, e);
    }
}

impl Norm {
    /// `dst[c] = sat(y_zp + floor((e[c] 2^f + floor(S / 2)) / S))` for the `e` of a row's
    /// first columns (`S` their sum; the rest of `dst`, whose `e` is 0, gets
    /// `floor((S / 2) / S) = 0`); all `y_zp` when `S = 0`.
    #[inline(always)]
    fn row<Y: Element>(&self, e: &[u32], dst: &mut [Y]) {
        let fill = Y::sat(self.y_zp);
        // e < 2^31, N entries: the sum fits in u64 for any row that fits in memory.
        let sum: u64 = e.iter().map(|&v| v as u64).sum();
        if sum == 0 {
            dst.fill(fill);
            return;
        }
        let half = sum / 2;
        let (head, tail) = dst.split_at_mut(e.len());
        tail.fill(fill);
        if sum < FloorDiv::MAX_OPERAND {
            // n = e 2^f + S/2 < 2^61 + 2^61 and n / S <= 2^f + 1 (e <= S): FloorDiv is exact.
            let div = FloorDiv::new(sum);
            for (y, &ej) in head.iter_mut().zip(e) {
                let p = div.div(((ej as u64) << self.frac_bits) + half);
                *y = Y::sat(self.y_zp + p as i64);
            }
        } else {
            for (y, &ej) in head.iter_mut().zip(e) {
                let p = (((ej as u128) << self.frac_bits) + half as u128) / sum as u128;
                *y = Y::sat(self.y_zp + p as i64);
            }
        }
    }
}

/// `e[c] = table[e[c]]`, every index below `table.len()`.
#[inline(always)]
fn lookup(isa: Isa, table: &[i32], e: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && isa.is_supported() {
        // SAFETY: AVX-512 F is there (checked just now); the indices are in the table
        // (the caller clamps them to T - 1).
        unsafe { gather::lookup(table, e) };
        return;
    }
    let _ = isa;
    for v in e.iter_mut() {
        *v = table[*v as usize] as u32;
    }
}

#[cfg(target_arch = "x86_64")]
mod gather {
    use std::arch::x86_64::*;

    /// [`super::lookup`] with `vpgatherdd`, 16 entries at a time (the auto-vectorizer does
    /// not emit gathers for the baseline x86-64 tuning).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F; every `e[c] < table.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn lookup(table: &[i32], e: &mut [u32]) {
        let mut chunks = e.chunks_exact_mut(16);
        for chunk in &mut chunks {
            // SAFETY: 16 indices in `chunk`, each inside `table` (the caller's promise).
            unsafe {
                let idx = _mm512_loadu_si512(chunk.as_ptr().cast());
                let v = _mm512_i32gather_epi32::<4>(idx, table.as_ptr());
                _mm512_storeu_si512(chunk.as_mut_ptr().cast(), v);
            }
        }
        for v in chunks.into_remainder() {
            *v = table[*v as usize] as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Op, reference};
    use super::*;
    use crate::tensor::TensorType;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(super::super::fixed_point::test_config(128))]

        /// Long rows and large tables (the property tests of the crate use short ones),
        /// on every vector path; the two halves too.
        #[test]
        fn long_rows_match_the_reference(
            seed in any::<u64>(), n in 1usize..300, causal in any::<bool>(),
            frac_bits in 0u32..=30, big in any::<bool>(),
        ) {
            let mut s = seed;
            let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); s >> 33 };
            let m = 3;
            let x = Tensor::from_i16(vec![2, m, n], (0..2 * m * n).map(|_| (next() % 600) as i16 - 300).collect()).unwrap();
            // Negative entries too: they read as 0.
            let table = Tensor::from_i32(vec![257], (0..257).map(|i| if big { i32::MAX - i } else { (next() % 1000) as i32 - 200 }).collect()).unwrap();
            let mask = Tensor::from_i8(vec![1, n], (0..n).map(|_| (next() % 5 != 0) as i8).collect()).unwrap();
            let op = Op::Softmax { causal, frac_bits, y_zero_point: -5 };
            let inputs = [&x, &table, &mask];
            let ty = TensorType::new(DType::I32, vec![2, m, n]);
            let want = reference::execute(&op, &inputs, &ty).unwrap();
            let exp = Op::SoftmaxExp { causal };
            let want_e = reference::execute(&exp, &inputs, &TensorType::new(DType::I32, vec![2, m, n])).unwrap();
            let norm = Op::SoftmaxNorm { frac_bits, y_zero_point: -5 };
            prop_assert_eq!(&reference::execute(&norm, &[&want_e], &ty).unwrap(), &want);
            prop_assert_eq!(&softmax_norm(&want_e, frac_bits, -5, DType::I32).unwrap(), &want);
            for isa in Isa::available() {
                let got = softmax_with(isa, &x, &table, Some(&mask), (causal, frac_bits, -5, DType::I32)).unwrap();
                prop_assert_eq!(&got, &want, "{:?}", isa);
                let e = softmax_exp_with(isa, &x, &table, Some(&mask), causal).unwrap();
                prop_assert_eq!(&e, &want_e, "{:?}", isa);
            }
        }
    }
}
