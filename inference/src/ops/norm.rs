//! `layer_norm` and `rms_norm`: integer sums, exact integer square root, fixed-point
//! gamma and beta, one rounding.
//!
//! The variance term needs no second pass: with `S = sum x`, `Q = sum x^2` and
//! `d_j = N x_j - S`, `sum d_j^2 = N^2 Q - 2 N S^2 + N S^2 = N (N Q - S^2)`, so
//! `floor(sum d^2 / N) = N Q - S^2` exactly (and `N Q'` with `Q' = sum (x - zp)^2` for the
//! RMS norm, where `d_j = N (x_j - zp)`). Each row then takes the `i64` path (one
//! [`FloorDiv`] per row instead of a division per element) when its bounds allow, and the
//! `i128` transcription of the spec otherwise.

use super::fixed_point::{
    Element, FloorDiv, Isa, for_each_rows, isqrt, round_div, round_shift, vectorized, with_dtype,
    with_elements,
};
use crate::error::Result;
use crate::tensor::{DType, Tensor};

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
    let norm = Norm::new(gamma, Some(beta), None, epsilon, shift, y_zp);
    Ok(norm.apply(Isa::detect(), x, out))
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
    let norm = Norm::new(gamma, None, Some(x_zp), epsilon, shift, y_zp);
    Ok(norm.apply(Isa::detect(), x, out))
}

/// Both norms: `d_j = N x_j - sum x` (layer norm, with `beta`) or `N (x_j - x_zp)` (RMS
/// norm, with `center = x_zp`), `sigma = isqrt(floor(sum d^2 / N) + epsilon)`,
/// `y_j = sat(y_zp + round_div(d_j gamma_j + beta_j sigma, sigma 2^shift))`.
struct Norm<'a> {
    gamma: &'a [i32],
    beta: Option<&'a [i32]>,
    center: Option<i64>,
    epsilon: u64,
    shift: u32,
    y_zp: i64,
    /// `max |gamma_j|`, `max |beta_j|`: the bounds that pick a row's path.
    gamma_max: u128,
    beta_max: u128,
}

vectorized! {
    fn norm_rows<X: Element, Y: Element>(norm: &Norm, x: &[X], dst: &mut [Y]) {
        let n = norm.gamma.len();
        for (x, dst) in x.chunks_exact(n).zip(dst.chunks_exact_mut(n)) {
            norm.row(x, dst);
        }
    }
}

/// A row's sums and extremes.
struct Stats {
    /// `sum x` (layer norm) or 0.
    sum: i128,
    /// `floor(sum d^2 / N)`.
    var: u128,
    /// `max_j |d_j|`.
    d_max: u128,
}

impl<'a> Norm<'a> {
    fn new(
        gamma: &'a [i32],
        beta: Option<&'a [i32]>,
        center: Option<i32>,
        epsilon: u64,
        shift: u32,
        y_zp: i32,
    ) -> Self {
        let abs_max = |v: &[i32]| v.iter().map(|g| g.unsigned_abs()).max().unwrap_or(0) as u128;
        Self {
            gamma,
            beta,
            center: center.map(i64::from),
            epsilon,
            shift,
            y_zp: y_zp as i64,
            gamma_max: abs_max(gamma),
            beta_max: beta.map_or(0, abs_max),
        }
    }

    fn apply(&self, isa: Isa, x: &Tensor, out: DType) -> Tensor {
        let n = self.gamma.len();
        let data = with_elements!(x, xs => with_dtype!(out, Y => {
            let mut y = vec![Y::default(); xs.len()];
            // Two passes of a few operations per element.
            for_each_rows(&mut y, n, 8 * n, |first, block| {
                norm_rows(isa, self, &xs[first * n..first * n + block.len()], block)
            });
            Y::into_data(y)
        }));
        Tensor::new(x.shape().to_vec(), data).expect("the output has the shape of x")
    }

    /// One row (`1 <= N <= 2^20`, checked by `Op::check`).
    #[inline(always)]
    fn row<X: Element, Y: Element>(&self, x: &[X], dst: &mut [Y]) {
        let stats = self.stats(x);
        let sigma = isqrt(stats.var + self.epsilon as u128);
        if sigma == 0 {
            for (j, y) in dst.iter_mut().enumerate() {
                let b = self.beta.map_or(0, |b| b[j]) as i128;
                *y = Y::sat_wide(self.y_zp as i128 + round_shift(b, self.shift));
            }
            return;
        }
        let denom = sigma << self.shift;
        // |d_j gamma_j + beta_j sigma| <= bound; with D / 2 added, it must stay below 2^62
        // (FloorDiv's operands, and every i64 intermediate), the quotient below 2^40.
        let bound = stats.d_max * self.gamma_max + self.beta_max * sigma + denom / 2;
        let max = FloorDiv::MAX_OPERAND as u128;
        if bound < max && denom < max && bound / denom < FloorDiv::MAX_QUOTIENT as u128 {
            self.row_i64(x, stats.sum as i64, sigma as i64, denom as u64, dst);
        } else {
            self.row_i128(x, stats.sum, sigma as i128, dst);
        }
    }

    #[inline(always)]
    fn stats<X: Element>(&self, x: &[X]) -> Stats {
        let nn = x.len() as i128;
        let narrow = X::MAX <= i16::MAX as i64;
        let (lo, hi) = x.iter().fold((X::MAX, X::MIN), |(lo, hi), &v| {
            (lo.min(v.to_i64()), hi.max(v.to_i64()))
        });
        match self.center {
            None => {
                let (sum, sq) = if narrow {
                    // |x| <= 2^15 and N <= 2^20: sum x^2 <= 2^50.
                    let (s, q) = x.iter().fold((0i64, 0i64), |(s, q), &v| {
                        let v = v.to_i64();
                        (s + v, q + v * v)
                    });
                    (s as i128, q as u128)
                } else {
                    // x^2 <= 2^62: sum in u128.
                    x.iter().fold((0i128, 0u128), |(s, q), &v| {
                        let v = v.to_i64();
                        (s + v as i128, q + (v as i128 * v as i128) as u128)
                    })
                };
                // N Q - S^2 = floor(sum d^2 / N) >= 0 (see the module docs);
                // N Q <= 2^20 * 2^82 and S^2 <= 2^102: u128.
                let var = nn as u128 * sq - (sum * sum) as u128;
                // x_min <= mean <= x_max: the largest |N x_j - S| is at an extreme.
                let d_max = (nn * hi as i128 - sum).max(sum - nn * lo as i128) as u128;
                Stats { sum, var, d_max }
            }
            Some(z) => {
                let sq = if narrow {
                    // |x - zp| <= 2^16 and N <= 2^20: sum (x - zp)^2 <= 2^52.
                    x.iter()
                        .fold(0i64, |q, &v| q + (v.to_i64() - z) * (v.to_i64() - z))
                        as u128
                } else {
                    x.iter().fold(0u128, |q, &v| {
                        let d = (v.to_i64() - z) as i128;
                        q + (d * d) as u128
                    })
                };
                let d_max =
                    nn as u128 * (hi - z).unsigned_abs().max((z - lo).unsigned_abs()) as u128;
                Stats {
                    sum: 0,
                    var: nn as u128 * sq,
                    d_max,
                }
            }
        }
    }

    /// The row in `i64`: every `|d_j gamma_j + beta_j sigma| + D / 2 < 2^62` and quotient
    /// below 2^40 (checked by the caller).
    #[inline(always)]
    fn row_i64<X: Element, Y: Element>(
        &self,
        x: &[X],
        sum: i64,
        sigma: i64,
        denom: u64,
        dst: &mut [Y],
    ) {
        let n = x.len();
        let nn = n as i64;
        let (gamma, dst) = (&self.gamma[..n], &mut dst[..n]);
        let div = FloorDiv::new(denom);
        let half = denom / 2;
        let quotient = |d: i64, j: usize, b: i64| {
            let v = d * gamma[j] as i64 + b * sigma;
            let q = div.div(v.unsigned_abs() + half) as i64;
            Y::sat(self.y_zp + if v < 0 { -q } else { q })
        };
        match (self.beta, self.center) {
            (Some(beta), _) => {
                let beta = &beta[..n];
                for j in 0..n {
                    dst[j] = quotient(nn * x[j].to_i64() - sum, j, beta[j] as i64);
                }
            }
            (None, z) => {
                let z = z.unwrap_or(0);
                for j in 0..n {
                    dst[j] = quotient(nn * (x[j].to_i64() - z), j, 0);
                }
            }
        }
    }

    /// The row in `i128`, straight from the spec: `|d| <= N 2^32 <= 2^52`, `|gamma|`,
    /// `|beta| <= 2^31` and `sigma^2 <= N^2 2^62 + 2^64`, so `sigma < 2^52`: every term is
    /// below 2^84 and `sigma 2^shift` below 2^114.
    fn row_i128<X: Element, Y: Element>(&self, x: &[X], sum: i128, sigma: i128, dst: &mut [Y]) {
        let nn = x.len() as i128;
        let denom = sigma << self.shift;
        for (j, (y, &v)) in dst.iter_mut().zip(x).enumerate() {
            let d = match self.center {
                None => nn * v.to_i64() as i128 - sum,
                Some(z) => nn * (v.to_i64() - z) as i128,
            };
            let b = self.beta.map_or(0, |b| b[j]) as i128;
            *y = Y::sat_wide(
                self.y_zp as i128 + round_div(d * self.gamma[j] as i128 + b * sigma, denom),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Op, reference};
    use super::*;
    use crate::tensor::TensorType;
    use proptest::prelude::*;

    fn lcg(seed: u64) -> impl FnMut() -> i64 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as i64
        }
    }

    proptest! {
        #![proptest_config(super::super::fixed_point::test_config(64))]

        /// Long rows with realistic and extreme parameters (both paths), on every vector
        /// path, against the reference.
        #[test]
        fn long_rows_match_the_reference(
            seed in any::<u64>(), n in 1usize..400, dtype in 0usize..3, realistic in any::<bool>(),
            shift in 0u32..=62, epsilon in any::<u64>(), spread in 0u32..32,
        ) {
            let mut next = lcg(seed);
            let dt = [DType::I8, DType::I16, DType::I32][dtype];
            let span = (1i64 << spread).min(dt.max());
            let x: Vec<i64> = (0..2 * n).map(|_| (next() % (2 * span + 1) - span).clamp(dt.min(), dt.max())).collect();
            let x = match dt {
                DType::I8 => Tensor::from_i8(vec![2, n], x.iter().map(|&v| v as i8).collect()),
                DType::I16 => Tensor::from_i16(vec![2, n], x.iter().map(|&v| v as i16).collect()),
                DType::I32 => Tensor::from_i32(vec![2, n], x.iter().map(|&v| v as i32).collect()),
            }.unwrap();
            let (shift, epsilon, g) = if realistic {
                (shift % 24, epsilon % 1000, 1i64 << (shift % 24 + 2))
            } else {
                (shift, epsilon, i32::MAX as i64)
            };
            let gamma = Tensor::from_i32(vec![n], (0..n).map(|_| (next() % (2 * g) - g) as i32).collect()).unwrap();
            let beta = Tensor::from_i32(vec![n], (0..n).map(|_| (next() % (2 * g) - g) as i32).collect()).unwrap();
            let ty = TensorType::new(DType::I16, vec![2, n]);
            let ops = [
                (Op::LayerNorm { epsilon, shift, y_zero_point: 3 }, vec![&x, &gamma, &beta]),
                (Op::RmsNorm { x_zero_point: 1, epsilon, shift, y_zero_point: 3 }, vec![&x, &gamma]),
            ];
            for (op, inputs) in ops {
                let want = reference::execute(&op, &inputs, &ty).unwrap();
                let (gm, bt) = (inputs[1].as_i32("").unwrap(), inputs.get(2).map(|b| b.as_i32("").unwrap()));
                let center = if bt.is_none() { Some(1) } else { None };
                for isa in Isa::available() {
                    let got = Norm::new(gm, bt, center, epsilon, shift, 3).apply(isa, &x, DType::I16);
                    prop_assert_eq!(&got, &want, "{:?} {:?}", op, isa);
                }
            }
        }
    }
}
