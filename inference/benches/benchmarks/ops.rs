//! Whole ops at the shapes of a MiniLM layer (sequence 128, hidden 384, 12 heads, FFN
//! 1536): the GEMM with its requantization epilogue, and the row-wise kernels around it.

use criterion::{Criterion, Throughput, criterion_group};
use inference::ops::Op;
use inference::tensor::{DType, Tensor, TensorType};
use std::hint::black_box;
use std::time::Duration;

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
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let types: Vec<TensorType> = inputs.iter().map(Tensor::ty).collect();
    let ty = op.infer(&types.iter().collect::<Vec<_>>(), out).unwrap();
    let mut group = c.benchmark_group("ops");
    group.throughput(Throughput::Elements(ops_per_run));
    group.bench_function(name, |b| {
        // Inside the pool, as the executor runs kernels.
        b.iter(|| rayon::scope(|_| op.execute(black_box(&refs), &ty, None).unwrap()))
    });
    group.finish();
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
    // The weights are packed on every call here; the executor packs them once per model.
    bench(
        c,
        "fully_connected_128x384x1536",
        fc.clone(),
        fc_inputs(d, f),
        DType::I8,
        (2 * s * d * f) as u64,
    );
    bench(
        c,
        "fully_connected_128x1536x384",
        fc,
        fc_inputs(f, d),
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
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench_ops
}
