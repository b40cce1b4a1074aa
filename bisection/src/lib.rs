//! The dispute game engine.
//!
//! This crate owns the rules of the interactive bisection game of `DESIGN.md`: positions
//! in the trace, k-ary dissection, tensor bisection down to one leaf, the one-step, clocks
//! and bonds, a defender and a challenger state machine, and an in-memory referee that
//! mirrors the settlement contract.
//!
//! It is pure: it depends on `inference` for traces and commitments and must never depend
//! on chain, async, clock or file code, so that games can be tested exhaustively.
//!
//! Status: not built yet (issue 5). The crate exists so the workspace has its final shape.
#![forbid(unsafe_code)]
