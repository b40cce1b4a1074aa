//! The model container: a program, its weights as safetensors, and a manifest with the
//! model id.
//!
//! On disk a model is a directory of three files ([`PROGRAM_FILE`], [`WEIGHTS_FILE`],
//! [`MANIFEST_FILE`]); this module only converts between [`Model`] and those files' bytes,
//! so the crate stays free of file code. Loading recomputes the model id from the program
//! and weights and refuses a manifest that disagrees: a model is trusted by its id only.

use crate::commit;
use crate::error::{Error, Result};
use crate::merkle::H256;
use crate::program::Program;
use crate::tensor::{DType, Tensor};
use crate::trace::Weights;
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// File name of the program (JSON).
pub const PROGRAM_FILE: &str = "program.json";
/// File name of the weights (safetensors).
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// File name of the manifest (JSON).
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: &str = "fpml-model/1";

/// What a model directory says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Human-readable name.
    pub name: String,
    /// `keccak256(programHash || weightsRoot)`.
    pub model_id: H256,
    /// The program hash.
    pub program_hash: H256,
    /// The weights root.
    pub weights_root: H256,
    /// Number of ops.
    pub op_count: usize,
    /// Name of each weight in the safetensors file, in program order.
    pub weight_names: Vec<String>,
    /// Free-form metadata (tokenizer file, source model, quantization notes).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// A program with its weights, identified by its model id.
#[derive(Clone, Debug)]
pub struct Model {
    program: Program,
    weights: Weights,
    program_hash: H256,
    manifest: Manifest,
}

impl Model {
    /// Builds a model from a program and its weights (named, in program order).
    pub fn new(
        name: &str,
        program: Program,
        weights: Vec<(String, Tensor)>,
        metadata: BTreeMap<String, String>,
    ) -> Result<Self> {
        Self::build(name, program, weights, metadata, None)
    }

    fn build(
        name: &str,
        program: Program,
        weights: Vec<(String, Tensor)>,
        metadata: BTreeMap<String, String>,
        memo: Option<&mut commit::TensorHashMemo>,
    ) -> Result<Self> {
        program.validate()?;
        let (names, tensors): (Vec<String>, Vec<Tensor>) = weights.into_iter().unzip();
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(Error::Program(format!("weight name {dup:?} is used twice")));
        }
        let weights = match memo {
            Some(memo) => Weights::new_memo(&program, tensors, memo)?,
            None => Weights::new(&program, tensors)?,
        };
        let program_hash = program.hash()?;
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_string(),
            name: name.to_string(),
            model_id: commit::model_id(program_hash, weights.root()),
            program_hash,
            weights_root: weights.root(),
            op_count: program.ops.len(),
            weight_names: names,
            metadata,
        };
        Ok(Self {
            program,
            weights,
            program_hash,
            manifest,
        })
    }

    /// Reads a model from the bytes of its three files, checking the manifest's ids.
    pub fn from_bytes(program_json: &[u8], weights: &[u8], manifest_json: &[u8]) -> Result<Self> {
        Self::read(program_json, weights, manifest_json, None)
    }

    /// [`Model::from_bytes`] for one of several models that share weights (the buckets of
    /// a family): tensors `memo` has hashed before are not hashed again.
    pub fn from_bytes_memo(
        program_json: &[u8],
        weights: &[u8],
        manifest_json: &[u8],
        memo: &mut commit::TensorHashMemo,
    ) -> Result<Self> {
        Self::read(program_json, weights, manifest_json, Some(memo))
    }

    fn read(
        program_json: &[u8],
        weights: &[u8],
        manifest_json: &[u8],
        memo: Option<&mut commit::TensorHashMemo>,
    ) -> Result<Self> {
        let manifest: Manifest = serde_json::from_slice(manifest_json)
            .map_err(|e| Error::Decode(format!("{MANIFEST_FILE}: {e}")))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(Error::Decode(format!(
                "{MANIFEST_FILE}: format {:?} is not {MANIFEST_FORMAT:?}",
                manifest.format
            )));
        }
        let program_src = std::str::from_utf8(program_json)
            .map_err(|_| Error::Decode(format!("{PROGRAM_FILE} is not UTF-8")))?;
        let program = Program::from_json(program_src)?;
        let st = SafeTensors::deserialize(weights).map_err(|e| {
            Error::Decode(format!(
                "{WEIGHTS_FILE}: {e} (truncated or not safetensors?)"
            ))
        })?;
        let tensors = manifest
            .weight_names
            .iter()
            .map(|name| {
                let view = st
                    .tensor(name)
                    .map_err(|e| Error::Decode(format!("{WEIGHTS_FILE}: weight {name:?}: {e}")))?;
                let dtype = match view.dtype() {
                    StDtype::I8 => DType::I8,
                    StDtype::I16 => DType::I16,
                    StDtype::I32 => DType::I32,
                    other => {
                        return Err(Error::Decode(format!(
                            "{WEIGHTS_FILE}: weight {name:?} is {other:?}; only I8, I16 and I32 are allowed"
                        )));
                    }
                };
                Tensor::from_le_bytes(dtype, view.shape().to_vec(), view.data())
            })
            .collect::<Result<Vec<_>>>()?;
        let model = Self::build(
            &manifest.name,
            program,
            manifest.weight_names.iter().cloned().zip(tensors).collect(),
            manifest.metadata.clone(),
            memo,
        )?;
        for (what, got, want) in [
            (
                "program_hash",
                manifest.program_hash,
                model.manifest.program_hash,
            ),
            (
                "weights_root",
                manifest.weights_root,
                model.manifest.weights_root,
            ),
            ("model_id", manifest.model_id, model.manifest.model_id),
        ] {
            if got != want {
                return Err(Error::Decode(format!(
                    "{MANIFEST_FILE}: {what} is {got}, but the program and weights give {want}"
                )));
            }
        }
        Ok(model)
    }

    /// The bytes of the three files: (program JSON, safetensors, manifest JSON).
    pub fn to_bytes(&self) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let bytes: Vec<Vec<u8>> = self
            .weights
            .tensors()
            .iter()
            .map(Tensor::to_le_bytes)
            .collect();
        let views = self
            .manifest
            .weight_names
            .iter()
            .zip(self.weights.tensors())
            .zip(&bytes)
            .map(|((name, t), b)| {
                let dtype = match t.dtype() {
                    DType::I8 => StDtype::I8,
                    DType::I16 => StDtype::I16,
                    DType::I32 => StDtype::I32,
                };
                TensorView::new(dtype, t.shape().to_vec(), b)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| Error::Decode(format!("safetensors: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let st = safetensors::serialize(views, &None)
            .map_err(|e| Error::Decode(format!("safetensors: {e}")))?;
        let manifest =
            serde_json::to_vec_pretty(&self.manifest).expect("a manifest always serializes");
        Ok((self.program.to_json().into_bytes(), st, manifest))
    }

    /// The program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The model id.
    pub fn id(&self) -> H256 {
        self.manifest.model_id
    }

    /// The program hash.
    pub fn program_hash(&self) -> H256 {
        self.program_hash
    }
}
