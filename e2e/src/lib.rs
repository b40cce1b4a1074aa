//! End-to-end scenarios.
//!
//! This crate drives a real local chain (anvil), the real contracts, the real models, a
//! sequencer and challengers through honest and adversarial scenarios, and owns the
//! devnet command.
//!
//! - [`harness`]: the shared devnet (anvil on a free port, deployment, the registered model,
//!   stake, accounts, time travel, gas accounting), killed on drop;
//! - [`scenario`]: one module per scenario, each `run(&Options) -> ScenarioReport`;
//! - [`report`]: the JSON report of a run;
//! - [`devnet`] and [`procs`]: the devnet with the real `sequencer` and `challenger`
//!   binaries as processes (`e2e devnet`, scenarios `honest` and `crash`).
//!
//! `tests/referee_agreement.rs` plays games on anvil through the Solidity `DisputeGame` and
//! the in-memory referee and requires that they agree move by move (issue 5);
//! `tests/scenarios.rs` runs a fast subset of the scenarios in-process.
#![forbid(unsafe_code)]

pub mod devnet;
pub mod harness;
pub mod procs;
pub mod report;
pub mod scenario;

use std::path::PathBuf;

/// Why a scenario could not run (a scenario that runs and finds a broken rule reports it in
/// its [`report::ScenarioReport`] instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The chain layer failed.
    #[error(transparent)]
    Chain(#[from] sequencer::chain::ChainError),
    /// Batch data that does not encode or decode.
    #[error(transparent)]
    BatchData(#[from] sequencer::chain::BatchDataError),
    /// The model directory is not prepared.
    #[error("no model in {0} (run `make models`)")]
    ModelMissing(PathBuf),
    /// Setting up the devnet, the model or an input failed.
    #[error("setup: {0}")]
    Setup(String),
    /// The options ask for something impossible (an op out of range, ...).
    #[error("{0}")]
    Usage(String),
    /// A game could not be played to its end.
    #[error("game: {0}")]
    Game(String),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
