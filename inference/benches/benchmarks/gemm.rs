//! The int8 matrix product at transformer shapes, on every path this CPU runs.
//!
//! `gemm/<path>/<shape>` calls the product from inside the rayon pool, as an engine that
//! runs its program in the pool does; `gemm_outside_pool/<path>/<shape>` calls it from the
//! main thread, which must wake a sleeping worker for each parallel product. Criterion's
//! elements/s is ops/s (`2·m·n·k` per product); a GOPS table over the same runs is printed
//! at the end.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, measurement::WallTime,
};
use inference::gemm::{KernelPath, PackedMatrix, matmul_with};

/// `(m, k, n)`: prefill MLP up and down projections, a prefill attention projection, one
/// thread's row block of a short sentence's MLP up projection (9 of 18 tokens), a decode
/// MLP projection and a decode vocabulary projection.
const SHAPES: [(usize, usize, usize); 6] = [
    (128, 384, 1536),
    (9, 384, 1536),
    (128, 1536, 384),
    (128, 384, 384),
    (1, 576, 1536),
    (1, 576, 49152),
];

/// Deterministic pseudo-random bytes (xorshift).
fn bytes(len: usize, seed: u64) -> Vec<i8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as i8
        })
        .collect()
}

/// One shape's operands.
struct Operands {
    m: usize,
    x: Vec<i8>,
    w: PackedMatrix,
    out: Vec<i32>,
}

impl Operands {
    fn new((m, k, n): (usize, usize, usize)) -> Self {
        Self {
            m,
            x: bytes(m * k, 1),
            w: PackedMatrix::pack(&bytes(n * k, 2), n, k),
            out: vec![0; m * n],
        }
    }

    /// Times `iters` products on `path`.
    fn time(&mut self, path: KernelPath, iters: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            matmul_with(
                path,
                black_box(&self.x),
                self.m,
                &self.w,
                black_box(&mut self.out),
            );
        }
        start.elapsed()
    }
}

/// Benchmarks `path` on `shape` and returns a GOPS line over every timed iteration
/// (warm-up included), or `None` if criterion's filter skipped it.
fn bench_one(
    group: &mut BenchmarkGroup<'_, WallTime>,
    operands: &mut Operands,
    (m, k, n): (usize, usize, usize),
    path: KernelPath,
    in_pool: bool,
) -> Option<String> {
    let (mut elapsed, mut runs) = (Duration::ZERO, 0u64);
    let id = BenchmarkId::new(path.name(), format!("m{m}_k{k}_n{n}"));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let took = if in_pool {
                rayon::scope(|_| operands.time(path, iters))
            } else {
                operands.time(path, iters)
            };
            (elapsed, runs) = (elapsed + took, runs + iters);
            took
        })
    });
    (runs > 0).then(|| {
        let seconds = elapsed.as_secs_f64() / runs as f64;
        let ops = (2 * m * n * k) as f64;
        format!(
            "{:<18} m={m:<4} k={k:<5} n={n:<6} {:<12} {:>9.1} us {:>8.1} GOPS",
            group_name(in_pool),
            path.name(),
            seconds * 1e6,
            ops / seconds / 1e9
        )
    })
}

fn group_name(in_pool: bool) -> &'static str {
    if in_pool { "gemm" } else { "gemm_outside_pool" }
}

fn bench_gemm(c: &mut Criterion) {
    let mut table = Vec::new();
    for in_pool in [true, false] {
        let mut group = c.benchmark_group(group_name(in_pool));
        for shape in SHAPES {
            let mut operands = Operands::new(shape);
            let (m, k, n) = shape;
            group.throughput(Throughput::Elements((2 * m * n * k) as u64));
            let paths = if in_pool {
                KernelPath::available()
            } else {
                vec![KernelPath::detect()]
            };
            for path in paths {
                table.extend(bench_one(&mut group, &mut operands, shape, path, in_pool));
            }
        }
        group.finish();
    }
    if !table.is_empty() {
        println!(
            "\nGOPS (2·m·n·k per product), {} rayon threads:",
            rayon::current_num_threads()
        );
        for line in table {
            println!("{line}");
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench_gemm
}
