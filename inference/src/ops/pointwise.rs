//! Element-wise ops: `add`, `mul`, `requantize` and `lut`.
//!
//! Each runs in `i64` when the bound of its intermediate values allows, and in `i128`
//! otherwise. The bound comes from the dtypes and parameters first; when that is too wide
//! (`i32` operands), from the largest `|x - zp|` actually present: both give the exact
//! result, so the choice never changes a bit.

use super::fixed_point::{
    Element, Isa, RoundShift, for_each_rows, round_shift, vectorized, with_dtype, with_elements,
};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor, TensorData};

/// Elements per task of the element-wise loops.
const CHUNK: usize = 1 << 12;

/// Where `round_shift` and its operands are exact in `i64`: `|v| <= 2^62`.
const I64_BOUND: u128 = 1 << 62;

/// The largest `|x - zp|` over the values of `x` (0 when empty).
fn deviation<T: Element>(x: &[T], zp: i64) -> u64 {
    let (lo, hi) = x.iter().fold((T::MAX, T::MIN), |(lo, hi), &v| {
        (lo.min(v.to_i64()), hi.max(v.to_i64()))
    });
    if lo > hi {
        0
    } else {
        (hi - zp).unsigned_abs().max((zp - lo).unsigned_abs())
    }
}

/// Whether `bound(deviation(a), deviation(b)) <= 2^62`, from the dtypes or else the data.
fn fits_i64<A: Element, B: Element>(
    a: &[A],
    za: i64,
    b: &[B],
    zb: i64,
    bound: impl Fn(u64, u64) -> u128,
) -> bool {
    bound(A::max_deviation(za), B::max_deviation(zb)) <= I64_BOUND
        || bound(deviation(a, za), deviation(b, zb)) <= I64_BOUND
}

/// `y[i] = f(i)` over chunks, compiled for `isa` and on several threads when large.
fn map<Y: Element>(len: usize, isa: Isa, f: impl Fn(usize) -> Y + Sync + Send) -> Vec<Y> {
    let mut y = vec![Y::default(); len];
    for_each_rows(&mut y, CHUNK, CHUNK, |c, dst| fill(isa, &f, c * CHUNK, dst));
    y
}

vectorized! {
    /// `dst[i] = f(base + i)`.
    fn fill<Y: Element, F: Fn(usize) -> Y>(f: &F, base: usize, dst: &mut [Y]) {
        for (i, e) in dst.iter_mut().enumerate() {
            *e = f(base + i);
        }
    }
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
    let data = with_elements!(a, av => with_elements!(b, bv => with_dtype!(out, Y => {
        Y::into_data(add_typed::<_, _, Y>(Isa::detect(), av, bv, p, shift, y_zp))
    })));
    Tensor::new(a.shape().to_vec(), data)
}

fn add_typed<A: Element, B: Element, Y: Element>(
    isa: Isa,
    a: &[A],
    b: &[B],
    p: [i32; 4],
    shift: u32,
    y_zp: i32,
) -> Vec<Y> {
    let mut y = vec![Y::default(); a.len()];
    for_each_rows(&mut y, CHUNK, CHUNK, |c, dst| {
        let at = c * CHUNK..c * CHUNK + dst.len();
        add_into(isa, &a[at.clone()], &b[at], p, shift, y_zp, dst);
    });
    y
}

/// `add` of `a` and `b` (`dst.len()` elements each) into `dst`, on this thread.
pub(super) fn add_into<A: Element, B: Element, Y: Element>(
    isa: Isa,
    a: &[A],
    b: &[B],
    [za, ma, zb, mb]: [i32; 4],
    shift: u32,
    y_zp: i32,
    dst: &mut [Y],
) {
    let (za, zb, y_zp) = (za as i64, zb as i64, y_zp as i64);
    let (a, b) = (&a[..dst.len()], &b[..dst.len()]);
    let bound = |da: u64, db: u64| {
        da as u128 * ma.unsigned_abs() as u128 + db as u128 * mb.unsigned_abs() as u128
    };
    if fits_i64(a, za, b, zb, bound) {
        // |a - za| * |ma| + |b - zb| * |mb| <= 2^62: every term and the sum fit.
        let rs = RoundShift::new(shift);
        let (ma, mb) = (ma as i64, mb as i64);
        let f = |i: usize| {
            let v = (a[i].to_i64() - za) * ma + (b[i].to_i64() - zb) * mb;
            Y::sat(y_zp + rs.apply(v))
        };
        fill(isa, &f, 0, dst);
    } else {
        // |a - za|, |b - zb| <= 2^32 and |m| <= 2^31: the sum is below 2^64.
        let f = |i: usize| {
            let v = (a[i].to_i64() - za) as i128 * ma as i128
                + (b[i].to_i64() - zb) as i128 * mb as i128;
            Y::sat_wide(y_zp as i128 + round_shift(v, shift))
        };
        fill(Isa::Portable, &f, 0, dst);
    }
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
    let p = [a_zp, b_zp, multiplier];
    let data = with_elements!(a, av => with_elements!(b, bv => with_dtype!(out, Y => {
        Y::into_data(mul_typed::<_, _, Y>(Isa::detect(), av, bv, p, shift, y_zp))
    })));
    Tensor::new(a.shape().to_vec(), data)
}

fn mul_typed<A: Element, B: Element, Y: Element>(
    isa: Isa,
    a: &[A],
    b: &[B],
    [za, zb, m]: [i32; 3],
    shift: u32,
    y_zp: i32,
) -> Vec<Y> {
    let (za, zb, y_zp) = (za as i64, zb as i64, y_zp as i64);
    let (a, b) = (a, &b[..a.len()]);
    // max(|m|, 1): the product of the operands alone must fit too.
    let bound = |da: u64, db: u64| da as u128 * db as u128 * m.unsigned_abs().max(1) as u128;
    if fits_i64(a, za, b, zb, bound) {
        // |a - za| * |b - zb| * max(|m|, 1) <= 2^62: both products fit.
        let rs = RoundShift::new(shift);
        let m = m as i64;
        map(a.len(), isa, |i| {
            let v = (a[i].to_i64() - za) * (b[i].to_i64() - zb) * m;
            Y::sat(y_zp + rs.apply(v))
        })
    } else {
        // |a - za|, |b - zb| <= 2^32 and |m| <= 2^31: the product is below 2^95.
        map(a.len(), Isa::Portable, |i| {
            let v = (a[i].to_i64() - za) as i128 * (b[i].to_i64() - zb) as i128 * m as i128;
            Y::sat_wide(y_zp as i128 + round_shift(v, shift))
        })
    }
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
    let data = with_elements!(x, xv => with_dtype!(out, Y => {
        Y::into_data(requantize_typed::<_, Y>(Isa::detect(), xv, x_zp, multiplier, shift, y_zp))
    }));
    Tensor::new(x.shape().to_vec(), data)
}

fn requantize_typed<X: Element, Y: Element>(
    isa: Isa,
    x: &[X],
    zx: i32,
    m: i32,
    shift: u32,
    y_zp: i32,
) -> Vec<Y> {
    let (zx, y_zp) = (zx as i64, y_zp as i64);
    let bound = |dx: u64, _: u64| dx as u128 * m.unsigned_abs() as u128;
    if fits_i64(x, zx, &[] as &[X], 0, bound) {
        // |x - zx| * |m| <= 2^62.
        let rs = RoundShift::new(shift);
        let m = m as i64;
        map(x.len(), isa, |i| {
            Y::sat(y_zp + rs.apply((x[i].to_i64() - zx) * m))
        })
    } else {
        // |x - zx| <= 2^32 and |m| <= 2^31: below 2^63, but not always 2^62.
        map(x.len(), Isa::Portable, |i| {
            let v = (x[i].to_i64() - zx) as i128 * m as i128;
            Y::sat_wide(y_zp as i128 + round_shift(v, shift))
        })
    }
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
    let data = match table.data() {
        TensorData::I8(t) => TensorData::I8(lut_i8(LutPath::detect(), xs, t)),
        TensorData::I16(t) => TensorData::I16(gather(xs, t)),
        TensorData::I32(t) => TensorData::I32(gather(xs, t)),
    };
    Tensor::new(x.shape().to_vec(), data)
}

/// `table[x + 128]` for every `x`, on several threads when large.
fn gather<T: Element>(xs: &[i8], table: &[T]) -> Vec<T> {
    let table: &[T; 256] = table.try_into().expect("checked: 256 entries");
    map(xs.len(), Isa::detect(), |i| {
        table[(xs[i] as u8 ^ 0x80) as usize]
    })
}

/// How an `i8` table is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LutPath {
    /// One load per element.
    Portable,
    /// AVX-512 VBMI: the table in four registers, 64 lookups per two `vpermi2b`.
    Vbmi,
}

impl LutPath {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vbmi")
        {
            return Self::Vbmi;
        }
        Self::Portable
    }
}

fn lut_i8(path: LutPath, xs: &[i8], table: &[i8]) -> Vec<i8> {
    let table: &[i8; 256] = table.try_into().expect("checked: 256 entries");
    let mut y = vec![0i8; xs.len()];
    // Lookups are cheap: tasks of several chunks.
    for_each_rows(&mut y, CHUNK, CHUNK / 4, |c, dst| {
        let src = &xs[c * CHUNK..c * CHUNK + dst.len()];
        match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Vbmi` is only detected on CPUs with these features.
            LutPath::Vbmi => unsafe { vbmi::lut(src, table, dst) },
            _ => {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = table[(v as u8 ^ 0x80) as usize];
                }
            }
        }
    });
    y
}

#[cfg(target_arch = "x86_64")]
mod vbmi {
    use std::arch::x86_64::*;

    /// `dst[i] = table[src[i] + 128]`.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VBMI; `dst.len() == src.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn lut(src: &[i8], table: &[i8; 256], dst: &mut [i8]) {
        assert_eq!(src.len(), dst.len());
        // SAFETY: four 64-byte loads inside the 256-byte table.
        let t: [__m512i; 4] =
            std::array::from_fn(|q| unsafe { _mm512_loadu_si512(table[q * 64..].as_ptr().cast()) });
        // Index `x + 128` is below 128 exactly when `x < 0`; its low 7 bits are those of
        // `x`, which is all `vpermi2b` reads of the index (bit 6 picks the register).
        let look = |x: __m512i| {
            let lo = _mm512_permutex2var_epi8(t[0], x, t[1]);
            let hi = _mm512_permutex2var_epi8(t[2], x, t[3]);
            _mm512_mask_blend_epi8(_mm512_movepi8_mask(x), hi, lo)
        };
        let mut i = 0;
        while i + 64 <= src.len() {
            // SAFETY: bytes `i..i + 64` of both slices.
            unsafe {
                let x = _mm512_loadu_si512(src[i..].as_ptr().cast());
                _mm512_storeu_si512(dst[i..].as_mut_ptr().cast(), look(x));
            }
            i += 64;
        }
        let rest = src.len() - i;
        if rest > 0 {
            let mask = (1u64 << rest) - 1;
            // SAFETY: the mask covers the `rest < 64` bytes left in both slices only.
            unsafe {
                let x = _mm512_maskz_loadu_epi8(mask, src[i..].as_ptr());
                _mm512_mask_storeu_epi8(dst[i..].as_mut_ptr(), mask, look(x));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_round(v: i128, y_zp: i32, out: DType) -> i64 {
        out.saturate(y_zp as i128 + v)
    }

    proptest! {
        #![proptest_config(super::super::fixed_point::test_config(256))]

        #[test]
        fn every_path_agrees_with_the_spec(
            a in proptest::collection::vec(any::<i16>(), 0..300),
            za in any::<i16>(), zb in any::<i16>(), ma in any::<i32>(), mb in any::<i32>(),
            shift in 0u32..=62, y_zp in any::<i8>(),
        ) {
            let b: Vec<i16> = a.iter().rev().map(|v| v.wrapping_mul(7)).collect();
            let p = [za as i32, ma, zb as i32, mb];
            for isa in Isa::available() {
                let y: Vec<i8> = add_typed(isa, &a, &b, p, shift, y_zp as i32);
                let z: Vec<i16> = mul_typed(isa, &a, &b, [za as i32, zb as i32, ma], shift, y_zp as i32);
                let q: Vec<i32> = requantize_typed(isa, &a, za as i32, ma, shift, y_zp as i32);
                for i in 0..a.len() {
                    let (da, db) = (a[i] as i128 - za as i128, b[i] as i128 - zb as i128);
                    let add = round_shift(da * ma as i128 + db * mb as i128, shift);
                    prop_assert_eq!(y[i] as i64, naive_round(add, y_zp as i32, DType::I8), "{:?}", isa);
                    let mul = round_shift(da * db * ma as i128, shift);
                    prop_assert_eq!(z[i] as i64, naive_round(mul, y_zp as i32, DType::I16), "{:?}", isa);
                    let rq = round_shift(da * ma as i128, shift);
                    prop_assert_eq!(q[i] as i64, naive_round(rq, y_zp as i32, DType::I32), "{:?}", isa);
                }
            }
        }

        #[test]
        fn lut_paths_agree(xs in proptest::collection::vec(any::<i8>(), 0..300), seed in any::<u64>()) {
            let table: Vec<i8> = (0..256u64).map(|i| (seed.wrapping_mul(i + 1) >> 13) as i8).collect();
            let want: Vec<i8> = xs.iter().map(|&x| table[(x as i16 + 128) as usize]).collect();
            prop_assert_eq!(&lut_i8(LutPath::Portable, &xs, &table), &want);
            if LutPath::detect() == LutPath::Vbmi {
                prop_assert_eq!(&lut_i8(LutPath::Vbmi, &xs, &table), &want);
            }
        }
    }
}
