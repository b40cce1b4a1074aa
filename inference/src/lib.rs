//! Exact integer inference: the CPU reference engine of the rollup.
//!
//! This crate owns what every party must agree on bit for bit:
//! - [`tensor`]: `i8`/`i16`/`i32` tensors;
//! - [`ops`]: the op set of `docs/ops.md`, one kernel per op, exact and fast
//!   ([`gemm`] holds the int8 matrix product with its portable, AVX2 and AVX-512 VNNI paths);
//! - [`merkle`] and [`commit`]: tensor hashes, Merkle proofs, execution states, model ids;
//! - [`program`] and [`model`]: the versioned program format and the model container;
//! - [`trace`]: running a program, and the trace executor that computes any execution
//!   state and its proofs on demand;
//! - [`demo`]: a small built-in model using every op, for smoke tests and snapshots;
//! - [`one_step`]: what one output element depends on, and its recomputation from revealed
//!   leaves (the last step of a dispute);
//! - [`npy`]: the `.npy` codec used by the command line;
//! - `tch_backend` (feature `tch`): the same programs on libtorch, CUDA or CPU, bit for bit.
//!
//! It is pure: no chain, async or file code. Callers hand it bytes and get bytes back.
//! The `inference` binary (`src/main.rs`) is the only place here that touches files.

pub mod commit;
pub mod demo;
pub mod error;
pub mod gemm;
pub mod import;
mod keccak;
pub mod merkle;
pub mod model;
pub mod npy;
pub mod one_step;
pub mod ops;
pub mod program;
mod row_parallel;
#[cfg(feature = "tch")]
pub mod tch_backend;
pub mod tensor;
pub mod tokenize;
pub mod trace;

pub use error::{Error, Result};
pub use tensor::{DType, Tensor, TensorData, TensorType};
