//! The fixed-point primitives every op is defined with (`docs/ops.md`, "Arithmetic").
//!
//! Each is exact over the whole input range it documents; all rounding is to nearest with
//! ties away from zero, so that a kernel on any device gets the same bits.

/// The largest right shift any op accepts.
pub const MAX_SHIFT: u32 = 62;

/// `v / 2^s` rounded to nearest, ties away from zero:
/// `sign(v) * ((|v| + 2^(s-1)) >> s)`, and `v` itself when `s == 0`.
///
/// Exact for `|v| < 2^126` and `s <= 126`.
#[inline]
pub fn round_shift(v: i128, s: u32) -> i128 {
    if s == 0 {
        return v;
    }
    let half = 1i128 << (s - 1);
    let q = (v.unsigned_abs() as i128 + half) >> s;
    if v < 0 { -q } else { q }
}

/// [`round_shift`] on `i64`, for hot loops; exact for `|v| < 2^62` and `s <= 62`.
#[inline]
pub fn round_shift_i64(v: i64, s: u32) -> i64 {
    if s == 0 {
        return v;
    }
    let half = 1i64 << (s - 1);
    let q = (v.unsigned_abs() as i64 + half) >> s;
    if v < 0 { -q } else { q }
}

/// `a / b` for `b > 0`, rounded to nearest, ties away from zero:
/// `sign(a) * floor((|a| + floor(b / 2)) / b)`.
#[inline]
pub fn round_div(a: i128, b: i128) -> i128 {
    debug_assert!(b > 0);
    let q = (a.unsigned_abs() + (b as u128 / 2)) / b as u128;
    if a < 0 { -(q as i128) } else { q as i128 }
}

/// The requantization of an `i32` accumulator: `round_shift(acc * m, s)`.
///
/// `|acc * m| < 2^62` for any `i32` pair, so `i64` is exact for every `s <= 62`.
#[inline]
pub fn requantize(acc: i32, m: i32, s: u32) -> i64 {
    round_shift_i64(acc as i64 * m as i64, s)
}

/// `floor(sqrt(v))`, exact for every `u128`.
pub fn isqrt(v: u128) -> u128 {
    if v < 2 {
        return v;
    }
    // Start from the float estimate, then correct it: the float may be off by a few units.
    let mut r = (v as f64).sqrt() as u128;
    while r.checked_mul(r).is_none_or(|sq| sq > v) {
        r -= 1;
    }
    while (r + 1).checked_mul(r + 1).is_some_and(|sq| sq <= v) {
        r += 1;
    }
    r
}

/// TensorFlow Lite's `QuantizeMultiplier`: a real scale as a Q31 multiplier `m` and a total
/// right shift `s`, so that `x * scale ~ round_shift(x * m, s)`.
///
/// Floats are used here, when a model is built, never when it runs. Scales whose shift
/// would leave `0..=MAX_SHIFT` are refused (a scale of 0 gives `(0, 0)`).
pub fn quantize_multiplier(scale: f64) -> Option<(i32, u32)> {
    if !scale.is_finite() || scale < 0.0 {
        return None;
    }
    if scale == 0.0 {
        return Some((0, 0));
    }
    // scale = q * 2^e with q in [0.5, 1).
    let e = scale.log2().floor() as i32 + 1;
    let q = scale / 2f64.powi(e);
    let (mut m, mut e) = ((q * 2f64.powi(31)).round() as i64, e);
    if m == 1 << 31 {
        m /= 2;
        e += 1;
    }
    let s = 31 - e;
    if !(0..=MAX_SHIFT as i32).contains(&s) {
        return None;
    }
    Some((m as i32, s as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_shift_ties_away_from_zero() {
        assert_eq!(round_shift(5, 1), 3); // 2.5 -> 3
        assert_eq!(round_shift(-5, 1), -3); // -2.5 -> -3
        assert_eq!(round_shift(3, 1), 2); // 1.5 -> 2
        assert_eq!(round_shift(-3, 1), -2);
        assert_eq!(round_shift(4, 2), 1); // 1.0
        assert_eq!(round_shift(5, 2), 1); // 1.25 -> 1
        assert_eq!(round_shift(6, 2), 2); // 1.5 -> 2
        assert_eq!(round_shift(-6, 2), -2);
        assert_eq!(round_shift(7, 0), 7);
    }

    #[test]
    fn round_div_ties_away_from_zero() {
        assert_eq!(round_div(5, 2), 3);
        assert_eq!(round_div(-5, 2), -3);
        assert_eq!(round_div(4, 3), 1);
        assert_eq!(round_div(5, 3), 2);
        assert_eq!(round_div(-5, 3), -2);
        assert_eq!(round_div(0, 7), 0);
    }

    #[test]
    fn quantize_multiplier_round_trips() {
        for scale in [1.0, 0.5, 0.3, 1e-3, 1.7, 3.0e-9, 0.999_999_999_9] {
            let (m, s) = quantize_multiplier(scale).unwrap();
            assert!((1 << 30..=i32::MAX).contains(&m), "{scale}: m = {m}");
            let back = m as f64 / 2f64.powi(s as i32);
            assert!((back / scale - 1.0).abs() < 1e-9, "{scale}: {back}");
        }
        assert_eq!(quantize_multiplier(0.0), Some((0, 0)));
        assert_eq!(quantize_multiplier(-1.0), None);
        assert_eq!(quantize_multiplier(1e30), None);
    }

    #[test]
    fn isqrt_edges() {
        for v in 0u128..2000 {
            let r = isqrt(v);
            assert!(r * r <= v && (r + 1) * (r + 1) > v, "{v}");
        }
        assert_eq!(isqrt(u128::MAX), u64::MAX as u128);
        assert_eq!(isqrt((1u128 << 100) - 1), (1u128 << 50) - 1);
    }

    proptest! {
        #[test]
        fn round_shift_matches_i64_path(v in -(1i64 << 62) + 1..(1i64 << 62), s in 0u32..=62) {
            prop_assert_eq!(round_shift(v as i128, s), round_shift_i64(v, s) as i128);
        }

        #[test]
        fn round_shift_is_nearest(v in any::<i64>(), s in 1u32..=40) {
            let r = round_shift(v as i128, s);
            // |v - r*2^s| <= 2^(s-1), with equality only when rounding away from zero.
            let diff = v as i128 - (r << s);
            prop_assert!(diff.abs() <= 1i128 << (s - 1));
            if diff.abs() == 1i128 << (s - 1) {
                prop_assert!(r.abs() << s > (v as i128).abs());
            }
        }

        #[test]
        fn isqrt_is_floor(v in any::<u128>()) {
            let r = isqrt(v);
            prop_assert!(r * r <= v);
            prop_assert!((r + 1).checked_mul(r + 1).is_none_or(|sq| sq > v));
        }
    }
}
