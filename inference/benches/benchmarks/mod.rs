//! One module per area of the crate.

pub mod gemm;
