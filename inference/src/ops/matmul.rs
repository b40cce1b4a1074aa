//! `fully_connected` and `batch_matmul`: int8 products through [`crate::gemm`], then the
//! fixed-point requantization, written straight into the output dtype.

use super::fixed_point::{
    Element, Isa, RoundShift, for_each_rows, round_shift_parts, vectorized, with_dtype,
};
use super::layout::transpose_2d;
use super::{OpKind, check_shifts, rows_of};
use crate::error::{Error, Result};
use crate::gemm::{self, PackedMatrix};
use crate::tensor::{DType, Tensor};
use rayon::prelude::*;
use std::cell::Cell;

/// Most accumulators (4 MiB) a thread keeps for its next `fully_connected`.
const MAX_KEPT_ACC: usize = 1 << 20;
/// Multiply-adds from which the batches of a `batch_matmul` go to several threads (the
/// attention products of an 18-token sentence, 12 heads of 18 x 18 x 32, are above it).
const PARALLEL_MIN_MACS: usize = 1 << 16;

/// The requantization of each output column `j`:
/// `y = sat(y_zp + round_shift(wrap32(acc + offset[j] + row offset) * m[j], s[j]))`,
/// held as columns so that the loop over a row vectorizes.
#[derive(Clone)]
struct Epilogue {
    offset: Vec<i32>,
    multiplier: Vec<i32>,
    half: Vec<i64>,
    neg: Vec<i64>,
    shift: Vec<i64>,
    /// The multiplier and rounding when they are the same for every column (per-tensor
    /// quantization): the loop then loads only the accumulators and offsets.
    uniform: Option<(i32, RoundShift)>,
    y_zero_point: i64,
}

impl Epilogue {
    /// From per-column offsets, multipliers and shifts (each shift `0..=62`).
    fn new(offset: Vec<i32>, multiplier: Vec<i32>, shifts: &[u32], y_zero_point: i32) -> Self {
        let rounding: Vec<RoundShift> = shifts.iter().map(|&s| RoundShift::new(s)).collect();
        let uniform = match (multiplier.first(), shifts.first()) {
            (Some(&m), Some(&s))
                if multiplier.iter().all(|&v| v == m) && shifts.iter().all(|&v| v == s) =>
            {
                Some((m, RoundShift::new(s)))
            }
            _ => None,
        };
        Self {
            uniform,
            offset,
            multiplier,
            half: rounding.iter().map(|r| r.half).collect(),
            neg: rounding.iter().map(|r| r.neg).collect(),
            shift: rounding.iter().map(|r| r.shift).collect(),
            y_zero_point: y_zero_point as i64,
        }
    }

    /// One row: `acc` accumulators (wrapping `i32`) into `dst`, with `row_offset` added to
    /// every accumulator (wrapping).
    #[inline(always)]
    fn row<T: Element>(&self, acc: &[i32], row_offset: i32, dst: &mut [T]) {
        let n = dst.len();
        let (acc, offset, mult) = (&acc[..n], &self.offset[..n], &self.multiplier[..n]);
        if let Some((m, rounding)) = self.uniform {
            for j in 0..n {
                let a = acc[j].wrapping_add(offset[j]).wrapping_add(row_offset);
                // As below.
                let r = rounding.apply(a as i64 * m as i64);
                dst[j] = T::sat(self.y_zero_point + r);
            }
            return;
        }
        let (half, neg, shift) = (&self.half[..n], &self.neg[..n], &self.shift[..n]);
        for j in 0..n {
            let a = acc[j].wrapping_add(offset[j]).wrapping_add(row_offset);
            // |a|, |m| <= 2^31: |a * m| <= 2^62, where `round_shift_parts` is exact.
            let v = a as i64 * mult[j] as i64;
            let r = round_shift_parts(v, half[j], neg[j], shift[j]);
            dst[j] = T::sat(self.y_zero_point + r);
        }
    }
}

vectorized! {
    /// Rows of `acc` (`dst.len() / n` of them) into `dst`, row `i` with `row_offsets[i]`
    /// (or 0) added.
    fn requantize_rows<T: Element>(
        epilogue: &Epilogue,
        acc: &[i32],
        row_offsets: Option<&[i32]>,
        dst: &mut [T],
    ) {
        let n = epilogue.offset.len();
        for (i, (d, a)) in dst.chunks_exact_mut(n).zip(acc.chunks_exact(n)).enumerate() {
            epilogue.row(a, row_offsets.map_or(0, |r| r[i]), d);
        }
    }
}

/// `fully_connected` (spec: `docs/ops.md`). `packed`, when given, must be `w` packed.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected(
    x: &Tensor,
    w: &Tensor,
    packed: Option<&PackedMatrix>,
    bias: &Tensor,
    multiplier: &Tensor,
    shift: &Tensor,
    x_zero_point: i32,
    y_zero_point: i32,
    out: DType,
) -> Result<Tensor> {
    let part = FcPart {
        x,
        bias,
        multiplier,
        shift,
        x_zero_point,
        y_zero_point,
        out,
        epilogue: None,
    };
    let mut ys = fully_connected_shared(w, packed, &[part])?;
    Ok(ys.pop().expect("one part, one output"))
}

/// The requantization of one `fully_connected`: its bias, multipliers and shifts against
/// its weight matrix's row sums and its zero points. When those are all weights it can be
/// built once at load and handed to every run ([`FcPart::epilogue`]) instead of rebuilt
/// for each product.
#[derive(Clone)]
pub struct FcEpilogue(Epilogue);

impl std::fmt::Debug for FcEpilogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcEpilogue")
            .field("n", &self.0.offset.len())
            .finish_non_exhaustive()
    }
}

impl FcEpilogue {
    /// The requantization of a `fully_connected` by `packed` (its weight matrix, packed)
    /// with these operands and zero points. Errors as the op does on a bias, multiplier or
    /// shift that is not `[N]` of `i32`, or a shift outside `0..=62`.
    pub fn new(
        packed: &PackedMatrix,
        bias: &Tensor,
        multiplier: &Tensor,
        shift: &Tensor,
        x_zero_point: i32,
        y_zero_point: i32,
    ) -> Result<Self> {
        for (what, t) in [("bias", bias), ("multiplier", multiplier), ("shift", shift)] {
            if t.shape() != [packed.n()] {
                return Err(Error::Shape(format!(
                    "fully_connected: {what} must be [{}], got {:?}",
                    packed.n(),
                    t.shape()
                )));
            }
        }
        let bias = bias.as_i32("fully_connected bias")?;
        let mult = multiplier.as_i32("fully_connected multiplier")?;
        let shift = shift.as_i32("fully_connected shift")?;
        check_shifts(OpKind::FullyConnected, shift)?;
        // acc = bias + sum (x - zx) w = bias + sum x w - zx * rowsum(w), all wrapping.
        let offset = packed
            .row_sums()
            .iter()
            .zip(bias)
            .map(|(&rs, &b)| b.wrapping_sub(x_zero_point.wrapping_mul(rs)))
            .collect();
        // check_shifts: every shift is in 0..=62.
        let shifts: Vec<u32> = shift.iter().map(|&s| s as u32).collect();
        Ok(Self(Epilogue::new(
            offset,
            mult.to_vec(),
            &shifts,
            y_zero_point,
        )))
    }
}

/// The operands and parameters of one `fully_connected` other than its weight matrix.
#[derive(Clone, Copy, Debug)]
pub struct FcPart<'a> {
    /// `x`: `i8 [.., K]`.
    pub x: &'a Tensor,
    /// `bias`: `i32 [N]`.
    pub bias: &'a Tensor,
    /// `multiplier`: `i32 [N]`.
    pub multiplier: &'a Tensor,
    /// `shift`: `i32 [N]`.
    pub shift: &'a Tensor,
    /// The op's `x_zero_point`.
    pub x_zero_point: i32,
    /// The op's `y_zero_point`.
    pub y_zero_point: i32,
    /// The output dtype.
    pub out: DType,
    /// This part's requantization built ahead ([`FcEpilogue::new`] of this part's bias,
    /// multiplier, shift and zero points against the product's weight matrix), or `None`
    /// to build it for this product.
    pub epilogue: Option<&'a FcEpilogue>,
}

/// Several `fully_connected` ops by the same weight matrix `w`, each with its own input,
/// bias, requantization and output dtype, as one matrix product over their stacked rows:
/// `w` streams through the cache once, and a product of more rows runs closer to the
/// machine's peak. Output `i` is bit for bit `fully_connected` of part `i` (the product is
/// exact and each row's sum is independent of the others). `packed`, when given, must be
/// `w` packed.
pub fn fully_connected_shared(
    w: &Tensor,
    packed: Option<&PackedMatrix>,
    parts: &[FcPart<'_>],
) -> Result<Vec<Tensor>> {
    stacked_product(w, packed, parts, |packed, acc, row_counts| {
        let n = packed.n();
        let isa = Isa::detect();
        let mut first_row = 0;
        let mut ys = Vec::with_capacity(parts.len());
        for (p, &part_rows) in parts.iter().zip(row_counts) {
            let mut built = None;
            let epilogue = part_epilogue(packed, p, &mut built)?;
            let acc = &acc[first_row * n..(first_row + part_rows) * n];
            first_row += part_rows;
            let data = with_dtype!(p.out, T => {
                let mut y = vec![T::default(); part_rows * n];
                for_each_rows(&mut y, n, n, |first, dst| {
                    let acc = &acc[first * n..first * n + dst.len()];
                    requantize_rows(isa, epilogue, acc, None, dst);
                });
                T::into_data(y)
            });
            let mut shape = p.x.shape().to_vec();
            if let Some(last) = shape.last_mut() {
                *last = n;
            }
            ys.push(Tensor::new(shape, data)?);
        }
        Ok(ys)
    })
}

/// `add(fully_connected(a), fully_connected(b))` for two `fully_connected` parts by the
/// same weight matrix with `i32` outputs of the same shape (the two halves of a split
/// 16-bit input, say) and the `add` parameters `p = [a_zp, a_m, b_zp, b_m]`, `shift`,
/// `y_zp`: bit for bit the three ops, without the two `i32` tensors between them (each row
/// of them lives in a small buffer while the `add` reads it).
pub(crate) fn fully_connected_pair_add(
    w: &Tensor,
    packed: Option<&PackedMatrix>,
    parts: [FcPart<'_>; 2],
    (p, shift, y_zp): ([i32; 4], u32, i32),
    out: DType,
) -> Result<Tensor> {
    let [a, b] = &parts;
    if a.x.shape() != b.x.shape() || a.out != DType::I32 || b.out != DType::I32 {
        return Err(Error::Param(
            "a fused pair of fully_connected ops takes inputs of one shape and gives i32".into(),
        ));
    }
    stacked_product(w, packed, &parts, |packed, acc, row_counts| {
        let (n, rows) = (packed.n(), row_counts[0]);
        let (mut built_a, mut built_b) = (None, None);
        let ea = part_epilogue(packed, a, &mut built_a)?;
        let eb = part_epilogue(packed, b, &mut built_b)?;
        let (acc_a, acc_b) = acc.split_at(rows * n);
        let isa = Isa::detect();
        let data = with_dtype!(out, Y => {
            let mut y = vec![Y::default(); rows * n];
            // Per element: two requantizations and an add.
            for_each_rows(&mut y, n, 3 * n, |first, block| {
                let (mut ya, mut yb) = (vec![0i32; n], vec![0i32; n]);
                for (r, dst) in block.chunks_exact_mut(n).enumerate() {
                    let at = (first + r) * n..(first + r + 1) * n;
                    requantize_rows(isa, ea, &acc_a[at.clone()], None, &mut ya);
                    requantize_rows(isa, eb, &acc_b[at], None, &mut yb);
                    super::pointwise::add_into(isa, &ya, &yb, p, shift, y_zp, dst);
                }
            });
            Y::into_data(y)
        });
        let mut shape = a.x.shape().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        Tensor::new(shape, data)
    })
}

/// The epilogue of `p`: its prepared one, or one built into `built`.
fn part_epilogue<'e>(
    packed: &PackedMatrix,
    p: &'e FcPart<'_>,
    built: &'e mut Option<FcEpilogue>,
) -> Result<&'e Epilogue> {
    if let Some(e) = p.epilogue
        && e.0.offset.len() == packed.n()
    {
        return Ok(&e.0);
    }
    let e = FcEpilogue::new(
        packed,
        p.bias,
        p.multiplier,
        p.shift,
        p.x_zero_point,
        p.y_zero_point,
    )?;
    Ok(&built.insert(e).0)
}

/// The product of `w` with the stacked inputs of `parts`, handed to `f` as the packed
/// matrix, the accumulators (`rows × n`, wrapping `i32`, the parts' rows in order) and each
/// part's row count.
fn stacked_product<R>(
    w: &Tensor,
    packed: Option<&PackedMatrix>,
    parts: &[FcPart<'_>],
    f: impl FnOnce(&PackedMatrix, &[i32], &[usize]) -> Result<R>,
) -> Result<R> {
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let owned;
    let packed = match packed {
        Some(p) if p.n() == n && p.k() == k => p,
        _ => {
            owned = PackedMatrix::pack(w.as_i8("fully_connected w")?, n, k);
            &owned
        }
    };
    let row_counts: Vec<usize> = parts.iter().map(|p| rows_of(p.x.shape()).0).collect();
    let rows: usize = row_counts.iter().sum();
    let stacked;
    let xs: &[i8] = match parts {
        [one] => one.x.as_i8("fully_connected x")?,
        _ => {
            let mut all = Vec::with_capacity(rows * k);
            for p in parts {
                all.extend_from_slice(p.x.as_i8("fully_connected x")?);
            }
            stacked = all;
            &stacked
        }
    };
    // The accumulators live in a buffer this thread keeps between products: `matmul`
    // writes every value, so a buffer of the right length needs no zeroing (taken out while
    // in use, so a product this thread runs meanwhile, stolen work, gets a buffer of its
    // own).
    let mut scratch = ACC.with(Cell::take);
    if scratch.len() < rows * n {
        scratch = vec![0i32; rows * n];
    }
    let acc = &mut scratch[..rows * n];
    gemm::matmul(xs, rows, packed, acc);
    let result = f(packed, acc, &row_counts);
    if scratch.len() <= MAX_KEPT_ACC {
        ACC.with(|c| c.set(scratch));
    }
    result
}

thread_local! {
    /// [`fully_connected_shared`]'s accumulators, kept for the next product on this thread.
    static ACC: Cell<Vec<i32>> = const { Cell::new(Vec::new()) };
}

/// `batch_matmul` (spec: `docs/ops.md`).
#[allow(clippy::too_many_arguments)]
pub fn batch_matmul(
    a: &Tensor,
    b: &Tensor,
    transpose_b: bool,
    a_zero_point: i32,
    b_zero_point: i32,
    multiplier: i32,
    shift: u32,
    y_zero_point: i32,
    out: DType,
) -> Result<Tensor> {
    let av = a.as_i8("batch_matmul a")?;
    let bv = b.as_i8("batch_matmul b")?;
    let (ba, m, k) = (a.shape()[0], a.shape()[1], a.shape()[2]);
    let bb = b.shape()[0];
    let n = if transpose_b {
        b.shape()[1]
    } else {
        b.shape()[2]
    };
    let group = ba / bb;
    // The `group` batches of `a` that share batch `j` of `b` are contiguous: one product of
    // `group * m` rows per batch of `b`, writing a contiguous block of the output.
    let rows = group * m;
    let kz = (k as i32)
        .wrapping_mul(a_zero_point)
        .wrapping_mul(b_zero_point);
    let isa = Isa::detect();
    let shifts = vec![shift; n];
    // The accumulators of batch `j` of `b`, with their epilogue and row offsets.
    let product = |j: usize| {
        let src = &bv[j * k * n..(j + 1) * k * n];
        let pack = if transpose_b {
            PackedMatrix::pack(src, n, k)
        } else {
            let mut t = vec![0i8; k * n];
            transpose_2d(src, k, n, &mut t);
            PackedMatrix::pack(&t, n, k)
        };
        let x = &av[j * rows * k..(j + 1) * rows * k];
        let mut acc = vec![0i32; rows * n];
        gemm::matmul(x, rows, &pack, &mut acc);
        // sum (a - za)(b - zb) = sum ab - za sum_k b - zb sum_k a + K za zb, wrapping.
        let offset = pack
            .row_sums()
            .iter()
            .map(|&cs| kz.wrapping_sub(a_zero_point.wrapping_mul(cs)))
            .collect();
        let epilogue = Epilogue::new(offset, vec![multiplier; n], &shifts, y_zero_point);
        // -zb * sum_k a per row (none when zb or K is 0).
        let row_offsets = (b_zero_point != 0 && k > 0).then(|| {
            let mut sums = row_sums(isa, x, k);
            for s in &mut sums {
                *s = b_zero_point.wrapping_mul(*s).wrapping_neg();
            }
            sums
        });
        (acc, epilogue, row_offsets)
    };
    let data = with_dtype!(out, T => {
        let mut y = vec![T::default(); ba * m * n];
        let per_batch = |(j, dst): (usize, &mut [T])| {
            let (acc, epilogue, row_offsets) = product(j);
            // Rows split further when one batch is large (e.g. a single batch of b).
            for_each_rows(dst, n, n, |first, block| {
                let acc = &acc[first * n..first * n + block.len()];
                let offsets = row_offsets.as_deref().map(|r| &r[first..]);
                requantize_rows(isa, &epilogue, acc, offsets, block);
            });
        };
        if !y.is_empty() {
            if bb > 1
                && ba * m * n * k >= PARALLEL_MIN_MACS
                && crate::row_parallel::kernel_threads() > 1
            {
                y.par_chunks_mut(rows * n).enumerate().for_each(per_batch);
            } else {
                y.chunks_mut(rows * n).enumerate().for_each(per_batch);
            }
        }
        T::into_data(y)
    });
    Tensor::new(vec![ba, m, n], data)
}

vectorized! {
    /// The wrapping `i32` sum of each row of `k > 0` bytes.
    fn row_sums(x: &[i8], k: usize) -> Vec<i32> {
        x.chunks_exact(k)
            .map(|row| row.iter().fold(0i32, |s, &v| s.wrapping_add(v as i32)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixed_point::round_shift;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(super::super::fixed_point::test_config(256))]

        /// The requantization on every vector path against the spec in `i128`, per-channel
        /// and uniform parameters, with extreme accumulators.
        #[test]
        fn requantization_paths_agree(
            acc in proptest::collection::vec(any::<i32>(), 1..200),
            params in proptest::collection::vec((any::<i32>(), any::<i32>(), 0u32..=62), 1..40),
            uniform in any::<bool>(), row_offset in any::<i32>(), y_zp in any::<i8>(),
        ) {
            let n = params.len();
            let rows = acc.len() / n;
            prop_assume!(rows > 0);
            let acc = &acc[..rows * n];
            let pick = |j: usize| if uniform { params[0] } else { params[j] };
            let offset: Vec<i32> = (0..n).map(|j| pick(j).0).collect();
            let mult: Vec<i32> = (0..n).map(|j| pick(j).1).collect();
            let shifts: Vec<u32> = (0..n).map(|j| pick(j).2).collect();
            let epilogue = Epilogue::new(offset.clone(), mult.clone(), &shifts, y_zp as i32);
            prop_assert_eq!(epilogue.uniform.is_some(), uniform || n == 1 || params.iter().all(|p| (p.1, p.2) == (params[0].1, params[0].2)));
            let offsets = vec![row_offset; rows];
            for isa in Isa::available() {
                let mut y = vec![0i16; rows * n];
                requantize_rows(isa, &epilogue, acc, Some(&offsets), &mut y);
                for (i, &got) in y.iter().enumerate() {
                    let j = i % n;
                    let a = acc[i].wrapping_add(offset[j]).wrapping_add(row_offset) as i128;
                    let want = DType::I16.saturate(y_zp as i128 + round_shift(a * mult[j] as i128, shifts[j]));
                    prop_assert_eq!(got as i64, want, "{:?} element {}", isa, i);
                }
            }
        }
    }
}
