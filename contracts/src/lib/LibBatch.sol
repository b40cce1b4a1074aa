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
                bytes32 requestId;
                bytes32 modelId;
                uint256 length;
                assembly ("memory-safe") {
                    requestId := calldataload(at)
                    modelId := calldataload(add(at, 0x20))
                    length := shr(224, calldataload(add(at, 0x40)))
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
                LibMerkle.streamPush(claims, count_, _claimLeafHash(requestId, modelId, inputHash, outputHash));
                ++count_;
            }
        }
        if (count_ != 0) root_ = LibMerkle.streamRoot(claims, count_);
    }

    /// @dev The tensor hash of the `length_` calldata bytes at `offset_` (`type || data`) of
    ///      entry `entry_`, checking the type and that the data is exactly `numel * size` bytes.
    function _tensorHash(uint256 offset_, uint256 length_, uint256 stack_, uint256 entry_, bool output_)
        private
        pure
        returns (bytes32 hash_)
    {
        (uint256 typeLength, uint256 size, uint256 numel, bool ok) = LibTensorType.parseAt(offset_, length_);
        if (!ok) revert BatchBadTensorType(entry_, output_);
        // `typeLength <= length_` once `ok`; `numel < 2^64` and `size <= 4`: no overflow.
        unchecked {
            uint256 dataLength = length_ - typeLength;
            if (dataLength != numel * size) revert BatchBadTensorData(entry_, output_, numel * size, dataLength);
            hash_ = LibTensorType.tensorHashAt(
                offset_, typeLength, LibMerkle.dataRootAt(offset_ + typeLength, dataLength, stack_)
            );
        }
    }

    /// @dev `keccak256` of the claim leaf `keccak256(abi.encode(requestId_, modelId_, inputHash_,
    ///      outputHash_))`: the leaf's node in the claims tree.
    function _claimLeafHash(bytes32 requestId_, bytes32 modelId_, bytes32 inputHash_, bytes32 outputHash_)
        private
        pure
        returns (bytes32 hash_)
    {
        // Temporary memory past the free memory pointer, not kept after this block.
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, requestId_)
            mstore(add(p, 0x20), modelId_)
            mstore(add(p, 0x40), inputHash_)
            mstore(add(p, 0x60), outputHash_)
            mstore(0x00, keccak256(p, 0x80))
            hash_ := keccak256(0x00, 0x20)
        }
    }
}
