//! A small built-in model that uses every op of the spec: a one-layer transformer encoder
//! with rotary attention, a gated GELU feed-forward, mean pooling and an argmax head.
//!
//! Its weights are drawn from a fixed seed, so the model, its id and its traces are the
//! same everywhere: it is the engine's end-to-end smoke test, the README's first command
//! and the golden trace of the snapshot tests. Real models come from the importer.

use crate::error::Result;
use crate::model::Model;
use crate::ops::fixed_point::quantize_multiplier;
use crate::ops::{Op, RopePairing};
use crate::program::{Operand, ProgramBuilder};
use crate::tensor::{DType, Tensor, TensorType};
use std::collections::BTreeMap;

/// Tokens per input.
pub const SEQ: usize = 8;
/// Vocabulary size.
pub const VOCAB: usize = 64;
const D: usize = 32;
const HEADS: usize = 2;
const HEAD_DIM: usize = D / HEADS;
const FFN: usize = 64;
const OUT: usize = 16;

/// SplitMix64, a tiny deterministic generator: the same numbers on every machine. The
/// demo draws its weights from it, and tests draw their random cases from it.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The demo's weight generator over [`SplitMix64`].
struct Rng(SplitMix64);

impl Rng {
    /// Uniform in `[-bound, bound]`.
    fn int(&mut self, bound: i64) -> i64 {
        (self.0.next_u64() % (2 * bound as u64 + 1)) as i64 - bound
    }

    fn i8s(&mut self, n: usize, bound: i64) -> Vec<i8> {
        (0..n).map(|_| self.int(bound) as i8).collect()
    }
}

fn t8(shape: &[usize], v: Vec<i8>) -> Tensor {
    Tensor::from_i8(shape.to_vec(), v).expect("shape matches")
}

fn t32(shape: &[usize], v: Vec<i32>) -> Tensor {
    Tensor::from_i32(shape.to_vec(), v).expect("shape matches")
}

/// Multiplier and shift for `scale` (the demo's scales are all in range).
fn mq(scale: f64) -> (i32, u32) {
    quantize_multiplier(scale).expect("demo scales are in range")
}

/// A `fully_connected` with random weights, scaled so outputs keep a useful spread.
fn dense(
    b: &mut ProgramBuilder,
    rng: &mut Rng,
    name: &str,
    x: Operand,
    k: usize,
    n: usize,
) -> Result<Operand> {
    let w = b.weight(format!("{name}.weight"), t8(&[n, k], rng.i8s(n * k, 64)));
    let bias = b.weight(
        format!("{name}.bias"),
        t32(&[n], (0..n).map(|_| rng.int(2000) as i32).collect()),
    );
    // acc has a spread of about sqrt(k) * 40 * 37; aim for about 40 at the output.
    let base = 40.0 / ((k as f64).sqrt() * 40.0 * 37.0);
    let (ms, ss): (Vec<i32>, Vec<i32>) = (0..n)
        .map(|j| {
            let (m, s) = mq(base * (0.75 + 0.5 * ((j * 7 % 11) as f64 / 10.0)));
            (m, s as i32)
        })
        .unzip();
    let m = b.weight(format!("{name}.multiplier"), t32(&[n], ms));
    let s = b.weight(format!("{name}.shift"), t32(&[n], ss));
    b.push(
        Op::FullyConnected {
            x_zero_point: 3,
            y_zero_point: -2,
        },
        &[x, w, bias, m, s],
        DType::I8,
    )
}

fn requant(
    b: &mut ProgramBuilder,
    x: Operand,
    scale: f64,
    x_zp: i32,
    y_zp: i32,
    dt: DType,
) -> Result<Operand> {
    let (multiplier, shift) = mq(scale);
    b.push(
        Op::Requantize {
            x_zero_point: x_zp,
            multiplier,
            shift,
            y_zero_point: y_zp,
        },
        &[x],
        dt,
    )
}

/// Splits `[SEQ, D]` into heads `[HEADS, SEQ, HEAD_DIM]`.
fn heads(b: &mut ProgramBuilder, x: Operand) -> Result<Operand> {
    let r = b.reshape(x, &[SEQ, HEADS, HEAD_DIM])?;
    b.transpose(r, &[1, 0, 2])
}

/// Builds the demo model.
pub fn model() -> Result<Model> {
    let mut rng = Rng(SplitMix64(0x05EE_D0FF_1A7E));
    let mut b = ProgramBuilder::new(TensorType::new(DType::I32, vec![2, SEQ]));
    let input = b.input();
    let ids = b.push(
        Op::Slice {
            axis: 0,
            start: 0,
            end: 1,
        },
        &[input],
        DType::I32,
    )?;
    let mask = b.push(
        Op::Slice {
            axis: 0,
            start: 1,
            end: 2,
        },
        &[input],
        DType::I32,
    )?;

    let tok = b.weight("embed.tokens", t8(&[VOCAB, D], rng.i8s(VOCAB * D, 100)));
    let pos_table = b.weight("embed.positions", t8(&[SEQ, D], rng.i8s(SEQ * D, 40)));
    let pos_ids = b.weight(
        "embed.position_ids",
        t32(&[1, SEQ], (0..SEQ as i32).collect()),
    );
    let te = b.push(Op::Embedding, &[tok, ids], DType::I8)?;
    let pe = b.push(Op::Embedding, &[pos_table, pos_ids], DType::I8)?;
    let add = |a_m, b_m, shift| Op::Add {
        a_zero_point: 0,
        a_multiplier: a_m,
        b_zero_point: 0,
        b_multiplier: b_m,
        shift,
        y_zero_point: 0,
    };
    // The residual stream is i16 with 4 more fraction bits than the embeddings.
    let h0 = b.push(add(16, 16, 0), &[te, pe], DType::I16)?;

    // gamma ~ 30 in Q10: normalized rows get a spread of about 30 at the output.
    let gamma = b.weight(
        "ln1.gamma",
        t32(
            &[D],
            (0..D).map(|_| 30_000 + rng.int(5_000) as i32).collect(),
        ),
    );
    let beta = b.weight(
        "ln1.beta",
        t32(&[D], (0..D).map(|_| rng.int(5_000) as i32).collect()),
    );
    let ln1 = b.push(
        Op::LayerNorm {
            epsilon: 1,
            shift: 10,
            y_zero_point: 3,
        },
        &[h0, gamma, beta],
        DType::I8,
    )?;
    let x = b.reshape(ln1, &[SEQ, D])?;

    let q = dense(&mut b, &mut rng, "attn.q", x, D, D)?;
    let k = dense(&mut b, &mut rng, "attn.k", x, D, D)?;
    let v = dense(&mut b, &mut rng, "attn.v", x, D, D)?;
    let (q, k, v) = (heads(&mut b, q)?, heads(&mut b, k)?, heads(&mut b, v)?);
    let half = HEAD_DIM / 2;
    let angle = |p: usize, i: usize| p as f64 / 10_000f64.powf(2.0 * i as f64 / HEAD_DIM as f64);
    let cos = b.weight(
        "rope.cos",
        t32(
            &[SEQ, half],
            (0..SEQ * half)
                .map(|j| (angle(j / half, j % half).cos() * 16384.0).round() as i32)
                .collect(),
        ),
    );
    let sin = b.weight(
        "rope.sin",
        t32(
            &[SEQ, half],
            (0..SEQ * half)
                .map(|j| (angle(j / half, j % half).sin() * 16384.0).round() as i32)
                .collect(),
        ),
    );
    let rope = |pairing| Op::Rope {
        x_zero_point: -2,
        y_zero_point: -2,
        position_offset: 0,
        frac_bits: 14,
        pairing,
    };
    let q = b.push(rope(RopePairing::Half), &[q, cos, sin], DType::I8)?;
    let k = b.push(rope(RopePairing::Interleaved), &[k, cos, sin], DType::I8)?;

    // Scores in units of 1/16, with a spread of a few units.
    let (sm, ss) = mq(1.0 / 256.0);
    let scores = b.push(
        Op::BatchMatmul {
            transpose_b: true,
            a_zero_point: -2,
            b_zero_point: -2,
            multiplier: sm,
            shift: ss,
            y_zero_point: 0,
        },
        &[q, k],
        DType::I8,
    )?;
    // exp(-d / 16) in Q20: the scores' scale is 1/16.
    let exp = b.weight(
        "attn.exp",
        t32(
            &[256],
            (0..256)
                .map(|d| ((-(d as f64) / 16.0).exp() * 1048576.0).round() as i32)
                .collect(),
        ),
    );
    let probs = b.push(
        Op::Softmax {
            causal: false,
            frac_bits: 8,
            y_zero_point: -128,
        },
        &[scores, exp, mask],
        DType::I8,
    )?;
    // The same scores through the two halves of a softmax, causal this time (at 1/256 with
    // zero point -127, so the hidden half of each row is not at the i8 floor), averaged with
    // the probabilities above.
    let e = b.push(
        Op::SoftmaxExp { causal: true },
        &[scores, exp, mask],
        DType::I32,
    )?;
    let causal = b.push(
        Op::SoftmaxNorm {
            frac_bits: 8,
            y_zero_point: -127,
        },
        &[e],
        DType::I8,
    )?;
    let probs = b.push(
        Op::Add {
            a_zero_point: -128,
            a_multiplier: 1,
            b_zero_point: -127,
            b_multiplier: 1,
            shift: 1,
            y_zero_point: -128,
        },
        &[probs, causal],
        DType::I8,
    )?;
    let (pm, ps) = mq(1.0 / 256.0);
    let ctx = b.push(
        Op::BatchMatmul {
            transpose_b: false,
            a_zero_point: -128,
            b_zero_point: -2,
            multiplier: pm,
            shift: ps,
            y_zero_point: 0,
        },
        &[probs, v],
        DType::I8,
    )?;
    let ctx = b.transpose(ctx, &[1, 0, 2])?;
    let ctx = b.reshape(ctx, &[SEQ, D])?;
    let attn = dense(&mut b, &mut rng, "attn.out", ctx, D, D)?;
    let attn = requant(&mut b, attn, 16.0, -2, 0, DType::I16)?;
    let h0 = b.reshape(h0, &[SEQ, D])?;
    let h1 = b.push(add(1, 1, 0), &[h0, attn], DType::I16)?;

    let g2 = b.weight(
        "ln2.gamma",
        t32(
            &[D],
            (0..D).map(|_| 30_000 + rng.int(3_000) as i32).collect(),
        ),
    );
    let x2 = b.push(
        Op::RmsNorm {
            x_zero_point: 0,
            epsilon: 4,
            shift: 10,
            y_zero_point: 0,
        },
        &[h1, g2],
        DType::I8,
    )?;
    let up = dense(&mut b, &mut rng, "ffn.up", x2, D, FFN)?;
    // GELU on the up projection's scale (1/16), as a table.
    let gelu = b.weight(
        "ffn.gelu",
        t8(
            &[256],
            (0..256)
                .map(|i| {
                    let x = (i as f64 - 128.0 + 2.0) / 16.0;
                    let g =
                        0.5 * x * (1.0 + (0.797_884_560_8 * (x + 0.044_715 * x * x * x)).tanh());
                    (g * 16.0).round().clamp(-128.0, 127.0) as i8
                })
                .collect(),
        ),
    );
    let act = b.push(Op::Lut, &[up, gelu], DType::I8)?;
    let gate = dense(&mut b, &mut rng, "ffn.gate", x2, D, FFN)?;
    let (mm, ms) = mq(1.0 / 24.0);
    let gated = b.push(
        Op::Mul {
            a_zero_point: 0,
            b_zero_point: -2,
            multiplier: mm,
            shift: ms,
            y_zero_point: 0,
        },
        &[act, gate],
        DType::I8,
    )?;
    let down = dense(&mut b, &mut rng, "ffn.down", gated, FFN, D)?;
    let down = requant(&mut b, down, 16.0, -2, 0, DType::I16)?;
    let h2 = b.push(add(1, 1, 0), &[h1, down], DType::I16)?;
    let h2 = requant(&mut b, h2, 1.0 / 24.0, 0, 0, DType::I8)?;

    let both = b.push(Op::Concat { axis: 1 }, &[h2, x], DType::I8)?;
    let head = dense(&mut b, &mut rng, "head", both, 2 * D, OUT)?;
    let head3 = b.reshape(head, &[1, SEQ, OUT])?;
    // mean_pool reduces the last axis: the sequence goes last.
    let head3 = b.transpose(head3, &[0, 2, 1])?;
    let pooled = b.push(
        Op::MeanPool {
            x_zero_point: -2,
            frac_bits: 4,
            y_zero_point: 0,
        },
        &[head3, mask],
        DType::I32,
    )?;
    let best = b.push(Op::Argmax, &[head], DType::I32)?;
    let best = b.reshape(best, &[1, SEQ])?;
    let out = b.push(Op::Concat { axis: 1 }, &[pooled, best], DType::I32)?;
    let (program, weights) = b.finish(out)?;
    let mut meta = BTreeMap::new();
    meta.insert(
        "description".into(),
        "built-in demo encoder (every op of the spec)".into(),
    );
    Model::new("demo-encoder", program, weights, meta)
}

/// The demo input for `tokens`: row 0 the token ids (padded with 0), row 1 the mask.
pub fn input(tokens: &[i32]) -> Result<Tensor> {
    let n = tokens.len().min(SEQ);
    let mut v = vec![0i32; 2 * SEQ];
    v[..n].copy_from_slice(&tokens[..n]);
    for m in &mut v[SEQ..SEQ + n] {
        *m = 1;
    }
    Tensor::from_i32(vec![2, SEQ], v)
}

/// Token ids for a text: one id per byte, modulo the vocabulary (the demo has no tokenizer).
pub fn tokens(text: &str) -> Vec<i32> {
    text.bytes().map(|c| (c as usize % VOCAB) as i32).collect()
}
