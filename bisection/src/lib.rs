//! The dispute game engine.
//!
//! This crate owns the rules of the interactive bisection game of `DESIGN.md` for one
//! disputed claim:
//! - [`config`]: the parameters (dissection degree, tensor levels per move, clocks, bonds)
//!   and the worst-case length they imply;
//! - [`game`]: the referee, a pure state machine that applies exactly the settlement
//!   contract's rules, proofs, clocks and bonds included;
//! - [`player`]: both roles as strategies over a trace (honest, lying at any op and leaf,
//!   consistent or not, silent), building every proof their moves need;
//! - [`sim`]: a game played to its end between two players.
//!
//! It is pure: it depends on `inference` for traces and commitments and must never depend
//! on chain, async, clock or file code (time is a number every call is given), so games
//! can be tested exhaustively.
//!
//! # Game length
//!
//! A game is at most `2 * ceil(log_k n) + 2 * ceil(d / L) + 4` moves for `n` ops, degree
//! `k`, an output tree of depth `d` (`log2` of its padded leaf count) and `L` tensor
//! levels per move ([`config::GameConfig::bound`]); the built-in demo model (43 ops, widest
//! output 512 bytes, `d = 4`) with `L = 3`:
//!
//! | degree | trace rounds | tensor rounds | moves |
//! |---|---|---|---|
//! | 2 | 6 | 2 | 20 |
//! | 8 | 2 | 2 | 12 |
//! | 64 | 1 | 2 | 10 |
//!
//! The same table for the MiniLM and SmolLM2 programs comes with their importer (issue 3).

#![forbid(unsafe_code)]

pub mod config;
pub mod game;
pub mod player;
pub mod sim;

pub use config::{DissectionDegree, GameBound, GameConfig, Side};
pub use game::{Claim, Game, GameError, Move, Outcome, Payouts, Phase, Reason};
pub use player::{Belief, Fault, Player, Silent, TracePlayer};
pub use sim::{Transcript, play};
