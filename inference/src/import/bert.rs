//! BERT encoders (all-MiniLM-L6-v2) in integer form.
//!
//! The float model is read from its safetensors weights; a float forward pass over the
//! calibration sentences records the range of every activation the program quantizes; the
//! program is then built from the op set:
//!
//! - token embeddings as an `i16` table, positions (plus token type 0) as an `i16` weight,
//!   added into the `i16` residual stream;
//! - the residual stream is `i16`; each layer norm whose output feeds Q/K/V or the
//!   feed-forward up projection runs twice on the same input: once to the `i16` residual
//!   stream, once straight to the `i8` input of those products, smoothed per channel
//!   (SmoothQuant: channel `j` divided by a factor that column `j` of the weights is
//!   multiplied by, see `Builder::smoothed_input`), so a few outlier channels do not take
//!   the 8 bits' range;
//! - Q, K, V, the attention output and the feed-forward layers are `fully_connected` with
//!   per-output-channel `i8` weights and `i32` biases;
//! - GELU is a 256-entry table on the `i8` up projection; the feed-forward channels go in
//!   two groups by their GELU output's range: the 32 widest through an `i16` table split
//!   into two `i8` halves for the down projection, the others through an `i8` table with an
//!   asymmetric range of their own (see `Builder::feed_forward`);
//! - attention scores are `i16` in units of at least 1/256, softmax goes through a 4096-entry
//!   exp table to `i8` probabilities (scale 1/256), `P x V` back to `i8`;
//! - the last hidden state is mean-pooled over the attention mask to `i32`; the caller
//!   L2-normalizes the pooled vector in float, after the program.
//!
//! Every scale is `max |x| / qmax` of the calibration activations (the narrow GELU group's:
//! its `(max - min) / 255`).

use super::FloatWeights;
use super::float::{gelu, layer_norm, linear, softmax_masked};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::ops::Op;
use crate::ops::fixed_point::quantize_multiplier;
use crate::program::{Operand, Program, ProgramBuilder};
use crate::tensor::{DType, Tensor, TensorType};
use std::collections::BTreeMap;

/// Shape of a BERT encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward size.
    pub ffn: usize,
    /// Position table rows.
    pub max_positions: usize,
}

/// all-MiniLM-L6-v2.
pub const MINILM_L6: BertConfig = BertConfig {
    vocab: 30522,
    hidden: 384,
    layers: 6,
    heads: 12,
    ffn: 1536,
    max_positions: 512,
};

const LN_EPS: f32 = 1e-12;
/// Feed-forward channels whose GELU output keeps 16 bits (see `Builder::feed_forward`).
const WIDE_FFN_CHANNELS: usize = 32;
/// How much of an activation channel's range smoothing moves into the weights
/// ([`Builder::smoothed_input`]).
const SMOOTH_ALPHA: f32 = 0.75;
/// Softmax exp table length: distances below the row maximum up to 16 (in float units at
/// the finest score scale) before the table's last entry takes over.
const EXP_TABLE: usize = 4096;
/// Fraction bits of softmax probabilities (`i8`, zero point -128).
const PROB_BITS: u32 = 8;
/// Fraction bits of the mean-pooled output.
pub const POOL_BITS: u32 = 8;

struct Layer {
    q: (Vec<f32>, Vec<f32>),
    k: (Vec<f32>, Vec<f32>),
    v: (Vec<f32>, Vec<f32>),
    o: (Vec<f32>, Vec<f32>),
    ln1: (Vec<f32>, Vec<f32>),
    up: (Vec<f32>, Vec<f32>),
    down: (Vec<f32>, Vec<f32>),
    ln2: (Vec<f32>, Vec<f32>),
}

/// A float BERT encoder.
pub struct BertFloat {
    cfg: BertConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    ln: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
}

/// Per named activation: (min, max) over the calibration set.
type Ranges = BTreeMap<String, (f32, f32)>;

fn record(ranges: &mut Option<&mut Ranges>, name: &str, values: &[f32]) {
    if let Some(r) = ranges.as_deref_mut() {
        let (lo, hi) = values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let e = r
            .entry(name.to_string())
            .or_insert((f32::INFINITY, f32::NEG_INFINITY));
        *e = (e.0.min(lo), e.1.max(hi));
    }
}

/// Records the range of each of the `d` channels (last axis) of `values` as
/// `{name}/{channel}`.
fn record_channels(ranges: &mut Option<&mut Ranges>, name: &str, values: &[f32], d: usize) {
    let Some(r) = ranges.as_deref_mut() else {
        return;
    };
    let mut range = vec![(f32::INFINITY, f32::NEG_INFINITY); d];
    for row in values.chunks(d) {
        for (e, &v) in range.iter_mut().zip(row) {
            *e = (e.0.min(v), e.1.max(v));
        }
    }
    for (j, (lo, hi)) in range.into_iter().enumerate() {
        let e = r
            .entry(format!("{name}/{j}"))
            .or_insert((f32::INFINITY, f32::NEG_INFINITY));
        *e = (e.0.min(lo), e.1.max(hi));
    }
}

impl BertFloat {
    /// Reads the weights of a Hugging Face `BertModel`.
    pub fn load(w: &FloatWeights<'_>, cfg: BertConfig) -> Result<Self> {
        let (d, f) = (cfg.hidden, cfg.ffn);
        let pair = |name: &str, n: usize, k: usize| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((
                w.get(&format!("{name}.weight"), &[n, k])?,
                w.get(&format!("{name}.bias"), &[n])?,
            ))
        };
        let norm = |name: &str| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((
                w.get(&format!("{name}.weight"), &[d])?,
                w.get(&format!("{name}.bias"), &[d])?,
            ))
        };
        let layers = (0..cfg.layers)
            .map(|l| {
                let p = format!("encoder.layer.{l}");
                Ok(Layer {
                    q: pair(&format!("{p}.attention.self.query"), d, d)?,
                    k: pair(&format!("{p}.attention.self.key"), d, d)?,
                    v: pair(&format!("{p}.attention.self.value"), d, d)?,
                    o: pair(&format!("{p}.attention.output.dense"), d, d)?,
                    ln1: norm(&format!("{p}.attention.output.LayerNorm"))?,
                    up: pair(&format!("{p}.intermediate.dense"), f, d)?,
                    down: pair(&format!("{p}.output.dense"), d, f)?,
                    ln2: norm(&format!("{p}.output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg,
            word: w.get("embeddings.word_embeddings.weight", &[cfg.vocab, d])?,
            position: w.get(
                "embeddings.position_embeddings.weight",
                &[cfg.max_positions, d],
            )?,
            token_type: w.get("embeddings.token_type_embeddings.weight", &[2, d])?,
            ln: norm("embeddings.LayerNorm")?,
            layers,
        })
    }

    /// The mean-pooled last hidden state of `ids` (all attended), recording activation
    /// ranges into `ranges` if given.
    pub fn forward(&self, ids: &[u32], mut ranges: Option<&mut Ranges>) -> Result<Vec<f32>> {
        let BertConfig {
            hidden: d,
            heads,
            ffn,
            vocab,
            ..
        } = self.cfg;
        let s = ids.len();
        if s == 0 || s > self.cfg.max_positions {
            return Err(Error::Param(format!(
                "{s} tokens: BERT takes 1..={}",
                self.cfg.max_positions
            )));
        }
        let dh = d / heads;
        let mut h = vec![0f32; s * d];
        for (t, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id >= vocab {
                return Err(Error::Param(format!(
                    "token id {id} outside the vocabulary of {vocab}"
                )));
            }
            for j in 0..d {
                h[t * d + j] =
                    self.word[id * d + j] + self.position[t * d + j] + self.token_type[j];
            }
        }
        record(&mut ranges, "emb", &h);
        layer_norm(&mut h, d, &self.ln.0, &self.ln.1, LN_EPS);
        let keep = vec![true; s];
        for (l, layer) in self.layers.iter().enumerate() {
            record(&mut ranges, &format!("h{l}"), &h);
            record_channels(&mut ranges, &format!("h{l}"), &h, d);
            let q = linear(&h, s, d, &layer.q.0, d, &layer.q.1);
            let k = linear(&h, s, d, &layer.k.0, d, &layer.k.1);
            let v = linear(&h, s, d, &layer.v.0, d, &layer.v.1);
            record(&mut ranges, &format!("q{l}"), &q);
            record(&mut ranges, &format!("k{l}"), &k);
            record(&mut ranges, &format!("v{l}"), &v);
            let mut ctx = vec![0f32; s * d];
            let scale = 1.0 / (dh as f32).sqrt();
            for hd in 0..heads {
                let mut scores = vec![0f32; s * s];
                for i in 0..s {
                    for j in 0..s {
                        let mut acc = 0f32;
                        for c in 0..dh {
                            acc += q[i * d + hd * dh + c] * k[j * d + hd * dh + c];
                        }
                        scores[i * s + j] = acc * scale;
                    }
                }
                record(&mut ranges, &format!("scores{l}"), &scores);
                softmax_masked(&mut scores, s, &keep);
                for i in 0..s {
                    for c in 0..dh {
                        let mut acc = 0f32;
                        for j in 0..s {
                            acc += scores[i * s + j] * v[j * d + hd * dh + c];
                        }
                        ctx[i * d + hd * dh + c] = acc;
                    }
                }
            }
            record(&mut ranges, &format!("ctx{l}"), &ctx);
            let ao = linear(&ctx, s, d, &layer.o.0, d, &layer.o.1);
            record(&mut ranges, &format!("ao{l}"), &ao);
            let mut sum: Vec<f32> = h.iter().zip(&ao).map(|(a, b)| a + b).collect();
            record(&mut ranges, &format!("sum1{l}"), &sum);
            layer_norm(&mut sum, d, &layer.ln1.0, &layer.ln1.1, LN_EPS);
            let h1 = sum;
            record(&mut ranges, &format!("h1{l}"), &h1);
            record_channels(&mut ranges, &format!("h1{l}"), &h1, d);
            let mut up = linear(&h1, s, d, &layer.up.0, ffn, &layer.up.1);
            record(&mut ranges, &format!("up{l}"), &up);
            for u in up.iter_mut() {
                *u = gelu(*u as f64) as f32;
            }
            record_channels(&mut ranges, &format!("gelu{l}"), &up, ffn);
            let down = linear(&up, s, ffn, &layer.down.0, d, &layer.down.1);
            record(&mut ranges, &format!("down{l}"), &down);
            let mut sum2: Vec<f32> = h1.iter().zip(&down).map(|(a, b)| a + b).collect();
            record(&mut ranges, &format!("sum2{l}"), &sum2);
            layer_norm(&mut sum2, d, &layer.ln2.0, &layer.ln2.1, LN_EPS);
            h = sum2;
        }
        record(&mut ranges, &format!("h{}", self.cfg.layers), &h);
        let mut pooled = vec![0f32; d];
        for row in h.chunks(d) {
            for (p, &v) in pooled.iter_mut().zip(row) {
                *p += v / s as f32;
            }
        }
        Ok(pooled)
    }
}

impl BertFloat {
    /// The float sentence embedding of `ids`: mean pooling, then L2 normalization (the
    /// reference the integer program is measured against).
    pub fn embed(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let pooled = self.forward(ids, None)?;
        let norm = pooled
            .iter()
            .map(|&v| v as f64 * v as f64)
            .sum::<f64>()
            .sqrt();
        Ok(pooled
            .iter()
            .map(|&v| (v as f64 / norm.max(1e-30)) as f32)
            .collect())
    }
}

/// Calibration ranges for a model: symmetric scales from `max |x|`.
struct Scales {
    ranges: Ranges,
    /// The per-channel ranges (`{name}/{channel}` in `ranges`), gathered once by name.
    channels: BTreeMap<String, Vec<(f32, f32)>>,
}

impl Scales {
    fn new(ranges: Ranges) -> Self {
        let mut channels: BTreeMap<String, Vec<(f32, f32)>> = BTreeMap::new();
        for (key, &range) in &ranges {
            let Some((name, j)) = key.rsplit_once('/') else {
                continue;
            };
            let Ok(j) = j.parse::<usize>() else {
                continue;
            };
            let v = channels.entry(name.to_string()).or_default();
            if v.len() <= j {
                v.resize(j + 1, (f32::NAN, f32::NAN));
            }
            v[j] = range;
        }
        Self { ranges, channels }
    }

    fn range(&self, name: &str) -> Result<(f32, f32)> {
        self.ranges
            .get(name)
            .copied()
            .ok_or_else(|| Error::Param(format!("no calibration range for {name}")))
    }

    fn absmax(&self, name: &str) -> Result<f32> {
        let (lo, hi) = self.range(name)?;
        Ok(lo.abs().max(hi.abs()).max(1e-6))
    }

    fn i8(&self, name: &str) -> Result<f32> {
        Ok(self.absmax(name)? / 127.0)
    }

    fn i16(&self, name: &str) -> Result<f32> {
        Ok(self.absmax(name)? / 32767.0)
    }

    /// The range of each of the `d` channels of `name`.
    fn channel_ranges(&self, name: &str, d: usize) -> Result<&[(f32, f32)]> {
        match self.channels.get(name) {
            Some(v) if v.len() == d && v.iter().all(|r| !r.0.is_nan()) => Ok(v),
            _ => Err(Error::Param(format!(
                "no calibration range for each of the {d} channels of {name}"
            ))),
        }
    }

    /// `max |x|` of each of the `d` channels of `name`.
    fn channels(&self, name: &str, d: usize) -> Result<Vec<f32>> {
        Ok(self
            .channel_ranges(name, d)?
            .iter()
            .map(|&(lo, hi)| lo.abs().max(hi.abs()).max(1e-6))
            .collect())
    }
}

fn mq(scale: f64, what: &str) -> Result<(i32, u32)> {
    quantize_multiplier(scale)
        .ok_or_else(|| Error::Param(format!("{what}: scale {scale} cannot be a multiplier")))
}

/// An `i16` activation as two `i8` operands (see [`Builder::split`]).
struct Split {
    hi: Operand,
    lo: Operand,
    scale: f32,
}

/// The quantized weights of one linear layer: the operand and each row's scale.
struct FcWeight {
    operand: Operand,
    scales: Vec<f32>,
}

/// Integer building helpers over a program builder.
struct Builder {
    b: ProgramBuilder,
}

impl Builder {
    /// Per-output-channel symmetric `i8` weights.
    #[allow(clippy::too_many_arguments)]
    fn fc(
        &mut self,
        name: &str,
        x: Operand,
        (s_x, zp_x): (f32, i32),
        (w, bias): &(Vec<f32>, Vec<f32>),
        n: usize,
        k: usize,
        s_y: f32,
        out: DType,
    ) -> Result<Operand> {
        let w = self.fc_weight(name, w, n, k)?;
        self.fc_on(name, x, (s_x, zp_x), &w, bias, s_y, out)
    }

    /// `w [n, k]` quantized to symmetric `i8` per output channel (row), added as a weight.
    fn fc_weight(&mut self, name: &str, w: &[f32], n: usize, k: usize) -> Result<FcWeight> {
        let mut wq = vec![0i8; n * k];
        let mut scales = vec![0f32; n];
        for r in 0..n {
            let row = &w[r * k..(r + 1) * k];
            let s_w = (row.iter().fold(0f32, |a, &v| a.max(v.abs())) / 127.0).max(1e-12);
            for (q, &v) in wq[r * k..(r + 1) * k].iter_mut().zip(row) {
                *q = (v / s_w).round().clamp(-127.0, 127.0) as i8;
            }
            scales[r] = s_w;
        }
        let operand = self
            .b
            .weight(format!("{name}.weight"), Tensor::from_i8(vec![n, k], wq)?);
        Ok(FcWeight { operand, scales })
    }

    /// A `fully_connected` of `x` (scale `s_x`, zero point `zp_x`) by the quantized `w`,
    /// plus the float `bias`, requantized per output channel to `s_y`.
    #[allow(clippy::too_many_arguments)]
    fn fc_on(
        &mut self,
        name: &str,
        x: Operand,
        (s_x, zp_x): (f32, i32),
        w: &FcWeight,
        bias: &[f32],
        s_y: f32,
        out: DType,
    ) -> Result<Operand> {
        let n = w.scales.len();
        let (mut bq, mut mult, mut shift) = (vec![0i32; n], vec![0i32; n], vec![0i32; n]);
        for r in 0..n {
            let s_acc = s_x as f64 * w.scales[r] as f64;
            bq[r] = (bias[r] as f64 / s_acc)
                .round()
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32;
            let (m, s) = mq(s_acc / s_y as f64, name)?;
            mult[r] = m;
            shift[r] = s as i32;
        }
        let b = &mut self.b;
        let bias = b.weight(format!("{name}.bias"), Tensor::from_i32(vec![n], bq)?);
        let m = b.weight(
            format!("{name}.multiplier"),
            Tensor::from_i32(vec![n], mult)?,
        );
        let s = b.weight(format!("{name}.shift"), Tensor::from_i32(vec![n], shift)?);
        b.push(
            Op::FullyConnected {
                x_zero_point: zp_x,
                y_zero_point: 0,
            },
            &[x, w.operand, bias, m, s],
            out,
        )
    }

    /// Splits an `i16` activation into two `i8` halves, `x = 256 * hi + lo`, so a matrix
    /// product over `i8` operands sees all 16 bits: `hi = round(x / 256)` and
    /// `lo = x - 256 * hi` (in `[-128, 128]`, saturated to `i8` at the one value 128).
    fn split(&mut self, x: Operand, s_x: f32) -> Result<Split> {
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
        let lo = self.b.push(
            Op::Add {
                a_zero_point: 0,
                a_multiplier: 1,
                b_zero_point: 0,
                b_multiplier: -256,
                shift: 0,
                y_zero_point: 0,
            },
            &[x, hi],
            DType::I8,
        )?;
        Ok(Split { hi, lo, scale: s_x })
    }

    /// A linear layer on a split `i16` activation: two `i8` products requantized per output
    /// channel to a 256 times finer `i32` scale, then summed and rounded once to `s_y`.
    #[allow(clippy::too_many_arguments)]
    fn fc_split(
        &mut self,
        name: &str,
        x: &Split,
        wb: &(Vec<f32>, Vec<f32>),
        n: usize,
        k: usize,
        s_y: f32,
        out: DType,
    ) -> Result<Operand> {
        let fine = s_y / 256.0;
        // Both halves multiply the same weight tensor (stored once); the bias goes with the
        // low half.
        let w = self.fc_weight(name, &wb.0, n, k)?;
        let hi = self.fc_on(
            &format!("{name}.hi"),
            x.hi,
            (x.scale * 256.0, 0),
            &w,
            &vec![0f32; n],
            fine,
            DType::I32,
        )?;
        let lo = self.fc_on(
            &format!("{name}.lo"),
            x.lo,
            (x.scale, 0),
            &w,
            &wb.1,
            fine,
            DType::I32,
        )?;
        self.sum_fine(hi, lo, out)
    }

    /// `a + b` of two `i32` products at a 256 times finer scale than the output's, rounded
    /// once to `out`.
    fn sum_fine(&mut self, a: Operand, b: Operand, out: DType) -> Result<Operand> {
        let op = Op::Add {
            a_zero_point: 0,
            a_multiplier: 1,
            b_zero_point: 0,
            b_multiplier: 1,
            shift: 8,
            y_zero_point: 0,
        };
        self.b.push(op, &[a, b], out)
    }

    /// `a * s_a + b * s_b` into scale `s_y`.
    fn add(
        &mut self,
        a: Operand,
        s_a: f32,
        b: Operand,
        s_b: f32,
        s_y: f32,
        out: DType,
    ) -> Result<Operand> {
        let (ra, rb) = (s_a as f64 / s_y as f64, s_b as f64 / s_y as f64);
        // The largest shift that keeps both multipliers below 2^31.
        let shift = (30 - ra.max(rb).log2().ceil() as i32).clamp(0, 62) as u32;
        let m = |r: f64| (r * 2f64.powi(shift as i32)).round() as i32;
        let op = Op::Add {
            a_zero_point: 0,
            a_multiplier: m(ra),
            b_zero_point: 0,
            b_multiplier: m(rb),
            shift,
            y_zero_point: 0,
        };
        self.b.push(op, &[a, b], out)
    }

    /// A layer norm from any input scale (it cancels) to `s_y`.
    fn layer_norm(
        &mut self,
        name: &str,
        x: Operand,
        (gamma, beta): &(Vec<f32>, Vec<f32>),
        s_x: f32,
        s_y: f32,
        out: DType,
    ) -> Result<Operand> {
        let n = gamma.len();
        let big = gamma
            .iter()
            .chain(beta)
            .fold(0f64, |a, &v| a.max(v.abs() as f64))
            / s_y as f64;
        // The most fraction bits that keep gamma and beta in i32 with a margin.
        let shift = ((2f64.powi(30) / big.max(1e-9)).log2().floor() as i32).clamp(0, 30) as u32;
        let q = |v: f32| (v as f64 / s_y as f64 * 2f64.powi(shift as i32)).round() as i32;
        let g = self.b.weight(
            format!("{name}.gamma"),
            Tensor::from_i32(vec![n], gamma.iter().map(|&v| q(v)).collect())?,
        );
        let be = self.b.weight(
            format!("{name}.beta"),
            Tensor::from_i32(vec![n], beta.iter().map(|&v| q(v)).collect())?,
        );
        // Float epsilon in units of the integer variance: N^2 * eps / s_x^2.
        let epsilon = ((n * n) as f64 * LN_EPS as f64 / (s_x as f64 * s_x as f64)).round() as u64;
        self.b.push(
            Op::LayerNorm {
                epsilon,
                shift,
                y_zero_point: 0,
            },
            &[x, g, be],
            out,
        )
    }

    /// A layer norm of `x` (scale `s_x`) straight to the `i8` input of the linear layers
    /// `wbs` (each `[n, k]`, `k = gamma.len()`), smoothed per channel: channel `j` of the
    /// normalized output is divided by `f_j = amax_j^a / wmax_j^(1 - a)` (its `gamma` and
    /// `beta` divided by `f_j`) and column `j` of every weight multiplied by it, where
    /// `amax_j` is the channel's calibration `max |x|`, `wmax_j` the column's largest weight
    /// and `a` [`SMOOTH_ALPHA`]. That moves the few outlier channels' range into the
    /// weights (quantized per output row), so 8 bits hold the input. Gives the input, its
    /// scale and the smoothed weights.
    #[allow(clippy::type_complexity)]
    fn smoothed_input(
        &mut self,
        name: &str,
        x: Operand,
        s_x: f32,
        (gamma, beta): &(Vec<f32>, Vec<f32>),
        amax: &[f32],
        wbs: &[&(Vec<f32>, Vec<f32>)],
    ) -> Result<(Operand, f32, Vec<(Vec<f32>, Vec<f32>)>)> {
        let k = gamma.len();
        let ws: Vec<&[f32]> = wbs.iter().map(|(w, _)| w.as_slice()).collect();
        let f = smoothing_factors(amax, &ws, SMOOTH_ALPHA);
        let s_y = amax
            .iter()
            .zip(&f)
            .fold(0f32, |m, (&a, &f)| m.max(a / f))
            .max(1e-6)
            / 127.0;
        let ln = (
            gamma.iter().zip(&f).map(|(&g, &f)| g / f).collect(),
            beta.iter().zip(&f).map(|(&b, &f)| b / f).collect(),
        );
        let y = self.layer_norm(name, x, &ln, s_x, s_y, DType::I8)?;
        let ws = wbs
            .iter()
            .map(|(w, b)| {
                let w = w
                    .chunks(k)
                    .flat_map(|row| row.iter().zip(&f).map(|(&v, &f)| v * f))
                    .collect();
                (w, b.clone())
            })
            .collect();
        Ok((y, s_y, ws))
    }

    /// The feed-forward block from its `i8` input `x` (scale `s_x`): the up projection `up`
    /// (weights `[ffn, d]`, output scale `s_up`), GELU as a table, the down projection
    /// `down` (`[d, ffn]`) to `i16` at `s_down`. The `ffn` channels go in two groups by the
    /// calibration range of their GELU output (`gelu_ranges`): the [`WIDE_FFN_CHANNELS`]
    /// widest (the outliers: MiniLM's widest is 4 to 18 times the median channel's range,
    /// by layer) through an `i16` table whose output is split into two `i8` halves, the
    /// rest through an `i8` table with an asymmetric scale of their own, up to 5 times
    /// finer than one scale for all. Each group is its own pair of products (rows of `up`,
    /// columns of `down`), so the down projection's multiply-adds are nearly all 8-bit.
    fn feed_forward(
        &mut self,
        name: &str,
        (x, s_x): (Operand, f32),
        ((w_up, b_up), s_up): (&(Vec<f32>, Vec<f32>), f32),
        (w_down, b_down): &(Vec<f32>, Vec<f32>),
        gelu_ranges: &[(f32, f32)],
        s_down: f32,
    ) -> Result<Operand> {
        let ffn = gelu_ranges.len();
        let d = b_down.len();
        if ffn <= WIDE_FFN_CHANNELS {
            return Err(Error::Param(format!(
                "{name}: {ffn} feed-forward channels, more than {WIDE_FFN_CHANNELS} needed"
            )));
        }
        let absmax = |j: usize| gelu_ranges[j].0.abs().max(gelu_ranges[j].1.abs());
        let mut order: Vec<usize> = (0..ffn).collect();
        order.sort_by(|&a, &b| absmax(a).total_cmp(&absmax(b)));
        let (narrow, wide) = order.split_at(ffn - WIDE_FFN_CHANNELS);
        let up_rows = |idx: &[usize]| -> (Vec<f32>, Vec<f32>) {
            (
                idx.iter()
                    .flat_map(|&r| w_up[r * d..(r + 1) * d].iter().copied())
                    .collect(),
                idx.iter().map(|&r| b_up[r]).collect(),
            )
        };
        let down_cols = |idx: &[usize], bias: Vec<f32>| -> (Vec<f32>, Vec<f32>) {
            let w = w_down
                .chunks(ffn)
                .flat_map(|row| idx.iter().map(move |&c| row[c]))
                .collect();
            (w, bias)
        };
        let table = |s_g: f32, zp: i32, lo: f64, hi: f64| -> Vec<f64> {
            (0..256)
                .map(|i| {
                    ((gelu((i as f64 - 128.0) * s_up as f64) / s_g as f64).round() + zp as f64)
                        .clamp(lo, hi)
                })
                .collect()
        };
        // Both groups' products go to a 256 times finer i32 scale and are summed once.
        let fine = s_down / 256.0;

        // The narrow channels: an i8 table over their own range.
        let n = narrow.len();
        let up_n = self.fc(
            &format!("{name}.ffn_up"),
            x,
            (s_x, 0),
            &up_rows(narrow),
            n,
            d,
            s_up,
            DType::I8,
        )?;
        let (lo, hi) = narrow.iter().fold((0f32, 0f32), |(lo, hi), &j| {
            (lo.min(gelu_ranges[j].0), hi.max(gelu_ranges[j].1))
        });
        let s_g = ((hi - lo) / 255.0).max(1e-6);
        let zp = (-128.0 - lo / s_g).round() as i32;
        let t = table(s_g, zp, -128.0, 127.0);
        let t = self.b.weight(
            format!("{name}.gelu"),
            Tensor::from_i8(vec![256], t.iter().map(|&v| v as i8).collect())?,
        );
        let g = self.b.push(Op::Lut, &[up_n, t], DType::I8)?;
        let narrow_part = self.fc(
            &format!("{name}.ffn_down"),
            g,
            (s_g, zp),
            &down_cols(narrow, b_down.clone()),
            d,
            n,
            fine,
            DType::I32,
        )?;

        // The wide channels: an i16 table, split into two i8 halves.
        let n = wide.len();
        let up_w = self.fc(
            &format!("{name}.ffn_up_wide"),
            x,
            (s_x, 0),
            &up_rows(wide),
            n,
            d,
            s_up,
            DType::I8,
        )?;
        let s_g = wide.iter().fold(0f32, |m, &j| m.max(absmax(j))).max(1e-6) / 32767.0;
        let t = table(s_g, 0, -32768.0, 32767.0);
        let t = self.b.weight(
            format!("{name}.gelu_wide"),
            Tensor::from_i16(vec![256], t.iter().map(|&v| v as i16).collect())?,
        );
        let g = self.b.push(Op::Lut, &[up_w, t], DType::I16)?;
        let g = self.split(g, s_g)?;
        let wide_part = self.fc_split(
            &format!("{name}.ffn_down_wide"),
            &g,
            &down_cols(wide, vec![0f32; d]),
            d,
            n,
            fine,
            DType::I32,
        )?;
        self.sum_fine(narrow_part, wide_part, DType::I16)
    }

    fn heads(&mut self, x: Operand, s: usize, heads: usize, dh: usize) -> Result<Operand> {
        let r = self.b.reshape(x, &[s, heads, dh])?;
        self.b.transpose(r, &[1, 0, 2])
    }
}

/// SmoothQuant's per-channel factors for an activation with channel ranges `amax` (`k`
/// channels) feeding the weights `ws` (each `[n, k]`, row-major): `f_j = amax_j^alpha /
/// wmax_j^(1 - alpha)`, `wmax_j` the largest `|w|` of column `j` over all of them. Dividing
/// channel `j` by `f_j` and multiplying column `j` by it leaves every product unchanged.
fn smoothing_factors(amax: &[f32], ws: &[&[f32]], alpha: f32) -> Vec<f32> {
    let k = amax.len();
    let mut wmax = vec![0f32; k];
    for w in ws {
        for row in w.chunks(k) {
            for (m, &v) in wmax.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
    }
    amax.iter()
        .zip(&wmax)
        .map(|(&a, &w)| (a.max(1e-6).powf(alpha) / w.max(1e-6).powf(1.0 - alpha)).max(1e-6))
        .collect()
}

/// Progress of a long step: (what, done, total).
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// A float BERT encoder with the activation ranges measured on calibration text: it
/// builds the integer program for any sequence length, all with the same scales.
pub struct Calibrated {
    float: BertFloat,
    scales: Scales,
    sentences: usize,
}

/// Runs the float model over `calibration` (token ids of each sentence, special tokens
/// included) and records the range of every activation the programs quantize.
pub fn calibrate(
    weights: &FloatWeights<'_>,
    cfg: BertConfig,
    calibration: &[Vec<u32>],
    progress: Progress<'_>,
) -> Result<Calibrated> {
    let float = BertFloat::load(weights, cfg)?;
    let mut ranges = Ranges::new();
    for (i, ids) in calibration.iter().enumerate() {
        progress("calibrating", i, calibration.len());
        float.forward(ids, Some(&mut ranges))?;
    }
    progress("calibrating", calibration.len(), calibration.len());
    Ok(Calibrated {
        float,
        scales: Scales::new(ranges),
        sentences: calibration.len(),
    })
}

/// Imports a float BERT encoder as an integer program over `seq_len` tokens
/// ([`calibrate`], then [`Calibrated::build`]).
pub fn import(
    name: &str,
    weights: &FloatWeights<'_>,
    cfg: BertConfig,
    seq_len: usize,
    calibration: &[Vec<u32>],
    progress: Progress<'_>,
) -> Result<Model> {
    calibrate(weights, cfg, calibration, &mut *progress)?.build(name, seq_len, progress)
}

impl Calibrated {
    /// The float model.
    pub fn float(&self) -> &BertFloat {
        &self.float
    }

    /// Builds the integer program over `seq_len` tokens.
    ///
    /// The program takes `i32 [2, seq_len]`: row 0 the token ids (padded with anything),
    /// row 1 the attention mask (1 for a token, 0 for padding), and gives `i32 [1, hidden]`,
    /// the masked mean of the last hidden state in fixed point.
    pub fn build(&self, name: &str, seq_len: usize, progress: Progress<'_>) -> Result<Model> {
        let (program, weights, meta) = self.build_parts(seq_len, seq_len, progress)?;
        Model::new(name, program, weights, meta)
    }

    /// The length program of bucket `seq_len` for inputs of exactly `len` tokens
    /// (`1..=seq_len`): see [`LengthPrograms`].
    pub fn length_program(&self, seq_len: usize, len: usize) -> Result<Program> {
        if len == 0 || len > seq_len {
            return Err(Error::Param(format!(
                "a length program of bucket {seq_len} takes 1..={seq_len} tokens, not {len}"
            )));
        }
        Ok(self.build_parts(seq_len, len, &mut |_, _, _| {})?.0)
    }

    /// The program of bucket `seq_len` over `len <= seq_len` tokens (its position table
    /// sliced in-program when `len < seq_len`), its weights and its metadata.
    #[allow(clippy::type_complexity)]
    fn build_parts(
        &self,
        seq_len: usize,
        len: usize,
        progress: Progress<'_>,
    ) -> Result<(Program, Vec<(String, Tensor)>, BTreeMap<String, String>)> {
        let (float, sc, cfg) = (&self.float, &self.scales, self.float.cfg);
        if seq_len == 0 || seq_len > cfg.max_positions {
            return Err(Error::Param(format!(
                "seq_len {seq_len} must be in 1..={}",
                cfg.max_positions
            )));
        }
        // The position table keeps the bucket's rows; the program runs over `len` of them.
        let table_len = seq_len;
        let BertConfig {
            hidden: d,
            heads,
            ffn,
            vocab,
            layers,
            ..
        } = cfg;
        let (s, dh) = (len, d / heads);
        let mut q = Builder {
            b: ProgramBuilder::new(TensorType::new(DType::I32, vec![2, s])),
        };
        let input = q.b.input();
        let ids = q.b.push(
            Op::Slice {
                axis: 0,
                start: 0,
                end: 1,
            },
            &[input],
            DType::I32,
        )?;
        let mask = q.b.push(
            Op::Slice {
                axis: 0,
                start: 1,
                end: 2,
            },
            &[input],
            DType::I32,
        )?;

        // Embeddings: i16 tables, each with its own scale.
        let word_abs = float
            .word
            .iter()
            .fold(0f32, |a, &v| a.max(v.abs()))
            .max(1e-6);
        let s_word = word_abs / 32767.0;
        let word = q.b.weight(
            "embeddings.word",
            Tensor::from_i16(
                vec![vocab, d],
                float
                    .word
                    .iter()
                    .map(|&v| (v / s_word).round() as i16)
                    .collect(),
            )?,
        );
        let pos_f: Vec<f32> = (0..table_len * d)
            .map(|i| float.position[i] + float.token_type[i % d])
            .collect();
        let s_pos = pos_f.iter().fold(0f32, |a, &v| a.max(v.abs())).max(1e-6) / 32767.0;
        let mut pos = q.b.weight(
            "embeddings.position_and_type",
            Tensor::from_i16(
                vec![1, table_len, d],
                pos_f.iter().map(|&v| (v / s_pos).round() as i16).collect(),
            )?,
        );
        if s < table_len {
            pos = q.b.push(
                Op::Slice {
                    axis: 1,
                    start: 0,
                    end: s,
                },
                &[pos],
                DType::I16,
            )?;
        }
        let tok = q.b.push(Op::Embedding, &[word, ids], DType::I16)?;
        let s_emb = sc.i16("emb")?;
        let emb = q.add(tok, s_word, pos, s_pos, s_emb, DType::I16)?;
        let emb = q.b.reshape(emb, &[s, d])?;
        let mut s_h16 = sc.i16("h0")?;
        let mut h16 = q.layer_norm("embeddings.ln", emb, &float.ln, s_emb, s_h16, DType::I16)?;
        let mut ln_in = (emb, s_emb, &float.ln);

        for (l, layer) in float.layers.iter().enumerate() {
            progress("building layers", l, layers);
            let p = format!("layer{l}");
            let (s_q, s_k, s_v) = (
                sc.i8(&format!("q{l}"))?,
                sc.i8(&format!("k{l}"))?,
                sc.i8(&format!("v{l}"))?,
            );
            let (ln_x, ln_s, ln_p) = ln_in;
            let (x, s_x, w) = q.smoothed_input(
                &format!("{p}.ln_qkv"),
                ln_x,
                ln_s,
                ln_p,
                &sc.channels(&format!("h{l}"), d)?,
                &[&layer.q, &layer.k, &layer.v],
            )?;
            let qh = q.fc(&format!("{p}.q"), x, (s_x, 0), &w[0], d, d, s_q, DType::I8)?;
            let kh = q.fc(&format!("{p}.k"), x, (s_x, 0), &w[1], d, d, s_k, DType::I8)?;
            let vh = q.fc(&format!("{p}.v"), x, (s_x, 0), &w[2], d, d, s_v, DType::I8)?;
            let (qh, kh, vh) = (
                q.heads(qh, s, heads, dh)?,
                q.heads(kh, s, heads, dh)?,
                q.heads(vh, s, heads, dh)?,
            );
            // Scores in i16, at least 1/256 fine, so the exp table covers distances up to 16.
            let s_sc = (sc.absmax(&format!("scores{l}"))? / 32767.0).max(1.0 / 256.0);
            let (m, sh) = mq(
                s_q as f64 * s_k as f64 / (dh as f64).sqrt() / s_sc as f64,
                "scores",
            )?;
            let scores = q.b.push(
                Op::BatchMatmul {
                    transpose_b: true,
                    a_zero_point: 0,
                    b_zero_point: 0,
                    multiplier: m,
                    shift: sh,
                    y_zero_point: 0,
                },
                &[qh, kh],
                DType::I16,
            )?;
            let table: Vec<i32> = (0..EXP_TABLE)
                .map(|d| ((-(d as f64) * s_sc as f64).exp() * 2f64.powi(30)).round() as i32)
                .collect();
            let exp = q.b.weight(
                format!("{p}.exp"),
                Tensor::from_i32(vec![EXP_TABLE], table)?,
            );
            let probs = q.b.push(
                Op::Softmax {
                    causal: false,
                    frac_bits: PROB_BITS,
                    y_zero_point: -128,
                },
                &[scores, exp, mask],
                DType::I8,
            )?;
            let s_ctx = sc.i8(&format!("ctx{l}"))?;
            let (m, sh) = mq(
                s_v as f64 / 2f64.powi(PROB_BITS as i32) / s_ctx as f64,
                "context",
            )?;
            let ctx = q.b.push(
                Op::BatchMatmul {
                    transpose_b: false,
                    a_zero_point: -128,
                    b_zero_point: 0,
                    multiplier: m,
                    shift: sh,
                    y_zero_point: 0,
                },
                &[probs, vh],
                DType::I8,
            )?;
            let ctx = q.b.transpose(ctx, &[1, 0, 2])?;
            let ctx = q.b.reshape(ctx, &[s, d])?;
            let s_ao = sc.i16(&format!("ao{l}"))?;
            let ao = q.fc(
                &format!("{p}.attn_out"),
                ctx,
                (s_ctx, 0),
                &layer.o,
                d,
                d,
                s_ao,
                DType::I16,
            )?;
            let s_sum1 = sc.i16(&format!("sum1{l}"))?;
            let sum1 = q.add(h16, s_h16, ao, s_ao, s_sum1, DType::I16)?;
            let s_h1 = sc.i16(&format!("h1{l}"))?;
            let h1 = q.layer_norm(
                &format!("{p}.ln1"),
                sum1,
                &layer.ln1,
                s_sum1,
                s_h1,
                DType::I16,
            )?;
            let s_up = sc.i8(&format!("up{l}"))?;
            let (x1, s_x1, w) = q.smoothed_input(
                &format!("{p}.ln_up"),
                sum1,
                s_sum1,
                &layer.ln1,
                &sc.channels(&format!("h1{l}"), d)?,
                &[&layer.up],
            )?;
            let s_down = sc.i16(&format!("down{l}"))?;
            let gelu_ranges = sc.channel_ranges(&format!("gelu{l}"), ffn)?;
            let down = q.feed_forward(
                &p,
                (x1, s_x1),
                (&w[0], s_up),
                &layer.down,
                gelu_ranges,
                s_down,
            )?;
            let s_sum2 = sc.i16(&format!("sum2{l}"))?;
            let sum2 = q.add(h1, s_h1, down, s_down, s_sum2, DType::I16)?;
            s_h16 = sc.i16(&format!("h{}", l + 1))?;
            h16 = q.layer_norm(
                &format!("{p}.ln2"),
                sum2,
                &layer.ln2,
                s_sum2,
                s_h16,
                DType::I16,
            )?;
            ln_in = (sum2, s_sum2, &layer.ln2);
        }
        progress("building layers", layers, layers);
        let h3 = q.b.reshape(h16, &[1, s, d])?;
        // mean_pool reduces the last axis ([1, D, S]): one pooled output then reads one
        // contiguous run of the hidden state, which keeps its one-step proof small.
        let h3 = q.b.transpose(h3, &[0, 2, 1])?;
        let pooled = q.b.push(
            Op::MeanPool {
                x_zero_point: 0,
                frac_bits: POOL_BITS,
                y_zero_point: 0,
            },
            &[h3, mask],
            DType::I32,
        )?;
        let (program, weights) = q.b.finish(pooled)?;
        let mut meta = BTreeMap::new();
        meta.insert("architecture".into(), "bert".into());
        meta.insert("seq_len".into(), s.to_string());
        meta.insert(
            "output_scale".into(),
            format!("{:e}", s_h16 as f64 / 2f64.powi(POOL_BITS as i32)),
        );
        meta.insert("calibration_sentences".into(), self.sentences.to_string());
        Ok((program, weights, meta))
    }
}

/// The program input for one tokenized sentence: ids (padded with 0) and the mask.
pub fn input(ids: &[u32], seq_len: usize) -> Result<Tensor> {
    if ids.is_empty() || ids.len() > seq_len {
        return Err(Error::Param(format!(
            "{} tokens for a program of {seq_len}",
            ids.len()
        )));
    }
    let mut v = vec![0i32; 2 * seq_len];
    for (i, &id) in ids.iter().enumerate() {
        v[i] = id as i32;
        v[seq_len + i] = 1;
    }
    Tensor::from_i32(vec![2, seq_len], v)
}

/// L2-normalized float embedding from the program's pooled output.
pub fn normalize(pooled: &Tensor) -> Result<Vec<f32>> {
    let v = pooled.to_i64_vec();
    let norm = v
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt();
    Ok(v.iter()
        .map(|&x| {
            if norm > 0.0 {
                (x as f64 / norm) as f32
            } else {
                0.0
            }
        })
        .collect())
}

/// File name of an encoder family's index.
pub const FAMILY_FILE: &str = "family.json";

/// One encoder imported at several sequence lengths: each bucket is a model of its own
/// (its own program and model id) in a subdirectory; a sentence runs on the shortest bucket
/// that holds it, so short sentences do not pay for the longest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Family {
    /// Always `fpml-encoder-family/1`.
    pub format: String,
    /// The source model's name.
    pub model: String,
    /// The buckets, shortest first.
    pub buckets: Vec<Bucket>,
}

/// One sequence length of a [`Family`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    /// Tokens per input.
    pub seq_len: usize,
    /// Subdirectory holding the model.
    pub dir: String,
    /// Its model id.
    pub model_id: crate::merkle::H256,
}

impl Family {
    /// The format tag this build writes and reads.
    pub const FORMAT: &'static str = "fpml-encoder-family/1";

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
        if f.buckets.is_empty() || f.buckets.windows(2).any(|w| w[0].seq_len >= w[1].seq_len) {
            return Err(Error::Decode(format!(
                "{FAMILY_FILE}: buckets must be non-empty and strictly increasing"
            )));
        }
        Ok(f)
    }

    /// The index of the shortest bucket holding `tokens` tokens (the longest if none does:
    /// the tokenizer truncates to it).
    pub fn bucket_for(&self, tokens: usize) -> usize {
        self.buckets
            .iter()
            .position(|b| b.seq_len >= tokens)
            .unwrap_or(self.buckets.len() - 1)
    }

    /// The longest sequence length.
    pub fn max_seq_len(&self) -> usize {
        self.buckets.last().map_or(0, |b| b.seq_len)
    }
}

/// File name of a bucket's [`LengthPrograms`], in the bucket's directory.
pub const LENGTHS_FILE: &str = "lengths.json";

/// A bucket's length programs: for each input length `len` the bucket serves (above the
/// next shorter bucket's length, below its own), the bucket's program built over exactly
/// `len` tokens, with the bucket's own weights (the position table is sliced in-program).
///
/// A serving accelerator, not a model: claims and disputes name the bucket's program. On
/// a sentence of exactly `len` tokens, a length program gives the bucket program's output
/// bit for bit, because padding never reaches a token's values: every op but the
/// attention scores and pooling works row by row, a masked softmax column gets `e = 0`
/// (its probability is the zero point the context product subtracts, so it adds exactly
/// 0), the row maximum is over kept columns only, and `mean_pool` reads kept positions
/// only. The length program skips the padded rows and columns, and so runs in the time of
/// the sentence, not of the bucket (`inference/tests/minilm.rs` checks the equality on
/// every evaluation sentence).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LengthPrograms {
    /// Always `fpml-encoder-lengths/1`.
    pub format: String,
    /// The bucket's model id.
    pub model_id: crate::merkle::H256,
    /// The programs, shortest input first.
    pub programs: Vec<Program>,
}

impl LengthPrograms {
    /// The format tag this build writes and reads.
    pub const FORMAT: &'static str = "fpml-encoder-lengths/1";

    /// Parses length programs and checks them against their bucket's program (`bucket`,
    /// model id `model_id`): the same declared weights, inputs `i32 [2, len]` with lengths
    /// strictly increasing and below the bucket's, each program valid.
    pub fn from_json(
        bytes: &[u8],
        model_id: crate::merkle::H256,
        bucket: &Program,
    ) -> Result<Self> {
        let bad = |why: String| Error::Decode(format!("{LENGTHS_FILE}: {why}"));
        let l: Self = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if l.format != Self::FORMAT {
            return Err(bad(format!(
                "format {:?} is not {:?}",
                l.format,
                Self::FORMAT
            )));
        }
        if l.model_id != model_id {
            return Err(bad(format!(
                "made for model {}, not this bucket's {model_id}",
                l.model_id
            )));
        }
        let bucket_len = Self::length(bucket)
            .ok_or_else(|| bad("the bucket's program does not take i32 [2, len]".into()))?;
        let mut last = 0;
        for p in &l.programs {
            p.validate()?;
            let len = Self::length(p)
                .ok_or_else(|| bad(format!("a program takes {}, not i32 [2, len]", p.input)))?;
            if len <= last || len >= bucket_len {
                return Err(bad(format!(
                    "lengths must increase and stay below the bucket's {bucket_len} ({len} after {last})"
                )));
            }
            if p.weights != bucket.weights {
                return Err(bad(format!(
                    "the program for {len} tokens declares other weights than the bucket's"
                )));
            }
            last = len;
        }
        Ok(l)
    }

    /// The program for inputs of exactly `len` tokens, if there is one.
    pub fn program(&self, len: usize) -> Option<&Program> {
        self.programs.iter().find(|p| Self::length(p) == Some(len))
    }

    /// The number of tokens a program of this form takes (`i32 [2, len]`).
    fn length(p: &Program) -> Option<usize> {
        match (p.input.dtype, p.input.shape.as_slice()) {
            (DType::I32, &[2, len]) => Some(len),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in `[-1, 1)`.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn smoothing_keeps_products_and_balances_ranges() {
        let (k, n) = (16, 5);
        let mut x = values(3 * k, 1);
        // Channel 3 is an outlier, as in BERT's layer norm outputs.
        for row in x.chunks_mut(k) {
            row[3] *= 40.0;
        }
        let w = values(n * k, 2);
        let mut amax = vec![0f32; k];
        for row in x.chunks(k) {
            for (a, &v) in amax.iter_mut().zip(row) {
                *a = a.max(v.abs());
            }
        }
        let f = smoothing_factors(&amax, &[&w], 0.5);
        // Products unchanged: (x / f) . (w * f) == x . w.
        for row in x.chunks(k) {
            for wr in w.chunks(k) {
                let plain: f32 = row.iter().zip(wr).map(|(a, b)| a * b).sum();
                let smooth: f32 = (0..k).map(|j| (row[j] / f[j]) * (wr[j] * f[j])).sum();
                assert!((plain - smooth).abs() <= 1e-4 * (1.0 + plain.abs()));
            }
        }
        // alpha = 1/2 meets in the middle: each channel's range equals its column's.
        for j in 0..k {
            let wmax = w.chunks(k).fold(0f32, |m, r| m.max(r[j].abs()));
            let (xs, ws) = (amax[j] / f[j], wmax * f[j]);
            assert!(
                (xs - ws).abs() <= 1e-4 * xs.max(ws),
                "channel {j}: {xs} vs {ws}"
            );
        }
        // The outlier no longer sets the 8-bit range alone.
        let ratio = |v: Vec<f32>| {
            let mut v = v;
            v.sort_by(f32::total_cmp);
            v[k - 1] / v[k / 2]
        };
        let smoothed: Vec<f32> = amax.iter().zip(&f).map(|(a, f)| a / f).collect();
        assert!(ratio(smoothed) < ratio(amax.clone()) / 4.0);
    }
}
