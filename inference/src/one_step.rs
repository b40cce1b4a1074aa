//! The one-step of a dispute: which operand leaves one output element depends on, and the
//! element recomputed from only those leaves.
//!
//! The prover runs [`needed_leaves`] on the full operands (it records which elements the
//! reference reads), reveals those 32-byte leaves with Merkle proofs, and the verifier
//! (the referee here, the Solidity kernel on-chain) rebuilds sparse operands from them
//! ([`RevealedOperand`]) and runs the same reference code ([`element_from_leaves`]). A read
//! of anything not revealed is an error, so a prover cannot leave out what it needs.

use crate::error::{Error, Result};
use crate::ops::Op;
use crate::ops::reference::{ElementSource, element_from};
use crate::tensor::{DType, Tensor, TensorType};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Bytes per leaf.
pub const LEAF_BYTES: usize = 32;

/// The leaf holding element `index` of a tensor of `dtype`.
pub fn leaf_of_element(dtype: DType, index: usize) -> usize {
    index * dtype.size() / LEAF_BYTES
}

/// Element `k` of a leaf (little-endian), as `i64`; `None` past the leaf.
pub fn element_in_leaf(leaf: &[u8; 32], dtype: DType, k: usize) -> Option<i64> {
    let size = dtype.size();
    let b = leaf.get(k * size..(k + 1) * size)?;
    Some(match dtype {
        DType::I8 => b[0] as i8 as i64,
        DType::I16 => i16::from_le_bytes([b[0], b[1]]) as i64,
        DType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
    })
}

/// A tensor that remembers which elements were read.
struct Recorder<'a> {
    tensor: &'a Tensor,
    read: RefCell<BTreeSet<usize>>,
}

impl ElementSource for Recorder<'_> {
    fn ty(&self) -> TensorType {
        self.tensor.ty()
    }

    fn value(&self, index: usize) -> Option<i64> {
        self.read.borrow_mut().insert(index);
        self.tensor.value(index)
    }
}

/// For output element `index` of `op` on `inputs`, the sorted leaf indices of each operand
/// that the element depends on.
///
/// They can depend on operand values, which is why this runs on the whole operands: a
/// softmax element needs only the exp-table entries `min(max - x[c], T - 1)` of its row's
/// kept columns.
pub fn needed_leaves(
    op: &Op,
    inputs: &[&Tensor],
    out: &TensorType,
    index: usize,
) -> Result<Vec<Vec<usize>>> {
    let recorders: Vec<Recorder<'_>> = inputs
        .iter()
        .map(|t| Recorder {
            tensor: t,
            read: RefCell::default(),
        })
        .collect();
    let sources: Vec<&dyn ElementSource> =
        recorders.iter().map(|r| r as &dyn ElementSource).collect();
    element_from(op, &sources, out, index)?;
    Ok(recorders
        .iter()
        .map(|r| {
            let dt = r.tensor.dtype();
            let leaves: BTreeSet<usize> = r
                .read
                .borrow()
                .iter()
                .map(|&e| leaf_of_element(dt, e))
                .collect();
            leaves.into_iter().collect()
        })
        .collect())
}

/// Sorted leaf indices grouped into contiguous ranges (one range proof each).
pub fn leaf_ranges(leaves: &[usize]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for &l in leaves {
        match out.last_mut() {
            Some(r) if r.end == l => r.end += 1,
            _ => out.push(l..l + 1),
        }
    }
    out
}

/// An operand known only by its type and some of its leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevealedOperand {
    ty: TensorType,
    leaves: BTreeMap<usize, [u8; 32]>,
}

impl RevealedOperand {
    /// An operand of type `ty` with no leaf revealed yet.
    pub fn new(ty: TensorType) -> Self {
        Self {
            ty,
            leaves: BTreeMap::new(),
        }
    }

    /// Adds leaf `index` (already proven against the operand's data root by the caller).
    pub fn reveal(&mut self, index: usize, leaf: [u8; 32]) -> Result<()> {
        let count = crate::commit::leaf_count(&self.ty);
        if index >= count {
            return Err(Error::Proof(format!(
                "leaf {index} of {} does not exist ({count} leaves)",
                self.ty
            )));
        }
        self.leaves.insert(index, leaf);
        Ok(())
    }

    /// The operand's type.
    pub fn tensor_type(&self) -> &TensorType {
        &self.ty
    }
}

impl ElementSource for RevealedOperand {
    fn ty(&self) -> TensorType {
        self.ty.clone()
    }

    fn value(&self, index: usize) -> Option<i64> {
        if index >= self.ty.numel() {
            return None;
        }
        let dt = self.ty.dtype;
        let leaf = self.leaves.get(&leaf_of_element(dt, index))?;
        element_in_leaf(leaf, dt, index % (LEAF_BYTES / dt.size()))
    }
}

/// Output element `index` of `op`, computed from revealed operand leaves only.
pub fn element_from_leaves(
    op: &Op,
    operands: &[RevealedOperand],
    out: &TensorType,
    index: usize,
) -> Result<i64> {
    let sources: Vec<&dyn ElementSource> =
        operands.iter().map(|o| o as &dyn ElementSource).collect();
    element_from(op, &sources, out, index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::tensor_leaf;
    use crate::ops::reference;
    use crate::program::Operand;
    use crate::trace::Trace;

    /// For every op of the demo and a spread of output elements: the needed leaves alone
    /// reproduce the element, and withholding any one of them is an error.
    #[test]
    fn needed_leaves_suffice_and_are_necessary() {
        let model = crate::demo::model().unwrap();
        let input = crate::demo::input(&crate::demo::tokens("proofs")).unwrap();
        let trace = Trace::execute(model.program(), model.weights(), &input).unwrap();
        for (i, node) in model.program().ops.iter().enumerate() {
            let inputs: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|o| match *o {
                    Operand::Slot(s) => trace.tensor(s as usize).unwrap(),
                    Operand::Weight(w) => &model.weights().tensors()[w as usize],
                })
                .collect();
            let n = node.output.numel();
            for index in [0, n / 3, n - 1] {
                let want = reference::element(&node.op, &inputs, &node.output, index).unwrap();
                let needed = needed_leaves(&node.op, &inputs, &node.output, index).unwrap();
                let reveal = |skip: Option<(usize, usize)>| -> Vec<RevealedOperand> {
                    inputs
                        .iter()
                        .zip(&needed)
                        .enumerate()
                        .map(|(j, (t, leaves))| {
                            let mut r = RevealedOperand::new(t.ty());
                            for &l in leaves {
                                if skip != Some((j, l)) {
                                    r.reveal(l, tensor_leaf(t, l).unwrap()).unwrap();
                                }
                            }
                            r
                        })
                        .collect()
                };
                assert_eq!(
                    element_from_leaves(&node.op, &reveal(None), &node.output, index).unwrap(),
                    want
                );
                for (j, leaves) in needed.iter().enumerate() {
                    if let Some(&l) = leaves.first() {
                        let e = element_from_leaves(
                            &node.op,
                            &reveal(Some((j, l))),
                            &node.output,
                            index,
                        );
                        assert!(
                            e.is_err(),
                            "op {} ({}) without leaf {l} of operand {j}",
                            i + 1,
                            node.op.kind()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn ranges_group_contiguous_leaves() {
        assert_eq!(leaf_ranges(&[0, 1, 2, 5, 7, 8]), vec![0..3, 5..6, 7..9]);
        assert!(leaf_ranges(&[]).is_empty());
    }
}
