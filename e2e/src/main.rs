//! `e2e`: runs the end-to-end scenarios on a local chain.
//!
//! `e2e scenario NAME [options] [--json]` prints progress on stderr and, with `--json`, the
//! report as one JSON object on the last line of stdout; it exits with 1 if the scenario
//! failed, 2 if it could not run.

use clap::{Parser, Subcommand};
use e2e::report::ScenarioReport;
use e2e::scenario::{self, Options};

#[derive(Parser)]
#[command(name = "e2e", about = "End-to-end scenarios on a local chain (anvil).")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario.
    Scenario {
        #[command(subcommand)]
        name: ScenarioName,
    },
    /// Start the devnet (anvil, contracts, MiniLM, the consumer contract, the real
    /// `sequencer` and `challenger` binaries), send requests over HTTP and from the consumer,
    /// settle them, run one fraud the challenger must win, and print a summary.
    Devnet(DevnetArgs),
}

#[derive(clap::Args)]
struct DevnetArgs {
    /// Leave the network up (endpoints printed) until Ctrl-C.
    #[arg(long = "keep-running")]
    keep_running: bool,
    /// Print the summary as one JSON object, the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Skip the fraud phase.
    #[arg(long = "no-fraud")]
    no_fraud: bool,
    /// Requests sent over HTTP.
    #[arg(long = "http-requests", default_value_t = 4)]
    http_requests: usize,
    /// Requests sent from the consumer contract.
    #[arg(long = "chain-requests", default_value_t = 2)]
    chain_requests: usize,
    /// The op (1-based) where the lying sequencer departs from the truth (default: the
    /// middle op).
    #[arg(long = "lie-op")]
    lie_op: Option<u32>,
    /// The 32-byte leaf of that op's output it changes.
    #[arg(long = "lie-leaf", default_value_t = 0)]
    lie_leaf: u32,
}

#[derive(Subcommand)]
enum ScenarioName {
    /// The sequencer lies; the challenger bot disputes and wins at the one-step.
    Fraud(Options),
    /// A challenger disputes honest claims; the sequencer's defence wins.
    FalseChallenge(Options),
    /// A side that stops answering loses on its clock (both sides).
    Timeout(Options),
    /// Several challengers dispute one wrong claim at once.
    Parallel(Options),
    /// Many requests finalize through the real binaries; the consumer contract reads every
    /// output, each equal to the CPU engine's.
    Honest(Options),
    /// The sequencer is killed with `kill -9` mid-batching and restarted: nothing accepted
    /// is lost or doubled.
    Crash(Options),
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let name = match cli.command {
        Command::Scenario { name } => name,
        Command::Devnet(args) => devnet(args),
    };
    // These own their runtime and processes: run outside the async one.
    let blocking = match &name {
        ScenarioName::Honest(o) => Some((o, scenario::honest::run(o))),
        ScenarioName::Crash(o) => Some((o, scenario::crash::run(o))),
        _ => None,
    };
    let (opts, result): (&Options, e2e::Result<ScenarioReport>) = match blocking {
        Some(r) => r,
        None => runtime.block_on(async {
            match &name {
                ScenarioName::Fraud(o) => (o, scenario::fraud::run(o).await),
                ScenarioName::FalseChallenge(o) => (o, scenario::false_challenge::run(o).await),
                ScenarioName::Timeout(o) => (o, scenario::timeout::run(o).await),
                ScenarioName::Parallel(o) => (o, scenario::parallel::run(o).await),
                ScenarioName::Honest(o) | ScenarioName::Crash(o) => {
                    (o, Err(e2e::Error::Usage("a blocking scenario".into())))
                }
            }
        }),
    };
    match result {
        Ok(report) => {
            eprint!("{}", report.summary());
            if opts.json {
                println!("{}", report.to_json_line());
            }
            std::process::exit(if report.passed { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// `e2e devnet`: runs it, prints the summary (a table on stdout; JSON as the last line with
/// `--json`), then exits, or with `--keep-running` waits for Ctrl-C with everything up.
fn devnet(args: DevnetArgs) -> ! {
    use e2e::devnet::{DevnetOptions, model_present, run};
    let opts = DevnetOptions {
        http_requests: args.http_requests,
        chain_requests: args.chain_requests,
        fraud: !args.no_fraud,
        lie_op: args.lie_op,
        lie_leaf: args.lie_leaf,
        ..DevnetOptions::default()
    };
    if !model_present(&opts) {
        eprintln!(
            "error: {} is not prepared: run `make models`",
            opts.family_dir.display()
        );
        std::process::exit(2);
    }
    let (mut net, summary) = match run(opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    print!("{}", summary.table());
    if args.json {
        match serde_json::to_string(&summary) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("error: encoding the summary: {e}"),
        }
    }
    if args.keep_running {
        let dir = net.keep_work_dir();
        println!("devnet running (logs in {}); Ctrl-C to stop", dir.display());
        println!("  anvil      {}", net.harness.url);
        println!(
            "  sequencer  {}  (/v1/inference, /metrics)",
            net.sequencer_url
        );
        println!("  challenger http://{}/metrics", net.challenger_metrics);
        let _ = net.block_on(tokio::signal::ctrl_c());
    }
    let passed = summary.passed;
    drop(net);
    std::process::exit(if passed { 0 } else { 1 });
}
