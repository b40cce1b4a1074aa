//! The `challenger` command: follows a rollup, re-executes its claims on the CPU and
//! disputes the wrong ones. Every flag also reads an environment variable and the TOML
//! file given with `--config` (flag > environment > file > default).

/// mimalloc, as the engine's other binaries: the engine allocates a tensor per op, and
/// glibc's malloc cost about 7% of a sentence at batch 1.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use alloy::primitives::{Address, B256, U256};
use alloy::rpc::types::Filter;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use challenger::bot::{DEFAULT_CONCURRENCY, DEFAULT_POLL_INTERVAL};
use challenger::{Challenger, ChallengerConfig, Metrics, ModelStore, check_entry};
use clap::{Args, Parser, Subcommand};
use eyre::{Context, bail, eyre};
use inference::trace::run;
use sequencer::chain::bindings::InferenceRollup;
use sequencer::chain::{BatchEntry, ChainClient, ClientConfig, to_h256};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default progress database directory.
const DEFAULT_DB_PATH: &str = "challenger-db";
/// Default metrics listen address.
const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9101";

/// Challenger bot for the fraud-proof ML inference rollup.
///
/// Follows the rollup contract from a start block, decodes every posted batch from its
/// calldata, re-executes the claims (all, or a sample) with the CPU reference engine, and when
/// a claimed output is wrong opens a dispute with its bond and plays the bisection game to
/// the end, then withdraws its winnings. Models come from local directories
/// (`--model.dir`) or from the URI each model was registered with (`file://` paths); a model
/// is only trusted if its files give its registered id.
#[derive(Parser, Debug)]
#[command(name = "challenger", version)]
struct Cli {
    /// A TOML file with any of the flags below (keys as the long flag names, dotted keys as
    /// tables: `[check] concurrency = 4`).
    #[arg(long, env = "CHALLENGER_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(
        long = "log.filter",
        env = "CHALLENGER_LOG",
        default_value = "info",
        global = true
    )]
    log_filter: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Follow the rollup and dispute wrong claims (or only report them with `--dry-run`).
    Run {
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        models: ModelArgs,
        #[command(flatten)]
        check: CheckArgs,
        /// Directory of the progress database (MDBX): cursor, checked batches, games.
        #[arg(long = "db.path", env = "CHALLENGER_DB", help_heading = "Storage")]
        db_path: Option<PathBuf>,
        /// Prometheus metrics listen address (`/metrics`).
        #[arg(
            long = "metrics.addr",
            env = "CHALLENGER_METRICS_ADDR",
            help_heading = "Metrics"
        )]
        metrics_addr: Option<String>,
    },
    /// Re-execute every claim of one batch and report, without disputing.
    Check {
        /// The batch id.
        batch: u64,
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        models: ModelArgs,
        #[command(flatten)]
        check: CheckArgs,
    },
    /// Measure claims re-executed per second on a model, per core and in all.
    Bench {
        #[command(flatten)]
        models: ModelArgs,
        /// Claims to re-execute.
        #[arg(long, default_value_t = 64)]
        claims: usize,
        /// Threads (1 gives the per-core figure).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Chain")]
struct ChainArgs {
    /// JSON-RPC endpoint of the settlement chain.
    #[arg(long = "rpc-url", env = "CHALLENGER_RPC_URL")]
    rpc_url: Option<String>,
    /// Address of the InferenceRollup contract.
    #[arg(long, env = "CHALLENGER_ROLLUP")]
    rollup: Option<Address>,
    /// Private key (hex) paying bonds and gas.
    #[arg(long, env = "CHALLENGER_KEY", hide_env_values = true)]
    key: Option<String>,
    /// First block to follow from.
    #[arg(long = "chain.start-block", env = "CHALLENGER_START_BLOCK")]
    start_block: Option<u64>,
    /// Blocks to stay behind the head.
    #[arg(long = "chain.confirmations", env = "CHALLENGER_CONFIRMATIONS")]
    confirmations: Option<u64>,
    /// Poll interval once caught up, in milliseconds.
    #[arg(long = "chain.poll-ms", env = "CHALLENGER_POLL_MS")]
    poll_ms: Option<u64>,
    /// Largest block range of one eth_getLogs request (RPC providers cap it); longer
    /// scans are split [default: 2000].
    #[arg(
        long = "chain.log-range",
        env = "CHALLENGER_LOG_RANGE",
        value_name = "BLOCKS"
    )]
    log_range: Option<u64>,
}

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Models")]
struct ModelArgs {
    /// A model directory or an encoder family directory; repeatable.
    #[arg(
        long = "model.dir",
        env = "CHALLENGER_MODEL_DIR",
        value_delimiter = ','
    )]
    model_dirs: Vec<PathBuf>,
}

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Checking")]
struct CheckArgs {
    /// Claims re-executed at once.
    #[arg(long = "check.concurrency", env = "CHALLENGER_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Share of claims re-executed, 0..=1 (chosen by a hash of the request id).
    #[arg(long = "check.sample-rate", env = "CHALLENGER_SAMPLE_RATE")]
    sample_rate: Option<f64>,
    /// Always re-execute claims of on-chain requests paying at least this fee (wei).
    #[arg(long = "check.always-above-fee", env = "CHALLENGER_ALWAYS_ABOVE_FEE")]
    always_above_fee: Option<U256>,
    /// Report wrong claims without disputing them.
    #[arg(long = "dry-run", env = "CHALLENGER_DRY_RUN")]
    dry_run: bool,
}

/// The TOML config file.
#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    #[serde(rename = "rpc-url")]
    rpc_url: Option<String>,
    rollup: Option<Address>,
    key: Option<String>,
    chain: ChainFile,
    model: ModelFile,
    check: CheckFile,
    metrics: MetricsFile,
    db: DbFile,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
struct DbFile {
    path: Option<PathBuf>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
struct ChainFile {
    #[serde(rename = "start-block")]
    start_block: Option<u64>,
    confirmations: Option<u64>,
    #[serde(rename = "poll-ms")]
    poll_ms: Option<u64>,
    #[serde(rename = "log-range")]
    log_range: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
struct ModelFile {
    dir: Vec<PathBuf>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
struct CheckFile {
    concurrency: Option<usize>,
    #[serde(rename = "sample-rate")]
    sample_rate: Option<f64>,
    #[serde(rename = "always-above-fee")]
    always_above_fee: Option<U256>,
    #[serde(rename = "dry-run")]
    dry_run: Option<bool>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
struct MetricsFile {
    addr: Option<String>,
}

fn load_file(path: &Option<PathBuf>) -> eyre::Result<FileConfig> {
    match path {
        Some(p) => toml::from_str(
            &std::fs::read_to_string(p).wrap_err_with(|| format!("reading {}", p.display()))?,
        )
        .wrap_err_with(|| format!("parsing {}", p.display())),
        None => Ok(FileConfig::default()),
    }
}

fn store(models: &ModelArgs, file: &FileConfig) -> eyre::Result<Arc<ModelStore>> {
    let store = Arc::new(ModelStore::new());
    let dirs = if models.model_dirs.is_empty() {
        &file.model.dir
    } else {
        &models.model_dirs
    };
    for dir in dirs {
        let ids = store
            .load_dir(dir)
            .wrap_err_with(|| format!("loading {}", dir.display()))?;
        for id in ids {
            tracing::info!(target: "challenger", model = %id, dir = %dir.display(), "model loaded");
        }
    }
    Ok(store)
}

async fn client(chain: &ChainArgs, file: &FileConfig) -> eyre::Result<ChainClient> {
    let url = chain
        .rpc_url
        .clone()
        .or(file.rpc_url.clone())
        .ok_or_else(|| eyre!("--rpc-url is required"))?;
    let rollup = chain
        .rollup
        .or(file.rollup)
        .ok_or_else(|| eyre!("--rollup is required"))?;
    let key = chain
        .key
        .clone()
        .or(file.key.clone())
        .ok_or_else(|| eyre!("--key is required"))?;
    let signer: PrivateKeySigner = key.trim().parse().wrap_err("--key is not a private key")?;
    let mut config = ClientConfig::default();
    if let Some(blocks) = chain.log_range.or(file.chain.log_range) {
        if blocks == 0 {
            return Err(eyre!("--chain.log-range must be at least 1 block"));
        }
        config.log_range = blocks;
    }
    Ok(ChainClient::connect(&url, signer, rollup, config).await?)
}

fn bot_config(
    chain: &ChainArgs,
    check: &CheckArgs,
    file: &FileConfig,
) -> eyre::Result<ChallengerConfig> {
    let sample_rate = check.sample_rate.or(file.check.sample_rate).unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_rate) {
        bail!("--check.sample-rate must be in 0..=1, got {sample_rate}");
    }
    Ok(ChallengerConfig {
        concurrency: check
            .concurrency
            .or(file.check.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY),
        sample_rate,
        always_check_fee: check.always_above_fee.or(file.check.always_above_fee),
        dry_run: check.dry_run || file.check.dry_run.unwrap_or(false),
        start_block: chain.start_block.or(file.chain.start_block).unwrap_or(0),
        confirmations: chain
            .confirmations
            .or(file.chain.confirmations)
            .unwrap_or(0),
        poll_interval: chain
            .poll_ms
            .or(file.chain.poll_ms)
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_POLL_INTERVAL),
        ..ChallengerConfig::default()
    })
}

async fn serve_metrics(addr: String, metrics: Arc<Metrics>) -> eyre::Result<()> {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut out = String::new();
                match prometheus_client::encoding::text::encode(&mut out, &registry) {
                    Ok(()) => (axum::http::StatusCode::OK, out),
                    Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .wrap_err_with(|| format!("binding {addr}"))?;
    tracing::info!(target: "challenger", %addr, "metrics at /metrics");
    axum::serve(listener, app).await?;
    Ok(())
}

fn bench(models: &ModelArgs, claims: usize, threads: usize) -> eyre::Result<()> {
    let store = store(models, &FileConfig::default())?;
    let dir = models
        .model_dirs
        .first()
        .ok_or_else(|| eyre!("--model.dir is required"))?;
    let model = challenger::models::load_model_dir(dir)
        .or_else(|_| {
            // A family directory: bench its first (shortest) bucket.
            let family = inference::import::bert::Family::from_json(&std::fs::read(
                dir.join(inference::import::bert::FAMILY_FILE),
            )?)?;
            let id = family.buckets[0].model_id;
            store
                .get(&id)
                .map(|m| (*m).clone())
                .ok_or_else(|| eyre!("model {id} not loaded"))
        })
        .wrap_err("loading the model")?;
    let program = model.program();
    // Inputs: the model's input type filled with a deterministic pattern (token ids within
    // MiniLM's vocabulary and a full mask for two-row inputs).
    let ty = &program.input;
    let numel = ty.numel();
    let entries: Vec<BatchEntry> = (0..claims)
        .map(|c| {
            let v: Vec<i32> = (0..numel)
                .map(|i| {
                    if ty.shape.len() == 2 && i >= numel / 2 {
                        1
                    } else {
                        (101 + (c * 31 + i * 7) % 20_000) as i32
                    }
                })
                .collect();
            let x = inference::Tensor::from_i32(ty.shape.clone(), v)?;
            let y = run(program, model.weights(), &x)?;
            Ok(BatchEntry {
                request_id: inference::merkle::H256::ZERO,
                model_id: model.id(),
                input: x,
                output: y,
            })
        })
        .collect::<eyre::Result<_>>()?;
    let start = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(e) = entries.get(i) else { break };
                    let v = check_entry(&model, e);
                    assert_eq!(v, challenger::Verdict::Correct);
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let rate = claims as f64 / secs;
    print_out(&format!(
        "model {} ({} ops, input {}): {claims} claims in {secs:.2} s on {threads} thread(s): {rate:.2} claims/s, {:.2} claims/s per thread",
        model.id(),
        program.ops.len(),
        program.input,
        rate / threads.max(1) as f64
    ))
}

/// Prints `text` and a newline on stdout ([`sequencer::print_out`]: quiet on a closed pipe).
fn print_out(text: &str) -> eyre::Result<()> {
    sequencer::print_out(text).wrap_err("writing to stdout")
}

#[tokio::main]
async fn main() -> eyre::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log_filter)?)
        .init();
    let file = load_file(&cli.config)?;
    match cli.command {
        Command::Bench {
            models,
            claims,
            threads,
        } => bench(&models, claims, threads),
        Command::Run {
            chain,
            models,
            check,
            db_path,
            metrics_addr,
        } => {
            let config = bot_config(&chain, &check, &file)?;
            let store = store(&models, &file)?;
            let client = client(&chain, &file).await?;
            let metrics = Arc::new(Metrics::default());
            let addr = metrics_addr
                .or(file.metrics.addr.clone())
                .unwrap_or_else(|| DEFAULT_METRICS_ADDR.to_string());
            let server = tokio::spawn(serve_metrics(addr, metrics.clone()));
            tracing::info!(target: "challenger", account = %client.account(), rollup = %client.addresses().rollup, dry_run = config.dry_run, "following");
            let db_path = db_path
                .or(file.db.path.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DB_PATH));
            let db = challenger::db::ChallengerDb::open(&db_path)
                .wrap_err_with(|| format!("opening {}", db_path.display()))?;
            let mut bot = Challenger::new(client, store, config, metrics)
                .with_db(db)
                .await?;
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            bot.run(shutdown).await?;
            server.abort();
            Ok(())
        }
        Command::Check {
            batch,
            chain,
            models,
            check,
        } => {
            let mut config = bot_config(&chain, &check, &file)?;
            config.dry_run = true;
            let store = store(&models, &file)?;
            let client = client(&chain, &file).await?;
            let filter = Filter::new()
                .address(client.addresses().rollup)
                .event_signature(InferenceRollup::BatchPosted::SIGNATURE_HASH)
                .topic1(B256::from(U256::from(batch)));
            let log = client
                .first_log("getLogs BatchPosted", &filter, config.start_block)
                .await?
                .ok_or_else(|| eyre!("batch {batch} was not posted"))?;
            let posted = InferenceRollup::BatchPosted::decode_log(&log.inner)?;
            let tx = log
                .transaction_hash
                .ok_or_else(|| eyre!("the node gave no transaction hash"))?;
            let mut bot = Challenger::new(client, store, config, Arc::new(Metrics::default()));
            let report = bot
                .check_batch(
                    batch,
                    tx,
                    to_h256(posted.claimsRoot),
                    posted.count,
                    log.block_number.unwrap_or_default(),
                )
                .await?;
            if let Some(e) = &report.error {
                print_out(&format!("batch {batch}: bad data: {e}"))?;
            }
            for (i, c) in report.claims.iter().enumerate() {
                print_out(&format!("batch {batch} claim {i}: {c:?}"))?;
            }
            Ok(())
        }
    }
}
