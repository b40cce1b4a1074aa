//! The op set: one variant of [`Op`] per entry of `docs/ops.md`.
//!
//! Every op is defined once in the spec and implemented here by a fast kernel (one file per
//! family) and by [`reference`](mod@reference), a naive element-by-element transcription of the spec that
//! the property tests hold the kernels to. [`Op::check`] validates a use of an op (operand
//! dtypes and shapes, parameters, the declared output) before anything runs, so kernels
//! only meet inputs they are defined for.

pub mod fixed_point;
mod layout;
mod matmul;
mod norm;
mod pointwise;
mod reduce;
pub mod reference;
mod rope;
mod softmax;

use crate::error::{Error, Result};
use crate::gemm::PackedMatrix;
use crate::tensor::{DType, Tensor, TensorType};
use fixed_point::MAX_SHIFT;
use serde::{Deserialize, Serialize};

pub use layout::{concat, embedding, reshape, slice, transpose};
pub use matmul::{FcEpilogue, FcPart, batch_matmul, fully_connected, fully_connected_shared};
pub use norm::{layer_norm, rms_norm};
pub use pointwise::{add, lut, mul, requantize};
pub use reduce::{argmax, mean_pool};
pub use rope::rope;
pub use softmax::{softmax, softmax_exp, softmax_norm};

/// Which element of a pair RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopePairing {
    /// Element `i` with `i + D/2` (Hugging Face `rotate_half`).
    Half = 0,
    /// Element `2i` with `2i + 1` (the original RoFormer / GGUF layout).
    Interleaved = 1,
}

/// An op with its parameters. Operands (slots and weights) and the output type live in the
/// program's op node; see `docs/ops.md` for each op's exact semantics.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// `y = sat(y_zp + round_shift((bias + sum (x - x_zp) * w) * m[n], s[n]))`, per output channel.
    /// Operands: `x: i8 [.., K]`, `w: i8 [N, K]`, `bias: i32 [N]`, `multiplier: i32 [N]`,
    /// `shift: i32 [N]` (total right shifts).
    FullyConnected {
        /// Zero point of `x`.
        x_zero_point: i32,
        /// Zero point of the output.
        y_zero_point: i32,
    },
    /// Batched `a x b` (or `a x b^T`), requantized per tensor. Operands: `a: i8 [Ba, M, K]`,
    /// `b: i8 [Bb, K, N]` (or `[Bb, N, K]` when `transpose_b`), `Ba` a multiple of `Bb`.
    BatchMatmul {
        /// Whether `b` is stored as `[Bb, N, K]`.
        transpose_b: bool,
        /// Zero point of `a`.
        a_zero_point: i32,
        /// Zero point of `b`.
        b_zero_point: i32,
        /// Q31-style multiplier.
        multiplier: i32,
        /// Total right shift.
        shift: u32,
        /// Zero point of the output.
        y_zero_point: i32,
    },
    /// `y = sat(y_zp + round_shift((a - a_zp) * a_m + (b - b_zp) * b_m, s))`.
    Add {
        /// Zero point of `a`.
        a_zero_point: i32,
        /// Multiplier of `a`.
        a_multiplier: i32,
        /// Zero point of `b`.
        b_zero_point: i32,
        /// Multiplier of `b`.
        b_multiplier: i32,
        /// Total right shift.
        shift: u32,
        /// Zero point of the output.
        y_zero_point: i32,
    },
    /// `y = sat(y_zp + round_shift((a - a_zp) * (b - b_zp) * m, s))`.
    Mul {
        /// Zero point of `a`.
        a_zero_point: i32,
        /// Zero point of `b`.
        b_zero_point: i32,
        /// Multiplier.
        multiplier: i32,
        /// Total right shift.
        shift: u32,
        /// Zero point of the output.
        y_zero_point: i32,
    },
    /// `y = sat(y_zp + round_shift((x - x_zp) * m, s))`: a change of scale or dtype.
    Requantize {
        /// Zero point of `x`.
        x_zero_point: i32,
        /// Multiplier.
        multiplier: i32,
        /// Total right shift.
        shift: u32,
        /// Zero point of the output.
        y_zero_point: i32,
    },
    /// `y = table[x + 128]`. Operands: `x: i8`, `table: [256]` of the output dtype.
    Lut,
    /// Integer softmax over the last axis through an exp table, with optional masking.
    /// Operands: `x: i8|i16 [.., M, N]`, `exp_table: i32 [T]`, optionally `mask: [G, N]`.
    Softmax {
        /// Whether row `r` of the last two axes sees only columns `c <= r + N - M`.
        causal: bool,
        /// Fraction bits of the output probabilities.
        frac_bits: u32,
        /// Zero point of the output.
        y_zero_point: i32,
    },
    /// Integer layer norm over the last axis. Operands: `x [.., N]`, `gamma: i32 [N]`,
    /// `beta: i32 [N]`.
    LayerNorm {
        /// Added to the scaled variance before the square root.
        epsilon: u64,
        /// Fraction bits of `gamma` and `beta`.
        shift: u32,
        /// Zero point of the output.
        y_zero_point: i32,
    },
    /// Integer RMS norm over the last axis. Operands: `x [.., N]`, `gamma: i32 [N]`.
    RmsNorm {
        /// Zero point of `x`.
        x_zero_point: i32,
        /// Added to the scaled mean square before the square root.
        epsilon: u64,
        /// Fraction bits of `gamma`.
        shift: u32,
        /// Zero point of the output.
        y_zero_point: i32,
    },
    /// Row gather. Operands: `table [V, D]`, `indices: i32 [..]`; an index outside `[0, V)`
    /// gives a row of zeros.
    Embedding,
    /// Rotary position embedding with fixed-point tables. Operands: `x: i8|i16 [.., S, D]`,
    /// `cos: i32 [P, D/2]`, `sin: i32 [P, D/2]`.
    Rope {
        /// Zero point of `x`.
        x_zero_point: i32,
        /// Zero point of the output.
        y_zero_point: i32,
        /// Position of row 0 of axis `-2`.
        position_offset: u32,
        /// Fraction bits of the tables.
        frac_bits: u32,
        /// Which elements form a rotated pair.
        pairing: RopePairing,
    },
    /// Same data, new shape (the declared output shape).
    Reshape,
    /// Axis permutation: output axis `i` is input axis `perm[i]`.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Concatenation of one or more tensors along `axis`.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// `x[.., start..end, ..]` along `axis`.
    Slice {
        /// The axis.
        axis: usize,
        /// First index kept.
        start: usize,
        /// One past the last index kept.
        end: usize,
    },
    /// Masked mean over the last axis. Operands: `x [B, D, S]`, `mask [B, S]`.
    MeanPool {
        /// Zero point of `x`.
        x_zero_point: i32,
        /// Fraction bits added to the mean.
        frac_bits: u32,
        /// Zero point of the output.
        y_zero_point: i32,
    },
    /// Index of the first maximum over the last axis, as `i32`.
    Argmax,
    /// The first half of a split softmax: each kept column's exp-table entry at its
    /// distance below the row maximum (`e[c]` of [`Op::Softmax`]), `0` for a dropped column,
    /// as `i32`. Operands as [`Op::Softmax`]: `x: i8|i16 [.., M, N]`, `exp_table: i32 [T]`,
    /// optionally `mask: [G, N]`.
    SoftmaxExp {
        /// Whether row `r` of the last two axes sees only columns `c <= r + N - M`.
        causal: bool,
    },
    /// The second half of a split softmax: each row of `e: i32 [.., N]` (a negative entry
    /// reads as 0) divided by its sum in `frac_bits` fraction bits, as [`Op::Softmax`]
    /// divides. `softmax_norm(softmax_exp(x))` is `softmax(x)`, bit for bit.
    SoftmaxNorm {
        /// Fraction bits of the output probabilities.
        frac_bits: u32,
        /// Zero point of the output.
        y_zero_point: i32,
    },
}

/// The kind of an op, without parameters. The discriminant is its code in program hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum OpKind {
    FullyConnected = 1,
    BatchMatmul = 2,
    Add = 3,
    Mul = 4,
    Requantize = 5,
    Lut = 6,
    Softmax = 7,
    LayerNorm = 8,
    RmsNorm = 9,
    Embedding = 10,
    Rope = 11,
    Reshape = 12,
    Transpose = 13,
    Concat = 14,
    Slice = 15,
    MeanPool = 16,
    Argmax = 17,
    SoftmaxExp = 18,
    SoftmaxNorm = 19,
}

impl OpKind {
    /// Every kind, in code order.
    pub const ALL: [OpKind; 19] = [
        Self::FullyConnected,
        Self::BatchMatmul,
        Self::Add,
        Self::Mul,
        Self::Requantize,
        Self::Lut,
        Self::Softmax,
        Self::LayerNorm,
        Self::RmsNorm,
        Self::Embedding,
        Self::Rope,
        Self::Reshape,
        Self::Transpose,
        Self::Concat,
        Self::Slice,
        Self::MeanPool,
        Self::Argmax,
        Self::SoftmaxExp,
        Self::SoftmaxNorm,
    ];

    /// The code bound into program hashes.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The spec name (`fully_connected`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::FullyConnected => "fully_connected",
            Self::BatchMatmul => "batch_matmul",
            Self::Add => "add",
            Self::Mul => "mul",
            Self::Requantize => "requantize",
            Self::Lut => "lut",
            Self::Softmax => "softmax",
            Self::LayerNorm => "layer_norm",
            Self::RmsNorm => "rms_norm",
            Self::Embedding => "embedding",
            Self::Rope => "rope",
            Self::Reshape => "reshape",
            Self::Transpose => "transpose",
            Self::Concat => "concat",
            Self::Slice => "slice",
            Self::MeanPool => "mean_pool",
            Self::Argmax => "argmax",
            Self::SoftmaxExp => "softmax_exp",
            Self::SoftmaxNorm => "softmax_norm",
        }
    }
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const INT_TYPES: &[DType] = &[DType::I8, DType::I16, DType::I32];

impl Op {
    /// The op's kind.
    pub fn kind(&self) -> OpKind {
        match self {
            Self::FullyConnected { .. } => OpKind::FullyConnected,
            Self::BatchMatmul { .. } => OpKind::BatchMatmul,
            Self::Add { .. } => OpKind::Add,
            Self::Mul { .. } => OpKind::Mul,
            Self::Requantize { .. } => OpKind::Requantize,
            Self::Lut => OpKind::Lut,
            Self::Softmax { .. } => OpKind::Softmax,
            Self::LayerNorm { .. } => OpKind::LayerNorm,
            Self::RmsNorm { .. } => OpKind::RmsNorm,
            Self::Embedding => OpKind::Embedding,
            Self::Rope { .. } => OpKind::Rope,
            Self::Reshape => OpKind::Reshape,
            Self::Transpose { .. } => OpKind::Transpose,
            Self::Concat { .. } => OpKind::Concat,
            Self::Slice { .. } => OpKind::Slice,
            Self::MeanPool { .. } => OpKind::MeanPool,
            Self::Argmax => OpKind::Argmax,
            Self::SoftmaxExp { .. } => OpKind::SoftmaxExp,
            Self::SoftmaxNorm { .. } => OpKind::SoftmaxNorm,
        }
    }

    /// The output type this op gives for `inputs`, given the declared output dtype where
    /// the op lets the program choose it. Errors on any operand or parameter the spec does
    /// not define.
    pub fn infer(&self, inputs: &[&TensorType], out_dtype: DType) -> Result<TensorType> {
        let kind = self.kind();
        let arity = |lo: usize, hi: usize| -> Result<()> {
            if inputs.len() < lo || inputs.len() > hi {
                let want = if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo} to {hi}")
                };
                return Err(Error::Program(format!(
                    "{kind} takes {want} operands, got {}",
                    inputs.len()
                )));
            }
            Ok(())
        };
        let out = |allowed: &[DType]| -> Result<DType> {
            if allowed.contains(&out_dtype) {
                Ok(out_dtype)
            } else {
                Err(Error::DType {
                    what: format!("{kind} output"),
                    expected: names(allowed),
                    got: out_dtype,
                })
            }
        };
        match self {
            Self::FullyConnected {
                x_zero_point,
                y_zero_point,
            } => {
                arity(5, 5)?;
                let (x, w, bias, m, s) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4]);
                want_dtype(kind, "x", x, &[DType::I8])?;
                want_dtype(kind, "w", w, &[DType::I8])?;
                want_dtype(kind, "bias", bias, &[DType::I32])?;
                want_dtype(kind, "multiplier", m, &[DType::I32])?;
                want_dtype(kind, "shift", s, &[DType::I32])?;
                want_rank_at_least(kind, "x", x, 1)?;
                want_rank(kind, "w", w, 2)?;
                let (n, k) = (w.shape[0], w.shape[1]);
                if x.shape[x.shape.len() - 1] != k {
                    return Err(Error::Shape(format!(
                        "{kind}: x {x} has inner size {}, w {w} needs {k}",
                        x.shape[x.shape.len() - 1]
                    )));
                }
                for (what, t) in [("bias", bias), ("multiplier", m), ("shift", s)] {
                    if t.shape != [n] {
                        return Err(Error::Shape(format!(
                            "{kind}: {what} must be [{n}], got {t}"
                        )));
                    }
                }
                zero_point(kind, "x_zero_point", *x_zero_point, DType::I8)?;
                let dt = out(INT_TYPES)?;
                zero_point(kind, "y_zero_point", *y_zero_point, dt)?;
                let mut shape = x.shape.clone();
                *shape.last_mut().unwrap() = n;
                Ok(TensorType::new(dt, shape))
            }
            Self::BatchMatmul {
                transpose_b,
                a_zero_point,
                b_zero_point,
                multiplier: _,
                shift,
                y_zero_point,
            } => {
                arity(2, 2)?;
                let (a, b) = (inputs[0], inputs[1]);
                want_dtype(kind, "a", a, &[DType::I8])?;
                want_dtype(kind, "b", b, &[DType::I8])?;
                want_rank(kind, "a", a, 3)?;
                want_rank(kind, "b", b, 3)?;
                let (ba, m, k) = (a.shape[0], a.shape[1], a.shape[2]);
                let (bb, kb, n) = if *transpose_b {
                    (b.shape[0], b.shape[2], b.shape[1])
                } else {
                    (b.shape[0], b.shape[1], b.shape[2])
                };
                if kb != k {
                    return Err(Error::Shape(format!(
                        "{kind}: a {a} and b {b} disagree on the inner size (transpose_b = {transpose_b})"
                    )));
                }
                if bb == 0 || ba % bb != 0 {
                    return Err(Error::Shape(format!(
                        "{kind}: the batch of a ({ba}) must be a multiple of the batch of b ({bb})"
                    )));
                }
                zero_point(kind, "a_zero_point", *a_zero_point, DType::I8)?;
                zero_point(kind, "b_zero_point", *b_zero_point, DType::I8)?;
                want_shift(kind, *shift)?;
                let dt = out(INT_TYPES)?;
                zero_point(kind, "y_zero_point", *y_zero_point, dt)?;
                Ok(TensorType::new(dt, vec![ba, m, n]))
            }
            Self::Add {
                a_zero_point,
                b_zero_point,
                shift,
                y_zero_point,
                ..
            }
            | Self::Mul {
                a_zero_point,
                b_zero_point,
                shift,
                y_zero_point,
                ..
            } => {
                arity(2, 2)?;
                let (a, b) = (inputs[0], inputs[1]);
                want_dtype(kind, "a", a, INT_TYPES)?;
                want_dtype(kind, "b", b, INT_TYPES)?;
                if a.shape != b.shape {
                    return Err(Error::Shape(format!(
                        "{kind}: a {a} and b {b} differ in shape"
                    )));
                }
                zero_point(kind, "a_zero_point", *a_zero_point, a.dtype)?;
                zero_point(kind, "b_zero_point", *b_zero_point, b.dtype)?;
                want_shift(kind, *shift)?;
                let dt = out(INT_TYPES)?;
                zero_point(kind, "y_zero_point", *y_zero_point, dt)?;
                Ok(TensorType::new(dt, a.shape.clone()))
            }
            Self::Requantize {
                x_zero_point,
                shift,
                y_zero_point,
                ..
            } => {
                arity(1, 1)?;
                let x = inputs[0];
                want_dtype(kind, "x", x, INT_TYPES)?;
                zero_point(kind, "x_zero_point", *x_zero_point, x.dtype)?;
                want_shift(kind, *shift)?;
                let dt = out(INT_TYPES)?;
                zero_point(kind, "y_zero_point", *y_zero_point, dt)?;
                Ok(TensorType::new(dt, x.shape.clone()))
            }
            Self::Lut => {
                arity(2, 2)?;
                let (x, table) = (inputs[0], inputs[1]);
                want_dtype(kind, "x", x, &[DType::I8])?;
                if table.shape != [256] {
                    return Err(Error::Shape(format!(
                        "{kind}: table must be [256], got {table}"
                    )));
                }
                let dt = out(&[table.dtype])?;
                Ok(TensorType::new(dt, x.shape.clone()))
            }
            Self::Softmax {
                causal: _,
                frac_bits,
                y_zero_point,
            } => {
                arity(2, 3)?;
                softmax_operands(kind, inputs)?;
                if *frac_bits > 30 {
                    return Err(Error::Param(format!("{kind}: frac_bits {frac_bits} > 30")));
                }
                let dt = out(INT_TYPES)?;
                zero_point(kind, "y_zero_point", *y_zero_point, dt)?;
                Ok(TensorType::new(dt, inputs[0].shape.clone()))
            }
            Self::SoftmaxExp { causal: _ } => {
                arity(2, 3)?;
                softmax_operands(kind, inputs)?;
                let dt = out(&[DType::I32])?;
                Ok(TensorType::new(dt, inputs[0].shape.clone()))
            }
            Self::SoftmaxNorm {
                frac_bits,
                y_zero_point,
            } => {
                arity(1, 1)?;
                let e = inputs[0];
                want_dtype(kind, "e", e, &[DType::I32])?;
                want_rank_at_least(kind, "e", e, 1)?;
                if *frac_bits > 30 {
                    return Err(Error::Param(format!("{kind}: frac_bits {frac_bits} > 30")));
                }
                let dt = out(INT_TYPES)?;
                zero_point(kind, "y_zero_point", *y_zero_point, dt)?;
                Ok(TensorType::new(dt, e.shape.clone()))
            }
            Self::LayerNorm {
                shift,
                y_zero_point,
                ..
            } => {
                arity(3, 3)?;
                let x = inputs[0];
                want_dtype(kind, "x", x, INT_TYPES)?;
                let n = norm_width(kind, x)?;
                for (what, t) in [("gamma", inputs[1]), ("beta", inputs[2])] {
                    want_dtype(kind, what, t, &[DType::I32])?;
                    if t.shape != [n] {
                        return Err(Error::Shape(format!(
                            "{kind}: {what} must be [{n}], got {t}"
                        )));
                    }
                }
                want_shift(kind, *shift)?;
                let dt = out(INT_TYPES)?;
                zero_point(kind, "y_zero_point", *y_zero_point, dt)?;
                Ok(TensorType::new(dt, x.shape.clone()))
            }
            Self::RmsNorm {
                x_zero_point,
                shift,
                y_zero_point,
                ..
            } => {
                arity(2, 2)?;
                let (x, gamma) = (inputs[0], inputs[1]);
                want_dtype(kind, "x", x, INT_TYPES)?;
                let n = norm_width(kind, x)?;
                want_dtype(kind, "gamma", gamma, &[DType::I32])?;
                if gamma.shape != [n] {
                    return Err(Error::Shape(format!(
                        "{kind}: gamma must be [{n}], got {gamma}"
                    )));
                }
                zero_point(kind, "x_zero_point", *x_zero_point, x.dtype)?;
                want_shift(kind, *shift)?;
                let dt = out(INT_TYPES)?;
                zero_point(kind, "y_zero_point", *y_zero_point, dt)?;
                Ok(TensorType::new(dt, x.shape.clone()))
            }
            Self::Embedding => {
                arity(2, 2)?;
                let (table, idx) = (inputs[0], inputs[1]);
                want_rank(kind, "table", table, 2)?;
                want_dtype(kind, "indices", idx, &[DType::I32])?;
                let dt = out(&[table.dtype])?;
                let mut shape = idx.shape.clone();
                shape.push(table.shape[1]);
                Ok(TensorType::new(dt, shape))
            }
            Self::Rope {
                x_zero_point,
                y_zero_point,
                position_offset,
                frac_bits,
                ..
            } => {
                arity(3, 3)?;
                let (x, cos, sin) = (inputs[0], inputs[1], inputs[2]);
                want_dtype(kind, "x", x, &[DType::I8, DType::I16])?;
                want_rank_at_least(kind, "x", x, 2)?;
                let r = x.shape.len();
                let (s, d) = (x.shape[r - 2], x.shape[r - 1]);
                if d % 2 != 0 {
                    return Err(Error::Shape(format!(
                        "{kind}: the last axis of x {x} must be even"
                    )));
                }
                for (what, t) in [("cos", cos), ("sin", sin)] {
                    want_dtype(kind, what, t, &[DType::I32])?;
                    want_rank(kind, what, t, 2)?;
                    if t.shape[1] != d / 2 {
                        return Err(Error::Shape(format!(
                            "{kind}: {what} must be [P, {}], got {t}",
                            d / 2
                        )));
                    }
                }
                if cos.shape != sin.shape {
                    return Err(Error::Shape(format!(
                        "{kind}: cos {cos} and sin {sin} differ"
                    )));
                }
                if *position_offset as usize + s > cos.shape[0] {
                    return Err(Error::Param(format!(
                        "{kind}: positions {position_offset}..{} exceed the {} table rows",
                        *position_offset as usize + s,
                        cos.shape[0]
                    )));
                }
                if *frac_bits > 30 {
                    return Err(Error::Param(format!("{kind}: frac_bits {frac_bits} > 30")));
                }
                zero_point(kind, "x_zero_point", *x_zero_point, x.dtype)?;
                let dt = out(&[DType::I8, DType::I16])?;
                zero_point(kind, "y_zero_point", *y_zero_point, dt)?;
                Ok(TensorType::new(dt, x.shape.clone()))
            }
            Self::Reshape => {
                // The target shape is the declared output; `check` compares element counts.
                arity(1, 1)?;
                let dt = out(&[inputs[0].dtype])?;
                Ok(TensorType::new(dt, Vec::new()))
            }
            Self::Transpose { perm } => {
                arity(1, 1)?;
                let x = inputs[0];
                let mut seen = vec![false; x.shape.len()];
                if perm.len() != x.shape.len()
                    || perm
                        .iter()
                        .any(|&p| p >= seen.len() || std::mem::replace(&mut seen[p], true))
                {
                    return Err(Error::Param(format!(
                        "{kind}: perm {perm:?} is not a permutation of the {} axes of x {x}",
                        x.shape.len()
                    )));
                }
                let dt = out(&[x.dtype])?;
                Ok(TensorType::new(
                    dt,
                    perm.iter().map(|&p| x.shape[p]).collect::<Vec<_>>(),
                ))
            }
            Self::Concat { axis } => {
                arity(1, 64)?;
                let first = inputs[0];
                if *axis >= first.shape.len() {
                    return Err(Error::Param(format!(
                        "{kind}: axis {axis} out of range for {first}"
                    )));
                }
                let mut shape = first.shape.clone();
                shape[*axis] = 0;
                for t in inputs {
                    let same_rest = t.shape.len() == first.shape.len()
                        && t.shape
                            .iter()
                            .zip(&first.shape)
                            .enumerate()
                            .all(|(i, (a, b))| i == *axis || a == b);
                    if t.dtype != first.dtype || !same_rest {
                        return Err(Error::Shape(format!(
                            "{kind}: {t} does not match {first} outside axis {axis}"
                        )));
                    }
                    shape[*axis] += t.shape[*axis];
                }
                let dt = out(&[first.dtype])?;
                Ok(TensorType::new(dt, shape))
            }
            Self::Slice { axis, start, end } => {
                arity(1, 1)?;
                let x = inputs[0];
                if *axis >= x.shape.len() || start > end || *end > x.shape[*axis] {
                    return Err(Error::Param(format!(
                        "{kind}: {start}..{end} on axis {axis} is out of range for {x}"
                    )));
                }
                let mut shape = x.shape.clone();
                shape[*axis] = end - start;
                let dt = out(&[x.dtype])?;
                Ok(TensorType::new(dt, shape))
            }
            Self::MeanPool {
                x_zero_point,
                frac_bits,
                y_zero_point,
            } => {
                arity(2, 2)?;
                let (x, mask) = (inputs[0], inputs[1]);
                want_dtype(kind, "x", x, INT_TYPES)?;
                want_dtype(kind, "mask", mask, INT_TYPES)?;
                want_rank(kind, "x", x, 3)?;
                if mask.shape != [x.shape[0], x.shape[2]] {
                    return Err(Error::Shape(format!(
                        "{kind}: mask must be [{}, {}] (x is [B, D, S]), got {mask}",
                        x.shape[0], x.shape[2]
                    )));
                }
                zero_point(kind, "x_zero_point", *x_zero_point, x.dtype)?;
                if *frac_bits > 30 {
                    return Err(Error::Param(format!("{kind}: frac_bits {frac_bits} > 30")));
                }
                let dt = out(INT_TYPES)?;
                zero_point(kind, "y_zero_point", *y_zero_point, dt)?;
                Ok(TensorType::new(dt, vec![x.shape[0], x.shape[1]]))
            }
            Self::Argmax => {
                arity(1, 1)?;
                let x = inputs[0];
                let n = norm_width(kind, x)?;
                let _ = n;
                let dt = out(&[DType::I32])?;
                Ok(TensorType::new(dt, x.shape[..x.shape.len() - 1].to_vec()))
            }
        }
    }

    /// Validates a use of this op: operands, parameters and the declared output type.
    pub fn check(&self, inputs: &[&TensorType], output: &TensorType) -> Result<()> {
        let inferred = self.infer(inputs, output.dtype)?;
        if let Self::Reshape = self {
            let (a, b) = (inputs[0].numel(), output.numel());
            if a != b {
                return Err(Error::Shape(format!(
                    "reshape: {} has {a} elements, the output {output} has {b}",
                    inputs[0]
                )));
            }
            return Ok(());
        }
        if inferred.shape != output.shape {
            return Err(Error::Shape(format!(
                "{}: the output is {inferred}, declared {output}",
                self.kind()
            )));
        }
        Ok(())
    }

    /// Runs several `fully_connected` ops that multiply the same weight matrix (`inputs[1]`
    /// of each, the same tensor) as one product over their stacked inputs
    /// ([`fully_connected_shared`]): the outputs are bit for bit those of
    /// [`Op::execute`] on each. Every op is checked as `execute` checks it; an op of another
    /// kind or a different weight matrix is an error.
    pub fn execute_fc_shared(
        ops: &[(&Self, &[&Tensor], &TensorType)],
        packed: Option<&PackedMatrix>,
    ) -> Result<Vec<Tensor>> {
        let ops: Vec<_> = ops.iter().map(|&(op, x, ty)| (op, x, ty, None)).collect();
        Self::execute_fc_prepared(&ops, packed)
    }

    /// [`Op::execute_fc_shared`], with each op's requantization built ahead where given
    /// (the fourth of each tuple: [`FcEpilogue::new`] of that op's operands and zero
    /// points against `packed`).
    pub fn execute_fc_prepared(
        ops: &[(&Self, &[&Tensor], &TensorType, Option<&FcEpilogue>)],
        packed: Option<&PackedMatrix>,
    ) -> Result<Vec<Tensor>> {
        match Self::fc_parts(ops)? {
            Some((w, parts)) => fully_connected_shared(w, packed, &parts),
            None => Ok(Vec::new()),
        }
    }

    /// Two `fully_connected` ops by the same weight matrix, as [`Op::execute_fc_prepared`]
    /// takes them, with `i32` outputs of one shape, then `add` (an `add` op and its output
    /// type) of the first's output (its `a`) and the second's (its `b`): the `add`'s
    /// output, bit for bit, without the two products' outputs (each row of them lives in
    /// a small buffer while the `add` reads it). Every op is checked as `execute` checks it.
    pub fn execute_fc_pair_add(
        ops: &[(&Self, &[&Tensor], &TensorType, Option<&FcEpilogue>); 2],
        (add, add_output): (&Self, &TensorType),
        packed: Option<&PackedMatrix>,
    ) -> Result<Tensor> {
        let (w, parts) = Self::fc_parts(ops)?
            .ok_or_else(|| Error::Param("a fused pair needs its two fully_connected ops".into()))?;
        add.check(&[ops[0].2, ops[1].2], add_output)?;
        let params = add.add_params().ok_or_else(|| {
            Error::Param(format!(
                "a fused pair of fully_connected ops ends in an add, not {}",
                add.kind()
            ))
        })?;
        matmul::fully_connected_pair_add(w, packed, [parts[0], parts[1]], params, add_output.dtype)
    }

    /// An `add`'s parameters as its kernel takes them: `[a_zp, a_m, b_zp, b_m]`, the
    /// shift and the output zero point; `None` for another op.
    fn add_params(&self) -> Option<([i32; 4], u32, i32)> {
        match *self {
            Self::Add {
                a_zero_point,
                a_multiplier,
                b_zero_point,
                b_multiplier,
                shift,
                y_zero_point,
            } => Some((
                [a_zero_point, a_multiplier, b_zero_point, b_multiplier],
                shift,
                y_zero_point,
            )),
            _ => None,
        }
    }

    /// The weight matrix and parts of `fully_connected` ops sharing it, each op checked;
    /// `None` for no ops.
    #[allow(clippy::type_complexity)]
    fn fc_parts<'a>(
        ops: &[(&Self, &[&'a Tensor], &TensorType, Option<&'a FcEpilogue>)],
    ) -> Result<Option<(&'a Tensor, Vec<FcPart<'a>>)>> {
        let Some(&(_, first, _, _)) = ops.first() else {
            return Ok(None);
        };
        let w = *first.get(1).ok_or_else(|| {
            Error::Param("fully_connected takes 5 operands, got fewer than 2".into())
        })?;
        let mut parts = Vec::with_capacity(ops.len());
        for &(op, inputs, output, epilogue) in ops {
            let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
            let refs: Vec<&TensorType> = types.iter().collect();
            op.check(&refs, output)?;
            let Self::FullyConnected {
                x_zero_point,
                y_zero_point,
            } = *op
            else {
                return Err(Error::Param(format!(
                    "a shared product runs fully_connected ops only, not {}",
                    op.kind()
                )));
            };
            if !std::ptr::eq(inputs[1], w) {
                return Err(Error::Param(
                    "the ops of a shared product must multiply the same weight tensor".into(),
                ));
            }
            parts.push(FcPart {
                x: inputs[0],
                bias: inputs[2],
                multiplier: inputs[3],
                shift: inputs[4],
                x_zero_point,
                y_zero_point,
                out: output.dtype,
                epilogue,
            });
        }
        Ok(Some((w, parts)))
    }

    /// Runs the op on checked operands. `packed` may hold the pre-packed `w` of a
    /// `fully_connected` whose weight is reused across runs.
    pub fn execute(
        &self,
        inputs: &[&Tensor],
        output: &TensorType,
        packed: Option<&PackedMatrix>,
    ) -> Result<Tensor> {
        let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = types.iter().collect();
        self.check(&refs, output)?;
        let dt = output.dtype;
        match self {
            Self::FullyConnected {
                x_zero_point,
                y_zero_point,
            } => fully_connected(
                inputs[0],
                inputs[1],
                packed,
                inputs[2],
                inputs[3],
                inputs[4],
                *x_zero_point,
                *y_zero_point,
                dt,
            ),
            Self::BatchMatmul {
                transpose_b,
                a_zero_point,
                b_zero_point,
                multiplier,
                shift,
                y_zero_point,
            } => batch_matmul(
                inputs[0],
                inputs[1],
                *transpose_b,
                *a_zero_point,
                *b_zero_point,
                *multiplier,
                *shift,
                *y_zero_point,
                dt,
            ),
            Self::Add {
                a_zero_point,
                a_multiplier,
                b_zero_point,
                b_multiplier,
                shift,
                y_zero_point,
            } => add(
                inputs[0],
                inputs[1],
                [*a_zero_point, *a_multiplier, *b_zero_point, *b_multiplier],
                *shift,
                *y_zero_point,
                dt,
            ),
            Self::Mul {
                a_zero_point,
                b_zero_point,
                multiplier,
                shift,
                y_zero_point,
            } => mul(
                inputs[0],
                inputs[1],
                *a_zero_point,
                *b_zero_point,
                *multiplier,
                *shift,
                *y_zero_point,
                dt,
            ),
            Self::Requantize {
                x_zero_point,
                multiplier,
                shift,
                y_zero_point,
            } => requantize(
                inputs[0],
                *x_zero_point,
                *multiplier,
                *shift,
                *y_zero_point,
                dt,
            ),
            Self::Lut => lut(inputs[0], inputs[1]),
            Self::Softmax {
                causal,
                frac_bits,
                y_zero_point,
            } => softmax(
                inputs[0],
                inputs[1],
                inputs.get(2).copied(),
                *causal,
                *frac_bits,
                *y_zero_point,
                dt,
            ),
            Self::LayerNorm {
                epsilon,
                shift,
                y_zero_point,
            } => layer_norm(
                inputs[0],
                inputs[1],
                inputs[2],
                *epsilon,
                *shift,
                *y_zero_point,
                dt,
            ),
            Self::RmsNorm {
                x_zero_point,
                epsilon,
                shift,
                y_zero_point,
            } => rms_norm(
                inputs[0],
                inputs[1],
                *x_zero_point,
                *epsilon,
                *shift,
                *y_zero_point,
                dt,
            ),
            Self::Embedding => embedding(inputs[0], inputs[1]),
            Self::Rope {
                x_zero_point,
                y_zero_point,
                position_offset,
                frac_bits,
                pairing,
            } => rope(
                inputs[0],
                inputs[1],
                inputs[2],
                *x_zero_point,
                *y_zero_point,
                *position_offset,
                *frac_bits,
                *pairing,
                dt,
            ),
            Self::Reshape => reshape(inputs[0], &output.shape),
            Self::Transpose { perm } => transpose(inputs[0], perm),
            Self::Concat { axis } => concat(inputs, *axis),
            Self::Slice { axis, start, end } => slice(inputs[0], *axis, *start, *end),
            Self::MeanPool {
                x_zero_point,
                frac_bits,
                y_zero_point,
            } => mean_pool(
                inputs[0],
                inputs[1],
                *x_zero_point,
                *frac_bits,
                *y_zero_point,
                dt,
            ),
            Self::Argmax => argmax(inputs[0]),
            Self::SoftmaxExp { causal } => {
                softmax_exp(inputs[0], inputs[1], inputs.get(2).copied(), *causal)
            }
            Self::SoftmaxNorm {
                frac_bits,
                y_zero_point,
            } => softmax_norm(inputs[0], *frac_bits, *y_zero_point, dt),
        }
    }
}

/// The operands of `softmax` and `softmax_exp`: `x: i8|i16 [.., M, N]`, `exp_table: i32 [T]`
/// (`T >= 1`), optionally `mask: [G, N]` with `G` dividing the product of `x`'s leading axes.
fn softmax_operands(kind: OpKind, inputs: &[&TensorType]) -> Result<()> {
    let (x, table) = (inputs[0], inputs[1]);
    want_dtype(kind, "x", x, &[DType::I8, DType::I16])?;
    want_rank_at_least(kind, "x", x, 1)?;
    want_dtype(kind, "exp_table", table, &[DType::I32])?;
    want_rank(kind, "exp_table", table, 1)?;
    if table.shape[0] == 0 {
        return Err(Error::Shape(format!("{kind}: exp_table must not be empty")));
    }
    if let Some(mask) = inputs.get(2) {
        want_dtype(kind, "mask", mask, INT_TYPES)?;
        want_rank(kind, "mask", mask, 2)?;
        let n = x.shape[x.shape.len() - 1];
        let l: usize = x.shape[..x.shape.len().saturating_sub(2)].iter().product();
        let g = mask.shape[0];
        if mask.shape[1] != n || g == 0 || !l.is_multiple_of(g) {
            return Err(Error::Shape(format!(
                "{kind}: mask {mask} must be [G, {n}] with G dividing {l}, the product of x's leading axes"
            )));
        }
    }
    Ok(())
}

fn names(dtypes: &[DType]) -> String {
    dtypes
        .iter()
        .map(|d| d.name())
        .collect::<Vec<_>>()
        .join("|")
}

fn want_dtype(kind: OpKind, what: &str, t: &TensorType, allowed: &[DType]) -> Result<()> {
    if allowed.contains(&t.dtype) {
        Ok(())
    } else {
        Err(Error::DType {
            what: format!("{kind} {what}"),
            expected: names(allowed),
            got: t.dtype,
        })
    }
}

fn want_rank(kind: OpKind, what: &str, t: &TensorType, rank: usize) -> Result<()> {
    if t.shape.len() == rank {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{kind}: {what} must have rank {rank}, got {t}"
        )))
    }
}

fn want_rank_at_least(kind: OpKind, what: &str, t: &TensorType, rank: usize) -> Result<()> {
    if t.shape.len() >= rank {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{kind}: {what} must have rank >= {rank}, got {t}"
        )))
    }
}

/// The largest row a norm accepts: keeps every intermediate of the spec inside `i128`.
pub const MAX_NORM_WIDTH: usize = 1 << 20;

/// The width of the last axis, which must exist and be non-empty (and, for the norms, at
/// most [`MAX_NORM_WIDTH`]).
fn norm_width(kind: OpKind, x: &TensorType) -> Result<usize> {
    match x.shape.last() {
        Some(&n) if n > MAX_NORM_WIDTH && matches!(kind, OpKind::LayerNorm | OpKind::RmsNorm) => {
            Err(Error::Shape(format!(
                "{kind}: rows of {n} elements exceed {MAX_NORM_WIDTH}"
            )))
        }
        Some(&n) if n > 0 => Ok(n),
        _ => Err(Error::Shape(format!(
            "{kind}: x {x} needs a non-empty last axis"
        ))),
    }
}

fn zero_point(kind: OpKind, what: &str, zp: i32, dtype: DType) -> Result<()> {
    if (dtype.min()..=dtype.max()).contains(&(zp as i64)) {
        Ok(())
    } else {
        Err(Error::Param(format!(
            "{kind}: {what} {zp} is outside the {dtype} range"
        )))
    }
}

fn want_shift(kind: OpKind, shift: u32) -> Result<()> {
    if shift <= MAX_SHIFT {
        Ok(())
    } else {
        Err(Error::Param(format!("{kind}: shift {shift} > {MAX_SHIFT}")))
    }
}

/// Checks every value of a per-channel shift tensor is a valid total right shift.
pub(crate) fn check_shifts(kind: OpKind, shifts: &[i32]) -> Result<()> {
    match shifts
        .iter()
        .position(|&s| !(0..=MAX_SHIFT as i32).contains(&s))
    {
        None => Ok(()),
        Some(i) => Err(Error::Param(format!(
            "{kind}: shift[{i}] = {} is outside 0..={MAX_SHIFT}",
            shifts[i]
        ))),
    }
}

/// Splits a shape into (rows, width of the last axis).
pub(crate) fn rows_of(shape: &[usize]) -> (usize, usize) {
    match shape.split_last() {
        Some((&n, rest)) => (rest.iter().product(), n),
        None => (1, 1),
    }
}
