//! Element-wise ops: `add`, `mul`, `requantize` and `lut`.

use super::fixed_point::{round_shift, round_shift_i64};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// Maps `f` over index `i` of the output, in parallel when large.
fn map_indexed(len: usize, f: impl Fn(usize) -> i64 + Sync + Send) -> Vec<i64> {
    if len >= PARALLEL_MIN_ELEMENTS {
        (0..len).into_par_iter().map(f).collect()
    } else {
        (0..len).map(f).collect()
    }
}

/// Whether `t`'s values are narrow enough (`i8`/`i16`) for the `i64` fast paths.
fn narrow(t: &Tensor) -> bool {
    t.dtype() != DType::I32
}

/// `add` (spec: `docs/ops.md`). Operand checks are done by [`super::Op::check`].
pub fn add(
    a: &Tensor,
    b: &Tensor,
    p: [i32; 4],
    shift: u32,
    y_zp: i32,
    out: DType,
) -> Result<Tensor> {
    let [za, ma, zb, mb] = p.map(|v| v as i64);
    let (lo, hi) = (out.min(), out.max());
    let values = if narrow(a) && narrow(b) {
        // |x - z| < 2^17 and |m| <= 2^31: each product < 2^48, the sum < 2^49.
        map_indexed(a.numel(), |i| {
            let v = (a.get(i) - za) * ma + (b.get(i) - zb) * mb;
            (y_zp as i64 + round_shift_i64(v, shift)).clamp(lo, hi)
        })
    } else {
        map_indexed(a.numel(), |i| {
            let v = (a.get(i) - za) as i128 * ma as i128 + (b.get(i) - zb) as i128 * mb as i128;
            out.saturate(y_zp as i128 + round_shift(v, shift))
        })
    };
    Ok(Tensor::from_values(out, a.shape().to_vec(), values))
}

/// `mul` (spec: `docs/ops.md`).
#[allow(clippy::too_many_arguments)]
pub fn mul(
    a: &Tensor,
    b: &Tensor,
    a_zp: i32,
    b_zp: i32,
    multiplier: i32,
    shift: u32,
    y_zp: i32,
    out: DType,
) -> Result<Tensor> {
    let (za, zb, m) = (a_zp as i128, b_zp as i128, multiplier as i128);
    let values = map_indexed(a.numel(), |i| {
        // |a - za|, |b - zb| <= 2^33 and |m| <= 2^31: the product is below 2^97.
        let v = (a.get(i) as i128 - za) * (b.get(i) as i128 - zb) * m;
        out.saturate(y_zp as i128 + round_shift(v, shift))
    });
    Ok(Tensor::from_values(out, a.shape().to_vec(), values))
}

/// `requantize` (spec: `docs/ops.md`).
pub fn requantize(
    x: &Tensor,
    x_zp: i32,
    multiplier: i32,
    shift: u32,
    y_zp: i32,
    out: DType,
) -> Result<Tensor> {
    let (lo, hi) = (out.min(), out.max());
    let values = map_indexed(x.numel(), |i| {
        // |x - z| <= 2^32 and |m| <= 2^31: below 2^63 only for i32 x near its extremes,
        // so the wide path is taken there.
        let d = x.get(i) - x_zp as i64;
        match d.checked_mul(multiplier as i64) {
            Some(v) if v.unsigned_abs() < 1 << 62 => {
                (y_zp as i64 + round_shift_i64(v, shift)).clamp(lo, hi)
            }
            _ => out.saturate(y_zp as i128 + round_shift(d as i128 * multiplier as i128, shift)),
        }
    });
    Ok(Tensor::from_values(out, x.shape().to_vec(), values))
}

/// `lut` (spec: `docs/ops.md`): `y = table[x + 128]`.
pub fn lut(x: &Tensor, table: &Tensor) -> Result<Tensor> {
    let xs = x.as_i8("lut x")?;
    if table.numel() != 256 {
        return Err(Error::Shape(format!(
            "lut: table must have 256 entries, got {}",
            table.numel()
        )));
    }
    fn gather<T: Copy + Send + Sync>(xs: &[i8], t: &[T]) -> Vec<T> {
        if xs.len() >= PARALLEL_MIN_ELEMENTS {
            xs.par_iter()
                .map(|&v| t[(v as i16 + 128) as usize])
                .collect()
        } else {
            xs.iter().map(|&v| t[(v as i16 + 128) as usize]).collect()
        }
    }
    let data = match table.data() {
        TensorData::I8(t) => TensorData::I8(gather(xs, t)),
        TensorData::I16(t) => TensorData::I16(gather(xs, t)),
        TensorData::I32(t) => TensorData::I32(gather(xs, t)),
    };
    Tensor::new(x.shape().to_vec(), data)
}
