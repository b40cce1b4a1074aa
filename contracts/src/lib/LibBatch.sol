// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {LibMerkle} from "./LibMerkle.sol";
import {LibTensorType} from "./LibTensorType.sol";
import {BatchTruncated, BatchBadTensorType, BatchBadTensorData} from "../Errors.sol";

/// @title LibBatch
/// @notice The batch data of `postBatch` (format version 1, `docs/contracts.md`), read straight
///         out of calldata: `data = entry_0 || ... || entry_{n-1}`, `entry = requestId (32) ||
///         modelId (32) || inLen u32 || input || outLen u32 || output`, `input, output = type ||
///         little-endian data`. Each entry gives the claim leaf `keccak256(abi.encode(requestId,
///         modelId, inputHash, outputHash))`; the claims root is the {LibMerkle} tree over them.
/// @dev Nothing is copied to memory but one type at a time: leaves are hashed out of calldata
///      into two {LibMerkle.allocStream} scratch areas (the claims tree and one tensor tree).
library LibBatch {
    /// @notice Bytes before an entry's input: requestId, modelId, inLen.
    uint256 internal constant ENTRY_HEAD = 68;

    /// @dev {LibTensorType.MAX_ELEMENTS} (`2^64 - 1`) restated as a number: inline assembly reads
    ///      only constants set to a number.
    uint256 private constant MAX_ELEMENTS = 0xffffffffffffffff;

    /// @notice Checks every entry of `data_` and returns the claims root over them and their count
    ///         (root zero for empty data). Reverts with {BatchTruncated} where an entry runs past
    ///         the end, {BatchBadTensorType} or {BatchBadTensorData} where a tensor is malformed.
    function claimsRoot(bytes calldata data_) internal pure returns (bytes32 root_, uint256 count_) {
        uint256 claims = LibMerkle.allocStream();
        uint256 tensor = LibMerkle.allocStream();
        uint256 at;
        assembly ("memory-safe") {
            at := data_.offset
        }
        uint256 end;
        // Calldata offsets and lengths are below 2^64, a u32 length below 2^32, and every step of
        // `at` is checked to stay `<= end` first: no sum overflows, no difference underflows.
        unchecked {
            end = at + data_.length;
            while (at < end) {
                if (end - at < ENTRY_HEAD) revert BatchTruncated(count_);
                uint256 entry = at;
                uint256 length;
                assembly ("memory-safe") {
                    length := shr(224, calldataload(add(entry, 0x40)))
                }
                at += ENTRY_HEAD;
                if (end - at < length + 4) revert BatchTruncated(count_);
                bytes32 inputHash = _tensorHash(at, length, tensor, count_, false);
                at += length;
                assembly ("memory-safe") {
                    length := shr(224, calldataload(at))
                }
                at += 4;
                if (end - at < length) revert BatchTruncated(count_);
                bytes32 outputHash = _tensorHash(at, length, tensor, count_, true);
                at += length;
                _pushClaim(claims, count_, entry, inputHash, outputHash);
                ++count_;
            }
        }
        if (count_ != 0) root_ = LibMerkle.streamRoot(claims, count_);
    }

    /// @dev The tensor hash of the `length_` calldata bytes at `offset_` (`type || data`) of
    ///      entry `entry_`, checking the type and that the data is exactly `numel * size` bytes.
    ///      The type is read as {LibTensorType.parseAt} reads it (inlined here: this runs twice per
    ///      claim); data of one leaf (at most 32 bytes) is hashed here, longer data by
    ///      {LibMerkle.dataRootAt} through `stack_`.
    function _tensorHash(uint256 offset_, uint256 length_, uint256 stack_, uint256 entry_, bool output_)
        private
        pure
        returns (bytes32 hash_)
    {
        uint256 typeLength;
        uint256 expected;
        bool ok;
        // Reads calldata only (a word past the tensor's end reads as whatever follows: only the
        // bytes inside the tensor are used). `typeLength >= 2`, so `typeLength <= length_` also
        // rules out a tensor of fewer than 2 bytes. `numel <= MAX_ELEMENTS < 2^64` before each
        // product and a dim is below 2^32: no product reaches 2^96; `expected = numel * size`
        // with `size <= 4`.
        assembly ("memory-safe") {
            let head := calldataload(offset_)
            let dtype := sub(byte(0, head), 1)
            typeLength := add(2, shl(2, byte(1, head)))
            // `dtype` is the code less one: i8 = 0, i16 = 1, i32 = 2, elements of `1 << dtype` bytes
            // (code 0 wraps and fails).
            ok := and(lt(dtype, 3), iszero(gt(typeLength, length_)))
            if ok {
                let numel := 1
                let typeEnd := add(offset_, typeLength)
                for { let at := add(offset_, 2) } lt(at, typeEnd) { at := add(at, 4) } {
                    numel := mul(numel, shr(224, calldataload(at)))
                    if gt(numel, MAX_ELEMENTS) {
                        ok := 0
                        break
                    }
                }
                expected := shl(dtype, numel)
            }
        }
        if (!ok) revert BatchBadTensorType(entry_, output_);
        // `typeLength <= length_` once `ok`.
        unchecked {
            uint256 dataLength = length_ - typeLength;
            if (dataLength != expected) revert BatchBadTensorData(entry_, output_, expected, dataLength);
            if (dataLength > 32) {
                return LibTensorType.tensorHashAt(
                    offset_, typeLength, LibMerkle.dataRootAt(offset_ + typeLength, dataLength, stack_)
                );
            }
        }
        // One leaf: the data's bytes, zero-padded (all zero for empty data), as {LibMerkle.dataRootAt}
        // pads them; the tree of one leaf is its hash. Then `keccak256(type || dataRoot)` in
        // temporary memory past the free memory pointer, not kept after this block.
        assembly ("memory-safe") {
            let dataLength := sub(length_, typeLength)
            mstore(0x00, and(calldataload(add(offset_, typeLength)), not(shr(shl(3, dataLength), not(0)))))
            let p := mload(0x40)
            calldatacopy(p, offset_, typeLength)
            mstore(add(p, typeLength), keccak256(0x00, 0x20))
            hash_ := keccak256(p, add(typeLength, 0x20))
        }
    }

    /// @dev Pushes the claims-tree node of claim `index_` (requestId and modelId the first 64
    ///      calldata bytes at `entry_`): `keccak256` of the claim leaf `keccak256(abi.encode(
    ///      requestId, modelId, inputHash_, outputHash_))`, pushed as {LibMerkle.streamPush} does.
    function _pushClaim(uint256 stack_, uint256 index_, uint256 entry_, bytes32 inputHash_, bytes32 outputHash_)
        private
        pure
    {
        // The leaf is encoded in temporary memory past the free memory pointer, not kept after
        // this block. The push reads only words an earlier push wrote: a set bit `k` of `index_`
        // means the left sibling subtree at level `k` completed (and was stored) before; `k < 64`
        // (see {LibMerkle.STREAM_WORDS}).
        assembly ("memory-safe") {
            let p := mload(0x40)
            calldatacopy(p, entry_, 0x40)
            mstore(add(p, 0x40), inputHash_)
            mstore(add(p, 0x60), outputHash_)
            mstore(0x00, keccak256(p, 0x80))
            let hash := keccak256(0x00, 0x20)
            let slot := stack_
            for {} and(index_, 1) { index_ := shr(1, index_) } {
                mstore(0x00, mload(slot))
                mstore(0x20, hash)
                hash := keccak256(0x00, 0x40)
                slot := add(slot, 0x20)
            }
            mstore(slot, hash)
        }
    }
}
