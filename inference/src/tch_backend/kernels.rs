//! The op set of `docs/ops.md` on libtorch tensors: one function per op, named as the spec
//! names it, plus the fixed-point primitives they share.
//!
//! Every intermediate is an `i64` tensor, and every function here is exact only inside
//! the `i64` bounds that [`fits_i64`] proves for a use of an op before it runs; a use it
//! cannot prove (wide `i32` operands with large multipliers, say) runs on the CPU engine
//! instead (`TchModel` decides, once per program). Integer tensor arithmetic in libtorch
//! is exact on every device; the one float step, the estimate inside [`isqrt`], is
//! corrected to the exact integer square root.

use super::Result;
use crate::ops::fixed_point::MAX_SHIFT;
use crate::ops::{Op, RopePairing};
use crate::tensor::{DType, TensorType};
use tch::{Device, Kind, Tensor};

/// Every intermediate of the `i64` paths stays at or below this magnitude, so that adding
/// a rounding half (at most `2^61`) never overflows.
const LIMIT: u128 = 1 << 62;

/// The libtorch kind of a dtype.
pub(crate) fn kind_of(dtype: DType) -> Kind {
    match dtype {
        DType::I8 => Kind::Int8,
        DType::I16 => Kind::Int16,
        DType::I32 => Kind::Int,
    }
}

/// The widest `|x - zp|` over every `x` of `dtype`.
fn deviation(dtype: DType, zp: i32) -> u128 {
    let zp = i64::from(zp);
    (dtype.max() - zp)
        .unsigned_abs()
        .max((zp - dtype.min()).unsigned_abs()) as u128
}

/// The widest `|v|` of `dtype`.
fn magnitude(dtype: DType) -> u128 {
    dtype.min().unsigned_abs() as u128
}

/// `floor(sqrt(v))` on `u128`, for bounds.
fn isqrt_bound(v: u128) -> u128 {
    crate::ops::fixed_point::isqrt(v)
}

/// Whether every intermediate of this use of `op` stays within `i64` on the paths below,
/// whatever the operand values (bounds from the operand dtypes and the op's parameters).
/// `inputs` are the operand types; a `false` sends the op to the CPU engine.
pub(crate) fn fits_i64(op: &Op, inputs: &[&TensorType]) -> bool {
    let dt = |i: usize| inputs.get(i).map_or(DType::I32, |t| t.dtype);
    let width = |i: usize| {
        inputs
            .get(i)
            .and_then(|t| t.shape.last().copied())
            .unwrap_or(0) as u128
    };
    match op {
        // |acc| <= 2^31 and |m| <= 2^31: |acc * m| <= 2^62 always.
        Op::FullyConnected { .. } | Op::BatchMatmul { .. } => true,
        Op::Add {
            a_zero_point,
            a_multiplier,
            b_zero_point,
            b_multiplier,
            ..
        } => {
            deviation(dt(0), *a_zero_point) * a_multiplier.unsigned_abs() as u128
                + deviation(dt(1), *b_zero_point) * b_multiplier.unsigned_abs() as u128
                <= LIMIT
        }
        Op::Mul {
            a_zero_point,
            b_zero_point,
            multiplier,
            ..
        } => {
            deviation(dt(0), *a_zero_point)
                .saturating_mul(deviation(dt(1), *b_zero_point))
                .saturating_mul(multiplier.unsigned_abs() as u128)
                <= LIMIT
        }
        Op::Requantize {
            x_zero_point,
            multiplier,
            ..
        } => deviation(dt(0), *x_zero_point) * multiplier.unsigned_abs() as u128 <= LIMIT,
        Op::LayerNorm { epsilon, shift, .. } => {
            // |d| <= N * (T.max - T.min).
            let n = width(0);
            let d = n * (dt(0).max() - dt(0).min()) as u128;
            norm_fits(n, d, 1u128 << 31, *epsilon, *shift)
        }
        Op::RmsNorm {
            x_zero_point,
            epsilon,
            shift,
            ..
        } => {
            let n = width(0);
            let d = n * deviation(dt(0), *x_zero_point);
            norm_fits(n, d, 0, *epsilon, *shift)
        }
        Op::Softmax { frac_bits, .. } | Op::SoftmaxNorm { frac_bits, .. } => {
            // e <= 2^31; S <= N * 2^31; e * 2^q + S / 2 below the limit.
            let n = width(0);
            let e = magnitude(DType::I32);
            (e << frac_bits) + n * e <= LIMIT
        }
        Op::Rope {
            x_zero_point,
            frac_bits,
            ..
        } => {
            2 * deviation(dt(0), *x_zero_point) * magnitude(DType::I32) + (1u128 << frac_bits)
                <= LIMIT
        }
        Op::MeanPool {
            x_zero_point,
            frac_bits,
            ..
        } => {
            let s = inputs
                .first()
                .and_then(|t| t.shape.get(1))
                .copied()
                .unwrap_or(0) as u128;
            (s * deviation(dt(0), *x_zero_point)) << frac_bits <= LIMIT
        }
        Op::Lut
        | Op::Embedding
        | Op::Reshape
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Slice { .. }
        | Op::Argmax
        | Op::SoftmaxExp { .. } => true,
    }
}

/// The norms' bounds: `d` bounds `|d[j]|`, `beta` bounds `|beta[j]|` (0 for `rms_norm`).
fn norm_fits(n: u128, d: u128, beta: u128, epsilon: u64, shift: u32) -> bool {
    let gamma = magnitude(DType::I32);
    let Some(sq) = d.checked_mul(d).and_then(|dd| dd.checked_mul(n)) else {
        return false;
    };
    let var = d * d + epsilon as u128;
    if sq > LIMIT || var > LIMIT || shift > MAX_SHIFT {
        return false;
    }
    let sigma = isqrt_bound(var) + 1;
    let num = d * gamma + beta * sigma;
    num <= LIMIT && (sigma << shift) <= LIMIT
}

// ---------------------------------------------------------------------------------------
// Primitives on i64 tensors.

/// `v` as an `i64` tensor (`v` itself when it already is one: never write into it).
fn wide(v: &Tensor) -> Result<Tensor> {
    Ok(v.f_to_kind(Kind::Int64)?)
}

/// Runs an in-place libtorch step (which also returns a handle to its tensor, dropped).
fn in_place(step: std::result::Result<Tensor, tch::TchError>) -> Result<()> {
    step.map(drop).map_err(Into::into)
}

/// `v` as a fresh `i64` tensor, always a copy: the in-place steps below may write into it.
fn wide_copy(v: &Tensor) -> Result<Tensor> {
    Ok(v.f_to_dtype(Kind::Int64, false, true)?)
}

/// `v + (v >> 63)`, a fresh tensor: `v - 1` where `v` is negative, `v` elsewhere.
///
/// This is what makes the roundings below free of a select: for `s >= 1`,
/// `round_shift(v, s) = sign(v) * ((|v| + 2^(s-1)) >> s)` equals
/// `(v + 2^(s-1) + t) >> s` with `t = -1` for negative `v` and 0 otherwise (for `v < 0`,
/// `-floor((-v + h) / 2^s) = ceil((v - h) / 2^s) = floor((v - h + 2^s - 1) / 2^s)`, and
/// `-h + 2^s - 1 = h - 1`). Two passes over the data instead of six, one of them a select.
fn toward_zero_bias(v: &Tensor) -> Result<Tensor> {
    Ok(v.f_add(&v.f_bitwise_right_shift_tensor_scalar(63i64)?)?)
}

/// `round_shift(v, s)` for a fixed `s <= 62` and `|v| <= 2^62`:
/// `sign(v) * ((|v| + 2^(s-1)) >> s)`, as `(v + t + 2^(s-1)) >> s` (see
/// [`toward_zero_bias`]).
fn round_shift(v: &Tensor, s: u32) -> Result<Tensor> {
    if s == 0 {
        return Ok(v.shallow_clone());
    }
    let mut q = toward_zero_bias(v)?;
    in_place(q.f_add_scalar_(1i64 << (s - 1)))?;
    in_place(q.f_bitwise_right_shift_tensor_scalar_(i64::from(s)))?;
    Ok(q)
}

/// `sat_T(y_zp + round_shift(v, s))` as a tensor of dtype `T`, for a fixed `s <= 62` and
/// `|v| <= 2^62`. The zero point joins the rounding constant before the shift where that
/// stays inside `i64` (adding `y_zp 2^s` before an arithmetic shift by `s` adds `y_zp`
/// after it), so the whole requantization is six passes.
fn requantize_to(v: &Tensor, s: u32, y_zero_point: i32, dtype: DType) -> Result<Tensor> {
    let zp = i64::from(y_zero_point);
    if s == 0 {
        return saturate(v, y_zero_point, dtype);
    }
    let mut q = toward_zero_bias(v)?;
    let half = 1i128 << (s - 1);
    let folded = half + (i128::from(zp) << s);
    // |v + t| <= 2^62 + 1 and |folded| < 2^62: the sum stays inside i64.
    if folded.unsigned_abs() < 1u128 << 62 {
        in_place(q.f_add_scalar_(folded as i64))?;
        in_place(q.f_bitwise_right_shift_tensor_scalar_(i64::from(s)))?;
    } else {
        in_place(q.f_add_scalar_(half as i64))?;
        in_place(q.f_bitwise_right_shift_tensor_scalar_(i64::from(s)))?;
        in_place(q.f_add_scalar_(zp))?;
    }
    clamp_to(q, dtype)
}

/// `q` (a fresh `i64` tensor, written in place) saturated to `dtype`, as that dtype.
fn clamp_to(mut q: Tensor, dtype: DType) -> Result<Tensor> {
    in_place(q.f_clamp_(dtype.min(), dtype.max()))?;
    Ok(q.f_to_kind(kind_of(dtype))?)
}

/// `round_div(a, b)` for `b > 0` (and `|a| + b / 2 < 2^63`):
/// `sign(a) * floor((|a| + floor(b / 2)) / b)`, as one floor division without a select.
/// For `a < 0`, `-floor((-a + h) / b) = floor((a - h + b - 1) / b)` with `h = floor(b / 2)`,
/// and `-h + b - 1` is `h - 1` for an even `b` and `h` for an odd one: so the numerator is
/// `a + h`, less one where `a` is negative and `b` even.
fn round_div(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    // -1 where b is even, 0 where odd (b is small: a row's divisor).
    let even = b.f_bitwise_and(1i64)?.f_sub_scalar(1i64)?;
    let mut num = a.f_bitwise_right_shift_tensor_scalar(63i64)?;
    in_place(num.f_bitwise_and_tensor_(&even))?;
    in_place(num.f_add_(a))?;
    in_place(num.f_add_(&b.f_bitwise_right_shift_tensor_scalar(1i64)?))?;
    Ok(num.f_div_tensor_mode(b, "floor")?)
}

/// `wrap32(v)` in place: `v` reduced modulo `2^32` into `[-2^31, 2^31)`, for `|v| < 2^62`.
fn wrap32_(v: &mut Tensor) -> Result<()> {
    in_place(v.f_add_scalar_(1i64 << 31))?;
    in_place(v.f_bitwise_and_((1i64 << 32) - 1))?;
    in_place(v.f_sub_scalar_(1i64 << 31))?;
    Ok(())
}

/// `sat_T(y_zp + v)` as a tensor of dtype `T`, for a fresh `v` (written in place).
fn saturate_fresh(mut v: Tensor, y_zero_point: i32, dtype: DType) -> Result<Tensor> {
    if y_zero_point != 0 {
        in_place(v.f_add_scalar_(i64::from(y_zero_point)))?;
    }
    clamp_to(v, dtype)
}

/// `sat_T(y_zp + v)` as a tensor of dtype `T`.
fn saturate(v: &Tensor, y_zero_point: i32, dtype: DType) -> Result<Tensor> {
    clamp_to(v.f_add_scalar(i64::from(y_zero_point))?, dtype)
}

/// `floor(sqrt(v))` for `0 <= v <= 2^62`: the float square root, then corrected until
/// `r^2 <= v < (r + 1)^2` holds exactly. The estimate is within one of the answer (the
/// conversion and the square root each err by half an ulp, far below one at `2^31`); two
/// corrections each way leave a margin. Every product stays below `2^63`.
pub(crate) fn isqrt(v: &Tensor) -> Result<Tensor> {
    let mut r = v
        .f_to_kind(Kind::Double)?
        .f_sqrt()?
        .f_floor()?
        .f_to_kind(Kind::Int64)?;
    for _ in 0..2 {
        let too_big = r.f_mul(&r)?.f_gt_tensor(v)?;
        r = r.f_sub(&too_big.f_to_kind(Kind::Int64)?)?;
    }
    for _ in 0..2 {
        let next = r.f_add_scalar(1i64)?;
        let fits = next.f_mul(&next)?.f_le_tensor(v)?;
        r = r.f_add(&fits.f_to_kind(Kind::Int64)?)?;
    }
    Ok(r)
}

/// The exact integer product `a [R, K] x b [K, N]` of two `i8` matrices, as `i32`, correct
/// modulo `2^32` (what the `wrap32` accumulators need; exact outright for `K < 2^17`).
///
/// On CUDA, libtorch's `_int_mm` (`i8 x i8 -> i32`, cuBLASLt), which asks for more than 16
/// rows and `K`, `N` multiples of 8: the operands are zero-padded, which adds only zero
/// products. Where the kernel refuses a shape, the same product runs on the CPU.
///
/// On the CPU, a floating-point product that is exact ([`exact_float`]): the CPU `_int_mm`
/// reorders its operand on every call and, without AVX-512 VNNI, runs at ~2 GOP/s (AMD EPYC
/// with AVX2: 8.9 ms for `[16, 384] x [384, 1536]`, against 0.8 ms as `f32`). `b` may
/// already be in that kind (a weight prepared by [`transpose_weight`]).
pub(crate) fn int_mm(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (r, k) = (a.size()[0], a.size()[1]);
    let n = b.size()[1];
    if r == 0 || k == 0 || n == 0 {
        return Ok(Tensor::f_zeros([r, n], (Kind::Int, a.device()))?);
    }
    let device = a.device();
    if device == Device::Cpu {
        return float_product(a, b, k);
    }
    let (a, b) = (&row_major(a)?, &row_major(b)?);
    let up = |v: i64, m: i64| (v + m - 1) / m * m;
    let (rp, kp, np) = (r.max(17), up(k, 8), up(n, 8));
    let product = a
        .f_constant_pad_nd([0, kp - k, 0, rp - r])
        .and_then(|ap| Ok((ap, b.f_constant_pad_nd([0, np - n, 0, kp - k])?)))
        .and_then(|(ap, bp)| ap.f_internal_int_mm(&bp))
        .and_then(|p| p.f_narrow(0, 0, r)?.f_narrow(1, 0, n));
    match product {
        Ok(p) => Ok(p),
        Err(_) => int_mm(&a.f_to(Device::Cpu)?, &b.f_to(Device::Cpu)?)?
            .f_to(device)
            .map_err(Into::into),
    }
}

/// The integer products `a [B, R, K] x b [B, K, N]`, batch by batch, as `i32` (see
/// [`int_mm`]): one batched float product on the CPU, one `_int_mm` a batch on CUDA.
fn int_bmm(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (batches, k) = (a.size()[0], a.size()[2]);
    if a.device() == Device::Cpu && a.numel() > 0 && b.numel() > 0 {
        return float_product(a, b, k);
    }
    let products = (0..batches)
        .map(|j| int_mm(&a.f_select(0, j)?, &b.f_select(0, j)?.f_contiguous()?))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::f_stack(&products, 0)?)
}

/// The floating-point kind in which every product of `i8` matrices with inner dimension
/// `k` is exact, whatever the order of its additions: each term `|a b| <= 2^14`, so every
/// partial sum is an integer of magnitude at most `k 2^14`, which `f32` holds exactly up to
/// `2^24` (`k <= 1024`) and `f64` up to `2^53` (`k <= 2^39`). Exact terms and exact partial
/// sums make every rounding (FMA included) a no-op, so the blocking, vectorization and
/// threading a BLAS chooses cannot change the result.
fn exact_float(k: i64) -> Kind {
    if k <= 1 << 10 {
        Kind::Float
    } else {
        Kind::Double
    }
}

/// The floating-point kind in which `x w^T` is exact for every `i8` row `x` and this `i8`
/// weight `w [N, K]`: every partial sum of output `j` is bounded by `128 sum_k |w_jk|`, so
/// `f32` serves wherever `128 max_j sum_k |w_jk| <= 2^24`, which real weights meet at any
/// `K` MiniLM has (its `K = 1536` products would need `f64` by [`exact_float`] alone).
fn weight_float(w: &crate::tensor::Tensor) -> Result<Kind> {
    let values = w.as_i8("fully_connected weight")?;
    let k = w.ty().shape.last().copied().unwrap_or(0);
    if k == 0 {
        return Ok(Kind::Float);
    }
    let widest = values
        .chunks(k)
        .map(|row| {
            row.iter()
                .map(|&v| u64::from(v.unsigned_abs()))
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    Ok(if 128 * widest <= 1 << 24 {
        Kind::Float
    } else {
        exact_float(k as i64)
    })
}

/// `a x b` (matrices, or batches of them) of `i8` values, as `i32` (modulo `2^32` beyond
/// `i32`), in [`exact_float`] of `k`, or in `b`'s kind where `b` is already a float (a
/// weight converted by [`transpose_weight`] to its [`weight_float`]).
fn float_product(a: &Tensor, b: &Tensor, k: i64) -> Result<Tensor> {
    let kind = match b.f_kind()? {
        kind @ (Kind::Float | Kind::Double) => kind,
        _ => exact_float(k),
    };
    let convert = |t: &Tensor| -> Result<Tensor> {
        Ok(if t.f_kind()? == kind {
            t.shallow_clone()
        } else {
            t.f_to_kind(kind)?
        })
    };
    let product = convert(a)?.f_matmul(&convert(b)?)?;
    // A float out of the target's range does not convert to it: past `2^31` (only where
    // `k > 2^17`), through `i64`, which wraps to `i32` as the contract says.
    if k > 1 << 17 {
        return Ok(product.f_to_kind(Kind::Int64)?.f_to_kind(Kind::Int)?);
    }
    Ok(product.f_to_kind(Kind::Int)?)
}

/// `m` with the strides of a fresh row-major matrix, `[cols, 1]`. libtorch calls a matrix
/// with a dimension of size 1 contiguous whatever that dimension's stride, and the integer
/// GEMM then reads such a matrix wrongly (a `[1, 8]` row with strides `[1, 1]` gave zeros):
/// so copy into a fresh matrix unless the strides are exactly the canonical ones.
fn row_major(m: &Tensor) -> Result<Tensor> {
    let cols = m.size()[1];
    if m.stride() == [cols, 1] {
        return Ok(m.shallow_clone());
    }
    let mut fresh = Tensor::f_empty(m.size(), (m.f_kind()?, m.device()))?;
    fresh.f_copy_(m)?;
    Ok(fresh)
}

// ---------------------------------------------------------------------------------------
// The ops. Operands arrive with the dtypes and shapes `Op::check` accepted.

/// A `fully_connected`'s constant operands, prepared once per use of the op (from the host
/// copies of its weights): `w^T` for `_int_mm`, the bias with the `x` zero point folded in,
/// and the per-channel multipliers, shifts and rounding constants as `i64` tensors. The
/// accumulators are wrapped to 32 bits only where the operand bounds let them leave `i32`,
/// and the output zero point joins the rounding constant where that stays inside `i64`.
pub(crate) struct FcConsts {
    /// `w^T`, `[K, N]`, contiguous: `i8`, or on the CPU already in its [`weight_float`].
    w_t: Tensor,
    /// `bias - x_zp * rowsum(w)`, `i64 [N]`.
    bias: Tensor,
    /// `i64 [N]`.
    multiplier: Tensor,
    /// `i64 [N]`.
    shift: Tensor,
    /// `2^(s-1)` (0 where `s = 0`), plus `y_zp 2^s` when `zp_folded`; `i64 [N]`.
    round: Tensor,
    /// -1 where `s > 0` and 0 where `s = 0`, `i64 [N]`; `None` when every shift is positive.
    nonzero_shift: Option<Tensor>,
    zp_folded: bool,
    y_zero_point: i32,
    /// Whether an accumulator can leave `[-2^31, 2^31)` (or `_int_mm` wrap), so `wrap32`
    /// must run.
    wrap: bool,
}

/// The host operands of a `fully_connected` (`w: i8 [N, K]`, `bias`, `multiplier`, `shift`:
/// `i32 [N]`), for [`FcConsts::new`].
pub(crate) struct FcOperands<'a> {
    pub(crate) w: &'a crate::tensor::Tensor,
    pub(crate) bias: &'a crate::tensor::Tensor,
    pub(crate) multiplier: &'a crate::tensor::Tensor,
    pub(crate) shift: &'a crate::tensor::Tensor,
}

impl FcConsts {
    /// Prepares the constants from the host operands; `w_t` is `w^T` already on `device`
    /// (shared by every use of the same weight). Refuses a shift outside `0..=62`.
    pub(crate) fn new(
        w_t: Tensor,
        ops: &FcOperands<'_>,
        x_zero_point: i32,
        y_zero_point: i32,
        device: Device,
    ) -> Result<Self> {
        let w = ops.w.as_i8("fully_connected weight")?;
        let bias = ops.bias.as_i32("fully_connected bias")?;
        let multiplier = ops.multiplier.as_i32("fully_connected multiplier")?;
        let shift = ops.shift.as_i32("fully_connected shift")?;
        crate::ops::check_shifts(crate::ops::OpKind::FullyConnected, shift)?;
        let n = bias.len();
        let k = w.len().checked_div(n).unwrap_or(0);
        let dev = deviation(DType::I8, x_zero_point);
        let zp = i128::from(y_zero_point);
        let mut wrap = false;
        let mut bias_eff = Vec::with_capacity(n);
        let (mut round, mut round_folded) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut zp_folded = true;
        for j in 0..n {
            let row = &w[j * k..(j + 1) * k];
            let sum: i64 = row.iter().map(|&v| i64::from(v)).sum();
            let abs: u128 = row.iter().map(|&v| u128::from(v.unsigned_abs())).sum();
            bias_eff.push(i64::from(bias[j]) - i64::from(x_zero_point) * sum);
            // `_int_mm` sums x w exactly while 128 sum |w| fits i32; the accumulator
            // bias + sum (x - x_zp) w stays inside i32 while its bound does.
            let limit = (1u128 << 31) - 1;
            if 128 * abs > limit || u128::from(bias[j].unsigned_abs()) + dev * abs > limit {
                wrap = true;
            }
            let s = shift[j] as u32;
            let half = if s == 0 { 0 } else { 1i128 << (s - 1) };
            let folded = half + (zp << s);
            zp_folded &= folded.unsigned_abs() < 1u128 << 62;
            round.push(half as i64);
            round_folded.push(folded as i64);
        }
        let upload = |v: &[i64]| -> Result<Tensor> { Ok(Tensor::f_from_slice(v)?.f_to(device)?) };
        let widen = |v: &[i32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>();
        let nonzero_shift = if shift.iter().all(|&s| s > 0) {
            None
        } else {
            let m: Vec<i64> = shift.iter().map(|&s| if s > 0 { -1 } else { 0 }).collect();
            Some(upload(&m)?)
        };
        Ok(Self {
            w_t,
            bias: upload(&bias_eff)?,
            multiplier: upload(&widen(multiplier))?,
            shift: upload(&widen(shift))?,
            round: upload(if zp_folded { &round_folded } else { &round })?,
            nonzero_shift,
            zp_folded,
            y_zero_point,
            wrap,
        })
    }
}

/// `w [N, K]` (on its device; `host` is the same weight in host memory) transposed to a
/// contiguous `[K, N]` matrix, for [`FcConsts::new`]: `i8` for `_int_mm` on CUDA, converted
/// once to the weight's [`weight_float`] on the CPU (see [`int_mm`]).
pub(crate) fn transpose_weight(w: &Tensor, host: &crate::tensor::Tensor) -> Result<Tensor> {
    let kind = if w.device() == Device::Cpu {
        weight_float(host)?
    } else {
        Kind::Int8
    };
    transpose_to(w, kind)
}

/// `w^T`, contiguous, in `kind`.
fn transpose_to(w: &Tensor, kind: Kind) -> Result<Tensor> {
    Ok(w.f_transpose(0, 1)?.f_to_kind(kind)?.f_contiguous()?)
}

/// `fully_connected`: `y = sat(y_zp + round_shift(wrap32(bias + sum (x - x_zp) w) * m, s))`
/// per output channel. `sum (x - x_zp) w = x w^T - x_zp * rowsum(w)`, exact mod `2^32`.
///
/// After the product: one add (the `i32` product plus the `i64` bias gives a fresh `i64`
/// tensor), the multiply, and the rounding shift with the zero point, all in place but
/// the sign step: eight passes where there were eighteen.
pub(crate) fn fully_connected(x: &Tensor, c: &FcConsts, out: &TensorType) -> Result<Tensor> {
    let k = c.w_t.size()[0];
    let rows: i64 = x.size().iter().rev().skip(1).product();
    let x2 = x.f_reshape([rows, k])?;
    let mut acc = int_mm(&x2, &c.w_t)?.f_add(&c.bias)?;
    if c.wrap {
        wrap32_(&mut acc)?;
    }
    // |wrap32(acc)| <= 2^31 and |m| <= 2^31: |p| <= 2^62.
    in_place(acc.f_mul_(&c.multiplier))?;
    // round_shift per channel (see `toward_zero_bias`); a zero shift takes no -1.
    let mut q = acc.f_bitwise_right_shift_tensor_scalar(63i64)?;
    if let Some(m) = &c.nonzero_shift {
        in_place(q.f_bitwise_and_tensor_(m))?;
    }
    in_place(q.f_add_(&acc))?;
    in_place(q.f_add_(&c.round))?;
    in_place(q.f_bitwise_right_shift_(&c.shift))?;
    if !c.zp_folded {
        in_place(q.f_add_scalar_(i64::from(c.y_zero_point)))?;
    }
    clamp_to(q, out.dtype)?
        .f_reshape(shape_of(out))
        .map_err(Into::into)
}

/// `batch_matmul`: batch `i` of `a` against batch `i / (Ba / Bb)` of `b`, zero points
/// folded out of the integer product, one requantization.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_matmul(
    a: &Tensor,
    b: &Tensor,
    transpose_b: bool,
    a_zero_point: i32,
    b_zero_point: i32,
    multiplier: i32,
    shift: u32,
    y_zero_point: i32,
    out: &TensorType,
) -> Result<Tensor> {
    let (ba, m, k) = (a.size()[0], a.size()[1], a.size()[2]);
    let bb = b.size()[0];
    let group = ba / bb;
    // The `group` query batches that share one `b` batch are consecutive: stack their rows.
    let a3 = a.f_reshape([bb, group * m, k])?;
    // A transposed view: the CPU's float product reads any strides, and `int_bmm` copies
    // each CUDA batch into the row-major layout `_int_mm` needs.
    let b3 = if transpose_b {
        b.f_transpose(1, 2)?
    } else {
        b.shallow_clone()
    };
    let n = b3.size()[2];
    let mut acc = wide_copy(&int_bmm(&a3, &b3)?)?;
    // sum (a - za)(b - zb) = sum ab - zb sum a - za sum b + K za zb.
    if b_zero_point != 0 {
        let row_sums = a3.f_sum_dim_intlist([2i64].as_slice(), true, Kind::Int64)?;
        in_place(acc.f_sub_(&row_sums.f_mul_scalar(i64::from(b_zero_point))?))?;
    }
    if a_zero_point != 0 {
        let col_sums = b3.f_sum_dim_intlist([1i64].as_slice(), true, Kind::Int64)?;
        in_place(acc.f_sub_(&col_sums.f_mul_scalar(i64::from(a_zero_point))?))?;
    }
    if a_zero_point != 0 && b_zero_point != 0 {
        in_place(acc.f_add_scalar_(k * i64::from(a_zero_point) * i64::from(b_zero_point)))?;
    }
    // `_int_mm` is exact while K 2^14 fits i32, and the sum stays inside i32 while
    // K |a - za| |b - zb| does: then wrap32 changes nothing.
    let limit = (1u128 << 31) - 1;
    let k_wide = k.unsigned_abs() as u128;
    let bound = k_wide * deviation(DType::I8, a_zero_point) * deviation(DType::I8, b_zero_point);
    if k_wide << 14 > limit || bound > limit {
        wrap32_(&mut acc)?;
    }
    in_place(acc.f_mul_scalar_(i64::from(multiplier)))?;
    requantize_to(&acc, shift, y_zero_point, out.dtype)?
        .f_reshape([ba, m, n])
        .map_err(Into::into)
}

/// `(v - zp) * m` as a fresh `i64` tensor, skipping the steps that change nothing.
fn offset_scaled(v: &Tensor, zero_point: i32, multiplier: i64) -> Result<Tensor> {
    let mut t = wide_copy(v)?;
    if zero_point != 0 {
        in_place(t.f_sub_scalar_(i64::from(zero_point)))?;
    }
    if multiplier != 1 {
        in_place(t.f_mul_scalar_(multiplier))?;
    }
    Ok(t)
}

/// `add`: one rounding of the sum of both rescaled operands.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add(
    a: &Tensor,
    b: &Tensor,
    a_zero_point: i32,
    a_multiplier: i32,
    b_zero_point: i32,
    b_multiplier: i32,
    shift: u32,
    y_zero_point: i32,
    out: &TensorType,
) -> Result<Tensor> {
    let ta = offset_scaled(a, a_zero_point, i64::from(a_multiplier))?;
    let tb = offset_scaled(b, b_zero_point, i64::from(b_multiplier))?;
    // Out of place: either operand may broadcast against the other.
    requantize_to(&ta.f_add(&tb)?, shift, y_zero_point, out.dtype)
}

/// `mul`: `round_shift((a - a_zp)(b - b_zp) m, s)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn mul(
    a: &Tensor,
    b: &Tensor,
    a_zero_point: i32,
    b_zero_point: i32,
    multiplier: i32,
    shift: u32,
    y_zero_point: i32,
    out: &TensorType,
) -> Result<Tensor> {
    let ta = offset_scaled(a, a_zero_point, 1)?;
    let tb = offset_scaled(b, b_zero_point, 1)?;
    let mut p = ta.f_mul(&tb)?;
    in_place(p.f_mul_scalar_(i64::from(multiplier)))?;
    requantize_to(&p, shift, y_zero_point, out.dtype)
}

/// `requantize`: `round_shift((x - x_zp) m, s)`.
pub(crate) fn requantize(
    x: &Tensor,
    x_zero_point: i32,
    multiplier: i32,
    shift: u32,
    y_zero_point: i32,
    out: &TensorType,
) -> Result<Tensor> {
    let p = offset_scaled(x, x_zero_point, i64::from(multiplier))?;
    requantize_to(&p, shift, y_zero_point, out.dtype)
}

/// `lut`: `table[x + 128]`, a gather with `index_select`.
pub(crate) fn lut(x: &Tensor, table: &Tensor) -> Result<Tensor> {
    let idx = wide(x)?.f_add_scalar(128i64)?.f_reshape([-1])?;
    Ok(table.f_index_select(0, &idx)?.f_reshape(x.size())?)
}

/// `softmax`: the exp table indexed by the distance below the row maximum over the kept
/// columns, normalized with one exact rounding division.
pub(crate) fn softmax(
    x: &Tensor,
    table: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
    frac_bits: u32,
    y_zero_point: i32,
    out: &TensorType,
) -> Result<Tensor> {
    let e = exps(x, table, mask, causal)?;
    normalize(&e, frac_bits, y_zero_point, out)?
        .f_reshape(x.size().as_slice())
        .map_err(Into::into)
}

/// `softmax_exp`: the `e[c]` of [`softmax`], as `i32`.
pub(crate) fn softmax_exp(
    x: &Tensor,
    table: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
) -> Result<Tensor> {
    Ok(exps(x, table, mask, causal)?
        .f_to_kind(Kind::Int)?
        .f_reshape(x.size().as_slice())?)
}

/// `softmax_norm`: each row of `e` (a negative entry read as 0) divided by its sum.
pub(crate) fn softmax_norm(
    e: &Tensor,
    frac_bits: u32,
    y_zero_point: i32,
    out: &TensorType,
) -> Result<Tensor> {
    let n = e.size()[e.size().len() - 1];
    let e2 = wide(e)?.f_clamp_min(0i64)?.f_reshape([-1, n])?;
    normalize(&e2, frac_bits, y_zero_point, out)?
        .f_reshape(e.size().as_slice())
        .map_err(Into::into)
}

/// The `e[c]` of a softmax as `i64` (0 for a dropped column), rows on the last axis.
fn exps(x: &Tensor, table: &Tensor, mask: Option<&Tensor>, causal: bool) -> Result<Tensor> {
    let shape = x.size();
    let rank = shape.len();
    let n = shape[rank - 1];
    let m = if rank >= 2 { shape[rank - 2] } else { 1 };
    let l: i64 = shape[..rank.saturating_sub(2)].iter().product();
    let device = x.device();
    let g = mask.map_or(1, |mk| mk.size()[0]);
    // [G, L / G, M, N]: the rows sharing mask row g are consecutive.
    let x4 = wide(x)?.f_reshape([g, l / g, m, n])?;
    let mut kept = match mask {
        Some(mk) => mk.f_ne(0i64)?.f_reshape([g, 1, 1, n])?,
        None => Tensor::f_ones([1, 1, 1, n], (Kind::Bool, device))?,
    };
    if causal {
        // Column c of row r is kept when c + M <= r + N.
        let cols = Tensor::f_arange(n, (Kind::Int64, device))?
            .f_add_scalar(m)?
            .f_reshape([1, n])?;
        let rows = Tensor::f_arange(m, (Kind::Int64, device))?
            .f_add_scalar(n)?
            .f_reshape([m, 1])?;
        kept = kept.f_logical_and(&cols.f_le_tensor(&rows)?.f_reshape([1, 1, m, n])?)?;
    }
    // 1 for a kept column, 0 for a dropped one: [G, 1, 1 or M, N], broadcast below.
    let kept = kept.f_to_kind(Kind::Int64)?;
    // x is i8 or i16: anything below -2^16 is below every kept value, so 2^20 off each
    // dropped column leaves the maximum to the kept ones.
    let dropped = kept.f_sub_scalar(1i64)?.f_mul_scalar(1i64 << 20)?;
    let max = x4.f_add(&dropped)?.f_amax([-1i64].as_slice(), true)?;
    let t = table.size()[0];
    let mut idx = max.f_sub(&x4)?;
    in_place(idx.f_clamp_(0i64, t - 1))?;
    // A negative entry reads as 0; a dropped column's is 0.
    let mut e = table.f_index_select(0, &idx.f_reshape([-1])?)?;
    in_place(e.f_clamp_min_(0i64))?;
    Ok(e.f_reshape([g, l / g, m, n])?.f_mul(&kept)?)
}

/// Rows of non-negative `i64` `e` divided by their sums with one exact rounding division,
/// saturated to the output (every element `y_zp` in a row whose sum is 0).
fn normalize(e: &Tensor, frac_bits: u32, y_zero_point: i32, out: &TensorType) -> Result<Tensor> {
    let sum = e.f_sum_dim_intlist([-1i64].as_slice(), true, Kind::Int64)?;
    let q = e
        .f_bitwise_left_shift_tensor_scalar(i64::from(frac_bits))?
        .f_add(&sum.f_bitwise_right_shift_tensor_scalar(1i64)?)?
        .f_div_tensor_mode(&sum.f_clamp_min(1i64)?, "floor")?;
    // A zero sum means every e of the row is 0, and then q is (0 + 0) / 1 = 0.
    saturate_fresh(q, y_zero_point, out.dtype)
}

/// `layer_norm` over the last axis: `d = N x - sum x`, `sigma = isqrt(sum d^2 / N + eps)`,
/// `y = round_div(d gamma + beta sigma, sigma 2^shift)`, and `round_shift(beta, shift)`
/// where `sigma = 0`.
///
/// `sigma` is 0 only where every `d` is 0 (with `epsilon = 0`, `sum d^2 < N` needs it: the
/// `d` of a row are all congruent to `-sum x` modulo `N` and sum to 0, so one nonzero `d`
/// makes `sum d^2 >= N`), and then `round_div(beta, 2^shift) = round_shift(beta, shift)`:
/// so `sigma` clamped to at least 1 gives every row its answer without a select.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    epsilon: u64,
    shift: u32,
    y_zero_point: i32,
    out: &TensorType,
) -> Result<Tensor> {
    let n = gamma.size()[0];
    let mut d = wide_copy(x)?.f_reshape([-1, n])?;
    let sum = d.f_sum_dim_intlist([-1i64].as_slice(), true, Kind::Int64)?;
    in_place(d.f_mul_scalar_(n))?;
    in_place(d.f_sub_(&sum))?;
    let sigma = norm_sigma(&d, n, epsilon)?.f_clamp_min(1i64)?;
    let mut num = d.f_mul(&wide(gamma)?)?;
    in_place(num.f_addcmul_(&wide(beta)?, &sigma))?;
    let den = sigma.f_bitwise_left_shift_tensor_scalar(i64::from(shift))?;
    saturate_fresh(round_div(&num, &den)?, y_zero_point, out.dtype)?
        .f_reshape(x.size())
        .map_err(Into::into)
}

/// `isqrt(floor(sum_j d[j]^2 / N) + epsilon)` per row, keeping the row axis.
fn norm_sigma(d: &Tensor, n: i64, epsilon: u64) -> Result<Tensor> {
    let sq = d
        .f_mul(d)?
        .f_sum_dim_intlist([-1i64].as_slice(), true, Kind::Int64)?;
    // `fits_i64` bounds epsilon below 2^62.
    let var = sq
        .f_div_tensor_mode(&Tensor::f_from_slice(&[n])?.f_to(d.device())?, "floor")?
        .f_add_scalar(epsilon as i64)?;
    isqrt(&var)
}

/// `rms_norm` over the last axis: `d = N (x - x_zp)`,
/// `y = round_div(d gamma, isqrt(sum d^2 / N + eps) 2^shift)`, and 0 where `sigma = 0`
/// (every `d` is then 0, as in [`layer_norm`]: `sigma` clamped to 1 gives that 0).
#[allow(clippy::too_many_arguments)]
pub(crate) fn rms_norm(
    x: &Tensor,
    gamma: &Tensor,
    x_zero_point: i32,
    epsilon: u64,
    shift: u32,
    y_zero_point: i32,
    out: &TensorType,
) -> Result<Tensor> {
    let n = gamma.size()[0];
    let d = offset_scaled(x, x_zero_point, n)?.f_reshape([-1, n])?;
    let sigma = norm_sigma(&d, n, epsilon)?.f_clamp_min(1i64)?;
    let den = sigma.f_bitwise_left_shift_tensor_scalar(i64::from(shift))?;
    let y = round_div(&d.f_mul(&wide(gamma)?)?, &den)?;
    saturate_fresh(y, y_zero_point, out.dtype)?
        .f_reshape(x.size())
        .map_err(Into::into)
}

/// `embedding`: a row gather with `index_select`; an index outside the table gives zeros.
pub(crate) fn embedding(table: &Tensor, indices: &Tensor, out: &TensorType) -> Result<Tensor> {
    let (v, d) = (table.size()[0], table.size()[1]);
    let idx = wide(indices)?.f_reshape([-1])?;
    if v == 0 {
        return Ok(Tensor::f_zeros(
            shape_of(out),
            (kind_of(out.dtype), table.device()),
        )?);
    }
    let inside = idx.f_ge(0i64)?.f_logical_and(&idx.f_lt(v)?)?;
    let rows = table.f_index_select(0, &idx.f_where_scalarother(&inside, 0i64)?)?;
    let zeros = rows.f_zeros_like()?;
    debug_assert_eq!(rows.size()[1], d);
    Ok(rows
        .f_where_self(&inside.f_reshape([-1, 1])?, &zeros)?
        .f_reshape(shape_of(out))?)
}

/// `rope`: each pair rotated by the fixed-point cos and sin of its position.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rope(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    x_zero_point: i32,
    y_zero_point: i32,
    position_offset: u32,
    frac_bits: u32,
    pairing: RopePairing,
    out: &TensorType,
) -> Result<Tensor> {
    let shape = x.size();
    let rank = shape.len();
    let (s, d) = (shape[rank - 2], shape[rank - 1]);
    let half = d / 2;
    let offset = i64::from(position_offset);
    let c = wide(&cos.f_narrow(0, offset, s)?)?;
    let sn = wide(&sin.f_narrow(0, offset, s)?)?;
    let xz = wide(x)?.f_sub_scalar(i64::from(x_zero_point))?;
    let (a, b) = match pairing {
        RopePairing::Half => (xz.f_narrow(-1, 0, half)?, xz.f_narrow(-1, half, half)?),
        RopePairing::Interleaved => {
            let mut pairs = shape[..rank - 1].to_vec();
            pairs.extend([half, 2]);
            let p = xz.f_reshape(pairs.as_slice())?;
            (p.f_select(-1, 0)?, p.f_select(-1, 1)?)
        }
    };
    let first = round_shift(&a.f_mul(&c)?.f_sub(&b.f_mul(&sn)?)?, frac_bits)?;
    let second = round_shift(&b.f_mul(&c)?.f_add(&a.f_mul(&sn)?)?, frac_bits)?;
    let y = match pairing {
        RopePairing::Half => Tensor::f_cat(&[first, second], -1)?,
        RopePairing::Interleaved => {
            Tensor::f_stack(&[first, second], -1)?.f_reshape(shape.as_slice())?
        }
    };
    saturate_fresh(y, y_zero_point, out.dtype)
}

/// `mean_pool`: the masked sum over the last axis of `x [B, D, S]`, `round_div(2^q sum, count)`.
pub(crate) fn mean_pool(
    x: &Tensor,
    mask: &Tensor,
    x_zero_point: i32,
    frac_bits: u32,
    y_zero_point: i32,
    out: &TensorType,
) -> Result<Tensor> {
    let kept = mask.f_ne(0i64)?.f_to_kind(Kind::Int64)?.f_unsqueeze(1)?;
    let sum = wide(x)?
        .f_sub_scalar(i64::from(x_zero_point))?
        .f_mul(&kept)?
        .f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Int64)?;
    let count = kept.f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Int64)?;
    // A row with no kept column sums to 0, and round_div(0, 1) = 0: the answer for it.
    let y = round_div(
        &sum.f_bitwise_left_shift_tensor_scalar(i64::from(frac_bits))?,
        &count.f_clamp_min(1i64)?,
    )?;
    saturate_fresh(y, y_zero_point, out.dtype)
}

/// `argmax`: the smallest index holding the row maximum, as `i32`.
pub(crate) fn argmax(x: &Tensor) -> Result<Tensor> {
    let n = *x.size().last().unwrap_or(&1);
    let xw = wide(x)?;
    let max = xw.f_amax([-1i64].as_slice(), true)?;
    let idx = Tensor::f_arange(n, (Kind::Int64, x.device()))?;
    let at_max = idx.f_where_scalarother(&xw.f_eq_tensor(&max)?, n)?;
    Ok(at_max
        .f_amin([-1i64].as_slice(), false)?
        .f_to_kind(Kind::Int)?)
}

/// A declared shape as libtorch sizes.
pub(crate) fn shape_of(t: &TensorType) -> Vec<i64> {
    t.shape.iter().map(|&d| d as i64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::SplitMix64;

    fn i64s(t: &Tensor) -> Vec<i64> {
        let t = t.f_to_kind(Kind::Int64).unwrap().f_contiguous().unwrap();
        let mut v = vec![0i64; t.numel()];
        t.f_copy_data(&mut v, t.numel()).unwrap();
        v
    }

    #[test]
    fn int_mm_matches_the_naive_product() {
        let mut rng = SplitMix64(7);
        for (r, k, n) in [
            (1, 1, 1),
            (2, 1, 8),
            (1, 8, 1),
            (3, 5, 7),
            (17, 16, 8),
            (1, 40, 20),
            (9, 33, 3),
            (128, 384, 64),
            (4, 1024, 3),
            (3, 1025, 4),
            (2, 1536, 5),
        ] {
            let mut a: Vec<i8> = (0..r * k).map(|_| rng.next_u64() as i8).collect();
            let mut b: Vec<i8> = (0..k * n).map(|_| rng.next_u64() as i8).collect();
            // The first row and column at -128 throughout: the largest sums (`k 2^14`),
            // `2^24` at `k = 1024`, the most an exact `f32` product may reach.
            a[..k].fill(-128);
            (0..k).for_each(|kk| b[kk * n] = -128);
            let ta = Tensor::from_slice(&a).reshape([r as i64, k as i64]);
            let tb = Tensor::from_slice(&b).reshape([k as i64, n as i64]);
            let got = i64s(&int_mm(&ta, &tb).unwrap());
            for i in 0..r {
                for j in 0..n {
                    let want: i64 = (0..k)
                        .map(|kk| i64::from(a[i * k + kk]) * i64::from(b[kk * n + j]))
                        .sum();
                    assert_eq!(
                        got[i * n + j],
                        want,
                        "[{r}, {k}] x [{k}, {n}] at ({i}, {j})"
                    );
                }
            }
        }
    }

    /// A weight's CPU product runs in `f32` where its rows' absolute sums allow and in `f64`
    /// beyond, and matches the naive product with `x` at its extremes; where `f64` was
    /// chosen, `f32` would have been wrong.
    #[test]
    fn weight_products_are_exact_in_the_float_kind_chosen() {
        let mut rng = SplitMix64(5);
        // Small values at K = 1536 (f32 suffices); -127 throughout at K = 1100 (f64: the
        // sums pass 2^24 and are odd where x ends in 1, which f32 cannot hold).
        for (k, extreme, kind) in [(1536usize, false, Kind::Float), (1100, true, Kind::Double)] {
            let n = 3usize;
            let w: Vec<i8> = (0..n * k)
                .map(|_| {
                    if extreme {
                        -127
                    } else {
                        (rng.next_u64() % 41) as i8 - 20
                    }
                })
                .collect();
            let host =
                crate::tensor::Tensor::new(vec![n, k], crate::tensor::TensorData::I8(w.clone()))
                    .unwrap();
            assert_eq!(weight_float(&host).unwrap(), kind, "K = {k}");
            let mut x: Vec<i8> = (0..2 * k).map(|i| if i < k { -128 } else { 127 }).collect();
            x[2 * k - 1] = 1;
            let want: Vec<i64> = (0..2 * n)
                .map(|at| {
                    let (r, j) = (at / n, at % n);
                    (0..k)
                        .map(|kk| i64::from(x[r * k + kk]) * i64::from(w[j * k + kk]))
                        .sum()
                })
                .collect();
            let wt = Tensor::from_slice(&w).reshape([n as i64, k as i64]);
            let xt = Tensor::from_slice(&x).reshape([2, k as i64]);
            let product = |kind| i64s(&int_mm(&xt, &transpose_to(&wt, kind).unwrap()).unwrap());
            assert_eq!(product(kind), want, "K = {k}");
            if kind == Kind::Double {
                assert_ne!(product(Kind::Float), want, "K = {k}: f32 would round");
            }
        }
    }

    #[test]
    fn batch_matmul_of_one_row_against_a_transposed_b() {
        // `b` transposed gives a `[1, 8]` matrix with strides `[1, 1]` (see `row_major`).
        let a = Tensor::from_slice(&[-100i8]).reshape([1, 1, 1]);
        let b = Tensor::from_slice(&[1i8, 2, 3, 4, 5, 6, 7, -128]).reshape([1, 8, 1]);
        let out = TensorType::new(DType::I32, vec![1, 1, 8]);
        let y = batch_matmul(&a, &b, true, -28, -128, 1, 0, 0, &out).unwrap();
        let want: Vec<i64> = [1i64, 2, 3, 4, 5, 6, 7, -128]
            .iter()
            .map(|v| (-100 + 28) * (v + 128))
            .collect();
        assert_eq!(i64s(&y), want);
    }

    #[test]
    fn isqrt_is_exact() {
        let mut v: Vec<i64> = vec![0, 1, 2, 3, 1 << 62];
        for r in [
            2i64,
            4_095,
            1 << 20,
            (1 << 26) + 1,
            94_906_265,
            2_147_395_599,
            (1 << 31) - 1,
        ] {
            v.extend([r * r - 1, r * r, r * r + 1]);
        }
        let mut rng = SplitMix64(11);
        v.extend((0..1000).map(|_| (rng.next_u64() >> 2) as i64));
        let got = i64s(&isqrt(&Tensor::from_slice(&v)).unwrap());
        for (x, r) in v.iter().zip(got) {
            assert_eq!(
                r as u128,
                crate::ops::fixed_point::isqrt(*x as u128),
                "isqrt({x})"
            );
        }
    }
}
