//! The program format: a versioned list of ops over an activation table.
//!
//! Slot 0 of the activation table holds the input; op `i` (1-based) writes slot `i`.
//! An op reads earlier slots and weights ([`Operand`]). The program declares the type of
//! every slot and weight, so a program is checked once, before anything runs.
//!
//! Programs are stored as JSON ([`Program::to_json`]); their hash is taken over a canonical
//! binary encoding that the on-chain verifier can recompute for one op with a Merkle proof
//! (`docs/ops.md`, "Program encoding").

use crate::error::{Error, Result};
use crate::merkle::{H256, MerkleProof, MerkleTree, keccak256};
use crate::ops::{Op, RopePairing};
use crate::tensor::{DType, TensorType};
use serde::{Deserialize, Serialize};

/// The program format version this build reads and writes.
pub const PROGRAM_VERSION: u32 = 1;

/// Where an op reads an operand from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operand {
    /// An activation slot: 0 is the input, `i` the output of op `i`.
    Slot(u32),
    /// A weight tensor, by index in the model's weight list.
    Weight(u32),
}

/// One op of a program: what it computes, from what, into which type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OpNode {
    /// The op and its parameters.
    pub op: Op,
    /// Its operands, in the order of the op's spec entry.
    pub inputs: Vec<Operand>,
    /// The declared output type (written to this op's slot).
    pub output: TensorType,
}

/// A program: input type, weight types, ops and the output slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// Format version; must be [`PROGRAM_VERSION`].
    pub version: u32,
    /// The type of slot 0.
    pub input: TensorType,
    /// The type of every weight, in weight-index order.
    pub weights: Vec<TensorType>,
    /// The ops; op `i` (1-based) writes slot `i`.
    pub ops: Vec<OpNode>,
    /// The slot holding the program's output.
    pub output: u32,
}

impl Program {
    /// Number of activation slots (`ops + 1`).
    pub fn slot_count(&self) -> usize {
        self.ops.len() + 1
    }

    /// The declared type of `slot`.
    pub fn slot_type(&self, slot: u32) -> Result<&TensorType> {
        match slot as usize {
            0 => Ok(&self.input),
            i if i <= self.ops.len() => Ok(&self.ops[i - 1].output),
            _ => Err(Error::Program(format!(
                "slot {slot} does not exist ({} slots)",
                self.slot_count()
            ))),
        }
    }

    /// The type of an operand as op `op_index` (1-based) sees it.
    fn operand_type(&self, op_index: usize, operand: Operand) -> Result<&TensorType> {
        match operand {
            Operand::Slot(s) if (s as usize) < op_index => self.slot_type(s),
            Operand::Slot(s) => Err(Error::Program(format!(
                "op {op_index} reads slot {s}, which is not written before it"
            ))),
            Operand::Weight(w) => self.weights.get(w as usize).ok_or_else(|| {
                Error::Program(format!(
                    "op {op_index} reads weight {w}, which does not exist"
                ))
            }),
        }
    }

    /// Checks the whole program: version, every op's operands, parameters and declared
    /// output, and the output slot.
    pub fn validate(&self) -> Result<()> {
        if self.version != PROGRAM_VERSION {
            return Err(Error::Program(format!(
                "program version {} is not supported (this build reads {PROGRAM_VERSION})",
                self.version
            )));
        }
        if self.ops.len() >= u32::MAX as usize || self.weights.len() >= u32::MAX as usize {
            return Err(Error::Program("too many ops or weights".into()));
        }
        // Every declared size must be countable before any op looks at it.
        let declared = std::iter::once(&self.input)
            .chain(&self.weights)
            .chain(self.ops.iter().map(|n| &n.output));
        for t in declared {
            crate::tensor::checked_numel(&t.shape)
                .map_err(|e| Error::Program(format!("{t}: {e}")))?;
        }
        for (i, node) in self.ops.iter().enumerate() {
            let index = i + 1;
            let types = node
                .inputs
                .iter()
                .map(|&o| self.operand_type(index, o))
                .collect::<Result<Vec<_>>>()?;
            node.op
                .check(&types, &node.output)
                .map_err(|e| Error::Program(format!("op {index} ({}): {e}", node.op.kind())))?;
            encode_type(&node.output)?;
        }
        self.slot_type(self.output)?;
        encode_type(&self.input)?;
        Ok(())
    }

    /// The program as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a program always serializes")
    }

    /// Parses and validates a program from JSON.
    pub fn from_json(s: &str) -> Result<Self> {
        let p: Self =
            serde_json::from_str(s).map_err(|e| Error::Decode(format!("program JSON: {e}")))?;
        p.validate()?;
        Ok(p)
    }

    /// The canonical encoding of op `index` (1-based): what its leaf hashes.
    pub fn op_encoding(&self, index: usize) -> Result<Vec<u8>> {
        let node = index
            .checked_sub(1)
            .and_then(|i| self.ops.get(i))
            .ok_or_else(|| Error::Program(format!("op {index} does not exist")))?;
        encode_op(node)
    }

    /// The hashes of every op's encoding, in order: the leaves of the ops tree.
    pub fn op_hashes(&self) -> Result<Vec<H256>> {
        self.ops
            .iter()
            .map(|n| encode_op(n).map(|e| keccak256(&e)))
            .collect()
    }

    /// The Merkle tree over the op hashes.
    pub fn ops_tree(&self) -> Result<MerkleTree> {
        Ok(MerkleTree::new(
            self.op_hashes()?.into_iter().map(|h| h.0).collect(),
        ))
    }

    /// Proof that op `index` (1-based) is in the ops tree.
    pub fn prove_op(&self, index: usize) -> Result<MerkleProof> {
        let i = index
            .checked_sub(1)
            .ok_or_else(|| Error::Program("op 0 does not exist".into()))?;
        self.ops_tree()?.prove(i)
    }

    /// The program hash:
    /// `keccak256(version u32 || op_count u32 || weight_count u32 || output_slot u32 ||
    /// input_type || ops_root)`, integers big-endian.
    pub fn hash(&self) -> Result<H256> {
        let ops_root = self.ops_tree()?.root();
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&(self.ops.len() as u32).to_be_bytes());
        b.extend_from_slice(&(self.weights.len() as u32).to_be_bytes());
        b.extend_from_slice(&self.output.to_be_bytes());
        b.extend_from_slice(&encode_type(&self.input)?);
        b.extend_from_slice(ops_root.as_bytes());
        Ok(keccak256(&b))
    }
}

/// `dtype u8 || rank u8 || dims u32...`.
pub fn encode_type(t: &TensorType) -> Result<Vec<u8>> {
    if t.shape.len() > u8::MAX as usize {
        return Err(Error::Program(format!("{t}: rank above 255")));
    }
    let mut b = vec![t.dtype.code(), t.shape.len() as u8];
    for &d in &t.shape {
        let d = u32::try_from(d)
            .map_err(|_| Error::Program(format!("{t}: dimension above 2^32 - 1")))?;
        b.extend_from_slice(&d.to_be_bytes());
    }
    Ok(b)
}

fn u32_of(v: usize, what: &str) -> Result<[u8; 4]> {
    u32::try_from(v)
        .map(u32::to_be_bytes)
        .map_err(|_| Error::Program(format!("{what} {v} above 2^32 - 1")))
}

/// The canonical encoding of one op node:
/// `kind u8 || params || n_inputs u8 || (tag u8 || index u32)... || output type`, with
/// tag 0 for a slot and 1 for a weight, and params as listed in `docs/ops.md`.
pub fn encode_op(node: &OpNode) -> Result<Vec<u8>> {
    let mut b = vec![node.op.kind().code()];
    let i32p = |b: &mut Vec<u8>, v: i32| b.extend_from_slice(&v.to_be_bytes());
    let u32p = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_be_bytes());
    match &node.op {
        Op::FullyConnected {
            x_zero_point,
            y_zero_point,
        } => {
            i32p(&mut b, *x_zero_point);
            i32p(&mut b, *y_zero_point);
        }
        Op::BatchMatmul {
            transpose_b,
            a_zero_point,
            b_zero_point,
            multiplier,
            shift,
            y_zero_point,
        } => {
            b.push(*transpose_b as u8);
            i32p(&mut b, *a_zero_point);
            i32p(&mut b, *b_zero_point);
            i32p(&mut b, *multiplier);
            u32p(&mut b, *shift);
            i32p(&mut b, *y_zero_point);
        }
        Op::Add {
            a_zero_point,
            a_multiplier,
            b_zero_point,
            b_multiplier,
            shift,
            y_zero_point,
        } => {
            i32p(&mut b, *a_zero_point);
            i32p(&mut b, *a_multiplier);
            i32p(&mut b, *b_zero_point);
            i32p(&mut b, *b_multiplier);
            u32p(&mut b, *shift);
            i32p(&mut b, *y_zero_point);
        }
        Op::Mul {
            a_zero_point,
            b_zero_point,
            multiplier,
            shift,
            y_zero_point,
        } => {
            i32p(&mut b, *a_zero_point);
            i32p(&mut b, *b_zero_point);
            i32p(&mut b, *multiplier);
            u32p(&mut b, *shift);
            i32p(&mut b, *y_zero_point);
        }
        Op::Requantize {
            x_zero_point,
            multiplier,
            shift,
            y_zero_point,
        } => {
            i32p(&mut b, *x_zero_point);
            i32p(&mut b, *multiplier);
            u32p(&mut b, *shift);
            i32p(&mut b, *y_zero_point);
        }
        Op::Lut | Op::Embedding | Op::Reshape | Op::Argmax => {}
        Op::Softmax {
            causal,
            frac_bits,
            y_zero_point,
        } => {
            b.push(*causal as u8);
            u32p(&mut b, *frac_bits);
            i32p(&mut b, *y_zero_point);
        }
        Op::SoftmaxExp { causal } => b.push(*causal as u8),
        Op::SoftmaxNorm {
            frac_bits,
            y_zero_point,
        } => {
            u32p(&mut b, *frac_bits);
            i32p(&mut b, *y_zero_point);
        }
        Op::LayerNorm {
            epsilon,
            shift,
            y_zero_point,
        } => {
            b.extend_from_slice(&epsilon.to_be_bytes());
            u32p(&mut b, *shift);
            i32p(&mut b, *y_zero_point);
        }
        Op::RmsNorm {
            x_zero_point,
            epsilon,
            shift,
            y_zero_point,
        } => {
            i32p(&mut b, *x_zero_point);
            b.extend_from_slice(&epsilon.to_be_bytes());
            u32p(&mut b, *shift);
            i32p(&mut b, *y_zero_point);
        }
        Op::Rope {
            x_zero_point,
            y_zero_point,
            position_offset,
            frac_bits,
            pairing,
        } => {
            i32p(&mut b, *x_zero_point);
            i32p(&mut b, *y_zero_point);
            u32p(&mut b, *position_offset);
            u32p(&mut b, *frac_bits);
            b.push(match pairing {
                RopePairing::Half => 0,
                RopePairing::Interleaved => 1,
            });
        }
        Op::Transpose { perm } => {
            if perm.len() > u8::MAX as usize {
                return Err(Error::Program("transpose: rank above 255".into()));
            }
            b.push(perm.len() as u8);
            for &p in perm {
                b.push(
                    u8::try_from(p)
                        .map_err(|_| Error::Program("transpose: axis above 255".into()))?,
                );
            }
        }
        Op::Concat { axis } => b.push(
            u8::try_from(*axis).map_err(|_| Error::Program("concat: axis above 255".into()))?,
        ),
        Op::Slice { axis, start, end } => {
            b.push(
                u8::try_from(*axis).map_err(|_| Error::Program("slice: axis above 255".into()))?,
            );
            b.extend_from_slice(&u32_of(*start, "slice start")?);
            b.extend_from_slice(&u32_of(*end, "slice end")?);
        }
        Op::MeanPool {
            x_zero_point,
            frac_bits,
            y_zero_point,
        } => {
            i32p(&mut b, *x_zero_point);
            u32p(&mut b, *frac_bits);
            i32p(&mut b, *y_zero_point);
        }
    }
    if node.inputs.len() > u8::MAX as usize {
        return Err(Error::Program("more than 255 operands".into()));
    }
    b.push(node.inputs.len() as u8);
    for o in &node.inputs {
        let (tag, idx) = match o {
            Operand::Slot(s) => (0u8, *s),
            Operand::Weight(w) => (1u8, *w),
        };
        b.push(tag);
        b.extend_from_slice(&idx.to_be_bytes());
    }
    b.extend_from_slice(&encode_type(&node.output)?);
    Ok(b)
}

/// The dtype of an encoded type's first byte, for decoders.
pub fn dtype_of_code(code: u8) -> Result<DType> {
    DType::from_code(code)
}

/// Builds a program op by op, inferring each output shape, with its named weights.
#[derive(Clone, Debug)]
pub struct ProgramBuilder {
    program: Program,
    weights: Vec<(String, crate::tensor::Tensor)>,
}

impl ProgramBuilder {
    /// A builder for a program taking `input`.
    pub fn new(input: TensorType) -> Self {
        Self {
            program: Program {
                version: PROGRAM_VERSION,
                input,
                weights: Vec::new(),
                ops: Vec::new(),
                output: 0,
            },
            weights: Vec::new(),
        }
    }

    /// The input operand (slot 0).
    pub fn input(&self) -> Operand {
        Operand::Slot(0)
    }

    /// Adds a weight tensor under `name`.
    pub fn weight(&mut self, name: impl Into<String>, t: crate::tensor::Tensor) -> Operand {
        self.program.weights.push(t.ty());
        self.weights.push((name.into(), t));
        Operand::Weight(self.program.weights.len() as u32 - 1)
    }

    /// The type of an operand added so far.
    pub fn type_of(&self, o: Operand) -> Result<TensorType> {
        match o {
            Operand::Slot(s) => self.program.slot_type(s).cloned(),
            Operand::Weight(w) => self
                .program
                .weights
                .get(w as usize)
                .cloned()
                .ok_or_else(|| Error::Program(format!("weight {w} does not exist"))),
        }
    }

    /// Appends `op` on `inputs` with output dtype `dtype`; returns its slot.
    pub fn push(&mut self, op: Op, inputs: &[Operand], dtype: DType) -> Result<Operand> {
        let types = inputs
            .iter()
            .map(|&o| self.type_of(o))
            .collect::<Result<Vec<_>>>()?;
        let output = op.infer(&types.iter().collect::<Vec<_>>(), dtype)?;
        self.push_typed(op, inputs, output)
    }

    /// Appends `op` with an explicitly declared output type; returns its slot.
    pub fn push_typed(
        &mut self,
        op: Op,
        inputs: &[Operand],
        output: TensorType,
    ) -> Result<Operand> {
        let types = inputs
            .iter()
            .map(|&o| self.type_of(o))
            .collect::<Result<Vec<_>>>()?;
        op.check(&types.iter().collect::<Vec<_>>(), &output)?;
        self.program.ops.push(OpNode {
            op,
            inputs: inputs.to_vec(),
            output,
        });
        Ok(Operand::Slot(self.program.ops.len() as u32))
    }

    /// Appends a `reshape` of `x` to `shape`.
    pub fn reshape(&mut self, x: Operand, shape: &[usize]) -> Result<Operand> {
        let dtype = self.type_of(x)?.dtype;
        self.push_typed(Op::Reshape, &[x], TensorType::new(dtype, shape.to_vec()))
    }

    /// Appends a `transpose` of `x` by `perm` (a layout op: the dtype stays).
    pub fn transpose(&mut self, x: Operand, perm: &[usize]) -> Result<Operand> {
        let dtype = self.type_of(x)?.dtype;
        self.push(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
            dtype,
        )
    }

    /// Finishes with `output` as the program's output slot.
    pub fn finish(
        mut self,
        output: Operand,
    ) -> Result<(Program, Vec<(String, crate::tensor::Tensor)>)> {
        match output {
            Operand::Slot(s) => self.program.output = s,
            Operand::Weight(_) => return Err(Error::Program("the output must be a slot".into())),
        }
        self.program.validate()?;
        Ok((self.program, self.weights))
    }
}
