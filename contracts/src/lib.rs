//! Settlement contracts and their Rust bindings.
//!
//! This crate owns the Solidity sources (model registry, rollup, dispute game, one-step
//! verifier), their Foundry build and tests, the committed compiled artifacts
//! (`artifacts/`, exported by `scripts/export_artifacts.py`), the alloy bindings over those
//! artifacts ([`bindings`]) and a small in-process EVM ([`evm`], revm) to deploy and call
//! them without a node.
//!
//! It depends on no other workspace crate: the chain side must not be able to lean on the
//! off-chain code it referees (tests use `inference` as the reference, as a dev-dependency).
#![forbid(unsafe_code)]

pub mod artifacts;
pub mod bindings;
pub mod evm;

pub use evm::{CallOutcome, Error, LocalEvm, Result};
