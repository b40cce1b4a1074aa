//! Commitments: the tensor hash of a MiniLM output (what a sequencer computes per request)
//! and the data root of a 1 MiB tensor, each on the hot path (`tensor_data_root`: no level
//! kept) and as a tree that keeps every level for proofs (`tensor_data_tree`); both hash
//! eight leaves or pairs at once where the CPU has AVX-512, and give the same root.

use criterion::{Criterion, Throughput, criterion_group};
use inference::commit::{tensor_data_root, tensor_data_tree, try_tensor_hash};
use inference::tensor::Tensor;
use std::hint::black_box;

fn commit(c: &mut Criterion) {
    let output = Tensor::from_i32(
        vec![1, 384],
        (0..384).map(|i| i * 7919 - 1_000_000).collect(),
    )
    .unwrap();
    let large = Tensor::from_i8(
        vec![1024, 1024],
        (0..1 << 20)
            .map(|i: i32| (i.wrapping_mul(31) % 251) as i8)
            .collect(),
    )
    .unwrap();
    assert_eq!(tensor_data_root(&large), tensor_data_tree(&large).root());
    let mut g = c.benchmark_group("commit");
    g.throughput(Throughput::Bytes(384 * 4));
    g.bench_function("tensor_hash_minilm_output", |b| {
        b.iter(|| try_tensor_hash(black_box(&output)).unwrap())
    });
    g.bench_function("tree_root_minilm_output", |b| {
        b.iter(|| tensor_data_tree(black_box(&output)).root())
    });
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function("data_root_1mib", |b| {
        b.iter(|| tensor_data_root(black_box(&large)))
    });
    g.bench_function("tree_root_1mib", |b| {
        b.iter(|| tensor_data_tree(black_box(&large)).root())
    });
    g.finish();
}

criterion_group!(benches, commit);
