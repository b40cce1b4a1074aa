//! Running programs: the serving path ([`run`]) and the trace executor ([`Trace`]).
//!
//! [`run`] computes the output only: no hashing, and every activation is freed as soon as
//! no later op reads it, so serving pays nothing for commitments. [`Trace`] runs the same
//! ops (the same kernels, so the same bits) and also hashes every slot, which gives the
//! execution state `s_i` after any op `i` and the proofs a dispute needs.

use crate::commit::{self, ActivationRoots};
use crate::error::{Error, Result};
use crate::gemm::PackedMatrix;
use crate::merkle::{H256, MerkleProof, MerkleTree, RangeProof};
use crate::ops::{FcEpilogue, Op};
use crate::program::{OpNode, Operand, Program};
use crate::row_parallel;
use crate::tensor::{Tensor, TensorType};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// A program's weights: the tensors, their hashes and root, and the packed form of every
/// weight used as the `w` of a `fully_connected`.
#[derive(Clone, Debug)]
pub struct Weights {
    tensors: Vec<Tensor>,
    hashes: Vec<H256>,
    root: H256,
    packed: Vec<Option<PackedMatrix>>,
    /// The requantization of every `fully_connected` whose operands are all weights, by
    /// those operands and its zero points (so programs sharing these weights, such as an
    /// encoder's length programs, find theirs too).
    epilogues: HashMap<FcKey, FcEpilogue>,
}

/// What a `fully_connected`'s requantization depends on: its weight operands (`w`, bias,
/// multiplier, shift) and its zero points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FcKey([u32; 4], i32, i32);

impl FcKey {
    /// The key of `node`, a `fully_connected` reading only weights after its `x`.
    fn of(node: &OpNode) -> Option<Self> {
        let Op::FullyConnected {
            x_zero_point,
            y_zero_point,
        } = node.op
        else {
            return None;
        };
        let mut w = [0u32; 4];
        for (slot, o) in w.iter_mut().zip(node.inputs.get(1..)?) {
            match *o {
                Operand::Weight(i) => *slot = i,
                Operand::Slot(_) => return None,
            }
        }
        (node.inputs.len() == 5).then_some(Self(w, x_zero_point, y_zero_point))
    }
}

impl Weights {
    /// Checks `tensors` against the program's declared weight types, then hashes and packs.
    pub fn new(program: &Program, tensors: Vec<Tensor>) -> Result<Self> {
        Self::build(program, tensors, None)
    }

    /// [`Weights::new`], taking the hashes of tensors `memo` has seen and remembering the
    /// others' (for models that share weights).
    pub fn new_memo(
        program: &Program,
        tensors: Vec<Tensor>,
        memo: &mut commit::TensorHashMemo,
    ) -> Result<Self> {
        Self::build(program, tensors, Some(memo))
    }

    fn build(
        program: &Program,
        tensors: Vec<Tensor>,
        memo: Option<&mut commit::TensorHashMemo>,
    ) -> Result<Self> {
        if tensors.len() != program.weights.len() {
            return Err(Error::Program(format!(
                "the program declares {} weights, got {}",
                program.weights.len(),
                tensors.len()
            )));
        }
        for (i, (t, ty)) in tensors.iter().zip(&program.weights).enumerate() {
            if t.ty() != *ty {
                return Err(Error::Program(format!(
                    "weight {i} is {}, the program declares {ty}",
                    t.ty()
                )));
            }
        }
        let mut packed: Vec<Option<PackedMatrix>> = vec![None; tensors.len()];
        for node in &program.ops {
            if let (Op::FullyConnected { .. }, Some(Operand::Weight(w))) =
                (&node.op, node.inputs.get(1))
            {
                let w = *w as usize;
                if packed[w].is_none() {
                    let t = &tensors[w];
                    packed[w] = Some(PackedMatrix::pack(
                        t.as_i8("fully_connected w")?,
                        t.shape()[0],
                        t.shape()[1],
                    ));
                }
            }
        }
        let mut epilogues = HashMap::new();
        for node in &program.ops {
            let Some(key) = FcKey::of(node) else { continue };
            let [w, bias, m, shift] = key.0.map(|i| i as usize);
            if let (Some(Some(p)), Some(b), Some(m), Some(s)) = (
                packed.get(w),
                tensors.get(bias),
                tensors.get(m),
                tensors.get(shift),
            ) && !epilogues.contains_key(&key)
                // An op with bad operands is left to fail when it runs, with its context.
                && let Ok(e) = FcEpilogue::new(p, b, m, s, key.1, key.2)
            {
                epilogues.insert(key, e);
            }
        }
        let hashes: Vec<H256> = match memo {
            None => tensors.iter().map(commit::tensor_hash).collect(),
            Some(memo) => tensors
                .iter()
                .map(|t| {
                    memo.get(t).unwrap_or_else(|| {
                        let h = commit::tensor_hash(t);
                        memo.insert(t, h);
                        h
                    })
                })
                .collect(),
        };
        let root = commit::weights_root(&hashes);
        Ok(Self {
            tensors,
            hashes,
            root,
            packed,
            epilogues,
        })
    }

    /// The weight tensors, in program order.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// Tensor hashes of the weights, in program order.
    pub fn hashes(&self) -> &[H256] {
        &self.hashes
    }

    /// The packed form of weight `index`, if an op uses it as the `w` of a
    /// `fully_connected`.
    pub fn packed(&self, index: usize) -> Option<&PackedMatrix> {
        self.packed.get(index).and_then(Option::as_ref)
    }

    /// The packed weight matrix of `node`, if it is a `fully_connected` by a weight.
    pub(crate) fn packed_for(&self, node: &OpNode) -> Option<&PackedMatrix> {
        match (&node.op, node.inputs.get(1)) {
            (Op::FullyConnected { .. }, Some(Operand::Weight(w))) => self.packed(*w as usize),
            _ => None,
        }
    }

    /// The requantization of `node`, built at load, if it is a `fully_connected` whose
    /// operands after `x` are all weights.
    pub(crate) fn epilogue(&self, node: &OpNode) -> Option<&FcEpilogue> {
        self.epilogues.get(&FcKey::of(node)?)
    }

    /// The weights root: Merkle root over the weight hashes.
    pub fn root(&self) -> H256 {
        self.root
    }

    /// Proof that weight `index`'s hash is leaf `index` of the weights root.
    pub fn prove(&self, index: usize) -> Result<MerkleProof> {
        MerkleTree::new(self.hashes.iter().map(|h| h.0).collect()).prove(index)
    }
}

fn check_input(program: &Program, input: &Tensor) -> Result<()> {
    if input.ty() != program.input {
        return Err(Error::Program(format!(
            "the input is {}, the program takes {}",
            input.ty(),
            program.input
        )));
    }
    Ok(())
}

/// Runs op `index` (1-based) reading operands from `slots`, together with the ops right
/// after it that it can share a matrix product with: `fully_connected` ops by the same
/// weight matrix that do not read each other's outputs (the two halves of a split 16-bit
/// input, for one). Returns the outputs of ops `index..index + len`, in order; each is bit
/// for bit what the op alone computes.
fn step(
    program: &Program,
    weights: &Weights,
    slots: &[Option<Tensor>],
    index: usize,
) -> Result<Vec<Tensor>> {
    let operands = |i: usize| slot_operands(program, weights, slots, i);
    let node = &program.ops[index - 1];
    let packed = weights.packed_for(node);
    if packed.is_some() {
        let shared = shared_product_len(program, index);
        let inputs = (index..index + shared)
            .map(operands)
            .collect::<Result<Vec<_>>>()?;
        let nodes: Vec<&OpNode> = program.ops[index - 1..index - 1 + shared].iter().collect();
        let types: Vec<&TensorType> = nodes.iter().map(|n| &n.output).collect();
        return run_fc_shared(weights, &nodes, &inputs, &types).map_err(|e| match shared {
            1 => Error::Program(format!("op {index} (fully_connected): {e}")),
            _ => Error::Program(format!(
                "ops {index}..={} (fully_connected, one shared product): {e}",
                index + shared - 1
            )),
        });
    }
    let out = node
        .op
        .execute(&operands(index)?, &node.output, packed)
        .map_err(|e| Error::Program(format!("op {index} ({}): {e}", node.op.kind())))?;
    Ok(vec![out])
}

/// The operands of op `i` (1-based), from `slots` and the weights.
fn slot_operands<'a>(
    program: &Program,
    weights: &'a Weights,
    slots: &'a [Option<Tensor>],
    i: usize,
) -> Result<Vec<&'a Tensor>> {
    program.ops[i - 1]
        .inputs
        .iter()
        .map(|o| operand(weights, slots, i, o))
        .collect()
}

/// Operand `o` of op `i` (1-based), from `slots` or the weights.
pub(crate) fn operand<'a>(
    weights: &'a Weights,
    slots: &'a [Option<Tensor>],
    i: usize,
    o: &Operand,
) -> Result<&'a Tensor> {
    match *o {
        Operand::Slot(s) => slots[s as usize].as_ref().ok_or_else(|| {
            Error::Program(format!(
                "op {i} reads slot {s}, which was freed or never written"
            ))
        }),
        Operand::Weight(w) => Ok(&weights.tensors[w as usize]),
    }
}

/// Runs `nodes`, `fully_connected` ops by one weight matrix, as one product on `inputs`
/// (each node's operands) into `types`, with their requantizations prepared at load.
pub(crate) fn run_fc_shared(
    weights: &Weights,
    nodes: &[&OpNode],
    inputs: &[Vec<&Tensor>],
    types: &[&TensorType],
) -> Result<Vec<Tensor>> {
    let ops: Vec<_> = nodes
        .iter()
        .zip(inputs)
        .zip(types)
        .map(|((node, x), ty)| (&node.op, x.as_slice(), *ty, weights.epilogue(node)))
        .collect();
    let packed = nodes.first().and_then(|n| weights.packed_for(n));
    Op::execute_fc_prepared(&ops, packed)
}

/// Runs `[a, b, add]` (see [`pair_add_at`]) as one on the operands of `a` and `b`, giving
/// the `add`'s output of type `types[2]` (`a` and `b` of `types[0]` and `types[1]`).
pub(crate) fn run_fc_pair_add(
    weights: &Weights,
    [a, b, add]: [&OpNode; 3],
    [xa, xb]: [&[&Tensor]; 2],
    [ta, tb, tadd]: [&TensorType; 3],
) -> Result<Tensor> {
    Op::execute_fc_pair_add(
        &[
            (&a.op, xa, ta, weights.epilogue(a)),
            (&b.op, xb, tb, weights.epilogue(b)),
        ],
        (&add.op, tadd),
        weights.packed_for(a),
    )
}

/// Whether ops `index` and `index + 1` (1-based) are a shared product of exactly two
/// `fully_connected` ops with `i32` outputs from inputs of one shape, and op `index + 2`
/// the `add` of their outputs (the first's as its `a`): the three can run as one
/// ([`Op::execute_fc_pair_add`]) when no other op reads the two products.
pub(crate) fn pair_add_at(program: &Program, index: usize) -> bool {
    let (Some(a), Some(b), Some(add)) = (
        program.ops.get(index - 1),
        program.ops.get(index),
        program.ops.get(index + 1),
    ) else {
        return false;
    };
    let x_type = |node: &OpNode| match node.inputs.first() {
        Some(&Operand::Slot(s)) if (s as usize) < index => Some(match s {
            0 => &program.input,
            s => &program.ops[s as usize - 1].output,
        }),
        _ => None,
    };
    shared_product_len(program, index) == 2
        && matches!(add.op, Op::Add { .. })
        && add.inputs == [Operand::Slot(index as u32), Operand::Slot(index as u32 + 1)]
        && a.output.dtype == crate::DType::I32
        && b.output.dtype == crate::DType::I32
        && x_type(a).is_some()
        && x_type(a).map(|t| &t.shape) == x_type(b).map(|t| &t.shape)
}

/// Runs ops `index..index + 3` fused ([`pair_add_at`]): the `add`'s output.
fn step_pair_add(
    program: &Program,
    weights: &Weights,
    slots: &[Option<Tensor>],
    index: usize,
) -> Result<Tensor> {
    let [a, b, add] = [0, 1, 2].map(|k| &program.ops[index - 1 + k]);
    let (xa, xb) = (
        slot_operands(program, weights, slots, index)?,
        slot_operands(program, weights, slots, index + 1)?,
    );
    run_fc_pair_add(
        weights,
        [a, b, add],
        [&xa, &xb],
        [&a.output, &b.output, &add.output],
    )
    .map_err(|e| {
        Error::Program(format!(
            "ops {index}..={} (two fully_connected and their add, fused): {e}",
            index + 2
        ))
    })
}

/// How many ops from `index` on (1-based; at least 1) run as one shared product: a run of
/// `fully_connected` ops by the same weight matrix, none reading an output of the run.
pub(crate) fn shared_product_len(program: &Program, index: usize) -> usize {
    let weight_of = |i: usize| match program.ops.get(i - 1) {
        Some(node) => match (&node.op, node.inputs.get(1)) {
            (Op::FullyConnected { .. }, Some(&Operand::Weight(w))) => Some(w),
            _ => None,
        },
        None => None,
    };
    let Some(w) = weight_of(index) else {
        return 1;
    };
    let mut len = 1;
    while weight_of(index + len) == Some(w)
        && !program.ops[index + len - 1]
            .inputs
            .iter()
            .any(|o| matches!(*o, Operand::Slot(s) if (index..index + len).contains(&(s as usize))))
    {
        len += 1;
    }
    len
}

/// The serving path: the program's output on `input`, nothing else.
///
/// Called from outside the thread pool, the program has every core to itself: runs of
/// row-local ops are then cut into row blocks, one per thread (see `row_parallel.rs`). Called
/// from inside the pool (programs side by side, one per core), each op runs whole.
pub fn run(program: &Program, weights: &Weights, input: &Tensor) -> Result<Tensor> {
    if rayon::current_thread_index().is_some() {
        // Side by side with other programs: every kernel stays on this thread. Split, its
        // pieces would be taken by threads busy with their own programs, and each would
        // wait on the others.
        return row_parallel::alone(|| run_in_pool(program, weights, input, false));
    }
    in_hot_pool(|| run_in_pool(program, weights, input, true))
}

/// [`run`] for a program that has the pool to itself for now, called from inside the pool
/// (a worker pool's only running job): its larger products and attention heads are offered
/// to the other threads, which take them while idle. Same output as [`run`]. Called from
/// outside the pool, it is [`run`].
///
/// A caller must not spawn other jobs on the same pool while this runs: a thread waiting in
/// one of its joins for a piece may take such a job from the pool's queue and run all of it
/// there, nested, while the other threads idle and this program waits for it. (The
/// sequencer's worker pool holds new jobs back while a job spreads.)
pub fn run_spread(program: &Program, weights: &Weights, input: &Tensor) -> Result<Tensor> {
    if rayon::current_thread_index().is_some() {
        return run_in_pool(program, weights, input, false);
    }
    run(program, weights, input)
}

/// Runs `f` inside the thread pool (so each parallel kernel starts without waking a worker
/// first). Called from outside the pool (one program at a time, using every core), the
/// other workers also stay awake until `f` returns, taking each kernel's share of work as
/// soon as it is offered instead of sleeping between kernels: a program is hundreds of
/// small kernels, and waking a sleeping thread for each costs about as much as the work.
/// On a pool of one thread, or called from inside the pool, `f` just runs (in the pool).
fn in_hot_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let helpers = rayon::current_num_threads().saturating_sub(1);
    if rayon::current_thread_index().is_some() || helpers == 0 {
        return rayon::scope(|_| f());
    }
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|_| {
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        // Set on the way out, a panic included (the scope waits for the helpers).
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _release = Release(&done);
        f()
    })
}

fn run_in_pool(
    program: &Program,
    weights: &Weights,
    input: &Tensor,
    split_rows: bool,
) -> Result<Tensor> {
    check_input(program, input)?;
    let n = program.ops.len();
    // last_use[s]: the last op that reads slot s (the output slot is kept to the end).
    let mut last_use = vec![0usize; n + 1];
    for (i, node) in program.ops.iter().enumerate() {
        for o in &node.inputs {
            if let Operand::Slot(s) = o {
                last_use[*s as usize] = i + 1;
            }
        }
    }
    last_use[program.output as usize] = usize::MAX;
    let mut slots: Vec<Option<Tensor>> = vec![None; n + 1];
    slots[0] = Some(input.clone());
    // Runs of row-local ops go to every thread at once, a block of rows each.
    let segments = if split_rows && rayon::current_num_threads() > 1 {
        row_parallel::segments(program)
    } else {
        Vec::new()
    };
    let mut segments = segments.iter().peekable();
    // fused[i]: ops i..i + 3 run as one (their two products read by their add alone).
    let fused: Vec<bool> = (0..=n)
        .map(|i| {
            i >= 1 && pair_add_at(program, i) && last_use[i] == i + 2 && last_use[i + 1] == i + 2
        })
        .collect();
    let mut i = 1;
    while i <= n {
        let (ran, outs): (_, Vec<(usize, Tensor)>) = match segments.peek() {
            Some(seg) if seg.ops.start == i => {
                let seg = segments.next().expect("peeked");
                let kept = row_parallel::run_segment(program, weights, &slots, seg, &fused, |j| {
                    last_use[j] >= seg.ops.end
                })?;
                (seg.ops.clone(), kept)
            }
            _ if fused[i] => (
                i..i + 3,
                vec![(i + 2, step_pair_add(program, weights, &slots, i)?)],
            ),
            _ => {
                let outs = step(program, weights, &slots, i)?;
                (i..i + outs.len(), (i..).zip(outs).collect())
            }
        };
        for (j, out) in outs {
            slots[j] = Some(out);
        }
        for j in ran.clone() {
            for s in &program.ops[j - 1].inputs {
                if let Operand::Slot(s) = s
                    && ran.contains(&last_use[*s as usize])
                {
                    slots[*s as usize] = None;
                }
            }
        }
        i = ran.end;
    }
    slots[program.output as usize]
        .take()
        .ok_or_else(|| Error::Program(format!("output slot {} was never written", program.output)))
}

/// A full execution with every slot kept and hashed: the trace a dispute is played over.
#[derive(Clone, Debug)]
pub struct Trace {
    slots: Vec<Tensor>,
    slot_hashes: Vec<H256>,
    weights_root: H256,
    roots: ActivationRoots,
    output: u32,
}

impl Trace {
    /// Runs `program` on `input`, keeping and hashing every slot.
    pub fn execute(program: &Program, weights: &Weights, input: &Tensor) -> Result<Self> {
        in_hot_pool(|| Self::execute_in_pool(program, weights, input))
    }

    /// Runs `program` like [`Trace::execute`], but hands each op's output to `hook` (with
    /// the op's 1-based index) before later ops read it. A hook that changes an output makes
    /// a faulty trace, computed onwards from the changed value: the adversary of the
    /// dispute tests and scenarios. The output must keep its type.
    pub fn execute_with_hook(
        program: &Program,
        weights: &Weights,
        input: &Tensor,
        hook: impl FnMut(usize, &mut Tensor) + Send,
    ) -> Result<Self> {
        let mut hook = hook;
        in_hot_pool(|| Self::execute_in_pool_with(program, weights, input, &mut hook))
    }

    fn execute_in_pool(program: &Program, weights: &Weights, input: &Tensor) -> Result<Self> {
        Self::execute_in_pool_with(program, weights, input, &mut |_, _| {})
    }

    fn execute_in_pool_with(
        program: &Program,
        weights: &Weights,
        input: &Tensor,
        hook: &mut (dyn FnMut(usize, &mut Tensor) + Send),
    ) -> Result<Self> {
        check_input(program, input)?;
        let n = program.ops.len();
        let mut slots: Vec<Option<Tensor>> = vec![None; n + 1];
        slots[0] = Some(input.clone());
        let mut i = 1;
        while i <= n {
            // The ops of one step do not read each other's outputs, so a hook changing one
            // of them changes nothing else in the step.
            let outs = step(program, weights, &slots, i)?;
            for mut out in outs {
                hook(i, &mut out);
                if out.ty() != program.ops[i - 1].output {
                    return Err(Error::Program(format!(
                        "the hook changed the type of op {i}'s output"
                    )));
                }
                slots[i] = Some(out);
                i += 1;
            }
        }
        let slots: Vec<Tensor> = slots
            .into_iter()
            .map(|s| s.expect("every slot was written"))
            .collect();
        let slot_hashes: Vec<H256> = slots.iter().map(commit::tensor_hash).collect();
        let roots = ActivationRoots::new(&slot_hashes);
        Ok(Self {
            slots,
            slot_hashes,
            weights_root: weights.root(),
            roots,
            output: program.output,
        })
    }

    /// The same trace with `slot` holding `tensor` instead (of the same type), every later
    /// slot unchanged: a trace that lies about one slot only.
    pub fn with_slot(&self, slot: usize, tensor: Tensor) -> Result<Self> {
        let old = self.tensor(slot)?;
        if old.ty() != tensor.ty() {
            return Err(Error::Param(format!(
                "slot {slot} is {}, not {}",
                old.ty(),
                tensor.ty()
            )));
        }
        let mut slots = self.slots.clone();
        let mut slot_hashes = self.slot_hashes.clone();
        slot_hashes[slot] = commit::tensor_hash(&tensor);
        slots[slot] = tensor;
        let roots = ActivationRoots::new(&slot_hashes);
        Ok(Self {
            slots,
            slot_hashes,
            weights_root: self.weights_root,
            roots,
            output: self.output,
        })
    }

    /// Number of ops `n`; states run from `s_0` to `s_n`.
    pub fn op_count(&self) -> usize {
        self.slots.len() - 1
    }

    /// The tensor in `slot`.
    pub fn tensor(&self, slot: usize) -> Result<&Tensor> {
        self.slots.get(slot).ok_or_else(|| self.no_slot(slot))
    }

    /// The program's output tensor.
    pub fn output(&self) -> &Tensor {
        &self.slots[self.output as usize]
    }

    /// Tensor hash of `slot`.
    pub fn slot_hash(&self, slot: usize) -> Result<H256> {
        self.slot_hashes
            .get(slot)
            .copied()
            .ok_or_else(|| self.no_slot(slot))
    }

    /// Tensor hashes of every slot.
    pub fn slot_hashes(&self) -> &[H256] {
        &self.slot_hashes
    }

    /// The activations root after op `i`: slots `0..=i` set, the rest zero.
    pub fn activations_root(&self, i: usize) -> Result<H256> {
        self.roots.root(i).ok_or_else(|| self.no_state(i))
    }

    /// The execution state `s_i = keccak256(weightsRoot || activationsRoot_i)`.
    pub fn state(&self, i: usize) -> Result<H256> {
        Ok(commit::execution_state(
            self.weights_root,
            self.activations_root(i)?,
        ))
    }

    /// Every state `s_0..=s_n`.
    pub fn states(&self) -> Vec<H256> {
        (0..=self.op_count())
            .map(|i| self.state(i).expect("in range"))
            .collect()
    }

    /// Proof that `slot`'s tensor hash is in the activations root of state `i`
    /// (`slot <= i`).
    pub fn prove_slot(&self, i: usize, slot: usize) -> Result<MerkleProof> {
        if i > self.op_count() {
            return Err(self.no_state(i));
        }
        if slot > i {
            return Err(Error::Param(format!(
                "slot {slot} is not yet written in state {i}"
            )));
        }
        commit::prove_slot(&self.slot_hashes[..=i], self.slots.len(), slot)
    }

    /// Proof of leaf `leaf` of `slot`'s data tree, with the leaf's 32 bytes.
    pub fn prove_leaf(&self, slot: usize, leaf: usize) -> Result<([u8; 32], MerkleProof)> {
        let t = self.tensor(slot)?;
        Ok((
            commit::tensor_leaf(t, leaf)?,
            commit::tensor_data_tree(t).prove(leaf)?,
        ))
    }

    /// Proof of leaves `start..end` of `slot`'s data tree.
    pub fn prove_leaves(&self, slot: usize, start: usize, end: usize) -> Result<RangeProof> {
        commit::tensor_data_tree(self.tensor(slot)?).prove_range(start, end)
    }

    fn no_slot(&self, slot: usize) -> Error {
        Error::Param(format!(
            "slot {slot} does not exist ({} slots)",
            self.slots.len()
        ))
    }

    fn no_state(&self, i: usize) -> Error {
        Error::Param(format!(
            "state {i} does not exist (0..={})",
            self.op_count()
        ))
    }
}
