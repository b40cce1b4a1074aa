//! Random test cases shared by the property tests (`ops_props.rs`) and the libtorch
//! backend's tests (`tch_backend.rs`): a generator over the shared SplitMix64 whose cases are
//! a function of the seed alone. Each test file adds its own `multiplier` (their edge values
//! differ on purpose: one pins `i32::MAX`, the other `i32::MIN`).

use inference::demo::SplitMix64;
use inference::tensor::{DType, Tensor};

/// Random cases over the shared SplitMix64: a function of the seed alone.
pub struct Gen(pub SplitMix64);

#[allow(dead_code)] // each test file uses its own subset
impl Gen {
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.0.next_u64() % n }
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    pub fn dim(&mut self, max: usize) -> usize {
        // Zero and one more often than their share: edge shapes.
        match self.below(10) {
            0 => 1,
            1 => 0,
            _ => self.range(1, max as i64) as usize,
        }
    }
    pub fn nz_dim(&mut self, max: usize) -> usize {
        self.range(1, max as i64) as usize
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    /// A value of `dt`: the extremes often, otherwise uniform or small.
    pub fn value(&mut self, dt: DType) -> i64 {
        match self.below(8) {
            0 => dt.min(),
            1 => dt.max(),
            2 | 3 => self.range(-8, 8).clamp(dt.min(), dt.max()),
            _ => self.range(dt.min(), dt.max()),
        }
    }
    pub fn tensor(&mut self, dt: DType, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<i64> = (0..n).map(|_| self.value(dt)).collect();
        make(dt, shape, v)
    }
    pub fn dtype(&mut self, allowed: &[DType]) -> DType {
        allowed[self.below(allowed.len() as u64) as usize]
    }
    pub fn zp(&mut self, dt: DType) -> i32 {
        self.value(dt).clamp(i32::MIN as i64, i32::MAX as i64) as i32
    }
    pub fn shift(&mut self) -> u32 {
        self.range(0, 62) as u32
    }
}

/// A tensor of `dt` and `shape` from `v` (values cast to `dt`).
pub fn make(dt: DType, shape: &[usize], v: Vec<i64>) -> Tensor {
    match dt {
        DType::I8 => Tensor::from_i8(shape.to_vec(), v.into_iter().map(|x| x as i8).collect()),
        DType::I16 => Tensor::from_i16(shape.to_vec(), v.into_iter().map(|x| x as i16).collect()),
        DType::I32 => Tensor::from_i32(shape.to_vec(), v.into_iter().map(|x| x as i32).collect()),
    }
    .unwrap()
}

/// Every element type.
pub const ALL: &[DType] = &[DType::I8, DType::I16, DType::I32];
