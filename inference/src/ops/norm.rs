//! `layer_norm` and `rms_norm`: integer sums, exact integer square root, fixed-point
//! gamma and beta, one rounding.

use super::fixed_point::{isqrt, round_div, round_shift};
use crate::error::Result;
use crate::tensor::{DType, Tensor};
use rayon::prelude::*;

/// `layer_norm` (spec: `docs/ops.md`).
pub fn layer_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    epsilon: u64,
    shift: u32,
    y_zp: i32,
    out: DType,
) -> Result<Tensor> {
    let gamma = gamma.as_i32("layer_norm gamma")?;
    let beta = beta.as_i32("layer_norm beta")?;
    normalize(x, gamma, Some(beta), None, epsilon, shift, y_zp, out)
}

/// `rms_norm` (spec: `docs/ops.md`).
pub fn rms_norm(
    x: &Tensor,
    gamma: &Tensor,
    x_zp: i32,
    epsilon: u64,
    shift: u32,
    y_zp: i32,
    out: DType,
) -> Result<Tensor> {
    let gamma = gamma.as_i32("rms_norm gamma")?;
    normalize(x, gamma, None, Some(x_zp), epsilon, shift, y_zp, out)
}

/// Both norms: `d_j = N x_j - sum x` (layer norm) or `N (x_j - x_zp)` (RMS norm),
/// `sigma = isqrt(floor(sum d^2 / N) + epsilon)`,
/// `y_j = sat(y_zp + round_div(d_j gamma_j + beta_j sigma, sigma 2^shift))`.
#[allow(clippy::too_many_arguments)]
fn normalize(
    x: &Tensor,
    gamma: &[i32],
    beta: Option<&[i32]>,
    center: Option<i32>,
    epsilon: u64,
    shift: u32,
    y_zp: i32,
    out: DType,
) -> Result<Tensor> {
    let n = gamma.len();
    let rows = x.numel() / n;
    let xs = x.to_i64_vec();
    let row_fn = |row: usize, dst: &mut [i64]| {
        let xr = &xs[row * n..(row + 1) * n];
        let nn = n as i128;
        // |x| <= 2^31 and N < 2^32: |d| < 2^64 and sum d^2 fits in i128 for any row that fits in memory.
        let sub = match center {
            None => xr.iter().map(|&v| v as i128).sum::<i128>(),
            Some(z) => nn * z as i128,
        };
        let mut sq: u128 = 0;
        for (e, &v) in dst.iter_mut().zip(xr) {
            let d = nn * v as i128 - sub;
            sq += (d * d) as u128;
            *e = 0;
        }
        let sigma = isqrt(sq / n as u128 + epsilon as u128) as i128;
        for (j, (e, &v)) in dst.iter_mut().zip(xr).enumerate() {
            let b = beta.map_or(0, |b| b[j]) as i128;
            let y = if sigma == 0 {
                round_shift(b, shift)
            } else {
                let d = nn * v as i128 - sub;
                round_div(d * gamma[j] as i128 + b * sigma, sigma << shift)
            };
            *e = out.saturate(y_zp as i128 + y);
        }
    };
    let mut values = vec![0i64; rows * n];
    if rows * n >= 1 << 14 {
        values
            .par_chunks_mut(n)
            .enumerate()
            .for_each(|(i, d)| row_fn(i, d));
    } else {
        values
            .chunks_mut(n)
            .enumerate()
            .for_each(|(i, d)| row_fn(i, d));
    }
    Ok(Tensor::from_values(out, x.shape().to_vec(), values))
}
