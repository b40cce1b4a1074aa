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
}

/// The pure-Rust CPU engine of the `inference` crate (weights pre-packed at load time).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuExecutor;

impl Executor for CpuExecutor {
    fn backend(&self) -> &'static str {
        "cpu"
    }

    fn run(&self, model: &Model, input: &Tensor) -> Result<Tensor, ExecutionError> {
        inference::trace::run(model.program(), model.weights(), input).map_err(|e| ExecutionError {
            backend: "cpu",
            message: e.to_string(),
        })
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
        if let Ok(id) = model.parse::<H256>() {
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
    pub done: Option<tokio::sync::oneshot::Sender<JobResult>>,
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
    /// How long the program ran.
    pub elapsed: Duration,
}

/// The pool has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the execution pool has stopped")]
pub struct PoolClosed;

/// Runs jobs on a dedicated thread pool, apart from the async runtime, as a pipeline: a
/// dispatcher thread keeps up to `max_batch` jobs running at once on the workers (each
/// program also parallelizes its own ops on the same pool), starting the next queued job as
/// soon as one finishes; a storing thread hands whatever has finished to the sink (which
/// stores it in one transaction) while the workers go on. No worker waits for storage or
/// for the slowest job of a group.
#[derive(Debug)]
pub struct ExecutionPool {
    sender: Option<mpsc::Sender<Job>>,
    depth: Arc<AtomicUsize>,
    dispatcher: Option<std::thread::JoinHandle<()>>,
    storer: Option<std::thread::JoinHandle<()>>,
}

/// Most finished jobs the storing thread hands to the sink at once.
const MAX_STORE_BATCH: usize = 256;

/// Counts jobs running on the workers; the dispatcher waits while `max` are.
#[derive(Debug, Default)]
struct Slots {
    running: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Slots {
    fn acquire(&self, max: usize) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= max {
            running = self.freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
    }

    /// Waits until nothing runs.
    fn acquire_all(&self, max: usize) {
        for _ in 0..max {
            self.acquire(max);
        }
    }

    fn release(&self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        *running = running.saturating_sub(1);
        self.freed.notify_one();
    }
}

impl ExecutionPool {
    /// Starts the pool with `threads` worker threads (0: one per core), running up to
    /// `max_batch` jobs at once.
    pub fn start(
        executor: Arc<dyn Executor>,
        threads: usize,
        max_batch: usize,
        mut sink: impl FnMut(Vec<Completed>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("exec-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let (sender, receiver) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Completed>();
        let depth = Arc::new(AtomicUsize::new(0));
        let pool_depth = depth.clone();
        let max_batch = max_batch.max(1);
        let storer = std::thread::Builder::new()
            .name("exec-store".into())
            .spawn(move || {
                // Ends once the dispatcher and every running job have dropped their senders.
                while let Ok(first) = done_rx.recv() {
                    let mut done = vec![first];
                    while done.len() < MAX_STORE_BATCH {
                        match done_rx.try_recv() {
                            Ok(c) => done.push(c),
                            Err(_) => break,
                        }
                    }
                    let n = done.len();
                    sink(done);
                    pool_depth.fetch_sub(n, Ordering::SeqCst);
                }
            })?;
        let slots = Arc::new(Slots::default());
        let dispatcher = std::thread::Builder::new()
            .name("exec-dispatch".into())
            .spawn(move || {
                while let Ok(job) = receiver.recv() {
                    slots.acquire(max_batch);
                    let (executor, done_tx, slots) =
                        (executor.clone(), done_tx.clone(), slots.clone());
                    workers.spawn(move || {
                        let started = Instant::now();
                        // A panicking executor fails its job, not the process (a panic in a
                        // rayon `spawn` would abort).
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            executor
                                .run(&job.model, &job.input)
                                .map_err(|e| e.to_string())
                                .and_then(|t| tensor_record(&t).map_err(|e| e.to_string()))
                        }))
                        .unwrap_or_else(|_| Err("the executor panicked".into()));
                        let elapsed = started.elapsed();
                        slots.release();
                        // The storing thread outlives every sender: this cannot fail.
                        let _ = done_tx.send(Completed {
                            job,
                            result,
                            elapsed,
                        });
                    });
                }
                // Let the running jobs finish before the workers go (the storer waits for
                // their results).
                slots.acquire_all(max_batch);
            })?;
        Ok(Self {
            sender: Some(sender),
            depth,
            dispatcher: Some(dispatcher),
            storer: Some(storer),
        })
    }

    /// Queues a job.
    pub fn submit(&self, job: Job) -> Result<(), PoolClosed> {
        let sender = self.sender.as_ref().ok_or(PoolClosed)?;
        self.depth.fetch_add(1, Ordering::SeqCst);
        sender.send(job).map_err(|_| {
            self.depth.fetch_sub(1, Ordering::SeqCst);
            PoolClosed
        })
    }

    /// Jobs queued or running.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }

    /// Stops taking jobs, finishes the queued ones, stores their results and waits for the
    /// threads.
    pub fn shutdown(&mut self) {
        self.sender.take();
        if let Some(handle) = self.dispatcher.take() {
            let _ = handle.join();
        }
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
