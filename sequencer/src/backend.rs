//! Choosing the execution backend: the pure-Rust CPU engine ([`Backend::Rust`], always
//! built) or libtorch ([`Backend::Tch`], built with the `tch` feature; a CUDA device when
//! one is available, else the CPU). Both give the same bits: the choice changes speed only,
//! never an output or a claim.

use crate::execution::{CpuExecutor, Executor};
use std::fmt;
use std::sync::Arc;

#[cfg(feature = "tch")]
pub use crate::tch_exec::TchExecutor;
/// The device choice of the libtorch backend (re-exported from the inference crate).
#[cfg(feature = "tch")]
pub use inference::tch_backend::DeviceChoice;

/// The backend that runs programs.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The pure-Rust CPU engine of the `inference` crate.
    #[default]
    Rust,
    /// libtorch: CUDA when available, else the CPU (needs a build with `--features tch`).
    Tch,
}

impl Backend {
    /// The backend's name, as on the command line and in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::Tch => "tch",
        }
    }

    /// Whether this build can run the backend.
    pub fn is_built(self) -> bool {
        match self {
            Self::Rust => true,
            Self::Tch => cfg!(feature = "tch"),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// libtorch was asked for, but this binary was built without it.
    #[error(
        "this sequencer was built without libtorch; rebuild with `--features tch` (see README)"
    )]
    NotBuilt,
    /// libtorch could not be set up (the device asked for is missing, say).
    #[error("libtorch backend: {0}")]
    Tch(String),
}

/// The executor for `backend`, with `threads` worker threads in mind (0: one per core).
///
/// [`Backend::Rust`] is the [`CpuExecutor`] (it runs on the worker pool's threads and needs
/// no setting). [`Backend::Tch`] is a `TchExecutor` on CUDA device 0 when libtorch finds
/// one, else on the CPU (logged either way); without the `tch` feature it is
/// [`BackendError::NotBuilt`].
pub fn make_executor(backend: Backend, threads: usize) -> Result<Arc<dyn Executor>, BackendError> {
    match backend {
        Backend::Rust => Ok(Arc::new(CpuExecutor)),
        Backend::Tch => make_tch(threads),
    }
}

#[cfg(feature = "tch")]
fn make_tch(threads: usize) -> Result<Arc<dyn Executor>, BackendError> {
    let executor = TchExecutor::new(DeviceChoice::Auto, threads)?;
    tracing::info!(
        target: "sequencer::execution",
        device = %executor.device_name(),
        cuda = executor.is_cuda(),
        "libtorch backend"
    );
    Ok(Arc::new(executor))
}

#[cfg(not(feature = "tch"))]
fn make_tch(_threads: usize) -> Result<Arc<dyn Executor>, BackendError> {
    Err(BackendError::NotBuilt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_round_trip_through_clap_serde_and_display() {
        for b in [Backend::Rust, Backend::Tch] {
            assert_eq!(Backend::from_str(&b.to_string(), false), Ok(b));
            let json = serde_json::to_string(&b).unwrap();
            assert_eq!(json, format!("\"{b}\""));
            assert_eq!(serde_json::from_str::<Backend>(&json).unwrap(), b);
        }
        assert!(Backend::from_str("torch", false).is_err());
        assert!(serde_json::from_str::<Backend>("\"Tch\"").is_err());
    }

    #[test]
    fn rust_backend_is_the_cpu_engine() {
        let e = make_executor(Backend::Rust, 2).unwrap();
        assert_eq!(e.backend(), CpuExecutor.backend());
    }

    /// Runs in either build: without the `tch` feature, asking for libtorch is a clear
    /// error naming the feature; with it, the backend starts (on the CPU where no GPU is).
    #[test]
    fn tch_backend_starts_where_built_and_is_a_clear_error_where_not() {
        match make_executor(Backend::Tch, 2) {
            Ok(e) => {
                assert!(Backend::Tch.is_built());
                assert_eq!(e.backend(), "tch");
            }
            Err(e) => {
                assert!(!Backend::Tch.is_built(), "built with tch, yet: {e}");
                assert!(matches!(e, BackendError::NotBuilt), "{e}");
                assert!(e.to_string().contains("--features tch"), "{e}");
            }
        }
    }
}
