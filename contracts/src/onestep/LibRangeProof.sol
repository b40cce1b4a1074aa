// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title LibRangeProof
/// @notice The range proof of `inference/src/merkle.rs` (`RangeProof`): contiguous leaves
///         `[start, start + n)` of a tree of known depth with only the boundary siblings.
/// @dev For each level `l < depth`: if `lo` is odd its left neighbour comes next in the
///      siblings, then if `hi` is odd its right neighbour; the known nodes pair up left to
///      right, `lo = lo / 2`, `hi = ceil(hi / 2)`. Every sibling must be used.
library LibRangeProof {
    /// @notice The root implied by `leaves_` at `start_` in a tree of `depth_` levels.
    /// @return root_ The root (meaningless when `ok_` is false).
    /// @return ok_ False if the siblings run out or some are left over.
    /// @dev The caller checks `leaves_.length > 0` and `start_ + leaves_.length <= 2^depth_`.
    ///      Works in a buffer past the free memory pointer (never bumped: the buffer is dead
    ///      on return): word 0 for a left sibling, words `1..` for the known nodes, one more
    ///      for a right sibling.
    function computeRoot(uint256 start_, bytes32[] calldata leaves_, bytes32[] calldata siblings_, uint256 depth_)
        internal
        pure
        returns (bytes32 root_, bool ok_)
    {
        assembly ("memory-safe") {
            let n := leaves_.length
            let buf := mload(0x40)
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                mstore(0x00, calldataload(add(leaves_.offset, shl(5, i))))
                mstore(add(buf, shl(5, add(i, 1))), keccak256(0x00, 0x20))
            }
            let lo := start_
            let hi := add(start_, n)
            let head := 1
            let tail := add(n, 1)
            let sib := 0
            let nsib := siblings_.length
            ok_ := 1
            for { let l := 0 } lt(l, depth_) { l := add(l, 1) } {
                if and(lo, 1) {
                    if eq(sib, nsib) {
                        ok_ := 0
                        break
                    }
                    head := 0
                    mstore(buf, calldataload(add(siblings_.offset, shl(5, sib))))
                    sib := add(sib, 1)
                }
                if and(hi, 1) {
                    if eq(sib, nsib) {
                        ok_ := 0
                        break
                    }
                    mstore(add(buf, shl(5, tail)), calldataload(add(siblings_.offset, shl(5, sib))))
                    sib := add(sib, 1)
                    tail := add(tail, 1)
                }
                // The known nodes now span an even count; node i of the next level goes to
                // word 1 + i, at or below the words it is hashed from (read first).
                let pairs := shr(1, sub(tail, head))
                for { let i := 0 } lt(i, pairs) { i := add(i, 1) } {
                    mstore(add(buf, shl(5, add(i, 1))), keccak256(add(buf, shl(5, add(head, shl(1, i)))), 0x40))
                }
                head := 1
                tail := add(pairs, 1)
                lo := shr(1, lo)
                hi := shr(1, add(hi, 1))
            }
            if lt(sib, nsib) { ok_ := 0 }
            root_ := mload(add(buf, 0x20))
        }
    }
}
