//! `softmax` over the last axis through an exp table and exact integer division.

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use rayon::prelude::*;

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
    let table = exp_table.as_i32("softmax exp_table")?;
    if let Some(i) = table.iter().position(|&e| e < 0) {
        return Err(Error::Param(format!(
            "softmax: exp_table[{i}] = {} is negative",
            table[i]
        )));
    }
    let shape = x.shape();
    let r = shape.len();
    let n = shape[r - 1];
    let m = if r >= 2 { shape[r - 2] } else { 1 };
    let l: usize = shape[..r.saturating_sub(2)].iter().product();
    let rows = l * m;
    let group = mask.map(|mk| l / mk.shape()[0]).unwrap_or(1);
    let xs = x.to_i64_vec();
    let mask_vals = mask.map(|mk| mk.to_i64_vec());
    let (lo, hi) = (out.min(), out.max());
    let t_last = table.len() - 1;
    let one = 1i64 << frac_bits;
    let row_fn = |row: usize, dst: &mut [i64]| {
        let (li, ri) = (row / m, row % m);
        let xr = &xs[row * n..(row + 1) * n];
        let mrow = mask_vals
            .as_ref()
            .map(|mv| &mv[(li / group) * n..(li / group + 1) * n]);
        let keep = |j: usize| mrow.is_none_or(|mr| mr[j] != 0) && (!causal || j + m <= ri + n);
        let mut max = i64::MIN;
        for (j, &v) in xr.iter().enumerate() {
            if keep(j) && v > max {
                max = v;
            }
        }
        if max == i64::MIN {
            dst.fill((y_zp as i64).clamp(lo, hi));
            return;
        }
        let mut sum: i64 = 0;
        for (j, (&v, e)) in xr.iter().zip(dst.iter_mut()).enumerate() {
            *e = if keep(j) {
                table[((max - v) as usize).min(t_last)] as i64
            } else {
                0
            };
            sum += *e;
        }
        if sum == 0 {
            dst.fill((y_zp as i64).clamp(lo, hi));
            return;
        }
        let half = sum / 2;
        for e in dst.iter_mut() {
            // e < 2^31 and one <= 2^30: the product fits in i64.
            let p = (*e * one + half) / sum;
            *e = (y_zp as i64 + p).clamp(lo, hi);
        }
    };
    let mut values = vec![0i64; rows * n];
    if n > 0 {
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
    }
    Ok(Tensor::from_values(out, shape.to_vec(), values))
}
