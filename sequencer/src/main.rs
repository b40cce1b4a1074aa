//! The `sequencer` binary: parses the command line and runs the library.

/// mimalloc, as the engine's other binaries: the engine allocates a tensor per op, and
/// glibc's malloc cost about 7% of a sentence at batch 1 (`inference bench-embed`); the
/// serving ratio (`bench_serve --no-chain`) measured the same with either.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand};
use eyre::{Context, Result};
use sequencer::config::{Config, DEFAULT_DB_PATH, NodeArgs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The sequencer of the fpml rollup: serves ML inference over HTTP and from the rollup's
/// on-chain requests, commits every output in a claim, batches claims under Merkle roots,
/// posts them to the rollup, defends them in dispute games, and keeps everything in an MDBX
/// database that survives crashes.
///
/// Every flag can also be set with its environment variable (shown in brackets) or in a
/// TOML file given with --config (see sequencer/sequencer.example.toml); flags and
/// variables override the file.
#[derive(Parser, Debug)]
#[command(name = "sequencer", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service: HTTP API, execution, batching; with [chain] (or --chain.* flags)
    /// also posting, on-chain requests and the defence of disputed claims.
    Run(Box<RunArgs>),
    /// Inspect the database.
    #[command(subcommand)]
    Db(DbCommand),
    /// Operator commands on the rollup: deploy (devnets), register models, stake, status.
    #[command(subcommand)]
    Chain(chain_cmd::ChainCommand),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// A TOML configuration file; flags and environment variables override it.
    #[arg(long, env = "SEQUENCER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Subcommand, Debug)]
enum DbCommand {
    /// Entries and size of each table, requests by status, batches by status (JSON).
    Stats(DbPathArgs),
}

#[derive(Args, Debug)]
struct DbPathArgs {
    /// The MDBX database directory.
    #[arg(long = "db.path", env = "SEQUENCER_DB_PATH", value_name = "DIR", default_value = DEFAULT_DB_PATH)]
    path: PathBuf,
}

fn init_logs(filter: &str) -> Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .wrap_err_with(|| format!("bad --log.filter {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn run(args: RunArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    args.node.apply(&mut config);
    init_logs(&config.log.filter)?;
    config.validate()?;
    let runtime = sequencer::service::runtime(&config).wrap_err("starting the async runtime")?;
    runtime.block_on(async {
        let mut executor =
            sequencer::backend::make_executor(config.exec.backend, config.exec.threads)?;
        let lie = config.dev.lie();
        if let Some(lie) = lie {
            tracing::warn!(target: "sequencer", %lie, "DEVELOPMENT MODE: posting wrong outputs (lying at op:leaf) and defending them");
            executor = Arc::new(sequencer::dev::LyingExecutor::new(executor, lie));
        }
        let Some(chain) = config.chain.clone() else {
            tracing::info!(target: "sequencer", "no [chain] configured: serving HTTP and building batches, posting nothing (see --chain.rpc-url, --chain.rollup, --chain.key)");
            let running = sequencer::service::start_with(config, executor).await?;
            shutdown_signal().await;
            tracing::info!(target: "sequencer", "shutting down");
            running.stop().await;
            return Ok(());
        };
        let (client, signer) = sequencer::node::connect(&chain).await?;
        let standing = sequencer::node::check_sequencer(&client).await?;
        let a = client.addresses();
        tracing::info!(target: "sequencer", account = %client.account(), rollup = %a.rollup, games = %a.games, registry = %a.registry, stake_wei = %standing.stake, "chain: registered sequencer");
        let running =
            sequencer::service::start_node(config, executor, client.account().into_array())
                .await?;
        let tasks = sequencer::node::spawn(&running, client, signer, &chain, lie).await?;
        shutdown_signal().await;
        tracing::info!(target: "sequencer", "shutting down");
        running.stop().await;
        tasks.join(Duration::from_secs(10)).await;
        Ok(())
    })
}

fn db_stats(args: DbPathArgs) -> Result<()> {
    let db = sequencer::db::SequencerDb::open(&args.path)
        .wrap_err_with(|| format!("opening {}", args.path.display()))?;
    let report = sequencer::db::inspect(&db)?;
    print_out(&serde_json::to_string_pretty(&report)?)
}

/// Prints `text` and a newline on stdout ([`sequencer::print_out`]: quiet on a closed pipe).
fn print_out(text: &str) -> Result<()> {
    sequencer::print_out(text).wrap_err("writing to stdout")
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Db(DbCommand::Stats(args)) => db_stats(args),
        Command::Chain(cmd) => chain_cmd::run(cmd),
    }
}

/// `sequencer chain ...`: operator commands on the rollup.
mod chain_cmd {
    use alloy::network::EthereumWallet;
    use alloy::primitives::{Address, U256};
    use alloy::providers::{Provider, ProviderBuilder};
    use clap::{Args, Subcommand};
    use eyre::{Context, Result, eyre};
    use sequencer::chain::deploy::{DeployConfig, register_model};
    use sequencer::chain::{ChainClient, ClientConfig, to_b256};
    use sequencer::config::{ChainConfig, DEFAULT_CHAIN_RPC_URL, SecretKey};
    use serde_json::json;
    use std::path::PathBuf;

    #[derive(Subcommand, Debug)]
    pub enum ChainCommand {
        /// For devnets: deploy the model registry, the one-step verifier, the dispute games
        /// and the rollup from the key's account, with the parameters given (defaults: the
        /// production defaults of `DeployConfig`), and print the addresses and the block of
        /// the deployment as JSON (pass `rollup` to --chain.rollup, `block` to
        /// --chain.from-block).
        Deploy(Box<DeployArgs>),
        /// Register every bucket of an encoder family (from `inference model prepare`) in the
        /// rollup's model registry. Idempotent: an already registered bucket is reported as
        /// such, not an error.
        RegisterModel(RegisterModelArgs),
        /// Register the key as a sequencer with --amount wei of stake (at least the rollup's
        /// minimum), or, if it is registered already, add --amount wei to its stake.
        Stake(StakeArgs),
        /// Show the key's standing on the rollup: registration, stake (free and minimum),
        /// balance, batches posted (as seen in the rollup's events), dispute games against
        /// it (open, won, lost) and game payouts not withdrawn.
        Status(StatusArgs),
    }

    /// How to reach the chain and sign.
    #[derive(Args, Debug, Clone)]
    pub struct KeyArgs {
        /// The node's JSON-RPC endpoint.
        #[arg(long = "chain.rpc-url", env = "SEQUENCER_CHAIN_RPC_URL", value_name = "URL", default_value = DEFAULT_CHAIN_RPC_URL)]
        pub rpc_url: String,
        /// The private key (hex); prefer the environment variable or --chain.key-file. Never
        /// printed.
        #[arg(
            long = "chain.key",
            env = "SEQUENCER_CHAIN_KEY",
            value_name = "HEX",
            hide_env_values = true
        )]
        pub key: Option<String>,
        /// A file holding the private key (hex).
        #[arg(
            long = "chain.key-file",
            env = "SEQUENCER_CHAIN_KEY_FILE",
            value_name = "FILE"
        )]
        pub key_file: Option<PathBuf>,
        /// Print JSON instead of plain text.
        #[arg(long)]
        pub json: bool,
    }

    /// The rollup to act on.
    #[derive(Args, Debug, Clone)]
    pub struct RollupArgs {
        /// The rollup contract (the registry and games addresses are read from it).
        #[arg(
            long = "chain.rollup",
            env = "SEQUENCER_CHAIN_ROLLUP",
            value_name = "ADDRESS"
        )]
        pub rollup: Address,
    }

    #[derive(Args, Debug)]
    pub struct DeployArgs {
        #[command(flatten)]
        key: KeyArgs,
        /// Smallest stake a sequencer needs to post, in wei.
        #[arg(long, value_name = "WEI")]
        min_stake: Option<u128>,
        /// Challenge window of a batch, in seconds.
        #[arg(long, value_name = "SECONDS")]
        challenge_window: Option<u64>,
        /// Delay of stake withdrawals, in seconds (at least the challenge window).
        #[arg(long, value_name = "SECONDS")]
        withdrawal_delay: Option<u64>,
        /// Gas of a requester's callback.
        #[arg(long, value_name = "GAS")]
        callback_gas_limit: Option<u64>,
        /// After how long an unsettled request can be refunded, in seconds.
        #[arg(long, value_name = "SECONDS")]
        request_timeout: Option<u64>,
        /// Dissection degree of the games (at least 2).
        #[arg(long, value_name = "N")]
        degree: Option<u32>,
        /// Tensor-tree levels revealed per tensor-bisection move.
        #[arg(long, value_name = "N")]
        tensor_levels: Option<u32>,
        /// Each side's chess clock in a game, in seconds.
        #[arg(long, value_name = "SECONDS")]
        clock_seconds: Option<u64>,
        /// The challenger's bond, in wei.
        #[arg(long, value_name = "WEI")]
        challenger_bond: Option<u128>,
        /// The part of the sequencer's stake a game puts at risk, in wei.
        #[arg(long, value_name = "WEI")]
        defender_bond: Option<u128>,
        /// Share of the loser's bond burnt, in basis points.
        #[arg(long, value_name = "BPS")]
        burn_bps: Option<u32>,
    }

    #[derive(Args, Debug)]
    pub struct RegisterModelArgs {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        rollup: RollupArgs,
        /// The encoder family directory (with family.json).
        #[arg(long = "model.dir", env = "SEQUENCER_MODEL_DIR", value_name = "DIR")]
        dir: PathBuf,
        /// Where the files can be fetched: each bucket is registered with URI/<bucket dir>
        /// [default: file://<absolute DIR>]
        #[arg(long, value_name = "URI")]
        uri: Option<String>,
    }

    #[derive(Args, Debug)]
    pub struct StakeArgs {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        rollup: RollupArgs,
        /// Wei to stake (registering) or to add.
        #[arg(long, value_name = "WEI")]
        amount: U256,
    }

    #[derive(Args, Debug)]
    pub struct StatusArgs {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        rollup: RollupArgs,
    }

    fn signer(k: &KeyArgs) -> Result<alloy::signers::local::PrivateKeySigner> {
        let c = ChainConfig {
            key: k.key.clone().map(SecretKey),
            key_file: k.key_file.clone(),
            ..ChainConfig::default()
        };
        Ok(c.signer()?)
    }

    async fn client(k: &KeyArgs, rollup: Address) -> Result<ChainClient> {
        let signer = signer(k)?;
        ChainClient::connect(&k.rpc_url, signer, rollup, ClientConfig::default())
            .await
            .wrap_err_with(|| format!("connecting to {} (rollup {rollup})", k.rpc_url))
    }

    fn print(json: bool, value: serde_json::Value, plain: String) -> Result<()> {
        if json {
            super::print_out(&serde_json::to_string_pretty(&value)?)
        } else {
            super::print_out(&plain)
        }
    }

    pub fn run(cmd: ChainCommand) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .wrap_err("starting the async runtime")?;
        runtime.block_on(async {
            match cmd {
                ChainCommand::Deploy(a) => deploy(*a).await,
                ChainCommand::RegisterModel(a) => register(a).await,
                ChainCommand::Stake(a) => stake(a).await,
                ChainCommand::Status(a) => status(a).await,
            }
        })
    }

    async fn deploy(a: DeployArgs) -> Result<()> {
        let mut config = DeployConfig::default();
        let g = &mut config.game;
        if let Some(d) = a.degree {
            g.degree = bisection::DissectionDegree::new(d)
                .ok_or_else(|| eyre!("--degree {d}: at least 2"))?;
        }
        macro_rules! set {
            ($slot:expr, $v:expr) => {
                if let Some(v) = $v {
                    $slot = v;
                }
            };
        }
        set!(g.tensor_levels, a.tensor_levels);
        set!(g.clock_seconds, a.clock_seconds);
        set!(g.challenger_bond, a.challenger_bond);
        set!(g.defender_bond, a.defender_bond);
        set!(g.burn_bps, a.burn_bps);
        set!(config.min_stake, a.min_stake);
        set!(config.challenge_window, a.challenge_window);
        set!(config.withdrawal_delay, a.withdrawal_delay);
        set!(config.callback_gas_limit, a.callback_gas_limit);
        set!(config.request_timeout, a.request_timeout);
        let signer = signer(&a.key)?;
        let from = signer.address();
        let url = a
            .key
            .rpc_url
            .parse()
            .wrap_err_with(|| format!("bad --chain.rpc-url {:?}", a.key.rpc_url))?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(url)
            .erased();
        let block = provider
            .get_block_number()
            .await
            .wrap_err_with(|| format!("reaching {}", a.key.rpc_url))?;
        let d = sequencer::chain::deploy::deploy(provider, from, &config)
            .await
            .wrap_err("deploying the contracts")?;
        let value = json!({
            "registry": d.registry,
            "verifier": d.verifier,
            "games": d.games,
            "rollup": d.rollup,
            "deployer": from,
            "block": block,
        });
        // The addresses are printed as JSON either way (scripts read them).
        super::print_out(&serde_json::to_string_pretty(&value)?)
    }

    async fn register(a: RegisterModelArgs) -> Result<()> {
        let dir = a
            .dir
            .canonicalize()
            .wrap_err_with(|| format!("--model.dir {}", a.dir.display()))?;
        let index_path = dir.join(inference::import::bert::FAMILY_FILE);
        let index = inference::import::bert::Family::from_json(
            &std::fs::read(&index_path)
                .wrap_err_with(|| format!("reading {}", index_path.display()))?,
        )
        .wrap_err_with(|| format!("{}", index_path.display()))?;
        let client = client(&a.key, a.rollup.rollup).await?;
        let base = a
            .uri
            .unwrap_or_else(|| format!("file://{}", dir.display()))
            .trim_end_matches('/')
            .to_string();
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        let mut memo = inference::commit::TensorHashMemo::new();
        for b in &index.buckets {
            let model = sequencer::execution::load_model_memo(&dir.join(&b.dir), &mut memo)?;
            let id = model.id();
            let known = client
                .registry()
                .isRegistered(to_b256(id))
                .call()
                .await
                .wrap_err("registry.isRegistered")?;
            let uri = format!("{base}/{}", b.dir);
            let status = if known {
                "already registered"
            } else {
                register_model(
                    client.provider().clone(),
                    client.addresses().registry,
                    &model,
                    &uri,
                )
                .await
                .wrap_err_with(|| format!("registering {}", b.dir))?;
                "registered"
            };
            lines.push(format!("{} (seq {}): {id} {status}", b.dir, b.seq_len));
            rows.push(json!({
                "bucket": b.dir,
                "seqLen": b.seq_len,
                "modelId": id,
                "uri": uri,
                "status": status,
            }));
        }
        print(
            a.key.json,
            json!({ "model": index.model, "registry": client.addresses().registry, "buckets": rows }),
            lines.join("\n"),
        )
    }

    async fn stake(a: StakeArgs) -> Result<()> {
        let client = client(&a.key, a.rollup.rollup).await?;
        let account = client.account();
        let before = sequencer::node::standing(&client, account).await?;
        let (action, receipt) = if before.registered {
            ("added", client.add_stake(a.amount).await?)
        } else {
            if a.amount < before.min_stake {
                return Err(eyre!(
                    "registering needs at least {} wei of stake (--amount {})",
                    before.min_stake,
                    a.amount
                ));
            }
            ("registered", client.register_sequencer(a.amount).await?)
        };
        let after = sequencer::node::standing(&client, account).await?;
        print(
            a.key.json,
            json!({
                "account": account,
                "action": action,
                "amountWei": a.amount.to_string(),
                "stakeWei": after.stake.to_string(),
                "freeStakeWei": after.free_stake.to_string(),
                "minStakeWei": after.min_stake.to_string(),
                "tx": receipt.transaction_hash,
            }),
            format!(
                "{account}: {action} {} wei; stake {} wei (free {}, minimum {})",
                a.amount, after.stake, after.free_stake, after.min_stake
            ),
        )
    }

    async fn status(a: StatusArgs) -> Result<()> {
        use sequencer::chain::{ChainEvent, EventFollower};
        let client = client(&a.key, a.rollup.rollup).await?;
        let account = client.account();
        let s = sequencer::node::standing(&client, account).await?;
        let balance = client.balance(account).await?;
        let credit = client.games_credit(account).await?;
        // Batches and games from the rollup's events.
        let mut follower = EventFollower::new(client.clone(), 0, 0);
        let mut batches = 0u64;
        let mut games = std::collections::BTreeMap::new();
        loop {
            let before = follower.next_block();
            let (events, _) = follower.poll().await?;
            for e in events {
                match e {
                    ChainEvent::BatchPosted { sequencer, .. } if sequencer == account => {
                        batches += 1
                    }
                    ChainEvent::GameOpened {
                        game_id, defender, ..
                    } if defender == account => {
                        games.insert(game_id, "open");
                    }
                    ChainEvent::GameResolved {
                        game_id, winner, ..
                    } => {
                        if let Some(g) = games.get_mut(&game_id) {
                            *g = if winner == bisection::Side::Defender {
                                "won"
                            } else {
                                "lost"
                            };
                        }
                    }
                    _ => {}
                }
            }
            if follower.next_block() == before {
                break;
            }
        }
        let count = |what: &str| games.values().filter(|&&g| g == what).count();
        let (open, won, lost) = (count("open"), count("won"), count("lost"));
        let a_ = client.addresses();
        print(
            a.key.json,
            json!({
                "account": account,
                "rollup": a_.rollup,
                "registry": a_.registry,
                "games": a_.games,
                "registered": s.registered,
                "stakeWei": s.stake.to_string(),
                "freeStakeWei": s.free_stake.to_string(),
                "minStakeWei": s.min_stake.to_string(),
                "balanceWei": balance.to_string(),
                "batchesPosted": batches,
                "gamesOpen": open,
                "gamesWon": won,
                "gamesLost": lost,
                "gameCreditWei": credit.to_string(),
            }),
            format!(
                "account {account} on rollup {}\nregistered: {}\nstake: {} wei (free {}, minimum {})\nbalance: {} wei\nbatches posted: {batches}\ngames: {open} open, {won} won, {lost} lost\ngame payouts not withdrawn: {credit} wei",
                a_.rollup, s.registered, s.stake, s.free_stake, s.min_stake, balance
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks of the command tree (unique argument ids, valid defaults), which
    /// it otherwise runs only when the binary is started in a debug build.
    #[test]
    fn the_command_line_is_well_formed() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
