//! Importers: float models in, integer models (program, weights, tables, multipliers) out.
//!
//! Floats live here and only here: they are read from the source weights, run through a
//! float forward pass on built-in calibration text to measure activation ranges, and
//! turned into the integers of the program. Nothing non-exact survives into the model.
//! Like the rest of the crate, importers take bytes, not paths.

pub mod bert;
mod float;
pub mod gguf;
pub mod llama;
pub mod smollm2;

use crate::error::{Error, Result};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

/// Float weights by name, from a safetensors file.
pub struct FloatWeights<'a> {
    st: SafeTensors<'a>,
}

impl<'a> FloatWeights<'a> {
    /// Parses a safetensors file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Decode(format!("safetensors: {e}")))?;
        Ok(Self { st })
    }

    /// The `f32` tensor `name` with its shape, checked against `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let v = self
            .st
            .tensor(name)
            .map_err(|e| Error::Decode(format!("weight {name:?}: {e}")))?;
        if v.dtype() != Dtype::F32 {
            return Err(Error::Decode(format!(
                "weight {name:?} is {:?}, expected F32",
                v.dtype()
            )));
        }
        if v.shape() != shape {
            return Err(Error::Shape(format!(
                "weight {name:?} is {:?}, expected {shape:?}",
                v.shape()
            )));
        }
        Ok(v.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}
