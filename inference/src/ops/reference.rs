//! The naive reference: each output element computed on its own, straight from the words
//! of `docs/ops.md`, in `i128` throughout.
//!
//! This is what the fast kernels are tested against, and it is exactly the computation the
//! on-chain one-step verifier performs: one element from the operands it depends on. It is
//! slow on purpose: no tiling, no zero-point folding, no fast paths.
//!
//! Operands are read through [`ElementSource`], so the same code computes an element from
//! whole tensors or from only the leaves a one-step reveals ([`crate::one_step`]); an
//! element read that was not revealed is an error, not a guess.

use super::fixed_point::{isqrt, round_div, round_shift};
use super::{Op, RopePairing};
use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorType};
use std::cell::Cell;

/// Where the reference reads operand elements from.
pub trait ElementSource {
    /// The operand's dtype and shape.
    fn ty(&self) -> TensorType;
    /// Element `index` (row-major), or `None` if it is not available.
    fn value(&self, index: usize) -> Option<i64>;
}

impl ElementSource for Tensor {
    fn ty(&self) -> TensorType {
        Tensor::ty(self)
    }

    fn value(&self, index: usize) -> Option<i64> {
        (index < self.numel()).then(|| self.get(index))
    }
}

/// One operand as the element code sees it: infallible reads that remember the first
/// element that was not available.
struct View<'a> {
    src: &'a dyn ElementSource,
    ty: TensorType,
    operand: usize,
    missing: &'a Cell<Option<(usize, usize)>>,
}

impl View<'_> {
    fn shape(&self) -> &[usize] {
        &self.ty.shape
    }

    fn numel(&self) -> usize {
        self.ty.numel()
    }

    fn get(&self, index: usize) -> i64 {
        self.src.value(index).unwrap_or_else(|| {
            if self.missing.get().is_none() {
                self.missing.set(Some((self.operand, index)));
            }
            0
        })
    }
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Multi-index of flat `index` in `shape`.
fn unravel(index: usize, shape: &[usize]) -> Vec<usize> {
    let st = strides(shape);
    st.iter()
        .zip(shape)
        .map(|(&s, &d)| (index / s) % d.max(1))
        .collect()
}

fn at(t: &View<'_>, idx: &[usize]) -> i128 {
    let flat: usize = idx.iter().zip(strides(t.shape())).map(|(i, s)| i * s).sum();
    t.get(flat) as i128
}

/// Row `row` of a softmax's `x` (`docs/ops.md` 7) as its one-step reads it: the whole row
/// of `x`, the whole mask row, and then only the table entries of kept columns.
struct SoftmaxRow<'a> {
    table: &'a View<'a>,
    /// `x[c]` where column `c` is kept, `None` where it is dropped.
    kept: Vec<Option<i128>>,
    /// The maximum over the kept columns (`i128::MIN` if none is kept).
    max: i128,
}

impl<'a> SoftmaxRow<'a> {
    fn read(
        x: &View<'_>,
        table: &'a View<'a>,
        mask: Option<&View<'_>>,
        causal: bool,
        row: usize,
    ) -> Self {
        let shape = x.shape();
        let rk = shape.len();
        let n = shape[rk - 1];
        let m = if rk >= 2 { shape[rk - 2] } else { 1 };
        let r = row % m;
        let groups = mask.map(|mk| {
            let g = (row / m)
                / (shape[..rk.saturating_sub(2)].iter().product::<usize>() / mk.shape()[0]);
            (mk, g)
        });
        let kept: Vec<Option<i128>> = (0..n)
            .map(|c| {
                let v = x.get(row * n + c) as i128;
                let masked_in = groups.is_none_or(|(mk, g)| at(mk, &[g, c]) != 0);
                (masked_in && (!causal || c + m <= r + n)).then_some(v)
            })
            .collect();
        let max = kept.iter().flatten().copied().max().unwrap_or(i128::MIN);
        Self { table, kept, max }
    }

    /// `e[c]`: 0 for a dropped column, else the entry at `min(max - x[c], T - 1)`, a
    /// negative entry read as 0.
    fn e(&self, c: usize) -> i128 {
        let Some(v) = self.kept[c] else { return 0 };
        let d = (self.max - v) as usize;
        (self.table.get(d.min(self.table.numel() - 1)) as i128).max(0)
    }
}

/// Wraps to a signed 32-bit value (two's complement).
fn wrap32(v: i128) -> i128 {
    v as i32 as i128
}

/// Element `index` (row-major) of the output of `op` on `inputs`, declared as `out`.
pub fn element(op: &Op, inputs: &[&Tensor], out: &TensorType, index: usize) -> Result<i64> {
    let sources: Vec<&dyn ElementSource> =
        inputs.iter().map(|t| *t as &dyn ElementSource).collect();
    element_from(op, &sources, out, index)
}

/// Element `index` of the output of `op`, reading operands from `sources`; an error names
/// the first operand element that was needed and not available.
pub fn element_from(
    op: &Op,
    sources: &[&dyn ElementSource],
    out: &TensorType,
    index: usize,
) -> Result<i64> {
    let types: Vec<TensorType> = sources.iter().map(|s| s.ty()).collect();
    op.check(&types.iter().collect::<Vec<_>>(), out)?;
    let missing = Cell::new(None);
    let views: Vec<View<'_>> = sources
        .iter()
        .zip(types)
        .enumerate()
        .map(|(operand, (&src, ty))| View {
            src,
            ty,
            operand,
            missing: &missing,
        })
        .collect();
    let inputs: Vec<&View<'_>> = views.iter().collect();
    let v = element_of(op, &inputs, out, index)?;
    match missing.get() {
        None => Ok(v),
        Some((operand, element)) => Err(Error::Proof(format!(
            "{}: element {element} of operand {operand} is needed but was not revealed",
            op.kind()
        ))),
    }
}

fn element_of(op: &Op, inputs: &[&View<'_>], out: &TensorType, index: usize) -> Result<i64> {
    if index >= out.numel() {
        return Err(Error::Param(format!(
            "element {index} of {out} does not exist"
        )));
    }
    let o = unravel(index, &out.shape);
    let dt = out.dtype;
    let sat = |v: i128| dt.saturate(v) as i128;
    let v = match op {
        Op::FullyConnected {
            x_zero_point,
            y_zero_point,
        } => {
            let (x, w, bias, m, s) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4]);
            let k = w.shape()[1];
            let n = *o.last().unwrap();
            let mut xi = o.clone();
            let mut acc = bias.get(n) as i128;
            for kk in 0..k {
                *xi.last_mut().unwrap() = kk;
                acc =
                    wrap32(acc + (at(x, &xi) - *x_zero_point as i128) * w.get(n * k + kk) as i128);
            }
            let shift = s.get(n);
            if !(0..=62).contains(&shift) {
                return Err(Error::Param(format!(
                    "fully_connected: shift[{n}] = {shift}"
                )));
            }
            sat(*y_zero_point as i128 + round_shift(acc * m.get(n) as i128, shift as u32))
        }
        Op::BatchMatmul {
            transpose_b,
            a_zero_point,
            b_zero_point,
            multiplier,
            shift,
            y_zero_point,
        } => {
            let (a, b) = (inputs[0], inputs[1]);
            let (bi, r, c) = (o[0], o[1], o[2]);
            let k = a.shape()[2];
            let bj = bi / (a.shape()[0] / b.shape()[0]);
            let mut acc = 0i128;
            for kk in 0..k {
                let bv = if *transpose_b {
                    at(b, &[bj, c, kk])
                } else {
                    at(b, &[bj, kk, c])
                };
                acc = wrap32(
                    acc + (at(a, &[bi, r, kk]) - *a_zero_point as i128)
                        * (bv - *b_zero_point as i128),
                );
            }
            sat(*y_zero_point as i128 + round_shift(acc * *multiplier as i128, *shift))
        }
        Op::Add {
            a_zero_point,
            a_multiplier,
            b_zero_point,
            b_multiplier,
            shift,
            y_zero_point,
        } => {
            let a = inputs[0].get(index) as i128 - *a_zero_point as i128;
            let b = inputs[1].get(index) as i128 - *b_zero_point as i128;
            sat(*y_zero_point as i128
                + round_shift(
                    a * *a_multiplier as i128 + b * *b_multiplier as i128,
                    *shift,
                ))
        }
        Op::Mul {
            a_zero_point,
            b_zero_point,
            multiplier,
            shift,
            y_zero_point,
        } => {
            let a = inputs[0].get(index) as i128 - *a_zero_point as i128;
            let b = inputs[1].get(index) as i128 - *b_zero_point as i128;
            sat(*y_zero_point as i128 + round_shift(a * b * *multiplier as i128, *shift))
        }
        Op::Requantize {
            x_zero_point,
            multiplier,
            shift,
            y_zero_point,
        } => {
            let x = inputs[0].get(index) as i128 - *x_zero_point as i128;
            sat(*y_zero_point as i128 + round_shift(x * *multiplier as i128, *shift))
        }
        Op::Lut => inputs[1].get((inputs[0].get(index) + 128) as usize) as i128,
        Op::Softmax {
            causal,
            frac_bits,
            y_zero_point,
        } => {
            let n = *inputs[0].shape().last().unwrap();
            let row = SoftmaxRow::read(
                inputs[0],
                inputs[1],
                inputs.get(2).copied(),
                *causal,
                index / n,
            );
            let e = |c: usize| row.e(c);
            let sum: i128 = (0..n).map(e).sum();
            if sum == 0 {
                // Also when no column is kept: every e[c] is 0.
                sat(*y_zero_point as i128)
            } else {
                // floor((e * 2^q + floor(sum / 2)) / sum) of non-negative values.
                sat(*y_zero_point as i128 + ((e(index % n) << frac_bits) + sum / 2) / sum)
            }
        }
        Op::SoftmaxExp { causal } => {
            let n = *inputs[0].shape().last().unwrap();
            SoftmaxRow::read(
                inputs[0],
                inputs[1],
                inputs.get(2).copied(),
                *causal,
                index / n,
            )
            .e(index % n)
        }
        Op::SoftmaxNorm {
            frac_bits,
            y_zero_point,
        } => {
            let e = inputs[0];
            let n = *e.shape().last().unwrap();
            let row = index / n;
            // A negative entry reads as 0.
            let at = |c: usize| (e.get(row * n + c) as i128).max(0);
            let sum: i128 = (0..n).map(at).sum();
            if sum == 0 {
                sat(*y_zero_point as i128)
            } else {
                sat(*y_zero_point as i128 + ((at(index % n) << frac_bits) + sum / 2) / sum)
            }
        }
        Op::LayerNorm {
            epsilon,
            shift,
            y_zero_point,
        } => {
            let (x, gamma, beta) = (inputs[0], inputs[1], inputs[2]);
            let n = gamma.numel();
            let base = index - index % n;
            let j = index % n;
            let nn = n as i128;
            let sum: i128 = (0..n).map(|c| x.get(base + c) as i128).sum();
            let d = |c: usize| nn * x.get(base + c) as i128 - sum;
            let sq: i128 = (0..n).map(|c| d(c) * d(c)).sum();
            let sigma = isqrt((sq / nn) as u128 + *epsilon as u128) as i128;
            let b = beta.get(j) as i128;
            let y = if sigma == 0 {
                round_shift(b, *shift)
            } else {
                round_div(
                    d(j) * gamma.get(j) as i128 + b * sigma,
                    sigma * (1i128 << *shift),
                )
            };
            sat(*y_zero_point as i128 + y)
        }
        Op::RmsNorm {
            x_zero_point,
            epsilon,
            shift,
            y_zero_point,
        } => {
            let (x, gamma) = (inputs[0], inputs[1]);
            let n = gamma.numel();
            let base = index - index % n;
            let j = index % n;
            let nn = n as i128;
            let d = |c: usize| nn * (x.get(base + c) as i128 - *x_zero_point as i128);
            let sq: i128 = (0..n).map(|c| d(c) * d(c)).sum();
            let sigma = isqrt((sq / nn) as u128 + *epsilon as u128) as i128;
            let y = if sigma == 0 {
                0
            } else {
                round_div(d(j) * gamma.get(j) as i128, sigma * (1i128 << *shift))
            };
            sat(*y_zero_point as i128 + y)
        }
        Op::Embedding => {
            let (table, idx) = (inputs[0], inputs[1]);
            let d = table.shape()[1];
            let r = idx.get(index / d);
            if r < 0 || r as usize >= table.shape()[0] {
                0
            } else {
                table.get(r as usize * d + index % d) as i128
            }
        }
        Op::Rope {
            x_zero_point,
            y_zero_point,
            position_offset,
            frac_bits,
            pairing,
        } => {
            let (x, cos, sin) = (inputs[0], inputs[1], inputs[2]);
            let shape = x.shape();
            let (s, d) = (shape[shape.len() - 2], shape[shape.len() - 1]);
            let half = d / 2;
            let j = index % d;
            let row_base = index - j;
            let pos = *position_offset as usize + (index / d) % s;
            // (first, i): whether element j is the first of its pair, and the pair index.
            let (first, i) = match pairing {
                RopePairing::Half => (j < half, j % half),
                RopePairing::Interleaved => (j.is_multiple_of(2), j / 2),
            };
            let (ia, ib) = match pairing {
                RopePairing::Half => (i, i + half),
                RopePairing::Interleaved => (2 * i, 2 * i + 1),
            };
            let a = x.get(row_base + ia) as i128 - *x_zero_point as i128;
            let b = x.get(row_base + ib) as i128 - *x_zero_point as i128;
            let c = cos.get(pos * half + i) as i128;
            let sn = sin.get(pos * half + i) as i128;
            let rot = if first {
                a * c - b * sn
            } else {
                b * c + a * sn
            };
            sat(*y_zero_point as i128 + round_shift(rot, *frac_bits))
        }
        Op::Reshape => inputs[0].get(index) as i128,
        Op::Transpose { perm } => {
            let mut src = vec![0usize; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                src[p] = o[i];
            }
            at(inputs[0], &src)
        }
        Op::Concat { axis } => {
            let mut src = o.clone();
            let mut pos = o[*axis];
            let mut found = None;
            for t in inputs {
                if pos < t.shape()[*axis] {
                    src[*axis] = pos;
                    found = Some(at(t, &src));
                    break;
                }
                pos -= t.shape()[*axis];
            }
            found.ok_or_else(|| Error::Shape("concat: index past the operands".into()))?
        }
        Op::Slice { axis, start, .. } => {
            let mut src = o.clone();
            src[*axis] += start;
            at(inputs[0], &src)
        }
        Op::MeanPool {
            x_zero_point,
            frac_bits,
            y_zero_point,
        } => {
            let (x, mask) = (inputs[0], inputs[1]);
            let (b, di) = (o[0], o[1]);
            let s = x.shape()[2];
            let kept: Vec<usize> = (0..s).filter(|&si| at(mask, &[b, si]) != 0).collect();
            if kept.is_empty() {
                sat(*y_zero_point as i128)
            } else {
                let sum: i128 = kept
                    .iter()
                    .map(|&si| at(x, &[b, di, si]) - *x_zero_point as i128)
                    .sum();
                sat(*y_zero_point as i128
                    + round_div(sum * (1i128 << *frac_bits), kept.len() as i128))
            }
        }
        Op::Argmax => {
            let x = inputs[0];
            let n = *x.shape().last().unwrap();
            let row: Vec<i64> = (0..n).map(|c| x.get(index * n + c)).collect();
            let max = *row.iter().max().unwrap();
            row.iter().position(|&v| v == max).unwrap() as i128
        }
    };
    Ok(v as i64)
}

/// The whole output of `op`, element by element.
pub fn execute(op: &Op, inputs: &[&Tensor], out: &TensorType) -> Result<Tensor> {
    let values = (0..out.numel())
        .map(|i| element(op, inputs, out, i))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::from_values(out.dtype, out.shape.clone(), values))
}
