//! Benchmarks of the `inference` crate, laid out as candle's: this entry point, and one
//! module per area under `benchmarks/` (a folder, so cargo does not take each file for a
//! bench target of its own). Run: `cargo bench -p inference --bench bench_main [-- FILTER]`.

mod benchmarks;

criterion::criterion_main!(
    benchmarks::commit::benches,
    benchmarks::gemm::benches,
    benchmarks::ops::benches
);
