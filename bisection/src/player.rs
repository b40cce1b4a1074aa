//! The two roles as strategies over a trace: given the game and what a side believes the
//! execution to be, the next move with its proofs.
//!
//! [`TracePlayer`] plays either side from a [`Belief`]: an honest side believes the true
//! trace; a dishonest one believes (or pretends to believe) a faulty trace made with
//! [`Belief::with_fault`]. [`Silent`] never moves, to test the clocks.

use crate::config::Side;
use crate::game::{Game, LeafRange, Move, OperandOpening, Phase, dissection_points};
use inference::commit::{leaf_count, tensor_data_root, tensor_data_tree, tensor_leaf};
use inference::merkle::H256;
use inference::one_step::{element_in_leaf, leaf_ranges, needed_leaves};
use inference::program::{Operand, Program};
use inference::tensor::{Tensor, TensorData};
use inference::trace::{Trace, Weights};
use inference::{Error, Result};

/// What one side believes the execution is: a program, its weights and a full trace.
#[derive(Clone, Debug)]
pub struct Belief<'a> {
    program: &'a Program,
    weights: &'a Weights,
    trace: Trace,
}

/// Where a dishonest side changes the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The op (1-based) whose output is changed.
    pub op: usize,
    /// The leaf of that output whose first element is changed.
    pub leaf: usize,
    /// Whether later ops compute on from the changed value (a consistent lie) or the
    /// trace keeps the true values of every other slot (a lie about one slot only).
    pub propagate: bool,
}

impl<'a> Belief<'a> {
    /// The true trace of `program` on `input`.
    pub fn honest(program: &'a Program, weights: &'a Weights, input: &Tensor) -> Result<Self> {
        Ok(Self {
            program,
            weights,
            trace: Trace::execute(program, weights, input)?,
        })
    }

    /// A trace with `fault` injected: the first element of leaf `fault.leaf` of op
    /// `fault.op`'s output is changed (its low bit flipped).
    pub fn with_fault(
        program: &'a Program,
        weights: &'a Weights,
        input: &Tensor,
        fault: Fault,
    ) -> Result<Self> {
        Self::with_fault_xor(program, weights, input, fault, 1)
    }

    /// Like [`Belief::with_fault`], with the element XORed with `xor` (its low bits, as wide
    /// as the element) instead of its low bit flipped: a larger lie, which later ops round
    /// away less often.
    pub fn with_fault_xor(
        program: &'a Program,
        weights: &'a Weights,
        input: &Tensor,
        fault: Fault,
        xor: u32,
    ) -> Result<Self> {
        let n = program.ops.len();
        if fault.op == 0 || fault.op > n {
            return Err(Error::Param(format!(
                "fault op {} is not in 1..={n}",
                fault.op
            )));
        }
        let ty = &program.ops[fault.op - 1].output;
        let per_leaf = 32 / ty.dtype.size();
        let element = fault.leaf * per_leaf;
        if element >= ty.numel() {
            return Err(Error::Param(format!(
                "leaf {} of op {} holds no element of {ty}",
                fault.leaf, fault.op
            )));
        }
        let flip = |i: usize, t: &mut Tensor| {
            if i == fault.op {
                match t.data_mut() {
                    TensorData::I8(v) => v[element] ^= xor as u8 as i8,
                    TensorData::I16(v) => v[element] ^= xor as u16 as i16,
                    TensorData::I32(v) => v[element] ^= xor as i32,
                }
            }
        };
        let trace = if fault.propagate {
            Trace::execute_with_hook(program, weights, input, flip)?
        } else {
            // The true trace, except for the one slot: later ops saw the true value.
            let truth = Trace::execute(program, weights, input)?;
            let mut changed = truth.tensor(fault.op)?.clone();
            flip(fault.op, &mut changed);
            truth.with_slot(fault.op, changed)?
        };
        Ok(Self {
            program,
            weights,
            trace,
        })
    }

    /// The trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The output hash this belief claims.
    pub fn output_hash(&self) -> H256 {
        self.trace
            .slot_hash(self.program.output as usize)
            .expect("the output slot exists")
    }
}

/// A side's strategy.
pub trait Player {
    /// The side it plays.
    fn side(&self) -> Side;
    /// Its next move in `game`, or `None` if it does not (or cannot) move.
    fn next_move(&mut self, game: &Game) -> Option<Move>;
}

/// A player that never moves.
#[derive(Clone, Copy, Debug)]
pub struct Silent(pub Side);

impl Player for Silent {
    fn side(&self) -> Side {
        self.0
    }

    fn next_move(&mut self, _: &Game) -> Option<Move> {
        None
    }
}

/// A player that plays by its belief: the defender reveals its own trace, the challenger
/// follows the first disagreement with its own trace.
#[derive(Clone, Debug)]
pub struct TracePlayer<'a> {
    side: Side,
    belief: Belief<'a>,
}

impl<'a> TracePlayer<'a> {
    /// A player for `side` believing `belief`.
    pub fn new(side: Side, belief: Belief<'a>) -> Self {
        Self { side, belief }
    }

    fn defend(&self, game: &Game) -> Option<Move> {
        let t = &self.belief.trace;
        let phase = game.phase();
        let n = t.op_count();
        Some(match phase {
            Phase::AwaitFinal => Move::RevealFinal {
                activations_root: t.activations_root(n).ok()?,
                output_siblings: t
                    .prove_slot(n, self.belief.program.output as usize)
                    .ok()?
                    .siblings,
            },
            Phase::AwaitDissection { lo, hi, .. } => {
                let points = dissection_points(*lo, *hi, game.config().degree.get());
                Move::Dissect {
                    states: points[1..points.len() - 1]
                        .iter()
                        .map(|&p| t.state(p as usize))
                        .collect::<Result<_>>()
                        .ok()?,
                }
            }
            Phase::AwaitStep { op, .. } => {
                let i = *op as usize;
                Move::RevealStep {
                    prev_activations_root: t.activations_root(i - 1).ok()?,
                    activations_root: t.activations_root(i).ok()?,
                    slot_siblings: t.prove_slot(i, i).ok()?.siblings,
                    data_root: tensor_data_root(t.tensor(i).ok()?),
                }
            }
            Phase::AwaitNodes {
                op, level, index, ..
            } => {
                let tree = tensor_data_tree(t.tensor(*op as usize).ok()?);
                let l = game.config().tensor_levels.min(*level);
                let first = (*index as usize) << l;
                let nodes = (first..first + (1 << l))
                    .map(|i| tree.node(level - l, i))
                    .collect::<Result<_>>()
                    .ok()?;
                Move::RevealNodes { nodes }
            }
            Phase::AwaitLeaf { op, leaf_index, .. } => Move::RevealLeaf {
                leaf: H256(tensor_leaf(t.tensor(*op as usize).ok()?, *leaf_index as usize).ok()?),
            },
            _ => return None,
        })
    }

    fn challenge(&self, phase: &Phase) -> Option<Move> {
        let t = &self.belief.trace;
        Some(match phase {
            Phase::AwaitPick { points, states } => {
                // The first part whose end differs from this side's state there.
                let part = (1..points.len())
                    .find(|&j| t.state(points[j] as usize).ok() != Some(states[j]))
                    .map_or(points.len() - 2, |j| j - 1);
                Move::Pick { part: part as u32 }
            }
            Phase::AwaitNodePick {
                op,
                level,
                first,
                nodes,
            } => {
                let tree = tensor_data_tree(t.tensor(*op as usize).ok()?);
                let child = (0..nodes.len())
                    .find(|&c| tree.node(*level, *first as usize + c).ok() != Some(nodes[c]))
                    .unwrap_or(0);
                Move::PickNode {
                    child: child as u32,
                }
            }
            Phase::AwaitOneStep {
                op,
                leaf_index,
                leaf,
            } => self.one_step(*op as usize, *leaf_index as usize, leaf)?,
            _ => return None,
        })
    }

    /// The one-step on the first element of the leaf that differs from this side's own.
    fn one_step(&self, op: usize, leaf_index: usize, leaf: &H256) -> Option<Move> {
        let t = &self.belief.trace;
        let node = &self.belief.program.ops[op - 1];
        let dt = node.output.dtype;
        let per_leaf = 32 / dt.size();
        let mine = tensor_leaf(t.tensor(op).ok()?, leaf_index).ok()?;
        let element = (0..per_leaf)
            .find(|&k| element_in_leaf(&mine, dt, k) != element_in_leaf(&leaf.0, dt, k))
            .unwrap_or(0);
        let index = leaf_index * per_leaf + element;
        if index >= node.output.numel() {
            return Some(Move::OneStep {
                element: element as u32,
                operands: Vec::new(),
            });
        }
        let weights = self.belief.weights;
        let tensors: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|o| match *o {
                Operand::Slot(s) => t.tensor(s as usize),
                Operand::Weight(w) => Ok(&weights.tensors()[w as usize]),
            })
            .collect::<Result<_>>()
            .ok()?;
        let needed = needed_leaves(&node.op, &tensors, &node.output, index).ok()?;
        let mut operands = Vec::with_capacity(tensors.len());
        for ((operand, tensor), leaves) in node.inputs.iter().zip(&tensors).zip(&needed) {
            let (tensor_hash, membership) = match *operand {
                Operand::Slot(s) => (
                    t.slot_hash(s as usize).ok()?,
                    t.prove_slot(op - 1, s as usize).ok()?,
                ),
                Operand::Weight(w) => (
                    weights.hashes()[w as usize],
                    weights.prove(w as usize).ok()?,
                ),
            };
            let tree = tensor_data_tree(tensor);
            let runs = leaf_ranges(leaves);
            let siblings = if runs.is_empty() {
                Vec::new()
            } else {
                tree.prove_ranges(&runs).ok()?
            };
            let ranges = runs
                .into_iter()
                .map(|r| {
                    Some(LeafRange {
                        start: r.start as u64,
                        leaves: r
                            .map(|l| tensor_leaf(tensor, l).map(H256))
                            .collect::<Result<_>>()
                            .ok()?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            debug_assert!(leaves.iter().all(|&l| l < leaf_count(&tensor.ty())));
            operands.push(OperandOpening {
                tensor_hash,
                membership,
                data_root: tree.root(),
                ranges,
                siblings,
            });
        }
        Some(Move::OneStep {
            element: element as u32,
            operands,
        })
    }
}

impl Player for TracePlayer<'_> {
    fn side(&self) -> Side {
        self.side
    }

    fn next_move(&mut self, game: &Game) -> Option<Move> {
        match (self.side, game.turn()?) {
            (Side::Defender, Side::Defender) => self.defend(game),
            (Side::Challenger, Side::Challenger) => self.challenge(game.phase()),
            _ => None,
        }
    }
}
