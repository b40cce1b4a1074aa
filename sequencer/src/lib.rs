//! The sequencer service.
//!
//! This crate is the I/O shell around the pure core for sequencer operators: the HTTP API,
//! on-chain request following, batching and posting with alloy, MDBX storage, `tch`
//! execution, automatic defence of disputed claims and metrics.
//!
//! Status: not built yet (issue 6).
#![forbid(unsafe_code)]
