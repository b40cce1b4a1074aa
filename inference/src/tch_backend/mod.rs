//! The libtorch backend (feature `tch`): programs run op by op on libtorch tensors, on a
//! CUDA device when one is available and on the CPU otherwise, bit for bit equal to the
//! CPU engine ([`crate::trace::run`]).
//!
//! Every op of `docs/ops.md` has a kernel of the same name in `kernels`: integer
//! matrix products through `_int_mm` (`i8 x i8 -> i32`) on CUDA and, on the CPU, as
//! `f32`/`f64` products chosen to be exact (every partial sum an integer the float holds),
//! tables through `index_select`, requantization, divisions and shifts on `i64` tensors,
//! the square root corrected to the exact integer one. Each use of an op is checked once,
//! when a [`TchModel`] is built, to keep every intermediate inside `i64` for any operand
//! values; the rare use that cannot be (an `i32` operand times a large multiplier, say)
//! runs on the CPU engine's kernel instead, with a round trip through host memory
//! ([`TchModel::host_ops`] lists them).
//!
//! The weights are uploaded once ([`TchModel::new`]); [`TchModel::run`] is the serving
//! path (the output only, activations freed as soon as no later op reads them) and
//! [`TchModel::run_all`] returns every slot, for tests and for recomputing a disputed
//! trace.
//!
//! libtorch's CUDA support lives in `libtorch_cuda.so`, which binaries linked with
//! `--as-needed` do not load by themselves; [`select_device`] and [`cuda_available`] load it
//! when it is present (a CPU-only install lacks its dependencies, and stays on the CPU).

mod kernels;

use crate::ops::{Op, OpKind};
use crate::program::{Operand, Program};
use crate::tensor::{DType, Tensor, TensorData, TensorType};
use crate::trace::Weights;
use std::fmt;
use std::str::FromStr;
use std::sync::Once;

pub use tch::Device;

/// Errors of the libtorch backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libtorch refused a call (out of memory, a kernel missing on this device, ...).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The engine refused the program, an operand or a parameter.
    #[error(transparent)]
    Engine(#[from] crate::Error),
    /// An op failed; `source` says why.
    #[error("op {index} ({kind}): {source}")]
    Op {
        /// The op's 1-based index.
        index: usize,
        /// Its kind.
        kind: OpKind,
        /// What went wrong.
        source: Box<Error>,
    },
    /// A CUDA device was asked for where CUDA is not available.
    #[error("CUDA device {index} was requested, but {reason}")]
    CudaUnavailable {
        /// The requested device index.
        index: usize,
        /// Why it cannot be used.
        reason: String,
    },
    /// A device name could not be parsed.
    #[error("unknown device {0:?} (expected auto, cpu, cuda or cuda:N)")]
    DeviceName(String),
}

/// Result with the backend's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which device a [`TchModel`] runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA device 0 when CUDA is available, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device `n` (an error where it does not exist).
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| Error::DeviceName(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

static LOAD_CUDA: Once = Once::new();

/// Loads `libtorch_cuda.so` (from the libtorch this crate was built against, else from the
/// loader's search path) so that libtorch registers its CUDA support. Idempotent; a
/// failure (no CUDA libraries here) leaves libtorch on the CPU.
fn load_cuda() {
    LOAD_CUDA.call_once(|| {
        let candidates = [
            option_env!("INFERENCE_LIBTORCH_LIB").map(|d| format!("{d}/libtorch_cuda.so")),
            Some("libtorch_cuda.so".to_string()),
        ];
        for path in candidates.into_iter().flatten() {
            let Ok(c) = std::ffi::CString::new(path) else {
                continue;
            };
            // SAFETY: `c` is a valid NUL-terminated path; dlopen has no other precondition.
            // The handle is kept open for the life of the process on purpose (libtorch's
            // CUDA hooks must stay registered), so it is never closed.
            let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if !handle.is_null() {
                break;
            }
        }
    });
}

/// Whether libtorch can use a CUDA device here.
pub fn cuda_available() -> bool {
    load_cuda();
    tch::Cuda::is_available()
}

/// The device for `choice`: [`DeviceChoice::Auto`] picks CUDA device 0 when available.
pub fn select_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(if cuda_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        DeviceChoice::Cuda(index) => {
            if !cuda_available() {
                return Err(Error::CudaUnavailable {
                    index,
                    reason: "libtorch finds no CUDA device".into(),
                });
            }
            let count = tch::Cuda::device_count();
            if index as i64 >= count {
                return Err(Error::CudaUnavailable {
                    index,
                    reason: format!("only {count} CUDA device(s) exist"),
                });
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// Copies an engine tensor to `device`.
pub fn to_device(t: &Tensor, device: Device) -> Result<tch::Tensor> {
    let flat = match t.data() {
        TensorData::I8(v) => tch::Tensor::f_from_slice(v)?,
        TensorData::I16(v) => tch::Tensor::f_from_slice(v)?,
        TensorData::I32(v) => tch::Tensor::f_from_slice(v)?,
    };
    let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    Ok(flat.f_reshape(shape.as_slice())?.f_to(device)?)
}

/// Copies a libtorch tensor back into an engine tensor of type `ty` (its kind and element
/// count must match).
pub fn from_device(t: &tch::Tensor, ty: &TensorType) -> Result<Tensor> {
    let host = t.f_to(Device::Cpu)?.f_contiguous()?;
    let n = ty.numel();
    if host.numel() != n {
        return Err(crate::Error::DataLength {
            shape: ty.shape.clone(),
            expected: n,
            got: host.numel(),
        }
        .into());
    }
    let data = match ty.dtype {
        DType::I8 => {
            let mut v = vec![0i8; n];
            host.f_copy_data(&mut v, n)?;
            TensorData::I8(v)
        }
        DType::I16 => {
            let mut v = vec![0i16; n];
            host.f_copy_data(&mut v, n)?;
            TensorData::I16(v)
        }
        DType::I32 => {
            let mut v = vec![0i32; n];
            host.f_copy_data(&mut v, n)?;
            TensorData::I32(v)
        }
    };
    Ok(Tensor::new(ty.shape.clone(), data)?)
}

/// How one op of a program runs.
enum Plan {
    /// The libtorch kernel.
    Torch,
    /// The CPU engine's kernel (operand bounds outside the `i64` paths).
    Host,
}

/// A program with its weights uploaded to one device, ready to run any number of inputs.
pub struct TchModel {
    program: Program,
    device: Device,
    /// Host copies of the weights, for the ops that run on the CPU engine.
    host_weights: Vec<Tensor>,
    weights: Vec<tch::Tensor>,
    /// The constants of every `fully_connected` whose weight, bias, multipliers and shifts
    /// are all weights, by op (others prepare theirs when they run).
    fc: Vec<Option<kernels::FcConsts>>,
    plans: Vec<Plan>,
}

impl fmt::Debug for TchModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TchModel")
            .field("device", &self.device)
            .field("ops", &self.program.ops.len())
            .field("weights", &self.weights.len())
            .field("host_ops", &self.host_ops())
            .finish()
    }
}

impl TchModel {
    /// Validates `program`, checks the weights' values where an op constrains them
    /// (per-channel shifts), uploads the weights to `device` and plans every op.
    pub fn new(program: &Program, weights: &Weights, device: Device) -> Result<Self> {
        program.validate()?;
        let host_weights = weights.tensors().to_vec();
        for node in &program.ops {
            if let (Op::FullyConnected { .. }, [_, _, _, _, Operand::Weight(s)]) =
                (&node.op, node.inputs.as_slice())
            {
                let s = host_weights[*s as usize].as_i32("fully_connected shift")?;
                crate::ops::check_shifts(OpKind::FullyConnected, s)?;
            }
        }
        let uploaded = host_weights
            .iter()
            .map(|t| to_device(t, device))
            .collect::<Result<Vec<_>>>()?;
        // `w^T` of each weight used by a `fully_connected`, shared by its uses.
        let mut transposed: Vec<Option<tch::Tensor>> = (0..uploaded.len()).map(|_| None).collect();
        let mut fc = Vec::with_capacity(program.ops.len());
        let mut plans = Vec::with_capacity(program.ops.len());
        for (i, node) in program.ops.iter().enumerate() {
            let types = node
                .inputs
                .iter()
                .map(|&o| match o {
                    Operand::Slot(s) => program.slot_type(s),
                    Operand::Weight(w) => Ok(&program.weights[w as usize]),
                })
                .collect::<crate::Result<Vec<_>>>()?;
            plans.push(if kernels::fits_i64(&node.op, &types) {
                Plan::Torch
            } else {
                Plan::Host
            });
            fc.push(None);
            let (
                Op::FullyConnected {
                    x_zero_point,
                    y_zero_point,
                },
                [
                    _,
                    Operand::Weight(w),
                    Operand::Weight(bias),
                    Operand::Weight(multiplier),
                    Operand::Weight(shift),
                ],
            ) = (&node.op, node.inputs.as_slice())
            else {
                continue;
            };
            let wrap = |e: Error| Error::Op {
                index: i + 1,
                kind: node.op.kind(),
                source: Box::new(e),
            };
            let w_t = match &transposed[*w as usize] {
                Some(t) => t.shallow_clone(),
                None => {
                    let t = kernels::transpose_weight(
                        &uploaded[*w as usize],
                        &host_weights[*w as usize],
                    )
                    .map_err(wrap)?;
                    transposed[*w as usize] = Some(t.shallow_clone());
                    t
                }
            };
            let host = |k: &u32| &host_weights[*k as usize];
            let operands = kernels::FcOperands {
                w: host(w),
                bias: host(bias),
                multiplier: host(multiplier),
                shift: host(shift),
            };
            fc[i] = Some(
                kernels::FcConsts::new(w_t, &operands, *x_zero_point, *y_zero_point, device)
                    .map_err(wrap)?,
            );
        }
        Ok(Self {
            program: program.clone(),
            device,
            host_weights,
            weights: uploaded,
            fc,
            plans,
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The 1-based indices of the ops that run on the CPU engine's kernel, because their
    /// operand bounds do not fit the `i64` paths (empty for the models this repo builds).
    pub fn host_ops(&self) -> Vec<usize> {
        self.plans
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, Plan::Host))
            .map(|(i, _)| i + 1)
            .collect()
    }

    fn check_input(&self, input: &Tensor) -> Result<()> {
        if input.ty() != self.program.input {
            return Err(crate::Error::Program(format!(
                "the input is {}, the program takes {}",
                input.ty(),
                self.program.input
            ))
            .into());
        }
        Ok(())
    }

    /// The serving path: the program's output on `input`. Activations are freed as soon as
    /// no later op reads them.
    pub fn run(&self, input: &Tensor) -> Result<Tensor> {
        self.check_input(input)?;
        let y = self.run_slots(to_device(input, self.device)?, None)?;
        from_device(&y, self.output_type()?)
    }

    /// The serving path for several inputs at once: the outputs of [`TchModel::run`] on
    /// each, in order, bit for bit, from one pass over the program on tensors stacked along
    /// a new leading axis (one libtorch call per step for the whole batch instead of one per
    /// input: on a GPU, where a step's launch costs more than its work at batch 1, this is
    /// what throughput comes from).
    ///
    /// Every op runs on the stacked tensors as it would on each input alone: elementwise and
    /// row-wise ops as they are, ops that name an axis with the axis moved by one, ops
    /// whose first axis groups rows (`batch_matmul`, masks, `mean_pool`) with the batch
    /// axis merged into it; an op whose table or weight-like operand is itself computed
    /// (not a weight) runs once per input.
    pub fn run_batch<T: std::borrow::Borrow<Tensor>>(&self, inputs: &[T]) -> Result<Vec<Tensor>> {
        for input in inputs {
            self.check_input(input.borrow())?;
        }
        match inputs {
            [] => return Ok(Vec::new()),
            [one] => return Ok(vec![self.run(one.borrow())?]),
            _ => {}
        }
        // Stacked on the host and uploaded once; the outputs come back in one copy too.
        let host = inputs
            .iter()
            .map(|t| to_device(t.borrow(), Device::Cpu))
            .collect::<Result<Vec<_>>>()?;
        let stacked = tch::Tensor::f_stack(&host, 0)?.f_to(self.device)?;
        let b = inputs.len() as i64;
        let y = self.run_slots(stacked, Some(b))?.f_to(Device::Cpu)?;
        let ty = self.output_type()?;
        (0..b)
            .map(|r| from_device(&y.f_select(0, r)?, ty))
            .collect()
    }

    fn output_type(&self) -> Result<&TensorType> {
        Ok(self.program.slot_type(self.program.output)?)
    }

    /// Runs every op on `first` (the input slot, stacked when `batch` is set), freeing each
    /// activation after its last reader; the output slot.
    fn run_slots(&self, first: tch::Tensor, batch: Option<i64>) -> Result<tch::Tensor> {
        let n = self.program.ops.len();
        let mut last_use = vec![0usize; n + 1];
        for (i, node) in self.program.ops.iter().enumerate() {
            for o in &node.inputs {
                if let Operand::Slot(s) = o {
                    last_use[*s as usize] = i + 1;
                }
            }
        }
        let out = self.program.output as usize;
        last_use[out] = usize::MAX;
        let mut slots: Vec<Option<tch::Tensor>> = (0..=n).map(|_| None).collect();
        slots[0] = Some(first);
        for i in 1..=n {
            let y = self.step(&slots, i, batch)?;
            slots[i] = Some(y);
            for o in &self.program.ops[i - 1].inputs {
                if let Operand::Slot(s) = o
                    && last_use[*s as usize] == i
                {
                    slots[*s as usize] = None;
                }
            }
        }
        slots[out].take().ok_or_else(|| {
            crate::Error::Program(format!("output slot {out} was never written")).into()
        })
    }

    /// Every slot after running `input`: the input, then each op's output, in slot order
    /// (what [`crate::trace::Trace`] holds, for comparing and recomputing traces).
    pub fn run_all(&self, input: &Tensor) -> Result<Vec<Tensor>> {
        self.check_input(input)?;
        let n = self.program.ops.len();
        let mut slots: Vec<Option<tch::Tensor>> = (0..=n).map(|_| None).collect();
        slots[0] = Some(to_device(input, self.device)?);
        for i in 1..=n {
            let y = self.step(&slots, i, None)?;
            slots[i] = Some(y);
        }
        let mut out = Vec::with_capacity(n + 1);
        out.push(input.clone());
        for (i, slot) in slots.iter().enumerate().skip(1) {
            let t = slot
                .as_ref()
                .ok_or_else(|| crate::Error::Program(format!("slot {i} was never written")))?;
            out.push(from_device(t, &self.program.ops[i - 1].output)?);
        }
        Ok(out)
    }

    /// Runs op `index` (1-based) on the slots written so far (each stacked `batch` inputs
    /// deep when `batch` is set).
    fn step(
        &self,
        slots: &[Option<tch::Tensor>],
        index: usize,
        batch: Option<i64>,
    ) -> Result<tch::Tensor> {
        let node = &self.program.ops[index - 1];
        let wrap = |e: Error| Error::Op {
            index,
            kind: node.op.kind(),
            source: Box::new(e),
        };
        let inputs = node
            .inputs
            .iter()
            .map(|o| match *o {
                Operand::Slot(s) => slots[s as usize].as_ref().ok_or_else(|| {
                    crate::Error::Program(format!(
                        "op {index} reads slot {s}, which was freed or never written"
                    ))
                    .into()
                }),
                Operand::Weight(w) => Ok(&self.weights[w as usize]),
            })
            .collect::<Result<Vec<_>>>()
            .map_err(wrap)?;
        match (&self.plans[index - 1], batch) {
            (Plan::Torch, None) => self.torch_op(index, &inputs).map_err(wrap),
            (Plan::Host, None) => self.host_op(index, &inputs).map_err(wrap),
            (Plan::Torch, Some(b)) => self.torch_op_batched(index, &inputs, b).map_err(wrap),
            (Plan::Host, Some(b)) => self.per_input(index, &inputs, b).map_err(wrap),
        }
    }

    /// An op on the CPU engine: operands copied to the host, the result copied back.
    fn host_op(&self, index: usize, inputs: &[&tch::Tensor]) -> Result<tch::Tensor> {
        let node = &self.program.ops[index - 1];
        let host = node
            .inputs
            .iter()
            .zip(inputs)
            .map(|(o, t)| match *o {
                Operand::Weight(w) => Ok(self.host_weights[w as usize].clone()),
                Operand::Slot(s) => from_device(t, self.program.slot_type(s)?),
            })
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = host.iter().collect();
        let y = node.op.execute(&refs, &node.output, None)?;
        to_device(&y, self.device)
    }

    /// The constants of `fully_connected` op `index` whose operands are not all weights,
    /// from host copies of its operands (the rare path: each run prepares them again).
    fn fc_consts(
        &self,
        index: usize,
        x: &[&tch::Tensor],
        x_zero_point: i32,
        y_zero_point: i32,
    ) -> Result<kernels::FcConsts> {
        let node = &self.program.ops[index - 1];
        let host = (1..=4)
            .map(|i| match node.inputs[i] {
                Operand::Weight(w) => Ok(self.host_weights[w as usize].clone()),
                Operand::Slot(s) => from_device(x[i], self.program.slot_type(s)?),
            })
            .collect::<Result<Vec<_>>>()?;
        let operands = kernels::FcOperands {
            w: &host[0],
            bias: &host[1],
            multiplier: &host[2],
            shift: &host[3],
        };
        kernels::FcConsts::new(
            kernels::transpose_weight(x[1], &host[0])?,
            &operands,
            x_zero_point,
            y_zero_point,
            self.device,
        )
    }

    /// Op `index` on `b` stacked inputs, one input at a time (each slot operand's slice of
    /// that input, weights as they are), the results stacked again: for the ops whose
    /// operands do not batch (and those on the CPU engine).
    fn per_input(&self, index: usize, x: &[&tch::Tensor], b: i64) -> Result<tch::Tensor> {
        let node = &self.program.ops[index - 1];
        let outputs = (0..b)
            .map(|r| {
                let sliced = node
                    .inputs
                    .iter()
                    .zip(x)
                    .map(|(o, t)| match o {
                        Operand::Slot(_) => Ok(t.f_select(0, r)?),
                        Operand::Weight(_) => Ok(t.shallow_clone()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let refs: Vec<&tch::Tensor> = sliced.iter().collect();
                match self.plans[index - 1] {
                    Plan::Torch => self.torch_op(index, &refs),
                    Plan::Host => self.host_op(index, &refs),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(tch::Tensor::f_stack(&outputs, 0)?)
    }

    /// Op `index` through its libtorch kernel on `b` stacked inputs (see
    /// [`TchModel::run_batch`]).
    fn torch_op_batched(&self, index: usize, x: &[&tch::Tensor], b: i64) -> Result<tch::Tensor> {
        let node = &self.program.ops[index - 1];
        let is_weight = |i: usize| matches!(node.inputs.get(i), Some(Operand::Weight(_)));
        // The declared output with the batch axis in front.
        let mut out = node.output.clone();
        out.shape.insert(0, b as usize);
        let out_shape = kernels::shape_of(&out);
        // Operand `i` with the batch axis merged into its first axis (a weight repeated for
        // every input first), for the ops whose first axis groups rows.
        let merged = |i: usize| -> Result<tch::Tensor> {
            let t = x[i];
            let t = if is_weight(i) {
                let mut sizes = t.size();
                sizes.insert(0, b);
                t.f_unsqueeze(0)?.f_expand(sizes.as_slice(), false)?
            } else {
                t.shallow_clone()
            };
            let mut sizes = t.size();
            let first = sizes.remove(0) * sizes.remove(0);
            sizes.insert(0, first);
            Ok(t.f_reshape(sizes.as_slice())?)
        };
        let shifted = |axis: usize| axis as i64 + 1;
        // Softmax's causal rows and rope's positions are the second axis from the end: an
        // operand without one would take the batch axis for it.
        let has_rows = node.output.shape.len() >= 2;
        match &node.op {
            // Row-wise and elementwise: the batch axis is one more leading axis (`add` and
            // `mul` take operands of one shape: a slot is batched like the other, a weight
            // broadcasts).
            Op::Add { .. }
            | Op::Mul { .. }
            | Op::Requantize { .. }
            | Op::Argmax
            | Op::SoftmaxNorm { .. }
                if !is_weight(0) =>
            {
                self.torch_op_out(index, x, &out)
            }
            // The per-column gamma and beta must be the same for every input.
            Op::LayerNorm { .. } | Op::RmsNorm { .. }
                if !is_weight(0) && (1..x.len()).all(is_weight) =>
            {
                self.torch_op_out(index, x, &out)
            }
            Op::Lut if !is_weight(0) && is_weight(1) => self.torch_op_out(index, x, &out),
            Op::FullyConnected { .. } if self.fc[index - 1].is_some() && !is_weight(0) => {
                self.torch_op_out(index, x, &out)
            }
            Op::Embedding if is_weight(0) && !is_weight(1) => self.torch_op_out(index, x, &out),
            Op::Rope { .. } if has_rows && !is_weight(0) && is_weight(1) && is_weight(2) => {
                self.torch_op_out(index, x, &out)
            }
            Op::Reshape if !is_weight(0) => {
                Ok(x[0].f_reshape(out_shape.as_slice())?.f_contiguous()?)
            }
            Op::Transpose { perm } if !is_weight(0) => {
                let perm: Vec<i64> = std::iter::once(0)
                    .chain(perm.iter().map(|&p| shifted(p)))
                    .collect();
                Ok(x[0].f_permute(perm.as_slice())?.f_contiguous()?)
            }
            Op::Slice { axis, start, end } if !is_weight(0) => Ok(x[0]
                .f_narrow(shifted(*axis), *start as i64, (*end - *start) as i64)?
                .f_contiguous()?),
            Op::Concat { axis } if (0..x.len()).all(|i| !is_weight(i)) => {
                Ok(tch::Tensor::f_cat(x, shifted(*axis))?)
            }
            Op::BatchMatmul { .. } => {
                let (a, bm) = (merged(0)?, merged(1)?);
                Ok(self
                    .torch_op_out(index, &[&a, &bm], &out)?
                    .f_reshape(out_shape.as_slice())?)
            }
            Op::Softmax { .. } | Op::SoftmaxExp { .. }
                if has_rows && !is_weight(0) && is_weight(1) =>
            {
                match x.get(2) {
                    None => self.torch_op_out(index, x, &out),
                    Some(_) => {
                        let mask = merged(2)?;
                        self.torch_op_out(index, &[x[0], x[1], &mask], &out)
                    }
                }
            }
            Op::MeanPool { .. } => {
                let (xs, mask) = (merged(0)?, merged(1)?);
                Ok(self
                    .torch_op_out(index, &[&xs, &mask], &out)?
                    .f_reshape(out_shape.as_slice())?)
            }
            _ => self.per_input(index, x, b),
        }
    }

    /// An op through its libtorch kernel.
    fn torch_op(&self, index: usize, x: &[&tch::Tensor]) -> Result<tch::Tensor> {
        self.torch_op_out(index, x, &self.program.ops[index - 1].output)
    }

    /// An op through its libtorch kernel, producing `out` (the declared output, or that with
    /// a batch axis in front).
    fn torch_op_out(
        &self,
        index: usize,
        x: &[&tch::Tensor],
        out: &TensorType,
    ) -> Result<tch::Tensor> {
        let node = &self.program.ops[index - 1];
        match &node.op {
            Op::FullyConnected {
                x_zero_point,
                y_zero_point,
            } => {
                let built;
                let c = match &self.fc[index - 1] {
                    Some(c) => c,
                    None => {
                        built = self.fc_consts(index, x, *x_zero_point, *y_zero_point)?;
                        &built
                    }
                };
                kernels::fully_connected(x[0], c, out)
            }
            Op::BatchMatmul {
                transpose_b,
                a_zero_point,
                b_zero_point,
                multiplier,
                shift,
                y_zero_point,
            } => kernels::batch_matmul(
                x[0],
                x[1],
                *transpose_b,
                *a_zero_point,
                *b_zero_point,
                *multiplier,
                *shift,
                *y_zero_point,
                out,
            ),
            Op::Add {
                a_zero_point,
                a_multiplier,
                b_zero_point,
                b_multiplier,
                shift,
                y_zero_point,
            } => kernels::add(
                x[0],
                x[1],
                *a_zero_point,
                *a_multiplier,
                *b_zero_point,
                *b_multiplier,
                *shift,
                *y_zero_point,
                out,
            ),
            Op::Mul {
                a_zero_point,
                b_zero_point,
                multiplier,
                shift,
                y_zero_point,
            } => kernels::mul(
                x[0],
                x[1],
                *a_zero_point,
                *b_zero_point,
                *multiplier,
                *shift,
                *y_zero_point,
                out,
            ),
            Op::Requantize {
                x_zero_point,
                multiplier,
                shift,
                y_zero_point,
            } => kernels::requantize(x[0], *x_zero_point, *multiplier, *shift, *y_zero_point, out),
            Op::Lut => kernels::lut(x[0], x[1]),
            Op::Softmax {
                causal,
                frac_bits,
                y_zero_point,
            } => kernels::softmax(
                x[0],
                x[1],
                x.get(2).copied(),
                *causal,
                *frac_bits,
                *y_zero_point,
                out,
            ),
            Op::LayerNorm {
                epsilon,
                shift,
                y_zero_point,
            } => kernels::layer_norm(x[0], x[1], x[2], *epsilon, *shift, *y_zero_point, out),
            Op::RmsNorm {
                x_zero_point,
                epsilon,
                shift,
                y_zero_point,
            } => kernels::rms_norm(
                x[0],
                x[1],
                *x_zero_point,
                *epsilon,
                *shift,
                *y_zero_point,
                out,
            ),
            Op::Embedding => kernels::embedding(x[0], x[1], out),
            Op::Rope {
                x_zero_point,
                y_zero_point,
                position_offset,
                frac_bits,
                pairing,
            } => kernels::rope(
                x[0],
                x[1],
                x[2],
                *x_zero_point,
                *y_zero_point,
                *position_offset,
                *frac_bits,
                *pairing,
                out,
            ),
            Op::Reshape => Ok(x[0]
                .f_reshape(kernels::shape_of(out).as_slice())?
                .f_contiguous()?),
            Op::Transpose { perm } => {
                let perm: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
                Ok(x[0].f_permute(perm.as_slice())?.f_contiguous()?)
            }
            Op::Concat { axis } => Ok(tch::Tensor::f_cat(x, *axis as i64)?),
            Op::Slice { axis, start, end } => Ok(x[0]
                .f_narrow(*axis as i64, *start as i64, (*end - *start) as i64)?
                .f_contiguous()?),
            Op::MeanPool {
                x_zero_point,
                frac_bits,
                y_zero_point,
            } => kernels::mean_pool(x[0], x[1], *x_zero_point, *frac_bits, *y_zero_point, out),
            Op::Argmax => kernels::argmax(x[0]),
            Op::SoftmaxExp { causal } => {
                kernels::softmax_exp(x[0], x[1], x.get(2).copied(), *causal)
            }
            Op::SoftmaxNorm {
                frac_bits,
                y_zero_point,
            } => kernels::softmax_norm(x[0], *frac_bits, *y_zero_point, out),
        }
    }
}

/// Whether a use of `op` on operands of these types runs through the libtorch kernels
/// (every intermediate provably inside `i64`), rather than the CPU engine's kernel.
pub fn runs_on_torch(op: &Op, inputs: &[&TensorType]) -> bool {
    kernels::fits_i64(op, inputs)
}

/// Runs one op on host tensors through the libtorch kernels on `device` (operands uploaded,
/// the result copied back): the unit the op-by-op tests compare with [`Op::execute`].
/// Uses the CPU engine where the op's bounds leave the `i64` paths, as [`TchModel`] does.
pub fn execute(op: &Op, inputs: &[&Tensor], output: &TensorType, device: Device) -> Result<Tensor> {
    let (first, rest) = inputs
        .split_first()
        .ok_or_else(|| crate::Error::Program(format!("{} takes operands", op.kind())))?;
    one_op_model(op, first, rest, output, device)?.run(first)
}

/// [`execute`] through [`TchModel::run_batch`]: the op's first operand takes each of
/// `firsts` in turn (one batch), the others are `rest`; the outputs in order.
pub fn execute_batch(
    op: &Op,
    firsts: &[Tensor],
    rest: &[&Tensor],
    output: &TensorType,
    device: Device,
) -> Result<Vec<Tensor>> {
    let first = firsts
        .first()
        .ok_or_else(|| crate::Error::Program("a batch of no inputs".into()))?;
    one_op_model(op, first, rest, output, device)?.run_batch(firsts)
}

/// A program of one op whose first operand is the input and the others weights.
fn one_op_model(
    op: &Op,
    first: &Tensor,
    rest: &[&Tensor],
    output: &TensorType,
    device: Device,
) -> Result<TchModel> {
    let mut b = crate::program::ProgramBuilder::new(first.ty());
    let mut operands = vec![b.input()];
    for (i, t) in rest.iter().enumerate() {
        operands.push(b.weight(format!("operand{}", i + 1), (*t).clone()));
    }
    let y = b.push_typed(op.clone(), &operands, output.clone())?;
    let (program, weights) = b.finish(y)?;
    let weights = Weights::new(&program, weights.into_iter().map(|(_, t)| t).collect())?;
    TchModel::new(&program, &weights, device)
}
