//! The libtorch backend against the CPU engine: every op on random cases with edge values,
//! the demo model and the real MiniLM program op by op, each output's bytes equal. On the
//! CPU always; on CUDA as well where a GPU is present (skipped, saying so, where not).
//!
//! MiniLM needs `make models`: without it the test says so and passes, unless
//! `REQUIRE_MODELS=1`.
#![cfg(feature = "tch")]

use inference::demo::{self, SplitMix64};
use inference::model::{MANIFEST_FILE, Model, PROGRAM_FILE, WEIGHTS_FILE};
use inference::ops::{Op, RopePairing};
use inference::program::Program;
use inference::tch_backend::{self, Device, DeviceChoice, TchModel};
use inference::tensor::{DType, Tensor, TensorType};
use inference::trace::{Trace, Weights, run};
use std::path::Path;

/// The CPU, and CUDA device 0 where one is present. With `REQUIRE_CUDA` set (the GPU
/// check, `scripts/gpu-check.sh`) a missing device fails instead of being skipped.
fn devices() -> Vec<Device> {
    let mut d = vec![Device::Cpu];
    if tch_backend::cuda_available() {
        d.push(tch_backend::select_device(DeviceChoice::Cuda(0)).unwrap());
    } else {
        assert!(
            std::env::var_os("REQUIRE_CUDA").is_none(),
            "REQUIRE_CUDA is set but libtorch sees no CUDA device"
        );
        eprintln!("CUDA: skipped (no CUDA device visible to libtorch)");
    }
    d
}

#[path = "support/gen.rs"]
mod generator;
use generator::{ALL, Gen, make};

impl Gen {
    fn multiplier(&mut self) -> i32 {
        match self.below(4) {
            0 => self.range(1 << 30, i32::MAX as i64) as i32,
            1 => self.range(i32::MIN as i64, i32::MAX as i64) as i32,
            2 => i32::MIN,
            _ => self.range(-1000, 1000) as i32,
        }
    }
}

/// Counts of the cases run through the libtorch kernels and through the CPU fallback.
#[derive(Default)]
struct Tally {
    torch: usize,
    host: usize,
}

/// Runs `op` on the CPU engine and on every device through the backend, and requires the
/// same bytes (or an error from both).
fn agree(op: &Op, inputs: &[Tensor], out_dtype: DType, devices: &[Device], tally: &mut Tally) {
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let type_refs: Vec<&TensorType> = types.iter().collect();
    let out = op.infer(&type_refs, out_dtype).expect("a valid case");
    let out = if let Op::Reshape = op {
        TensorType::new(
            out.dtype,
            inputs[0].shape().iter().rev().cloned().collect::<Vec<_>>(),
        )
    } else {
        out
    };
    if tch_backend::runs_on_torch(op, &type_refs) {
        tally.torch += 1;
    } else {
        tally.host += 1;
    }
    let cpu = op.execute(&refs, &out, None);
    for &device in devices {
        let got = tch_backend::execute(op, &refs, &out, device);
        match (&cpu, &got) {
            (Ok(a), Ok(b)) => {
                if a != b {
                    let (x, y) = (a.to_i64_vec(), b.to_i64_vec());
                    let i = x.iter().zip(&y).position(|(p, q)| p != q);
                    panic!(
                        "{op:?} on {device:?}: element {i:?} differs: cpu {:?} tch {:?} (out {out}, inputs {:?})",
                        i.map(|i| x[i]),
                        i.map(|i| y[i]),
                        types
                    );
                }
                assert_eq!(a.to_le_bytes(), b.to_le_bytes());
            }
            (Err(_), Err(_)) => {}
            _ => panic!("{op:?} on {device:?}: cpu {cpu:?}, tch {got:?}"),
        }
    }
    if cpu.is_ok() {
        agree_batched(op, inputs, &out, devices);
    }
}

/// The first operand with its elements in reverse order: another input of the same type.
fn reversed(t: &Tensor) -> Tensor {
    let mut v = t.to_i64_vec();
    v.reverse();
    make(t.dtype(), t.shape(), v)
}

/// `op` through `TchModel::run_batch` with three first operands (the case's, reversed, and
/// the case's again) against the CPU engine on each.
fn agree_batched(op: &Op, inputs: &[Tensor], out: &TensorType, devices: &[Device]) {
    let firsts = vec![inputs[0].clone(), reversed(&inputs[0]), inputs[0].clone()];
    let rest: Vec<&Tensor> = inputs[1..].iter().collect();
    let Ok(want) = firsts
        .iter()
        .map(|f| {
            let refs: Vec<&Tensor> = std::iter::once(f).chain(rest.iter().copied()).collect();
            op.execute(&refs, out, None)
        })
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    for &device in devices {
        let got = tch_backend::execute_batch(op, &firsts, &rest, out, device)
            .unwrap_or_else(|e| panic!("{op:?} batched on {device:?}: {e}"));
        assert_eq!(got, want, "{op:?} batched on {device:?} (out {out})");
    }
}

/// Runs `body` on `cases` seeds and requires most cases to have used the libtorch kernels.
fn cases(name: &str, cases: u64, mut body: impl FnMut(&mut Gen, &[Device], &mut Tally)) {
    let devices = devices();
    let mut tally = Tally::default();
    for seed in 0..cases {
        let mut g = Gen(SplitMix64(seed.wrapping_mul(0x9E37_79B9) ^ 0x7C15));
        body(&mut g, &devices, &mut tally);
    }
    eprintln!(
        "{name}: {} cases on libtorch kernels, {} on the CPU fallback",
        tally.torch, tally.host
    );
    assert!(
        tally.torch * 2 > tally.torch + tally.host,
        "{name}: most cases must exercise the libtorch kernels"
    );
}

#[test]
fn fully_connected() {
    cases("fully_connected", 150, |g, d, t| {
        let (k, n) = (g.dim(70), g.dim(40));
        let mut xshape: Vec<usize> = (0..g.range(0, 2)).map(|_| g.dim(5)).collect();
        xshape.push(k);
        let x = g.tensor(DType::I8, &xshape);
        let w = g.tensor(DType::I8, &[n, k]);
        let bias = g.tensor(DType::I32, &[n]);
        let m = make(
            DType::I32,
            &[n],
            (0..n).map(|_| g.multiplier() as i64).collect(),
        );
        let s = make(DType::I32, &[n], (0..n).map(|_| g.shift() as i64).collect());
        let out = g.dtype(ALL);
        let op = Op::FullyConnected {
            x_zero_point: g.zp(DType::I8),
            y_zero_point: g.zp(out),
        };
        agree(&op, &[x, w, bias, m, s], out, d, t);
    });
}

#[test]
fn fully_connected_extremes() {
    // Every product at its extreme, long rows: the i32 accumulator near its range, and
    // (with a zero point) past it, where it wraps.
    let devices = devices();
    let mut t = Tally::default();
    for (xv, wv, k, zp) in [
        (-128i64, -128i64, 1536usize, 0),
        (127, -128, 1536, 0),
        (-128, -128, 4096, 127),
        (127, 127, 200_000, -128),
    ] {
        let n = 3;
        let x = make(DType::I8, &[2, k], vec![xv; 2 * k]);
        let w = make(DType::I8, &[n, k], vec![wv; n * k]);
        let bias = make(DType::I32, &[n], vec![i32::MAX as i64, 0, i32::MIN as i64]);
        let m = make(DType::I32, &[n], vec![1, i32::MIN as i64, i32::MAX as i64]);
        let s = make(DType::I32, &[n], vec![0, 31, 62]);
        let op = Op::FullyConnected {
            x_zero_point: zp,
            y_zero_point: 0,
        };
        agree(&op, &[x, w, bias, m, s], DType::I32, &devices, &mut t);
    }
}

#[test]
fn batch_matmul() {
    cases("batch_matmul", 150, |g, d, t| {
        let bb = g.nz_dim(3);
        let ba = bb * g.nz_dim(3);
        let (m, k, n) = (g.dim(9), g.dim(40), g.dim(20));
        let transpose_b = g.chance(50);
        let a = g.tensor(DType::I8, &[ba, m, k]);
        let b = g.tensor(
            DType::I8,
            &if transpose_b { [bb, n, k] } else { [bb, k, n] },
        );
        let out = g.dtype(ALL);
        let op = Op::BatchMatmul {
            transpose_b,
            a_zero_point: g.zp(DType::I8),
            b_zero_point: g.zp(DType::I8),
            multiplier: g.multiplier(),
            shift: g.shift(),
            y_zero_point: g.zp(out),
        };
        agree(&op, &[a, b], out, d, t);
    });
}

#[test]
fn add_mul_requantize_lut() {
    cases("add/mul/requantize/lut", 200, |g, d, t| {
        let shape: Vec<usize> = (0..g.range(0, 3)).map(|_| g.dim(7)).collect();
        // i8 and i16 operands more often: those always fit the i64 paths.
        let narrow = &[DType::I8, DType::I16, DType::I16, DType::I32];
        let (da, db, out) = (g.dtype(narrow), g.dtype(narrow), g.dtype(ALL));
        let a = g.tensor(da, &shape);
        let b = g.tensor(db, &shape);
        let add = Op::Add {
            a_zero_point: g.zp(da),
            a_multiplier: g.multiplier(),
            b_zero_point: g.zp(db),
            b_multiplier: g.multiplier(),
            shift: g.shift(),
            y_zero_point: g.zp(out),
        };
        agree(&add, &[a.clone(), b.clone()], out, d, t);
        let mul = Op::Mul {
            a_zero_point: g.zp(da),
            b_zero_point: g.zp(db),
            multiplier: g.multiplier(),
            shift: g.shift(),
            y_zero_point: g.zp(out),
        };
        agree(&mul, &[a.clone(), b], out, d, t);
        let req = Op::Requantize {
            x_zero_point: g.zp(da),
            multiplier: g.multiplier(),
            shift: g.shift(),
            y_zero_point: g.zp(out),
        };
        agree(&req, &[a], out, d, t);
        let x8 = g.tensor(DType::I8, &shape);
        let table = g.tensor(out, &[256]);
        agree(&Op::Lut, &[x8, table], out, d, t);
    });
}

#[test]
fn softmax() {
    cases("softmax", 200, |g, d, t| {
        let (l, m, n) = (g.nz_dim(4), g.dim(6), g.nz_dim(24));
        let dx = g.dtype(&[DType::I8, DType::I16]);
        let rank1 = g.chance(10);
        let x = if rank1 {
            g.tensor(dx, &[n])
        } else {
            g.tensor(dx, &[l, m, n])
        };
        let size = g.nz_dim(300);
        let table = make(
            DType::I32,
            &[size],
            (0..size)
                .map(|_| {
                    if g.chance(10) {
                        0
                    } else if g.chance(10) {
                        // Reads as 0.
                        g.range(i32::MIN as i64, -1)
                    } else {
                        g.range(0, i32::MAX as i64)
                    }
                })
                .collect(),
        );
        let out = g.dtype(ALL);
        let op = Op::Softmax {
            causal: g.chance(50),
            frac_bits: g.range(0, 30) as u32,
            y_zero_point: g.zp(out),
        };
        let mut inputs = vec![x, table];
        if !rank1 && g.chance(60) {
            let divisors: Vec<usize> = (1..=l).filter(|v| l % v == 0).collect();
            let gm = divisors[g.below(divisors.len() as u64) as usize];
            let dm = g.dtype(ALL);
            let mask = make(
                dm,
                &[gm, n],
                (0..gm * n)
                    .map(|_| if g.chance(70) { g.value(dm) | 1 } else { 0 })
                    .collect(),
            );
            inputs.push(mask);
        }
        agree(&op, &inputs, out, d, t);
        // Its two halves on the same operands, and the division on any i32 rows.
        let Op::Softmax {
            causal,
            frac_bits,
            y_zero_point,
        } = op
        else {
            unreachable!()
        };
        agree(&Op::SoftmaxExp { causal }, &inputs, DType::I32, d, t);
        let shape = inputs[0].shape().to_vec();
        let numel = shape.iter().product::<usize>();
        let e = make(
            DType::I32,
            &shape,
            (0..numel)
                .map(|_| {
                    if g.chance(20) {
                        0
                    } else if g.chance(10) {
                        g.range(i32::MIN as i64, -1)
                    } else {
                        g.range(0, i32::MAX as i64)
                    }
                })
                .collect(),
        );
        let norm = Op::SoftmaxNorm {
            frac_bits,
            y_zero_point,
        };
        agree(&norm, &[e], out, d, t);
    });
}

#[test]
fn norms() {
    cases("layer_norm/rms_norm", 200, |g, d, t| {
        let rows = g.dim(5);
        let n = g.nz_dim(40);
        let dx = g.dtype(ALL);
        let mut x = g.tensor(dx, &[rows, n]);
        if g.chance(10) {
            // Constant rows: sigma is zero without epsilon.
            x = make(dx, &[rows, n], vec![g.value(dx); rows * n]);
        }
        let gamma = g.tensor(DType::I32, &[n]);
        let beta = g.tensor(DType::I32, &[n]);
        let out = g.dtype(ALL);
        let epsilon = if g.chance(50) { 0 } else { g.below(1 << 40) };
        let shift = if g.chance(70) {
            g.range(0, 24) as u32
        } else {
            g.shift()
        };
        let op = Op::LayerNorm {
            epsilon,
            shift,
            y_zero_point: g.zp(out),
        };
        agree(&op, &[x.clone(), gamma.clone(), beta], out, d, t);
        let op = Op::RmsNorm {
            x_zero_point: g.zp(dx),
            epsilon,
            shift,
            y_zero_point: g.zp(out),
        };
        agree(&op, &[x, gamma], out, d, t);
    });
}

#[test]
fn norms_with_epsilon_near_the_bound() {
    // Epsilons at perfect squares and their neighbours up to the i64 paths' bound (the
    // integer square root exact where a float one alone is not), and past the bound,
    // where the op runs on the CPU engine.
    let mut eps: Vec<u64> = vec![0, 1, 2, 3, (1 << 62) - (1 << 21), u64::MAX];
    for r in [4_095u64, 1 << 20, (1 << 26) + 1, 94_906_265, 2_147_395_599] {
        eps.extend([r * r - 1, r * r, r * r + 1]);
    }
    let devices = devices();
    let mut t = Tally::default();
    for epsilon in eps {
        let x = make(DType::I8, &[2, 3], vec![5, -7, 9, 1, 1, 1]);
        let gamma = make(DType::I32, &[3], vec![i32::MAX as i64, -3, 1 << 20]);
        let beta = make(DType::I32, &[3], vec![7, i32::MIN as i64, 0]);
        for shift in [0, 12] {
            let op = Op::LayerNorm {
                epsilon,
                shift,
                y_zero_point: 0,
            };
            agree(
                &op,
                &[x.clone(), gamma.clone(), beta.clone()],
                DType::I32,
                &devices,
                &mut t,
            );
            let op = Op::RmsNorm {
                x_zero_point: 3,
                epsilon,
                shift,
                y_zero_point: 0,
            };
            agree(
                &op,
                &[x.clone(), gamma.clone()],
                DType::I32,
                &devices,
                &mut t,
            );
        }
    }
    // u64::MAX (both norms, both shifts) and layer_norm's `beta * sigma` past 2^62 at the
    // largest epsilon leave the i64 paths; everything else runs on the libtorch kernels.
    assert_eq!((t.torch, t.host), (78, 6));
}

#[test]
fn embedding_and_layout() {
    cases("embedding/layout", 150, |g, d, t| {
        let dt = g.dtype(ALL);
        let (v, dd) = (g.dim(12), g.dim(6));
        let table = g.tensor(dt, &[v, dd]);
        let ishape: Vec<usize> = (0..g.range(0, 2)).map(|_| g.dim(5)).collect();
        let ni: usize = ishape.iter().product();
        let idx = make(
            DType::I32,
            &ishape,
            (0..ni).map(|_| g.range(-2, v as i64 + 1)).collect(),
        );
        agree(&Op::Embedding, &[table, idx], dt, d, t);

        let rank = g.range(1, 4) as usize;
        let shape: Vec<usize> = (0..rank).map(|_| g.dim(5)).collect();
        let x = g.tensor(dt, &shape);
        let mut perm: Vec<usize> = (0..rank).collect();
        for i in (1..rank).rev() {
            perm.swap(i, g.below(i as u64 + 1) as usize);
        }
        agree(&Op::Transpose { perm }, std::slice::from_ref(&x), dt, d, t);
        agree(&Op::Reshape, std::slice::from_ref(&x), dt, d, t);
        let axis = g.below(rank as u64) as usize;
        let start = g.below(shape[axis] as u64 + 1) as usize;
        let end = start + g.below((shape[axis] - start) as u64 + 1) as usize;
        agree(
            &Op::Slice { axis, start, end },
            std::slice::from_ref(&x),
            dt,
            d,
            t,
        );
        let parts: Vec<Tensor> = (0..g.range(1, 3))
            .map(|_| {
                let mut s = shape.clone();
                s[axis] = g.dim(4);
                g.tensor(dt, &s)
            })
            .collect();
        agree(&Op::Concat { axis }, &parts, dt, d, t);
    });
}

#[test]
fn rope() {
    cases("rope", 150, |g, d, t| {
        let (h, s, dd) = (g.dim(3), g.dim(6), 2 * g.dim(8));
        let p = s + g.dim(4);
        let dx = g.dtype(&[DType::I8, DType::I16]);
        let x = g.tensor(dx, &[h, s, dd]);
        let cos = g.tensor(DType::I32, &[p, dd / 2]);
        let sin = g.tensor(DType::I32, &[p, dd / 2]);
        let out = g.dtype(&[DType::I8, DType::I16]);
        let op = Op::Rope {
            x_zero_point: g.zp(dx),
            y_zero_point: g.zp(out),
            position_offset: g.below((p - s) as u64 + 1) as u32,
            frac_bits: g.range(0, 30) as u32,
            pairing: if g.chance(50) {
                RopePairing::Half
            } else {
                RopePairing::Interleaved
            },
        };
        agree(&op, &[x, cos, sin], out, d, t);
    });
}

#[test]
fn mean_pool_and_argmax() {
    cases("mean_pool/argmax", 150, |g, d, t| {
        let (b, s, dd) = (g.dim(3), g.dim(8), g.dim(6));
        let dx = g.dtype(&[DType::I8, DType::I16, DType::I16, DType::I32]);
        let x = g.tensor(dx, &[b, dd, s]);
        let dm = g.dtype(ALL);
        let mask = make(
            dm,
            &[b, s],
            (0..b * s)
                .map(|_| if g.chance(60) { g.value(dm) } else { 0 })
                .collect(),
        );
        let out = g.dtype(ALL);
        let op = Op::MeanPool {
            x_zero_point: g.zp(dx),
            frac_bits: g.range(0, 30) as u32,
            y_zero_point: g.zp(out),
        };
        agree(&op, &[x, mask], out, d, t);
        let n = g.nz_dim(30);
        let rows = g.dim(5);
        // Few distinct values: ties for the maximum are common.
        let xa = make(
            dx,
            &[rows, n],
            (0..rows * n).map(|_| g.range(-2, 2)).collect(),
        );
        agree(&Op::Argmax, &[xa], DType::I32, d, t);
        let xb = g.tensor(dx, &[rows, n]);
        agree(&Op::Argmax, &[xb], DType::I32, d, t);
    });
}

/// Runs `program` on `input` with the CPU engine's trace and with the backend on every
/// device, and requires every slot's bytes to be equal, and the serving path's output too.
fn agree_op_by_op(name: &str, program: &Program, weights: &Weights, input: &Tensor) {
    let trace = Trace::execute(program, weights, input).unwrap();
    let expected = run(program, weights, input).unwrap();
    for device in devices() {
        let model = TchModel::new(program, weights, device).unwrap();
        assert!(
            model.host_ops().is_empty(),
            "{name}: ops {:?} left the libtorch kernels",
            model.host_ops()
        );
        let slots = model.run_all(input).unwrap();
        assert_eq!(slots.len(), trace.op_count() + 1);
        for (i, got) in slots.iter().enumerate() {
            let want = trace.tensor(i).unwrap();
            assert_eq!(
                got.to_le_bytes(),
                want.to_le_bytes(),
                "{name} on {device:?}: slot {i} ({}) differs",
                if i == 0 {
                    "input".to_string()
                } else {
                    program.ops[i - 1].op.kind().to_string()
                }
            );
            assert_eq!(got.ty(), want.ty());
        }
        assert_eq!(model.run(input).unwrap(), expected, "{name} on {device:?}");
        // In a batch with two other inputs (the input's ids reversed, and zeros), each
        // output equals that input's alone.
        let others = [reversed(input), Tensor::zeros(&input.ty()).unwrap()];
        let batch = vec![input.clone(), others[0].clone(), others[1].clone()];
        let mut want = vec![expected.clone()];
        for o in &others {
            want.push(run(program, weights, o).unwrap());
        }
        assert_eq!(
            model.run_batch(&batch).unwrap(),
            want,
            "{name} batched on {device:?}"
        );
        eprintln!("{name} on {device:?}: {} slots equal", trace.op_count() + 1);
    }
}

#[test]
fn demo_model_op_by_op() {
    let model = demo::model().unwrap();
    for text in [
        "hello world",
        "",
        "an optimistic rollup for exact integer inference",
    ] {
        let input = demo::input(&demo::tokens(text)).unwrap();
        agree_op_by_op("demo", model.program(), model.weights(), &input);
    }
}

#[test]
fn minilm_op_by_op() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = root.join("models/minilm");
    let buckets: Vec<_> = ["seq16", "seq128"]
        .iter()
        .map(|b| dir.join(b))
        .filter(|p| p.join(MANIFEST_FILE).is_file())
        .collect();
    if buckets.len() < 2 {
        if std::env::var("REQUIRE_MODELS").as_deref() == Ok("1") {
            panic!("models/minilm is missing: run `make models`");
        }
        eprintln!("skipped: models/minilm is not prepared (run `make models`)");
        return;
    }
    for bucket in buckets {
        let read = |n: &str| std::fs::read(bucket.join(n)).unwrap();
        let model = Model::from_bytes(
            &read(PROGRAM_FILE),
            &read(WEIGHTS_FILE),
            &read(MANIFEST_FILE),
        )
        .unwrap();
        let program = model.program();
        // Token ids and an attention mask: a real sentence's shape, some padding.
        let seq = program.input.shape[1];
        let mut g = Gen(SplitMix64(seq as u64));
        let len = (seq * 3 / 4).max(2);
        let mut v = vec![0i64; 2 * seq];
        v[0] = 101;
        for (i, slot) in v.iter_mut().enumerate().take(len - 1).skip(1) {
            *slot = g.range(1000, 29_000) + i as i64 % 3;
        }
        v[len - 1] = 102;
        for m in v.iter_mut().skip(seq).take(len) {
            *m = 1;
        }
        let input = make(DType::I32, &program.input.shape, v);
        agree_op_by_op(
            &format!("minilm {}", bucket.display()),
            program,
            model.weights(),
            &input,
        );
    }
}
