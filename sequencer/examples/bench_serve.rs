//! The serving path against inference alone, on the same backend, the same threads and the
//! same sentences (issue 6: serving should reach at least 95% of inference alone).
//!
//! ```text
//! cargo run --release -p sequencer --example bench_serve -- [--backend rust|tch] [--pairs 5]
//!     [--seconds 8] [--clients 16] [--client-threads 0] [--threads 2] [--max-batch 8] [--stack N] [--store-gather-ms N]
//!     [--no-chain]
//! ```
//!
//! * **A, inference alone**: each sentence is prepared (tokenized, input tensor built) and
//!   run by the executor, `max-batch` jobs at a time on a pool of `threads` threads, each
//!   job taking the next sentence as soon as it is done (what the sequencer's worker pool
//!   does), outputs dropped.
//! * **B, serving**: the whole sequencer in this process (`service::start_with`, the same
//!   executor): `clients` clients POST the sentences to `/v1/inference` and wait for each
//!   output (each on one kept-alive connection, writing requests built beforehand and
//!   checking each answer's status and length, each client on a thread of its own unless
//!   `--client-threads` says fewer: a load generator light enough not to take the cores it
//!   shares with the sequencer here), through HTTP, the group commit of the
//!   request to MDBX, the worker pool, the output's commit, claims and batches; the batches
//!   are posted to a real anvil with the real contracts (`--no-chain`, or no anvil at
//!   `--anvil`: batches are built but not posted, and the report says so).
//!
//! On a shared machine one run of each says little: the runs alternate (A B A B ...),
//! `pairs` times, and the report gives every run and the median of the pair ratios B/A. It
//! also gives the CPU time per request, which other load on the machine does not change:
//! for A, the process's CPU time over the run; for B, the process's CPU time less that of
//! the client threads (each reads its own from `/proc/thread-self/stat`; reported apart, in
//! ticks of 10 ms a thread, so a light load reads as 0), and, apart, the
//! CPU time anvil spent (the chain node shares this machine's cores here, not in
//! production). The serving side's CPU time a request is also split by thread: the
//! workers, the storing thread, the async runtime with its blocking pool (HTTP, tokenizing,
//! batching, posting) and the rest (tokenizing, which inference alone does on its workers,
//! is in the runtime's share here). One JSON line per run, then a summary line.

/// The allocator of the `sequencer` binary (both sides of the comparison run in this
/// process).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use alloy::primitives::U256;
use clap::Parser;
use sequencer::backend::{Backend, make_executor};
use sequencer::config::Config;
use sequencer::execution::{Executor, ModelInput, ModelRegistry};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Serving path vs inference alone (see the file's documentation).
#[derive(Parser, Debug)]
struct Args {
    /// The backend of both sides.
    #[arg(long, value_enum, default_value_t = Backend::Rust)]
    backend: Backend,
    /// Pairs of runs (A then B).
    #[arg(long, default_value_t = 5)]
    pairs: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Concurrent HTTP clients of the serving runs (each one connection, one request at a
    /// time).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Threads the clients run on, each an event loop for its share of them (0: one thread
    /// each, as the figures in the README were measured; 1: one loop for all, as a load
    /// balancer in front of the sequencer would drive them).
    #[arg(long, default_value_t = 0)]
    client_threads: usize,
    /// Worker threads (the execution pool's, and inference alone's).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Threads of the serving side's async runtime (`--http.threads`; 0: a quarter of the
    /// cores, at least one).
    #[arg(long, default_value_t = 0)]
    http_threads: usize,
    /// Requests run at once (`--exec.max-batch`, at most one a thread; and inference alone's
    /// jobs, of which as many run as there are threads).
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Queued requests of one model run as one stacked batch (`--exec.stack`, and inference
    /// alone's: each of its jobs takes this many sentences at a time, one `run_batch` per
    /// bucket among them); 0: the backend's default (1 for rust, 8 for tch on the CPU).
    #[arg(long, default_value_t = 0)]
    stack: usize,
    /// How long finished results may wait to be stored together, in milliseconds
    /// (`--exec.store-gather`; default: the sequencer's).
    #[arg(long)]
    store_gather_ms: Option<u64>,
    /// Claims per batch (`--batch.max-size`).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// The model family directory.
    #[arg(long, default_value = "models/minilm")]
    model: PathBuf,
    /// Sentences, one a line.
    #[arg(long, default_value = "data/sentences_eval.txt")]
    input: PathBuf,
    /// Build batches without posting them.
    #[arg(long)]
    no_chain: bool,
    /// Run one side only, `pairs` times (for profiling): `alone` or `serving`.
    #[arg(long)]
    only: Option<String>,
    /// The anvil binary.
    #[arg(long, default_value = "contracts/node_modules/.bin/anvil")]
    anvil: PathBuf,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// CPU seconds (user + system) from a `/proc/.../stat` file.
fn cpu_seconds(stat: &str, ticks_per_second: f64) -> Result<f64, Error> {
    let text = std::fs::read_to_string(stat)?;
    let rest = text
        .rsplit_once(')')
        .ok_or_else(|| format!("{stat}: no command field"))?
        .1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `rest` starts at field 3.
    let utime: f64 = f.get(11).ok_or("short stat")?.parse()?;
    let stime: f64 = f.get(12).ok_or("short stat")?.parse()?;
    Ok((utime + stime) / ticks_per_second)
}

/// CPU seconds of process `pid` and its descendants (anvil from npm is a `node` launcher
/// whose child is the anvil binary).
fn tree_cpu_seconds(pid: u32, ticks: f64) -> Result<f64, Error> {
    let mut total = cpu_seconds(&format!("/proc/{pid}/stat"), ticks)?;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let children = std::fs::read_to_string(task?.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace() {
            total += tree_cpu_seconds(child.parse()?, ticks)?;
        }
    }
    Ok(total)
}

/// The serving side's threads, by role (see [`thread_cpu_seconds`]).
const ROLES: [&str; 4] = ["workers", "storer", "runtime", "other"];

/// CPU seconds of this process's live threads by role: the execution pool's workers
/// (`exec-N`), its storing thread (`exec-store`), the async runtime's threads with its
/// blocking pool (`sequencer-rt`: HTTP, tokenizing, batching, posting, on-chain requests)
/// and any other thread; the load generator's (`client-N`) and inference alone's (`alone-N`)
/// threads are left out. A thread that ended is missing from the next reading: a run counts
/// the process's time that no live thread accounts for as "other" ([`run_serving`]).
fn thread_cpu_seconds(ticks: f64) -> Result<[f64; 4], Error> {
    let mut by_role = [0.0; 4];
    for task in std::fs::read_dir("/proc/self/task")? {
        let stat = task?.path().join("stat");
        let Ok(text) = std::fs::read_to_string(&stat) else {
            continue; // ended meanwhile
        };
        let name = text
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map_or("", |(name, _)| name);
        let role = if name == "exec-store" {
            1
        } else if name.starts_with("exec-") {
            0
        } else if name.starts_with("sequencer-rt") {
            2
        } else if name.starts_with("client-") || name.starts_with("alone-") {
            continue;
        } else {
            3
        };
        by_role[role] += cpu_seconds(&stat.to_string_lossy(), ticks).unwrap_or(0.0);
    }
    Ok(by_role)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// One run's figures.
#[derive(Clone, Copy, Debug)]
struct Run {
    requests: u64,
    errors: u64,
    seconds: f64,
    cpu_seconds: f64,
    /// CPU seconds of the anvil process over the run (serving with a chain only).
    chain_cpu_seconds: f64,
    /// CPU seconds of the client threads (serving only; not in `cpu_seconds`).
    client_cpu_seconds: f64,
    /// CPU seconds of the serving side's threads by role ([`ROLES`]; serving only).
    role_cpu_seconds: [f64; 4],
}

impl Run {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    fn cpu_ms_per_request(&self) -> f64 {
        self.cpu_seconds * 1e3 / self.requests.max(1) as f64
    }
    fn chain_cpu_ms_per_request(&self) -> f64 {
        self.chain_cpu_seconds * 1e3 / self.requests.max(1) as f64
    }
    fn client_cpu_ms_per_request(&self) -> f64 {
        self.client_cpu_seconds * 1e3 / self.requests.max(1) as f64
    }
    fn role_cpu_ms_per_request(&self, role: usize) -> f64 {
        self.role_cpu_seconds[role] * 1e3 / self.requests.max(1) as f64
    }
}

/// A: `max_batch` jobs at a time on `pool` for `seconds`, each preparing and running one
/// sentence after another with no barrier between them (as the worker pool keeps
/// `max_batch` requests running); with `stack` above 1, each job takes that many sentences
/// at a time and runs each bucket's share of them as one stacked batch (as a worker of the
/// pool takes queued requests of one model together).
#[allow(clippy::too_many_arguments)]
fn run_alone(
    pool: &rayon::ThreadPool,
    executor: &dyn Executor,
    registry: &ModelRegistry,
    lines: &[String],
    max_batch: usize,
    stack: usize,
    seconds: f64,
    ticks: f64,
) -> Result<Run, Error> {
    let cpu0 = cpu_seconds("/proc/self/stat", ticks)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let (requests, errors, next) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let stack = stack.max(1);
    pool.install(|| {
        rayon::scope(|s| {
            for _ in 0..max_batch {
                s.spawn(|_| {
                    while Instant::now() < deadline {
                        let k = next.fetch_add(stack as u64, Ordering::Relaxed) as usize;
                        let (ok, failed) = run_sentences(
                            executor,
                            registry,
                            (k..k + stack).map(|i| &lines[i % lines.len()]),
                        );
                        requests.fetch_add(ok, Ordering::Relaxed);
                        errors.fetch_add(failed, Ordering::Relaxed);
                    }
                });
            }
        })
    });
    let seconds = started.elapsed().as_secs_f64();
    Ok(Run {
        requests: requests.into_inner(),
        errors: errors.into_inner(),
        seconds,
        cpu_seconds: cpu_seconds("/proc/self/stat", ticks)? - cpu0,
        chain_cpu_seconds: 0.0,
        client_cpu_seconds: 0.0,
        role_cpu_seconds: [0.0; 4],
    })
}

/// Prepares `sentences` and runs them, one `run` for a single one, else one `run_batch` per
/// bucket among them; (succeeded, failed).
fn run_sentences<'a>(
    executor: &dyn Executor,
    registry: &ModelRegistry,
    sentences: impl Iterator<Item = &'a String>,
) -> (u64, u64) {
    let mut failed = 0;
    let mut by_bucket: Vec<(Arc<inference::model::Model>, Vec<inference::tensor::Tensor>)> =
        Vec::new();
    for line in sentences {
        match registry.prepare("minilm", ModelInput::Text(line.clone()), 1 << 20) {
            Ok(p) => match by_bucket.iter_mut().find(|(m, _)| m.id() == p.bucket.id()) {
                Some((_, inputs)) => inputs.push(p.tensor),
                None => by_bucket.push((p.bucket.clone(), vec![p.tensor])),
            },
            Err(_) => failed += 1,
        }
    }
    let mut ok = 0;
    for (model, inputs) in &by_bucket {
        let results = match inputs.as_slice() {
            [one] => vec![executor.run(model, one)],
            _ => executor.run_batch(model, &inputs.iter().collect::<Vec<_>>()),
        };
        for r in results {
            if r.is_ok() {
                ok += 1;
            } else {
                failed += 1;
            }
        }
    }
    (ok, failed)
}

/// Whether `buf` holds a whole answer to one request: `Some(true)` for a 200 with a
/// non-empty body of the announced length, `Some(false)` for any other whole answer, `None`
/// while bytes are missing. Bytes past the body are an error (nothing is pipelined).
fn whole_answer(buf: &[u8]) -> std::io::Result<Option<bool>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head not UTF-8"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| bad("no content-length"))?;
    match buf.len().cmp(&(head_end + length)) {
        std::cmp::Ordering::Less => Ok(None),
        std::cmp::Ordering::Equal => Ok(Some(status == 200 && length > 0)),
        std::cmp::Ordering::Greater => Err(bad("bytes after the body (nothing was pipelined)")),
    }
}

/// One HTTP/1.1 exchange on a kept-alive connection: the request written from bytes built
/// once, the answer read whole and checked ([`whole_answer`]). Far less CPU a request than
/// a general client, which matters here: the clients share the sequencer's cores, where in
/// production they run elsewhere.
async fn exchange(
    stream: &tokio::net::TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<bool> {
    use std::io::ErrorKind::WouldBlock;
    let mut sent = 0;
    while sent < request.len() {
        stream.writable().await?;
        match stream.try_write(&request[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    buf.clear();
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(ok) = whole_answer(buf)? {
            return Ok(ok);
        }
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before the whole answer",
                ));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// One client until `deadline`: POSTs `requests[first]`, `requests[first + step]`, ... on
/// one kept-alive connection, each after the answer to the last; a failed exchange counts
/// as an error and reconnects.
async fn client(
    addr: std::net::SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    first: usize,
    step: usize,
    deadline: Instant,
    done: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
) {
    let mut stream = None;
    let mut buf = Vec::with_capacity(1 << 14);
    let mut k = first;
    while Instant::now() < deadline {
        let request = &requests[k % requests.len()];
        k += step;
        if stream.is_none() {
            stream = match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => s.set_nodelay(true).is_ok().then_some(s),
                Err(_) => None,
            };
        }
        let ok = match stream.as_ref() {
            Some(s) => exchange(s, request, &mut buf).await,
            None => Err(std::io::ErrorKind::ConnectionRefused.into()),
        };
        match ok {
            Ok(true) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                errors.fetch_add(1, Ordering::Relaxed);
                stream = None;
            }
        }
    }
}

/// Each sentence's whole HTTP request to `/v1/inference`, built once.
fn inference_requests(addr: std::net::SocketAddr, lines: &[String]) -> Vec<Vec<u8>> {
    lines
        .iter()
        .map(|line| {
            let body = json!({ "model": "minilm", "text": line }).to_string();
            format!(
                "POST /v1/inference HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect()
}

/// B: `clients` clients POST sentences to the sequencer at `addr` and wait for each output,
/// for `seconds` (with `chain_pid`, anvil's process, its CPU time over the run too). The
/// clients are tasks on `client_threads` threads (each a single-threaded runtime), client
/// `c` on thread `c % client_threads`.
fn run_serving(
    addr: std::net::SocketAddr,
    chain_pid: Option<u32>,
    requests: &Arc<Vec<Vec<u8>>>,
    clients: usize,
    client_threads: usize,
    seconds: f64,
    ticks: f64,
) -> Result<Run, Error> {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_seconds("/proc/self/stat", ticks)?;
    let chain_cpu = || chain_pid.map_or(Ok(0.0), |pid| tree_cpu_seconds(pid, ticks));
    let chain0 = chain_cpu()?;
    let roles0 = thread_cpu_seconds(ticks)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let client_threads = match client_threads {
        0 => clients.max(1),
        n => n.min(clients.max(1)),
    };
    let threads: Vec<_> = (0..client_threads)
        .map(|t| {
            let (requests, done, errors) = (requests.clone(), done.clone(), errors.clone());
            std::thread::Builder::new()
                .name(format!("client-{t}"))
                .spawn(move || -> Result<f64, String> {
                    let cpu0 = cpu_seconds("/proc/thread-self/stat", ticks).unwrap_or(0.0);
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.block_on(async {
                        let tasks: Vec<_> = (t..clients)
                            .step_by(client_threads)
                            .map(|c| {
                                tokio::spawn(client(
                                    addr,
                                    requests.clone(),
                                    c,
                                    clients,
                                    deadline,
                                    done.clone(),
                                    errors.clone(),
                                ))
                            })
                            .collect();
                        for task in tasks {
                            task.await.map_err(|e| e.to_string())?;
                        }
                        Ok::<_, String>(())
                    })?;
                    Ok(cpu_seconds("/proc/thread-self/stat", ticks).unwrap_or(0.0) - cpu0)
                })
        })
        .collect::<Result<_, _>>()?;
    let mut client_cpu = 0.0;
    for t in threads {
        client_cpu += t.join().map_err(|_| "a client thread panicked")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let roles = thread_cpu_seconds(ticks)?;
    let cpu = cpu_seconds("/proc/self/stat", ticks)? - cpu0 - client_cpu;
    let mut role_cpu: [f64; 4] = std::array::from_fn(|i| roles[i] - roles0[i]);
    // "other" is the rest of the process's time, so the roles add up to it: a thread that
    // ended during the run (a blocking thread idle too long) is missing from the second
    // reading, and its time lands there.
    role_cpu[3] = cpu - role_cpu[..3].iter().sum::<f64>();
    Ok(Run {
        requests: done.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        seconds,
        cpu_seconds: cpu,
        chain_cpu_seconds: chain_cpu()? - chain0,
        client_cpu_seconds: client_cpu,
        role_cpu_seconds: role_cpu,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Anvil with the contracts deployed and this sequencer registered, posting the batches
/// the service builds. The anvil process is killed when the returned handle drops.
async fn start_chain(
    anvil: &Path,
    running: &sequencer::service::RunningSequencer,
) -> Result<alloy::node_bindings::AnvilInstance, Error> {
    use alloy::providers::{Provider, ProviderBuilder};
    use sequencer::chain::{ChainClient, ChainPoster, ClientConfig, DeployConfig};
    let anvil = alloy::node_bindings::Anvil::at(anvil).try_spawn()?;
    let keys: Vec<alloy::signers::local::PrivateKeySigner> =
        anvil.keys().iter().cloned().map(Into::into).collect();
    let deployer = ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(keys[0].clone()))
        .connect_http(anvil.endpoint_url())
        .erased();
    let config = DeployConfig::default();
    let deployment = sequencer::chain::deploy::deploy(deployer, keys[0].address(), &config).await?;
    let client = ChainClient::connect(
        &anvil.endpoint(),
        keys[1].clone(),
        deployment.rollup,
        ClientConfig::default(),
    )
    .await?;
    client
        .register_sequencer(U256::from(config.min_stake))
        .await?;
    let state = running.state();
    let poster = ChainPoster::new(client, keys[1].clone())?.with_metrics(state.metrics.clone());
    tokio::spawn(sequencer::batching::run_poster(
        state.db.clone(),
        poster,
        state.metrics.clone(),
        running.batch_built(),
        sequencer::batching::PostSettings {
            poll: Duration::from_millis(200),
            ..Default::default()
        },
        running.shutdown_signal(),
    ));
    Ok(anvil)
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    if !args.model.join("family.json").is_file() {
        return Err(format!(
            "{} is not prepared (run `make models`)",
            args.model.display()
        )
        .into());
    }
    let text = std::fs::read_to_string(&args.input)?;
    let lines: Arc<Vec<String>> = Arc::new(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
    );
    let ticks = clock_ticks();
    let registry = ModelRegistry::load(std::slice::from_ref(&args.model))?;
    // Each side gets its own executor (a libtorch executor keeps one model copy per
    // worker thread), built the same way.
    let alone = make_executor(args.backend, args.threads)?;
    // The same stack on both sides (the pool resolves 0 the same way).
    let stack = if args.stack == 0 {
        alone.default_stack()
    } else {
        args.stack
    };
    let serving = make_executor(args.backend, args.threads)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .thread_name(|i| format!("alone-{i}"))
        .build()?;

    let db = tempfile::tempdir()?;
    let mut config = Config::default();
    config.http.addr = "127.0.0.1:0".parse()?;
    config.db.path = db.path().join("db");
    config.model.dirs = vec![args.model.clone()];
    config.exec.threads = args.threads;
    config.exec.max_batch = args.max_batch;
    config.exec.stack = args.stack;
    config.batch.max_size = args.batch_size;
    if let Some(ms) = args.store_gather_ms {
        config.exec.store_gather = Duration::from_millis(ms);
    }
    config.http.threads = args.http_threads;
    let config_threads = config.http.runtime_threads();
    let runtime = sequencer::service::runtime(&config)?;
    let running = runtime.block_on(sequencer::service::start_with(config, serving))?;
    let requests = Arc::new(inference_requests(running.addr(), &lines));
    let use_chain = !args.no_chain && args.anvil.is_file();
    let anvil = if use_chain {
        Some(runtime.block_on(start_chain(&args.anvil, &running))?)
    } else {
        None
    };
    let posting = if use_chain {
        "posted to anvil (real contracts)"
    } else if args.no_chain {
        "built, not posted (--no-chain)"
    } else {
        "built, not posted (no anvil binary)"
    };

    // Warm-up, not counted: page cache, allocator, libtorch's copies of the models.
    run_alone(
        &pool,
        &*alone,
        &registry,
        &lines,
        args.max_batch,
        stack,
        2.0,
        ticks,
    )?;
    let chain_pid = anvil.as_ref().map(|a| a.child().id());
    run_serving(
        running.addr(),
        chain_pid,
        &requests,
        args.clients,
        args.client_threads,
        2.0,
        ticks,
    )?;

    let mut ratios = Vec::new();
    let (mut a_runs, mut b_runs) = (Vec::new(), Vec::new());
    let only = args.only.as_deref();
    if let Some(side) = only
        && side != "alone"
        && side != "serving"
    {
        return Err(format!("--only {side}: expected alone or serving").into());
    }
    let skipped = Run {
        requests: 1,
        errors: 0,
        seconds: 1.0,
        cpu_seconds: 0.0,
        chain_cpu_seconds: 0.0,
        client_cpu_seconds: 0.0,
        role_cpu_seconds: [0.0; 4],
    };
    for pair in 0..args.pairs {
        if only.is_some() {
            eprintln!("ready: pair {pair}");
        }
        let a = if only == Some("serving") {
            skipped
        } else {
            run_alone(
                &pool,
                &*alone,
                &registry,
                &lines,
                args.max_batch,
                stack,
                args.seconds,
                ticks,
            )?
        };
        let b = if only == Some("alone") {
            skipped
        } else {
            run_serving(
                running.addr(),
                chain_pid,
                &requests,
                args.clients,
                args.client_threads,
                args.seconds,
                ticks,
            )?
        };
        for (side, r) in [("inference_alone", a), ("serving", b)] {
            let by_role: serde_json::Map<String, serde_json::Value> = ROLES
                .iter()
                .enumerate()
                .map(|(i, role)| {
                    let ms = (r.role_cpu_ms_per_request(i) * 1e3).round() / 1e3;
                    (role.to_string(), json!(ms))
                })
                .collect();
            println!(
                "{}",
                json!({
                    "pair": pair, "side": side, "backend": args.backend.to_string(),
                    "requests": r.requests, "errors": r.errors,
                    "requests_per_second": (r.per_second() * 10.0).round() / 10.0,
                    "cpu_ms_per_request": (r.cpu_ms_per_request() * 1e3).round() / 1e3,
                    "anvil_cpu_ms_per_request": (r.chain_cpu_ms_per_request() * 1e3).round() / 1e3,
                    "client_cpu_ms_per_request": (r.client_cpu_ms_per_request() * 1e3).round() / 1e3,
                    "cpu_ms_per_request_by_thread": if side == "serving" { json!(by_role) } else { json!(null) },
                })
            );
        }
        ratios.push(b.per_second() / a.per_second());
        a_runs.push(a);
        b_runs.push(b);
    }
    let batches = running.state().metrics.batches.get();
    let posted = running.state().metrics.batches_posted.get();
    // The storing thread's commits over the whole process (warm-up included).
    let exposition = running.state().metrics.encode();
    let metric = |name: &str| {
        exposition
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(f64::NAN)
    };
    let commits = metric("sequencer_store_commit_size_count");
    let results_per_commit = metric("sequencer_store_commit_size_sum") / commits;
    let commit_ms = metric("sequencer_store_commit_latency_seconds_sum") / commits * 1e3;
    let a_rps = median(a_runs.iter().map(Run::per_second).collect());
    let b_rps = median(b_runs.iter().map(Run::per_second).collect());
    let a_cpu = median(a_runs.iter().map(Run::cpu_ms_per_request).collect());
    let b_cpu = median(b_runs.iter().map(Run::cpu_ms_per_request).collect());
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let round3 = |x: f64| (x * 1e3).round() / 1e3;
    println!(
        "{}",
        json!({
            "summary": true,
            "backend": args.backend.to_string(),
            "threads": args.threads, "clients": args.clients, "client_threads": args.client_threads, "max_batch": args.max_batch, "stack": stack,
            "http_threads": config_threads,
            "pairs": args.pairs, "seconds_per_run": args.seconds,
            "inference_alone_rps_median": round3(a_rps),
            "serving_rps_median": round3(b_rps),
            "ratio_median": round3(median(ratios)),
            "ratio_min": round3(sorted.first().copied().unwrap_or(f64::NAN)),
            "ratio_max": round3(sorted.last().copied().unwrap_or(f64::NAN)),
            "inference_alone_cpu_ms_per_request_median": round3(a_cpu),
            "serving_cpu_ms_per_request_median": round3(b_cpu),
            "cpu_ratio_alone_over_serving": round3(a_cpu / b_cpu),
            "store_commits": commits,
            "results_per_store_commit": round3(results_per_commit),
            "store_commit_ms_mean": round3(commit_ms),
            "anvil_cpu_ms_per_request_median":
                round3(median(b_runs.iter().map(Run::chain_cpu_ms_per_request).collect())),
            "client_cpu_ms_per_request_median":
                round3(median(b_runs.iter().map(Run::client_cpu_ms_per_request).collect())),
            "serving_cpu_ms_per_request_by_thread_median": ROLES
                .iter()
                .enumerate()
                .map(|(i, role)| {
                    let ms = median(b_runs.iter().map(|r| r.role_cpu_ms_per_request(i)).collect());
                    (role.to_string(), json!(round3(ms)))
                })
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "batches_built": batches, "batches_posted": posted, "posting": posting,
        })
    );
    runtime.block_on(running.stop());
    // The poster task goes with the runtime, before anvil stops (else it logs RPC errors
    // after the summary line).
    drop(runtime);
    drop(anvil);
    Ok(())
}
