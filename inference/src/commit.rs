//! The commitments of the design: tensor hashes, the weights root, the activation table,
//! execution states and model ids. Every hash is keccak256 over the exact bytes below
//! (integers big-endian unless said otherwise, `||` is concatenation), and every Merkle
//! root is the tree of [`crate::merkle`].
//!
//! # Tensor data root
//!
//! The tensor's data, row-major with each element little-endian (`i8`: 1 byte, `i16`:
//! 2, `i32`: 4; [`Tensor::to_le_bytes`]), is cut into 32-byte leaves, the last one
//! zero-padded ([`chunk_leaves`](crate::merkle::chunk_leaves)). Leaf `k` holds bytes
//! `[32k, 32k + 32)`, that is elements `[32k / size, (32k + 32) / size)`. A tensor of `B`
//! bytes has `max(1, ceil(B / 32))` leaves ([`leaf_count`]); an empty tensor has one zero
//! leaf, so its data root is `Z[0] = keccak256(0x00 * 32)`. The data root is the root of
//! that tree, padded to a power of two as [`crate::merkle`] says.
//!
//! # Tensor hash
//!
//! ```text
//! tensorHash = keccak256(dtype || rank || dim_0 || ... || dim_{rank-1} || dataRoot)
//!   dtype:   1 byte, the dtype code (i8 = 1, i16 = 2, i32 = 3)
//!   rank:    1 byte, the number of dimensions (0..=255)
//!   dim_i:   4 bytes each, big-endian u32, outermost first
//!   dataRoot: 32 bytes
//! ```
//! That is `2 + 4 * rank + 32` bytes in all. The shape fixes the leaf count and so the
//! depth of the data tree.
//!
//! # Weights root
//!
//! `weightsRoot` is the Merkle root whose leaf `j` is the 32-byte tensor hash of weight
//! `j`, in program order (lookup tables and multipliers included); no weights gives
//! `Z[0]`.
//!
//! # Activation table
//!
//! The table of one inference has `slotCount` slots `[input, out_1, ..., out_n]`.
//! `activationsRoot` is the Merkle root over `slotCount` leaves, leaf `j` being the tensor
//! hash in slot `j`, or 32 zero bytes while slot `j` is not computed yet. After `i` ops,
//! slots `0..=i` are set: `activationsRoot_i`.
//!
//! # Execution state and model id
//!
//! ```text
//! s_i     = keccak256(weightsRoot || activationsRoot_i)   (64 bytes hashed)
//! modelId = keccak256(programHash || weightsRoot)         (64 bytes hashed)
//! ```

use crate::error::{Error, Result};
use crate::merkle::{
    H256, MerkleProof, MerkleTree, RangeProof, depth_for, hash_pair, keccak256, leaf_hash,
    merkle_root_with, padded_root, zero_hash,
};
use crate::tensor::{Tensor, TensorData, TensorType};

/// The largest slot count of an activation table.
pub const MAX_SLOTS: usize = u32::MAX as usize;

/// The number of 32-byte leaves of a tensor of type `ty`: `max(1, ceil(byte_len / 32))`.
pub fn leaf_count(ty: &TensorType) -> usize {
    let bytes = ty
        .shape
        .iter()
        .try_fold(ty.dtype.size(), |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    bytes.div_ceil(32).max(1)
}

/// Leaves of a tensor's data, read straight from its typed storage.
fn data_leaf_count(data: &TensorData) -> usize {
    (data.len() * data.dtype().size()).div_ceil(32).max(1)
}

/// Leaf `index` of the data, zero-padded past the end; `index` must be below
/// [`data_leaf_count`].
fn data_leaf(data: &TensorData, index: usize) -> [u8; 32] {
    fn fill<T: Copy, const N: usize>(
        v: &[T],
        index: usize,
        to_le: impl Fn(T) -> [u8; N],
    ) -> [u8; 32] {
        let per_leaf = 32 / N;
        let start = (index * per_leaf).min(v.len());
        let end = (start + per_leaf).min(v.len());
        let mut leaf = [0u8; 32];
        for (dst, &x) in leaf.chunks_exact_mut(N).zip(&v[start..end]) {
            dst.copy_from_slice(&to_le(x));
        }
        leaf
    }
    match data {
        TensorData::I8(v) => fill(v, index, |x: i8| x.to_le_bytes()),
        TensorData::I16(v) => fill(v, index, |x: i16| x.to_le_bytes()),
        TensorData::I32(v) => fill(v, index, |x: i32| x.to_le_bytes()),
    }
}

/// The 32 bytes of leaf `index` of `t`'s data, zero-padded past the data's end.
pub fn tensor_leaf(t: &Tensor, index: usize) -> Result<[u8; 32]> {
    let n = data_leaf_count(t.data());
    if index >= n {
        return Err(Error::Param(format!(
            "leaf {index} of a tensor with {n} leaves"
        )));
    }
    Ok(data_leaf(t.data(), index))
}

/// The Merkle root of `t`'s data (the fast path: leaves hashed in parallel, no tree kept).
pub fn tensor_data_root(t: &Tensor) -> H256 {
    let data = t.data();
    merkle_root_with(data_leaf_count(data), |i| data_leaf(data, i))
}

/// The Merkle tree of `t`'s data, for proofs.
pub fn tensor_data_tree(t: &Tensor) -> MerkleTree {
    let data = t.data();
    MerkleTree::new_with(data_leaf_count(data), |i| data_leaf(data, i))
}

/// The tensor hash of a tensor of type `ty` whose data root is `data_root` (layout in the
/// module docs). Fails if the rank exceeds 255 or a dimension exceeds `u32::MAX`.
pub fn tensor_hash_from_root(ty: &TensorType, data_root: H256) -> Result<H256> {
    let rank = u8::try_from(ty.shape.len())
        .map_err(|_| Error::Param(format!("rank {} exceeds 255", ty.shape.len())))?;
    let mut bytes = Vec::with_capacity(2 + 4 * ty.shape.len() + 32);
    bytes.push(ty.dtype.code());
    bytes.push(rank);
    for &dim in &ty.shape {
        let dim = u32::try_from(dim)
            .map_err(|_| Error::Param(format!("dimension {dim} of {ty} exceeds u32::MAX")))?;
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    bytes.extend_from_slice(data_root.as_bytes());
    Ok(keccak256(&bytes))
}

/// The tensor hash of `t`, or an error if its shape cannot be committed (rank above 255
/// or a dimension above `u32::MAX`).
pub fn try_tensor_hash(t: &Tensor) -> Result<H256> {
    tensor_hash_from_root(&t.ty(), tensor_data_root(t))
}

/// Tensor hashes remembered by content, so that models sharing weights (the buckets of an
/// encoder family, built from one checkpoint) hash each shared tensor once: loading the
/// four MiniLM buckets is mostly hashing, and most of their tensors are equal. A tensor is
/// looked up by a fast checksum of its type and data and matched byte for byte, so a
/// remembered hash is only ever given to an equal tensor. It keeps a copy of every tensor
/// it hashed: drop it once the models are loaded.
#[derive(Default)]
pub struct TensorHashMemo {
    by_sum: std::collections::HashMap<u64, Vec<(Tensor, H256)>>,
}

impl TensorHashMemo {
    /// An empty memo.
    pub fn new() -> Self {
        Self::default()
    }

    /// The remembered hash of a tensor equal to `t`, if any.
    pub fn get(&self, t: &Tensor) -> Option<H256> {
        self.by_sum
            .get(&content_sum(t))?
            .iter()
            .find(|(u, _)| u == t)
            .map(|(_, h)| *h)
    }

    /// Remembers `hash` as the tensor hash of `t`.
    pub fn insert(&mut self, t: &Tensor, hash: H256) {
        let same = self.by_sum.entry(content_sum(t)).or_default();
        if !same.iter().any(|(u, _)| u == t) {
            same.push((t.clone(), hash));
        }
    }

    /// The number of tensors remembered.
    pub fn len(&self) -> usize {
        self.by_sum.values().map(Vec::len).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_sum.is_empty()
    }
}

impl std::fmt::Debug for TensorHashMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorHashMemo")
            .field("tensors", &self.len())
            .finish()
    }
}

/// A fast (not collision-resistant) checksum of a tensor's type and data.
fn content_sum(t: &Tensor) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.ty().hash(&mut h);
    match t.data() {
        TensorData::I8(v) => v.hash(&mut h),
        TensorData::I16(v) => v.hash(&mut h),
        TensorData::I32(v) => v.hash(&mut h),
    }
    h.finish()
}

/// The tensor hash of `t`: `keccak256(dtype || rank || dims || dataRoot)`.
///
/// # Panics
/// If the rank exceeds 255 or a dimension exceeds `u32::MAX`: such a tensor cannot be
/// committed, use [`try_tensor_hash`] where that can happen.
pub fn tensor_hash(t: &Tensor) -> H256 {
    match try_tensor_hash(t) {
        Ok(h) => h,
        Err(e) => panic!("tensor {t:?} cannot be hashed: {e}"),
    }
}

/// Leaf `index` of `t`'s data with its membership proof against the data root.
pub fn prove_tensor_leaf(t: &Tensor, index: usize) -> Result<([u8; 32], MerkleProof)> {
    let leaf = tensor_leaf(t, index)?;
    Ok((leaf, tensor_data_tree(t).prove(index)?))
}

/// Leaves `[start, end)` of `t`'s data with their range proof against the data root.
pub fn prove_tensor_range(
    t: &Tensor,
    start: usize,
    end: usize,
) -> Result<(Vec<[u8; 32]>, RangeProof)> {
    let n = data_leaf_count(t.data());
    if start >= end || end > n {
        return Err(Error::Param(format!(
            "leaf range [{start}, {end}) is empty or outside a tensor with {n} leaves"
        )));
    }
    let proof = tensor_data_tree(t).prove_range(start, end)?;
    Ok((
        (start..end).map(|i| data_leaf(t.data(), i)).collect(),
        proof,
    ))
}

/// The weights root: the Merkle root over the weight tensors' hashes, in program order.
pub fn weights_root(weight_hashes: &[H256]) -> H256 {
    merkle_root_with(weight_hashes.len(), |i| weight_hashes[i].0)
}

/// The membership proof of weight `index`'s tensor hash against [`weights_root`].
pub fn prove_weight(weight_hashes: &[H256], index: usize) -> Result<MerkleProof> {
    if index >= weight_hashes.len() {
        return Err(Error::Param(format!(
            "weight {index} of {}",
            weight_hashes.len()
        )));
    }
    MerkleTree::new(weight_hashes.iter().map(|h| h.0).collect()).prove(index)
}

/// Checks a slot count and the number of set slots against it.
fn check_slots(set: usize, slot_count: usize) -> Result<()> {
    if slot_count > MAX_SLOTS {
        return Err(Error::Param(format!(
            "{slot_count} activation slots exceed {MAX_SLOTS}"
        )));
    }
    if set > slot_count {
        return Err(Error::Param(format!(
            "{set} slot hashes for {slot_count} slots"
        )));
    }
    Ok(())
}

/// The activations root of a table of `slot_count` slots whose first
/// `slot_hashes.len()` slots hold `slot_hashes` and the rest are zero (not computed).
pub fn activations_root(slot_hashes: &[H256], slot_count: usize) -> Result<H256> {
    check_slots(slot_hashes.len(), slot_count)?;
    Ok(padded_root(
        slot_hashes.len(),
        depth_for(slot_count),
        &|j| slot_hashes[j].0,
    ))
}

/// The activations roots after each op: `roots[i] = activations_root(&slot_hashes[..=i],
/// slot_count)` for `i < slot_hashes.len()`. With `slot_hashes = [input, out_1, ...,
/// out_n]` that is `activationsRoot_0..=activationsRoot_n`, in `O(n log n)`.
pub fn incremental_roots(slot_hashes: &[H256], slot_count: usize) -> Result<Vec<H256>> {
    check_slots(slot_hashes.len(), slot_count)?;
    Ok(roots_after_each_slot(slot_hashes, slot_count))
}

/// [`incremental_roots`] without the checks (`slot_hashes.len() <= slot_count`).
fn roots_after_each_slot(slot_hashes: &[H256], slot_count: usize) -> Vec<H256> {
    let mut table = ActivationTable::zeroed(slot_count);
    slot_hashes
        .iter()
        .enumerate()
        .map(|(slot, &hash)| {
            table.write(slot, hash);
            table.root()
        })
        .collect()
}

/// The activations roots of every state of one trace: `root(i)` is `activationsRoot_i`,
/// the table with slots `0..=i` set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivationRoots {
    roots: Vec<H256>,
}

impl ActivationRoots {
    /// The roots for a table of `slot_hashes.len()` slots `[input, out_1, ..., out_n]`:
    /// `n + 1` roots, in `O(n log n)`.
    pub fn new(slot_hashes: &[H256]) -> Self {
        Self {
            roots: roots_after_each_slot(slot_hashes, slot_hashes.len()),
        }
    }

    /// The roots for a table of `slot_count` slots whose first slots are `slot_hashes`
    /// (see [`incremental_roots`]).
    pub fn with_slot_count(slot_hashes: &[H256], slot_count: usize) -> Result<Self> {
        Ok(Self {
            roots: incremental_roots(slot_hashes, slot_count)?,
        })
    }

    /// `activationsRoot_i`, if state `i` exists.
    pub fn root(&self, i: usize) -> Option<H256> {
        self.roots.get(i).copied()
    }

    /// Every root, `activationsRoot_0` first.
    pub fn roots(&self) -> &[H256] {
        &self.roots
    }

    /// The number of states.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether there are no states (no slot hashes were given).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }
}

/// The membership proof of `slot` in the table of [`activations_root`].
pub fn prove_slot(slot_hashes: &[H256], slot_count: usize, slot: usize) -> Result<MerkleProof> {
    ActivationTable::from_slots(slot_hashes, slot_count)?.prove(slot)
}

/// An activation table kept as a full Merkle tree, updated in `O(log slotCount)` per
/// slot: what the trace executor uses to compute `activationsRoot_i` for every `i`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivationTable {
    slot_count: usize,
    slots: Vec<H256>,
    /// `levels[l]` is level `l` of the padded tree (`2^(depth - l)` nodes).
    levels: Vec<Vec<H256>>,
}

impl ActivationTable {
    /// A table of `slot_count` slots, all zero (not computed).
    pub fn new(slot_count: usize) -> Result<Self> {
        check_slots(0, slot_count)?;
        Ok(Self::zeroed(slot_count))
    }

    fn zeroed(slot_count: usize) -> Self {
        let depth = depth_for(slot_count);
        let levels = (0..=depth)
            .map(|l| vec![zero_hash(l); 1 << (depth - l)])
            .collect();
        Self {
            slot_count,
            slots: vec![H256::ZERO; slot_count],
            levels,
        }
    }

    /// A table whose first `slot_hashes.len()` slots hold `slot_hashes`.
    pub fn from_slots(slot_hashes: &[H256], slot_count: usize) -> Result<Self> {
        check_slots(slot_hashes.len(), slot_count)?;
        let mut table = Self::new(slot_count)?;
        table.slots[..slot_hashes.len()].copy_from_slice(slot_hashes);
        for (j, h) in slot_hashes.iter().enumerate() {
            table.levels[0][j] = leaf_hash(&h.0);
        }
        for l in 1..table.levels.len() {
            let (below, above) = table.levels.split_at_mut(l);
            for (i, node) in above[0].iter_mut().enumerate() {
                *node = hash_pair(&below[l - 1][2 * i], &below[l - 1][2 * i + 1]);
            }
        }
        Ok(table)
    }

    /// The number of slots.
    pub fn slot_count(&self) -> usize {
        self.slot_count
    }

    /// Levels above the leaves.
    pub fn depth(&self) -> u32 {
        (self.levels.len() - 1) as u32
    }

    /// The tensor hash in `slot` (zero if not computed).
    pub fn get(&self, slot: usize) -> Result<H256> {
        self.slots
            .get(slot)
            .copied()
            .ok_or_else(|| self.no_slot(slot))
    }

    /// The slot hashes, zero where not computed.
    pub fn slots(&self) -> &[H256] {
        &self.slots
    }

    /// Puts `hash` in `slot` (zero clears it) and rehashes its path to the root.
    pub fn set(&mut self, slot: usize, hash: H256) -> Result<()> {
        if slot >= self.slot_count {
            return Err(self.no_slot(slot));
        }
        self.write(slot, hash);
        Ok(())
    }

    /// [`ActivationTable::set`] for a slot known to exist.
    fn write(&mut self, slot: usize, hash: H256) {
        self.slots[slot] = hash;
        let mut index = slot;
        self.levels[0][index] = leaf_hash(&hash.0);
        for l in 1..self.levels.len() {
            index >>= 1;
            let below = &self.levels[l - 1];
            let node = hash_pair(&below[2 * index], &below[2 * index + 1]);
            self.levels[l][index] = node;
        }
    }

    /// The activations root.
    pub fn root(&self) -> H256 {
        self.levels[self.levels.len() - 1][0]
    }

    /// The membership proof of `slot`'s leaf (its tensor hash, or zero).
    pub fn prove(&self, slot: usize) -> Result<MerkleProof> {
        if slot >= self.slot_count {
            return Err(self.no_slot(slot));
        }
        let siblings = (0..self.levels.len() - 1)
            .map(|l| self.levels[l][(slot >> l) ^ 1])
            .collect();
        Ok(MerkleProof {
            index: slot as u64,
            siblings,
        })
    }

    fn no_slot(&self, slot: usize) -> Error {
        Error::Param(format!(
            "slot {slot} of a table with {} slots",
            self.slot_count
        ))
    }
}

/// The execution state `keccak256(weightsRoot || activationsRoot)`.
pub fn execution_state(weights_root: H256, activations_root: H256) -> H256 {
    hash_pair(&weights_root, &activations_root)
}

/// The model id `keccak256(programHash || weightsRoot)`.
pub fn model_id(program_hash: H256, weights_root: H256) -> H256 {
    hash_pair(&program_hash, &weights_root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{chunk_leaves, merkle_root};
    use crate::tensor::DType;

    fn sample(dtype: DType, n: usize) -> Tensor {
        let values: Vec<i64> = (0..n as i64).map(|i| (i * 7919 % 251) - 125).collect();
        Tensor::from_values(dtype, vec![n], values)
    }

    #[test]
    fn typed_leaves_equal_chunked_bytes() {
        for dtype in [DType::I8, DType::I16, DType::I32] {
            for n in [0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 100, 5000] {
                let t = sample(dtype, n);
                let leaves = chunk_leaves(&t.to_le_bytes());
                assert_eq!(leaf_count(&t.ty()), leaves.len());
                for (k, leaf) in leaves.iter().enumerate() {
                    assert_eq!(&tensor_leaf(&t, k).unwrap(), leaf);
                }
                assert!(tensor_leaf(&t, leaves.len()).is_err());
                assert_eq!(tensor_data_root(&t), merkle_root(&leaves));
                assert_eq!(tensor_data_tree(&t).root(), merkle_root(&leaves));
            }
        }
    }

    #[test]
    fn a_hash_memo_matches_equal_tensors_only() {
        let mut memo = TensorHashMemo::new();
        let t = sample(DType::I16, 100);
        assert_eq!(memo.get(&t), None);
        memo.insert(&t, tensor_hash(&t));
        assert_eq!(memo.get(&t.clone()), Some(tensor_hash(&t)));
        // One element changed, another shape, another dtype: not remembered.
        let mut values = t.to_i64_vec();
        values[57] += 1;
        let changed = Tensor::from_values(DType::I16, vec![100], values);
        let reshaped = t.clone().reshaped(vec![10, 10]).unwrap();
        let widened = Tensor::from_values(DType::I32, vec![100], t.to_i64_vec());
        for other in [&changed, &reshaped, &widened] {
            assert_eq!(memo.get(other), None);
        }
        memo.insert(&t, tensor_hash(&t));
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn activation_table_matches_from_scratch() {
        let hashes: Vec<H256> = (0..37u8).map(|i| keccak256(&[i])).collect();
        for slot_count in [37, 38, 64, 65] {
            let roots = incremental_roots(&hashes, slot_count).unwrap();
            for (i, root) in roots.iter().enumerate() {
                assert_eq!(*root, activations_root(&hashes[..=i], slot_count).unwrap());
            }
            let table = ActivationTable::from_slots(&hashes, slot_count).unwrap();
            assert_eq!(table.root(), roots[36]);
        }
        assert!(activations_root(&hashes, 36).is_err());
    }
}
