// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {NotPowerOfTwo} from "../Errors.sol";

/// @title LibMerkle
/// @notice The binary Merkle tree of the op spec (`docs/ops.md`, "Commitments"), as
///         `inference/src/merkle.rs` builds it: 32-byte leaves, leaf hash `keccak256(leaf)`,
///         node `keccak256(left || right)`, padding with all-zero subtrees
///         `Z[0] = keccak256(0^32)`, `Z[d] = keccak256(Z[d-1] || Z[d-1])`.
/// @dev Proofs list siblings bottom-up; bit `k` of the index set means the running hash is
///      the right child at level `k`. Leaves are always exactly 32 bytes and nodes 64, so a
///      node can never pass for a leaf; callers fix the depth of every tree they check.
library LibMerkle {
    /// @notice The hash of a 32-byte leaf.
    function hashLeaf(bytes32 leaf_) internal pure returns (bytes32 hash_) {
        assembly ("memory-safe") {
            mstore(0x00, leaf_)
            hash_ := keccak256(0x00, 0x20)
        }
    }

    /// @notice The hash of an internal node.
    function hashPair(bytes32 left_, bytes32 right_) internal pure returns (bytes32 hash_) {
        assembly ("memory-safe") {
            mstore(0x00, left_)
            mstore(0x20, right_)
            hash_ := keccak256(0x00, 0x40)
        }
    }

    /// @notice The hash of an all-zero subtree of height `depth_`.
    function zeroHash(uint256 depth_) internal pure returns (bytes32 hash_) {
        hash_ = hashLeaf(bytes32(0));
        for (uint256 d = 0; d < depth_; ++d) {
            hash_ = hashPair(hash_, hash_);
        }
    }

    /// @notice The root implied by `node_` at position `index_` of its level and its
    ///         bottom-up `siblings_`.
    function rootFromNode(uint256 index_, bytes32 node_, bytes32[] calldata siblings_)
        internal
        pure
        returns (bytes32 root_)
    {
        root_ = node_;
        uint256 n = siblings_.length;
        for (uint256 k = 0; k < n; ++k) {
            root_ = (index_ >> k) & 1 == 1 ? hashPair(siblings_[k], root_) : hashPair(root_, siblings_[k]);
        }
    }

    /// @notice The root implied by leaf `leaf_` at `index_` and its bottom-up `siblings_`.
    function rootFromLeaf(uint256 index_, bytes32 leaf_, bytes32[] calldata siblings_)
        internal
        pure
        returns (bytes32 root_)
    {
        root_ = rootFromNode(index_, hashLeaf(leaf_), siblings_);
    }

    /// @notice The depth of a tree of `count_` leaves: `ceil(log2(count_))`, 0 for 0 or 1 leaf.
    function depthFor(uint256 count_) internal pure returns (uint256 depth_) {
        // `count_ - 1` cannot underflow: guarded by `count_ > 1`; the loop runs at most 256 times.
        if (count_ > 1) {
            uint256 v = count_ - 1;
            while (v != 0) {
                ++depth_;
                v >>= 1;
            }
        }
    }

    /// @notice Whether `leaf_` is leaf `index_` of the tree of depth `depth_` with `root_`: the
    ///         proof must have exactly `depth_` siblings and the index must fit in them.
    function verifyLeaf(bytes32 root_, uint256 depth_, uint256 index_, bytes32 leaf_, bytes32[] calldata siblings_)
        internal
        pure
        returns (bool ok_)
    {
        if (siblings_.length != depth_ || (depth_ < 256 && index_ >> depth_ != 0)) return false;
        ok_ = rootFromLeaf(index_, leaf_, siblings_) == root_;
    }

    /// @notice The root of a tree of depth `depth_` whose leaf 0 is `leaf_` and every other leaf
    ///         is zero (the activations table before the first op).
    function rootOfFirstLeaf(bytes32 leaf_, uint256 depth_) internal pure returns (bytes32 root_) {
        root_ = hashLeaf(leaf_);
        bytes32 zero = hashLeaf(bytes32(0));
        for (uint256 d = 0; d < depth_; ++d) {
            root_ = hashPair(root_, zero);
            zero = hashPair(zero, zero);
        }
    }

    /// @notice The root over `nodes_`, a full level of `2^k` node hashes (k >= 0), hashed pairwise
    ///         up to one node. Reverts with {NotPowerOfTwo} unless the length is a power of two.
    function rootOfLevel(bytes32[] calldata nodes_) internal pure returns (bytes32 root_) {
        uint256 n = nodes_.length;
        if (n == 0 || n & (n - 1) != 0) revert NotPowerOfTwo(n);
        bytes32[] memory layer = nodes_;
        // `n` halves each round down to 1; `2 * i + 1 < 2 * (n / 2) <= n` keeps reads in bounds.
        while (n > 1) {
            n >>= 1;
            for (uint256 i = 0; i < n; ++i) {
                layer[i] = hashPair(layer[2 * i], layer[2 * i + 1]);
            }
        }
        root_ = layer[0];
    }

    /// @notice Words of scratch memory a streamed tree needs: one pending subtree per level. A
    ///         tree over calldata has fewer than 2^59 leaves (calldata offsets are below 2^64), so
    ///         levels 0..63 always suffice.
    uint256 internal constant STREAM_WORDS = 64;

    /// @notice The hash of the all-zero leaf, `Z[0] = keccak256(0^32)`.
    bytes32 internal constant ZERO_LEAF_HASH = 0x290decd9548b62a8d60345a988386fc84ba6bc95484008f6362f93160ef3e563;

    /// @notice Allocates the scratch of a streamed tree ({STREAM_WORDS} words, left dirty: a stream
    ///         writes every word before it reads it).
    function allocStream() internal pure returns (uint256 stack_) {
        // Bumps the free memory pointer past the words it hands out.
        assembly ("memory-safe") {
            stack_ := mload(0x40)
            mstore(0x40, add(stack_, shl(5, STREAM_WORDS)))
        }
    }

    /// @notice Appends `hash_` as node `index_` (0, 1, 2, ... in order) of the bottom level of the
    ///         tree streamed through `stack_`: word `k` of `stack_` keeps the last complete
    ///         subtree of `2^k` nodes still waiting for its right sibling.
    function streamPush(uint256 stack_, uint256 index_, bytes32 hash_) internal pure {
        // Reads only words that an earlier push wrote: a set bit `k` of `index_` means the left
        // sibling subtree at level `k` completed (and was stored) before. `k < 64`: see STREAM_WORDS.
        assembly ("memory-safe") {
            let slot := stack_
            for {} and(index_, 1) { index_ := shr(1, index_) } {
                mstore(0x00, mload(slot))
                mstore(0x20, hash_)
                hash_ := keccak256(0x00, 0x40)
                slot := add(slot, 0x20)
            }
            mstore(slot, hash_)
        }
    }

    /// @notice The root of the tree streamed through `stack_` after `count_ >= 1` pushes, the
    ///         bottom level padded to a power of two with zero leaves (the subtrees `Z[k]`).
    function streamRoot(uint256 stack_, uint256 count_) internal pure returns (bytes32 root_) {
        // Folds the pending subtrees (set bits of `count_`) from the bottom up, each level's right
        // side being the partial subtree folded so far or, left of it, a zero subtree. Reads only
        // words pushed before (set bits of `count_`); `count_ - 1` cannot underflow (`count_ >= 1`).
        assembly ("memory-safe") {
            let m := sub(count_, 1)
            let k := 0
            switch and(count_, m)
            case 0 {
                // A power of two: the last push completed the whole tree at level `log2(count_)`.
                for {} shr(k, m) { k := add(k, 1) } {}
                root_ := mload(add(stack_, shl(5, k)))
            }
            default {
                let z := ZERO_LEAF_HASH
                let partial := 0
                for {} shr(k, m) { k := add(k, 1) } {
                    switch and(shr(k, count_), 1)
                    case 1 {
                        mstore(0x00, mload(add(stack_, shl(5, k))))
                        mstore(0x20, z)
                        if partial { mstore(0x20, root_) }
                        root_ := keccak256(0x00, 0x40)
                        partial := 1
                    }
                    default {
                        if partial {
                            mstore(0x00, root_)
                            mstore(0x20, z)
                            root_ := keccak256(0x00, 0x40)
                        }
                    }
                    mstore(0x00, z)
                    mstore(0x20, z)
                    z := keccak256(0x00, 0x40)
                }
            }
        }
    }

    /// @notice The data root of the `length_` calldata bytes at `offset_`: the bytes cut into
    ///         32-byte leaves (the last zero-padded, `max(1, ceil(length_ / 32))` leaves), the tree
    ///         padded to a power of two. Hashed straight out of calldata, with `stack_`
    ///         ({allocStream}) as the only memory.
    function dataRootAt(uint256 offset_, uint256 length_, uint256 stack_) internal pure returns (bytes32 root_) {
        uint256 leaves;
        // Whole 64-byte pairs of leaves are hashed to their level-1 node and pushed at level 1 (the
        // push of {streamPush}, inlined: this loop is the hot path of every tensor hash); the
        // last one or two leaves, zero-padded, follow. Word `k` of `stack_` is written before it
        // is read, as in {streamPush}. No overflow: `length_` is a calldata length (below 2^64);
        // `end - at` cannot underflow in the tail, which starts at `offset_ + 64 * pairs <= end`.
        assembly ("memory-safe") {
            let pairs := shr(6, length_)
            for { let i := 0 } lt(i, pairs) { i := add(i, 1) } {
                let at := add(offset_, shl(6, i))
                mstore(0x00, calldataload(at))
                mstore(0x20, calldataload(add(at, 0x20)))
                let left := keccak256(0x00, 0x20)
                mstore(0x20, keccak256(0x20, 0x20))
                mstore(0x00, left)
                let h := keccak256(0x00, 0x40)
                let slot := add(stack_, 0x20)
                for { let j := i } and(j, 1) { j := shr(1, j) } {
                    mstore(0x00, mload(slot))
                    mstore(0x20, h)
                    h := keccak256(0x00, 0x40)
                    slot := add(slot, 0x20)
                }
                mstore(slot, h)
            }
            leaves := shl(1, pairs)
            let end := add(offset_, length_)
            let at := add(offset_, shl(6, pairs))
            let rest := sub(end, at)
            // The tail: `rest < 64` bytes, or the one zero leaf of empty data. A leaf keeps its
            // first `end - at` bytes (all 32 when `end - at >= 32`): past the end it reads as
            // zero, whatever follows in calldata.
            if or(rest, iszero(length_)) {
                mstore(0x00, and(calldataload(at), not(shr(shl(3, rest), not(0)))))
                let h := keccak256(0x00, 0x20)
                switch gt(rest, 0x20)
                case 0 {
                    // Leaf `2 * pairs`: even, so it waits at level 0.
                    mstore(stack_, h)
                    leaves := add(leaves, 1)
                }
                default {
                    let tail := sub(rest, 0x20)
                    mstore(0x00, and(calldataload(add(at, 0x20)), not(shr(shl(3, tail), not(0)))))
                    mstore(0x20, keccak256(0x00, 0x20))
                    mstore(0x00, h)
                    h := keccak256(0x00, 0x40)
                    let slot := add(stack_, 0x20)
                    for { let j := pairs } and(j, 1) { j := shr(1, j) } {
                        mstore(0x00, mload(slot))
                        mstore(0x20, h)
                        h := keccak256(0x00, 0x40)
                        slot := add(slot, 0x20)
                    }
                    mstore(slot, h)
                    leaves := add(leaves, 2)
                }
            }
        }
        root_ = streamRoot(stack_, leaves);
    }

    /// @notice The data root of `data_` (see {dataRootAt}).
    function dataRoot(bytes calldata data_) internal pure returns (bytes32 root_) {
        uint256 offset;
        assembly ("memory-safe") {
            offset := data_.offset
        }
        root_ = dataRootAt(offset, data_.length, allocStream());
    }
}
