//! Row-parallel segments of the serving path.
//!
//! Most ops of a transformer treat each row (every axis but the last, flattened) on its
//! own: products by a weight matrix, norms, requantizations, elementwise adds, tables. A
//! run of consecutive such ops over the same number of rows (a *segment*: in an encoder
//! layer, everything from the attention output projection to the next layer's Q, K and V)
//! can be cut into row blocks, each block running the whole segment on one thread. That is
//! one hand-off per segment instead of one or more per op, and the small elementwise ops,
//! which alone are not worth splitting, run in parallel too. This is what lets one short
//! sentence use both cores.
//!
//! Each row is computed by the same kernel from the same operand rows whichever block it
//! falls in (the kernels are row-wise and exact), so the output does not depend on the
//! split or the thread count.

use crate::error::{Error, Result};
use crate::ops::Op;
use crate::program::{OpNode, Operand, Program};
use crate::tensor::{Tensor, TensorData, TensorType};
use crate::trace::{self, Weights};
use rayon::prelude::*;
use std::cell::Cell;
use std::ops::Range;

thread_local! {
    /// Set while a thread runs its block of a segment, or a whole program side by side with
    /// others ([`crate::trace::run`] from inside the pool): its kernels then stay on it.
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// How many threads a kernel on this thread may split its work over: the pool's size, or
/// 1 inside a segment's block (the segment is already split across the pool) or a program
/// run side by side with others.
pub(crate) fn kernel_threads() -> usize {
    if ALONE.get() {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Runs `f` with [`kernel_threads`] at 1 on this thread.
pub(crate) fn alone<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ALONE.set(self.0);
        }
    }
    let _restore = Restore(ALONE.replace(true));
    f()
}

/// Least work (roughly, element operations; a multiply-add of a product counts one) for
/// which a segment is split: below it a hand-off costs more than it saves.
const MIN_SEGMENT_WORK: usize = 1 << 15;

/// Ops `ops` (1-based, end exclusive) of a program: row-local ops over `rows` rows each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) ops: Range<usize>,
    pub(crate) rows: usize,
}

/// The type of operand `o`.
fn operand_type<'a>(program: &'a Program, o: &Operand) -> Option<&'a TensorType> {
    match *o {
        Operand::Slot(0) => Some(&program.input),
        Operand::Slot(s) => program.ops.get(s as usize - 1).map(|n| &n.output),
        Operand::Weight(w) => program.weights.get(w as usize),
    }
}

/// Rows of a type: the product of every axis but the last; `None` for a scalar or an
/// empty last axis.
fn rows(ty: &TensorType) -> Option<usize> {
    match ty.shape.split_last() {
        Some((&last, rest)) if last > 0 => Some(rest.iter().product()),
        _ => None,
    }
}

/// Which operands of `op` are cut by rows when the op is row-local (output row `r` reads
/// only row `r` of these, and the other operands whole), or `None` for an op that mixes
/// rows.
fn split_operands(op: &Op, arity: usize) -> Option<&'static [usize]> {
    match op {
        Op::FullyConnected { .. }
        | Op::Requantize { .. }
        | Op::Lut
        | Op::LayerNorm { .. }
        | Op::RmsNorm { .. }
        | Op::SoftmaxNorm { .. }
        | Op::Reshape => Some(&[0]),
        Op::Softmax { causal: false, .. } | Op::SoftmaxExp { causal: false } if arity == 2 => {
            Some(&[0])
        }
        Op::Add { .. } | Op::Mul { .. } => Some(&[0, 1]),
        _ => None,
    }
}

/// The rows of `node` when it is row-local, with its rough work.
fn row_local(program: &Program, node: &OpNode) -> Option<(usize, usize)> {
    let split = split_operands(&node.op, node.inputs.len())?;
    let out_rows = rows(&node.output)?;
    for &i in split {
        let ty = operand_type(program, node.inputs.get(i)?)?;
        if rows(ty)? != out_rows {
            return None;
        }
        // A reshape keeps its rows only when it keeps the last axis.
        if matches!(node.op, Op::Reshape) && ty.shape.last() != node.output.shape.last() {
            return None;
        }
    }
    let mut work = node.output.numel();
    if let (Op::FullyConnected { .. }, Some(w)) = (&node.op, node.inputs.get(1))
        && let Some(w) = operand_type(program, w)
    {
        work = work.saturating_mul(w.shape.get(1).copied().unwrap_or(1));
    }
    Some((out_rows, work))
}

/// The program's segments worth splitting, in order: maximal runs of row-local ops over
/// the same rows (at least two rows), with at least [`MIN_SEGMENT_WORK`] between them.
pub(crate) fn segments(program: &Program) -> Vec<Segment> {
    segments_with(program, MIN_SEGMENT_WORK)
}

/// [`segments`] with at least `min_work` each.
fn segments_with(program: &Program, min_work: usize) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut current: Option<(Segment, usize)> = None;
    let mut close = |current: &mut Option<(Segment, usize)>| {
        if let Some((seg, work)) = current.take()
            && work >= min_work
        {
            out.push(seg);
        }
    };
    for (i, node) in program.ops.iter().enumerate() {
        let index = i + 1;
        match row_local(program, node) {
            Some((rows, work)) if rows >= 2 => match &mut current {
                Some((seg, total)) if seg.rows == rows => {
                    seg.ops.end = index + 1;
                    *total = total.saturating_add(work);
                }
                _ => {
                    close(&mut current);
                    current = Some((
                        Segment {
                            ops: index..index + 1,
                            rows,
                        },
                        work,
                    ));
                }
            },
            _ => close(&mut current),
        }
    }
    close(&mut current);
    out
}

/// Rows `r` of `t` (viewed as rows of its last axis) as a `[r.len(), last]` tensor.
fn row_block(t: &Tensor, r: &Range<usize>) -> Result<Tensor> {
    let last = t.shape().last().copied().unwrap_or(1);
    let (a, b) = (r.start * last, r.end * last);
    let data = match t.data() {
        TensorData::I8(v) => TensorData::I8(v[a..b].to_vec()),
        TensorData::I16(v) => TensorData::I16(v[a..b].to_vec()),
        TensorData::I32(v) => TensorData::I32(v[a..b].to_vec()),
    };
    Tensor::new(vec![r.len(), last], data)
}

/// The blocks of one op's output, in row order, as one tensor of type `ty`.
fn join_blocks(blocks: Vec<Tensor>, ty: &TensorType) -> Result<Tensor> {
    let mut data = TensorData::zeros(ty.dtype, 0);
    for b in blocks {
        match (&mut data, b.into_data()) {
            (TensorData::I8(d), TensorData::I8(v)) => d.extend_from_slice(&v),
            (TensorData::I16(d), TensorData::I16(v)) => d.extend_from_slice(&v),
            (TensorData::I32(d), TensorData::I32(v)) => d.extend_from_slice(&v),
            (d, v) => {
                return Err(Error::Program(format!(
                    "a row block is {}, the op declares {}",
                    v.dtype(),
                    d.dtype()
                )));
            }
        }
    }
    Tensor::new(ty.shape.clone(), data)
}

/// Runs segment `seg` of `program`, reading earlier outputs from `slots`, its rows cut
/// into one block per thread. Returns the outputs of its ops that `keep` says a later op
/// reads (`(op index, tensor)`), each bit for bit what the op alone computes. Where
/// `fused[i]` holds (see `trace::pair_add_at`; only where the add alone reads ops `i` and
/// `i + 1`), ops `i..i + 3` run as one and ops `i`, `i + 1` give nothing back.
pub(crate) fn run_segment(
    program: &Program,
    weights: &Weights,
    slots: &[Option<Tensor>],
    seg: &Segment,
    fused: &[bool],
    keep: impl Fn(usize) -> bool + Sync,
) -> Result<Vec<(usize, Tensor)>> {
    let parts = rayon::current_num_threads().clamp(1, seg.rows);
    let block = |p: usize| seg.rows * p / parts..seg.rows * (p + 1) / parts;
    let blocks: Vec<Vec<Tensor>> = (0..parts)
        .into_par_iter()
        .with_max_len(1)
        .map(|p| alone(|| run_block(program, weights, slots, seg, &block(p), fused, &keep)))
        .collect::<Result<_>>()?;
    // blocks[p][k]: block p of the k-th kept output.
    let kept: Vec<usize> = seg.ops.clone().filter(|&i| keep(i)).collect();
    let mut by_output: Vec<Vec<Tensor>> = kept.iter().map(|_| Vec::new()).collect();
    for b in blocks {
        for (k, t) in b.into_iter().enumerate() {
            by_output[k].push(t);
        }
    }
    kept.into_iter()
        .zip(by_output)
        .map(|(i, b)| Ok((i, join_blocks(b, &program.ops[i - 1].output)?)))
        .collect()
}

/// One block of rows through a whole segment, on this thread. Returns the block of each
/// kept output, in op order.
fn run_block(
    program: &Program,
    weights: &Weights,
    slots: &[Option<Tensor>],
    seg: &Segment,
    r: &Range<usize>,
    fused: &[bool],
    keep: &(impl Fn(usize) -> bool + Sync),
) -> Result<Vec<Tensor>> {
    let start = seg.ops.start;
    // Blocks of the segment's own outputs, by op index - start.
    let mut own: Vec<Option<Tensor>> = vec![None; seg.ops.len()];
    // Blocks cut from operands computed before the segment (or weights), cut once.
    let mut cut: Vec<(Operand, Tensor)> = Vec::new();
    let mut i = start;
    while i < seg.ops.end {
        let shared = trace::shared_product_len(program, i).min(seg.ops.end - i);
        for j in i..i + shared {
            let node = &program.ops[j - 1];
            let split = split_operands(&node.op, node.inputs.len()).unwrap_or(&[]);
            for (k, o) in node.inputs.iter().enumerate() {
                let outside = match *o {
                    Operand::Slot(s) => (s as usize) < start,
                    Operand::Weight(_) => true,
                };
                if split.contains(&k) && outside && !cut.iter().any(|(c, _)| c == o) {
                    let whole = trace::operand(weights, slots, j, o)?;
                    cut.push((*o, row_block(whole, r)?));
                }
            }
        }
        let operands = |j: usize| -> Result<Vec<&Tensor>> {
            let node = &program.ops[j - 1];
            let split = split_operands(&node.op, node.inputs.len()).unwrap_or(&[]);
            node.inputs
                .iter()
                .enumerate()
                .map(|(k, o)| {
                    if split.contains(&k) {
                        if let Operand::Slot(s) = *o
                            && (s as usize) >= start
                        {
                            return own[s as usize - start].as_ref().ok_or_else(|| {
                                Error::Program(format!(
                                    "op {j} reads slot {s} before it is written"
                                ))
                            });
                        }
                        return Ok(&cut.iter().find(|(c, _)| c == o).expect("cut above").1);
                    }
                    trace::operand(weights, slots, j, o)
                })
                .collect()
        };
        let block_type = |j: usize| {
            let out = &program.ops[j - 1].output;
            TensorType::new(out.dtype, vec![r.len(), *out.shape.last().unwrap_or(&1)])
        };
        let node = &program.ops[i - 1];
        let context = |e: Error| {
            Error::Program(format!(
                "op {i} ({}) on rows {}..{}: {e}",
                node.op.kind(),
                r.start,
                r.end
            ))
        };
        if fused.get(i) == Some(&true) && i + 2 < seg.ops.end && !keep(i) && !keep(i + 1) {
            // Two products and their add as one; the products' blocks are never kept.
            let nodes = [0, 1, 2].map(|k| &program.ops[i - 1 + k]);
            let (xa, xb) = (operands(i)?, operands(i + 1)?);
            let types = [0, 1, 2].map(|k| block_type(i + k));
            let out = trace::run_fc_pair_add(
                weights,
                nodes,
                [&xa, &xb],
                [&types[0], &types[1], &types[2]],
            )
            .map_err(context)?;
            own[i + 2 - start] = Some(out);
            i += 3;
            continue;
        }
        let packed = weights.packed_for(node);
        let outs = if packed.is_some() {
            let inputs = (i..i + shared).map(operands).collect::<Result<Vec<_>>>()?;
            let types: Vec<TensorType> = (i..i + shared).map(block_type).collect();
            let nodes: Vec<&OpNode> = program.ops[i - 1..i - 1 + shared].iter().collect();
            let types: Vec<&TensorType> = types.iter().collect();
            trace::run_fc_shared(weights, &nodes, &inputs, &types).map_err(context)?
        } else if matches!(node.op, Op::Reshape) {
            // Same rows, same last axis: the block is its input's block.
            vec![operands(i)?[0].clone()]
        } else {
            vec![
                node.op
                    .execute(&operands(i)?, &block_type(i), packed)
                    .map_err(context)?,
            ]
        };
        for (j, out) in (i..i + shared).zip(outs) {
            own[j - start] = Some(out);
        }
        i += shared;
    }
    seg.ops
        .clone()
        .filter(|&j| keep(j))
        .map(|j| {
            own[j - start]
                .take()
                .ok_or_else(|| Error::Program(format!("op {j} was not run")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;
    use crate::ops::OpKind;
    use crate::trace::Trace;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// The demo model (every op of the spec) cut into segments however small.
    fn demo_segments() -> (crate::model::Model, Vec<Segment>) {
        let model = demo::model().unwrap();
        let segs = segments_with(model.program(), 0);
        (model, segs)
    }

    #[test]
    fn segments_hold_only_row_local_ops_over_the_same_rows() {
        let (model, segs) = demo_segments();
        let program = model.program();
        assert!(segs.len() >= 2, "{segs:?}");
        let mut kinds = Vec::new();
        for seg in &segs {
            assert!(seg.rows >= 2);
            for i in seg.ops.clone() {
                let node = &program.ops[i - 1];
                assert_eq!(row_local(program, node).map(|r| r.0), Some(seg.rows));
                kinds.push(node.op.kind());
            }
            // Maximal: the ops on either side are not row-local over the same rows.
            for i in [seg.ops.start - 1, seg.ops.end] {
                if let Some(node) = i.checked_sub(1).and_then(|i| program.ops.get(i)) {
                    assert_ne!(row_local(program, node).map(|r| r.0), Some(seg.rows));
                }
            }
        }
        for kind in [
            OpKind::FullyConnected,
            OpKind::LayerNorm,
            OpKind::Lut,
            OpKind::Mul,
        ] {
            assert!(kinds.contains(&kind), "no {kind:?} in {kinds:?}");
        }
        for kind in [
            OpKind::BatchMatmul,
            OpKind::Embedding,
            OpKind::Transpose,
            OpKind::Concat,
            OpKind::MeanPool,
            OpKind::Rope,
        ] {
            assert!(!kinds.contains(&kind), "{kind:?} mixes rows");
        }
        // Causal softmax ties a row to its position: never cut.
        for (i, node) in program.ops.iter().enumerate() {
            if matches!(node.op, Op::SoftmaxExp { causal: true }) {
                assert!(segs.iter().all(|s| !s.ops.contains(&(i + 1))));
            }
        }
    }

    #[test]
    fn every_segment_gives_each_ops_own_output_on_any_thread_count() {
        let (model, segs) = demo_segments();
        let (program, weights) = (model.program(), model.weights());
        let input = demo::input(&demo::tokens("row blocks")).unwrap();
        let trace = Trace::execute(program, weights, &input).unwrap();
        let slots: Vec<Option<Tensor>> = (0..=program.ops.len())
            .map(|s| Some(trace.tensor(s).unwrap().clone()))
            .collect();
        for threads in [1, 2, 3, 5] {
            pool(threads).install(|| {
                for seg in &segs {
                    let outs = run_segment(program, weights, &slots, seg, &[], |_| true).unwrap();
                    assert_eq!(outs.len(), seg.ops.len());
                    for (i, t) in outs {
                        assert_eq!(&t, trace.tensor(i).unwrap(), "op {i}, {threads} threads");
                    }
                    // Only what is asked for comes back.
                    let last = seg.ops.end - 1;
                    let outs =
                        run_segment(program, weights, &slots, seg, &[], |i| i == last).unwrap();
                    assert_eq!(outs.len(), 1);
                    assert_eq!(&outs[0].1, trace.tensor(last).unwrap());
                }
            });
        }
    }

    #[test]
    fn a_freed_operand_is_an_error_not_a_panic() {
        let (model, segs) = demo_segments();
        let (program, weights) = (model.program(), model.weights());
        let slots: Vec<Option<Tensor>> = vec![None; program.ops.len() + 1];
        let err = pool(2)
            .install(|| run_segment(program, weights, &slots, &segs[0], &[], |_| true))
            .unwrap_err();
        assert!(err.to_string().contains("freed or never written"), "{err}");
    }
}
