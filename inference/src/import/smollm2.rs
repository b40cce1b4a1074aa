//! SmolLM2 (Llama decoders) in integer form: greedy generation as one deterministic program.
//!
//! The float model ([`LlamaFloat`], the GGUF dequantized to `f32`) runs over built-in
//! calibration prompts and a few greedy steps after each, recording the range of every
//! activation ([`calibrate`]). [`Calibrated::quantize`] then turns the weights into
//! integers once, and [`Quantized::build`] writes the program for one prompt bucket and one
//! number of new tokens. Every program of a family has the same weights (same tensors in the
//! same order), so they share one weights file and one weights root.
//!
//! **The program.** Input `i32 [2, B]`: row 0 the prompt ids left-padded with `-1` (the
//! embedding of an out-of-range id is a zero row), row 1 the mask (1 for a token, 0 for
//! padding). The prompt is prefilled at positions `B - n .. B` (RoPE depends only on
//! relative positions, so the shift by the padding changes nothing but rounding); then each
//! of the `N - 1` decode steps embeds the previous step's argmax and runs the 30 blocks on
//! one row at the next position, concatenating its keys and values to the cache (the cache
//! is the concatenation of slots, so the trace covers it). Output: `i32 [N]`, the generated
//! ids.
//!
//! **Precision** (every scale is `max |x|` over the calibration activations divided by the
//! range used, per tensor and per layer unless said otherwise). The op set multiplies only
//! `i8` by `i8`; a 16-bit activation enters a product as two `i8` halves
//! (`x = 256 hi + lo`, `hi = round(x / 256)`), each multiplied with the same `i8` weights and the
//! two `i32` results summed, so activations keep 16 bits where a plain int8 program keeps 8:
//!
//! - residual stream: `i32` at one power-of-two scale for the whole model (`2^-15` for
//!   SmolLM2-135M: the massive activation of channel 507, about 25000, fits with room to
//!   spare while the other channels keep 15 fraction bits); token embeddings an `i16` table
//!   requantized into it;
//! - RMS norms read the `i32` stream and write `i16` (scale `max / 32000`, below the value
//!   where the high half would saturate), split for the products;
//! - every block's matrix (Q, K, V, attention output, gate, up, down): `i8` weights with
//!   one scale per output channel (rounding every weight of the float model to `i8` this
//!   way, and nothing else, costs 1 of the 46
//!   evaluation prompts its first token), `i32` accumulators; the attention output and the
//!   down projection write straight into the residual stream's scale;
//! - queries, keys and values `i16` (RoPE on `i16` with 2^20 fixed-point tables), kept
//!   split in the cache, the values transposed (`[kv heads, head dim, positions]`, so one
//!   output element of `P x V` reads contiguous rows); `Q x K^T` and `P x V` are four `i8`
//!   products each, exact in `i32`;
//! - scores `i16` at least 1/1024 fine; softmax through a 16384-entry exp table to `i16`
//!   probabilities with 14 fraction bits (so the small probabilities next to an attention
//!   sink are not rounded away), as its two halves `softmax_exp` (the table entries, `i32`)
//!   and `softmax_norm` (the division), so that no one-step reads more than one table entry;
//! - SiLU as `gate * sigmoid(gate)`: gate `i16`, the sigmoid from a 256-entry table on an
//!   `i8` copy of the gate (within `[-12, 12]`; the sigmoid's slope is at most 1/4) with
//!   `i16` entries, their product `i16`; up `i16`;
//! - the feed-forward product `silu * up` in `i32` (scale `max / 8e6`: it reaches about 3000
//!   in the layers that create the massive activation, about 10 elsewhere), split three
//!   ways (`65536 top + 256 hi + lo`) for the down projection;
//! - the final norm's last row `i16`; the tied output matrix with 16-bit weights (two `i8`
//!   halves, one scale per row, three products), since its rounding decides close calls
//!   between the top two tokens directly; logits `i32` at 2^-16, argmax.
//!
//! **The argmax** of the `V` logits is two-staged (`V = C * W`, 192 chunks of 256 for
//! SmolLM2): one step of an `argmax` reads its whole row on-chain, and a row of 49152 would
//! cost about 19M gas; with chunks no row is longer than 256. It picks exactly the token a
//! single argmax would, ties included (see `Prog::argmax`).

use super::bert::Progress;
use super::llama::{LlamaConfig, LlamaFloat, Ranges, RopePairing};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::ops::Op;
use crate::ops::fixed_point::quantize_multiplier;
use crate::program::{Operand, ProgramBuilder};
use crate::tensor::{DType, Tensor, TensorType};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Exp table length: distances below the row maximum up to 16 (at scores of 1/1024).
const EXP_TABLE: usize = 16384;
/// Scores are at least this fine (in float units).
const SCORE_STEP: f64 = 1.0 / 1024.0;
/// The `i8` input of the sigmoid table covers at most `[-12, 12]` (beyond, the sigmoid is
/// within 7e-6 of 0 or 1).
const SIGMOID_RANGE: f64 = 12.0;
/// Largest magnitude of the `i32` feed-forward product, split three ways into `i8`
/// (`x = 65536 top + 256 hi + lo`, the top within `i8` below 127.5 * 65536).
const ACT_QMAX: f64 = 8_000_000.0;
/// Fraction bits of the `i16` softmax probabilities (1.0 = 2^14, so the high `i8` half
/// never saturates).
const PROB_BITS: u32 = 14;
/// Fraction bits of the RoPE tables.
const ROPE_BITS: u32 = 20;
/// Fraction bits of the `i32` logits.
const LOGIT_BITS: i32 = 16;
/// Largest magnitude an `i16` that is split into two `i8` halves is quantized to (below
/// 32640, where the high half would saturate).
const SPLIT_QMAX: f64 = 32000.0;
/// Greedy steps recorded after each calibration prompt (decode positions are calibrated
/// too).
pub const CALIBRATION_STEPS: usize = 8;

/// The SmolLM2 chat template (`tokenizer.chat_template` of the GGUF) for one user message
/// with the generation prompt: the default system message, the user turn, then the
/// assistant's turn opened.
pub fn chat_prompt(user: &str) -> String {
    format!(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
         Face<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )
}

/// The prompts of a prompt file: one a line, blank lines skipped, `\n` written as the two
/// characters `\` `n`; a line starting with `chat: ` is a user message put through
/// [`chat_prompt`].
pub fn parse_prompts(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let l = l.replace("\\n", "\n");
            match l.strip_prefix("chat: ") {
                Some(user) => chat_prompt(user),
                None => l,
            }
        })
        .collect()
}

/// The built-in calibration prompts (not the evaluation prompts of `data/prompts_eval.txt`).
pub const CALIBRATION_PROMPTS: &str = include_str!("smollm2_prompts.txt");

/// A float decoder with the activation ranges measured on calibration prompts.
pub struct Calibrated {
    float: LlamaFloat,
    ranges: Ranges,
    prompts: usize,
}

/// Runs `float` over each prompt (token ids) and [`CALIBRATION_STEPS`] greedy steps after
/// it, recording every activation's range.
pub fn calibrate(
    float: LlamaFloat,
    prompts: &[Vec<u32>],
    progress: Progress<'_>,
) -> Result<Calibrated> {
    if float.pairing() != RopePairing::Half {
        return Err(Error::Param(
            "calibrate a model loaded with RopePairing::Half".into(),
        ));
    }
    let mut ranges = Ranges::new();
    let vocab = float.config().vocab;
    for (i, ids) in prompts.iter().enumerate() {
        progress("calibrating", i, prompts.len());
        let mut cache = float.new_cache();
        let mut logits = float.forward(ids, &mut cache, Some(&mut ranges))?;
        for _ in 0..CALIBRATION_STEPS {
            let next = super::llama::argmax(&logits[logits.len() - vocab..]);
            logits = float.forward(&[next], &mut cache, Some(&mut ranges))?;
        }
    }
    progress("calibrating", prompts.len(), prompts.len());
    Ok(Calibrated {
        float,
        ranges,
        prompts: prompts.len(),
    })
}

fn mq(scale: f64, what: &str) -> Result<(i32, u32)> {
    quantize_multiplier(scale)
        .ok_or_else(|| Error::Param(format!("{what}: scale {scale} cannot be a multiplier")))
}

/// Weight indices of one `fully_connected` (the same weights for both halves of a split
/// input, with a multiplier and shift for each).
#[derive(Clone, Copy, Debug)]
struct Fc {
    w: u32,
    bias: u32,
    /// Multipliers and shifts for the low half (or the whole `i8` input).
    lo: (u32, u32),
    /// Multipliers and shifts for the high half of a split input.
    hi: (u32, u32),
    /// Multipliers and shifts for the top part of a three-way split `i32` input.
    top: (u32, u32),
    /// Right shift of the sum of the two halves' `i32` products into the output.
    combine: u32,
}

/// A `fully_connected` with 16-bit weights on a split input: the weights as two `i8`
/// halves (`w = 256 w_hi + w_lo`), three products (high-high, high-low, low-high; the
/// low-low one is below the output's resolution) each to `i32` at the output scale.
#[derive(Clone, Copy, Debug)]
struct WideFc {
    w_hi: u32,
    w_lo: u32,
    bias: u32,
    /// Multipliers and shifts: `x_hi w_hi`, `x_hi w_lo`, `x_lo w_hi`.
    hh: (u32, u32),
    hl: (u32, u32),
    lh: (u32, u32),
}

/// Scalar parameters of `a * ra + b * rb` as one `add`.
#[derive(Clone, Copy, Debug)]
struct AddParams {
    a: i32,
    b: i32,
    shift: u32,
}

fn add_params(ra: f64, rb: f64) -> Result<AddParams> {
    let big = ra.abs().max(rb.abs());
    if !big.is_finite() || big <= 0.0 {
        return Err(Error::Param(format!("add: ratios {ra}, {rb}")));
    }
    let shift = (30 - big.log2().ceil() as i32).clamp(0, 62) as u32;
    let m = |r: f64| (r * 2f64.powi(shift as i32)).round() as i32;
    Ok(AddParams {
        a: m(ra),
        b: m(rb),
        shift,
    })
}

/// How a product of two split operands (`a = 256 a_hi + a_lo`, same for `b`) is put back
/// together: `r * (65536 hh + 256 (hl + lh) + ll)` into the output scale.
#[derive(Clone, Copy, Debug)]
struct Wide {
    /// `256 (hl + lh) + ll`, exact in `i32`.
    cross: AddParams,
    /// `65536 r hh + r cross`.
    out: AddParams,
}

fn wide(r: f64) -> Result<Wide> {
    Ok(Wide {
        cross: AddParams {
            a: 256,
            b: 1,
            shift: 0,
        },
        out: add_params(65536.0 * r, r)?,
    })
}

/// An RMS norm's parameters: gamma's weight index, epsilon, shift.
type Rms = (u32, u64, u32);

/// One block's weights (indices) and scalar parameters.
#[derive(Clone, Debug)]
struct Block {
    attn_norm: Rms,
    q: Fc,
    k: Fc,
    v: Fc,
    o: Fc,
    scores: Wide,
    exp: u32,
    ctx: Wide,
    mlp_norm: Rms,
    gate: Fc,
    gate_to_i8: (i32, u32),
    sigmoid: u32,
    silu: (i32, u32),
    up: Fc,
    act: (i32, u32),
    down: Fc,
}

/// The integer model: quantized weights (shared by every program) and the parameters of
/// every op.
pub struct Quantized {
    cfg: LlamaConfig,
    weights: Vec<(String, Tensor)>,
    embed: u32,
    embed_to_h: (i32, u32),
    blocks: Vec<Block>,
    final_norm: Rms,
    head: WideFc,
    cos: u32,
    sin: u32,
    ones: u32,
    /// `i32 [C]`, `c * W`: the first index of each chunk of the two-stage argmax.
    argmax_offsets: u32,
    /// The chunk width `W` of the two-stage argmax (`vocab = C * W`).
    argmax_chunk: usize,
    max_positions: usize,
    max_new: usize,
    metadata: BTreeMap<String, String>,
}

/// Collects weights and their indices.
struct Weights(Vec<(String, Tensor)>);

impl Weights {
    fn add(&mut self, name: String, t: Tensor) -> u32 {
        self.0.push((name, t));
        self.0.len() as u32 - 1
    }

    /// A `fully_connected` on a split `i16` input of scale `s_x`, with per-output-channel
    /// symmetric `i8` weights (`w` row-major `[n, k]`) and a zero bias: each half's `i32`
    /// product at scale `s_y / 2^combine`, their sum shifted right by `combine` into `s_y`.
    #[allow(clippy::too_many_arguments)]
    fn fc(
        &mut self,
        name: &str,
        w: &[f32],
        n: usize,
        k: usize,
        zero_bias: u32,
        s_x: f64,
        s_y: f64,
        combine: u32,
        three: bool,
    ) -> Result<Fc> {
        let (wq, s_w) = quantize_rows(w, n, k);
        let s_acc = s_y / 2f64.powi(combine as i32);
        let (ml, sl) = multipliers(&s_w, s_x, s_acc, name)?;
        let (mh, sh) = multipliers(&s_w, s_x * 256.0, s_acc, name)?;
        let w = self.add(format!("{name}.weight"), Tensor::from_i8(vec![n, k], wq)?);
        let lo = self.mult_shift(&format!("{name}.lo"), ml, sl)?;
        let hi = self.mult_shift(&format!("{name}.hi"), mh, sh)?;
        let top = if three {
            let (mt, st) = multipliers(&s_w, s_x * 65536.0, s_acc, name)?;
            self.mult_shift(&format!("{name}.top"), mt, st)?
        } else {
            hi
        };
        Ok(Fc {
            w,
            bias: zero_bias,
            lo,
            hi,
            top,
            combine,
        })
    }

    /// A [`WideFc`] from `w` (row-major `[n, k]`), one scale per output channel, from
    /// input scale `s_x` to `i32` output scale `s_y`.
    #[allow(clippy::too_many_arguments)]
    fn wide_fc(
        &mut self,
        name: &str,
        w: &[f32],
        n: usize,
        k: usize,
        zero_bias: u32,
        s_x: f64,
        s_y: f64,
    ) -> Result<WideFc> {
        let rows: Vec<(Vec<i8>, Vec<i8>, f64)> = w
            .par_chunks(k)
            .take(n)
            .map(|row| {
                let s =
                    (row.iter().fold(0f32, |a, &v| a.max(v.abs())) as f64 / SPLIT_QMAX).max(1e-12);
                let (mut hi, mut lo) = (Vec::with_capacity(k), Vec::with_capacity(k));
                for &v in row {
                    let q = (v as f64 / s).round().clamp(-SPLIT_QMAX, SPLIT_QMAX) as i32;
                    let h = (q as f64 / 256.0).round() as i32;
                    hi.push(h as i8);
                    lo.push((q - 256 * h) as i8);
                }
                (hi, lo, s)
            })
            .collect();
        let mut s_w = Vec::with_capacity(n);
        let (mut hi, mut lo) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k));
        for (h, l, s) in rows {
            hi.extend(h);
            lo.extend(l);
            s_w.push(s);
        }
        let w_hi = self.add(
            format!("{name}.weight.hi"),
            Tensor::from_i8(vec![n, k], hi)?,
        );
        let w_lo = self.add(
            format!("{name}.weight.lo"),
            Tensor::from_i8(vec![n, k], lo)?,
        );
        let mut part = |what: &str, factor: f64| -> Result<(u32, u32)> {
            let (m, sh) = multipliers(&s_w, s_x * factor, s_y, name)?;
            self.mult_shift(&format!("{name}.{what}"), m, sh)
        };
        let hh = part("hh", 65536.0)?;
        let hl = part("hl", 256.0)?;
        let lh = part("lh", 256.0)?;
        Ok(WideFc {
            w_hi,
            w_lo,
            bias: zero_bias,
            hh,
            hl,
            lh,
        })
    }

    fn mult_shift(&mut self, name: &str, mult: Vec<i32>, shift: Vec<i32>) -> Result<(u32, u32)> {
        let n = mult.len();
        Ok((
            self.add(
                format!("{name}.multiplier"),
                Tensor::from_i32(vec![n], mult)?,
            ),
            self.add(format!("{name}.shift"), Tensor::from_i32(vec![n], shift)?),
        ))
    }

    /// An RMS norm's gamma (`w / s_y` in fixed point) and its epsilon for input scale `s_x`.
    fn rms(&mut self, name: &str, w: &[f32], eps: f32, s_x: f64, s_y: f64) -> Result<Rms> {
        let n = w.len();
        let big = w.iter().fold(0f64, |a, &v| a.max(v.abs() as f64)) / s_y;
        let shift = ((2f64.powi(30) / big.max(1e-9)).log2().floor() as i32).clamp(0, 30) as u32;
        let g: Vec<i32> = w
            .iter()
            .map(|&v| (v as f64 / s_y * 2f64.powi(shift as i32)).round() as i32)
            .collect();
        let gamma = self.add(format!("{name}.gamma"), Tensor::from_i32(vec![n], g)?);
        // Float epsilon in units of the integer mean square: N^2 * eps / s_x^2.
        let epsilon = ((n * n) as f64 * eps as f64 / (s_x * s_x)).round() as u64;
        Ok((gamma, epsilon, shift))
    }
}

/// Rows quantized to symmetric `i8` with one scale per row: (values, scales).
fn quantize_rows(w: &[f32], n: usize, k: usize) -> (Vec<i8>, Vec<f64>) {
    let rows: Vec<(Vec<i8>, f64)> = w
        .par_chunks(k)
        .take(n)
        .map(|row| {
            let s = (row.iter().fold(0f32, |a, &v| a.max(v.abs())) as f64 / 127.0).max(1e-12);
            let q = row
                .iter()
                .map(|&v| (v as f64 / s).round().clamp(-127.0, 127.0) as i8)
                .collect();
            (q, s)
        })
        .collect();
    let mut q = Vec::with_capacity(n * k);
    let mut s = Vec::with_capacity(n);
    for (r, sc) in rows {
        q.extend(r);
        s.push(sc);
    }
    (q, s)
}

fn multipliers(s_w: &[f64], s_x: f64, s_y: f64, name: &str) -> Result<(Vec<i32>, Vec<i32>)> {
    let mut mult = Vec::with_capacity(s_w.len());
    let mut shift = Vec::with_capacity(s_w.len());
    for &s in s_w {
        let (m, sh) = mq(s_x * s / s_y, name)?;
        mult.push(m);
        shift.push(sh as i32);
    }
    Ok((mult, shift))
}

impl Calibrated {
    /// The float model.
    pub fn float(&self) -> &LlamaFloat {
        &self.float
    }

    /// The recorded ranges.
    pub fn ranges(&self) -> &Ranges {
        &self.ranges
    }

    fn absmax(&self, name: &str) -> Result<f64> {
        let (lo, hi) = self
            .ranges
            .get(name)
            .ok_or_else(|| Error::Param(format!("no calibration range for {name}")))?;
        Ok((lo.abs().max(hi.abs()) as f64).max(1e-6))
    }

    /// Quantizes the weights once for programs of prompts up to `max_prompt` tokens and up
    /// to `max_new` new tokens.
    pub fn quantize(
        &self,
        max_prompt: usize,
        max_new: usize,
        progress: Progress<'_>,
    ) -> Result<Quantized> {
        let f = &self.float;
        let cfg = *f.config();
        let LlamaConfig {
            vocab,
            hidden: d,
            ffn,
            head_dim: dh,
            ..
        } = cfg;
        let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
        let max_positions = max_prompt + max_new;
        if max_prompt == 0 || max_new == 0 || max_positions > cfg.context {
            return Err(Error::Param(format!(
                "prompts up to {max_prompt} and {max_new} new tokens: the model takes 1..={} in all",
                cfg.context
            )));
        }
        let mut w = Weights(Vec::new());
        // The residual stream's scale: a power of two leaving 2 bits of headroom in i32.
        let resid = (0..cfg.layers)
            .map(|l| {
                Ok(self
                    .absmax(&format!("l{l}.resid"))?
                    .max(self.absmax(&format!("l{l}.resid_attn"))?))
            })
            .collect::<Result<Vec<f64>>>()?
            .into_iter()
            .fold(self.absmax("emb")?, f64::max);
        let frac = (2f64.powi(29) / resid).log2().floor().clamp(0.0, 30.0) as i32;
        let s_h = 2f64.powi(-frac);
        let wide16 = |name: &str| -> Result<f64> { Ok(self.absmax(name)? / SPLIT_QMAX) };

        let emb_abs = f
            .embedding()
            .iter()
            .fold(0f32, |a, &v| a.max(v.abs()))
            .max(1e-6) as f64;
        let s_e = emb_abs / 32767.0;
        let embed = w.add(
            "token_embd.i16".into(),
            Tensor::from_i16(
                vec![vocab, d],
                f.embedding()
                    .par_iter()
                    .map(|&v| (v as f64 / s_e).round() as i16)
                    .collect(),
            )?,
        );
        let embed_to_h = mq(s_e / s_h, "embedding")?;
        let mut zero = BTreeMap::new();
        for n in [d, qd, kvd, ffn, vocab] {
            if let std::collections::btree_map::Entry::Vacant(e) = zero.entry(n) {
                e.insert(w.add(
                    format!("zero_bias.{n}"),
                    Tensor::from_i32(vec![n], vec![0; n])?,
                ));
            }
        }
        // RoPE tables over every position a program may use.
        let half = dh / 2;
        let (mut cos, mut sin) = (
            Vec::with_capacity(max_positions * half),
            Vec::with_capacity(max_positions * half),
        );
        let one = 2f64.powi(ROPE_BITS as i32);
        for p in 0..max_positions {
            for i in 0..half {
                let a = cfg.rope_angle(p, i);
                cos.push((a.cos() * one).round() as i32);
                sin.push((a.sin() * one).round() as i32);
            }
        }
        let cos = w.add(
            "rope.cos".into(),
            Tensor::from_i32(vec![max_positions, half], cos)?,
        );
        let sin = w.add(
            "rope.sin".into(),
            Tensor::from_i32(vec![max_positions, half], sin)?,
        );
        let ones = w.add(
            "mask.ones".into(),
            Tensor::from_i32(vec![1, max_new], vec![1; max_new])?,
        );
        let argmax_chunk = argmax_chunk(vocab);
        let chunks = vocab / argmax_chunk;
        let argmax_offsets = w.add(
            "argmax.offsets".into(),
            Tensor::from_i32(
                vec![chunks],
                (0..chunks)
                    .map(|c| {
                        i32::try_from(c * argmax_chunk)
                            .map_err(|_| Error::Param(format!("vocabulary of {vocab}")))
                    })
                    .collect::<Result<_>>()?,
            )?,
        );

        let mut blocks = Vec::with_capacity(cfg.layers);
        for (l, layer) in f.layers().iter().enumerate() {
            progress("quantizing layers", l, cfg.layers);
            let p = format!("blk.{l}");
            let r = |what: &str| self.absmax(&format!("l{l}.{what}"));
            let s_ain = wide16(&format!("l{l}.attn_in"))?;
            let attn_norm = w.rms(
                &format!("{p}.attn_norm"),
                &layer.attn_norm,
                cfg.rms_eps,
                s_h,
                s_ain,
            )?;
            let s_q = r("q_proj")?.max(r("q")?) / SPLIT_QMAX;
            let s_k = r("k_proj")?.max(r("k")?) / SPLIT_QMAX;
            let s_v = r("v")? / SPLIT_QMAX;
            let q = w.fc(
                &format!("{p}.q"),
                &layer.wq,
                qd,
                d,
                zero[&qd],
                s_ain,
                s_q,
                8,
                false,
            )?;
            let k = w.fc(
                &format!("{p}.k"),
                &layer.wk,
                kvd,
                d,
                zero[&kvd],
                s_ain,
                s_k,
                8,
                false,
            )?;
            let v = w.fc(
                &format!("{p}.v"),
                &layer.wv,
                kvd,
                d,
                zero[&kvd],
                s_ain,
                s_v,
                8,
                false,
            )?;
            let s_sc = (r("scores")? / 32767.0).max(SCORE_STEP);
            let scores = wide(s_q * s_k / (dh as f64).sqrt() / s_sc)?;
            let table: Vec<i32> = (0..EXP_TABLE)
                .map(|i| ((-(i as f64) * s_sc).exp() * 2f64.powi(30)).round() as i32)
                .collect();
            let exp = w.add(
                format!("{p}.exp"),
                Tensor::from_i32(vec![EXP_TABLE], table)?,
            );
            let s_ctx = r("ctx")? / SPLIT_QMAX;
            let ctx = wide(s_v * 2f64.powi(-(PROB_BITS as i32)) / s_ctx)?;
            let o = w.fc(
                &format!("{p}.o"),
                &layer.wo,
                d,
                qd,
                zero[&d],
                s_ctx,
                s_h,
                0,
                false,
            )?;
            let s_min = r("mlp_in")? / SPLIT_QMAX;
            let mlp_norm = w.rms(
                &format!("{p}.ffn_norm"),
                &layer.ffn_norm,
                cfg.rms_eps,
                s_h,
                s_min,
            )?;
            let s_g = r("gate")? / 32767.0;
            let gate = w.fc(
                &format!("{p}.gate"),
                &layer.gate,
                ffn,
                d,
                zero[&ffn],
                s_min,
                s_g,
                8,
                false,
            )?;
            // SiLU as gate * sigmoid(gate): the sigmoid from a table on an i8 copy of the
            // gate (its slope is at most 1/4), the product with the i16 gate.
            let s_g8 = r("gate")?.min(SIGMOID_RANGE) / 127.0;
            let gate_to_i8 = mq(s_g / s_g8, "gate to i8")?;
            let table: Vec<i16> = (0..256)
                .map(|i| {
                    let x = (i as f64 - 128.0) * s_g8;
                    (32768.0 / (1.0 + (-x).exp())).round().min(32767.0) as i16
                })
                .collect();
            let sigmoid = w.add(format!("{p}.sigmoid"), Tensor::from_i16(vec![256], table)?);
            let s_silu = r("silu")? / 32767.0;
            let silu = mq(s_g / 32768.0 / s_silu, "silu")?;
            let s_up = r("up")? / 32767.0;
            let up = w.fc(
                &format!("{p}.up"),
                &layer.up,
                ffn,
                d,
                zero[&ffn],
                s_min,
                s_up,
                8,
                false,
            )?;
            let s_act = r("act")? / ACT_QMAX;
            let act = mq(s_silu * s_up / s_act, "act")?;
            let down = w.fc(
                &format!("{p}.down"),
                &layer.down,
                d,
                ffn,
                zero[&d],
                s_act,
                s_h,
                0,
                true,
            )?;
            blocks.push(Block {
                attn_norm,
                q,
                k,
                v,
                o,
                scores,
                exp,
                ctx,
                mlp_norm,
                gate,
                gate_to_i8,
                sigmoid,
                silu,
                up,
                act,
                down,
            });
        }
        progress("quantizing layers", cfg.layers, cfg.layers);
        let s_fn = wide16("final_norm_last")?;
        let final_norm = w.rms("output_norm", f.output_norm(), cfg.rms_eps, s_h, s_fn)?;
        let head = w.wide_fc(
            "output",
            f.output_matrix(),
            vocab,
            d,
            zero[&vocab],
            s_fn,
            2f64.powi(-LOGIT_BITS),
        )?;
        let mut metadata = BTreeMap::new();
        metadata.insert("architecture".into(), "llama".into());
        metadata.insert("residual_scale".into(), format!("2^-{frac}"));
        metadata.insert("calibration_prompts".into(), self.prompts.to_string());
        metadata.insert(
            "calibration_steps_per_prompt".into(),
            CALIBRATION_STEPS.to_string(),
        );
        metadata.insert("max_positions".into(), max_positions.to_string());
        Ok(Quantized {
            cfg,
            weights: w.0,
            embed,
            embed_to_h,
            blocks,
            final_norm,
            head,
            cos,
            sin,
            ones,
            argmax_offsets,
            argmax_chunk,
            max_positions,
            max_new,
            metadata,
        })
    }
}

/// An `i16` activation as two `i8` halves: `x = 256 * hi + lo`.
#[derive(Clone, Copy, Debug)]
struct Halves {
    hi: Operand,
    lo: Operand,
}

/// One block's cache: keys `[kv heads, positions, head dim]` (after RoPE) and values
/// transposed, `[kv heads, head dim, positions]`, each as two halves.
#[derive(Clone, Copy, Debug)]
struct Cache {
    k: Halves,
    v: Halves,
}

/// Program-building helpers.
struct Prog<'a> {
    b: ProgramBuilder,
    q: &'a Quantized,
}

fn wt(i: u32) -> Operand {
    Operand::Weight(i)
}

impl Prog<'_> {
    /// A linear layer on a split input: two `fully_connected` (the same weights) to `i32`,
    /// summed and shifted into `out`.
    fn linear(&mut self, x: Halves, fc: &Fc, out: DType) -> Result<Operand> {
        let mut half = |x: Operand, (m, s): (u32, u32)| {
            self.b.push(
                Op::FullyConnected {
                    x_zero_point: 0,
                    y_zero_point: 0,
                },
                &[x, wt(fc.w), wt(fc.bias), wt(m), wt(s)],
                DType::I32,
            )
        };
        let hi = half(x.hi, fc.hi)?;
        let lo = half(x.lo, fc.lo)?;
        self.add(
            hi,
            lo,
            AddParams {
                a: 1,
                b: 1,
                shift: fc.combine,
            },
            out,
        )
    }

    /// A linear layer on an `i32` input split three ways (`x = 65536 top + 256 hi + lo`):
    /// three `fully_connected` (the same weights) to `i32`, summed.
    fn linear3(&mut self, x: Operand, fc: &Fc) -> Result<Operand> {
        let top = self.requantize(x, (1, 16), DType::I8)?;
        let rest = self.add(
            x,
            top,
            AddParams {
                a: 1,
                b: -65536,
                shift: 0,
            },
            DType::I32,
        )?;
        let rest = self.split(rest)?;
        let mut part = |x: Operand, (m, s): (u32, u32)| {
            self.b.push(
                Op::FullyConnected {
                    x_zero_point: 0,
                    y_zero_point: 0,
                },
                &[x, wt(fc.w), wt(fc.bias), wt(m), wt(s)],
                DType::I32,
            )
        };
        let t = part(top, fc.top)?;
        let hi = part(rest.hi, fc.hi)?;
        let lo = part(rest.lo, fc.lo)?;
        let one = AddParams {
            a: 1,
            b: 1,
            shift: 0,
        };
        let sum = self.add(t, hi, one, DType::I32)?;
        self.add(sum, lo, one, DType::I32)
    }

    fn requantize(&mut self, x: Operand, (m, s): (i32, u32), out: DType) -> Result<Operand> {
        self.b.push(
            Op::Requantize {
                x_zero_point: 0,
                multiplier: m,
                shift: s,
                y_zero_point: 0,
            },
            &[x],
            out,
        )
    }

    fn mul(&mut self, a: Operand, b: Operand, (m, s): (i32, u32), out: DType) -> Result<Operand> {
        self.b.push(
            Op::Mul {
                a_zero_point: 0,
                b_zero_point: 0,
                multiplier: m,
                shift: s,
                y_zero_point: 0,
            },
            &[a, b],
            out,
        )
    }

    /// RMS norm of the `i32` stream to `i16`, split into halves.
    fn rms(&mut self, x: Operand, (gamma, epsilon, shift): Rms) -> Result<Halves> {
        let y = self.b.push(
            Op::RmsNorm {
                x_zero_point: 0,
                epsilon,
                shift,
                y_zero_point: 0,
            },
            &[x, wt(gamma)],
            DType::I16,
        )?;
        self.split(y)
    }

    fn add(&mut self, a: Operand, b: Operand, p: AddParams, out: DType) -> Result<Operand> {
        self.b.push(
            Op::Add {
                a_zero_point: 0,
                a_multiplier: p.a,
                b_zero_point: 0,
                b_multiplier: p.b,
                shift: p.shift,
                y_zero_point: 0,
            },
            &[a, b],
            out,
        )
    }

    /// `x = 256 * hi + lo` with `hi = round(x / 256)`, both `i8` (exact for
    /// `|x| < 32640`).
    fn split(&mut self, x: Operand) -> Result<Halves> {
        let hi = self.b.push(
            Op::Requantize {
                x_zero_point: 0,
                multiplier: 1,
                shift: 8,
                y_zero_point: 0,
            },
            &[x],
            DType::I8,
        )?;
        let lo = self.add(
            x,
            hi,
            AddParams {
                a: 1,
                b: -256,
                shift: 0,
            },
            DType::I8,
        )?;
        Ok(Halves { hi, lo })
    }

    /// The product of two split operands with `batch_matmul` (four `i8` products, exact
    /// in `i32`), into `out` by `w`.
    fn wide_matmul(
        &mut self,
        a: Halves,
        b: Halves,
        transpose_b: bool,
        w: Wide,
        out: DType,
    ) -> Result<Operand> {
        let mut mm = |x: Operand, y: Operand| {
            self.b.push(
                Op::BatchMatmul {
                    transpose_b,
                    a_zero_point: 0,
                    b_zero_point: 0,
                    multiplier: 1,
                    shift: 0,
                    y_zero_point: 0,
                },
                &[x, y],
                DType::I32,
            )
        };
        let hh = mm(a.hi, b.hi)?;
        let hl = mm(a.hi, b.lo)?;
        let lh = mm(a.lo, b.hi)?;
        let ll = mm(a.lo, b.lo)?;
        let one = AddParams {
            a: 1,
            b: 1,
            shift: 0,
        };
        let mid = self.add(hl, lh, one, DType::I32)?;
        let cross = self.add(mid, ll, w.cross, DType::I32)?;
        self.add(hh, cross, w.out, out)
    }

    /// `[S, heads * dh]` to `[heads, S, dh]`.
    fn heads(&mut self, x: Operand, s: usize, heads: usize, dh: usize) -> Result<Operand> {
        let r = self.b.reshape(x, &[s, heads, dh])?;
        self.b.transpose(r, &[1, 0, 2])
    }

    fn rope(&mut self, x: Operand, pos0: usize) -> Result<Operand> {
        self.b.push(
            Op::Rope {
                x_zero_point: 0,
                y_zero_point: 0,
                position_offset: pos0 as u32,
                frac_bits: ROPE_BITS,
                pairing: RopePairing::Half,
            },
            &[x, wt(self.q.cos), wt(self.q.sin)],
            DType::I16,
        )
    }

    /// One decoder block over `s` rows at positions `pos0..pos0 + s`, after the block's
    /// cache (if any); returns the new stream and the block's cache.
    fn block(
        &mut self,
        bl: &Block,
        h: Operand,
        s: usize,
        pos0: usize,
        mask: Operand,
        cache: Option<Cache>,
    ) -> Result<(Operand, Cache)> {
        let cfg = self.q.cfg;
        let (heads, kvh, dh) = (cfg.heads, cfg.kv_heads, cfg.head_dim);
        let x = self.rms(h, bl.attn_norm)?;
        let q = self.linear(x, &bl.q, DType::I16)?;
        let k = self.linear(x, &bl.k, DType::I16)?;
        let v = self.linear(x, &bl.v, DType::I16)?;
        let q = self.heads(q, s, heads, dh)?;
        let q = self.rope(q, pos0)?;
        let q = self.split(q)?;
        let k = self.heads(k, s, kvh, dh)?;
        let k = self.rope(k, pos0)?;
        let mut k = self.split(k)?;
        // Values transposed, [kv heads, head dim, positions] (the cache grows along its last
        // axis): a one-step of `P x V` then reads a row of `V^T`, one contiguous run, instead
        // of a column of `V` with one leaf per position (988 k gas over 512 keys).
        let v = self.b.reshape(v, &[s, kvh, dh])?;
        let v = self.b.transpose(v, &[1, 2, 0])?;
        let mut v = self.split(v)?;
        if let Some(c) = cache {
            let mut cat = |a: Operand, b: Operand, axis: usize| {
                self.b.push(Op::Concat { axis }, &[a, b], DType::I8)
            };
            k = Halves {
                hi: cat(c.k.hi, k.hi, 1)?,
                lo: cat(c.k.lo, k.lo, 1)?,
            };
            v = Halves {
                hi: cat(c.v.hi, v.hi, 2)?,
                lo: cat(c.v.lo, v.lo, 2)?,
            };
        }
        let scores = self.wide_matmul(q, k, true, bl.scores, DType::I16)?;
        // The softmax in its two halves (the same bits as one `softmax`): a one-step of
        // `softmax` over a 512-key cache reads up to 512 scattered table entries (1.9 M to
        // 3.0 M gas); each half reads one row and at most one entry.
        let e = self.b.push(
            Op::SoftmaxExp { causal: true },
            &[scores, wt(bl.exp), mask],
            DType::I32,
        )?;
        let probs = self.b.push(
            Op::SoftmaxNorm {
                frac_bits: PROB_BITS,
                y_zero_point: 0,
            },
            &[e],
            DType::I16,
        )?;
        let probs = self.split(probs)?;
        let ctx = self.wide_matmul(probs, v, true, bl.ctx, DType::I16)?;
        let ctx = self.b.transpose(ctx, &[1, 0, 2])?;
        let ctx = self.b.reshape(ctx, &[s, heads * dh])?;
        let ctx = self.split(ctx)?;
        let o = self.linear(ctx, &bl.o, DType::I32)?;
        let one = AddParams {
            a: 1,
            b: 1,
            shift: 0,
        };
        let h = self.add(h, o, one, DType::I32)?;
        let x = self.rms(h, bl.mlp_norm)?;
        let g = self.linear(x, &bl.gate, DType::I16)?;
        let g8 = self.requantize(g, bl.gate_to_i8, DType::I8)?;
        let sig = self.b.push(Op::Lut, &[g8, wt(bl.sigmoid)], DType::I16)?;
        let silu = self.mul(g, sig, bl.silu, DType::I16)?;
        let u = self.linear(x, &bl.up, DType::I16)?;
        let a = self.mul(silu, u, bl.act, DType::I32)?;
        let down = self.linear3(a, &bl.down)?;
        let h = self.add(h, down, one, DType::I32)?;
        Ok((h, Cache { k, v }))
    }

    /// Final norm, output matrix and argmax of the stream's last row: `i32 [1]`.
    fn head(&mut self, h: Operand, s: usize) -> Result<Operand> {
        let last = if s > 1 {
            self.b.push(
                Op::Slice {
                    axis: 0,
                    start: s - 1,
                    end: s,
                },
                &[h],
                DType::I32,
            )?
        } else {
            h
        };
        let x = self.rms(last, self.q.final_norm)?;
        let hd = self.q.head;
        let mut fc = |x: Operand, w: u32, (m, s): (u32, u32)| {
            self.b.push(
                Op::FullyConnected {
                    x_zero_point: 0,
                    y_zero_point: 0,
                },
                &[x, wt(w), wt(hd.bias), wt(m), wt(s)],
                DType::I32,
            )
        };
        let hh = fc(x.hi, hd.w_hi, hd.hh)?;
        let hl = fc(x.hi, hd.w_lo, hd.hl)?;
        let lh = fc(x.lo, hd.w_hi, hd.lh)?;
        let one = AddParams {
            a: 1,
            b: 1,
            shift: 0,
        };
        let cross = self.add(hl, lh, one, DType::I32)?;
        let logits = self.add(hh, cross, one, DType::I32)?;
        self.argmax(logits)
    }

    /// The first maximum of the `i32 [1, V]` logits as `i32 [1]` ([`two_stage_argmax`]).
    fn argmax(&mut self, logits: Operand) -> Result<Operand> {
        two_stage_argmax(
            &mut self.b,
            logits,
            self.q.cfg.vocab,
            self.q.argmax_chunk,
            wt(self.q.argmax_offsets),
        )
    }

    /// Token embeddings of `ids` (`i32 [S]`) into the stream: `i32 [S, hidden]`.
    fn embed(&mut self, ids: Operand) -> Result<Operand> {
        let e = self
            .b
            .push(Op::Embedding, &[wt(self.q.embed), ids], DType::I16)?;
        self.b.push(
            Op::Requantize {
                x_zero_point: 0,
                multiplier: self.q.embed_to_h.0,
                shift: self.q.embed_to_h.1,
                y_zero_point: 0,
            },
            &[e],
            DType::I32,
        )
    }
}

impl Quantized {
    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The longest prompt plus new tokens any program may use.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Builds the program for prompts of up to `prompt_len` tokens (left-padded to it) and
    /// `max_new` new tokens; `progress` sees the decode steps.
    pub fn build(
        &self,
        name: &str,
        prompt_len: usize,
        max_new: usize,
        progress: Progress<'_>,
    ) -> Result<Model> {
        let cfg = self.cfg;
        if prompt_len == 0
            || max_new == 0
            || max_new > self.max_new
            || prompt_len + max_new > self.max_positions
        {
            return Err(Error::Param(format!(
                "a program for {prompt_len} prompt tokens and {max_new} new ones: the weights \
                 allow {} new tokens and {} positions in all",
                self.max_new, self.max_positions
            )));
        }
        let b = prompt_len;
        let mut p = Prog {
            b: ProgramBuilder::new(TensorType::new(DType::I32, vec![2, b])),
            q: self,
        };
        for (n, t) in &self.weights {
            p.b.weight(n.clone(), t.clone());
        }
        let input = p.b.input();
        let ids = p.b.push(
            Op::Slice {
                axis: 0,
                start: 0,
                end: 1,
            },
            &[input],
            DType::I32,
        )?;
        let ids = p.b.reshape(ids, &[b])?;
        let mask = p.b.push(
            Op::Slice {
                axis: 0,
                start: 1,
                end: 2,
            },
            &[input],
            DType::I32,
        )?;
        let mut h = p.embed(ids)?;
        let mut caches = Vec::with_capacity(cfg.layers);
        for bl in &self.blocks {
            let (h2, c) = p.block(bl, h, b, 0, mask, None)?;
            h = h2;
            caches.push(c);
        }
        let mut outs = vec![p.head(h, b)?];
        for t in 1..max_new {
            progress("building decode steps", t, max_new);
            let ones = p.b.push(
                Op::Slice {
                    axis: 1,
                    start: 0,
                    end: t,
                },
                &[wt(self.ones)],
                DType::I32,
            )?;
            let mask_t =
                p.b.push(Op::Concat { axis: 1 }, &[mask, ones], DType::I32)?;
            let mut h = p.embed(outs[t - 1])?;
            for (l, bl) in self.blocks.iter().enumerate() {
                let (h2, c) = p.block(bl, h, 1, b + t - 1, mask_t, Some(caches[l]))?;
                h = h2;
                caches[l] = c;
            }
            outs.push(p.head(h, 1)?);
        }
        progress("building decode steps", max_new, max_new);
        let out = p.b.push(Op::Concat { axis: 0 }, &outs, DType::I32)?;
        let (program, weights) = p.b.finish(out)?;
        let mut meta = self.metadata.clone();
        meta.insert("prompt_len".into(), b.to_string());
        meta.insert("max_new_tokens".into(), max_new.to_string());
        Model::new(name, program, weights, meta)
    }
}

/// The first maximum of `logits` (`i32 [1, V]`) as `i32 [1]`, in two stages so that no
/// `argmax` reads more than `max(C, W)` elements (`V = C * W`; one step of an argmax reads
/// its whole row on-chain): the argmax of each chunk of `W` (made global by adding
/// `offsets`, `i32 [C]` holding `c * W`; exact in `i32`), the chunk maxima gathered by
/// those indices, their argmax `j`, and the index of chunk `j`. The first maximum of the
/// row lies in the first chunk whose maximum is the row's maximum, at that chunk's first
/// maximum, so ties resolve as a single argmax would.
fn two_stage_argmax(
    b: &mut ProgramBuilder,
    logits: Operand,
    v: usize,
    w: usize,
    offsets: Operand,
) -> Result<Operand> {
    let c = v / w;
    let chunks = b.reshape(logits, &[c, w])?;
    let local = b.push(Op::Argmax, &[chunks], DType::I32)?;
    let global = b.push(
        Op::Add {
            a_zero_point: 0,
            a_multiplier: 1,
            b_zero_point: 0,
            b_multiplier: 1,
            shift: 0,
            y_zero_point: 0,
        },
        &[local, offsets],
        DType::I32,
    )?;
    let column = b.reshape(logits, &[v, 1])?;
    let maxima = b.push(Op::Embedding, &[column, global], DType::I32)?;
    let maxima = b.reshape(maxima, &[1, c])?;
    let j = b.push(Op::Argmax, &[maxima], DType::I32)?;
    let global = b.reshape(global, &[c, 1])?;
    let token = b.push(Op::Embedding, &[global, j], DType::I32)?;
    b.reshape(token, &[1])
}

/// The chunk width `W` of the two-stage argmax over `vocab` logits: the smallest divisor
/// of `vocab` at least its square root (256 for SmolLM2's 49152 = 192 * 256).
fn argmax_chunk(vocab: usize) -> usize {
    (1..=vocab)
        .find(|&w| vocab.is_multiple_of(w) && w * w >= vocab)
        .unwrap_or(1)
}

/// The program input for a prompt: ids left-padded with `-1` to `prompt_len`, and the mask.
pub fn input(ids: &[u32], prompt_len: usize) -> Result<Tensor> {
    if ids.is_empty() || ids.len() > prompt_len {
        return Err(Error::Param(format!(
            "{} prompt tokens for a program of 1..={prompt_len}",
            ids.len()
        )));
    }
    let pad = prompt_len - ids.len();
    let mut v = vec![-1i32; 2 * prompt_len];
    v[prompt_len..prompt_len + pad].fill(0);
    for (i, &id) in ids.iter().enumerate() {
        v[pad + i] =
            i32::try_from(id).map_err(|_| Error::Param(format!("token id {id} above i32::MAX")))?;
        v[prompt_len + pad + i] = 1;
    }
    Tensor::from_i32(vec![2, prompt_len], v)
}

/// File name of a generator family's index.
pub const FAMILY_FILE: &str = "family.json";
/// File name of the tokenizer (Hugging Face `tokenizers` JSON) in a family directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// One decoder imported as several generation programs: one per (prompt bucket, new
/// tokens), each a model of its own in a subdirectory, all with the same weights.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Family {
    /// Always [`Family::FORMAT`].
    pub format: String,
    /// The source model's name.
    pub model: String,
    /// Token ids that end a reply (the text stops before them).
    pub eos_ids: Vec<u32>,
    /// The programs.
    pub programs: Vec<Program>,
}

/// One program of a [`Family`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Program {
    /// Prompt tokens (left-padded to it).
    pub prompt_len: usize,
    /// Tokens generated.
    pub max_new: usize,
    /// Subdirectory holding the model.
    pub dir: String,
    /// Its model id.
    pub model_id: crate::merkle::H256,
}

impl Family {
    /// The format tag this build writes and reads.
    pub const FORMAT: &'static str = "fpml-generator-family/1";

    /// Parses and checks a family index.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let f: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::Decode(format!("{FAMILY_FILE}: {e}")))?;
        if f.format != Self::FORMAT {
            return Err(Error::Decode(format!(
                "{FAMILY_FILE}: format {:?} is not {:?}",
                f.format,
                Self::FORMAT
            )));
        }
        if f.programs.is_empty() {
            return Err(Error::Decode(format!("{FAMILY_FILE}: no programs")));
        }
        Ok(f)
    }

    /// The smallest program for `prompt` tokens and `new` new tokens (fewest prompt
    /// positions, then fewest new tokens), if any holds them.
    pub fn pick(&self, prompt: usize, new: usize) -> Option<&Program> {
        self.programs
            .iter()
            .filter(|p| p.prompt_len >= prompt && p.max_new >= new)
            .min_by_key(|p| (p.prompt_len, p.max_new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Weights, run};

    /// The two-stage argmax against the first maximum of the row, ties within and across
    /// chunks included.
    #[test]
    fn two_stage_argmax_is_the_first_maximum() {
        assert_eq!(argmax_chunk(49152), 256);
        assert_eq!(argmax_chunk(12), 4);
        assert_eq!(argmax_chunk(7), 7);
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for v in [12usize, 7, 48, 49152] {
            let w = argmax_chunk(v);
            let mut b = ProgramBuilder::new(TensorType::new(DType::I32, vec![1, v]));
            let offsets =
                Tensor::from_i32(vec![v / w], (0..v / w).map(|c| (c * w) as i32).collect())
                    .unwrap();
            let off = b.weight("offsets", offsets.clone());
            let x = b.input();
            let y = two_stage_argmax(&mut b, x, v, w, off).unwrap();
            let (program, _) = b.finish(y).unwrap();
            let weights = Weights::new(&program, vec![offsets]).unwrap();
            for case in 0..200 {
                // Few distinct values (many ties), or the extremes of i32.
                let x: Vec<i32> = (0..v)
                    .map(|_| match case % 3 {
                        0 => (next() % 3) as i32,
                        1 => [i32::MIN, i32::MAX, 0][(next() % 3) as usize],
                        _ => next() as i32,
                    })
                    .collect();
                let max = *x.iter().max().unwrap();
                let want = x.iter().position(|&e| e == max).unwrap() as i64;
                let input = Tensor::from_i32(vec![1, v], x).unwrap();
                let got = run(&program, &weights, &input).unwrap();
                assert_eq!(got.shape(), [1]);
                assert_eq!(got.to_i64_vec(), [want], "v {v} case {case}");
            }
        }
    }
}
