//! End-to-end scenarios.
//!
//! This crate drives a real local chain (anvil), the real contracts, the real models, a
//! sequencer and challengers through honest and adversarial scenarios, and owns the
//! devnet command.
//!
//! Status: not built yet (issue 8).
#![forbid(unsafe_code)]
