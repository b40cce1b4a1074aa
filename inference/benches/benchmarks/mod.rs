//! One module per area of the crate.

pub mod gemm;
pub mod ops;
