//! Float building blocks for the calibration forward passes (row-major `f32`).

/// `y[m, n] = x[m, k] . w[n, k] + b[n]` (a linear layer with PyTorch's weight layout).
pub fn linear(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, b: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for (row, yr) in y.chunks_mut(n).enumerate() {
        yr.copy_from_slice(&b[..n]);
        let _ = row;
    }
    // SAFETY: the slices hold m*k, n*k and m*n elements with the strides given.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            w.as_ptr(),
            1,
            k as isize,
            1.0,
            y.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    y
}

/// Layer norm over rows of `n`.
pub fn layer_norm(x: &mut [f32], n: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    for row in x.chunks_mut(n) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (j, v) in row.iter_mut().enumerate() {
            *v = ((*v as f64 - mean) * inv) as f32 * gamma[j] + beta[j];
        }
    }
}

/// Exact GELU, `x * Phi(x)`.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// The error function (Abramowitz-Stegun 7.1.26 refined by one Newton step on erfc is not
/// needed at table precision; this series/continued-fraction pair is accurate to ~1e-15).
pub fn erf(x: f64) -> f64 {
    if x.abs() < 2.5 {
        // Maclaurin series.
        let (mut sum, mut term, x2) = (x, x, x * x);
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x2 / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // Continued fraction for erfc.
        let ax = x.abs();
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (ax + f);
        }
        let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f);
        (1.0 - erfc).copysign(x)
    }
}

/// Softmax in place over rows of `n`, ignoring masked columns (`keep[j] == false`).
pub fn softmax_masked(x: &mut [f32], n: usize, keep: &[bool]) {
    for row in x.chunks_mut(n) {
        let max = row
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(v, _)| *v)
            .fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f64;
        for (v, &k) in row.iter_mut().zip(keep) {
            *v = if k {
                ((*v - max) as f64).exp() as f32
            } else {
                0.0
            };
            sum += *v as f64;
        }
        for v in row.iter_mut() {
            *v = (*v as f64 / sum) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-1.5, -0.966_105_146_475_310_7),
        ] {
            assert!((erf(x) - want).abs() < 1e-13, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn linear_is_a_matrix_product() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let w = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        assert_eq!(
            linear(&x, 2, 3, &w, 2, &[0.5, -0.5]),
            vec![4.5, 1.5, 10.5, 4.5]
        );
    }
}
