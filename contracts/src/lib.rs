//! Settlement contracts and their Rust bindings.
//!
//! This crate owns the Solidity sources (model registry, rollup, dispute game, one-step
//! verifier), their Foundry build and tests, the committed compiled artifacts, and the
//! alloy bindings over those artifacts. It depends on nothing else in the workspace.
//!
//! Status: not built yet (issue 4).
#![forbid(unsafe_code)]
