//! The execution pool's stacked groups, on the real CPU engine and the demo model: while a
//! worker is busy, queued jobs of one model are taken together (up to the pool's stack, in
//! their order, jobs of another model keeping their places), and every job's output is the
//! engine's output for its own input; finished results gather for one commit while the
//! queue is long, and are stored once it runs low.

use inference::demo;
use inference::merkle::H256;
use inference::model::Model;
use inference::tensor::{Tensor, TensorData};
use sequencer::execution::{
    Completed, CpuExecutor, ExecutionError, ExecutionPool, Executor, Job, tensor_record,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Holds the first run that reaches it until the test opens it (the sender `new` returns).
struct Gate(Mutex<Option<mpsc::Receiver<()>>>);

impl Gate {
    fn new() -> (mpsc::Sender<()>, Self) {
        let (open, gate) = mpsc::channel();
        (open, Self(Mutex::new(Some(gate))))
    }

    /// Waits for the test if this is the first run to get here; whether it was.
    fn pass(&self) -> bool {
        let gate = self.0.lock().unwrap().take();
        let first = gate.is_some();
        if let Some(rx) = gate {
            rx.recv_timeout(Duration::from_secs(60))
                .expect("the test opens the gate");
        }
        first
    }

    /// Whether a run has reached it.
    fn reached(&self) -> bool {
        self.0.lock().unwrap().is_none()
    }
}

/// A pool whose sink forwards each stored result, in order, to the returned receiver.
fn forwarding_pool(
    executor: Arc<dyn Executor>,
    threads: usize,
    max_batch: usize,
    stack: usize,
) -> (ExecutionPool, mpsc::Receiver<Completed>) {
    let (tx, rx) = mpsc::channel::<Completed>();
    let pool = ExecutionPool::start(
        executor,
        threads,
        max_batch,
        stack,
        Duration::ZERO,
        move |done| {
            for c in done {
                let _ = tx.send(c);
            }
        },
    )
    .unwrap();
    (pool, rx)
}

/// Job `id`: `model` on the demo input of `text`.
fn job(id: u64, model: &Arc<Model>, text: &str) -> Job {
    Job {
        id,
        model: model.clone(),
        input: demo::input(&demo::tokens(text)).unwrap(),
        done: None,
        request: None,
    }
}

/// The CPU engine, recording each group it is given (model id and size) and
/// holding its first run until the test lets it go, so that jobs queue up behind it.
struct Recording {
    inner: CpuExecutor,
    groups: Mutex<Vec<(H256, usize)>>,
    gate: Gate,
}

impl Executor for Recording {
    fn backend(&self) -> &'static str {
        "cpu"
    }

    fn run(&self, model: &Model, input: &Tensor) -> Result<Tensor, ExecutionError> {
        self.gate.pass();
        self.groups.lock().unwrap().push((model.id(), 1));
        self.inner.run(model, input)
    }

    fn default_stack(&self) -> usize {
        4
    }

    fn run_batch(&self, model: &Model, inputs: &[&Tensor]) -> Vec<Result<Tensor, ExecutionError>> {
        self.groups.lock().unwrap().push((model.id(), inputs.len()));
        inputs.iter().map(|i| self.inner.run(model, i)).collect()
    }
}

/// The demo model with one weight element changed: another model id, same program.
fn other_model(model: &Model) -> Model {
    let mut tensors = model.weights().tensors().to_vec();
    match tensors[0].data_mut() {
        TensorData::I8(v) => v[0] = v[0].wrapping_add(1),
        TensorData::I16(v) => v[0] = v[0].wrapping_add(1),
        TensorData::I32(v) => v[0] = v[0].wrapping_add(1),
    }
    let named = model
        .manifest()
        .weight_names
        .iter()
        .cloned()
        .zip(tensors)
        .collect();
    Model::new(
        "demo-other",
        model.program().clone(),
        named,
        BTreeMap::new(),
    )
    .unwrap()
}

#[test]
fn queued_jobs_of_one_model_run_as_stacked_groups_in_order() {
    stacked_groups_in_order(1);
}

/// A `max_batch` above the pool's threads starts no more jobs than there are threads: the
/// rest wait in the pool's queue, where they are stacked, not alone in rayon's.
#[test]
fn max_batch_above_the_threads_still_stacks_queued_jobs() {
    stacked_groups_in_order(8);
}

/// One worker thread, `max_batch` as given, the executor's stack (4).
fn stacked_groups_in_order(max_batch: usize) {
    let a = Arc::new(demo::model().unwrap());
    let b = Arc::new(other_model(&a));
    assert_ne!(a.id(), b.id());
    let (open, gate) = Gate::new();
    let executor = Arc::new(Recording {
        inner: CpuExecutor,
        groups: Mutex::new(Vec::new()),
        gate,
    });
    let (mut pool, rx) = forwarding_pool(executor.clone(), 1, max_batch, 0);
    // Job 0 (model a) starts and waits at the gate; jobs 1..=11 queue: a, a, b, a, ...
    let texts: Vec<String> = (0..12).map(|i| format!("sentence number {i}")).collect();
    let model_of = |i: usize| if i % 3 == 2 { b.clone() } else { a.clone() };
    for (i, text) in texts.iter().enumerate() {
        pool.submit(job(i as u64, &model_of(i), text)).unwrap();
    }
    open.send(()).unwrap();
    let mut order = Vec::new();
    for _ in 0..texts.len() {
        let c = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        let i = c.job.id as usize;
        let m = model_of(i);
        let expected = inference::trace::run(m.program(), m.weights(), &c.job.input).unwrap();
        assert_eq!(
            c.result.unwrap(),
            tensor_record(&expected).unwrap(),
            "job {i}: its own output"
        );
        order.push(i);
    }
    pool.shutdown();

    let groups = executor.groups.lock().unwrap().clone();
    let sizes: Vec<(bool, usize)> = groups.iter().map(|(id, n)| (*id == a.id(), *n)).collect();
    // Job 0 alone; then, from the queue 1 2 3 ... 11 (b: 2 5 8 11, a: the others), four of
    // the front job's model at a time: a 1 3 4 6, b 2 5 8 11, a 7 9 10.
    assert_eq!(
        sizes,
        vec![(true, 1), (true, 4), (false, 4), (true, 3)],
        "groups (model a?, size)"
    );
    // Stored in the order they ran: each model's jobs in their submission order.
    assert_eq!(order, vec![0, 1, 3, 4, 6, 2, 5, 8, 11, 7, 9, 10]);
}

/// With a gathering limit of a minute, finished results are still stored within moments:
/// the storing thread gathers only while more than one round of jobs is queued. Meanwhile
/// it does gather: the first commit holds every job finished before the queue ran low.
#[test]
fn results_gather_while_the_queue_is_long_and_are_stored_when_it_runs_low() {
    let model = Arc::new(demo::model().unwrap());
    let (open, gate) = Gate::new();
    let executor = Arc::new(Recording {
        inner: CpuExecutor,
        groups: Mutex::new(Vec::new()),
        gate,
    });
    let (tx, rx) = mpsc::channel::<(usize, Completed)>();
    // One thread, one job at a time, no stacking: one round of work is one job.
    let mut pool = ExecutionPool::start(
        executor.clone(),
        1,
        1,
        1,
        Duration::from_secs(60),
        move |done| {
            let n = done.len();
            for c in done {
                let _ = tx.send((n, c));
            }
        },
    )
    .unwrap();
    // Job 0 waits at the gate with jobs 1..=5 queued behind it.
    for i in 0..6u64 {
        pool.submit(job(i, &model, &format!("sentence number {i}")))
            .unwrap();
    }
    open.send(()).unwrap();
    let mut commits = Vec::new();
    let mut stored = 0;
    while stored < 6 {
        let (n, first) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("stored long before the gathering limit");
        assert_eq!(
            first.job.id as usize, stored,
            "stored in the order they ran"
        );
        for k in 1..n {
            let (_, c) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(c.job.id as usize, stored + k);
        }
        commits.push(n);
        stored += n;
    }
    pool.shutdown();
    // The storing thread took job 0's result with four or five jobs queued and waited until
    // the worker, taking job 4, left one: jobs 0-3 (and 4, if it had finished) in one commit.
    assert!(commits[0] >= 4, "first commit gathered: {commits:?}");
}

/// The CPU engine, spreading: the first job (run alone, so spread) waits at a gate; every
/// other run, spread or not, records whether that job had ended when it started.
struct Spreading {
    inner: CpuExecutor,
    gate: Gate,
    spread_ended: std::sync::atomic::AtomicBool,
    started_after_spread: Mutex<Vec<bool>>,
}

impl Spreading {
    fn record_start(&self) {
        let ended = self.spread_ended.load(std::sync::atomic::Ordering::SeqCst);
        self.started_after_spread.lock().unwrap().push(ended);
    }
}

impl Executor for Spreading {
    fn backend(&self) -> &'static str {
        "cpu"
    }

    fn run(&self, model: &Model, input: &Tensor) -> Result<Tensor, ExecutionError> {
        self.record_start();
        self.inner.run(model, input)
    }

    fn run_spread(&self, model: &Model, input: &Tensor) -> Result<Tensor, ExecutionError> {
        if !self.gate.pass() {
            // A later job that found itself alone (its worker started late, the others
            // done) spreads too; it must also start after the first.
            self.record_start();
        }
        let out = self.inner.run_spread(model, input);
        self.spread_ended
            .store(true, std::sync::atomic::Ordering::SeqCst);
        out
    }

    fn spreads(&self) -> bool {
        true
    }
}

/// While a job spreads over the workers, no other job is handed to them (a worker waiting
/// in the spread job's kernels would take it and run it nested while the other idled): the
/// jobs submitted meanwhile start after it, on both workers, each with its own output.
#[test]
fn no_job_starts_beside_a_spreading_one() {
    let model = Arc::new(demo::model().unwrap());
    let (open, gate) = Gate::new();
    let executor = Arc::new(Spreading {
        inner: CpuExecutor,
        gate,
        spread_ended: Default::default(),
        started_after_spread: Mutex::new(Vec::new()),
    });
    let (mut pool, rx) = forwarding_pool(executor.clone(), 2, 2, 1);
    let sentence = |i: u64| job(i, &model, &format!("sentence number {i}"));
    pool.submit(sentence(0)).unwrap();
    // Job 0 is alone, so it spreads (and waits at the gate): wait until it is running.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !executor.gate.reached() {
        assert!(std::time::Instant::now() < deadline, "job 0 never started");
        std::thread::yield_now();
    }
    for i in 1..=4 {
        pool.submit(sentence(i)).unwrap();
    }
    open.send(()).unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let c = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        let expected =
            inference::trace::run(model.program(), model.weights(), &c.job.input).unwrap();
        assert_eq!(c.result.unwrap(), tensor_record(&expected).unwrap());
        seen.push(c.job.id);
    }
    pool.shutdown();
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    let after = executor.started_after_spread.lock().unwrap().clone();
    assert_eq!(
        after,
        vec![true; 4],
        "each other job started after the spread one"
    );
}
