//! The models a challenger can re-execute, by id. A model is trusted by its id only: every
//! model loaded (from a local directory or from the file a registry URI names) has its id
//! recomputed from its program and weights, and one whose id is not the expected one is
//! refused.

use inference::commit::TensorHashMemo;
use inference::import::bert::{FAMILY_FILE, Family};
use inference::merkle::H256;
use inference::model::Model;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The files are not a valid model (its manifest disagrees with its contents included).
    #[error("{path}: {reason}")]
    Invalid {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The model loaded is not the one asked for.
    #[error("{path} holds model {got}, not {expected}")]
    WrongId {
        /// The directory.
        path: PathBuf,
        /// The id asked for.
        expected: H256,
        /// The id of the files.
        got: H256,
    },
    /// The URI is not one this build fetches.
    #[error("unsupported model URI {0:?} (only file:// paths and plain paths)")]
    UnsupportedUri(String),
}

/// Models by id.
#[derive(Debug, Default)]
pub struct ModelStore {
    models: RwLock<HashMap<H256, Arc<Model>>>,
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads the model in directory `dir` (program, weights, manifest), checking its id.
pub fn load_model_dir(dir: &Path) -> Result<Model, ModelError> {
    Ok(sequencer::execution::load_model(dir)?)
}

/// [`load_model_dir`] for one of several models sharing weights: tensors `memo` has
/// hashed before are not hashed again.
pub fn load_model_dir_memo(dir: &Path, memo: &mut TensorHashMemo) -> Result<Model, ModelError> {
    Ok(sequencer::execution::load_model_memo(dir, memo)?)
}

/// The sequencer's loader reads the same files: its errors, in this crate's terms.
impl From<sequencer::execution::ModelError> for ModelError {
    fn from(e: sequencer::execution::ModelError) -> Self {
        use sequencer::execution::ModelError as E;
        match e {
            E::Io { path, source } => Self::Io { path, source },
            E::Invalid { path, source } => Self::Invalid {
                path,
                reason: source.to_string(),
            },
            // The loaders give only the two above; the rest are serving errors.
            other => Self::Invalid {
                path: PathBuf::new(),
                reason: other.to_string(),
            },
        }
    }
}

impl ModelStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a model.
    pub fn insert(&self, model: Model) -> Arc<Model> {
        let model = Arc::new(model);
        self.models
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(model.id(), model.clone());
        model
    }

    /// Loads `dir`: a model directory, or an encoder family (every bucket). Returns the
    /// ids loaded.
    pub fn load_dir(&self, dir: &Path) -> Result<Vec<H256>, ModelError> {
        if dir.join(FAMILY_FILE).is_file() {
            let family = Family::from_json(&read(&dir.join(FAMILY_FILE))?).map_err(|e| {
                ModelError::Invalid {
                    path: dir.to_path_buf(),
                    reason: e.to_string(),
                }
            })?;
            let mut ids = Vec::new();
            let mut memo = TensorHashMemo::new();
            for b in &family.buckets {
                let path = dir.join(&b.dir);
                let model = load_model_dir_memo(&path, &mut memo)?;
                if model.id() != b.model_id {
                    return Err(ModelError::WrongId {
                        path,
                        expected: b.model_id,
                        got: model.id(),
                    });
                }
                ids.push(self.insert(model).id());
            }
            return Ok(ids);
        }
        Ok(vec![self.insert(load_model_dir(dir)?).id()])
    }

    /// The model `id`, if loaded.
    pub fn get(&self, id: &H256) -> Option<Arc<Model>> {
        self.models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Loads model `id` from the registered metadata `uri` (a `file://` URL or a plain
    /// path to a model directory), refusing files of another model.
    pub fn load_uri(&self, id: H256, uri: &str) -> Result<Arc<Model>, ModelError> {
        if let Some(m) = self.get(&id) {
            return Ok(m);
        }
        let path = match uri.strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None if !uri.contains("://") => PathBuf::from(uri),
            None => return Err(ModelError::UnsupportedUri(uri.to_string())),
        };
        let model = load_model_dir(&path)?;
        if model.id() != id {
            return Err(ModelError::WrongId {
                path,
                expected: id,
                got: model.id(),
            });
        }
        Ok(self.insert(model))
    }

    /// Number of models loaded.
    pub fn len(&self) -> usize {
        self.models.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no model is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
