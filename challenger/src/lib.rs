//! The challenger bot.
//!
//! This crate is the I/O shell a challenger runs on a laptop: it follows the settlement
//! contract ([`sequencer::chain`]), re-executes posted claims with the CPU reference engine
//! of `inference` ([`check`]), and opens and plays disputes with the `bisection` engine
//! through the chain's game driver when a result is wrong ([`bot`]). Models are trusted by
//! their id only ([`models`]). It never loads libtorch.
#![forbid(unsafe_code)]

pub mod bot;
pub mod check;
pub mod db;
pub mod metrics;
pub mod models;

pub use bot::{BatchReport, Challenger, ChallengerConfig, ClaimOutcome};
pub use check::{Verdict, check_entry};
pub use metrics::Metrics;
pub use models::ModelStore;
