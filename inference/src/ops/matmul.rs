//! `fully_connected` and `batch_matmul`: int8 products through [`crate::gemm`], then the
//! fixed-point requantization.

use super::fixed_point::requantize as rq;
use super::{OpKind, check_shifts, rows_of};
use crate::error::Result;
use crate::gemm::{self, PackedMatrix};
use crate::tensor::{DType, Tensor};
use rayon::prelude::*;

/// Work (multiply-adds) below which the epilogue stays on one thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 14;

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
    let xs = x.as_i8("fully_connected x")?;
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let (rows, _) = rows_of(x.shape());
    let bias = bias.as_i32("fully_connected bias")?;
    let mult = multiplier.as_i32("fully_connected multiplier")?;
    let shift = shift.as_i32("fully_connected shift")?;
    check_shifts(OpKind::FullyConnected, shift)?;
    let owned;
    let packed = match packed {
        Some(p) if p.n() == n && p.k() == k => p,
        _ => {
            owned = PackedMatrix::pack(w.as_i8("fully_connected w")?, n, k);
            &owned
        }
    };
    let mut acc = vec![0i32; rows * n];
    gemm::matmul(xs, rows, packed, &mut acc);
    // acc = bias + sum (x - zx) w = bias + sum x w - zx * rowsum(w), all wrapping.
    let offset: Vec<i32> = packed
        .row_sums()
        .iter()
        .zip(bias)
        .map(|(&rs, &b)| b.wrapping_sub(x_zero_point.wrapping_mul(rs)))
        .collect();
    let (lo, hi) = (out.min(), out.max());
    let epilogue = |row: &[i32], dst: &mut [i64]| {
        for j in 0..n {
            let a = row[j].wrapping_add(offset[j]);
            dst[j] = (y_zero_point as i64 + rq(a, mult[j], shift[j] as u32)).clamp(lo, hi);
        }
    };
    let mut values = vec![0i64; rows * n];
    if n > 0 {
        if rows * n >= PARALLEL_MIN_ELEMENTS {
            values
                .par_chunks_mut(n)
                .zip(acc.par_chunks(n))
                .for_each(|(d, r)| epilogue(r, d));
        } else {
            values
                .chunks_mut(n)
                .zip(acc.chunks(n))
                .for_each(|(d, r)| epilogue(r, d));
        }
    }
    let mut shape = x.shape().to_vec();
    *shape.last_mut().unwrap() = n;
    Ok(Tensor::from_values(out, shape, values))
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
    let (lo, hi) = (out.min(), out.max());
    let kz = (k as i32)
        .wrapping_mul(a_zero_point)
        .wrapping_mul(b_zero_point);
    let mut values = vec![0i64; ba * m * n];
    // One packed b per batch of b, shared by the `group` batches of a that use it.
    let packs: Vec<PackedMatrix> = (0..bb)
        .map(|j| {
            let src = &bv[j * k * n..(j + 1) * k * n];
            if transpose_b {
                PackedMatrix::pack(src, n, k)
            } else {
                let mut t = vec![0i8; k * n];
                for r in 0..k {
                    for c in 0..n {
                        t[c * k + r] = src[r * n + c];
                    }
                }
                PackedMatrix::pack(&t, n, k)
            }
        })
        .collect();
    let per_batch = |i: usize, dst: &mut [i64]| {
        let pack = &packs[i / group];
        let x = &av[i * m * k..(i + 1) * m * k];
        let mut acc = vec![0i32; m * n];
        gemm::matmul(x, m, pack, &mut acc);
        // sum (a - za)(b - zb) = sum ab - za sum_k b - zb sum_k a + K za zb, wrapping.
        for r in 0..m {
            let row_a: i32 = x[r * k..(r + 1) * k]
                .iter()
                .fold(0i32, |s, &v| s.wrapping_add(v as i32));
            let ra = b_zero_point.wrapping_mul(row_a);
            for c in 0..n {
                let v = acc[r * n + c]
                    .wrapping_sub(a_zero_point.wrapping_mul(pack.row_sums()[c]))
                    .wrapping_sub(ra)
                    .wrapping_add(kz);
                dst[r * n + c] = (y_zero_point as i64 + rq(v, multiplier, shift)).clamp(lo, hi);
            }
        }
    };
    if m * n > 0 {
        if ba * m * n * k >= PARALLEL_MIN_ELEMENTS * 16 {
            values
                .par_chunks_mut(m * n)
                .enumerate()
                .for_each(|(i, d)| per_batch(i, d));
        } else {
            values
                .chunks_mut(m * n)
                .enumerate()
                .for_each(|(i, d)| per_batch(i, d));
        }
    }
    Ok(Tensor::from_values(out, vec![ba, m, n], values))
}
