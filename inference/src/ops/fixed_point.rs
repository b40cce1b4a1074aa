//! The fixed-point primitives every op is defined with (`docs/ops.md`, "Arithmetic").
//!
//! Each is exact over the whole input range it documents; all rounding is to nearest with
//! ties away from zero, so that a kernel on any device gets the same bits.
//!
//! Below them, what the fast kernels share: branch-free forms of the primitives for loops
//! that vectorize (`RoundShift`, `FloorDiv`), the element types (`Element`), the vector
//! paths (`Isa`, `vectorized!`) and the split of rows across threads (`for_each_rows`).
//! None of them changes a result: every path and every split gives the same bits.

use crate::tensor::TensorData;
use rayon::prelude::*;

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

/// [`round_shift`] by a fixed `s`, branch-free so that loops over it vectorize:
/// `(v + 2^(s-1) - [v < 0]) >> s` (arithmetic shift), and `v` when `s == 0`.
///
/// For `v < 0` and `s > 0`: `-floor((|v| + h) / 2^s) = ceil((v - h) / 2^s)
/// = floor((v - h + 2^s - 1) / 2^s) = floor((v + h - 1) / 2^s)` with `h = 2^(s-1)`, so
/// this is [`round_shift`] exactly. Exact for `|v| <= 2^62` (then `|v| + h < 2^63`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RoundShift {
    /// `2^(s-1)`, or 0 when `s == 0`.
    pub half: i64,
    /// `-1` when `s > 0` (the `- [v < 0]` applies), else 0.
    pub neg: i64,
    /// `s`, as a lane-wide shift amount.
    pub shift: i64,
}

impl RoundShift {
    /// The rounding of a right shift by `s <= 62`.
    #[inline]
    pub fn new(s: u32) -> Self {
        debug_assert!(s <= MAX_SHIFT);
        Self {
            half: if s == 0 { 0 } else { 1 << (s - 1) },
            neg: -i64::from(s != 0),
            shift: i64::from(s),
        }
    }

    /// `round_shift(v, s)` for `|v| <= 2^62`.
    #[inline(always)]
    pub fn apply(self, v: i64) -> i64 {
        round_shift_parts(v, self.half, self.neg, self.shift)
    }
}

/// [`RoundShift::apply`] on its parts, for loops that hold them per channel.
#[inline(always)]
pub(crate) fn round_shift_parts(v: i64, half: i64, neg: i64, shift: i64) -> i64 {
    (v + half + ((v >> 63) & neg)) >> (shift & 63)
}

/// Exact `floor(n / d)` for many `n` and one `d`, through a floating-point reciprocal and
/// one integer correction, so that loops over it vectorize (no integer division).
///
/// Valid for `1 <= d < 2^62`, `n < 2^62` and `n / d < 2^40`. Proof: `n`, `d`, `1 / d` and
/// the product `y` are each rounded once to `f64` (relative error `2^-53` each), so `y` is
/// `n / d` within a relative `2^-51`, i.e. within `2^41 * 2^-51 = 2^-10` in absolute
/// terms. `q`, `y` rounded to the nearest integer (exact, by adding `2^52`: `0 <= y < 2^51`),
/// is then `floor(n / d) + {0, 1}`, and the remainder `r = n - q d` lies in `[-d, d)`,
/// inside `i64` (`d < 2^62`): one step down when `r < 0` makes `q` exact. (The step up for
/// `r >= d` cannot apply; it costs nothing and keeps `div` exact for estimates off by one
/// either way.)
#[derive(Clone, Copy, Debug)]
pub(crate) struct FloorDiv {
    d: i64,
    inv: f64,
}

impl FloorDiv {
    /// The largest quotient [`FloorDiv::div`] is exact for (exclusive).
    pub const MAX_QUOTIENT: u64 = 1 << 40;
    /// The bound on `n` and on `d` (exclusive).
    pub const MAX_OPERAND: u64 = 1 << 62;
    /// `2^52`: adding it to `0 <= y < 2^52` leaves `round(y)` in the low mantissa bits.
    const ROUND: f64 = (1u64 << 52) as f64;

    /// Division by `d`, `1 <= d < 2^62`.
    #[inline]
    pub fn new(d: u64) -> Self {
        debug_assert!((1..Self::MAX_OPERAND).contains(&d));
        Self {
            d: d as i64,
            inv: 1.0 / d as f64,
        }
    }

    /// `floor(n / d)`, for `n < 2^62` with `n / d < 2^40`.
    #[inline(always)]
    pub fn div(self, n: u64) -> u64 {
        // Signed conversion and bit arithmetic (no saturating float-to-int casts), so that
        // the loops vectorize.
        let n = n as i64;
        let y = n as f64 * self.inv;
        let q = ((y + Self::ROUND).to_bits() - Self::ROUND.to_bits()) as i64;
        // Wrapping: the true remainder is in [-d, d) (see above), which i64 holds.
        let r = n.wrapping_sub(q.wrapping_mul(self.d));
        (q - i64::from(r < 0) + i64::from(r >= self.d)) as u64
    }
}

/// An element type of a tensor (`i8`, `i16`, `i32`), for kernels generic over dtypes.
pub(crate) trait Element: Copy + Default + Send + Sync + 'static {
    /// `T.min`, `T.max` widened.
    const MIN: i64;
    /// See [`Element::MIN`].
    const MAX: i64;
    /// Truncating conversion; callers pass values in range (see [`Element::sat`]).
    fn from_i64(v: i64) -> Self;
    /// Widening conversion.
    fn to_i64(self) -> i64;
    /// Widening conversion to `i32` (every element type fits).
    fn to_i32(self) -> i32;
    /// Storage of these elements.
    fn into_data(v: Vec<Self>) -> TensorData;

    /// `sat_T(v)`.
    #[inline(always)]
    fn sat(v: i64) -> Self {
        Self::from_i64(v.clamp(Self::MIN, Self::MAX))
    }

    /// `sat_T(v)` of a wide value.
    #[inline(always)]
    fn sat_wide(v: i128) -> Self {
        Self::from_i64(v.clamp(Self::MIN as i128, Self::MAX as i128) as i64)
    }

    /// The largest `|x - zp|` over every `x` of this type (`zp` in range or not).
    #[inline]
    fn max_deviation(zp: i64) -> u64 {
        (Self::MAX - zp)
            .unsigned_abs()
            .max((zp - Self::MIN).unsigned_abs())
    }
}

macro_rules! element {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const MIN: i64 = <$t>::MIN as i64;
            const MAX: i64 = <$t>::MAX as i64;
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self as i64
            }
            #[inline(always)]
            fn to_i32(self) -> i32 {
                self as i32
            }
            fn into_data(v: Vec<Self>) -> TensorData {
                TensorData::$variant(v)
            }
        }
    };
}
element!(i8, I8);
element!(i16, I16);
element!(i32, I32);

/// Runs `$body` with `$t` the element type of `$dtype` (a [`DType`](crate::tensor::DType)).
macro_rules! with_dtype {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            $crate::tensor::DType::I8 => {
                type $t = i8;
                $body
            }
            $crate::tensor::DType::I16 => {
                type $t = i16;
                $body
            }
            $crate::tensor::DType::I32 => {
                type $t = i32;
                $body
            }
        }
    };
}

/// Runs `$body` with `$v` the typed elements of tensor `$x`.
macro_rules! with_elements {
    ($x:expr, $v:ident => $body:expr) => {
        match $x.data() {
            $crate::tensor::TensorData::I8($v) => $body,
            $crate::tensor::TensorData::I16($v) => $body,
            $crate::tensor::TensorData::I32($v) => $body,
        }
    };
}
pub(crate) use {with_dtype, with_elements};

/// An instruction set the element-wise loops are compiled for (see [`vectorized`]). Every
/// path runs the same Rust source, so every path gives the same bits; only the
/// auto-vectorizer's width changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// The target's baseline (SSE2 on x86-64).
    Portable,
    /// x86-64 AVX2 (256-bit vectors; no 64-bit variable arithmetic shifts or min/max).
    Avx2,
    /// x86-64 AVX-512 F/BW/DQ/VL: 64-bit lanes with variable shifts, multiplies, min/max
    /// and conversions to and from `f64`.
    Avx512,
}

impl Isa {
    /// The widest path this CPU runs.
    pub fn detect() -> Self {
        if Self::Avx512.is_supported() {
            Self::Avx512
        } else if Self::Avx2.is_supported() {
            Self::Avx2
        } else {
            Self::Portable
        }
    }

    /// Whether this CPU runs the path (detected once: kernels ask on every call).
    pub fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            static SUPPORTED: std::sync::OnceLock<(bool, bool)> = std::sync::OnceLock::new();
            let &(avx2, avx512) = SUPPORTED.get_or_init(|| {
                let avx2 = is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("bmi1")
                    && is_x86_feature_detected!("bmi2")
                    && is_x86_feature_detected!("popcnt")
                    && is_x86_feature_detected!("lzcnt");
                let avx512 = avx2
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512dq")
                    && is_x86_feature_detected!("avx512vl");
                (avx2, avx512)
            });
            match self {
                Self::Portable => true,
                Self::Avx2 => avx2,
                Self::Avx512 => avx512,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Self::Portable
        }
    }

    /// Every path this CPU runs, [`Isa::Portable`] first.
    #[cfg(test)]
    pub fn available() -> Vec<Self> {
        [Self::Portable, Self::Avx2, Self::Avx512]
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }
}

/// Defines `fn $name(isa: Isa, args..)` that runs `$body` compiled for `isa`: the body is
/// an `#[inline(always)]` function, inlined into one `#[target_feature]` wrapper per path,
/// so that the auto-vectorizer uses that path's vectors (a closure would not do: LLVM only
/// inlines it when small, and compiles it for the baseline otherwise). A path this CPU
/// lacks runs the baseline. The body must not hand work to other threads.
macro_rules! vectorized {
    (
        $(#[$meta:meta])*
        fn $name:ident $(<$($g:ident: $bound:path),*>)? ($($arg:ident: $ty:ty),* $(,)?)
            $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        fn $name $(<$($g: $bound),*>)? (
            isa: $crate::ops::fixed_point::Isa, $($arg: $ty),*
        ) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(
                enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi1,bmi2,popcnt,lzcnt"
            )]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,bmi1,bmi2,popcnt,lzcnt")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }

            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU supports the features of the path (checked just now).
                $crate::ops::fixed_point::Isa::Avx512 if isa.is_supported() => unsafe {
                    avx512($($arg),*)
                },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                $crate::ops::fixed_point::Isa::Avx2 if isa.is_supported() => unsafe {
                    avx2($($arg),*)
                },
                _ => body($($arg),*),
            }
        }
    };
}
pub(crate) use vectorized;

/// Work (in element operations) from which a kernel splits across threads: a few
/// microseconds, where a hand-off inside the pool costs about one. (The attention ops of
/// a short sentence, a softmax over 12 heads of 18 x 18 scores say, are just above it.)
pub(crate) const PARALLEL_MIN_WORK: usize = 1 << 13;
/// The least work one parallel task gets.
const TASK_MIN_WORK: usize = 1 << 13;

/// Cuts `out` into rows of `len` elements (the last may be shorter) and runs
/// `f(first, block)` on blocks of whole rows, `first` being the index of the block's first
/// row: all rows in one block when together they cost less than [`PARALLEL_MIN_WORK`]
/// (`cost` is the work of one row), otherwise blocks on several threads. Each row is
/// written by exactly one call, so the result does not depend on the thread count.
pub(crate) fn for_each_rows<T: Send>(
    out: &mut [T],
    len: usize,
    cost: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if len == 0 || out.is_empty() {
        return;
    }
    let rows = out.len().div_ceil(len);
    let cost = cost.max(1);
    let threads = crate::row_parallel::kernel_threads();
    if threads <= 1 || rows < 2 || rows.saturating_mul(cost) < PARALLEL_MIN_WORK {
        f(0, out);
        return;
    }
    // Tasks of at least TASK_MIN_WORK, at most 4 per thread (load balance, little overhead).
    let per_task = TASK_MIN_WORK
        .div_ceil(cost)
        .max(rows.div_ceil(4 * threads))
        .min(rows);
    out.par_chunks_mut(per_task * len)
        .enumerate()
        .for_each(|(t, block)| f(t * per_task, block));
}

/// Property-test settings for the kernels' unit tests: `cases` cases, and no regression
/// files written into the source tree (as the crate's property tests).
#[cfg(test)]
pub(crate) fn test_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..Default::default()
    }
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

    #[test]
    fn floor_div_is_exact_at_the_edges() {
        let ds = [1u64, 2, 3, 7, 255, 1 << 31, (1 << 31) - 1, (1 << 40) + 1];
        for &d in ds.iter().chain(&[(1 << 62) - 1, (1 << 61) + 12345]) {
            let div = FloorDiv::new(d);
            for q in [0u64, 1, 2, (1 << 30) + 1, (1 << 40) - 1] {
                for delta in [0i64, 1, -1, d as i64 - 1, d as i64 / 2] {
                    let n = (q as u128 * d as u128) as i128 + delta as i128;
                    if !(0..1 << 62).contains(&n) || (n as u128) / (d as u128) >= 1 << 40 {
                        continue;
                    }
                    assert_eq!(div.div(n as u64), n as u64 / d, "{n} / {d}");
                }
            }
        }
    }

    #[test]
    fn branch_free_round_shift_at_the_edges() {
        for s in 0..=62 {
            for v in [0, 1, -1, 1 << 62, -(1 << 62), (1 << 62) - 1, 3, -3, 5, -5] {
                let edges = [v, v + (1i64 << s) / 2, v - (1i64 << s) / 2];
                for v in edges.into_iter().filter(|v| v.unsigned_abs() <= 1 << 62) {
                    assert_eq!(
                        RoundShift::new(s).apply(v) as i128,
                        round_shift(v as i128, s),
                        "{v} >> {s}"
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(test_config(256))]

        #[test]
        fn floor_div_is_exact(d in 1u64..1 << 62, n in 0u64..1 << 62) {
            prop_assume!(n / d < 1 << 40);
            prop_assert_eq!(FloorDiv::new(d).div(n), n / d);
        }

        #[test]
        fn branch_free_round_shift_is_round_shift(v in -(1i64 << 62)..=(1i64 << 62), s in 0u32..=62) {
            prop_assert_eq!(RoundShift::new(s).apply(v) as i128, round_shift(v as i128, s));
        }

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
