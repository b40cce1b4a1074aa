//! The challenger bot.
//!
//! This crate is the I/O shell a challenger runs on a laptop: it follows the settlement
//! contract, re-executes posted claims with the CPU reference engine of `inference`,
//! and opens and plays disputes with the `bisection` engine when a result is wrong.
//!
//! Status: not built yet (issue 7).
#![forbid(unsafe_code)]
