//! The libtorch executor (feature `tch`): runs a bucket's program with
//! [`inference::tch_backend::TchModel`], bit for bit equal to the CPU engine.
//!
//! A `TchModel` holds libtorch tensors and is not `Sync`, so each worker thread gets its own
//! copy of each model, built the first time that thread runs that model (the weights are
//! uploaded once per thread and model, then reused). The copies live in the executor and
//! are freed with it.

use crate::backend::BackendError;
use crate::execution::{ExecutionError, Executor};
use inference::merkle::H256;
use inference::model::Model;
use inference::tch_backend::{self, Device, DeviceChoice, TchModel};
use inference::tensor::Tensor;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;

const BACKEND: &str = "tch";

/// One thread's copy of one model. The mutex is only ever taken by the thread that owns
/// the copy (uncontended); it makes the shared map `Sync`.
type Slot = Arc<Mutex<TchModel>>;

/// An [`Executor`] on libtorch, on one device.
pub struct TchExecutor {
    device: Device,
    models: Mutex<HashMap<(ThreadId, H256), Slot>>,
}

impl std::fmt::Debug for TchExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TchExecutor")
            .field("device", &self.device)
            .field("models", &self.cached_models())
            .finish()
    }
}

fn error(message: impl std::fmt::Display) -> ExecutionError {
    ExecutionError {
        backend: BACKEND,
        message: message.to_string(),
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl TchExecutor {
    /// An executor on the device `choice` names ([`DeviceChoice::Auto`]: CUDA device 0 when
    /// libtorch finds one, else the CPU).
    ///
    /// On the CPU, libtorch's intra-op pool gets `threads / workers` threads, where
    /// `threads` is the number of cores to use (0: all) and every worker of the execution
    /// pool runs its own request: with one thread per worker (the default of
    /// [`TchExecutor::new`]) the requests run side by side instead of fighting over one
    /// OpenMP pool per request. The setting is process-wide in libtorch.
    pub fn with_intra_op_threads(
        choice: DeviceChoice,
        intra_op_threads: usize,
    ) -> Result<Self, BackendError> {
        let device =
            tch_backend::select_device(choice).map_err(|e| BackendError::Tch(e.to_string()))?;
        if device == Device::Cpu && intra_op_threads > 0 {
            tch::set_num_threads(intra_op_threads.min(i32::MAX as usize) as i32);
        }
        Ok(Self {
            device,
            models: Mutex::new(HashMap::new()),
        })
    }

    /// An executor on the device `choice` names, for an execution pool of `threads`
    /// workers (0: one per core). On the CPU each request runs on one libtorch thread
    /// (requests run in parallel on the pool's workers, as with the Rust engine); on
    /// CUDA the device does the work.
    pub fn new(choice: DeviceChoice, threads: usize) -> Result<Self, BackendError> {
        let _ = threads;
        Self::with_intra_op_threads(choice, 1)
    }

    /// The device the programs run on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The device as `cpu` or `cuda:N`.
    pub fn device_name(&self) -> String {
        match self.device {
            Device::Cuda(n) => format!("cuda:{n}"),
            _ => "cpu".into(),
        }
    }

    /// Whether the programs run on a CUDA device.
    pub fn is_cuda(&self) -> bool {
        matches!(self.device, Device::Cuda(_))
    }

    /// How many (thread, model) copies are loaded.
    pub fn cached_models(&self) -> usize {
        self.models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// This thread's copy of `model`, built (weights uploaded) on first use.
    fn slot(&self, model: &Model) -> Result<Slot, ExecutionError> {
        let key = (std::thread::current().id(), model.id());
        if let Some(s) = self
            .models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(s.clone());
        }
        // Built outside the map's lock: uploading the weights takes a while, and only this
        // thread can ask for this key.
        let built = catch_unwind(AssertUnwindSafe(|| {
            TchModel::new(model.program(), model.weights(), self.device)
        }))
        .map_err(|p| {
            error(format!(
                "loading model {}: {}",
                model.id(),
                panic_message(&*p)
            ))
        })?
        .map_err(|e| error(format!("loading model {}: {e}", model.id())))?;
        let slot = Arc::new(Mutex::new(built));
        self.models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, slot.clone());
        Ok(slot)
    }

    fn evict(&self, model: &Model) {
        let key = (std::thread::current().id(), model.id());
        self.models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }
}

impl Executor for TchExecutor {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn run(&self, model: &Model, input: &Tensor) -> Result<Tensor, ExecutionError> {
        self.with_model(model, |m| m.run(input))
    }

    /// 32 on CUDA (a step's launch costs more than its work at batch 1; 32 MiniLM inputs
    /// fit any GPU's memory many times over), 8 on the CPU (bigger libtorch calls, and
    /// MiniLM throughput about doubled at 64 on 2 cores: `make bench-tch`).
    fn default_stack(&self) -> usize {
        if self.is_cuda() { 32 } else { 8 }
    }

    fn run_batch(&self, model: &Model, inputs: &[&Tensor]) -> Vec<Result<Tensor, ExecutionError>> {
        match self.with_model(model, |m| m.run_batch(inputs)) {
            Ok(outputs) => outputs.into_iter().map(Ok).collect(),
            // One bad input fails the whole stacked run: each input runs alone instead, so
            // the error lands on that input only.
            Err(_) => inputs.iter().map(|i| self.run(model, i)).collect(),
        }
    }
}

impl TchExecutor {
    /// Runs `f` on this thread's copy of `model`; a libtorch panic drops the copy (the next
    /// run rebuilds it) and becomes an error.
    fn with_model<T>(
        &self,
        model: &Model,
        f: impl FnOnce(&TchModel) -> Result<T, tch_backend::Error>,
    ) -> Result<T, ExecutionError> {
        let slot = self.slot(model)?;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let m = slot.lock().unwrap_or_else(PoisonError::into_inner);
            f(&m)
        }));
        match outcome {
            Ok(r) => r.map_err(error),
            Err(p) => {
                // The copy may be half-way through anything: drop it, the next run rebuilds.
                self.evict(model);
                Err(error(format!("libtorch panicked: {}", panic_message(&*p))))
            }
        }
    }
}
