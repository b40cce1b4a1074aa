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
//! levels per move ([`config::GameConfig::bound`]). With `L = 3`:
//!
//! | program | ops `n` | `d` | degree | trace rounds | tensor rounds | moves |
//! |---|---|---|---|---|---|---|
//! | demo encoder | 47 | 4 | 2 | 6 | 2 | 20 |
//! | demo encoder | 47 | 4 | 8 | 2 | 2 | 12 |
//! | demo encoder | 47 | 4 | 64 | 1 | 2 | 10 |
//! | all-MiniLM-L6-v2, 128 tokens | 201 | 14 | 2 | 8 | 5 | 30 |
//! | all-MiniLM-L6-v2, 128 tokens | 201 | 14 | 8 | 3 | 5 | 20 |
//! | all-MiniLM-L6-v2, 128 tokens | 201 | 14 | 64 | 2 | 5 | 18 |
//! | SmolLM2-135M, 16-token prompt, 8 new tokens | 19,019 | 13 | 2 | 15 | 5 | 44 |
//! | SmolLM2-135M, 16-token prompt, 8 new tokens | 19,019 | 13 | 8 | 5 | 5 | 24 |
//! | SmolLM2-135M, 16-token prompt, 8 new tokens | 19,019 | 13 | 64 | 3 | 5 | 20 |
//! | SmolLM2-135M, 128-token prompt, 32 new tokens | 76,427 | 15 | 2 | 17 | 5 | 48 |
//! | SmolLM2-135M, 128-token prompt, 32 new tokens | 76,427 | 15 | 8 | 6 | 5 | 26 |
//! | SmolLM2-135M, 128-token prompt, 32 new tokens | 76,427 | 15 | 64 | 3 | 5 | 20 |
//!
//! A SmolLM2 trace covers every decode step, so its length grows with the tokens generated,
//! but only logarithmically in the game. Pinned by `tests/random_programs.rs`,
//! `tests/minilm.rs` and `tests/smollm2.rs`.

#![forbid(unsafe_code)]

pub mod config;
pub mod game;
pub mod player;
pub mod sim;

pub use config::{DissectionDegree, GameBound, GameConfig, Side};
pub use game::{Claim, Game, GameError, Move, Outcome, Payouts, Phase, Reason};
pub use player::{Belief, Fault, Player, Silent, TracePlayer};
pub use sim::{Transcript, play};
