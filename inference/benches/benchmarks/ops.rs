//! Whole ops at the shapes of a MiniLM layer (sequence 128, hidden 384, 12 heads, FFN
//! 1536): the GEMM with its requantization epilogue, and the row-wise kernels around it.

use criterion::{Criterion, Throughput, criterion_group};
use inference::gemm::PackedMatrix;
use inference::ops::{Op, RopePairing};
use inference::tensor::{DType, Tensor, TensorType};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn tensor(dtype: DType, shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed;
    let v: Vec<i64> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 255) as i64 - 127
        })
        .collect();
    match dtype {
        DType::I8 => Tensor::from_i8(shape.to_vec(), v.into_iter().map(|x| x as i8).collect()),
        DType::I16 => Tensor::from_i16(
            shape.to_vec(),
            v.into_iter().map(|x| (x * 100) as i16).collect(),
        ),
        DType::I32 => Tensor::from_i32(shape.to_vec(), v.into_iter().map(|x| x as i32).collect()),
    }
    .unwrap()
}

fn i32s(shape: &[usize], value: i32) -> Tensor {
    Tensor::from_i32(shape.to_vec(), vec![value; shape.iter().product()]).unwrap()
}

fn bench(c: &mut Criterion, name: &str, op: Op, inputs: Vec<Tensor>, out: DType, ops_per_run: u64) {
    bench_packed(c, name, op, inputs, None, out, ops_per_run);
}

/// As [`bench`], with the weight of a `fully_connected` packed once (as the executor does).
fn bench_packed(
    c: &mut Criterion,
    name: &str,
    op: Op,
    inputs: Vec<Tensor>,
    packed: Option<&PackedMatrix>,
    out: DType,
    ops_per_run: u64,
) {
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let types: Vec<TensorType> = inputs.iter().map(Tensor::ty).collect();
    let ty = op.infer(&types.iter().collect::<Vec<_>>(), out).unwrap();
    let mut group = c.benchmark_group("ops");
    group.throughput(Throughput::Elements(ops_per_run));
    group.bench_function(name, |b| {
        // The whole loop inside the pool, as the executor runs a program: entering the
        // pool from outside costs a thread wake-up per call (several microseconds), which
        // the executor pays once per program, not once per op.
        b.iter_custom(|iters| {
            rayon::scope(|_| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(op.execute(black_box(&refs), &ty, packed).unwrap());
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

/// A packed `[n, k]` weight, as the executor keeps it.
fn packed(w: &Tensor) -> PackedMatrix {
    PackedMatrix::pack(w.as_i8("w").unwrap(), w.shape()[0], w.shape()[1])
}

fn bench_ops(c: &mut Criterion) {
    let (s, d, f, h) = (128usize, 384usize, 1536usize, 12usize);
    let fc = Op::FullyConnected {
        x_zero_point: 3,
        y_zero_point: -1,
    };
    let fc_inputs = |k: usize, n: usize| {
        vec![
            tensor(DType::I8, &[s, k], 1),
            tensor(DType::I8, &[n, k], 2),
            i32s(&[n], 100),
            i32s(&[n], 1 << 30),
            i32s(&[n], 40),
        ]
    };
    // The weights packed once, as the executor does; and once more packed on every call.
    for (k, n) in [(d, f), (f, d)] {
        let inputs = fc_inputs(k, n);
        let w = packed(&inputs[1]);
        let name = format!("fully_connected_{s}x{k}x{n}");
        let macs = (2 * s * d * f) as u64;
        bench_packed(c, &name, fc.clone(), inputs, Some(&w), DType::I8, macs);
    }
    bench(
        c,
        "fully_connected_128x384x1536_unpacked",
        fc,
        fc_inputs(d, f),
        DType::I8,
        (2 * s * d * f) as u64,
    );
    let bmm = Op::BatchMatmul {
        transpose_b: true,
        a_zero_point: 0,
        b_zero_point: 0,
        multiplier: 1 << 30,
        shift: 40,
        y_zero_point: 0,
    };
    bench(
        c,
        "batch_matmul_qk_12x128x32x128",
        bmm,
        vec![
            tensor(DType::I8, &[h, s, d / h], 3),
            tensor(DType::I8, &[h, s, d / h], 4),
        ],
        DType::I8,
        (2 * h * s * s * (d / h)) as u64,
    );
    let pv = Op::BatchMatmul {
        transpose_b: false,
        a_zero_point: -128,
        b_zero_point: 3,
        multiplier: 1 << 30,
        shift: 38,
        y_zero_point: 0,
    };
    bench(
        c,
        "batch_matmul_pv_12x128x128x32",
        pv,
        vec![
            tensor(DType::I8, &[h, s, s], 3),
            tensor(DType::I8, &[h, s, d / h], 4),
        ],
        DType::I8,
        (2 * h * s * s * (d / h)) as u64,
    );
    let exp = Tensor::from_i32(
        vec![256],
        (0..256)
            .map(|i| ((-(i as f64) / 16.0).exp() * 1e6) as i32)
            .collect(),
    )
    .unwrap();
    bench(
        c,
        "softmax_12x128x128",
        Op::Softmax {
            causal: false,
            frac_bits: 8,
            y_zero_point: -128,
        },
        vec![tensor(DType::I8, &[h, s, s], 5), exp, i32s(&[1, s], 1)],
        DType::I8,
        (h * s * s) as u64,
    );
    bench(
        c,
        "layer_norm_128x384_i16",
        Op::LayerNorm {
            epsilon: 1,
            shift: 10,
            y_zero_point: 0,
        },
        vec![
            tensor(DType::I16, &[s, d], 6),
            i32s(&[d], 30_000),
            i32s(&[d], 100),
        ],
        DType::I8,
        (s * d) as u64,
    );
    bench(
        c,
        "rms_norm_128x384_i16",
        Op::RmsNorm {
            x_zero_point: 0,
            epsilon: 1,
            shift: 10,
            y_zero_point: 0,
        },
        vec![tensor(DType::I16, &[s, d], 6), i32s(&[d], 30_000)],
        DType::I8,
        (s * d) as u64,
    );
    let gelu = Tensor::from_i8(
        vec![256],
        (0..256).map(|i| (i as i16 - 128).max(0) as i8).collect(),
    )
    .unwrap();
    bench(
        c,
        "lut_128x1536",
        Op::Lut,
        vec![tensor(DType::I8, &[s, f], 7), gelu],
        DType::I8,
        (s * f) as u64,
    );
    let add = Op::Add {
        a_zero_point: 0,
        a_multiplier: 1 << 20,
        b_zero_point: 0,
        b_multiplier: 1 << 20,
        shift: 20,
        y_zero_point: 0,
    };
    bench(
        c,
        "add_128x384_i16",
        add,
        vec![
            tensor(DType::I16, &[s, d], 8),
            tensor(DType::I16, &[s, d], 9),
        ],
        DType::I16,
        (s * d) as u64,
    );
    bench_pointwise(c, s, d, f, h);
    bench_layout(c, s, d, h);
}

/// The other element-wise ops and the reductions.
fn bench_pointwise(c: &mut Criterion, s: usize, d: usize, f: usize, h: usize) {
    let mul = Op::Mul {
        a_zero_point: 0,
        b_zero_point: 0,
        multiplier: 1 << 30,
        shift: 45,
        y_zero_point: 0,
    };
    bench(
        c,
        "mul_128x1536_i16",
        mul,
        vec![
            tensor(DType::I16, &[s, f], 10),
            tensor(DType::I16, &[s, f], 11),
        ],
        DType::I8,
        (s * f) as u64,
    );
    let requantize = Op::Requantize {
        x_zero_point: 0,
        multiplier: 1 << 30,
        shift: 38,
        y_zero_point: 0,
    };
    bench(
        c,
        "requantize_128x384_i16_to_i8",
        requantize,
        vec![tensor(DType::I16, &[s, d], 12)],
        DType::I8,
        (s * d) as u64,
    );
    let half = d / h / 2;
    let table = |seed| {
        let t = tensor(DType::I32, &[s, half], seed);
        let v: Vec<i32> = t.to_i64_vec().iter().map(|&x| x as i32 * 100).collect();
        Tensor::from_i32(vec![s, half], v).unwrap()
    };
    bench(
        c,
        "rope_12x128x32_i8",
        Op::Rope {
            x_zero_point: 0,
            y_zero_point: 0,
            position_offset: 0,
            frac_bits: 14,
            pairing: RopePairing::Half,
        },
        vec![tensor(DType::I8, &[h, s, d / h], 13), table(14), table(15)],
        DType::I8,
        (h * s * d / h) as u64,
    );
    let mask = Tensor::from_i32(vec![1, s], vec![1; s]).unwrap();
    bench(
        c,
        "mean_pool_1x384x128_i8",
        Op::MeanPool {
            x_zero_point: 0,
            frac_bits: 4,
            y_zero_point: 0,
        },
        vec![tensor(DType::I8, &[1, d, s], 16), mask],
        DType::I16,
        (s * d) as u64,
    );
    bench(
        c,
        "argmax_128x1536_i16",
        Op::Argmax,
        vec![tensor(DType::I16, &[s, f], 17)],
        DType::I32,
        (s * f) as u64,
    );
}

/// Data movement at the shapes of attention (heads split and merged).
fn bench_layout(c: &mut Criterion, s: usize, d: usize, h: usize) {
    let x = tensor(DType::I8, &[s, h, d / h], 18);
    bench(
        c,
        "transpose_128x12x32_102_i8",
        Op::Transpose {
            perm: vec![1, 0, 2],
        },
        vec![x.clone()],
        DType::I8,
        (s * d) as u64,
    );
    bench(
        c,
        "transpose_12x128x32_021_i8",
        Op::Transpose {
            perm: vec![0, 2, 1],
        },
        vec![tensor(DType::I8, &[h, s, d / h], 19)],
        DType::I8,
        (s * d) as u64,
    );
    bench(
        c,
        "concat_2x128x384_i8",
        Op::Concat { axis: 1 },
        vec![
            tensor(DType::I8, &[s, d], 20),
            tensor(DType::I8, &[s, d], 21),
        ],
        DType::I8,
        (2 * s * d) as u64,
    );
    bench(
        c,
        "slice_128x384_half_i8",
        Op::Slice {
            axis: 1,
            start: 0,
            end: d / 2,
        },
        vec![tensor(DType::I8, &[s, d], 22)],
        DType::I8,
        (s * d / 2) as u64,
    );
    let ids = Tensor::from_i32(vec![s], (0..s as i32).map(|i| i * 7 % 1000).collect()).unwrap();
    bench(
        c,
        "embedding_1000x384_128_i8",
        Op::Embedding,
        vec![tensor(DType::I8, &[1000, d], 23), ids],
        DType::I8,
        (s * d) as u64,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench_ops
}
