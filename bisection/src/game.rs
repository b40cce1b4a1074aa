//! The referee: the rules of one game over one disputed claim, exactly as the settlement
//! contract applies them (`DESIGN.md`, "The dispute game"), with clocks and bonds.
//!
//! The referee is a pure state machine: every call takes the current time (seconds, as a
//! block timestamp) and a move, checks the move against the state and the proofs it
//! carries, and either advances the game or refuses the move without changing anything.
//!
//! Phases, with the side to move:
//!
//! | phase | side | move |
//! |---|---|---|
//! | [`Phase::AwaitFinal`] | defender | [`Move::RevealFinal`]: `activationsRoot_n` and a proof that its output slot holds the claim's output hash; fixes `s_n` |
//! | [`Phase::AwaitDissection`] | defender | [`Move::Dissect`]: the states between the ends of the disputed interval |
//! | [`Phase::AwaitPick`] | challenger | [`Move::Pick`]: the part whose start it agrees with and whose end it does not |
//! | [`Phase::AwaitStep`] | defender | [`Move::RevealStep`]: `s_{i-1}` and `s_i` differ only in slot `i`, which holds a tensor of op `i`'s declared type with this data root |
//! | [`Phase::AwaitNodes`] | defender | [`Move::RevealNodes`]: `2^levels` descendants of the disputed node of that tensor's tree |
//! | [`Phase::AwaitNodePick`] | challenger | [`Move::PickNode`]: the descendant that differs from its own |
//! | [`Phase::AwaitLeaf`] | defender | [`Move::RevealLeaf`]: the 32 bytes of the disputed leaf |
//! | [`Phase::AwaitOneStep`] | challenger | [`Move::OneStep`]: one element of the leaf, recomputed from operand leaves proven against `s_{i-1}` |
//!
//! Either side may [`Game::claim_timeout`] once the side to move has let its clock run out.

use crate::config::{GameConfig, Side};
use inference::commit::{self, execution_state, leaf_count, tensor_hash_from_root};
use inference::merkle::{
    H256, MerkleProof, compute_root_from_node, depth_for, hash_pair, leaf_hash, ranges_root,
};
use inference::one_step::{RevealedOperand, element_from_leaves, element_in_leaf};
use inference::program::{Operand, Program};
use inference::tensor::TensorType;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The claim under dispute: `(requestId, modelId, inputHash, outputHash)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The request.
    pub request_id: H256,
    /// The model it ran.
    pub model_id: H256,
    /// Tensor hash of the input.
    pub input_hash: H256,
    /// Tensor hash of the claimed output.
    pub output_hash: H256,
}

/// Leaves `[start, start + leaves.len())` of an operand's data tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafRange {
    /// The first leaf's index.
    pub start: u64,
    /// The leaves, in order.
    pub leaves: Vec<H256>,
}

/// One operand of the disputed op, opened against the agreed state `s_{i-1}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperandOpening {
    /// The operand's tensor hash.
    pub tensor_hash: H256,
    /// Its membership: in `activationsRoot_{i-1}` for a slot, in the weights root for a
    /// weight (at the operand's index).
    pub membership: MerkleProof,
    /// Its data root (the tensor hash binds it to the declared type).
    pub data_root: H256,
    /// The leaves the element needs: ranges in increasing order, without overlap.
    pub ranges: Vec<LeafRange>,
    /// The siblings the ranges share, proving them against the data root
    /// ([`inference::merkle::ranges_root`]; the depth follows from the operand's type).
    pub siblings: Vec<H256>,
}

/// A move of either side. Moves are plain data: what a contract call carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "move", rename_all = "snake_case")]
pub enum Move {
    /// Defender: `activationsRoot_n` with the siblings proving the output slot.
    RevealFinal {
        /// `activationsRoot_n`.
        activations_root: H256,
        /// Siblings of the output slot's leaf.
        output_siblings: Vec<H256>,
    },
    /// Defender: the states strictly inside the disputed interval, at the dissection points.
    Dissect {
        /// The intermediate states, in order.
        states: Vec<H256>,
    },
    /// Challenger: which part of the last dissection it disputes.
    Pick {
        /// The part, `0..parts`.
        part: u32,
    },
    /// Defender: op `i`'s step, `s_{i-1} -> s_i`.
    RevealStep {
        /// `activationsRoot_{i-1}`.
        prev_activations_root: H256,
        /// `activationsRoot_i`.
        activations_root: H256,
        /// Siblings of slot `i` (the same in both roots).
        slot_siblings: Vec<H256>,
        /// Data root of op `i`'s output tensor.
        data_root: H256,
    },
    /// Defender: the descendants of the disputed node.
    RevealNodes {
        /// `2^l` node hashes, left to right.
        nodes: Vec<H256>,
    },
    /// Challenger: which revealed node it disputes.
    PickNode {
        /// Index into the last revealed nodes.
        child: u32,
    },
    /// Defender: the disputed leaf's bytes.
    RevealLeaf {
        /// The 32 bytes.
        leaf: H256,
    },
    /// Challenger: the element it disputes and the operands it depends on.
    OneStep {
        /// Element index within the leaf.
        element: u32,
        /// One opening per operand of the op (none for an element past the tensor's end).
        operands: Vec<OperandOpening>,
    },
}

/// Why a game ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The one-step recomputed the element and it differs from the revealed one.
    OneStepMismatch,
    /// The one-step recomputed the element and it equals the revealed one.
    OneStepMatch,
    /// The element lies past the tensor's end and its revealed bytes are not zero.
    NonZeroPadding,
    /// The element lies past the tensor's end and its bytes are zero.
    ZeroPadding,
    /// The side to move let its clock run out.
    Timeout,
}

/// The end of a game.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Who won.
    pub winner: Side,
    /// Why.
    pub reason: Reason,
}

/// Where the bonds go once a game is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payouts {
    /// Paid to the defender (its bond back if it won, plus the challenger's bond less the burn).
    pub defender: u128,
    /// Paid to the challenger.
    pub challenger: u128,
    /// Burnt.
    pub burnt: u128,
}

/// The state of a game.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the defender's final state.
    AwaitFinal,
    /// Waiting for the defender to dissect `[lo, hi]`.
    AwaitDissection {
        /// Agreed end.
        lo: u64,
        /// Disputed end.
        hi: u64,
        /// `s_lo`.
        s_lo: H256,
        /// `s_hi`.
        s_hi: H256,
    },
    /// Waiting for the challenger to pick a part.
    AwaitPick {
        /// Dissection points, `lo` first and `hi` last.
        points: Vec<u64>,
        /// The states at the points.
        states: Vec<H256>,
    },
    /// Waiting for the defender to reveal op `op`'s step.
    AwaitStep {
        /// The disputed op (1-based): `s_{op-1}` agreed, `s_op` disputed.
        op: u64,
        /// `s_{op-1}`.
        s_prev: H256,
        /// `s_op`.
        s_op: H256,
    },
    /// Waiting for the defender to reveal descendants of a node of op `op`'s output tree.
    AwaitNodes {
        /// The disputed op.
        op: u64,
        /// The node's level (leaves are level 0).
        level: u32,
        /// The node's index in its level.
        index: u64,
        /// The node's hash.
        hash: H256,
    },
    /// Waiting for the challenger to pick one of the revealed nodes.
    AwaitNodePick {
        /// The disputed op.
        op: u64,
        /// Level of the revealed nodes.
        level: u32,
        /// Index of the first revealed node in its level.
        first: u64,
        /// The revealed nodes.
        nodes: Vec<H256>,
    },
    /// Waiting for the defender to reveal a leaf.
    AwaitLeaf {
        /// The disputed op.
        op: u64,
        /// The leaf index.
        leaf_index: u64,
        /// The leaf hash it must match.
        hash: H256,
    },
    /// Waiting for the challenger's one-step.
    AwaitOneStep {
        /// The disputed op.
        op: u64,
        /// The leaf index.
        leaf_index: u64,
        /// The revealed leaf.
        leaf: H256,
    },
    /// The game is over.
    Resolved(Outcome),
}

impl Phase {
    /// The side to move, or `None` once resolved.
    pub fn turn(&self) -> Option<Side> {
        match self {
            Self::AwaitFinal
            | Self::AwaitDissection { .. }
            | Self::AwaitStep { .. }
            | Self::AwaitNodes { .. }
            | Self::AwaitLeaf { .. } => Some(Side::Defender),
            Self::AwaitPick { .. } | Self::AwaitNodePick { .. } | Self::AwaitOneStep { .. } => {
                Some(Side::Challenger)
            }
            Self::Resolved(_) => None,
        }
    }
}

/// Why the referee refused a move or a call. A refused move changes nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GameError {
    /// The game is over.
    #[error("the game is resolved")]
    Resolved,
    /// It is the other side's turn.
    #[error("not {0:?}'s turn")]
    NotYourTurn(Side),
    /// This move does not fit the phase.
    #[error("move {got} does not fit phase {phase}")]
    WrongMove {
        /// The phase.
        phase: String,
        /// The move.
        got: String,
    },
    /// The mover's clock ran out before the move.
    #[error("{side:?}'s clock ran out {over} s ago")]
    ClockExpired {
        /// The mover.
        side: Side,
        /// Seconds past its clock.
        over: u64,
    },
    /// Time went backwards.
    #[error("time {now} is before the last move at {last}")]
    TimeWentBack {
        /// The given time.
        now: u64,
        /// The last move's time.
        last: u64,
    },
    /// The side to move still has time.
    #[error("{side:?} still has {left} s")]
    NotTimedOut {
        /// The side to move.
        side: Side,
        /// Seconds left on its clock.
        left: u64,
    },
    /// The move's content or proofs are invalid.
    #[error("invalid move: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> GameError {
    GameError::Invalid(msg.into())
}

/// One game between a defender and a challenger over one claim.
#[derive(Clone, Debug)]
pub struct Game {
    config: GameConfig,
    program: Arc<Program>,
    weights_root: H256,
    weight_count: usize,
    claim: Claim,
    s0: H256,
    phase: Phase,
    /// `activationsRoot_{i-1}` once the step is revealed (the one-step proves against it).
    prev_activations_root: Option<H256>,
    clocks: [u64; 2],
    turn_started: u64,
    moves: u32,
    trace_rounds: u32,
    tensor_rounds: u32,
}

impl Game {
    /// Opens a game at time `now` against `claim` of a model with `program` and
    /// `weights_root` (`weight_count` weights). The defender moves first.
    pub fn open(
        config: GameConfig,
        program: Arc<Program>,
        weights_root: H256,
        claim: Claim,
        now: u64,
    ) -> Result<Self, GameError> {
        if program.ops.is_empty() {
            return Err(invalid("a program without ops has nothing to dispute"));
        }
        if config.tensor_levels == 0 || config.burn_bps > 10_000 {
            return Err(invalid("tensor_levels must be >= 1 and burn_bps <= 10000"));
        }
        let program_hash = program.hash().map_err(|e| invalid(e.to_string()))?;
        if commit::model_id(program_hash, weights_root) != claim.model_id {
            return Err(invalid(
                "the program and weights root do not give the claim's model id",
            ));
        }
        let slots = program.slot_count();
        let s0 = execution_state(
            weights_root,
            commit::activations_root(&[claim.input_hash], slots)
                .map_err(|e| invalid(e.to_string()))?,
        );
        let weight_count = program.weights.len();
        Ok(Self {
            clocks: [config.clock_seconds; 2],
            config,
            program,
            weights_root,
            weight_count,
            claim,
            s0,
            phase: Phase::AwaitFinal,
            prev_activations_root: None,
            turn_started: now,
            moves: 0,
            trace_rounds: 0,
            tensor_rounds: 0,
        })
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The side to move, `None` once resolved.
    pub fn turn(&self) -> Option<Side> {
        self.phase.turn()
    }

    /// The outcome, once resolved.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.phase {
            Phase::Resolved(o) => Some(o),
            _ => None,
        }
    }

    /// The rules.
    pub fn config(&self) -> &GameConfig {
        &self.config
    }

    /// The program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The claim.
    pub fn claim(&self) -> &Claim {
        &self.claim
    }

    /// The agreed initial state `s_0`.
    pub fn initial_state(&self) -> H256 {
        self.s0
    }

    /// The weights root.
    pub fn weights_root(&self) -> H256 {
        self.weights_root
    }

    /// Accepted moves so far.
    pub fn moves(&self) -> u32 {
        self.moves
    }

    /// Completed trace-bisection and tensor-bisection rounds.
    pub fn rounds(&self) -> (u32, u32) {
        (self.trace_rounds, self.tensor_rounds)
    }

    /// Seconds left on `side`'s clock at time `now` (its clock runs only on its turn).
    pub fn clock_left(&self, side: Side, now: u64) -> u64 {
        let left = self.clocks[side.index()];
        if self.turn() == Some(side) {
            left.saturating_sub(now.saturating_sub(self.turn_started))
        } else {
            left
        }
    }

    /// When the current turn started.
    pub fn turn_started(&self) -> u64 {
        self.turn_started
    }

    /// Where the bonds go, once resolved.
    pub fn payouts(&self) -> Option<Payouts> {
        let o = self.outcome()?;
        let (win, lose) = match o.winner {
            Side::Defender => (self.config.defender_bond, self.config.challenger_bond),
            Side::Challenger => (self.config.challenger_bond, self.config.defender_bond),
        };
        let burnt = lose * self.config.burn_bps as u128 / 10_000;
        let prize = win + lose - burnt;
        Some(match o.winner {
            Side::Defender => Payouts {
                defender: prize,
                challenger: 0,
                burnt,
            },
            Side::Challenger => Payouts {
                defender: 0,
                challenger: prize,
                burnt,
            },
        })
    }

    /// Ends the game for `claimant` if the side to move has let its clock run out by `now`.
    pub fn claim_timeout(&mut self, claimant: Side, now: u64) -> Result<Outcome, GameError> {
        let mover = self.turn().ok_or(GameError::Resolved)?;
        if claimant == mover {
            return Err(GameError::NotYourTurn(claimant));
        }
        let left = self.clock_left(mover, now);
        let elapsed = now.saturating_sub(self.turn_started);
        if elapsed <= self.clocks[mover.index()] {
            return Err(GameError::NotTimedOut { side: mover, left });
        }
        let outcome = Outcome {
            winner: claimant,
            reason: Reason::Timeout,
        };
        self.phase = Phase::Resolved(outcome);
        Ok(outcome)
    }

    /// Applies `side`'s move at time `now`.
    pub fn apply(&mut self, side: Side, mv: Move, now: u64) -> Result<(), GameError> {
        let mover = self.turn().ok_or(GameError::Resolved)?;
        if side != mover {
            return Err(GameError::NotYourTurn(side));
        }
        if now < self.turn_started {
            return Err(GameError::TimeWentBack {
                now,
                last: self.turn_started,
            });
        }
        let elapsed = now - self.turn_started;
        let left = self.clocks[side.index()];
        if elapsed > left {
            return Err(GameError::ClockExpired {
                side,
                over: elapsed - left,
            });
        }
        let next = self.next_phase(&mv)?;
        match (&self.phase, &next) {
            (Phase::AwaitPick { .. }, _) => self.trace_rounds += 1,
            (Phase::AwaitNodePick { .. }, _) => self.tensor_rounds += 1,
            _ => {}
        }
        self.phase = next;
        self.clocks[side.index()] = left - elapsed;
        self.turn_started = now;
        self.moves += 1;
        Ok(())
    }

    /// The phase `mv` leads to, or why it is refused.
    fn next_phase(&mut self, mv: &Move) -> Result<Phase, GameError> {
        let wr = self.weights_root;
        let n = self.program.ops.len() as u64;
        let slot_depth = depth_for(self.program.slot_count());
        match (&self.phase, mv) {
            (
                Phase::AwaitFinal,
                Move::RevealFinal {
                    activations_root,
                    output_siblings,
                },
            ) => {
                let proof = MerkleProof {
                    index: self.program.output as u64,
                    siblings: output_siblings.clone(),
                };
                if output_siblings.len() != slot_depth as usize {
                    return Err(invalid(format!(
                        "the output proof has {} siblings, the table needs {slot_depth}",
                        output_siblings.len()
                    )));
                }
                proof
                    .verify(*activations_root, &self.claim.output_hash.0)
                    .map_err(|e| invalid(format!("output slot: {e}")))?;
                Ok(self.interval(0, n, self.s0, execution_state(wr, *activations_root)))
            }
            (Phase::AwaitDissection { lo, hi, s_lo, s_hi }, Move::Dissect { states }) => {
                let points = dissection_points(*lo, *hi, self.config.degree.get());
                if states.len() != points.len() - 2 {
                    return Err(invalid(format!(
                        "{} states for {} interior points",
                        states.len(),
                        points.len() - 2
                    )));
                }
                let mut all = Vec::with_capacity(points.len());
                all.push(*s_lo);
                all.extend_from_slice(states);
                all.push(*s_hi);
                Ok(Phase::AwaitPick {
                    points,
                    states: all,
                })
            }
            (Phase::AwaitPick { points, states }, Move::Pick { part }) => {
                let p = *part as usize;
                if p + 1 >= points.len() {
                    return Err(invalid(format!("part {part} of {}", points.len() - 1)));
                }
                Ok(self.interval(points[p], points[p + 1], states[p], states[p + 1]))
            }
            (
                Phase::AwaitStep { op, s_prev, s_op },
                Move::RevealStep {
                    prev_activations_root,
                    activations_root,
                    slot_siblings,
                    data_root,
                },
            ) => {
                if execution_state(wr, *prev_activations_root) != *s_prev {
                    return Err(invalid("activationsRoot_{i-1} does not give s_{i-1}"));
                }
                if execution_state(wr, *activations_root) != *s_op {
                    return Err(invalid("activationsRoot_i does not give s_i"));
                }
                if slot_siblings.len() != slot_depth as usize {
                    return Err(invalid("slot proof of the wrong depth"));
                }
                let ty = &self.program.ops[*op as usize - 1].output;
                let tensor =
                    tensor_hash_from_root(ty, *data_root).map_err(|e| invalid(e.to_string()))?;
                if compute_root_from_node(*op, leaf_hash(&[0; 32]), slot_siblings)
                    != *prev_activations_root
                {
                    return Err(invalid("slot i is not empty in activationsRoot_{i-1}"));
                }
                if compute_root_from_node(*op, leaf_hash(&tensor.0), slot_siblings)
                    != *activations_root
                {
                    return Err(invalid(
                        "activationsRoot_i is not activationsRoot_{i-1} with slot i set",
                    ));
                }
                self.prev_activations_root = Some(*prev_activations_root);
                let depth = depth_for(leaf_count(ty));
                Ok(self.node_or_leaf(*op, depth, 0, *data_root))
            }
            (
                Phase::AwaitNodes {
                    op,
                    level,
                    index,
                    hash,
                },
                Move::RevealNodes { nodes },
            ) => {
                let l = self.config.tensor_levels.min(*level);
                if nodes.len() != 1 << l {
                    return Err(invalid(format!(
                        "{} nodes, expected {}",
                        nodes.len(),
                        1u64 << l
                    )));
                }
                let mut layer = nodes.clone();
                while layer.len() > 1 {
                    layer = layer.chunks(2).map(|p| hash_pair(&p[0], &p[1])).collect();
                }
                if layer[0] != *hash {
                    return Err(invalid("the nodes do not hash to the disputed node"));
                }
                Ok(Phase::AwaitNodePick {
                    op: *op,
                    level: level - l,
                    first: index << l,
                    nodes: nodes.clone(),
                })
            }
            (
                Phase::AwaitNodePick {
                    op,
                    level,
                    first,
                    nodes,
                },
                Move::PickNode { child },
            ) => {
                let c = *child as usize;
                let hash = *nodes
                    .get(c)
                    .ok_or_else(|| invalid(format!("child {child} of {}", nodes.len())))?;
                Ok(self.node_or_leaf(*op, *level, first + c as u64, hash))
            }
            (
                Phase::AwaitLeaf {
                    op,
                    leaf_index,
                    hash,
                },
                Move::RevealLeaf { leaf },
            ) => {
                if leaf_hash(&leaf.0) != *hash {
                    return Err(invalid("the leaf does not hash to the disputed leaf"));
                }
                Ok(Phase::AwaitOneStep {
                    op: *op,
                    leaf_index: *leaf_index,
                    leaf: *leaf,
                })
            }
            (
                Phase::AwaitOneStep {
                    op,
                    leaf_index,
                    leaf,
                },
                Move::OneStep { element, operands },
            ) => {
                let outcome = self.one_step(*op, *leaf_index, leaf, *element, operands)?;
                Ok(Phase::Resolved(outcome))
            }
            (phase, mv) => Err(GameError::WrongMove {
                phase: phase_name(phase),
                got: move_name(mv),
            }),
        }
    }

    /// The next phase for the disputed interval `[lo, hi]`.
    fn interval(&self, lo: u64, hi: u64, s_lo: H256, s_hi: H256) -> Phase {
        if hi - lo == 1 {
            Phase::AwaitStep {
                op: hi,
                s_prev: s_lo,
                s_op: s_hi,
            }
        } else {
            Phase::AwaitDissection { lo, hi, s_lo, s_hi }
        }
    }

    fn node_or_leaf(&self, op: u64, level: u32, index: u64, hash: H256) -> Phase {
        if level == 0 {
            Phase::AwaitLeaf {
                op,
                leaf_index: index,
                hash,
            }
        } else {
            Phase::AwaitNodes {
                op,
                level,
                index,
                hash,
            }
        }
    }

    /// Recomputes element `element` of leaf `leaf_index` of op `op`'s output and decides.
    fn one_step(
        &self,
        op: u64,
        leaf_index: u64,
        leaf: &H256,
        element: u32,
        operands: &[OperandOpening],
    ) -> Result<Outcome, GameError> {
        let node = &self.program.ops[op as usize - 1];
        let dt = node.output.dtype;
        let per_leaf = 32 / dt.size() as u64;
        if element as u64 >= per_leaf {
            return Err(invalid(format!(
                "element {element} of a leaf of {per_leaf}"
            )));
        }
        let index = leaf_index * per_leaf + element as u64;
        let revealed =
            element_in_leaf(&leaf.0, dt, element as usize).expect("element is inside the leaf");
        let decide = |challenger_right: bool, reason_c, reason_d| {
            if challenger_right {
                Outcome {
                    winner: Side::Challenger,
                    reason: reason_c,
                }
            } else {
                Outcome {
                    winner: Side::Defender,
                    reason: reason_d,
                }
            }
        };
        if index >= node.output.numel() as u64 {
            // Past the tensor's end the bytes must be zero.
            return Ok(decide(
                revealed != 0,
                Reason::NonZeroPadding,
                Reason::ZeroPadding,
            ));
        }
        if operands.len() != node.inputs.len() {
            return Err(invalid(format!(
                "{} operand openings for {} operands",
                operands.len(),
                node.inputs.len()
            )));
        }
        let prev_root = self
            .prev_activations_root
            .expect("set when the step was revealed");
        let mut revealed_ops = Vec::with_capacity(operands.len());
        for (j, (operand, opening)) in node.inputs.iter().zip(operands).enumerate() {
            let (ty, root, index, depth): (&TensorType, H256, u64, u32) = match *operand {
                Operand::Slot(s) => (
                    self.program.slot_type(s).expect("validated"),
                    prev_root,
                    s as u64,
                    depth_for(self.program.slot_count()),
                ),
                Operand::Weight(w) => (
                    &self.program.weights[w as usize],
                    self.weights_root,
                    w as u64,
                    depth_for(self.weight_count),
                ),
            };
            let m = &opening.membership;
            if m.index != index || m.siblings.len() != depth as usize {
                return Err(invalid(format!(
                    "operand {j}: membership proof for the wrong position"
                )));
            }
            m.verify(root, &opening.tensor_hash.0)
                .map_err(|e| invalid(format!("operand {j}: {e}")))?;
            if tensor_hash_from_root(ty, opening.data_root).map_err(|e| invalid(e.to_string()))?
                != opening.tensor_hash
            {
                return Err(invalid(format!(
                    "operand {j}: data root does not give its tensor hash"
                )));
            }
            let data_depth = depth_for(leaf_count(ty));
            let mut r = RevealedOperand::new(ty.clone());
            if opening.ranges.is_empty() {
                if !opening.siblings.is_empty() {
                    return Err(invalid(format!("operand {j}: siblings without leaves")));
                }
            } else {
                let leaves: Vec<Vec<[u8; 32]>> = opening
                    .ranges
                    .iter()
                    .map(|range| range.leaves.iter().map(|l| l.0).collect())
                    .collect();
                let parts: Vec<(u64, &[[u8; 32]])> = opening
                    .ranges
                    .iter()
                    .zip(&leaves)
                    .map(|(range, l)| (range.start, l.as_slice()))
                    .collect();
                let root = ranges_root(data_depth, &parts, &opening.siblings)
                    .map_err(|e| invalid(format!("operand {j}: {e}")))?;
                if root != opening.data_root {
                    return Err(invalid(format!(
                        "operand {j}: its leaves do not give its data root"
                    )));
                }
                for (range, l) in opening.ranges.iter().zip(leaves) {
                    for (k, leaf) in l.into_iter().enumerate() {
                        r.reveal(range.start as usize + k, leaf)
                            .map_err(|e| invalid(format!("operand {j}: {e}")))?;
                    }
                }
            }
            revealed_ops.push(r);
        }
        let computed = element_from_leaves(&node.op, &revealed_ops, &node.output, index as usize)
            .map_err(|e| invalid(format!("one-step: {e}")))?;
        Ok(decide(
            computed != revealed,
            Reason::OneStepMismatch,
            Reason::OneStepMatch,
        ))
    }
}

/// The points that split `[lo, hi]` into `min(degree, hi - lo)` parts, both ends included.
pub fn dissection_points(lo: u64, hi: u64, degree: u32) -> Vec<u64> {
    let len = hi - lo;
    let parts = (degree as u64).min(len).max(1);
    (0..=parts).map(|j| lo + j * len / parts).collect()
}

fn phase_name(p: &Phase) -> String {
    let s = format!("{p:?}");
    s.split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

fn move_name(m: &Move) -> String {
    let s = format!("{m:?}");
    s.split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}
