//! Binary Merkle trees over 32-byte leaves, hashed with keccak256 (Ethereum's, not
//! NIST SHA3-256), so that the on-chain verifier recomputes every root bit for bit.
//!
//! # The tree
//!
//! - A **leaf** is 32 raw bytes. Its hash is `keccak256(leaf)` (a 32-byte preimage).
//! - An **internal node** is `keccak256(left || right)` (a 64-byte preimage). Leaf and
//!   node preimages differ in length, so a leaf can never be passed off as a node or the
//!   other way round (no second preimages across levels).
//! - The leaf count `n` is padded to the **width** `2^depth`, the next power of two
//!   `>= max(n, 1)`, with all-zero leaves. A subtree of height `d` made only of padding
//!   hashes to the **zero hash** `Z[d]`:
//!   `Z[0] = keccak256(0x00 * 32)`, `Z[d] = keccak256(Z[d-1] || Z[d-1])`
//!   ([`zero_hash`]). A real all-zero leaf hashes to `Z[0]` too: the padded tree is
//!   exactly the tree over the padded leaves.
//! - The **root** of a one-leaf tree (`depth = 0`) is `keccak256(leaf)`; of an empty leaf
//!   list, `Z[0]` (one zero leaf).
//! - **Levels** count from the bottom: level 0 holds the leaf hashes, level `depth` the
//!   root. Node `(level, index)` covers leaves `[index * 2^level, (index + 1) * 2^level)`.
//!
//! # Proofs
//!
//! A [`MerkleProof`] for one node lists its siblings bottom-up; bit `k` of `index` says
//! whether the running hash is a right child (`1`: `keccak256(sibling || hash)`) or a left
//! child (`0`: `keccak256(hash || sibling)`) at step `k`. A [`RangeProof`] for leaves
//! `[start, end)` lists only the boundary siblings, see its documentation for the order.
//! Both travel as JSON, hashes as `0x`-prefixed lower-case hex strings. Several disjoint
//! ranges of one tree share one list of siblings ([`MerkleTree::prove_ranges`],
//! [`ranges_root`]): each sibling is listed once, however many ranges it serves.
//!
//! A proof fixes its depth by its length; a verifier must compare that depth with the
//! one it expects (the tensor's shape, the program's slot count), since the level of a
//! revealed internal node is `tree depth - siblings.len()`.
//!
//! # Byte strings
//!
//! [`chunk_leaves`] cuts a byte string into 32-byte leaves, the last zero-padded; the
//! empty string gives one all-zero leaf.

use crate::error::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha3::{Digest, Keccak256};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// The largest tree depth supported (`2^64` leaves): the size of the zero-hash table.
pub const MAX_DEPTH: u32 = 64;

/// Subtrees of at most `2^SEQUENTIAL_DEPTH` leaves are hashed on one thread; larger ones
/// are split between rayon workers.
const SEQUENTIAL_DEPTH: u32 = 11;

/// Levels with at least this many nodes are hashed in parallel when building a tree.
const PARALLEL_NODES: usize = 1 << 12;

/// A 32-byte hash: a Merkle root or node, a tensor hash, an execution state.
///
/// Shown, parsed and serialized as a `0x`-prefixed hex string of 64 digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct H256(pub [u8; 32]);

impl H256 {
    /// The all-zero value (also the leaf of a slot or tensor that does not exist yet).
    pub const ZERO: Self = Self([0; 32]);

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether all bytes are zero.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }

    /// Reads 32 bytes from a slice, or fails if its length is not 32.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| Error::Decode(format!("a 32-byte hash, got {} bytes", bytes.len())))
    }
}

impl From<[u8; 32]> for H256 {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<H256> for [u8; 32] {
    fn from(h: H256) -> Self {
        h.0
    }
}

impl AsRef<[u8]> for H256 {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for H256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Cannot fail: the buffer is exactly twice the input.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str("0x")?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for H256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for H256 {
    type Err = Error;

    /// Parses `0x` followed by exactly 64 hex digits (either case).
    fn from_str(s: &str) -> Result<Self> {
        let digits = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .ok_or_else(|| Error::Decode(format!("hash {s:?} lacks the 0x prefix")))?;
        if digits.len() != 64 {
            return Err(Error::Decode(format!(
                "hash {s:?} has {} hex digits, expected 64",
                digits.len()
            )));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(digits, &mut out)
            .map_err(|e| Error::Decode(format!("hash {s:?}: {e}")))?;
        Ok(Self(out))
    }
}

/// In human-readable formats (JSON, TOML) a `0x`-prefixed hex string; in binary ones (the
/// databases' postcard) the 32 bytes themselves.
impl Serialize for H256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

/// Reads what [`Serialize`] writes. A binary format also reads the hex string that earlier
/// builds wrote there (postcard encodes a string and bytes alike, a length and then the
/// bytes: 32 of them are the hash, 66 its `0x` hex), so stored records of either kind read.
impl<'de> Deserialize<'de> for H256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = H256;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 32-byte hash, as 32 bytes or 0x-prefixed hex")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<H256, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> std::result::Result<H256, E> {
                match <[u8; 32]>::try_from(b) {
                    Ok(raw) => Ok(H256(raw)),
                    Err(_) => std::str::from_utf8(b)
                        .map_err(|_| E::invalid_length(b.len(), &self))
                        .and_then(|s| self.visit_str(s)),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<H256, A::Error> {
                let mut raw = [0u8; 32];
                for (i, b) in raw.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(H256(raw))
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(Visitor)
        } else {
            deserializer.deserialize_bytes(Visitor)
        }
    }
}

/// Ethereum's keccak256 of `bytes`.
pub fn keccak256(bytes: &[u8]) -> H256 {
    H256(Keccak256::digest(bytes).into())
}

/// The hash of a leaf: `keccak256(leaf)`.
#[inline]
pub fn leaf_hash(leaf: &[u8; 32]) -> H256 {
    keccak256(leaf)
}

/// The hash of an internal node: `keccak256(left || right)`.
#[inline]
pub fn hash_pair(left: &H256, right: &H256) -> H256 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&left.0);
    buf[32..].copy_from_slice(&right.0);
    keccak256(&buf)
}

/// The hash of a subtree of height `depth` whose leaves are all zero:
/// `Z[0] = keccak256(0x00 * 32)`, `Z[d] = keccak256(Z[d-1] || Z[d-1])`.
///
/// # Panics
/// If `depth > MAX_DEPTH`.
pub fn zero_hash(depth: u32) -> H256 {
    zero_hashes()[depth as usize]
}

/// The table `Z[0..=MAX_DEPTH]`, built on first use.
fn zero_hashes() -> &'static [H256; MAX_DEPTH as usize + 1] {
    static TABLE: OnceLock<[H256; MAX_DEPTH as usize + 1]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [H256::ZERO; MAX_DEPTH as usize + 1];
        table[0] = leaf_hash(&[0; 32]);
        for d in 1..table.len() {
            table[d] = hash_pair(&table[d - 1], &table[d - 1]);
        }
        table
    })
}

/// The depth of a tree with `n` leaves: the smallest `d` with `2^d >= max(n, 1)`.
pub fn depth_for(n: usize) -> u32 {
    if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

/// Cuts `bytes` into 32-byte leaves, the last one zero-padded. The empty string gives one
/// all-zero leaf, so every byte string has at least one leaf.
pub fn chunk_leaves(bytes: &[u8]) -> Vec<[u8; 32]> {
    if bytes.is_empty() {
        return vec![[0; 32]];
    }
    bytes.chunks(32).map(chunk_leaf).collect()
}

/// One chunk of at most 32 bytes as a zero-padded leaf.
#[inline]
fn chunk_leaf(chunk: &[u8]) -> [u8; 32] {
    let mut leaf = [0u8; 32];
    leaf[..chunk.len()].copy_from_slice(chunk);
    leaf
}

/// The Merkle root of `leaves` (padded as the module docs say) without keeping the tree:
/// the hot path. Equal to `MerkleTree::new(leaves.to_vec()).root()`.
pub fn merkle_root(leaves: &[[u8; 32]]) -> H256 {
    merkle_root_with(leaves.len(), |i| leaves[i])
}

/// The Merkle root of [`chunk_leaves`]`(bytes)`, without copying the bytes into leaves.
pub fn chunked_root(bytes: &[u8]) -> H256 {
    let n = bytes.len().div_ceil(32);
    merkle_root_with(n, |i| {
        chunk_leaf(&bytes[i * 32..bytes.len().min(i * 32 + 32)])
    })
}

/// The Merkle root of the `n` leaves `leaf(0), ..., leaf(n - 1)`, padded as the module
/// docs say (`n = 0` gives `Z[0]`). `leaf` is called once per index, from rayon workers.
pub fn merkle_root_with<F>(n: usize, leaf: F) -> H256
where
    F: Fn(usize) -> [u8; 32] + Sync,
{
    padded_root(n, depth_for(n), &leaf)
}

/// The root of a tree of `depth` whose leaves are `leaf(i)` for `i < n` and zero-hash
/// padding beyond (requires `n <= 2^depth`).
pub(crate) fn padded_root<F>(n: usize, depth: u32, leaf: &F) -> H256
where
    F: Fn(usize) -> [u8; 32] + Sync,
{
    subtree_root(0, depth, n, leaf)
}

/// The root of the subtree of height `depth` whose leftmost leaf is `start`.
fn subtree_root<F>(start: usize, depth: u32, n: usize, leaf: &F) -> H256
where
    F: Fn(usize) -> [u8; 32] + Sync,
{
    if start >= n {
        return zero_hash(depth);
    }
    if depth <= SEQUENTIAL_DEPTH {
        return fold_subtree(start, depth, n, leaf);
    }
    let half = 1usize << (depth - 1);
    let (left, right) = rayon::join(
        || subtree_root(start, depth - 1, n, leaf),
        || subtree_root(start + half, depth - 1, n, leaf),
    );
    hash_pair(&left, &right)
}

/// One thread's subtree (`start < n`), level by level: each level's hashes are computed
/// many at once ([`crate::keccak`]), an odd level closed with the zero hash on its right.
fn fold_subtree<F>(start: usize, depth: u32, n: usize, leaf: &F) -> H256
where
    F: Fn(usize) -> [u8; 32],
{
    let end = n.min(start + (1usize << depth));
    let leaves: Vec<[u8; 32]> = (start..end).map(leaf).collect();
    let mut level = vec![H256::ZERO; leaves.len()];
    crate::keccak::hash_32_many(&leaves, &mut level);
    let mut next = Vec::with_capacity(level.len().div_ceil(2));
    for l in 0..depth {
        if level.len() == 1 {
            // Only zero subtrees to the right from here up.
            return (l..depth).fold(level[0], |h, l| hash_pair(&h, &zero_hash(l)));
        }
        if level.len() % 2 == 1 {
            level.push(zero_hash(l));
        }
        next.clear();
        next.resize(level.len() / 2, H256::ZERO);
        crate::keccak::hash_pairs(&level, &mut next);
        std::mem::swap(&mut level, &mut next);
    }
    level[0]
}

/// A Merkle tree that keeps every level, for proofs. Only nodes covering at least one
/// real leaf are stored; padding nodes are answered from the zero-hash table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    leaf_count: usize,
    depth: u32,
    /// `levels[l]` holds nodes `0..ceil(leaf_count / 2^l)` of level `l`.
    levels: Vec<Vec<H256>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves` (padded as the module docs say).
    pub fn new(leaves: Vec<[u8; 32]>) -> Self {
        Self::new_with(leaves.len(), |i| leaves[i])
    }

    /// Builds the tree over `n` leaves given by `leaf(i)` (called from rayon workers),
    /// without materializing the leaves.
    pub fn new_with<F>(n: usize, leaf: F) -> Self
    where
        F: Fn(usize) -> [u8; 32] + Sync,
    {
        const CHUNK: usize = 1024;
        let mut hashes = vec![H256::ZERO; n];
        let hash_chunk = |c: usize, out: &mut [H256]| {
            let leaves: Vec<[u8; 32]> = (c * CHUNK..c * CHUNK + out.len()).map(&leaf).collect();
            crate::keccak::hash_32_many(&leaves, out);
        };
        if n >= PARALLEL_NODES {
            hashes
                .par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, out)| hash_chunk(c, out));
        } else {
            hashes
                .chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, out)| hash_chunk(c, out));
        }
        Self::from_leaf_hashes(hashes)
    }

    /// Builds the tree whose level 0 (the leaf hashes) is `leaf_hashes`.
    pub fn from_leaf_hashes(leaf_hashes: Vec<H256>) -> Self {
        const CHUNK: usize = 512;
        let leaf_count = leaf_hashes.len();
        let depth = depth_for(leaf_count);
        let mut levels = Vec::with_capacity(depth as usize + 1);
        levels.push(leaf_hashes);
        for level in 0..depth {
            let below = &levels[level as usize];
            let full = below.len() / 2;
            let mut above = vec![H256::ZERO; below.len().div_ceil(2)];
            let (pairs, odd) = above.split_at_mut(full);
            if below.len() >= PARALLEL_NODES {
                pairs
                    .par_chunks_mut(CHUNK)
                    .zip(below[..2 * full].par_chunks(2 * CHUNK))
                    .for_each(|(out, nodes)| crate::keccak::hash_pairs(nodes, out));
            } else {
                crate::keccak::hash_pairs(&below[..2 * full], pairs);
            }
            if let Some(last) = odd.first_mut() {
                *last = hash_pair(&below[2 * full], &zero_hash(level));
            }
            levels.push(above);
        }
        Self {
            leaf_count,
            depth,
            levels,
        }
    }

    /// The root.
    pub fn root(&self) -> H256 {
        self.levels[self.depth as usize]
            .first()
            .copied()
            .unwrap_or_else(|| zero_hash(self.depth))
    }

    /// Levels above the leaves: 0 for a one-leaf tree.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The padded leaf count `2^depth`.
    pub fn width(&self) -> usize {
        1 << self.depth
    }

    /// The number of real (unpadded) leaves.
    pub fn leaf_count(&self) -> usize {
        self.leaf_count
    }

    /// The leaf hashes (level 0) of the real leaves.
    pub fn leaf_hashes(&self) -> &[H256] {
        &self.levels[0]
    }

    /// Node `index` of `level` (0 = leaf hashes, `depth` = root); padding nodes are
    /// zero hashes. Fails if the node does not exist.
    pub fn node(&self, level: u32, index: usize) -> Result<H256> {
        if level > self.depth || index >= 1 << (self.depth - level) {
            return Err(Error::Param(format!(
                "no node ({level}, {index}) in a tree of depth {}",
                self.depth
            )));
        }
        Ok(self.node_unchecked(level, index))
    }

    /// Node `(level, index)`, which must lie inside the padded tree.
    fn node_unchecked(&self, level: u32, index: usize) -> H256 {
        self.levels[level as usize]
            .get(index)
            .copied()
            .unwrap_or_else(|| zero_hash(level))
    }

    /// The membership proof of leaf `index` (padding leaves included, `index < width`).
    pub fn prove(&self, index: usize) -> Result<MerkleProof> {
        self.prove_node(0, index)
    }

    /// The membership proof of node `(level, index)`: its siblings from `level` up.
    pub fn prove_node(&self, level: u32, index: usize) -> Result<MerkleProof> {
        self.node(level, index)?;
        let siblings = (level..self.depth)
            .map(|l| self.node_unchecked(l, (index >> (l - level)) ^ 1))
            .collect();
        Ok(MerkleProof {
            index: index as u64,
            siblings,
        })
    }

    /// The proof of the contiguous leaves `[start, end)` (non-empty, `end <= width`).
    pub fn prove_range(&self, start: usize, end: usize) -> Result<RangeProof> {
        if start >= end || end > self.width() {
            return Err(Error::Param(format!(
                "leaf range [{start}, {end}) is empty or outside a tree of width {}",
                self.width()
            )));
        }
        let mut siblings = Vec::new();
        let (mut lo, mut hi) = (start, end);
        for level in 0..self.depth {
            if lo & 1 == 1 {
                siblings.push(self.node_unchecked(level, lo - 1));
            }
            if hi & 1 == 1 {
                siblings.push(self.node_unchecked(level, hi));
            }
            lo >>= 1;
            hi = hi.div_ceil(2);
        }
        Ok(RangeProof {
            start: start as u64,
            end: end as u64,
            depth: self.depth,
            siblings,
        })
    }
}

/// The intervals of known nodes `[lo, hi)` of one level, in order and disjoint; touching
/// ones are merged. For each, its left neighbour is needed if `lo` is odd, its right one if
/// `hi` is odd (never known: merged intervals leave a gap of at least one node).
fn merged(intervals: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (lo, hi) in intervals {
        match out.last_mut() {
            Some(last) if last.1 == lo => last.1 = hi,
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Checks ranges `[start, end)` for [`MerkleTree::prove_ranges`] and [`ranges_root`]:
/// at least one, each non-empty, in increasing order without overlap, inside `2^depth`.
fn check_ranges(depth: u32, ranges: &[(u64, u64)]) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::Proof(format!(
            "tree depth {depth} is over {MAX_DEPTH}"
        )));
    }
    if ranges.is_empty() {
        return Err(Error::Proof("no leaf range to prove".into()));
    }
    let mut prev_end = 0;
    for (k, &(start, end)) in ranges.iter().enumerate() {
        if start >= end || (k > 0 && start < prev_end) || u128::from(end) > 1u128 << depth {
            return Err(Error::Proof(format!(
                "leaf range {k} [{start}, {end}) is empty, out of order or outside a tree of depth {depth}"
            )));
        }
        prev_end = end;
    }
    Ok(())
}

impl MerkleTree {
    /// The shared siblings of several leaf ranges (see [`ranges_root`] for the order): the
    /// ranges are non-empty, increasing and non-overlapping (adjacent ones act as one).
    pub fn prove_ranges(&self, ranges: &[std::ops::Range<usize>]) -> Result<Vec<H256>> {
        let bounds: Vec<(u64, u64)> = ranges
            .iter()
            .map(|r| (r.start as u64, r.end as u64))
            .collect();
        check_ranges(self.depth, &bounds)?;
        if bounds.last().is_some_and(|r| r.1 > self.width() as u64) {
            return Err(Error::Param(format!(
                "leaf ranges reach past a tree of width {}",
                self.width()
            )));
        }
        let mut known = merged(bounds);
        let mut siblings = Vec::new();
        for level in 0..self.depth {
            for &(lo, hi) in &known {
                if lo & 1 == 1 {
                    siblings.push(self.node_unchecked(level, lo as usize - 1));
                }
                if hi & 1 == 1 {
                    siblings.push(self.node_unchecked(level, hi as usize));
                }
            }
            known = merged(known.iter().map(|&(lo, hi)| (lo >> 1, hi.div_ceil(2))));
        }
        Ok(siblings)
    }
}

/// The root of a tree of `depth` levels implied by several ranges of its leaves, each
/// `(start, leaves)` standing for leaves `[start, start + leaves.len())`, and their shared
/// `siblings`.
///
/// The ranges are non-empty, increasing and non-overlapping (adjacent ones act as one
/// range). Level by level from the bottom, the known nodes form disjoint intervals
/// `[lo, hi)` (touching intervals merged); for each interval from left to right, the left
/// neighbour is the next sibling if `lo` is odd, then the right neighbour if `hi` is odd;
/// the nodes pair up into the next level (`lo / 2`, `ceil(hi / 2)`). With one range this
/// is exactly the [`RangeProof`] order. Every sibling must be used.
pub fn ranges_root(depth: u32, ranges: &[(u64, &[[u8; 32]])], siblings: &[H256]) -> Result<H256> {
    let bounds: Vec<(u64, u64)> = ranges
        .iter()
        .map(|(start, leaves)| (*start, start.saturating_add(leaves.len() as u64)))
        .collect();
    check_ranges(depth, &bounds)?;
    let mut next_sibling = siblings.iter();
    let mut sibling = || {
        next_sibling
            .next()
            .copied()
            .ok_or_else(|| Error::Proof("multi-range proof too short".into()))
    };
    // Intervals of known nodes with their hashes, touching ones merged.
    let mut known: Vec<(u64, Vec<H256>)> = Vec::new();
    for (start, leaves) in ranges {
        let hashes = leaves.iter().map(leaf_hash);
        match known.last_mut() {
            Some((lo, nodes)) if *lo + nodes.len() as u64 == *start => nodes.extend(hashes),
            _ => known.push((*start, hashes.collect())),
        }
    }
    for _ in 0..depth {
        let mut up: Vec<(u64, Vec<H256>)> = Vec::with_capacity(known.len());
        for (lo, nodes) in known {
            let hi = lo + nodes.len() as u64;
            let mut row = Vec::with_capacity(nodes.len() + 2);
            if lo & 1 == 1 {
                row.push(sibling()?);
            }
            row.extend(nodes);
            if hi & 1 == 1 {
                row.push(sibling()?);
            }
            let parents = row.chunks_exact(2).map(|c| hash_pair(&c[0], &c[1]));
            match up.last_mut() {
                Some((plo, pnodes)) if *plo + pnodes.len() as u64 == lo >> 1 => {
                    pnodes.extend(parents)
                }
                _ => up.push((lo >> 1, parents.collect())),
            }
        }
        known = up;
    }
    if next_sibling.next().is_some() {
        return Err(Error::Proof("multi-range proof has unused siblings".into()));
    }
    match known.as_slice() {
        [(0, nodes)] if nodes.len() == 1 => Ok(nodes[0]),
        _ => Err(Error::Proof("leaf ranges do not meet in one root".into())),
    }
}

/// The membership proof of one leaf or node: its siblings, bottom-up.
///
/// Starting from `hash` (the leaf hash `keccak256(leaf)`, or the revealed node), for
/// `k = 0, 1, ...`: if bit `k` of `index` is 0, `hash = keccak256(hash || siblings[k])`,
/// else `hash = keccak256(siblings[k] || hash)`. The result must equal the root, and
/// `index < 2^siblings.len()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleProof {
    /// Position of the proven node within its level.
    pub index: u64,
    /// Sibling hashes from the proven node's level up to just below the root.
    pub siblings: Vec<H256>,
}

impl MerkleProof {
    /// Levels between the proven node and the root (`siblings.len()`).
    pub fn height(&self) -> u32 {
        self.siblings.len() as u32
    }

    /// The root implied by `leaf` at `index` (no checks; see [`MerkleProof::verify`]).
    pub fn compute_root(&self, leaf: &[u8; 32]) -> H256 {
        self.compute_root_from_node(leaf_hash(leaf))
    }

    /// The root implied by the already-hashed node `node` at `index` of its level.
    pub fn compute_root_from_node(&self, node: H256) -> H256 {
        compute_root_from_node(self.index, node, &self.siblings)
    }

    /// Checks that `leaf` is leaf `index` of the tree with `root`.
    pub fn verify(&self, root: H256, leaf: &[u8; 32]) -> Result<()> {
        self.verify_node(root, leaf_hash(leaf))
    }

    /// Checks that `node` is node `index` of level `depth - siblings.len()` of the tree
    /// with `root`; the caller checks the height against the level it expects.
    pub fn verify_node(&self, root: H256, node: H256) -> Result<()> {
        self.check_shape()?;
        let got = self.compute_root_from_node(node);
        if got != root {
            return Err(Error::Proof(format!(
                "node {} at index {} gives root {got}, expected {root}",
                node, self.index
            )));
        }
        Ok(())
    }

    /// Like [`MerkleProof::verify_node`], also checking the position: the node sits at
    /// `level` of a tree of `depth`.
    pub fn verify_node_at(&self, root: H256, depth: u32, level: u32, node: H256) -> Result<()> {
        if level > depth || self.height() != depth - level {
            return Err(Error::Proof(format!(
                "a proof of height {} cannot place a node at level {level} of depth {depth}",
                self.height()
            )));
        }
        self.verify_node(root, node)
    }

    /// At most [`MAX_DEPTH`] siblings and an index that fits in them.
    fn check_shape(&self) -> Result<()> {
        let height = self.siblings.len();
        if height > MAX_DEPTH as usize || (height < 64 && self.index >> height != 0) {
            return Err(Error::Proof(format!(
                "index {} does not fit a proof with {height} siblings",
                self.index
            )));
        }
        Ok(())
    }
}

/// The root implied by `node` at position `index` of its level and its bottom-up
/// `siblings` (the rule of [`MerkleProof`]; no checks).
pub fn compute_root_from_node(index: u64, node: H256, siblings: &[H256]) -> H256 {
    let mut hash = node;
    for (k, sibling) in siblings.iter().enumerate() {
        hash = if k < 64 && index >> k & 1 == 1 {
            hash_pair(sibling, &hash)
        } else {
            hash_pair(&hash, sibling)
        };
    }
    hash
}

/// The proof of the contiguous leaves `[start, end)` of a tree of `depth`.
///
/// `siblings` holds only the boundary nodes that the leaves cannot produce, in this
/// order. Let `lo = start`, `hi = end` (exclusive) be the known range at level 0. For each
/// level `l = 0, 1, ..., depth - 1`:
/// 1. if `lo` is odd, the left neighbour node `(l, lo - 1)` comes next in `siblings`;
/// 2. then, if `hi` is odd, the right neighbour node `(l, hi)` comes next;
/// 3. the known nodes `[lo & !1, hi + (hi & 1))` are paired left to right into level
///    `l + 1`: `lo = lo / 2`, `hi = ceil(hi / 2)`.
///
/// After level `depth - 1` one node remains: the root. Padding nodes are listed like any
/// other (as zero hashes), so the verifier needs no leaf count. Every sibling must be
/// used: a proof with extra or missing siblings fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeProof {
    /// First leaf of the range.
    pub start: u64,
    /// One past the last leaf of the range.
    pub end: u64,
    /// Depth of the tree (levels above the leaves).
    pub depth: u32,
    /// Boundary siblings, level by level from the bottom, left before right.
    pub siblings: Vec<H256>,
}

impl RangeProof {
    /// The root implied by `leaves` (the `end - start` leaves of the range); fails if the
    /// range, the leaf count or the sibling count do not fit the proof.
    pub fn compute_root(&self, leaves: &[[u8; 32]]) -> Result<H256> {
        self.check_range(leaves.len())?;
        self.compute_root_from_hashes(leaves.iter().map(leaf_hash).collect())
    }

    /// Checks that `leaves` are leaves `[start, end)` of the tree with `root`.
    pub fn verify(&self, root: H256, leaves: &[[u8; 32]]) -> Result<()> {
        let got = self.compute_root(leaves)?;
        if got != root {
            return Err(Error::Proof(format!(
                "leaves [{}, {}) give root {got}, expected {root}",
                self.start, self.end
            )));
        }
        Ok(())
    }

    fn check_range(&self, leaves: usize) -> Result<()> {
        let fits = self.depth <= MAX_DEPTH
            && self.start < self.end
            && u128::from(self.end) <= 1u128 << self.depth;
        if !fits {
            return Err(Error::Proof(format!(
                "leaf range [{}, {}) is empty or outside a tree of depth {}",
                self.start, self.end, self.depth
            )));
        }
        if leaves as u64 != self.end - self.start {
            return Err(Error::Proof(format!(
                "{leaves} leaves for the range [{}, {})",
                self.start, self.end
            )));
        }
        Ok(())
    }

    fn compute_root_from_hashes(&self, mut known: Vec<H256>) -> Result<H256> {
        let mut siblings = self.siblings.iter();
        let mut next = || {
            siblings
                .next()
                .copied()
                .ok_or_else(|| Error::Proof("range proof too short".into()))
        };
        let (mut lo, mut hi) = (self.start, self.end);
        for _ in 0..self.depth {
            let mut row = Vec::with_capacity(known.len() + 2);
            if lo & 1 == 1 {
                row.push(next()?);
            }
            row.append(&mut known);
            if hi & 1 == 1 {
                row.push(next()?);
            }
            known = row
                .chunks_exact(2)
                .map(|c| hash_pair(&c[0], &c[1]))
                .collect();
            lo >>= 1;
            hi = hi.div_ceil(2);
        }
        if siblings.next().is_some() {
            return Err(Error::Proof("range proof has unused siblings".into()));
        }
        Ok(known[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| chunk_leaf(&(i as u64 + 1).to_be_bytes()))
            .collect()
    }

    #[test]
    fn zero_hash_zero_is_keccak_of_32_zero_bytes() {
        // keccak256(bytes32(0)), as any Ethereum tool prints it.
        assert_eq!(
            zero_hash(0).to_string(),
            "0x290decd9548b62a8d60345a988386fc84ba6bc95484008f6362f93160ef3e563"
        );
        assert_eq!(zero_hash(1), hash_pair(&zero_hash(0), &zero_hash(0)));
    }

    #[test]
    fn keccak_of_empty_input_is_ethereums() {
        assert_eq!(
            keccak256(b"").to_string(),
            "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn depth_for_small_counts() {
        let depths: Vec<u32> = [0, 1, 2, 3, 4, 5, 8, 9]
            .iter()
            .map(|&n| depth_for(n))
            .collect();
        assert_eq!(depths, [0, 0, 1, 2, 2, 3, 3, 4]);
    }

    #[test]
    fn fast_root_matches_tree_across_the_parallel_cutoff() {
        for n in [0, 1, 2, 3, 7, 8, 9, 2047, 2048, 2049, 4097, 5000] {
            let l = leaves(n);
            assert_eq!(
                merkle_root(&l),
                MerkleTree::new(l.clone()).root(),
                "n = {n}"
            );
        }
    }

    #[test]
    fn padding_is_zero_leaves() {
        let mut l = leaves(5);
        let root = merkle_root(&l);
        l.resize(8, [0; 32]);
        assert_eq!(merkle_root(&l), root);
    }

    #[test]
    fn one_leaf_root_is_its_hash() {
        let l = leaves(1);
        assert_eq!(merkle_root(&l), keccak256(&l[0]));
        assert_eq!(MerkleTree::new(l.clone()).depth(), 0);
        assert_eq!(merkle_root(&[]), zero_hash(0));
    }

    #[test]
    fn chunked_root_matches_chunk_leaves() {
        for len in [0, 1, 31, 32, 33, 64, 65, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert_eq!(
                chunked_root(&bytes),
                merkle_root(&chunk_leaves(&bytes)),
                "len = {len}"
            );
        }
        assert_eq!(chunk_leaves(&[]), vec![[0; 32]]);
    }

    #[test]
    fn nodes_and_node_proofs() {
        let tree = MerkleTree::new(leaves(5));
        assert_eq!(tree.width(), 8);
        assert_eq!(
            tree.node(2, 1).unwrap(),
            hash_pair(&tree.node(1, 2).unwrap(), &zero_hash(1))
        );
        assert_eq!(tree.node(1, 3).unwrap(), zero_hash(1));
        assert!(tree.node(1, 4).is_err());
        assert!(tree.node(4, 0).is_err());
        for level in 0..=3 {
            for index in 0..(8 >> level) {
                let proof = tree.prove_node(level, index).unwrap();
                let node = tree.node(level, index).unwrap();
                proof.verify_node_at(tree.root(), 3, level, node).unwrap();
                assert!(proof.verify_node_at(tree.root(), 4, level, node).is_err());
            }
        }
    }

    #[test]
    fn h256_text_and_json() {
        let h = keccak256(b"x");
        let s = h.to_string();
        assert_eq!(s.len(), 66);
        assert_eq!(s.parse::<H256>().unwrap(), h);
        assert_eq!(
            s.to_uppercase()
                .replacen("0X", "0x", 1)
                .parse::<H256>()
                .unwrap(),
            h
        );
        assert_eq!(format!("{h:?}"), s);
        assert!(s[2..].parse::<H256>().is_err());
        assert!("0x12".parse::<H256>().is_err());
        assert!(format!("0x{}", "g".repeat(64)).parse::<H256>().is_err());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<H256>(&json).unwrap(), h);
        assert_eq!(H256::default(), H256::ZERO);
    }

    /// Random sets of ranges in trees of every small size: the shared proof gives the root,
    /// equals the range proof for one range, lists each sibling once, and fails when a
    /// leaf, a sibling or the sibling count is wrong.
    #[test]
    fn multi_range_proofs() {
        let mut rng = crate::demo::SplitMix64(7);
        for n in 1..=40usize {
            let all = leaves(n);
            let tree = MerkleTree::new(all.clone());
            for _ in 0..20 {
                // Random increasing, non-overlapping ranges (adjacent ones allowed).
                let mut ranges = Vec::new();
                let mut at = rng.next_u64() as usize % n;
                while at < n {
                    let end = at + 1 + rng.next_u64() as usize % 3;
                    ranges.push(at..end.min(n));
                    at = end.min(n) + rng.next_u64() as usize % 4;
                }
                let siblings = tree.prove_ranges(&ranges).unwrap();
                let parts: Vec<(u64, &[[u8; 32]])> = ranges
                    .iter()
                    .map(|r| (r.start as u64, &all[r.clone()]))
                    .collect();
                assert_eq!(
                    ranges_root(tree.depth(), &parts, &siblings).unwrap(),
                    tree.root()
                );
                // No sibling twice: at most one per level per range.
                assert!(siblings.len() <= 2 * ranges.len() * tree.depth() as usize);
                if let [r] = ranges.as_slice() {
                    let single = tree.prove_range(r.start, r.end).unwrap();
                    assert_eq!(siblings, single.siblings);
                }
                if let Some(first) = siblings.first() {
                    let mut short = siblings.clone();
                    short.pop();
                    assert!(ranges_root(tree.depth(), &parts, &short).is_err());
                    let mut long = siblings.clone();
                    long.push(*first);
                    assert!(ranges_root(tree.depth(), &parts, &long).is_err());
                    let mut bad = siblings.clone();
                    bad[0].0[0] ^= 1;
                    assert_ne!(
                        ranges_root(tree.depth(), &parts, &bad).ok(),
                        Some(tree.root())
                    );
                }
                let mut tampered: Vec<[u8; 32]> = all[ranges[0].clone()].to_vec();
                tampered[0][31] ^= 1;
                let mut bad_parts = parts.clone();
                bad_parts[0].1 = &tampered;
                assert_ne!(
                    ranges_root(tree.depth(), &bad_parts, &siblings).ok(),
                    Some(tree.root())
                );
            }
        }
    }

    /// Ranges out of order, overlapping, empty or past the width are refused.
    #[test]
    fn multi_range_proofs_refuse_bad_ranges() {
        let all = leaves(8);
        let tree = MerkleTree::new(all.clone());
        assert!(tree.prove_ranges(&[]).is_err());
        assert!(tree.prove_ranges(&[3..5, 4..6]).is_err());
        assert!(tree.prove_ranges(&[4..6, 0..2]).is_err());
        assert!(tree.prove_ranges(std::slice::from_ref(&(2..2))).is_err());
        assert!(tree.prove_ranges(std::slice::from_ref(&(6..9))).is_err());
        let siblings = tree.prove_ranges(&[0..2, 4..6]).unwrap();
        let swapped = [(4u64, &all[4..6]), (0u64, &all[0..2])];
        assert!(ranges_root(3, &swapped, &siblings).is_err());
        assert!(ranges_root(3, &[], &siblings).is_err());
        assert!(ranges_root(2, &[(0, &all[0..2]), (4, &all[4..6])], &siblings).is_err());
    }

    #[test]
    fn range_proof_sibling_order() {
        // Depth 3, leaves [1, 5): level 0 knows [1, 5) and needs node 0 (left) then node 5
        // (right); level 1 knows [0, 3) and needs node 3 (right); level 2 knows [0, 2).
        let tree = MerkleTree::new(leaves(8));
        let proof = tree.prove_range(1, 5).unwrap();
        let expected = vec![
            tree.node(0, 0).unwrap(),
            tree.node(0, 5).unwrap(),
            tree.node(1, 3).unwrap(),
        ];
        assert_eq!(proof.siblings, expected);
        proof.verify(tree.root(), &leaves(8)[1..5]).unwrap();
        // [1, 6): leaf 5 is a right child whose left neighbour is in the range.
        let proof = tree.prove_range(1, 6).unwrap();
        assert_eq!(
            proof.siblings,
            vec![tree.node(0, 0).unwrap(), tree.node(1, 3).unwrap()]
        );
        proof.verify(tree.root(), &leaves(8)[1..6]).unwrap();
    }
}
