//! What the one-step tests share: random values with edge cases, the openings of an op's
//! operands built with the inference crate's commitments (Rust-made proofs that Solidity
//! must accept), and a deployed `OneStepVerifier` in a local EVM.
#![allow(dead_code)]

use alloy::primitives::{B256, Bytes, U256};
use contracts::bindings::OneStepVerifier;
use contracts::bindings::one_step_verifier::IOneStepVerifier::{LeafRange, Opening};
use contracts::bindings::one_step_verifier::OneStepVerifier::{
    OneStepVerifierErrors, computeElementCall,
};
use contracts::{Error, LocalEvm};
use inference::commit::{
    activations_root, prove_slot, prove_tensor_range, prove_weight, tensor_data_root,
    tensor_data_tree, tensor_hash_from_root, weights_root,
};
use inference::demo::SplitMix64;
use inference::merkle::H256;
use inference::one_step::{leaf_ranges, needed_leaves};
use inference::ops::Op;
use inference::program::{OpNode, Operand, encode_op, encode_type};
use inference::{DType, Tensor, TensorData, TensorType};

/// Random numbers for test cases, biased towards the edges of every range.
pub struct Rng(pub SplitMix64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64(seed))
    }

    /// 64 random bits.
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.u64() % ((hi - lo) as u64 + 1)) as i64
    }

    /// Uniform in `0..rare` with probability `1 / one_in`, else in `0..common`.
    pub fn sized(&mut self, one_in: usize, rare: usize, common: usize) -> usize {
        let n = if self.one_in(one_in) { rare } else { common };
        self.below(n)
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A value of `dtype`: its minimum, maximum, 0 or ±1 a quarter of the time, else uniform.
    pub fn value(&mut self, dtype: DType) -> i64 {
        if self.one_in(4) {
            [dtype.min(), dtype.max(), 0, 1, -1][self.below(5)]
        } else {
            self.range(dtype.min(), dtype.max())
        }
    }

    /// A value of `dtype` from a narrow band (ties and repeats), or any value.
    pub fn value_narrow(&mut self, dtype: DType) -> i64 {
        if self.one_in(2) {
            self.range(-3, 3)
        } else {
            self.value(dtype)
        }
    }

    /// Any dtype.
    pub fn dtype(&mut self) -> DType {
        [DType::I8, DType::I16, DType::I32][self.below(3)]
    }

    /// A shift in `0..=62`, often 0 or 62.
    pub fn shift(&mut self) -> u32 {
        match self.below(5) {
            0 => 0,
            1 => 62,
            _ => self.range(0, 62) as u32,
        }
    }

    /// `frac_bits` in `0..=30`, often 0 or 30.
    pub fn frac_bits(&mut self) -> u32 {
        match self.below(5) {
            0 => 0,
            1 => 30,
            _ => self.range(0, 30) as u32,
        }
    }

    /// Any `i32` multiplier, often a Q31 one, 0 or an extreme.
    pub fn multiplier(&mut self) -> i32 {
        match self.below(6) {
            0 => [0, 1, -1, i32::MIN, i32::MAX][self.below(5)],
            1 | 2 => self.range(1 << 30, (1 << 31) - 1) as i32,
            _ => self.u64() as i32,
        }
    }

    /// A zero point of `dtype`, often an extreme.
    pub fn zero_point(&mut self, dtype: DType) -> i32 {
        self.value(dtype) as i32
    }

    /// A tensor of `dtype` and `shape` with values from `f`.
    pub fn tensor_with(
        &mut self,
        dtype: DType,
        shape: &[usize],
        mut f: impl FnMut(&mut Self) -> i64,
    ) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<i64> = (0..n).map(|_| f(self)).collect();
        tensor(dtype, shape, &v)
    }

    /// A tensor of `dtype` and `shape` with edge-biased values.
    pub fn tensor(&mut self, dtype: DType, shape: &[usize]) -> Tensor {
        self.tensor_with(dtype, shape, |r| r.value(dtype))
    }
}

/// A tensor of `dtype` from values already in range.
pub fn tensor(dtype: DType, shape: &[usize], v: &[i64]) -> Tensor {
    let data = match dtype {
        DType::I8 => TensorData::I8(v.iter().map(|&x| x as i8).collect()),
        DType::I16 => TensorData::I16(v.iter().map(|&x| x as i16).collect()),
        DType::I32 => TensorData::I32(v.iter().map(|&x| x as i32).collect()),
    };
    Tensor::new(shape.to_vec(), data).expect("shape matches the values")
}

/// One use of an op: the op, its operand tensors, the declared output type.
#[derive(Clone, Debug)]
pub struct Case {
    /// The op with its parameters.
    pub op: Op,
    /// The operands, in spec order.
    pub inputs: Vec<Tensor>,
    /// The declared output type.
    pub out: TensorType,
}

impl Case {
    /// A case whose output type is what `op` infers, with output dtype `dtype`; `None` if the
    /// op refuses the operands or the output is empty.
    pub fn inferred(op: Op, inputs: Vec<Tensor>, dtype: DType) -> Option<Self> {
        let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = types.iter().collect();
        let out = op.infer(&refs, dtype).ok()?;
        (out.numel() > 0).then_some(Self { op, inputs, out })
    }

    /// The reference value of output element `index` (an error where the op is undefined).
    pub fn reference(&self, index: usize) -> inference::Result<i64> {
        let refs: Vec<&Tensor> = self.inputs.iter().collect();
        inference::ops::reference::element(&self.op, &refs, &self.out, index)
    }

    /// The leaves element `index` needs, per operand.
    pub fn needed(&self, index: usize) -> Vec<Vec<usize>> {
        let refs: Vec<&Tensor> = self.inputs.iter().collect();
        needed_leaves(&self.op, &refs, &self.out, index).expect("needed leaves")
    }
}

/// How the needed leaves are grouped into range proofs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// One range per run of contiguous leaves (`leaf_ranges`).
    Runs,
    /// One range from the first to the last needed leaf (extra leaves opened: cheaper when
    /// the gaps are small, as for a strided column).
    Cover,
    /// One range per leaf (the kernels' slow path).
    Single,
}

/// A verifier call's arguments, before encoding.
#[derive(Clone, Debug)]
pub struct Call {
    /// The op's encoding.
    pub op: Vec<u8>,
    /// Weights root and leaf count.
    pub weights: (H256, usize),
    /// Activations root and slot count.
    pub activations: (H256, usize),
    /// The output element.
    pub index: usize,
    /// The openings.
    pub openings: Vec<Opening>,
}

impl Call {
    /// The ABI call.
    pub fn encode(&self) -> computeElementCall {
        computeElementCall {
            op_: Bytes::from(self.op.clone()),
            weightsRoot_: B256::from(self.weights.0.0),
            weightCount_: U256::from(self.weights.1),
            activationsRoot_: B256::from(self.activations.0.0),
            slotCount_: U256::from(self.activations.1),
            index_: U256::from(self.index),
            operands_: self.openings.clone(),
        }
    }
}

/// The commitments a case's operands live in: each operand is a weight or a slot, at a
/// random index of a tree with some other (random) entries.
pub struct Fixture {
    /// Per operand: its operand reference in the op encoding.
    pub operands: Vec<Operand>,
    weight_hashes: Vec<H256>,
    slot_hashes: Vec<H256>,
}

fn random_hash(rng: &mut Rng) -> H256 {
    let mut b = [0u8; 32];
    for chunk in b.chunks_mut(8) {
        chunk.copy_from_slice(&rng.u64().to_le_bytes());
    }
    H256(b)
}

/// The tensor hash of `t`.
pub fn hash_of(t: &Tensor) -> H256 {
    tensor_hash_from_root(&t.ty(), tensor_data_root(t)).expect("hashable")
}

impl Fixture {
    /// Places `case`'s operands at random in a weights tree and an activations tree.
    pub fn new(rng: &mut Rng, case: &Case) -> Self {
        let n = case.inputs.len();
        let is_weight: Vec<bool> = (0..n).map(|_| rng.one_in(2)).collect();
        let mut weight_hashes: Vec<H256> = Vec::new();
        let mut slot_hashes: Vec<H256> = Vec::new();
        let extra_w = rng.below(6);
        let extra_s = rng.below(6);
        let nw = is_weight.iter().filter(|&&w| w).count() + extra_w;
        let ns = n - (nw - extra_w) + extra_s;
        for _ in 0..nw {
            weight_hashes.push(random_hash(rng));
        }
        for _ in 0..ns {
            // Slots not yet computed are zero.
            slot_hashes.push(if rng.one_in(3) {
                H256::ZERO
            } else {
                random_hash(rng)
            });
        }
        let mut free_w: Vec<usize> = (0..nw).collect();
        let mut free_s: Vec<usize> = (0..ns).collect();
        let operands = case
            .inputs
            .iter()
            .zip(&is_weight)
            .map(|(t, &w)| {
                let free = if w { &mut free_w } else { &mut free_s };
                let at = free.remove(rng.below(free.len()));
                if w {
                    weight_hashes[at] = hash_of(t);
                    Operand::Weight(at as u32)
                } else {
                    slot_hashes[at] = hash_of(t);
                    Operand::Slot(at as u32)
                }
            })
            .collect();
        Self {
            operands,
            weight_hashes,
            slot_hashes,
        }
    }

    /// The weights root and leaf count.
    pub fn weights(&self) -> (H256, usize) {
        (weights_root(&self.weight_hashes), self.weight_hashes.len())
    }

    /// The activations root and slot count.
    pub fn activations(&self) -> (H256, usize) {
        let n = self.slot_hashes.len();
        (activations_root(&self.slot_hashes, n).expect("root"), n)
    }

    /// The op encoding of `case` with these operands.
    pub fn encode_op(&self, case: &Case) -> Vec<u8> {
        encode_op(&OpNode {
            op: case.op.clone(),
            inputs: self.operands.clone(),
            output: case.out.clone(),
        })
        .expect("encodable")
    }

    /// The membership proof of operand `j`'s tensor hash.
    pub fn membership(&self, j: usize) -> Vec<B256> {
        let proof = match self.operands[j] {
            Operand::Weight(w) => prove_weight(&self.weight_hashes, w as usize),
            Operand::Slot(s) => prove_slot(&self.slot_hashes, self.slot_hashes.len(), s as usize),
        }
        .expect("proof");
        proof.siblings.iter().map(|h| B256::from(h.0)).collect()
    }

    /// The call for output element `index` with the leaves `leaves[j]` of each operand,
    /// grouped as `grouping` says.
    pub fn call(
        &self,
        case: &Case,
        index: usize,
        leaves: &[Vec<usize>],
        grouping: Grouping,
    ) -> Call {
        let openings = case
            .inputs
            .iter()
            .zip(leaves)
            .enumerate()
            .map(|(j, (t, needed))| {
                let ranges = match grouping {
                    _ if needed.is_empty() => Vec::new(),
                    Grouping::Runs => leaf_ranges(needed),
                    Grouping::Cover => {
                        std::iter::once(needed[0]..needed[needed.len() - 1] + 1).collect()
                    }
                    Grouping::Single => needed.iter().map(|&l| l..l + 1).collect(),
                };
                let siblings = if ranges.is_empty() {
                    Vec::new()
                } else {
                    tensor_data_tree(t).prove_ranges(&ranges).expect("ranges")
                };
                Opening {
                    tensorType: Bytes::from(encode_type(&t.ty()).expect("type")),
                    dataRoot: B256::from(tensor_data_root(t).0),
                    membership: self.membership(j),
                    ranges: ranges
                        .into_iter()
                        .map(|r| {
                            let (leaves, _) = prove_tensor_range(t, r.start, r.end).expect("range");
                            LeafRange {
                                start: r.start as u64,
                                leaves: leaves.into_iter().map(B256::from).collect(),
                            }
                        })
                        .collect(),
                    siblings: siblings.iter().map(|h| B256::from(h.0)).collect(),
                }
            })
            .collect();
        Call {
            op: self.encode_op(case),
            weights: self.weights(),
            activations: self.activations(),
            index,
            openings,
        }
    }
}

/// A deployed `OneStepVerifier`.
pub struct Verifier {
    /// The chain.
    pub evm: LocalEvm,
    /// The verifier's address.
    pub address: alloy::primitives::Address,
}

impl Verifier {
    /// Deploys the committed artifact.
    pub fn deploy() -> Self {
        let mut evm = LocalEvm::new();
        let address = evm
            .deploy(OneStepVerifier::BYTECODE.clone())
            .expect("deploy OneStepVerifier");
        Self { evm, address }
    }

    /// `computeElement`: the value and the gas used, or the error.
    pub fn compute(&mut self, call: &Call) -> Result<(i64, u64), Error> {
        let (value, gas) = self.evm.call(self.address, &call.encode())?;
        Ok((i64::try_from(value).expect("an element fits i64"), gas))
    }

    /// The custom error a failed call reverted with.
    pub fn revert_of(e: &Error) -> Option<OneStepVerifierErrors> {
        e.revert_as::<OneStepVerifierErrors>()
    }
}
