//! The sequencer service.
//!
//! This crate is the I/O shell around the pure core for sequencer operators: the HTTP API
//! ([`api`]), execution on a worker pool apart from the async runtime ([`execution`]),
//! claims and batch commitments ([`claim`]), batching and the posting state machine
//! ([`batching`]), MDBX storage ([`storage`], generic typed tables; [`db`], the
//! sequencer's tables), metrics ([`metrics`]) and configuration ([`config`]).
//!
//! The service core holds no chain code: posting goes through the
//! [`batching::BatchPoster`] trait, which the chain layer implements with alloy.
#![forbid(unsafe_code)]

pub mod api;
pub mod backend;
pub mod batching;
pub mod chain;
pub mod claim;
pub mod config;
pub mod db;
pub mod dev;
pub mod execution;
pub mod metrics;
pub mod node;
pub mod service;
pub mod storage;
#[cfg(feature = "tch")]
mod tch_exec;

/// Prints `text` and a newline on stdout, for the command-line tools. A reader that went
/// away (`sequencer db stats | head`) ends the output quietly rather than with a panic, as
/// `println!` would; any other write error is returned.
pub fn print_out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}
