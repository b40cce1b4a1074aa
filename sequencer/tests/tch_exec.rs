//! The libtorch executor (feature `tch`) against the CPU engine on the real MiniLM: the
//! executor `make_executor(Backend::Tch, ..)` gives (CUDA where present, else the CPU) and
//! the CPU engine give the same output bytes and tensor hashes for sentences of every
//! bucket, directly and through an `ExecutionPool` on several threads; bad inputs are
//! errors, not panics. Where a GPU is present the same checks run on CUDA explicitly and
//! on the CPU explicitly; where not, the test says it skipped the CUDA part.
//!
//! Needs `make models`: without it the test says so and passes, unless `REQUIRE_MODELS=1`.
#![cfg(feature = "tch")]

mod common;

use inference::model::Model;
use inference::tch_backend;
use inference::tensor::Tensor;
use sequencer::backend::{Backend, DeviceChoice, TchExecutor, make_executor};
use sequencer::db::tables::TensorRecord;
use sequencer::execution::{
    Completed, CpuExecutor, ExecutionError, ExecutionPool, Executor, Job, ModelInput,
    ModelRegistry, PreparedInput, tensor_record,
};
use std::collections::BTreeMap;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

const WORDS: &[&str] = &[
    "the",
    "sequencer",
    "commits",
    "every",
    "output",
    "in",
    "a",
    "claim",
    "and",
    "challengers",
    "re-execute",
    "disputed",
    "requests",
    "on",
    "their",
    "own",
    "machines",
    "before",
    "posting",
];

/// Sentences of 1 to 110 words: every bucket (16, 32, 64 and 128 tokens) gets several.
fn sentences() -> Vec<String> {
    (1..=110)
        .step_by(3)
        .map(|n| {
            (0..n)
                .map(|i| WORDS[(i * 7 + n) % WORDS.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Up to `per_bucket` prepared requests of each bucket, by sequence length.
fn requests(registry: &ModelRegistry, per_bucket: usize) -> BTreeMap<u32, Vec<PreparedInput>> {
    let mut by_bucket: BTreeMap<u32, Vec<PreparedInput>> = BTreeMap::new();
    for s in sentences() {
        let p = registry
            .prepare("minilm", ModelInput::Text(s), 1 << 20)
            .unwrap();
        let v = by_bucket.entry(p.record.seq_len).or_default();
        if v.len() < per_bucket {
            v.push(p);
        }
    }
    let family = &registry.families()[0];
    for b in &family.buckets {
        assert_eq!(
            by_bucket.get(&(b.seq_len as u32)).map(Vec::len),
            Some(per_bucket),
            "bucket seq{} has too few sentences",
            b.seq_len
        );
    }
    by_bucket
}

fn load() -> Option<ModelRegistry> {
    let dir = common::minilm_dir()?;
    Some(ModelRegistry::load(&[dir]).expect("loading models/minilm"))
}

fn cpu_record(p: &PreparedInput) -> TensorRecord {
    tensor_record(&CpuExecutor.run(&p.bucket, &p.tensor).unwrap()).unwrap()
}

/// `executor` and the CPU engine agree on a few sentences of every bucket, one at a time
/// and as one stacked batch per bucket.
fn check_direct(executor: &dyn Executor, registry: &ModelRegistry) {
    for (seq_len, reqs) in requests(registry, 3) {
        let inputs: Vec<&Tensor> = reqs.iter().map(|p| &p.tensor).collect();
        let batched = executor.run_batch(&reqs[0].bucket, &inputs);
        assert_eq!(batched.len(), reqs.len(), "seq{seq_len}");
        for (p, got) in reqs.iter().zip(batched) {
            let got = got.unwrap_or_else(|e| panic!("seq{seq_len} batched: {e}"));
            assert_eq!(
                tensor_record(&got).unwrap(),
                cpu_record(p),
                "seq{seq_len} batched"
            );
        }
        for p in reqs {
            let expected = cpu_record(&p);
            let got = executor
                .run(&p.bucket, &p.tensor)
                .unwrap_or_else(|e| panic!("seq{seq_len}: {e}"));
            let got = tensor_record(&got).unwrap();
            assert_eq!(got.shape, expected.shape, "seq{seq_len}");
            assert_eq!(got.dtype, expected.dtype, "seq{seq_len}");
            assert!(
                got.data == expected.data,
                "seq{seq_len}: output bytes differ"
            );
            assert_eq!(got.hash, expected.hash, "seq{seq_len}");
        }
    }
}

/// An executor passing everything to another, noting the largest stacked batch it ran.
struct Watched {
    inner: Arc<dyn Executor>,
    largest: std::sync::atomic::AtomicUsize,
}

impl Executor for Watched {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn run(&self, model: &Model, input: &Tensor) -> Result<Tensor, ExecutionError> {
        self.inner.run(model, input)
    }
    fn run_spread(&self, model: &Model, input: &Tensor) -> Result<Tensor, ExecutionError> {
        self.inner.run_spread(model, input)
    }
    fn default_stack(&self) -> usize {
        self.inner.default_stack()
    }
    fn run_batch(&self, model: &Model, inputs: &[&Tensor]) -> Vec<Result<Tensor, ExecutionError>> {
        self.largest
            .fetch_max(inputs.len(), std::sync::atomic::Ordering::SeqCst);
        self.inner.run_batch(model, inputs)
    }
}

/// The requests of every bucket through an `ExecutionPool` of `threads` workers on
/// `executor`: every job completes with the CPU engine's output, and queued jobs of one
/// bucket ran as stacked batches.
fn check_pool(executor: Arc<dyn Executor>, registry: &ModelRegistry, threads: usize) {
    let executor = Arc::new(Watched {
        inner: executor,
        largest: Default::default(),
    });
    let reqs: Vec<PreparedInput> = requests(registry, 4).into_values().flatten().collect();
    let expected: Vec<TensorRecord> = reqs.iter().map(cpu_record).collect();
    let (tx, rx) = mpsc::channel::<Completed>();
    let mut pool = ExecutionPool::start(
        executor.clone(),
        threads,
        4,
        0,
        Duration::from_millis(10),
        move |done| {
            for c in done {
                let _ = tx.send(c);
            }
        },
    )
    .unwrap();
    // Two rounds: the second runs on the copies the first one built.
    for round in 0..2u64 {
        for (i, p) in reqs.iter().enumerate() {
            pool.submit(Job {
                id: round * 1000 + i as u64,
                model: p.bucket.clone(),
                input: p.tensor.clone(),
                done: None,
                request: None,
            })
            .unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut seen = 0;
    while seen < 2 * reqs.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let c = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("{seen} of {} jobs done: {e}", 2 * reqs.len()));
        let i = (c.job.id % 1000) as usize;
        let got = c.result.unwrap_or_else(|e| panic!("job {}: {e}", c.job.id));
        assert_eq!(got, expected[i], "job {}", c.job.id);
        seen += 1;
    }
    pool.shutdown();
    assert_eq!(pool.depth(), 0);
    // 4 jobs run at once and the rest queue: workers take queued jobs of a bucket together.
    let largest = executor.largest.load(std::sync::atomic::Ordering::SeqCst);
    assert!(largest > 1, "no stacked batch ran (largest {largest})");
}

/// A wrong input is the executor's error (naming the backend), and the executor still
/// works afterwards.
fn check_bad_input(executor: &dyn Executor, registry: &ModelRegistry) {
    let family = &registry.families()[0];
    let model = &family.buckets[0].model;
    let wrong = Tensor::from_i8(vec![3], vec![1, 2, 3]).unwrap();
    let e = executor
        .run(model, &wrong)
        .expect_err("a wrong input is refused");
    assert_eq!(e.backend, "tch");
    assert!(!e.message.is_empty());
    let p = requests(registry, 1)
        .into_values()
        .next()
        .unwrap()
        .remove(0);
    let got = tensor_record(&executor.run(&p.bucket, &p.tensor).unwrap()).unwrap();
    assert_eq!(got, cpu_record(&p));
    // In a batch, the wrong input fails alone; the others get their outputs.
    let results = executor.run_batch(&p.bucket, &[&p.tensor, &wrong, &p.tensor]);
    assert_eq!(results.len(), 3);
    assert!(results[1].is_err(), "the wrong input of a batch is refused");
    for r in [&results[0], &results[2]] {
        let got = tensor_record(r.as_ref().expect("a good input of a batch")).unwrap();
        assert_eq!(got, cpu_record(&p));
    }
}

#[test]
fn make_executor_tch_matches_the_cpu_engine() {
    let Some(registry) = load() else { return };
    let executor = make_executor(Backend::Tch, 2).expect("the tch backend is built");
    assert_eq!(executor.backend(), "tch");
    check_direct(&*executor, &registry);
    check_bad_input(&*executor, &registry);
}

#[test]
fn execution_pool_on_tch_matches_the_cpu_engine() {
    let Some(registry) = load() else { return };
    let executor = Arc::new(TchExecutor::new(DeviceChoice::Cpu, 3).unwrap());
    assert_eq!(executor.default_stack(), 8);
    check_pool(executor.clone(), &registry, 3);
    let buckets = registry.families()[0].buckets.len();
    let copies = executor.cached_models();
    assert!(
        (buckets..=3 * buckets).contains(&copies),
        "{copies} model copies for 3 threads and {buckets} buckets"
    );
}

#[test]
fn cuda_matches_the_cpu_engine_where_present() {
    if !tch_backend::cuda_available() {
        // The GPU check (`scripts/gpu-check.sh`) sets REQUIRE_CUDA: no skipping there.
        assert!(
            std::env::var_os("REQUIRE_CUDA").is_none(),
            "REQUIRE_CUDA is set but libtorch sees no CUDA device"
        );
        eprintln!("CUDA: skipped (no CUDA device visible to libtorch)");
        let executor = TchExecutor::new(DeviceChoice::Auto, 2).unwrap();
        assert!(!executor.is_cuda());
        assert!(TchExecutor::new(DeviceChoice::Cuda(0), 2).is_err());
        return;
    }
    let Some(registry) = load() else { return };
    let executor = Arc::new(TchExecutor::new(DeviceChoice::Cuda(0), 2).unwrap());
    assert!(executor.is_cuda());
    check_direct(&*executor, &registry);
    check_bad_input(&*executor, &registry);
    check_pool(executor, &registry, 3);
    // `make_executor` picks the GPU by itself.
    let auto = TchExecutor::new(DeviceChoice::Auto, 2).unwrap();
    assert_eq!(auto.device_name(), "cuda:0");
}
