//! `rope`: rotary position embedding with fixed-point cos/sin tables.

use super::RopePairing;
use super::fixed_point::{
    Element, Isa, RoundShift, for_each_rows, vectorized, with_dtype, with_elements,
};
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
    let rotation = Rotation {
        cos: cos.as_i32("rope cos")?,
        sin: sin.as_i32("rope sin")?,
        x_zp: x_zp as i64,
        y_zp: y_zp as i64,
        position_offset: position_offset as usize,
        rounding: RoundShift::new(frac_bits),
        pairing,
    };
    Ok(rotation.apply(Isa::detect(), x, out))
}

vectorized! {
    /// Rows `first..` of `D` elements, `S` rows (positions) per sequence.
    fn rope_rows<X: Element, Y: Element>(
        rotation: &Rotation,
        x: &[X],
        rows: (usize, usize, usize),
        y: &mut [Y],
    ) {
        let (first, s, d) = rows;
        for (i, (x, y)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
            rotation.row(x, rotation.position_offset + (first + i) % s, y);
        }
    }
}

struct Rotation<'a> {
    cos: &'a [i32],
    sin: &'a [i32],
    x_zp: i64,
    y_zp: i64,
    position_offset: usize,
    rounding: RoundShift,
    pairing: RopePairing,
}

impl Rotation<'_> {
    fn apply(&self, isa: Isa, x: &Tensor, out: DType) -> Tensor {
        let shape = x.shape();
        let r = shape.len();
        let (s, d) = (shape[r - 2], shape[r - 1]);
        let data = with_elements!(x, xs => with_dtype!(out, Y => {
            let mut y = vec![Y::default(); xs.len()];
            for_each_rows(&mut y, d, 2 * d, |first, block| {
                let x = &xs[first * d..first * d + block.len()];
                rope_rows(isa, self, x, (first, s, d), block)
            });
            Y::into_data(y)
        }));
        Tensor::new(shape.to_vec(), data).expect("the output has the shape of x")
    }

    #[inline(always)]
    fn row<X: Element, Y: Element>(&self, x: &[X], pos: usize, y: &mut [Y]) {
        let half = x.len() / 2;
        let cos = &self.cos[pos * half..(pos + 1) * half];
        let sin = &self.sin[pos * half..(pos + 1) * half];
        // |a|, |b| < 2^17 (i8, i16 x) and |c|, |s| <= 2^31: each sum is below 2^49.
        let rotate = |a: X, b: X, c: i32, s: i32| {
            let (a, b) = (a.to_i64() - self.x_zp, b.to_i64() - self.x_zp);
            let (c, s) = (c as i64, s as i64);
            let first = Y::sat(self.y_zp + self.rounding.apply(a * c - b * s));
            let second = Y::sat(self.y_zp + self.rounding.apply(b * c + a * s));
            (first, second)
        };
        match self.pairing {
            RopePairing::Half => {
                let (xa, xb) = x.split_at(half);
                let (ya, yb) = y.split_at_mut(half);
                let (xb, ya, yb) = (&xb[..half], &mut ya[..half], &mut yb[..half]);
                for i in 0..half {
                    (ya[i], yb[i]) = rotate(xa[i], xb[i], cos[i], sin[i]);
                }
            }
            RopePairing::Interleaved => {
                for (i, (xp, yp)) in x.chunks_exact(2).zip(y.chunks_exact_mut(2)).enumerate() {
                    (yp[0], yp[1]) = rotate(xp[0], xp[1], cos[i], sin[i]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Op, reference};
    use super::*;
    use crate::tensor::TensorType;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(super::super::fixed_point::test_config(64))]

        #[test]
        fn every_path_matches_the_reference(
            x in proptest::collection::vec(any::<i16>(), 4 * 64),
            table in proptest::collection::vec(any::<i32>(), 5 * 32),
            interleaved in any::<bool>(), frac_bits in 0u32..=30, x_zp in any::<i16>(),
        ) {
            let x = Tensor::from_i16(vec![1, 4, 64], x).unwrap();
            let cos = Tensor::from_i32(vec![5, 32], table.clone()).unwrap();
            let sin = Tensor::from_i32(vec![5, 32], table.into_iter().rev().collect()).unwrap();
            let pairing = if interleaved { RopePairing::Interleaved } else { RopePairing::Half };
            let op = Op::Rope { x_zero_point: x_zp as i32, y_zero_point: -3, position_offset: 1, frac_bits, pairing };
            let ty = TensorType::new(DType::I16, vec![1, 4, 64]);
            let want = reference::execute(&op, &[&x, &cos, &sin], &ty).unwrap();
            for isa in Isa::available() {
                let rotation = Rotation {
                    cos: cos.as_i32("").unwrap(), sin: sin.as_i32("").unwrap(),
                    x_zp: x_zp as i64, y_zp: -3, position_offset: 1,
                    rounding: RoundShift::new(frac_bits), pairing,
                };
                prop_assert_eq!(&rotation.apply(isa, &x, DType::I16), &want, "{:?}", isa);
            }
        }
    }
}
