//! Llama decoders (SmolLM2) in float, from a GGUF file: the calibration forward pass of the
//! integer importer and the Rust-side float reference.
//!
//! The reference is the GGUF dequantized to `f32`, computed as `transformers`' `LlamaModel`
//! computes it (`from_pretrained(..., gguf_file=...)`, `float32`): pre-norm blocks with
//! RMSNorm (`x / sqrt(mean(x^2) + eps) * w`), grouped-query attention with RoPE, a causal
//! softmax, a SiLU-gated feed-forward (`down(silu(gate(x)) * up(x))`), a final RMSNorm and
//! the output matrix (the token embeddings when the file has no `output.weight`).
//!
//! **RoPE pairing.** llama.cpp's converter permutes the rows of every head of `attn_q` and
//! `attn_k` so that its interleaved RoPE (element `2i` with `2i + 1`) equals the Hugging
//! Face model's `rotate_half` RoPE (element `i` with `i + D/2`): GGUF row `2i + j` of a head
//! is Hugging Face row `j * D/2 + i` (`j` in `0..2`). [`LlamaFloat::load`] un-permutes
//! those rows and uses [`RopePairing::Half`], so `q`, `k` and every activation equal
//! `transformers`' own; [`LlamaFloat::load_with_pairing`] with
//! [`RopePairing::Interleaved`] keeps the GGUF rows and rotates interleaved pairs. Both
//! give the same attention scores (a consistent permutation of each head's dims leaves the
//! dot products unchanged); only the order of `q` and `k` elements within a head differs.
//! Pair `i` rotates by `p * base^(-2i/D)` at position `p` either way.
//!
//! **Recorded ranges** (`(min, max)` per name, see [`Ranges`]): `emb`; per layer `l`
//! (`l{l}.` prefix): `attn_in` (after the attention RMSNorm), `q_proj`, `k_proj` (before
//! RoPE), `q`, `k` (after RoPE), `v`, `scores` (scaled by `1/sqrt(D)`, causal entries
//! only), `probs`, `ctx` (`probs x v`), `attn_out` (after `attn_output`), `resid_attn`
//! (the residual stream after the attention), `mlp_in` (after the feed-forward RMSNorm),
//! `gate`, `up`, `silu` (`silu(gate)`), `act` (`silu(gate) * up`), `down`, `resid` (the
//! residual stream after the block); then `final_norm`, `final_norm_last` (its last row
//! only: the one a generation step reads) and `logits`.

use super::gguf::Gguf;
use crate::error::{Error, Result};
pub use crate::ops::RopePairing;
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Per named activation: `(min, max)` over everything recorded.
pub type Ranges = BTreeMap<String, (f32, f32)>;

fn record(ranges: &mut Option<&mut Ranges>, name: &str, values: impl IntoIterator<Item = f32>) {
    if let Some(r) = ranges.as_deref_mut() {
        let (lo, hi) = values
            .into_iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let e = r
            .entry(name.to_string())
            .or_insert((f32::INFINITY, f32::NEG_INFINITY));
        *e = (e.0.min(lo), e.1.max(hi));
    }
}

/// Shape and constants of a Llama decoder, from GGUF metadata.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the embedding and output matrices).
    pub vocab: usize,
    /// Hidden size (`{arch}.embedding_length`).
    pub hidden: usize,
    /// Decoder blocks (`{arch}.block_count`).
    pub layers: usize,
    /// Query heads (`{arch}.attention.head_count`).
    pub heads: usize,
    /// Key/value heads (`{arch}.attention.head_count_kv`; query head `h` reads key/value
    /// head `h / (heads / kv_heads)`).
    pub kv_heads: usize,
    /// Dims per head (`{arch}.attention.key_length`, else `hidden / heads`).
    pub head_dim: usize,
    /// Feed-forward size (`{arch}.feed_forward_length`).
    pub ffn: usize,
    /// Longest sequence (`{arch}.context_length`).
    pub context: usize,
    /// RoPE base (`{arch}.rope.freq_base`, 10000 if absent).
    pub rope_base: f64,
    /// RMSNorm epsilon (`{arch}.attention.layer_norm_rms_epsilon`).
    pub rms_eps: f32,
}

impl LlamaConfig {
    /// Reads the configuration of a `general.architecture = "llama"` file, refusing what
    /// the float forward does not implement (partial rotary dims, RoPE scaling).
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Self> {
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::Decode(format!(
                "gguf architecture {arch:?}, expected \"llama\""
            )));
        }
        let int = |key: &str| -> Result<usize> {
            let v = g.get_u64(&format!("{arch}.{key}"))?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| Error::Decode(format!("gguf {arch}.{key} = {v}")))
        };
        let hidden = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let kv_heads = match g.get(&format!("{arch}.attention.head_count_kv")) {
            Some(_) => int("attention.head_count_kv")?,
            None => heads,
        };
        let head_dim = match g.get(&format!("{arch}.attention.key_length")) {
            Some(_) => int("attention.key_length")?,
            None => hidden / heads,
        };
        let vocab = match g.get(&format!("{arch}.vocab_size")) {
            Some(_) => int("vocab_size")?,
            None => g
                .tensor("token_embd.weight")
                .map(|t| t.shape()[0])
                .ok_or_else(|| Error::Decode("gguf has no token_embd.weight".into()))?,
        };
        let rope_base = match g.get(&format!("{arch}.rope.freq_base")) {
            Some(_) => g.get_f64(&format!("{arch}.rope.freq_base"))?,
            None => 10000.0,
        };
        let cfg = Self {
            vocab,
            hidden,
            layers: int("block_count")?,
            heads,
            kv_heads,
            head_dim,
            ffn: int("feed_forward_length")?,
            context: int("context_length")?,
            rope_base,
            rms_eps: g.get_f64(&format!("{arch}.attention.layer_norm_rms_epsilon"))? as f32,
        };
        if heads % kv_heads != 0 || head_dim % 2 != 0 {
            return Err(Error::Decode(format!(
                "gguf llama: {heads} heads over {kv_heads} kv heads of {head_dim} dims"
            )));
        }
        if let Some(v) = g.get(&format!("{arch}.rope.dimension_count"))
            && v.as_u64() != Some(head_dim as u64)
        {
            return Err(Error::Decode(format!(
                "gguf llama: rope over {v:?} of {head_dim} head dims is not supported"
            )));
        }
        if let Some(v) = g.get(&format!("{arch}.rope.scaling.type"))
            && v.as_str() != Some("none")
        {
            return Err(Error::Decode(format!(
                "gguf llama: rope scaling {v:?} is not supported"
            )));
        }
        Ok(cfg)
    }

    /// Width of the key (and value) projections: `kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Width of the query projection: `heads * head_dim`.
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// The rotation angle of pair `i` at position `pos`: `pos * base^(-2i / head_dim)`.
    pub fn rope_angle(&self, pos: usize, i: usize) -> f64 {
        pos as f64 * self.rope_base.powf(-2.0 * i as f64 / self.head_dim as f64)
    }
}

/// One decoder block's float weights; matrices are row-major `[out, in]` (PyTorch's
/// `weight` layout), `wq`/`wk` rows in the order of the model's [`RopePairing`].
pub struct LlamaLayer {
    /// RMSNorm weight before attention (`attn_norm`), `[hidden]`.
    pub attn_norm: Vec<f32>,
    /// Query projection (`attn_q`), `[heads * head_dim, hidden]`.
    pub wq: Vec<f32>,
    /// Key projection (`attn_k`), `[kv_heads * head_dim, hidden]`.
    pub wk: Vec<f32>,
    /// Value projection (`attn_v`), `[kv_heads * head_dim, hidden]`.
    pub wv: Vec<f32>,
    /// Attention output projection (`attn_output`), `[hidden, heads * head_dim]`.
    pub wo: Vec<f32>,
    /// RMSNorm weight before the feed-forward (`ffn_norm`), `[hidden]`.
    pub ffn_norm: Vec<f32>,
    /// Gate projection (`ffn_gate`), `[ffn, hidden]`.
    pub gate: Vec<f32>,
    /// Up projection (`ffn_up`), `[ffn, hidden]`.
    pub up: Vec<f32>,
    /// Down projection (`ffn_down`), `[hidden, ffn]`.
    pub down: Vec<f32>,
}

/// A float Llama decoder.
pub struct LlamaFloat {
    cfg: LlamaConfig,
    pairing: RopePairing,
    embed: Vec<f32>,
    norm: Vec<f32>,
    /// `None`: tied to `embed`.
    output: Option<Vec<f32>>,
    layers: Vec<LlamaLayer>,
}

/// Keys and values of the positions run so far, per layer (keys after RoPE).
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position.
    pub fn clear(&mut self) {
        self.k.iter_mut().chain(&mut self.v).for_each(Vec::clear);
        self.len = 0;
    }
}

/// The rows of a GGUF `attn_q`/`attn_k` matrix (`heads` heads of `dh` rows of `cols`,
/// row-major) in Hugging Face order, for [`RopePairing::Half`]: Hugging Face row
/// `h*dh + j*dh/2 + i` is GGUF row `h*dh + 2i + j` (`i < dh/2`, `j < 2`). This undoes
/// llama.cpp's converter and is what `transformers` does when it loads a GGUF. Pass the
/// query head count for `attn_q` and the key/value head count for `attn_k`.
pub fn unpermute_rope_rows(w: &[f32], heads: usize, dh: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for i in 0..dh / 2 {
            for j in 0..2 {
                let (hf, gg) = (h * dh + j * dh / 2 + i, h * dh + 2 * i + j);
                out[hf * cols..(hf + 1) * cols].copy_from_slice(&w[gg * cols..(gg + 1) * cols]);
            }
        }
    }
    out
}

/// `c[i, j] = alpha * sum_k a[i, k] b[k, j]` (`m x k` times `k x n`), each operand given
/// as (slice, row stride, column stride).
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
    c: (&mut [f32], isize, isize),
) {
    let last = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows.max(1) - 1) as isize * rs + (cols.max(1) - 1) as isize * cs
    };
    assert!(
        last(m, k, a.1, a.2) < a.0.len() as isize
            && last(k, n, b.1, b.2) < b.0.len() as isize
            && last(m, n, c.1, c.2) < c.0.len() as isize,
        "gemm operands out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every strided element inside its slice.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.0.as_ptr(),
            a.1,
            a.2,
            b.0.as_ptr(),
            b.1,
            b.2,
            0.0,
            c.0.as_mut_ptr(),
            c.1,
            c.2,
        );
    }
}

/// Below this many rows [`linear`] reads each weight row once for all rows (dot products,
/// rows of `w` in parallel) instead of calling `sgemm`, which packs the whole weight matrix
/// on every call: a decode step takes about 20 ms instead of 400 ms on two cores, and the
/// two paths cost about the same around 48 rows.
const GEMM_MIN_ROWS: usize = 48;

/// `y[m, n] = x[m, k] . w[n, k]^T` (PyTorch's linear layout, no bias).
fn linear(x: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    if m == 0 || n == 0 || k == 0 {
        return y;
    }
    if m >= GEMM_MIN_ROWS {
        let (k_, n_) = (k as isize, n as isize);
        gemm(m, k, n, 1.0, (x, k_, 1), (w, 1, k_), (&mut y, n_, 1));
        return y;
    }
    // Output channel-major, then transposed: each task owns whole weight rows.
    const CHANNELS: usize = 64;
    let mut yt = vec![0f32; n * m];
    yt.par_chunks_mut(CHANNELS * m)
        .zip(w.par_chunks(CHANNELS * k))
        .for_each(|(yt, w)| {
            for (out, w) in yt.chunks_exact_mut(m).zip(w.chunks_exact(k)) {
                for (o, x) in out.iter_mut().zip(x.chunks_exact(k)) {
                    *o = dot(x, w);
                }
            }
        });
    for (j, col) in yt.chunks_exact(m).enumerate() {
        for (r, &v) in col.iter().enumerate() {
            y[r * n + j] = v;
        }
    }
    y
}

/// A dot product in 32 independent lanes (so that it vectorizes and the additions do not
/// wait on each other).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let ((ac, ar), (bc, br)) = (a.as_chunks::<32>(), b.as_chunks::<32>());
    let mut acc = [0f32; 32];
    for (x, y) in ac.iter().zip(bc) {
        for i in 0..32 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// RMSNorm over rows of `w.len()`: `x / sqrt(mean(x^2) + eps) * w`.
fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let n = w.len();
    let mut y = vec![0f32; x.len()];
    for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        let ms = xr.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n as f64;
        let inv = (1.0 / (ms + eps as f64).sqrt()) as f32;
        for ((y, &x), &w) in yr.iter_mut().zip(xr).zip(w) {
            *y = w * (x * inv);
        }
    }
    y
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

impl LlamaFloat {
    /// Loads a Llama GGUF in Hugging Face layout: `attn_q`/`attn_k` rows un-permuted and
    /// [`RopePairing::Half`] (see the module docs).
    pub fn load(g: &Gguf<'_>) -> Result<Self> {
        Self::load_with_pairing(g, RopePairing::Half)
    }

    /// Loads a Llama GGUF with the given RoPE pairing: [`RopePairing::Interleaved`] keeps
    /// the file's `attn_q`/`attn_k` rows, [`RopePairing::Half`] un-permutes them.
    pub fn load_with_pairing(g: &Gguf<'_>, pairing: RopePairing) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(g)?;
        let LlamaConfig {
            vocab,
            hidden: d,
            ffn,
            head_dim: dh,
            ..
        } = cfg;
        let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
        let rows = |w: Vec<f32>, heads: usize| match pairing {
            RopePairing::Half => unpermute_rope_rows(&w, heads, dh, d),
            RopePairing::Interleaved => w,
        };
        let layers = (0..cfg.layers)
            .into_par_iter()
            .map(|l| {
                let get = |name: &str, shape: &[usize]| {
                    g.dequantize_shaped(&format!("blk.{l}.{name}.weight"), shape)
                };
                Ok(LlamaLayer {
                    attn_norm: get("attn_norm", &[d])?,
                    wq: rows(get("attn_q", &[qd, d])?, cfg.heads),
                    wk: rows(get("attn_k", &[kvd, d])?, cfg.kv_heads),
                    wv: get("attn_v", &[kvd, d])?,
                    wo: get("attn_output", &[d, qd])?,
                    ffn_norm: get("ffn_norm", &[d])?,
                    gate: get("ffn_gate", &[ffn, d])?,
                    up: get("ffn_up", &[ffn, d])?,
                    down: get("ffn_down", &[d, ffn])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = match g.tensor("output.weight") {
            Some(_) => Some(g.dequantize_shaped("output.weight", &[vocab, d])?),
            None => None,
        };
        Ok(Self {
            cfg,
            pairing,
            embed: g.dequantize_shaped("token_embd.weight", &[vocab, d])?,
            norm: g.dequantize_shaped("output_norm.weight", &[d])?,
            output,
            layers,
        })
    }

    /// Applies `f(matrix, rows, cols)` to every weight matrix (the blocks' projections and
    /// the embedding/output matrices), e.g. to measure what rounding the weights alone
    /// costs.
    pub fn map_matrices(&mut self, f: impl Fn(&mut [f32], usize, usize) + Sync) {
        let cfg = self.cfg;
        let (d, ffn, qd, kvd) = (cfg.hidden, cfg.ffn, cfg.q_dim(), cfg.kv_dim());
        self.layers.par_iter_mut().for_each(|l| {
            f(&mut l.wq, qd, d);
            f(&mut l.wk, kvd, d);
            f(&mut l.wv, kvd, d);
            f(&mut l.wo, d, qd);
            f(&mut l.gate, ffn, d);
            f(&mut l.up, ffn, d);
            f(&mut l.down, d, ffn);
        });
        f(&mut self.embed, cfg.vocab, d);
        if let Some(o) = self.output.as_mut() {
            f(o, cfg.vocab, d);
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The RoPE pairing of the loaded `q`/`k` layout.
    pub fn pairing(&self) -> RopePairing {
        self.pairing
    }

    /// Whether the output matrix is the token embedding matrix.
    pub fn tied_embeddings(&self) -> bool {
        self.output.is_none()
    }

    /// The decoder blocks' weights.
    pub fn layers(&self) -> &[LlamaLayer] {
        &self.layers
    }

    /// The token embedding matrix, `[vocab, hidden]`.
    pub fn embedding(&self) -> &[f32] {
        &self.embed
    }

    /// The final RMSNorm weight, `[hidden]`.
    pub fn output_norm(&self) -> &[f32] {
        &self.norm
    }

    /// The output (logits) matrix, `[vocab, hidden]`: the embedding matrix when tied.
    pub fn output_matrix(&self) -> &[f32] {
        self.output.as_deref().unwrap_or(&self.embed)
    }

    /// An empty cache for [`LlamaFloat::forward`].
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            k: vec![Vec::new(); self.cfg.layers],
            v: vec![Vec::new(); self.cfg.layers],
            len: 0,
        }
    }

    /// Rotates the rows of `x` (`heads` heads of `head_dim` per row, row `r` at position
    /// `pos0 + r`) in place.
    fn rope(&self, x: &mut [f32], heads: usize, pos0: usize) {
        let dh = self.cfg.head_dim;
        let half = dh / 2;
        for (r, row) in x.chunks_exact_mut(heads * dh).enumerate() {
            let trig: Vec<(f64, f64)> = (0..half)
                .map(|i| {
                    let a = self.cfg.rope_angle(pos0 + r, i);
                    (a.cos(), a.sin())
                })
                .collect();
            for head in row.chunks_exact_mut(dh) {
                for (i, &(c, s)) in trig.iter().enumerate() {
                    let (p, q) = match self.pairing {
                        RopePairing::Half => (i, i + half),
                        RopePairing::Interleaved => (2 * i, 2 * i + 1),
                    };
                    let (a, b) = (head[p] as f64, head[q] as f64);
                    head[p] = (a * c - b * s) as f32;
                    head[q] = (b * c + a * s) as f32;
                }
            }
        }
    }

    /// Runs `ids` after the positions already in `cache` (prefill: an empty cache and the
    /// whole prompt; decode: one token at a time), appends their keys and values to
    /// `cache`, and returns the logits of every new position, row-major `[ids.len(),
    /// vocab]`. Activation ranges are recorded into `ranges` if given.
    pub fn forward(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        mut ranges: Option<&mut Ranges>,
    ) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        let (d, dh, heads, vocab) = (cfg.hidden, cfg.head_dim, cfg.heads, cfg.vocab);
        let (qd, kvd, ffn) = (cfg.q_dim(), cfg.kv_dim(), cfg.ffn);
        let (s, pos0) = (ids.len(), cache.len);
        if s == 0 || pos0 + s > cfg.context {
            return Err(Error::Param(format!(
                "{s} tokens after {pos0}: the model takes 1..={} in all",
                cfg.context
            )));
        }
        if cache.k.len() != cfg.layers || cache.v.len() != cfg.layers {
            return Err(Error::Param(format!(
                "a cache of {} layers for a model of {}",
                cache.k.len(),
                cfg.layers
            )));
        }
        let mut h = vec![0f32; s * d];
        for (row, &id) in h.chunks_exact_mut(d).zip(ids) {
            let id = id as usize;
            if id >= vocab {
                return Err(Error::Param(format!(
                    "token id {id} outside the vocabulary of {vocab}"
                )));
            }
            row.copy_from_slice(&self.embed[id * d..(id + 1) * d]);
        }
        record(&mut ranges, "emb", h.iter().copied());
        let total = pos0 + s;
        let group = heads / cfg.kv_heads;
        let scale = 1.0 / (dh as f32).sqrt();
        for (l, layer) in self.layers.iter().enumerate() {
            let name = |what: &str| format!("l{l}.{what}");
            let x = rms_norm(&h, &layer.attn_norm, cfg.rms_eps);
            record(&mut ranges, &name("attn_in"), x.iter().copied());
            let mut q = linear(&x, s, d, &layer.wq, qd);
            let mut k = linear(&x, s, d, &layer.wk, kvd);
            let v = linear(&x, s, d, &layer.wv, kvd);
            record(&mut ranges, &name("q_proj"), q.iter().copied());
            record(&mut ranges, &name("k_proj"), k.iter().copied());
            self.rope(&mut q, heads, pos0);
            self.rope(&mut k, cfg.kv_heads, pos0);
            record(&mut ranges, &name("q"), q.iter().copied());
            record(&mut ranges, &name("k"), k.iter().copied());
            record(&mut ranges, &name("v"), v.iter().copied());
            let (kc, vc) = (&mut cache.k[l], &mut cache.v[l]);
            kc.extend_from_slice(&k);
            vc.extend_from_slice(&v);
            let mut ctx = vec![0f32; s * qd];
            let mut scores = vec![0f32; s * total];
            for hd in 0..heads {
                let kv = (hd / group) * dh;
                gemm(
                    s,
                    dh,
                    total,
                    scale,
                    (&q[hd * dh..], qd as isize, 1),
                    (&kc[kv..], 1, kvd as isize),
                    (&mut scores, total as isize, 1),
                );
                // Causal: row r (position pos0 + r) sees positions 0..=pos0 + r.
                for (r, row) in scores.chunks_exact_mut(total).enumerate() {
                    let (seen, future) = row.split_at_mut(pos0 + r + 1);
                    record(&mut ranges, &name("scores"), seen.iter().copied());
                    let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f64;
                    for v in seen.iter_mut() {
                        *v = (*v - max).exp();
                        sum += *v as f64;
                    }
                    for v in seen.iter_mut() {
                        *v = (*v as f64 / sum) as f32;
                    }
                    future.fill(0.0);
                    record(&mut ranges, &name("probs"), seen.iter().copied());
                }
                gemm(
                    s,
                    total,
                    dh,
                    1.0,
                    (&scores, total as isize, 1),
                    (&vc[kv..], kvd as isize, 1),
                    (&mut ctx[hd * dh..], qd as isize, 1),
                );
            }
            record(&mut ranges, &name("ctx"), ctx.iter().copied());
            let attn = linear(&ctx, s, qd, &layer.wo, d);
            record(&mut ranges, &name("attn_out"), attn.iter().copied());
            h.iter_mut().zip(&attn).for_each(|(h, a)| *h += a);
            record(&mut ranges, &name("resid_attn"), h.iter().copied());
            let x = rms_norm(&h, &layer.ffn_norm, cfg.rms_eps);
            record(&mut ranges, &name("mlp_in"), x.iter().copied());
            let mut act = linear(&x, s, d, &layer.gate, ffn);
            let up = linear(&x, s, d, &layer.up, ffn);
            record(&mut ranges, &name("gate"), act.iter().copied());
            record(&mut ranges, &name("up"), up.iter().copied());
            act.iter_mut().for_each(|g| *g = silu(*g));
            record(&mut ranges, &name("silu"), act.iter().copied());
            act.iter_mut().zip(&up).for_each(|(a, u)| *a *= u);
            record(&mut ranges, &name("act"), act.iter().copied());
            let down = linear(&act, s, ffn, &layer.down, d);
            record(&mut ranges, &name("down"), down.iter().copied());
            h.iter_mut().zip(&down).for_each(|(h, a)| *h += a);
            record(&mut ranges, &name("resid"), h.iter().copied());
        }
        cache.len = total;
        let x = rms_norm(&h, &self.norm, cfg.rms_eps);
        record(&mut ranges, "final_norm", x.iter().copied());
        record(
            &mut ranges,
            "final_norm_last",
            x[(s - 1) * d..].iter().copied(),
        );
        let logits = linear(&x, s, d, self.output_matrix(), vocab);
        record(&mut ranges, "logits", logits.iter().copied());
        Ok(logits)
    }

    /// Greedy decoding: runs `prompt`, then appends the highest-logit token (the lowest id
    /// among equals) up to `max_new` times, stopping after any token in `stop`. Returns the
    /// new tokens.
    pub fn generate_greedy(
        &self,
        prompt: &[u32],
        max_new: usize,
        stop: &[u32],
    ) -> Result<Vec<u32>> {
        let mut cache = self.new_cache();
        let mut out = Vec::with_capacity(max_new);
        let mut logits = self.forward(prompt, &mut cache, None)?;
        let vocab = self.cfg.vocab;
        while out.len() < max_new {
            let last = &logits[logits.len() - vocab..];
            let next = argmax(last);
            out.push(next);
            if stop.contains(&next) || out.len() == max_new {
                break;
            }
            logits = self.forward(&[next], &mut cache, None)?;
        }
        Ok(out)
    }
}

/// The index of the largest value (the first among equals; NaN never wins).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in x.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map_or(0, |(i, _)| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_the_converters_permutation() {
        // convert_hf_to_gguf.py: reshape(heads, 2, dh/2, cols).swapaxes(1, 2).
        let (heads, dh, cols) = (3, 8, 2);
        let hf: Vec<f32> = (0..heads * dh * cols).map(|v| v as f32).collect();
        let mut gguf = vec![0f32; hf.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..dh / 2 {
                    let (src, dst) = (h * dh + j * dh / 2 + i, h * dh + 2 * i + j);
                    gguf[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&hf[src * cols..(src + 1) * cols]);
                }
            }
        }
        assert_eq!(unpermute_rope_rows(&gguf, heads, dh, cols), hf);
    }

    #[test]
    fn rms_norm_normalizes_rows() {
        let y = rms_norm(&[3.0, 4.0, 0.0, 0.0], &[1.0, 2.0], 1e-6);
        let r = (12.5f32 + 1e-6).sqrt();
        assert!((y[0] - 3.0 / r).abs() < 1e-6 && (y[1] - 8.0 / r).abs() < 1e-6);
        assert_eq!(&y[2..], &[0.0, 0.0]);
    }

    #[test]
    fn gemm_handles_strides() {
        // a = [[1, 2], [3, 4]], b^T read from a row-major [[5, 6], [7, 8]].
        let mut c = [0f32; 4];
        gemm(
            2,
            2,
            2,
            1.0,
            (&[1.0, 2.0, 3.0, 4.0], 2, 1),
            (&[5.0, 6.0, 7.0, 8.0], 1, 2),
            (&mut c, 2, 1),
        );
        assert_eq!(c, [17.0, 23.0, 39.0, 53.0]);
    }

    #[test]
    fn both_linear_paths_agree() {
        let (k, n) = (37, 70);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let x: Vec<f32> = (0..GEMM_MIN_ROWS * k)
            .map(|i| ((i * 104729) % 97) as f32 / 40.0 - 1.2)
            .collect();
        let big = linear(&x, GEMM_MIN_ROWS, k, &w, n);
        for m in [1, 3, GEMM_MIN_ROWS - 1] {
            let small = linear(&x[..m * k], m, k, &w, n);
            for (a, b) in small.iter().zip(&big) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.0]), 1);
    }
}
