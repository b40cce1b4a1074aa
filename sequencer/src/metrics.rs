//! Prometheus metrics, in base units (`_seconds`, `_wei`), snake_case, prefixed
//! `sequencer_`; counters get their `_total` suffix from the encoder. The chain-side metrics
//! (gas by purpose, batches posted, games open, won and lost, bonds at risk, stake, on-chain
//! requests picked up) are registered at start, at zero, and updated by the chain layer:
//! the poster, the defence watcher ([`crate::chain::watch`]) and the request follower.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// How a request ended, as counted by `sequencer_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Accepted and stored.
    Accepted,
    /// Refused: malformed or out of limits (4xx).
    Invalid,
    /// Refused: the queue was full (503).
    Overloaded,
    /// Accepted, then execution failed.
    Failed,
    /// Storage failed (500).
    Error,
}

/// The `outcome` label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `accepted`, `invalid`, `overloaded`, `failed` or `error`.
    pub outcome: &'static str,
}

impl Outcome {
    fn label(self) -> OutcomeLabel {
        OutcomeLabel {
            outcome: match self {
                Self::Accepted => "accepted",
                Self::Invalid => "invalid",
                Self::Overloaded => "overloaded",
                Self::Failed => "failed",
                Self::Error => "error",
            },
        }
    }
}

/// The `result` label of games.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GameResultLabel {
    /// `won` or `lost`.
    pub result: &'static str,
}

/// What gas was spent on, as counted by `sequencer_gas_spent_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GasPurpose {
    /// Posting batches.
    Post,
    /// Playing dispute games (moves, timeouts, withdrawing the winnings).
    Game,
    /// Anything else (stake, settling on-chain requests).
    Other,
}

impl GasPurpose {
    /// The lower-case name (the `purpose` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "post",
            Self::Game => "game",
            Self::Other => "other",
        }
    }
}

/// The `purpose` label of gas.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GasPurposeLabel {
    /// `post`, `game` or `other`.
    pub purpose: &'static str,
}

/// The `reason` label of skipped on-chain requests.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ChainRequestLabel {
    /// `unknown_model` (not served here), `bad_input` (not an input this sequencer can
    /// run) or `duplicate` (already stored).
    pub reason: &'static str,
}

/// Every metric of the sequencer.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by outcome.
    pub requests: Family<OutcomeLabel, Counter>,
    /// Time one program run takes.
    pub inference_seconds: Histogram,
    /// Time from acceptance to a stored output, as a waiting client sees it.
    pub request_seconds: Histogram,
    /// Results stored by one commit of the storing thread.
    pub store_commit_size: Histogram,
    /// Time one commit of results takes (`fdatasync` included).
    pub store_commit_seconds: Histogram,
    /// Claims per batch.
    pub batch_size: Histogram,
    /// Batches built.
    pub batches: Counter,
    /// Batches confirmed on chain.
    pub batches_posted: Counter,
    /// Batch transactions replaced with higher fees after waiting too long in the mempool.
    pub batch_fee_bumps: Counter,
    /// Requests accepted and not executed yet.
    pub queue_depth: Gauge,
    /// Executed requests not in a batch yet.
    pub batch_queue_depth: Gauge,
    /// Gas used by this sequencer's transactions, all purposes together (use
    /// [`Metrics::gas_spent`], which keeps it and [`Metrics::gas`] in step).
    pub gas_used: Counter,
    /// Gas used by this sequencer's transactions, by purpose.
    pub gas: Family<GasPurposeLabel, Counter>,
    /// On-chain inference requests the follower skipped, by reason.
    pub chain_requests: Family<ChainRequestLabel, Counter>,
    /// Dispute games open against this sequencer.
    pub games_open: Gauge,
    /// Dispute games finished, by result (`won`, `lost`).
    pub games: Family<GameResultLabel, Counter>,
    /// Defender bonds locked from this sequencer's stake in open games: what it loses if
    /// it loses them (wei).
    pub bonds_at_risk_wei: Gauge<f64, AtomicU64>,
    /// This sequencer's stake on the rollup (wei).
    pub stake_wei: Gauge<f64, AtomicU64>,
    /// On-chain inference requests picked up to be served.
    pub onchain_requests: Counter,
    /// Game defences started, resumed ones after a restart included.
    pub defences: Counter,
    /// Game payouts withdrawn (wei).
    pub game_withdrawn_wei: Counter<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sequencer");
        let requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "requests",
            "Inference requests by outcome",
            requests.clone(),
        );
        let inference_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "inference_latency_seconds",
            "Time one program run takes on the backend",
            inference_seconds.clone(),
        );
        let request_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        registry.register(
            "request_latency_seconds",
            "Time from a request's acceptance to its stored output",
            request_seconds.clone(),
        );
        let store_commit_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "store_commit_size",
            "Results (outputs of executed requests) stored by one database commit",
            store_commit_size.clone(),
        );
        let store_commit_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "store_commit_latency_seconds",
            "Time one commit of results takes, fdatasync included",
            store_commit_seconds.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register("batch_size", "Claims per batch", batch_size.clone());
        let batches = Counter::default();
        registry.register("batches", "Batches built", batches.clone());
        let batches_posted = Counter::default();
        registry.register(
            "batches_posted",
            "Batches confirmed on chain",
            batches_posted.clone(),
        );
        let batch_fee_bumps = Counter::default();
        registry.register(
            "batch_fee_bumps",
            "Batch transactions replaced with higher fees after waiting too long in the mempool",
            batch_fee_bumps.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Requests accepted and not executed yet",
            queue_depth.clone(),
        );
        let batch_queue_depth = Gauge::default();
        registry.register(
            "batch_queue_depth",
            "Executed requests not in a batch yet",
            batch_queue_depth.clone(),
        );
        let gas_used = Counter::default();
        registry.register(
            "gas_used",
            "Gas used by this sequencer's transactions",
            gas_used.clone(),
        );
        let gas = Family::<GasPurposeLabel, Counter>::default();
        for p in [GasPurpose::Post, GasPurpose::Game, GasPurpose::Other] {
            let _ = gas.get_or_create(&GasPurposeLabel {
                purpose: p.as_str(),
            });
        }
        registry.register(
            "gas_spent",
            "Gas used by this sequencer's transactions, by purpose (post, game, other)",
            gas.clone(),
        );
        let chain_requests = Family::<ChainRequestLabel, Counter>::default();
        for reason in ["unknown_model", "bad_input", "duplicate"] {
            let _ = chain_requests.get_or_create(&ChainRequestLabel { reason });
        }
        registry.register(
            "onchain_requests_skipped",
            "On-chain inference requests not served, by reason",
            chain_requests.clone(),
        );
        let games_open = Gauge::default();
        registry.register(
            "games_open",
            "Dispute games open against this sequencer",
            games_open.clone(),
        );
        let games = Family::<GameResultLabel, Counter>::default();
        for result in ["won", "lost"] {
            let _ = games.get_or_create(&GameResultLabel { result });
        }
        registry.register("games", "Dispute games finished, by result", games.clone());
        let bonds_at_risk_wei = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "bonds_at_risk_wei",
            "Defender bonds locked from the stake in open games, in wei",
            bonds_at_risk_wei.clone(),
        );
        let stake_wei = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "stake_wei",
            "This sequencer's stake on the rollup, in wei",
            stake_wei.clone(),
        );
        let onchain_requests = Counter::default();
        registry.register(
            "onchain_requests",
            "On-chain inference requests picked up to be served",
            onchain_requests.clone(),
        );
        for outcome in [
            Outcome::Accepted,
            Outcome::Invalid,
            Outcome::Overloaded,
            Outcome::Failed,
            Outcome::Error,
        ] {
            let _ = requests.get_or_create(&outcome.label());
        }
        let defences = Counter::default();
        registry.register(
            "defences",
            "Game defences started, resumed ones after a restart included",
            defences.clone(),
        );
        let game_withdrawn_wei = Counter::<f64, AtomicU64>::default();
        registry.register(
            "game_withdrawn_wei",
            "Game payouts withdrawn, in wei",
            game_withdrawn_wei.clone(),
        );
        Self {
            registry,
            requests,
            inference_seconds,
            request_seconds,
            store_commit_size,
            store_commit_seconds,
            batch_size,
            batches,
            batches_posted,
            batch_fee_bumps,
            queue_depth,
            batch_queue_depth,
            gas_used,
            gas,
            games_open,
            games,
            bonds_at_risk_wei,
            stake_wei,
            onchain_requests,
            chain_requests,
            defences,
            game_withdrawn_wei,
        }
    }

    /// Counts `gas` spent on `purpose` (in the total and by purpose).
    pub fn gas_spent(&self, purpose: GasPurpose, gas: u64) {
        self.gas_used.inc_by(gas);
        self.gas
            .get_or_create(&GasPurposeLabel {
                purpose: purpose.as_str(),
            })
            .inc_by(gas);
    }

    /// Counts a finished game: `won` or lost.
    pub fn game_ended(&self, won: bool) {
        let result = if won { "won" } else { "lost" };
        self.games.get_or_create(&GameResultLabel { result }).inc();
    }

    /// The count of games finished with `result` (`won` or `lost`).
    pub fn games_finished(&self, result: &'static str) -> u64 {
        self.games.get_or_create(&GameResultLabel { result }).get()
    }

    /// Counts one request's outcome.
    pub fn request(&self, outcome: Outcome) {
        self.requests.get_or_create(&outcome.label()).inc();
    }

    /// Counts one skipped on-chain request.
    pub fn chain_request_skipped(&self, reason: &'static str) {
        self.chain_requests
            .get_or_create(&ChainRequestLabel { reason })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
