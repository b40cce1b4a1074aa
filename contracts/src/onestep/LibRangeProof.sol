// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title LibRangeProof
/// @notice The multi-range proof of `inference/src/merkle.rs` (`ranges_root`): several leaf
///         ranges of one tree of known depth with one shared list of siblings, each sibling
///         listed once however many ranges it serves (one range: the plain range proof).
/// @dev Level by level from the bottom the known nodes form disjoint intervals `[lo, hi)`,
///      touching ones merged; for each interval from left to right its left neighbour is the
///      next sibling if `lo` is odd, then its right neighbour if `hi` is odd; the nodes pair
///      up into the next level (`lo / 2`, `ceil(hi / 2)`). Every sibling must be used.
library LibRangeProof {
    /// @notice The root implied by the leaves of the ranges: range `r` is the `ends_[r] -
    ///         starts_[r]` leaves at calldata offset `ptrs_[r]`, standing at `starts_[r]`.
    /// @return root_ The root (meaningless when `ok_` is false).
    /// @return ok_ False if the siblings run out or some are left over.
    /// @dev The caller checks that there is at least one range, each non-empty, in increasing
    ///      order without overlap (`starts_[r] >= ends_[r - 1]`) and `ends_[n - 1] <= 2^depth_`.
    ///      Works past the free memory pointer (never bumped: the memory is dead on return):
    ///      a header `h` (interval count, next sibling, node buffer, spare buffer), the
    ///      intervals from `h + 0x80` (lo, hi: 64 bytes each), then the two node buffers,
    ///      which alternate between levels. A sibling read past the list reads zeros, and the
    ///      count check fails.
    function computeRoot(
        uint256[] memory starts_,
        uint256[] memory ends_,
        uint256[] memory ptrs_,
        bytes32[] calldata siblings_,
        uint256 depth_
    ) internal pure returns (bytes32 root_, bool ok_) {
        assembly ("memory-safe") {
            // Appends interval [lo, hi) to the `n` intervals at `b`, merged into the last one
            // if it touches it; returns the new count.
            function push(b, n, lo, hi) -> m {
                m := n
                let last := add(b, sub(shl(6, n), 0x20))
                switch and(gt(n, 0), eq(mload(last), lo))
                case 1 { mstore(last, hi) }
                default {
                    mstore(add(b, shl(6, n)), lo)
                    mstore(add(b, add(shl(6, n), 0x20)), hi)
                    m := add(n, 1)
                }
            }
            // Level 0: the leaf hashes, adjacent ranges merged into one interval.
            function leaves(h, starts, ends, ptrs) {
                let nr := mload(starts)
                let at := add(add(h, 0x80), shl(6, nr))
                mstore(add(h, 0x40), at)
                let n := 0
                for { let r := 0 } lt(r, nr) { r := add(r, 1) } {
                    let w := shl(5, add(r, 1))
                    let s := mload(add(starts, w))
                    let e := mload(add(ends, w))
                    let p := mload(add(ptrs, w))
                    for { let i := 0 } lt(i, sub(e, s)) { i := add(i, 1) } {
                        mstore(0x00, calldataload(add(p, shl(5, i))))
                        mstore(at, keccak256(0x00, 0x20))
                        at := add(at, 0x20)
                    }
                    n := push(add(h, 0x80), n, s, e)
                }
                mstore(h, n)
                mstore(add(h, 0x20), 0)
                mstore(add(h, 0x60), at)
            }
            // The parents of the nodes [lo, hi) read from `src`, written from `d`, with the
            // siblings the interval's ends need; returns the write cursor and next sibling.
            function parents(src, d, sibs, sib, lo, hi) -> dOut, sibOut {
                let i := 0
                if and(lo, 1) {
                    mstore(0x00, calldataload(add(sibs, shl(5, sib))))
                    sib := add(sib, 1)
                    mstore(0x20, mload(src))
                    mstore(d, keccak256(0x00, 0x40))
                    d := add(d, 0x20)
                    i := 1
                }
                for {} lt(add(i, 1), sub(hi, lo)) { i := add(i, 2) } {
                    mstore(d, keccak256(add(src, shl(5, i)), 0x40))
                    d := add(d, 0x20)
                }
                if lt(i, sub(hi, lo)) {
                    mstore(0x00, mload(add(src, shl(5, i))))
                    mstore(0x20, calldataload(add(sibs, shl(5, sib))))
                    sib := add(sib, 1)
                    mstore(d, keccak256(0x00, 0x40))
                    d := add(d, 0x20)
                }
                dOut := d
                sibOut := sib
            }
            // One level up: the nodes of the intervals into the spare buffer, which becomes
            // the node buffer; interval m <= r is rewritten only after interval r was read.
            function level(h, sibs) {
                let sib := mload(add(h, 0x20))
                let src := mload(add(h, 0x40))
                let dst := mload(add(h, 0x60))
                let m := 0
                for { let r := 0 } lt(r, mload(h)) { r := add(r, 1) } {
                    let lo := mload(add(add(h, 0x80), shl(6, r)))
                    let hi := mload(add(add(h, 0xa0), shl(6, r)))
                    dst, sib := parents(src, dst, sibs, sib, lo, hi)
                    src := add(src, shl(5, sub(hi, lo)))
                    m := push(add(h, 0x80), m, shr(1, lo), shr(1, add(hi, 1)))
                }
                mstore(h, m)
                mstore(add(h, 0x20), sib)
                let spare := mload(add(h, 0x40))
                mstore(add(h, 0x40), mload(add(h, 0x60)))
                mstore(add(h, 0x60), spare)
            }
            // The levels left once the known nodes form one interval, without interval
            // bookkeeping (the common case: one range, or ranges that have met).
            function single(h, sibs, levels) {
                let sib := mload(add(h, 0x20))
                let src := mload(add(h, 0x40))
                let dst := mload(add(h, 0x60))
                let lo := mload(add(h, 0x80))
                let hi := mload(add(h, 0xa0))
                for {} levels { levels := sub(levels, 1) } {
                    let d
                    d, sib := parents(src, dst, sibs, sib, lo, hi)
                    d := src
                    src := dst
                    dst := d
                    lo := shr(1, lo)
                    hi := shr(1, add(hi, 1))
                }
                mstore(add(h, 0x20), sib)
                mstore(add(h, 0x40), src)
            }
            let h := mload(0x40)
            leaves(h, starts_, ends_, ptrs_)
            for { let l := 0 } lt(l, depth_) { l := add(l, 1) } {
                if eq(mload(h), 1) {
                    single(h, siblings_.offset, sub(depth_, l))
                    break
                }
                level(h, siblings_.offset)
            }
            ok_ := eq(mload(add(h, 0x20)), siblings_.length)
            root_ := mload(mload(add(h, 0x40)))
        }
    }
}
