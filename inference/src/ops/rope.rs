//! `rope`: rotary position embedding with fixed-point cos/sin tables.

use super::RopePairing;
use super::fixed_point::round_shift_i64;
use crate::error::Result;
use crate::tensor::{DType, Tensor};

/// `rope` (spec: `docs/ops.md`).
#[allow(clippy::too_many_arguments)]
pub fn rope(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    x_zp: i32,
    y_zp: i32,
    position_offset: u32,
    frac_bits: u32,
    pairing: RopePairing,
    out: DType,
) -> Result<Tensor> {
    let cos = cos.as_i32("rope cos")?;
    let sin = sin.as_i32("rope sin")?;
    let shape = x.shape();
    let r = shape.len();
    let (s, d) = (shape[r - 2], shape[r - 1]);
    let half = d / 2;
    let xs = x.to_i64_vec();
    let (lo, hi) = (out.min(), out.max());
    let mut values = vec![0i64; xs.len()];
    for (row, (xr, yr)) in xs
        .chunks(d.max(1))
        .zip(values.chunks_mut(d.max(1)))
        .enumerate()
    {
        if d == 0 {
            break;
        }
        let pos = position_offset as usize + row % s;
        for i in 0..half {
            let (ia, ib) = match pairing {
                RopePairing::Half => (i, i + half),
                RopePairing::Interleaved => (2 * i, 2 * i + 1),
            };
            let (c, sn) = (cos[pos * half + i] as i64, sin[pos * half + i] as i64);
            let (a, b) = (xr[ia] - x_zp as i64, xr[ib] - x_zp as i64);
            // |a|, |b| < 2^17 and |c|, |sn| <= 2^31: each term < 2^48.
            yr[ia] = (y_zp as i64 + round_shift_i64(a * c - b * sn, frac_bits)).clamp(lo, hi);
            yr[ib] = (y_zp as i64 + round_shift_i64(b * c + a * sn, frac_bits)).clamp(lo, hi);
        }
    }
    Ok(Tensor::from_values(out, shape.to_vec(), values))
}
