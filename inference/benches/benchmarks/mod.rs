//! One module per area of the crate.

pub mod commit;
pub mod gemm;
pub mod ops;
