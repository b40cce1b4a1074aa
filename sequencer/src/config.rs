//! Configuration: a TOML file (`--config FILE`, every key optional) overridden by flags,
//! each of which can also come from an environment variable. One struct per concern, as
//! in reth: `[http]`, `[db]`, `[model]`, `[exec]`, `[batch]`, `[log]`, and `[chain]` (absent:
//! no chain, batches are built but not posted).
//!
//! Precedence: flag or environment variable, then the file, then the `DEFAULT_*` constant.

use clap::Args;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default listen address of the HTTP API.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// Default largest request body (bytes).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default largest input text (bytes).
pub const DEFAULT_MAX_TEXT_BYTES: usize = 16 * 1024;
/// Default time a `wait` request waits for its output.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default database directory.
pub const DEFAULT_DB_PATH: &str = "sequencer-db";
/// Default model family directory.
pub const DEFAULT_MODEL_DIR: &str = "models/minilm";
/// Default execution threads (0: one per core).
pub const DEFAULT_EXEC_THREADS: usize = 0;
/// Default threads of the async runtime (0: a quarter of the cores, at least one).
pub const DEFAULT_HTTP_THREADS: usize = 0;
/// Default requests run together by the worker pool.
pub const DEFAULT_EXEC_MAX_BATCH: usize = 8;
/// Default most queued requests of one model a worker runs as one stacked batch (0: the
/// backend's own: 1 for the Rust engine, which has no stacked path; more for libtorch).
pub const DEFAULT_EXEC_STACK: usize = 0;
/// Default time the storing thread lets results gather while other jobs run.
pub const DEFAULT_EXEC_STORE_GATHER: Duration = Duration::from_millis(10);
/// Default limit of requests queued for execution before new ones get 503.
pub const DEFAULT_EXEC_QUEUE_LIMIT: usize = 4096;
/// Default claims per batch.
pub const DEFAULT_BATCH_MAX_SIZE: usize = 64;
/// Default age at which a partial batch is closed.
pub const DEFAULT_BATCH_MAX_AGE: Duration = Duration::from_secs(2);
/// Default log filter.
pub const DEFAULT_LOG_FILTER: &str = "info";
/// Default RPC endpoint of the settlement chain.
pub const DEFAULT_CHAIN_RPC_URL: &str = "http://127.0.0.1:8545";
/// Default confirmations (1: mined; events are read that deep behind the head, minus one).
pub const DEFAULT_CHAIN_CONFIRMATIONS: u64 = 1;
/// Default interval of chain polling (events, receipts).
pub const DEFAULT_CHAIN_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A configuration error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("{key}: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The HTTP API.
    pub http: HttpConfig,
    /// The database.
    pub db: DbConfig,
    /// The models served.
    pub model: ModelConfig,
    /// Execution.
    pub exec: ExecConfig,
    /// Batching.
    pub batch: BatchConfig,
    /// Logging.
    pub log: LogConfig,
    /// The settlement chain; `None`: batches are built but not posted.
    pub chain: Option<ChainConfig>,
    /// Development modes (tests and devnets only).
    pub dev: DevConfig,
}

/// `[dev]`: for tests and devnets only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevConfig {
    /// Post wrong outputs, lying at this op (1-based trace index), and defend them.
    pub lie_op: Option<usize>,
    /// The 32-byte leaf of that op's output the lie changes (default 0).
    pub lie_leaf: Option<usize>,
}

impl DevConfig {
    /// The lie asked for, if any.
    pub fn lie(&self) -> Option<crate::dev::Lie> {
        self.lie_op.map(|op| crate::dev::Lie {
            op,
            leaf: self.lie_leaf.unwrap_or(0),
        })
    }
}

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address (`host:port`; port 0 picks a free one).
    pub addr: SocketAddr,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest input text, in bytes.
    pub max_text_bytes: usize,
    /// How long a request with `wait` waits for its output, e.g. `30s`.
    #[serde(with = "duration_text")]
    pub wait_timeout: Duration,
    /// Threads of the async runtime (HTTP, storage hand-offs, the chain), apart from the
    /// inference workers; 0: a quarter of the cores, at least one ([`HttpConfig::runtime_threads`]).
    pub threads: usize,
}

impl HttpConfig {
    /// The async runtime's thread count: `threads`, or for 0 a quarter of the cores (at
    /// least one). Serving a request takes far less CPU than running it, and every runtime
    /// thread beyond what the HTTP load needs only wakes up to steal work and preempts the
    /// inference workers.
    pub fn runtime_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get() / 4)
                .max(1),
            n => n,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: DEFAULT_HTTP_ADDR
                .parse()
                .unwrap_or_else(|_| ([127, 0, 0, 1], 8080).into()),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            threads: DEFAULT_HTTP_THREADS,
        }
    }
}

/// `[db]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    /// The MDBX directory.
    pub path: PathBuf,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self {
            path: DEFAULT_DB_PATH.into(),
        }
    }
}

/// `[model]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Encoder family directories (from `inference model prepare minilm`).
    pub dirs: Vec<PathBuf>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            dirs: vec![DEFAULT_MODEL_DIR.into()],
        }
    }
}

/// `[exec]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecConfig {
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Requests (or stacked groups) run at once, at most one a worker thread.
    pub max_batch: usize,
    /// Most queued requests of one model a worker runs as one stacked batch (0: the
    /// backend's default).
    pub stack: usize,
    /// Requests queued for execution before new ones are refused with 503.
    pub queue_limit: usize,
    /// The backend that runs programs (`rust` or `tch`).
    pub backend: crate::backend::Backend,
    /// Longest finished results gather before they are stored (one commit, one fsync, for
    /// all of them), while more than one round of jobs is queued (they are stored as soon
    /// as the queue runs lower), e.g. `10ms`; `0s` stores each group at once. Under load
    /// it trades at most this much latency for CPU.
    #[serde(with = "duration_text")]
    pub store_gather: Duration,
}

impl Default for ExecConfig {
    fn default() -> Self {
        Self {
            threads: DEFAULT_EXEC_THREADS,
            max_batch: DEFAULT_EXEC_MAX_BATCH,
            stack: DEFAULT_EXEC_STACK,
            queue_limit: DEFAULT_EXEC_QUEUE_LIMIT,
            backend: crate::backend::Backend::default(),
            store_gather: DEFAULT_EXEC_STORE_GATHER,
        }
    }
}

/// `[batch]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Claims per batch.
    pub max_size: usize,
    /// Age at which a partial batch is closed, e.g. `2s` or `500ms`.
    #[serde(with = "duration_text")]
    pub max_age: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_BATCH_MAX_SIZE,
            max_age: DEFAULT_BATCH_MAX_AGE,
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info,sequencer=debug`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: DEFAULT_LOG_FILTER.into(),
        }
    }
}

/// A private key, never shown by `Debug` and never stored in the configuration file.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretKey(pub String);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// `[chain]`: the settlement chain the sequencer posts to and follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    /// The node's JSON-RPC endpoint.
    pub rpc_url: String,
    /// The rollup contract (the registry and games addresses are read from it).
    pub rollup: alloy::primitives::Address,
    /// A file holding the sequencer's private key (hex); the key itself is only taken from
    /// `--chain.key` or `SEQUENCER_CHAIN_KEY`, never from this file.
    pub key_file: Option<PathBuf>,
    /// The key given on the command line or in the environment (never serialized).
    #[serde(skip)]
    pub key: Option<SecretKey>,
    /// The block the request follower starts at on its first run (later runs resume after
    /// the block they stopped at, stored in the database).
    pub from_block: u64,
    /// Confirmations a transaction needs (1: mined); events are read
    /// `confirmations - 1` blocks behind the head.
    pub confirmations: u64,
    /// How often the chain is polled, e.g. `1s` or `200ms`.
    #[serde(with = "duration_text")]
    pub poll_interval: Duration,
    /// Largest block range of one `eth_getLogs` request (RPC providers cap it); longer
    /// scans are split.
    pub log_range: u64,
    /// How long a transaction (a batch or a game move) may wait unmined before it is
    /// replaced with higher fees (same nonce), e.g. `30s`.
    #[serde(with = "duration_text")]
    pub bump_after: Duration,
    /// The highest `maxFeePerGas` (wei) a transaction may offer; none: no ceiling.
    pub max_fee_per_gas: Option<u64>,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            rpc_url: DEFAULT_CHAIN_RPC_URL.into(),
            rollup: alloy::primitives::Address::ZERO,
            key_file: None,
            key: None,
            from_block: 0,
            confirmations: DEFAULT_CHAIN_CONFIRMATIONS,
            poll_interval: DEFAULT_CHAIN_POLL_INTERVAL,
            log_range: crate::chain::client::DEFAULT_LOG_RANGE,
            bump_after: crate::batching::DEFAULT_BUMP_AFTER,
            max_fee_per_gas: None,
        }
    }
}

impl ChainConfig {
    /// The signing key: `key` if given, else the contents of `key_file`.
    pub fn signer(&self) -> Result<alloy::signers::local::PrivateKeySigner, ConfigError> {
        let text = match (&self.key, &self.key_file) {
            (Some(k), _) => k.0.clone(),
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?
            }
            (None, None) => {
                return Err(ConfigError::Invalid {
                    key: "chain.key",
                    message:
                        "no key: give --chain.key (or SEQUENCER_CHAIN_KEY) or --chain.key-file"
                            .into(),
                });
            }
        };
        // The error message never includes the key.
        text.trim().parse().map_err(|_| ConfigError::Invalid {
            key: "chain.key",
            message: "not a private key (64 hex digits, 0x optional)".into(),
        })
    }
}

/// Parses a duration: a number with a unit `ms`, `s`, `m` or `h` (`250ms`, `2s`, `1.5m`);
/// a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 2s or 1m"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Shows a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// HTTP API flags.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "HTTP API")]
pub struct HttpArgs {
    /// Listen address, `host:port` (port 0 picks a free port; the chosen one is logged).
    #[arg(long = "http.addr", env = "SEQUENCER_HTTP_ADDR", value_name = "ADDR", help = format!("Listen address, host:port (port 0 picks a free port) [default: {DEFAULT_HTTP_ADDR}]"))]
    pub addr: Option<SocketAddr>,
    /// Largest request body, in bytes.
    #[arg(long = "http.max-body-bytes", env = "SEQUENCER_HTTP_MAX_BODY_BYTES", value_name = "BYTES", help = format!("Largest request body in bytes; larger ones get 413 [default: {DEFAULT_MAX_BODY_BYTES}]"))]
    pub max_body_bytes: Option<usize>,
    /// Largest input text, in bytes.
    #[arg(long = "http.max-text-bytes", env = "SEQUENCER_HTTP_MAX_TEXT_BYTES", value_name = "BYTES", help = format!("Largest input text in bytes; longer gets 400 [default: {DEFAULT_MAX_TEXT_BYTES}]"))]
    pub max_text_bytes: Option<usize>,
    /// How long a request with `"wait": true` waits for its output.
    #[arg(long = "http.wait-timeout", env = "SEQUENCER_HTTP_WAIT_TIMEOUT", value_name = "DURATION", value_parser = parse_duration, help = "How long a request with \"wait\": true waits for its output before answering 202 [default: 30s]")]
    pub wait_timeout: Option<Duration>,
    /// Threads of the async runtime (0: a quarter of the cores, at least one).
    #[arg(
        id = "http_threads",
        long = "http.threads",
        env = "SEQUENCER_HTTP_THREADS",
        value_name = "N",
        help = "Threads of the async runtime (HTTP, storage hand-offs, chain), apart from the inference workers; 0 = a quarter of the cores, at least one [default: 0]"
    )]
    pub threads: Option<usize>,
}

/// Database flags.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Database")]
pub struct DbArgs {
    /// The MDBX directory (created if missing).
    #[arg(long = "db.path", env = "SEQUENCER_DB_PATH", value_name = "DIR", help = format!("The MDBX database directory, created if missing [default: {DEFAULT_DB_PATH}]"))]
    pub path: Option<PathBuf>,
}

/// Model flags.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Models")]
pub struct ModelArgs {
    /// Encoder family directories (repeat or comma-separate).
    #[arg(long = "model.dir", env = "SEQUENCER_MODEL_DIR", value_name = "DIR", value_delimiter = ',', help = format!("Encoder family directory from `inference model prepare minilm` (repeat or comma-separate) [default: {DEFAULT_MODEL_DIR}]"))]
    pub dirs: Vec<PathBuf>,
}

/// Execution flags.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Execution")]
pub struct ExecArgs {
    /// Worker threads for inference (0: one per core).
    #[arg(
        long = "exec.threads",
        env = "SEQUENCER_EXEC_THREADS",
        value_name = "N",
        help = "Worker threads for inference, apart from the HTTP runtime; 0 = one per core [default: 0]"
    )]
    pub threads: Option<usize>,
    /// Requests run together.
    #[arg(long = "exec.max-batch", env = "SEQUENCER_EXEC_MAX_BATCH", value_name = "N", help = format!("Requests (or stacked groups) the worker pool runs at once, at most one a worker thread [default: {DEFAULT_EXEC_MAX_BATCH}]"))]
    pub max_batch: Option<usize>,
    /// Queued requests of one model run as one stacked batch.
    #[arg(
        long = "exec.stack",
        env = "SEQUENCER_EXEC_STACK",
        value_name = "N",
        help = "Most queued requests of one model a worker runs as one stacked batch (one pass over the program for all of them, the same bits as one by one; what a GPU's throughput comes from). 0 = the backend's default: 1 for rust, 32 for tch on CUDA, 8 for tch on the CPU [default: 0]"
    )]
    pub stack: Option<usize>,
    /// Requests queued before new ones are refused with 503.
    #[arg(long = "exec.queue-limit", env = "SEQUENCER_EXEC_QUEUE_LIMIT", value_name = "N", help = format!("Requests queued for execution before new ones get 503 [default: {DEFAULT_EXEC_QUEUE_LIMIT}]"))]
    pub queue_limit: Option<usize>,
    /// The backend.
    #[arg(
        long = "exec.backend",
        env = "SEQUENCER_EXEC_BACKEND",
        value_name = "BACKEND",
        value_enum,
        help = "The backend that runs programs: rust (the CPU engine) or tch (libtorch, CUDA when available; needs a build with --features tch). Same bits either way [default: rust]"
    )]
    pub backend: Option<crate::backend::Backend>,
    /// Longest finished results gather before they are stored while the queue is long.
    #[arg(long = "exec.store-gather", env = "SEQUENCER_EXEC_STORE_GATHER", value_name = "DURATION", value_parser = parse_duration, help = "While more than one round of requests is queued, let finished ones gather up to this long before storing them in one commit (fewer fsyncs under load, at most this much more latency; they are stored as soon as the queue runs low), e.g. 10ms; 0s stores at once [default: 10ms]")]
    pub store_gather: Option<Duration>,
}

/// Batching flags.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Batching")]
pub struct BatchArgs {
    /// Claims per batch.
    #[arg(long = "batch.max-size", env = "SEQUENCER_BATCH_MAX_SIZE", value_name = "N", help = format!("Close a batch at this many claims [default: {DEFAULT_BATCH_MAX_SIZE}]"))]
    pub max_size: Option<usize>,
    /// Age at which a partial batch is closed.
    #[arg(long = "batch.max-age", env = "SEQUENCER_BATCH_MAX_AGE", value_name = "DURATION", value_parser = parse_duration, help = "Close a partial batch when its oldest claim is this old, e.g. 500ms or 2s [default: 2s]")]
    pub max_age: Option<Duration>,
}

/// Chain flags.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Chain")]
pub struct ChainArgs {
    /// The node's JSON-RPC endpoint.
    #[arg(long = "chain.rpc-url", env = "SEQUENCER_CHAIN_RPC_URL", value_name = "URL", help = format!("JSON-RPC endpoint of the settlement chain; giving any --chain.* flag turns posting on [default: {DEFAULT_CHAIN_RPC_URL}]"))]
    pub rpc_url: Option<String>,
    /// The rollup contract.
    #[arg(
        long = "chain.rollup",
        env = "SEQUENCER_CHAIN_ROLLUP",
        value_name = "ADDRESS",
        help = "The rollup contract (the registry and games addresses are read from it)"
    )]
    pub rollup: Option<alloy::primitives::Address>,
    /// The private key.
    #[arg(
        long = "chain.key",
        env = "SEQUENCER_CHAIN_KEY",
        value_name = "HEX",
        hide_env_values = true,
        help = "The sequencer's private key (hex); prefer the environment variable or --chain.key-file. Never logged"
    )]
    pub key: Option<String>,
    /// A file holding the private key.
    #[arg(
        long = "chain.key-file",
        env = "SEQUENCER_CHAIN_KEY_FILE",
        value_name = "FILE",
        help = "A file holding the sequencer's private key (hex)"
    )]
    pub key_file: Option<PathBuf>,
    /// First block of the request follower.
    #[arg(
        long = "chain.from-block",
        env = "SEQUENCER_CHAIN_FROM_BLOCK",
        value_name = "N",
        help = "Block the on-chain request follower starts at on its first run; later runs resume where they stopped [default: 0]"
    )]
    pub from_block: Option<u64>,
    /// Confirmations.
    #[arg(long = "chain.confirmations", env = "SEQUENCER_CHAIN_CONFIRMATIONS", value_name = "N", help = format!("Confirmations a transaction needs (1: mined); events are read N-1 blocks behind the head [default: {DEFAULT_CHAIN_CONFIRMATIONS}]"))]
    pub confirmations: Option<u64>,
    /// Polling interval.
    #[arg(long = "chain.poll-interval", env = "SEQUENCER_CHAIN_POLL_INTERVAL", value_name = "DURATION", value_parser = parse_duration, help = "How often the chain is polled for events and receipts, e.g. 200ms or 2s [default: 1s]")]
    pub poll_interval: Option<Duration>,
    /// Largest `eth_getLogs` range.
    #[arg(long = "chain.log-range", env = "SEQUENCER_CHAIN_LOG_RANGE", value_name = "BLOCKS", help = format!("Largest block range of one eth_getLogs request (RPC providers cap it); longer scans are split [default: {}]", crate::chain::client::DEFAULT_LOG_RANGE))]
    pub log_range: Option<u64>,
    /// Wait before a fee bump.
    #[arg(long = "chain.bump-after", env = "SEQUENCER_CHAIN_BUMP_AFTER", value_name = "DURATION", value_parser = parse_duration, help = format!("How long a transaction (a batch or a game move) may wait unmined before it is replaced with higher fees (same nonce, both fees +12.5% or the node's estimate), e.g. 12s [default: {}s]", crate::batching::DEFAULT_BUMP_AFTER.as_secs()))]
    pub bump_after: Option<Duration>,
    /// Fee ceiling.
    #[arg(
        long = "chain.max-fee-per-gas",
        env = "SEQUENCER_CHAIN_MAX_FEE_PER_GAS",
        value_name = "WEI",
        help = "The highest maxFeePerGas a transaction may offer, in wei (e.g. 200000000000 = 200 gwei); while the chain's base fee is above it, transactions wait [default: no ceiling]"
    )]
    pub max_fee_per_gas: Option<u64>,
}

impl ChainArgs {
    /// Whether any chain flag was given.
    pub fn any(&self) -> bool {
        self.rpc_url.is_some()
            || self.rollup.is_some()
            || self.key.is_some()
            || self.key_file.is_some()
            || self.from_block.is_some()
            || self.confirmations.is_some()
            || self.poll_interval.is_some()
            || self.log_range.is_some()
            || self.bump_after.is_some()
            || self.max_fee_per_gas.is_some()
    }

    /// Applies the flags given over `config` (creating it if any flag is given).
    pub fn apply(self, config: &mut Option<ChainConfig>) {
        if !self.any() {
            return;
        }
        let c = config.get_or_insert_with(ChainConfig::default);
        if let Some(v) = self.rpc_url {
            c.rpc_url = v;
        }
        if let Some(v) = self.rollup {
            c.rollup = v;
        }
        if let Some(v) = self.key {
            c.key = Some(SecretKey(v));
        }
        if let Some(v) = self.key_file {
            c.key_file = Some(v);
        }
        if let Some(v) = self.from_block {
            c.from_block = v;
        }
        if let Some(v) = self.confirmations {
            c.confirmations = v;
        }
        if let Some(v) = self.poll_interval {
            c.poll_interval = v;
        }
        if let Some(v) = self.log_range {
            c.log_range = v;
        }
        if let Some(v) = self.bump_after {
            c.bump_after = v;
        }
        if let Some(v) = self.max_fee_per_gas {
            c.max_fee_per_gas = Some(v);
        }
    }
}

/// Development flags.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Development (tests and devnets only)")]
pub struct DevArgs {
    /// The op to lie at.
    #[arg(
        long = "dev.lie-op",
        env = "SEQUENCER_DEV_LIE_OP",
        value_name = "N",
        help = "For tests and devnets only: post wrong outputs, lying at op N (1-based trace index) leaf J (--dev.lie-leaf), and defend them"
    )]
    pub lie_op: Option<usize>,
    /// The leaf to lie at.
    #[arg(
        long = "dev.lie-leaf",
        env = "SEQUENCER_DEV_LIE_LEAF",
        value_name = "J",
        help = "For tests and devnets only: the 32-byte leaf J of op N's output that the lie changes [default: 0]"
    )]
    pub lie_leaf: Option<usize>,
}

/// Logging flags.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// A `tracing` filter.
    #[arg(long = "log.filter", env = "SEQUENCER_LOG_FILTER", value_name = "FILTER", help = format!("Log filter, e.g. info or info,sequencer=debug (RUST_LOG syntax) [default: {DEFAULT_LOG_FILTER}]"))]
    pub filter: Option<String>,
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("http.max-body-bytes", self.http.max_body_bytes),
            ("http.max-text-bytes", self.http.max_text_bytes),
            ("exec.max-batch", self.exec.max_batch),
            ("exec.queue-limit", self.exec.queue_limit),
            ("batch.max-size", self.batch.max_size),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        if self.dev.lie_op == Some(0) {
            return Err(ConfigError::Invalid {
                key: "dev.lie-op",
                message: "ops are numbered from 1".into(),
            });
        }
        if let Some(c) = &self.chain {
            if c.rollup == alloy::primitives::Address::ZERO {
                return Err(ConfigError::Invalid {
                    key: "chain.rollup",
                    message: "the rollup address is needed with [chain] (--chain.rollup)".into(),
                });
            }
            if c.confirmations == 0 {
                return Err(ConfigError::Invalid {
                    key: "chain.confirmations",
                    message: "must be at least 1 (1: mined)".into(),
                });
            }
            if c.log_range == 0 {
                return Err(ConfigError::Invalid {
                    key: "chain.log_range",
                    message: "must be at least 1 block".into(),
                });
            }
            if c.max_fee_per_gas == Some(0) {
                return Err(ConfigError::Invalid {
                    key: "chain.max-fee-per-gas",
                    message: "a ceiling of 0 wei would never post; leave it out for none".into(),
                });
            }
        }
        if self.model.dirs.is_empty() {
            return Err(ConfigError::Invalid {
                key: "model.dir",
                message: "at least one model directory is needed".into(),
            });
        }
        Ok(())
    }
}

/// Every flag of `sequencer run`, by concern.
#[derive(Args, Clone, Debug, Default)]
pub struct NodeArgs {
    /// HTTP API.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Database.
    #[command(flatten)]
    pub db: DbArgs,
    /// Models.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Execution.
    #[command(flatten)]
    pub exec: ExecArgs,
    /// Batching.
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
    /// Chain.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Development.
    #[command(flatten)]
    pub dev: DevArgs,
}

impl NodeArgs {
    /// Applies the flags given over `config`.
    pub fn apply(self, config: &mut Config) {
        fn set<T>(slot: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *slot = v;
            }
        }
        set(&mut config.http.addr, self.http.addr);
        set(&mut config.http.max_body_bytes, self.http.max_body_bytes);
        set(&mut config.http.max_text_bytes, self.http.max_text_bytes);
        set(&mut config.http.wait_timeout, self.http.wait_timeout);
        set(&mut config.http.threads, self.http.threads);
        set(&mut config.db.path, self.db.path);
        if !self.model.dirs.is_empty() {
            config.model.dirs = self.model.dirs;
        }
        set(&mut config.exec.threads, self.exec.threads);
        set(&mut config.exec.max_batch, self.exec.max_batch);
        set(&mut config.exec.stack, self.exec.stack);
        set(&mut config.exec.queue_limit, self.exec.queue_limit);
        set(&mut config.batch.max_size, self.batch.max_size);
        set(&mut config.batch.max_age, self.batch.max_age);
        set(&mut config.exec.backend, self.exec.backend);
        set(&mut config.exec.store_gather, self.exec.store_gather);
        set(&mut config.log.filter, self.log.filter);
        self.chain.apply(&mut config.chain);
        if self.dev.lie_op.is_some() {
            config.dev.lie_op = self.dev.lie_op;
        }
        if self.dev.lie_leaf.is_some() {
            config.dev.lie_leaf = self.dev.lie_leaf;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("2 days").is_err());
        assert!(parse_duration("fast").is_err());
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
    }

    #[test]
    fn file_then_flags() {
        let config: Config = toml::from_str(
            "[batch]\nmax_size = 8\nmax_age = \"250ms\"\n[http]\naddr = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        assert_eq!(config.batch.max_size, 8);
        assert_eq!(config.batch.max_age, Duration::from_millis(250));
        assert_eq!(config.exec, ExecConfig::default());
        let mut merged = config.clone();
        NodeArgs {
            batch: BatchArgs {
                max_size: Some(16),
                max_age: None,
            },
            ..NodeArgs::default()
        }
        .apply(&mut merged);
        assert_eq!(merged.batch.max_size, 16);
        assert_eq!(merged.batch.max_age, Duration::from_millis(250));
        assert!(toml::from_str::<Config>("[batch]\nmax_sise = 8\n").is_err());
        // [chain]: absent by default; a flag creates it over the file's values.
        assert_eq!(config.chain, None);
        let chain: Config = toml::from_str(
            "[chain]\nrpc_url = \"http://node:8545\"\nrollup = \"0x00000000000000000000000000000000000000aa\"\npoll_interval = \"200ms\"\n",
        )
        .unwrap();
        let mut merged = chain.clone();
        NodeArgs {
            chain: ChainArgs {
                confirmations: Some(3),
                key: Some("secret".into()),
                ..ChainArgs::default()
            },
            ..NodeArgs::default()
        }
        .apply(&mut merged);
        let c = merged.chain.as_ref().unwrap();
        assert_eq!(c.rpc_url, "http://node:8545");
        assert_eq!(c.poll_interval, Duration::from_millis(200));
        assert_eq!(c.confirmations, 3);
        assert!(
            !format!("{merged:?}").contains("secret"),
            "the key is never shown"
        );
        assert!(merged.validate().is_ok());
        assert!(toml::from_str::<Config>("[chain]\nkey = \"00\"\n").is_err());
        // The example file parses and matches the defaults.
        let example: Config = toml::from_str(include_str!("../sequencer.example.toml")).unwrap();
        assert_eq!(example, Config::default());
    }
}
