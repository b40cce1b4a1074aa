//! The error type of the engine: every bad shape, dtype, parameter or encoding is one of
//! these, never a panic.

use crate::tensor::DType;

/// Errors of the inference engine.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A tensor's data does not have as many elements as its shape says.
    #[error("shape {shape:?} needs {expected} elements, got {got}")]
    DataLength {
        /// The declared shape.
        shape: Vec<usize>,
        /// Elements (or bytes, for byte decoding) the shape needs.
        expected: usize,
        /// Elements (or bytes) supplied.
        got: usize,
    },
    /// A tensor has the wrong element type.
    #[error("{what}: expected dtype {expected}, got {got}")]
    DType {
        /// Which operand.
        what: String,
        /// The allowed dtype(s).
        expected: String,
        /// The dtype supplied.
        got: DType,
    },
    /// Shapes do not fit the op.
    #[error("shape error: {0}")]
    Shape(String),
    /// A parameter is out of its allowed range.
    #[error("invalid parameter: {0}")]
    Param(String),
    /// A program is malformed (bad slot, weight index, op arity or declared type).
    #[error("invalid program: {0}")]
    Program(String),
    /// Bytes could not be decoded (npy, safetensors, program or proof encodings).
    #[error("decode error: {0}")]
    Decode(String),
    /// A proof does not verify.
    #[error("proof error: {0}")]
    Proof(String),
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
