//! Reductions: masked `mean_pool` and `argmax`.

use super::fixed_point::round_div;
use super::rows_of;
use crate::error::Result;
use crate::tensor::{DType, Tensor};

/// `mean_pool` (spec: `docs/ops.md`): the masked mean over axis 1 of `x [B, S, D]`.
pub fn mean_pool(
    x: &Tensor,
    mask: &Tensor,
    x_zp: i32,
    frac_bits: u32,
    y_zp: i32,
    out: DType,
) -> Result<Tensor> {
    let (b, s, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let xs = x.to_i64_vec();
    let ms = mask.to_i64_vec();
    let mut values = vec![0i64; b * d];
    for bi in 0..b {
        let kept: Vec<usize> = (0..s).filter(|&si| ms[bi * s + si] != 0).collect();
        for di in 0..d {
            values[bi * d + di] = if kept.is_empty() {
                out.saturate(y_zp as i128)
            } else {
                let sum: i128 = kept
                    .iter()
                    .map(|&si| (xs[(bi * s + si) * d + di] - x_zp as i64) as i128)
                    .sum();
                out.saturate(y_zp as i128 + round_div(sum << frac_bits, kept.len() as i128))
            };
        }
    }
    Ok(Tensor::from_values(out, vec![b, d], values))
}

/// `argmax` over the last axis: the first index of the maximum, as `i32`.
pub fn argmax(x: &Tensor) -> Result<Tensor> {
    let (rows, n) = rows_of(x.shape());
    let xs = x.to_i64_vec();
    let values = (0..rows)
        .map(|r| {
            let row = &xs[r * n..(r + 1) * n];
            let mut best = 0usize;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best as i64
        })
        .collect();
    Ok(Tensor::from_values(
        DType::I32,
        x.shape()[..x.shape().len() - 1].to_vec(),
        values,
    ))
}
