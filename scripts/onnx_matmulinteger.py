#!/usr/bin/env python3
"""Convert ONNX's own backend-test cases for MatMulInteger (and the closely
related QLinearMatMul) into .npy fixtures.

The onnx wheel (onnx==1.22.0) ships node test data under
onnx/backend/test/data/node/<case>/ (model.onnx + test_data_set_0/*.pb).
This script reads those protobufs and writes each tensor as .npy in its
ORIGINAL dtype and shape (e.g. MatMulInteger: uint8 inputs, uint8 [1]
zero points, int32 output), named after the model's input names lower-cased
(A -> a.npy, B -> b.npy, a_zero_point.npy, ...; the output -> y.npy).  It
also re-checks each case: the integer cases with numpy, and every case with
onnx.reference.ReferenceEvaluator.

Layout written under --out (default inference/tests/fixtures/onnx_matmulinteger):
    a.npy a_zero_point.npy b.npy b_zero_point.npy y.npy   test_matmulinteger
    qlinearmatmul_<2D|3D>_<int8|uint8>_float32/...         QLinearMatMul cases
    README.md

How to run
----------
    python3 -m venv /tmp/fixtures-venv
    /tmp/fixtures-venv/bin/pip install -r scripts/requirements-fixtures.txt
    /tmp/fixtures-venv/bin/python scripts/onnx_matmulinteger.py \\
        [--out inference/tests/fixtures/onnx_matmulinteger]
"""

import argparse
import glob
import os
import shutil
import sys

import numpy as np

# (backend test case, sub-directory under --out; "" = the top level)
CASES = [
    ("test_matmulinteger", ""),
    ("test_qlinearmatmul_2D_int8_float32", "qlinearmatmul_2D_int8_float32"),
    ("test_qlinearmatmul_2D_uint8_float32", "qlinearmatmul_2D_uint8_float32"),
    ("test_qlinearmatmul_3D_int8_float32", "qlinearmatmul_3D_int8_float32"),
    ("test_qlinearmatmul_3D_uint8_float32", "qlinearmatmul_3D_uint8_float32"),
]

README = """\
# ONNX MatMulInteger / QLinearMatMul backend-test fixtures

Converted by `scripts/onnx_matmulinteger.py` from the node backend-test data
that ships inside the `onnx==1.22.0` Python wheel
(`onnx/backend/test/data/node/<case>/model.onnx` and
`test_data_set_0/input_*.pb`, `output_0.pb`).  Tensors are stored as `.npy`
in their original dtypes and shapes, named after the model's input names in
lower case; the single output is `y.npy`.

License: this data is part of ONNX (https://github.com/onnx/onnx), licensed
under the Apache License 2.0; it is redistributed here unchanged apart from
the file format.

| directory | ONNX case | op (opset) | files |
| --- | --- | --- | --- |
{rows}

Semantics:
- MatMulInteger: `y = (a - a_zero_point) @ (b - b_zero_point)` in int32
  (zero points are per-tensor here, stored with shape `[1]`).
- QLinearMatMul: `y = saturate(round_half_even((a - a_zp) @ (b - b_zp) *
  a_scale * b_scale / y_scale) + y_zp)`; scales are float32 `[1]` tensors
  (numpy with the f64 product reproduces all four; no .5 ties occur in them).
"""


def onnx_node_dir():
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test",
                        "data", "node")


def load_case(case):
    import onnx
    from onnx import numpy_helper

    d = os.path.join(onnx_node_dir(), case)
    model = onnx.load(os.path.join(d, "model.onnx"))
    ins = [i.name for i in model.graph.input]
    outs = [o.name for o in model.graph.output]
    tensors = {}
    for kind, names in (("input", ins), ("output", outs)):
        files = sorted(glob.glob(os.path.join(d, "test_data_set_0",
                                              f"{kind}_*.pb")),
                       key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
        assert len(files) == len(names), (case, files, names)
        for path, name in zip(files, names):
            tp = onnx.TensorProto()
            with open(path, "rb") as f:
                tp.ParseFromString(f.read())
            assert tp.name in ("", name), (tp.name, name)
            tensors[name] = numpy_helper.to_array(tp)
    ops = [(n.op_type, [o.version for o in model.opset_import
                        if o.domain in ("", "ai.onnx")][0])
           for n in model.graph.node]
    return model, ins, outs, tensors, ops


def check_case(case, model, ins, outs, t):
    from onnx.reference import ReferenceEvaluator

    got = ReferenceEvaluator(model).run(None, {n: t[n] for n in ins})
    for name, arr in zip(outs, got):
        want = t[name]
        assert arr.dtype == want.dtype and np.array_equal(arr, want), \
            f"{case}: onnx ReferenceEvaluator disagrees on {name}"
    if case == "test_matmulinteger":
        a = t["A"].astype(np.int32) - t["a_zero_point"].astype(np.int32)
        b = t["B"].astype(np.int32) - t["b_zero_point"].astype(np.int32)
        assert np.array_equal(a @ b, t[outs[0]]), case


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="inference/tests/fixtures/onnx_matmulinteger")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for case, sub in CASES:
        if not os.path.isdir(os.path.join(onnx_node_dir(), case)):
            print(f"skip {case}: not in this onnx wheel")
            continue
        model, ins, outs, t, ops = load_case(case)
        check_case(case, model, ins, outs, t)
        dest = os.path.join(args.out, sub) if sub else args.out
        if sub and os.path.isdir(dest):
            shutil.rmtree(dest)
        os.makedirs(dest, exist_ok=True)
        files = []
        for name in ins:
            fn = name.lower() + ".npy"
            np.save(os.path.join(dest, fn), t[name])
            files.append(f"{fn} {t[name].dtype}{list(t[name].shape)}")
        assert len(outs) == 1
        np.save(os.path.join(dest, "y.npy"), t[outs[0]])
        files.append(f"y.npy {t[outs[0]].dtype}{list(t[outs[0]].shape)}")
        op = ", ".join(f"{o} ({v})" for o, v in ops)
        rows.append(f"| `{sub or '.'}` | `{case}` | {op} | "
                    + ", ".join(f"`{f}`" for f in files) + " |")
        print(f"{case} -> {dest}: " + ", ".join(files))
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(README.replace("{rows}", "\n".join(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
