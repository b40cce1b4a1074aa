#!/usr/bin/env python3
"""Reference fixtures for int8 FULLY_CONNECTED, produced by LiteRT (TFLite).

What this is
------------
Builds tiny .tflite models holding ONE int8 FULLY_CONNECTED op with
per-output-channel int8 weights (weight zero point 0, one scale per output
channel), int32 bias (scale input_scale*weight_scale[n], zero point 0), int8
input and int8 output with zero points, and runs them with LiteRT's reference
kernels (ai_edge_litert 2.3.0, OpResolverType.BUILTIN_REF).  The flatbuffer is
written directly with the `flatbuffers` package and the schema classes that
ship inside ai_edge_litert (no TensorFlow needed).

What LiteRT 2.3.0 BUILTIN_REF actually computes (proven by `verify` and by
the discriminating cases that `generate` writes):

    acc[b,n] = bias[n] + sum_k (x[b,k] - x_zp) * w[n,k]          (int32)
    eff[n]   = double(f32 input_scale) * double(f32 weight_scale[n])
               / double(f32 output_scale)                          (IEEE f64)
    y[b,n]   = clamp(round_half_away_from_zero(double(acc) * eff[n]) + y_zp,
                     -128, 127)

i.e. a double-precision multiply with ONE rounding (C `round`, ties away
from zero); the Q31 multiplier is NOT used by the reference kernel.  The
Q31 multiplier/shift that TFLite's QuantizeMultiplier would derive are still
written to every case (multiplier.npy / shift.npy) for integer-only
implementations; `q31_single_round` below (single rounding, ties away from
zero) agrees with LiteRT except where the Q31 approximation of eff moves a
product across a .5 tie; meta.json records how many elements of each case
disagree ("q31_single_round_mismatches").  `exact_integer_model` reproduces
the double arithmetic bit-exactly with integers only (53-bit mantissa M and
exponent E of eff, stored in meta.json).

How to run
----------
    python3 -m venv /tmp/fixtures-venv
    /tmp/fixtures-venv/bin/pip install -r scripts/requirements-fixtures.txt
    PY=/tmp/fixtures-venv/bin/python
    $PY scripts/litert_fully_connected.py generate \\
        --out inference/tests/fixtures/litert_fully_connected --cases 56 --seed 1
    $PY scripts/litert_fully_connected.py verify \\
        --dir inference/tests/fixtures/litert_fully_connected
    $PY scripts/litert_fully_connected.py check-cli \\
        --bin target/release/<cli> --cases 200 --seed 7 [--kinds random,saturate]

Case layout (case_NNN/): x.npy int8 [B,K], w.npy int8 [N,K], bias.npy int32
[N], multiplier.npy int32 [N] (Q31 m from QuantizeMultiplier), shift.npy
int32 [N] (TOTAL right shift s = 31 - tflite_shift, >= 0), y.npy int8 [B,N]
(LiteRT output), meta.json.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

# ---------------------------------------------------------------------------
# .tflite construction and execution
# ---------------------------------------------------------------------------


def build_fc_model(w, bias, input_scale, x_zp, weight_scales, output_scale,
                   y_zp, batch):
    """Serialize a one-op int8 per-channel FULLY_CONNECTED model."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as S

    n_out, k = w.shape
    buffers = [S.BufferT()]  # buffer 0: the conventional empty buffer

    def add_buffer(arr=None):
        b = S.BufferT()
        if arr is not None:
            b.data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), np.uint8)
        buffers.append(b)
        return len(buffers) - 1

    def quant(scales, zero_points, dim=0):
        q = S.QuantizationParametersT()
        q.scale = [float(s) for s in scales]
        q.zeroPoint = [int(z) for z in zero_points]
        q.quantizedDimension = dim
        return q

    def tensor(name, shape, ttype, buf, q):
        t = S.TensorT()
        t.name = name
        t.shape = list(shape)
        t.type = ttype
        t.buffer = buf
        t.quantization = q
        return t

    f32 = np.float32
    bias_scales = [float(f32(input_scale) * f32(s)) for s in weight_scales]
    tensors = [
        tensor("x", [batch, k], S.TensorType.INT8, add_buffer(),
               quant([input_scale], [x_zp])),
        tensor("w", [n_out, k], S.TensorType.INT8,
               add_buffer(w.astype(np.int8)),
               quant(weight_scales, [0] * n_out, 0)),
        tensor("bias", [n_out], S.TensorType.INT32,
               add_buffer(bias.astype("<i4")),
               quant(bias_scales, [0] * n_out, 0)),
        tensor("y", [batch, n_out], S.TensorType.INT8, add_buffer(),
               quant([output_scale], [y_zp])),
    ]
    opts = S.FullyConnectedOptionsT()
    opts.fusedActivationFunction = S.ActivationFunctionType.NONE
    opts.keepNumDims = False
    op = S.OperatorT()
    op.opcodeIndex = 0
    op.inputs = [0, 1, 2]
    op.outputs = [3]
    op.builtinOptionsType = S.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = opts
    code = S.OperatorCodeT()
    code.builtinCode = S.BuiltinOperator.FULLY_CONNECTED
    code.deprecatedBuiltinCode = S.BuiltinOperator.FULLY_CONNECTED
    code.version = 5
    sg = S.SubGraphT()
    sg.name = "main"
    sg.tensors = tensors
    sg.inputs = [0]
    sg.outputs = [3]
    sg.operators = [op]
    model = S.ModelT()
    model.version = 3
    model.description = "fc_int8_per_channel"
    model.operatorCodes = [code]
    model.subgraphs = [sg]
    model.buffers = buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def run_litert(case):
    """Run the case through LiteRT's BUILTIN_REF kernels; returns int8 [B,N]."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    x = case["x"]
    model = build_fc_model(case["w"], case["bias"], case["input_scale"],
                           case["x_zero_point"], case["weight_scales"],
                           case["output_scale"], case["y_zero_point"],
                           x.shape[0])
    interp = Interpreter(model_content=model,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    y = interp.get_tensor(interp.get_output_details()[0]["index"]).copy()
    assert y.dtype == np.int8 and y.shape == (x.shape[0], case["w"].shape[0])
    return y


# ---------------------------------------------------------------------------
# The arithmetic
# ---------------------------------------------------------------------------


def f32(v):
    return float(np.float32(v))


def effective_scale(input_scale, weight_scale, output_scale):
    """TFLite: double(in) * double(w) / double(out), all from float32."""
    return f32(input_scale) * f32(weight_scale) / f32(output_scale)


def quantize_multiplier(d):
    """Exact replica of tflite::QuantizeMultiplier (default build: no
    TFLITE_SINGLE_ROUNDING, no TFLITE_EMULATE_FLOAT).  Returns (m, shift)
    with d ~= m * 2^(shift - 31)."""
    if d == 0.0:
        return 0, 0
    q, shift = math.frexp(d)               # d = q * 2^shift, 0.5 <= |q| < 1
    t = abs(q) * 2.0 ** 31                 # exact (power-of-two scaling)
    fl = math.floor(t)
    q_fixed = int(fl) + (1 if t - fl >= 0.5 else 0)   # std::round: ties away
    if q < 0:
        q_fixed = -q_fixed
    assert q_fixed <= 1 << 31
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    assert q_fixed <= 2 ** 31 - 1
    if shift < -31:                        # flush tiny multipliers to zero
        shift = 0
        q_fixed = 0
    # (With TFLITE_SINGLE_ROUNDING there is an extra clamp shift>30 ->
    #  shift=30, q=2^31-1; not compiled in the default build.)
    return q_fixed, shift


def accumulate(x, w, bias, x_zp):
    acc = bias.astype(np.int64)[None, :] + \
        (x.astype(np.int64) - int(x_zp)) @ w.astype(np.int64).T
    assert acc.min(initial=0) >= -2 ** 31 and acc.max(initial=0) < 2 ** 31
    return acc


def round_half_away(p):
    """C round() on float64 arrays (no 0.49999999999999994 pitfall)."""
    a = np.abs(p)
    f = np.floor(a)
    r = f + (a - f >= 0.5)
    return np.where(p < 0, -r, r)


def litert_ref_model(case):
    """numpy model of LiteRT 2.3 BUILTIN_REF (double-precision rescale)."""
    acc = accumulate(case["x"], case["w"], case["bias"], case["x_zero_point"])
    eff = np.array([effective_scale(case["input_scale"], s, case["output_scale"])
                    for s in case["weight_scales"]], dtype=np.float64)
    y = round_half_away(acc.astype(np.float64) * eff[None, :])
    y = y + case["y_zero_point"]
    return np.clip(y, -128, 127).astype(np.int8)


def eff_mantissa_exponent(eff):
    """eff == M * 2^E exactly, 2^52 <= M < 2^53 (eff > 0, normal)."""
    frac, ex = math.frexp(eff)
    m = int(frac * 2.0 ** 53)
    assert m * 2.0 ** (ex - 53) == eff
    return m, ex - 53


def exact_integer_rescale(acc, mant, expo):
    """Integer-only replica of round(double(acc) * eff) with eff = mant*2^expo:
    the f64 product rounds the exact acc*mant to 53 significant bits (ties to
    even), then C round() rounds that to an integer (ties away from zero)."""
    p = acc * mant
    a = abs(p)
    nbits = a.bit_length()
    if nbits > 53:
        k = nbits - 53
        q = a >> k
        r = a & ((1 << k) - 1)
        half = 1 << (k - 1)
        if r > half or (r == half and (q & 1)):
            q += 1
        a = q << k
    if expo >= 0:
        n = a << expo
    else:
        t = -expo
        n = (a + (1 << (t - 1))) >> t
    return -n if p < 0 else n


def exact_integer_model(case):
    acc = accumulate(case["x"], case["w"], case["bias"], case["x_zero_point"])
    me = [eff_mantissa_exponent(effective_scale(case["input_scale"], s,
                                                case["output_scale"]))
          for s in case["weight_scales"]]
    out = np.empty(acc.shape, dtype=np.int8)
    for b in range(acc.shape[0]):
        for n in range(acc.shape[1]):
            v = exact_integer_rescale(int(acc[b, n]), *me[n])
            out[b, n] = max(-128, min(127, v + case["y_zero_point"]))
    return out


def q31_single_round(acc, m, s):
    """Single rounding, ties away from zero: sign(p)*((|p| + 2^(s-1)) >> s)."""
    p = acc * m
    if s == 0:
        return p
    r = (abs(p) + (1 << (s - 1))) >> s
    return -r if p < 0 else r


def q31_single_round_model(x, w, bias, mult, shift, x_zp, y_zp):
    """What an integer-only implementation fed multiplier.npy/shift.npy
    computes under the single-rounding, ties-away hypothesis."""
    acc = accumulate(x, w, bias, x_zp)
    out = np.empty(acc.shape, dtype=np.int8)
    for b in range(acc.shape[0]):
        for n in range(acc.shape[1]):
            v = q31_single_round(int(acc[b, n]), int(mult[n]), int(shift[n]))
            out[b, n] = max(-128, min(127, v + y_zp))
    return out


# ---------------------------------------------------------------------------
# Case generation
# ---------------------------------------------------------------------------

# Every run starts with these (so any --cases >= len() includes all the
# discriminating constructions), then draws from RANDOM_KINDS.
FIXED_KINDS = ["dyadic_ties", "below_dyadic_ties", "odd_ties",
               "below_odd_ties", "above_dyadic_ties", "edge_scales",
               "saturate", "near_one", "tiny_eff", "random"]
RANDOM_KINDS = ["random", "random", "random", "tiny_eff", "near_one",
                "saturate", "dyadic_ties", "below_dyadic_ties", "odd_ties",
                "below_odd_ties"]
ALL_KINDS = sorted(set(FIXED_KINDS) | set(RANDOM_KINDS))
# Scales built to sit within 2^-40 of a tie: no Q31 multiplier can represent
# them, so an integer-only kernel (ours, by the spec) differs from LiteRT's
# double-precision rescale there. check-cli leaves them out unless --kinds
# names them, and then says which failures are exactly this divergence.
ADVERSARIAL_KINDS = ["below_dyadic_ties", "below_odd_ties", "edge_scales"]
NATURAL_KINDS = [k for k in ALL_KINDS if k not in ADVERSARIAL_KINDS]


def exact_f32(v):
    assert float(np.float32(v)) == v, v
    return v


def pick_zp(rng, lo=-128, hi=127):
    r = rng.random()
    if r < 0.12 and lo <= -128:
        return -128
    if r < 0.24 and hi >= 127:
        return 127
    return int(rng.integers(lo, hi + 1))


def tie_case(rng, kind):
    """K tiny, w = +-1 on column 0 so that acc sweeps a contiguous integer
    range; effective scales c * 2^-e put exact (or nearly exact) .5 ties in
    that range.  Variants:
      dyadic/odd_ties     eff = c*2^-e exactly (ties are exact in f64 and Q31)
      below_*_ties        eff = c*2^-e*(1-2^-40): Q31 m is still exactly
                          c*2^-e, f64 eff is just below -> ties go to zero
                          in LiteRT but away from zero in the Q31 model
      above_dyadic_ties   eff = 2^-e*(1+2^-36)
    """
    B = int(rng.integers(9, 18))
    N = int(rng.integers(24, 65))
    N = min(N, 512 // B)
    K = int(rng.integers(1, 4))
    odd = kind in ("odd_ties", "below_odd_ties")
    a = int(rng.integers(0, 4))       # input scale 2^-a
    d = int(rng.integers(0, 3))       # output scale 2^-d
    if kind.startswith("below"):
        in_s = exact_f32((1 + 2.0 ** -20) * 2.0 ** -a)
        pert = 1 - 2.0 ** -20
    elif kind.startswith("above"):
        in_s = exact_f32((1 + 2.0 ** -12) * 2.0 ** -a)
        pert = 1 - 2.0 ** -12 + 2.0 ** -24
    else:
        in_s = exact_f32(2.0 ** -a)
        pert = 1.0
    out_s = exact_f32(2.0 ** -d)
    w_scales = []
    for _ in range(N):
        c = int(rng.choice([3, 5, 7, 9, 11, 13, 15])) if odd else 1
        # eff = c * 2^-e with e in [1, 8] and eff <= 1/4
        e_min = max(2, math.ceil(math.log2(c)) + 2)
        e = int(rng.integers(e_min, e_min + 4))
        b = e - a + d                 # eff = c * 2^-(a+b-d) = c*2^-e
        w_scales.append(exact_f32(c * 2.0 ** -b * pert))
    x_zp = pick_zp(rng)
    y_zp = int(rng.integers(-40, 41))
    # x[b,0] - x_zp = d0 + b, inside int8
    lo, hi = -128 - x_zp, 127 - x_zp - (B - 1)
    d0 = int(rng.integers(lo, hi + 1))
    x = rng.integers(-128, 128, size=(B, K)).astype(np.int8)
    x[:, 0] = (x_zp + d0 + np.arange(B)).astype(np.int8)
    w = np.zeros((N, K), np.int8)
    sign = rng.choice([-1, 1], size=N)
    w[:, 0] = sign
    base = -(N * B) // 2 + int(rng.integers(-8, 9))
    bias = np.empty(N, np.int64)
    for n in range(N):
        if sign[n] > 0:   # acc = base + n*B + b
            bias[n] = base + n * B - d0
        else:             # acc = base + n*B + (B-1-b)
            bias[n] = base + n * B + d0 + B - 1
    perm = rng.permutation(N)   # shuffle channels so acc ranges interleave
    return dict(x=x, w=w[perm], bias=bias[perm].astype(np.int32),
                input_scale=in_s, output_scale=out_s,
                weight_scales=[w_scales[i] for i in perm],
                x_zero_point=x_zp, y_zero_point=y_zp)


def dims(rng, max_kn=6000):
    B = int(rng.integers(1, 18))
    K = int(rng.choice([1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129,
                        200, 255, 256, 257, 299, 300]))
    if rng.random() < 0.4:
        K = int(rng.integers(1, 301))
    N = int(rng.integers(1, 71))
    N = max(1, min(N, max_kn // K))
    return B, K, N


def random_case(rng, kind):
    B, K, N = dims(rng)
    x_zp = pick_zp(rng)
    y_zp = pick_zp(rng)
    wlo = -128 if rng.random() < 0.3 else -127
    if kind == "saturate":
        x_zp = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
        y_zp = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
        x = rng.choice(np.array([-128, 127], np.int8), size=(B, K))
        if rng.random() < 0.5:
            x[rng.random((B, K)) < 0.3] = np.int8(x_zp)
        w = rng.choice(np.array([-128, -127, 127], np.int8), size=(N, K))
    elif kind == "near_one":
        K = int(rng.integers(1, 9))
        N = int(rng.integers(1, 40))
        x = np.clip(x_zp + rng.integers(-20, 21, size=(B, K)), -128,
                    127).astype(np.int8)
        w = rng.integers(-6, 7, size=(N, K)).astype(np.int8)
    else:
        x = rng.integers(-128, 128, size=(B, K)).astype(np.int8)
        w = rng.integers(wlo, 128, size=(N, K)).astype(np.int8)

    dot = (x.astype(np.int64) - x_zp) @ w.astype(np.int64).T
    spread = max(1.0, float(np.std(dot)) if dot.size > 1 else abs(float(dot.flat[0])) + 1)

    in_s = f32(10 ** rng.uniform(-3.5, 0.5))
    if kind == "tiny_eff":
        effs = 10 ** rng.uniform(-8, -5, size=N)
        bias = np.clip(rng.uniform(-150, 150, size=N) / effs, -2 ** 28,
                       2 ** 28).astype(np.int64)
    elif kind == "near_one":
        effs = 10 ** rng.uniform(-0.6, 0.6, size=N)
        bias = rng.integers(-40, 41, size=N)
    elif kind == "saturate":
        effs = 10 ** rng.uniform(-3, 0, size=N) * 60 / spread * 10
        bias = rng.integers(-4 * int(spread) - 1, 4 * int(spread) + 1, size=N)
    else:
        # scale spread per channel over ~3 orders around a case-level target
        target = rng.uniform(10, 70) / spread
        effs = target * 10 ** rng.uniform(-1.5, 0.5, size=N)
        r = rng.random()
        if r < 0.2:
            bias = np.zeros(N, np.int64)
        elif r < 0.9:
            bias = rng.normal(0, spread, size=N).round().astype(np.int64)
        else:
            lim = int(min(2 ** 24, 20 * spread)) + 1
            bias = rng.integers(-lim, lim, size=N)
    # choose output scale from the median target, weight scales per channel
    out_s = f32(10 ** rng.uniform(-3, 0))
    w_scales = [f32(e * out_s / in_s) for e in effs]
    w_scales = [s if s > 0 else 1e-30 for s in w_scales]
    return dict(x=x, w=w, bias=np.asarray(bias).astype(np.int32),
                input_scale=in_s, output_scale=out_s, weight_scales=w_scales,
                x_zero_point=int(x_zp), y_zero_point=int(y_zp))


def edge_case(rng):
    """QuantizeMultiplier edge paths: flush-to-zero (m=0), the q == 2^31
    fix-up at several exponents (incl. total shift 62), eff > 1 (shift > 0)."""
    in_s = exact_f32(1 + 2.0 ** -20)
    p = 1 - 2.0 ** -20            # in_s * p == 1 - 2^-40
    w_list = [2.0 ** -40,             # eff ~ 2^-40 -> flush (m=0, shift 0)
              2.0 ** -33 * p,         # fix-up -> shift -32 -> flush
              2.0 ** -32 * p,         # fix-up -> m=2^30, shift -31 (s=62)
              2.0 ** -31 * p,         # fix-up -> m=2^30, shift -30 (s=61)
              2.0 ** -20 * p,
              2.0 ** -8 * p,
              p,                      # eff = 1-2^-40 -> m=2^30, shift=1
              0.5 * p,
              1.5 * p,                # shift 1
              2.0 * p,                # shift 2
              3.0,                    # eff > 1, shift 2
              0.75, 0.1, 0.999999, 1.0000001,
              2.0 ** -31,             # m=2^30+2^10, shift -30 (s=61)
              2.0 ** -32,             # m=2^30+2^10, shift -31 (s=62)
              2.0 ** -33]             # shift -32 -> flush
    w_scales = [exact_f32(f32(v)) for v in w_list]
    N = len(w_scales)
    B = int(rng.integers(3, 12))
    K = int(rng.integers(1, 6))
    x_zp = pick_zp(rng)
    y_zp = int(rng.integers(-20, 21))
    x = rng.integers(-128, 128, size=(B, K)).astype(np.int8)
    w = rng.integers(-10, 11, size=(N, K)).astype(np.int8)
    bias = np.zeros(N, np.int64)
    for n, v in enumerate(w_scales):
        eff = effective_scale(in_s, v, 1.0)
        if eff < 2.0 ** -20:   # make tiny-eff channels see huge accumulators
            bias[n] = int(rng.integers(-2 ** 30, 2 ** 30))
        else:
            bias[n] = int(rng.integers(-30, 31))
    return dict(x=x, w=w, bias=bias.astype(np.int32), input_scale=in_s,
                output_scale=1.0, weight_scales=w_scales,
                x_zero_point=int(x_zp), y_zero_point=y_zp)


def make_case(rng, kind):
    if kind.endswith("_ties"):
        return tie_case(rng, kind)
    if kind == "edge_scales":
        return edge_case(rng)
    return random_case(rng, kind)


def kind_schedule(rng, count, kinds=None):
    out = []
    fixed = [k for k in FIXED_KINDS if kinds is None or k in kinds]
    pool = [k for k in RANDOM_KINDS if kinds is None or k in kinds] or \
        sorted(kinds)
    for i in range(count):
        out.append(fixed[i] if i < len(fixed) else str(rng.choice(pool)))
    return out


def finish_case(case, kind):
    """Derive multiplier/shift, run LiteRT, cross-check the models."""
    mult, shift, tshift, effs, mants, expos = [], [], [], [], [], []
    for s in case["weight_scales"]:
        eff = effective_scale(case["input_scale"], s, case["output_scale"])
        m, sh = quantize_multiplier(eff)
        assert 0 <= 31 - sh <= 62, (eff, m, sh)
        mult.append(m)
        tshift.append(sh)
        shift.append(31 - sh)
        effs.append(eff)
        mm, ee = eff_mantissa_exponent(eff)
        mants.append(mm)
        expos.append(ee)
    case["multiplier"] = np.array(mult, np.int32)
    case["shift"] = np.array(shift, np.int32)
    case["y"] = run_litert(case)
    model = litert_ref_model(case)
    exact = exact_integer_model(case)
    if not (np.array_equal(model, case["y"]) and np.array_equal(exact, case["y"])):
        raise SystemExit("LiteRT disagrees with the double-precision model "
                         f"on a {kind} case: the arithmetic hypothesis is wrong")
    q31 = q31_single_round_model(case["x"], case["w"], case["bias"],
                                 case["multiplier"], case["shift"],
                                 case["x_zero_point"], case["y_zero_point"])
    case["meta"] = {
        "kind": kind,
        "x_zero_point": int(case["x_zero_point"]),
        "y_zero_point": int(case["y_zero_point"]),
        "input_scale": f32(case["input_scale"]),
        "output_scale": f32(case["output_scale"]),
        "weight_scales": [f32(s) for s in case["weight_scales"]],
        "tflite_shifts": [int(v) for v in tshift],
        "effective_scales": effs,
        "effective_scale_mantissa": mants,
        "effective_scale_exponent": expos,
        "q31_single_round_mismatches": int(np.count_nonzero(q31 != case["y"])),
        "litert": "ai-edge-litert 2.3.0 BUILTIN_REF",
    }
    return case


def write_case(case, path):
    os.makedirs(path, exist_ok=True)
    for name in ("x", "w", "bias", "multiplier", "shift", "y"):
        np.save(os.path.join(path, name + ".npy"),
                np.ascontiguousarray(case[name]))
    with open(os.path.join(path, "meta.json"), "w") as f:
        json.dump(case["meta"], f, indent=1)
        f.write("\n")


def load_case(path):
    with open(os.path.join(path, "meta.json")) as f:
        meta = json.load(f)
    case = {name: np.load(os.path.join(path, name + ".npy"))
            for name in ("x", "w", "bias", "multiplier", "shift", "y")}
    case.update(input_scale=meta["input_scale"],
                output_scale=meta["output_scale"],
                weight_scales=meta["weight_scales"],
                x_zero_point=meta["x_zero_point"],
                y_zero_point=meta["y_zero_point"], meta=meta)
    return case


def generate_cases(out, count, seed, kinds=None):
    rng = np.random.default_rng(seed)
    sched = kind_schedule(rng, count, kinds)
    paths = []
    for i, kind in enumerate(sched):
        case = finish_case(make_case(rng, kind), kind)
        p = os.path.join(out, f"case_{i:03d}")
        write_case(case, p)
        paths.append((p, case))
    return paths


# ---------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------


def cmd_generate(args):
    if os.path.isdir(args.out):
        for name in os.listdir(args.out):
            if name.startswith("case_"):
                shutil.rmtree(os.path.join(args.out, name))
    os.makedirs(args.out, exist_ok=True)
    kinds = set(args.kinds.split(",")) if args.kinds else None
    paths = generate_cases(args.out, args.cases, args.seed, kinds)
    total = sum(c["y"].size for _, c in paths)
    q31_bad = sum(c["meta"]["q31_single_round_mismatches"] for _, c in paths)
    print(f"wrote {len(paths)} cases ({total} outputs) to {args.out}; "
          f"q31 single-rounding model differs from LiteRT on {q31_bad} outputs")


def cmd_verify(args):
    case_dirs = sorted(d for d in os.listdir(args.dir) if d.startswith("case_"))
    passed = failed = 0
    elems = q31_bad = 0
    for d in case_dirs:
        c = load_case(os.path.join(args.dir, d))
        ok = True
        y_lite = run_litert(c)
        y_model = litert_ref_model(c)
        y_exact = exact_integer_model(c)
        for name, arr in (("litert", y_lite), ("double model", y_model),
                          ("integer model", y_exact)):
            if arr.dtype != c["y"].dtype or not np.array_equal(arr, c["y"]):
                print(f"{d}: {name} differs from y.npy", file=sys.stderr)
                ok = False
        for n, s in enumerate(c["weight_scales"]):
            m, sh = quantize_multiplier(
                effective_scale(c["input_scale"], s, c["output_scale"]))
            if m != int(c["multiplier"][n]) or 31 - sh != int(c["shift"][n]) \
                    or sh != c["meta"]["tflite_shifts"][n]:
                print(f"{d}: multiplier/shift of channel {n} stale",
                      file=sys.stderr)
                ok = False
                break
        q31 = q31_single_round_model(c["x"], c["w"], c["bias"], c["multiplier"],
                                     c["shift"], c["x_zero_point"],
                                     c["y_zero_point"])
        bad = int(np.count_nonzero(q31 != c["y"]))
        if bad != c["meta"]["q31_single_round_mismatches"]:
            print(f"{d}: q31 mismatch count changed", file=sys.stderr)
            ok = False
        elems += c["y"].size
        q31_bad += bad
        passed += ok
        failed += not ok
    print(f"outputs: {elems}; q31 single-rounding (ties away) differs from "
          f"LiteRT on {q31_bad}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not case_dirs else 0


def cmd_check_cli(args):
    kinds = set(args.kinds.split(",")) if args.kinds else set(NATURAL_KINDS)
    binary = shutil.which(args.bin) or args.bin
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        print(f"check-cli: {args.bin} is not an executable file", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="fc_check_")
    passed = failed = 0
    try:
        for path, c in generate_cases(tmp, args.cases, args.seed, kinds):
            out = os.path.join(path, "y_cli.npy")
            cmd = [os.path.abspath(binary), "op", "fully-connected",
                   "--x", os.path.join(path, "x.npy"),
                   "--w", os.path.join(path, "w.npy"),
                   "--bias", os.path.join(path, "bias.npy"),
                   "--multiplier", os.path.join(path, "multiplier.npy"),
                   "--shift", os.path.join(path, "shift.npy"),
                   f"--x-zero-point={c['x_zero_point']}",
                   f"--y-zero-point={c['y_zero_point']}",
                   "--out", out]
            name = f"{os.path.basename(path)} ({c['meta']['kind']})"
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL {name}: exit {r.returncode}: {r.stderr.strip()}")
                failed += 1
                continue
            try:
                y = np.load(out)
            except Exception as e:  # noqa: BLE001
                print(f"FAIL {name}: cannot read {out}: {e}")
                failed += 1
                continue
            if y.dtype != np.int8 or y.shape != c["y"].shape:
                print(f"FAIL {name}: got {y.dtype}{list(y.shape)}, "
                      f"want int8{list(c['y'].shape)}")
                failed += 1
            elif y.tobytes() != c["y"].tobytes():
                nbad = int(np.count_nonzero(y != c["y"]))
                idx = tuple(int(i) for i in np.argwhere(y != c["y"])[0])
                q31 = q31_single_round_model(
                    c["x"], c["w"], c["bias"], c["multiplier"], c["shift"],
                    c["x_zero_point"], c["y_zero_point"])
                why = (" (= the Q31 spec: this scale has no exact Q31 "
                       "multiplier)" if y.tobytes() == q31.tobytes() else "")
                print(f"FAIL {name}: {nbad}/{y.size} outputs differ, first at "
                      f"{list(idx)}: got {int(y[idx])} want {int(c['y'][idx])}"
                      f"{why}")
                failed += 1
            else:
                passed += 1
    finally:
        if args.keep:
            print(f"cases kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write fixture cases")
    g.add_argument("--out", required=True)
    g.add_argument("--cases", type=int, default=48)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--kinds", help=f"comma list from {ALL_KINDS}")
    c = sub.add_parser("check-cli", help="compare a CLI against LiteRT")
    c.add_argument("--bin", required=True)
    c.add_argument("--cases", type=int, default=100)
    c.add_argument("--seed", type=int, default=12345)
    c.add_argument("--kinds", help=f"comma list from {ALL_KINDS}")
    c.add_argument("--keep", action="store_true", help="keep the temp cases")
    v = sub.add_parser("verify", help="re-check fixtures against LiteRT")
    v.add_argument("--dir", required=True)
    args = ap.parse_args(argv)
    if getattr(args, "kinds", None):
        unknown = set(args.kinds.split(",")) - set(ALL_KINDS)
        if unknown:
            ap.error(f"unknown kinds {sorted(unknown)}")
    if args.cmd == "generate":
        cmd_generate(args)
        return 0
    if args.cmd == "verify":
        return cmd_verify(args)
    return cmd_check_cli(args)


if __name__ == "__main__":
    sys.exit(main())
