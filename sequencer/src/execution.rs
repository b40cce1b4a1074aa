//! Execution: the models this sequencer serves ([`ModelRegistry`]), the backend that runs a
//! program ([`Executor`]) and the worker pool that runs requests apart from the async
//! runtime ([`ExecutionPool`]), so the HTTP side stays responsive under load.

use crate::db::tables::{InputRecord, TensorRecord};
use inference::commit::TensorHashMemo;
use inference::import::bert::{self, FAMILY_FILE, Family};
use inference::merkle::H256;
use inference::model::{MANIFEST_FILE, Model, PROGRAM_FILE, WEIGHTS_FILE};
use inference::tensor::Tensor;
use inference::tokenize::TextTokenizer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The tokenizer file inside each bucket directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Loading a model directory failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file was malformed, or a model's id did not match its manifest.
    #[error("{path}: {source}")]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// What was wrong.
        source: inference::Error,
    },
    /// A bucket's model id differs from the family index.
    #[error("{dir}: model id {found}, the family index says {expected}")]
    IdMismatch {
        /// The bucket directory.
        dir: PathBuf,
        /// The id computed from the files.
        found: H256,
        /// The id in the index.
        expected: H256,
    },
    /// No model directory was given.
    #[error("no model directory given (--model.dir)")]
    NoModels,
}

/// A request's input could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The model is not served here.
    #[error("unknown model {0:?}: use a served model's name or one of its model ids")]
    UnknownModel(String),
    /// The text or the token list is empty.
    #[error("the input is empty")]
    Empty,
    /// The text is longer than the limit.
    #[error("the text has {bytes} bytes, the limit is {max}")]
    TextTooLong {
        /// Bytes given.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// More token ids than the model (or the named bucket) takes.
    #[error("{tokens} tokens, the model takes at most {max}")]
    TooManyTokens {
        /// Tokens given.
        tokens: usize,
        /// The limit.
        max: usize,
    },
    /// The tokenizer failed.
    #[error("tokenizing: {0}")]
    Tokenize(String),
}

/// Running a program failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{backend} backend: {message}")]
pub struct ExecutionError {
    /// The backend.
    pub backend: &'static str,
    /// What went wrong.
    pub message: String,
}

/// A backend that runs a program on an input: the CPU reference engine, or (behind a
/// feature) libtorch. Every backend gives the same bits.
pub trait Executor: Send + Sync + 'static {
    /// The backend's name (for logs and metrics).
    fn backend(&self) -> &'static str;

    /// Runs `model` on `input` and returns the output tensor.
    fn run(&self, model: &Model, input: &Tensor) -> Result<Tensor, ExecutionError>;

    /// [`Executor::run`] for a job that has the worker pool to itself for now: the backend
    /// may spread its ops over the idle workers (lower latency at light load). The same
    /// output; by default, [`Executor::run`].
    fn run_spread(&self, model: &Model, input: &Tensor) -> Result<Tensor, ExecutionError> {
        self.run(model, input)
    }

    /// Whether [`Executor::run_spread`] spreads a job over the workers (so that the pool
    /// starts no other job beside it). By default, no.
    fn spreads(&self) -> bool {
        false
    }

    /// How many queued requests of one model a worker should run as one stacked batch
    /// ([`Executor::run_batch`]) by default: 1 for a backend without a batched path.
    fn default_stack(&self) -> usize {
        1
    }

    /// Runs `model` on every input, as one batch where the backend can (each output bit for
    /// bit what [`Executor::run`] gives); one result per input, in order. By default, one
    /// [`Executor::run`] after the other.
    fn run_batch(&self, model: &Model, inputs: &[&Tensor]) -> Vec<Result<Tensor, ExecutionError>> {
        inputs.iter().map(|i| self.run(model, i)).collect()
    }
}

/// The pure-Rust CPU engine of the `inference` crate (weights pre-packed at load time).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuExecutor;

impl Executor for CpuExecutor {
    fn backend(&self) -> &'static str {
        "cpu"
    }

    fn run(&self, model: &Model, input: &Tensor) -> Result<Tensor, ExecutionError> {
        inference::trace::run(model.program(), model.weights(), input).map_err(cpu_error)
    }

    fn run_spread(&self, model: &Model, input: &Tensor) -> Result<Tensor, ExecutionError> {
        inference::trace::run_spread(model.program(), model.weights(), input).map_err(cpu_error)
    }

    fn spreads(&self) -> bool {
        true
    }
}

fn cpu_error(e: inference::Error) -> ExecutionError {
    ExecutionError {
        backend: "cpu",
        message: e.to_string(),
    }
}

/// The stored form of a tensor, with its tensor hash.
pub fn tensor_record(t: &Tensor) -> Result<TensorRecord, inference::Error> {
    Ok(TensorRecord {
        dtype: t.dtype(),
        shape: t.shape().iter().map(|&d| d as u32).collect(),
        data: t.to_le_bytes(),
        hash: inference::commit::try_tensor_hash(t)?,
    })
}

/// One sequence length of a family.
#[derive(Debug)]
pub struct LoadedBucket {
    /// Tokens per input.
    pub seq_len: usize,
    /// The model.
    pub model: Arc<Model>,
}

/// An encoder family (one model per sequence length) and its tokenizer.
pub struct ModelFamily {
    /// The source model's name (e.g. `all-MiniLM-L6-v2`).
    pub name: String,
    /// The directory's name (e.g. `minilm`), accepted as a name too.
    pub alias: String,
    /// The buckets, shortest first.
    pub buckets: Vec<LoadedBucket>,
    /// The tokenizer.
    tokenizer: TextTokenizer,
    index: Family,
}

impl std::fmt::Debug for ModelFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFamily")
            .field("name", &self.name)
            .field("alias", &self.alias)
            .field("buckets", &self.buckets.len())
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Loads one model directory ([`PROGRAM_FILE`], [`WEIGHTS_FILE`], [`MANIFEST_FILE`]).
pub fn load_model(dir: &Path) -> Result<Model, ModelError> {
    read_model(dir, None)
}

/// [`load_model`] for one of several models sharing weights: tensors `memo` has hashed
/// before are not hashed again.
pub fn load_model_memo(dir: &Path, memo: &mut TensorHashMemo) -> Result<Model, ModelError> {
    read_model(dir, Some(memo))
}

fn read_model(dir: &Path, memo: Option<&mut TensorHashMemo>) -> Result<Model, ModelError> {
    let (program, weights, manifest) = (
        read(&dir.join(PROGRAM_FILE))?,
        read(&dir.join(WEIGHTS_FILE))?,
        read(&dir.join(MANIFEST_FILE))?,
    );
    match memo {
        Some(memo) => Model::from_bytes_memo(&program, &weights, &manifest, memo),
        None => Model::from_bytes(&program, &weights, &manifest),
    }
    .map_err(|source| ModelError::Invalid {
        path: dir.to_owned(),
        source,
    })
}

impl ModelFamily {
    /// Loads an encoder family directory (from `inference model prepare minilm`).
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let index_path = dir.join(FAMILY_FILE);
        let index =
            Family::from_json(&read(&index_path)?).map_err(|source| ModelError::Invalid {
                path: index_path.clone(),
                source,
            })?;
        let mut buckets = Vec::with_capacity(index.buckets.len());
        let mut memo = TensorHashMemo::new();
        for b in &index.buckets {
            let bucket_dir = dir.join(&b.dir);
            let model = load_model_memo(&bucket_dir, &mut memo)?;
            if model.id() != b.model_id {
                return Err(ModelError::IdMismatch {
                    dir: bucket_dir,
                    found: model.id(),
                    expected: b.model_id,
                });
            }
            buckets.push(LoadedBucket {
                seq_len: b.seq_len,
                model: Arc::new(model),
            });
        }
        let tok_path = dir.join(&index.buckets[0].dir).join(TOKENIZER_FILE);
        let tokenizer =
            TextTokenizer::from_json(&read(&tok_path)?, index.max_seq_len()).map_err(|source| {
                ModelError::Invalid {
                    path: tok_path,
                    source,
                }
            })?;
        let alias = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        Ok(Self {
            name: index.model.clone(),
            alias,
            buckets,
            tokenizer,
            index,
        })
    }

    /// The longest sequence length.
    pub fn max_seq_len(&self) -> usize {
        self.index.max_seq_len()
    }

    /// The bucket whose model id is `id`.
    pub fn bucket_by_id(&self, id: &H256) -> Option<usize> {
        self.buckets.iter().position(|b| b.model.id() == *id)
    }

    /// Token ids of `text` (special tokens included, truncated to the longest bucket), as
    /// `inference embed` computes them.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, InputError> {
        self.tokenizer
            .encode(text)
            .map_err(|e| InputError::Tokenize(e.to_string()))
    }
}

/// What a request asks to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelInput {
    /// Text, tokenized with the model's tokenizer.
    Text(String),
    /// Token ids given directly (special tokens included).
    Tokens(Vec<u32>),
}

/// A request resolved to a bucket and a program input.
#[derive(Clone, Debug)]
pub struct PreparedInput {
    /// The family's name.
    pub model: String,
    /// The bucket's model.
    pub bucket: Arc<Model>,
    /// The program input tensor.
    pub tensor: Tensor,
    /// The stored form of the input.
    pub record: InputRecord,
}

/// The models served, by name and model id.
#[derive(Debug, Default)]
pub struct ModelRegistry {
    families: Vec<ModelFamily>,
}

impl ModelRegistry {
    /// Loads every family directory.
    pub fn load(dirs: &[PathBuf]) -> Result<Self, ModelError> {
        if dirs.is_empty() {
            return Err(ModelError::NoModels);
        }
        let families = dirs
            .iter()
            .map(|d| ModelFamily::load(d))
            .collect::<Result<_, _>>()?;
        Ok(Self { families })
    }

    /// The families served.
    pub fn families(&self) -> &[ModelFamily] {
        &self.families
    }

    /// Resolves a model reference (a family's name or alias, or a bucket's model id in
    /// hex) to the family and, for an id, the bucket it names.
    fn resolve(&self, model: &str) -> Result<(&ModelFamily, Option<usize>), InputError> {
        // Only what looks like an id is parsed as one (a failed parse formats an error).
        let id = (model.len() == 66 && (model.starts_with("0x") || model.starts_with("0X")))
            .then(|| model.parse::<H256>().ok())
            .flatten();
        if let Some(id) = id {
            for f in &self.families {
                if let Some(b) = f.bucket_by_id(&id) {
                    return Ok((f, Some(b)));
                }
            }
        }
        self.families
            .iter()
            .find(|f| f.name == model || f.alias == model)
            .map(|f| (f, None))
            .ok_or_else(|| InputError::UnknownModel(model.to_string()))
    }

    /// Checks and tokenizes an input and builds the program input, choosing the shortest
    /// bucket that holds it (or the bucket the model id names).
    pub fn prepare(
        &self,
        model: &str,
        input: ModelInput,
        max_text_bytes: usize,
    ) -> Result<PreparedInput, InputError> {
        let (family, named_bucket) = self.resolve(model)?;
        let (text, tokens) = match input {
            ModelInput::Text(text) => {
                if text.trim().is_empty() {
                    return Err(InputError::Empty);
                }
                if text.len() > max_text_bytes {
                    return Err(InputError::TextTooLong {
                        bytes: text.len(),
                        max: max_text_bytes,
                    });
                }
                let tokens = family.tokenize(&text)?;
                (Some(text), tokens)
            }
            ModelInput::Tokens(tokens) => (None, tokens),
        };
        if tokens.is_empty() {
            return Err(InputError::Empty);
        }
        let bucket = match named_bucket {
            Some(b) => b,
            None => family.index.bucket_for(tokens.len()),
        };
        let seq_len = family.buckets[bucket].seq_len;
        if tokens.len() > seq_len {
            return Err(InputError::TooManyTokens {
                tokens: tokens.len(),
                max: seq_len,
            });
        }
        let tensor =
            bert::input(&tokens, seq_len).map_err(|e| InputError::Tokenize(e.to_string()))?;
        let hash = inference::commit::try_tensor_hash(&tensor)
            .map_err(|e| InputError::Tokenize(e.to_string()))?;
        Ok(PreparedInput {
            model: family.name.clone(),
            bucket: family.buckets[bucket].model.clone(),
            tensor,
            record: InputRecord {
                text,
                tokens,
                seq_len: seq_len as u32,
                hash,
            },
        })
    }

    /// The model and program input of a stored request (to run it again after a restart).
    pub fn rebuild(&self, model_id: &H256, input: &InputRecord) -> Option<(Arc<Model>, Tensor)> {
        let bucket = self
            .families
            .iter()
            .find_map(|f| f.bucket_by_id(model_id).map(|b| f.buckets[b].model.clone()))?;
        let tensor = bert::input(&input.tokens, input.seq_len as usize).ok()?;
        Some((bucket, tensor))
    }
}

/// The outcome of one job.
pub type JobResult = Result<TensorRecord, String>;

/// What a waiting client is told once its job's result is stored: the request as stored
/// (so the answer needs no second read), or `None` when the result was not stored because
/// the request had left the execution queue meanwhile (read it from the database).
pub type Stored = Option<crate::db::RequestView>;

/// One request to execute.
#[derive(Debug)]
pub struct Job {
    /// The request number.
    pub id: u64,
    /// The model to run.
    pub model: Arc<Model>,
    /// The program input.
    pub input: Tensor,
    /// Told once the result is stored (when a client waits for it).
    pub done: Option<tokio::sync::oneshot::Sender<Stored>>,
    /// The request, when it is not stored yet: stored with its output
    /// ([`crate::db::Execution::request`]).
    pub request: Option<crate::db::NewRequest>,
}

/// A finished job, handed to the pool's sink.
#[derive(Debug)]
pub struct Completed {
    /// The job.
    pub job: Job,
    /// Its output, or why it failed.
    pub result: JobResult,
    /// How long the program ran (for a job run in a stacked batch, the whole batch).
    pub elapsed: Duration,
}

/// The pool has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the execution pool has stopped")]
pub struct PoolClosed;

/// Runs jobs on a dedicated thread pool, apart from the async runtime, as a pipeline: up to
/// `max_batch` jobs run at once on the workers (a job alone on the pool offers its ops to
/// the idle workers; jobs side by side each keep to their worker); a worker that finishes a
/// job takes the next queued one itself, so a busy pool is fed without waking anyone. A
/// storing thread hands whatever has finished to the sink (which stores it in one
/// transaction) while the workers go on; while more jobs are running it first lets their
/// results gather, so one commit covers several: a commit's cost hardly depends on how many
/// results it holds, so under load this cuts commits (and the storing thread's CPU, which
/// the workers share the cores with) several times over. It gathers only while the queue
/// holds more than one round of work (`max_batch * stack` jobs), and at most `store_gather`:
/// once the queue runs that low, holding results longer would keep their clients from
/// sending the next requests while the workers run out of jobs, so it stores them then. No
/// worker waits for storage or for the slowest job of a group.
pub struct ExecutionPool {
    executor: Arc<dyn Executor>,
    shared: Arc<Shared>,
    workers: Option<rayon::ThreadPool>,
    done_tx: Option<mpsc::Sender<Completed>>,
    storer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ExecutionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionPool")
            .field("backend", &self.executor.backend())
            .field("max_batch", &self.shared.max_batch)
            .field("stack", &self.shared.stack)
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

/// Most finished jobs the storing thread hands to the sink at once.
const MAX_STORE_BATCH: usize = 256;

/// The queue and the count of jobs on the workers.
#[derive(Debug, Default)]
struct Queue {
    jobs: std::collections::VecDeque<Job>,
    running: usize,
    closed: bool,
    /// A job spread over the workers is running: new jobs wait in the queue (see `work`).
    spreading: bool,
    /// The storing thread is gathering results until the queue runs low (`Shared::low`).
    gathering: bool,
}

/// What the pool's handle, its workers and the storing thread share.
#[derive(Debug, Default)]
struct Shared {
    queue: std::sync::Mutex<Queue>,
    /// Signalled when the last running job ends with nothing queued.
    idle: std::sync::Condvar,
    /// Signalled, while the storing thread gathers, when a worker leaves at most
    /// [`Shared::low_mark`] jobs queued.
    low: std::sync::Condvar,
    /// Jobs queued, running, or finished but not stored yet.
    depth: AtomicUsize,
    /// Most jobs (or stacked groups) running at once: `max_batch`, and never more than the
    /// pool has threads (a job handed to a busy pool would wait in rayon's queue, alone,
    /// where no worker can stack it with others of its model).
    max_batch: usize,
    /// Most queued jobs of one model a worker takes as one stacked batch.
    stack: usize,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queued jobs at or below which the storing thread stops gathering: one round of work
    /// for the workers (each running job or stacked group takes up to `stack`).
    fn low_mark(&self) -> usize {
        self.max_batch * self.stack
    }

    /// Waits, at most `limit`, until at most [`Shared::low_mark`] jobs are queued (at once
    /// if so already).
    fn wait_for_low_queue(&self, limit: Duration) {
        let low = self.low_mark();
        let mut queue = self.lock();
        if queue.jobs.len() <= low || queue.closed {
            return;
        }
        queue.gathering = true;
        let (mut queue, _) = self
            .low
            .wait_timeout_while(queue, limit, |q| q.jobs.len() > low && !q.closed)
            .unwrap_or_else(|e| e.into_inner());
        queue.gathering = false;
    }
}

impl Queue {
    /// The next job, with up to `stack - 1` more queued jobs of its model (taken out of the
    /// queue in order; jobs of other models keep their places). Empty when nothing waits.
    fn take_group(&mut self, stack: usize) -> Vec<Job> {
        let Some(first) = self.jobs.pop_front() else {
            return Vec::new();
        };
        let mut group = vec![first];
        if stack > 1 {
            let id = group[0].model.id();
            let mut i = 0;
            while group.len() < stack && i < self.jobs.len() {
                if self.jobs[i].model.id() == id {
                    group.extend(self.jobs.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        group
    }
}

/// Runs a group of jobs of one model: alone, as [`work`] always did; several, as one
/// stacked batch. One result per job, in order.
fn run_group(executor: &dyn Executor, shared: &Shared, group: &[Job]) -> Vec<JobResult> {
    let record = |r: Result<Tensor, ExecutionError>| {
        r.map_err(|e| e.to_string())
            .and_then(|t| tensor_record(&t).map_err(|e| e.to_string()))
    };
    // A panicking executor fails its jobs, not the process (a panic in a rayon `spawn`
    // would abort).
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match group {
        [job] => {
            // Alone on the pool (light load): the job's ops are offered to the idle
            // workers (1-client latency ~3.5 -> ~3.0 ms on MiniLM, 2 cores). Else each job
            // keeps to its worker: split, their pieces would wait on workers busy with
            // their own jobs. While it spreads, new jobs queue (`work` starts them after).
            let spread = {
                let mut queue = shared.lock();
                queue.spreading = queue.running <= 1 && executor.spreads();
                queue.spreading
            };
            vec![record(if spread {
                executor.run_spread(&job.model, &job.input)
            } else {
                executor.run(&job.model, &job.input)
            })]
        }
        _ => {
            let inputs: Vec<&Tensor> = group.iter().map(|j| &j.input).collect();
            let mut results: Vec<JobResult> = executor
                .run_batch(&group[0].model, &inputs)
                .into_iter()
                .map(record)
                .collect();
            results.resize_with(group.len(), || {
                Err("the executor returned fewer results than inputs".into())
            });
            results
        }
    }));
    outcome.unwrap_or_else(|_| {
        (0..group.len())
            .map(|_| Err("the executor panicked".into()))
            .collect()
    })
}

/// Runs `group`, then every job queued meanwhile (in groups of one model, up to the pool's
/// `stack`), on the calling worker, and starts queued groups on other workers while fewer
/// than `max_batch` run.
///
/// No job is handed to the workers while one spreads over them (`Queue::spreading`): a
/// worker waiting in that job's parallel kernels for a piece another worker took would
/// take the new job from rayon's queue and run all of it there, nested, while the other
/// worker, its piece done, idled (serving under load fell to 0.5-0.7 of inference alone
/// in some runs).
fn work(
    executor: Arc<dyn Executor>,
    shared: Arc<Shared>,
    done_tx: mpsc::Sender<Completed>,
    mut group: Vec<Job>,
) {
    // `rayon::spawn` below starts jobs on the pool of the calling thread: this one's.
    debug_assert!(
        rayon::current_thread_index().is_some(),
        "work runs on the pool's threads"
    );
    loop {
        let started = Instant::now();
        let results = run_group(&*executor, &shared, &group);
        let elapsed = started.elapsed();
        for (job, result) in group.drain(..).zip(results) {
            // The storing thread runs until the pool's own sender and every worker's are
            // gone: this cannot fail.
            let _ = done_tx.send(Completed {
                job,
                result,
                elapsed,
            });
        }
        let mut queue = shared.lock();
        queue.spreading = false;
        group = queue.take_group(shared.stack);
        while !group.is_empty() && queue.running < shared.max_batch && !queue.jobs.is_empty() {
            // Jobs queued while one spread: another worker takes them.
            let more = queue.take_group(shared.stack);
            queue.running += 1;
            let (executor, shared, done_tx) = (executor.clone(), shared.clone(), done_tx.clone());
            rayon::spawn(move || work(executor, shared, done_tx, more));
        }
        if queue.gathering && queue.jobs.len() <= shared.low_mark() {
            shared.low.notify_one();
        }
        if group.is_empty() {
            queue.running -= 1;
            if queue.running == 0 {
                shared.idle.notify_all();
            }
            return;
        }
    }
}

impl ExecutionPool {
    /// Starts the pool with `threads` worker threads (0: one per core), running up to
    /// `max_batch` jobs (or stacked groups) at once (at most one a thread), a worker taking
    /// up to `stack` queued jobs of one model as one stacked batch (0: the executor's
    /// [`Executor::default_stack`]), letting results gather for `store_gather` while others
    /// run.
    pub fn start(
        executor: Arc<dyn Executor>,
        threads: usize,
        max_batch: usize,
        stack: usize,
        store_gather: Duration,
        mut sink: impl FnMut(Vec<Completed>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("exec-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let (done_tx, done_rx) = mpsc::channel::<Completed>();
        let stack = if stack == 0 {
            executor.default_stack()
        } else {
            stack
        };
        let shared = Arc::new(Shared {
            max_batch: max_batch.min(workers.current_num_threads()).max(1),
            stack: stack.max(1),
            ..Shared::default()
        });
        let store_shared = shared.clone();
        let storer = std::thread::Builder::new()
            .name("exec-store".into())
            .spawn(move || {
                // Ends once the pool and every running job have dropped their senders.
                let drain = |done: &mut Vec<Completed>| {
                    while done.len() < MAX_STORE_BATCH {
                        match done_rx.try_recv() {
                            Ok(c) => done.push(c),
                            Err(_) => break,
                        }
                    }
                };
                while let Ok(first) = done_rx.recv() {
                    let mut done = vec![first];
                    drain(&mut done);
                    let others_running = store_shared.depth.load(Ordering::SeqCst) > done.len();
                    if others_running && done.len() < MAX_STORE_BATCH && !store_gather.is_zero() {
                        // Waiting on the queue rather than on the channel: a worker's send
                        // wakes nobody; one wake-up when the queue runs low.
                        store_shared.wait_for_low_queue(store_gather);
                        drain(&mut done);
                    }
                    let n = done.len();
                    sink(done);
                    store_shared.depth.fetch_sub(n, Ordering::SeqCst);
                }
            })?;
        Ok(Self {
            executor,
            shared,
            workers: Some(workers),
            done_tx: Some(done_tx),
            storer: Some(storer),
        })
    }

    /// Queues a job: it starts at once on a worker while fewer than `max_batch` run, else
    /// when a running one ends.
    pub fn submit(&self, job: Job) -> Result<(), PoolClosed> {
        let (Some(workers), Some(done_tx)) = (&self.workers, &self.done_tx) else {
            return Err(PoolClosed);
        };
        let mut queue = self.shared.lock();
        if queue.closed {
            return Err(PoolClosed);
        }
        self.shared.depth.fetch_add(1, Ordering::SeqCst);
        if queue.running >= self.shared.max_batch || queue.spreading {
            queue.jobs.push_back(job);
            return Ok(());
        }
        queue.running += 1;
        drop(queue);
        let (shared, done_tx, executor) =
            (self.shared.clone(), done_tx.clone(), self.executor.clone());
        workers.spawn(move || work(executor, shared, done_tx, vec![job]));
        Ok(())
    }

    /// Jobs queued, running, or finished but not stored yet.
    pub fn depth(&self) -> usize {
        self.shared.depth.load(Ordering::SeqCst)
    }

    /// Stops taking jobs, finishes the queued ones, stores their results and waits for the
    /// threads.
    pub fn shutdown(&mut self) {
        {
            let mut queue = self.shared.lock();
            queue.closed = true;
            self.shared.low.notify_all();
            while queue.running > 0 {
                queue = self
                    .shared
                    .idle
                    .wait(queue)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        // Every job has ended (and dropped its sender): the storing thread stops once this
        // one goes.
        self.workers.take();
        self.done_tx.take();
        if let Some(handle) = self.storer.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for ExecutionPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}
