// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {MemMerkle} from "./Fixtures.sol";
import {Claim} from "../../src/interfaces/IDisputeGame.sol";

/// @notice One claim of a batch with its input and output tensors (type encodings and
///         little-endian data), as the sequencer publishes it.
struct Entry {
    bytes32 requestId;
    bytes32 modelId;
    bytes inputType;
    bytes inputData;
    bytes outputType;
    bytes outputData;
}

/// @title BatchBuilder
/// @notice Builds `postBatch` data (format version 1 of `docs/contracts.md`) and its claims root
///         in memory, with `abi.encodePacked` and {MemMerkle}: written independently of
///         `LibBatch` (no streaming, no calldata), so the tests check the contract against it.
library BatchBuilder {
    /// @dev `requestId || modelId || inLen u32 || inputType || inputData || outLen u32 ||
    ///      outputType || outputData`.
    function encodeEntry(Entry memory e_) internal pure returns (bytes memory) {
        return abi.encodePacked(
            e_.requestId,
            e_.modelId,
            uint32(e_.inputType.length + e_.inputData.length),
            e_.inputType,
            e_.inputData,
            uint32(e_.outputType.length + e_.outputData.length),
            e_.outputType,
            e_.outputData
        );
    }

    /// @dev The entries one after the other (one allocation, so 1000-entry batches stay cheap).
    function encode(Entry[] memory entries_) internal pure returns (bytes memory data_) {
        uint256 total;
        for (uint256 i = 0; i < entries_.length; ++i) {
            Entry memory e = entries_[i];
            total += 72 + e.inputType.length + e.inputData.length + e.outputType.length + e.outputData.length;
        }
        data_ = new bytes(total);
        uint256 at;
        for (uint256 i = 0; i < entries_.length; ++i) {
            bytes memory one = encodeEntry(entries_[i]);
            // `at + one.length <= total`: the copy stays inside `data_`.
            assembly ("memory-safe") {
                mcopy(add(add(data_, 0x20), at), add(one, 0x20), mload(one))
            }
            at += one.length;
        }
    }

    function claim(Entry memory e_) internal pure returns (Claim memory c_) {
        c_ = Claim({
            requestId: e_.requestId,
            modelId: e_.modelId,
            inputHash: MemMerkle.tensorHash(e_.inputType, e_.inputData),
            outputHash: MemMerkle.tensorHash(e_.outputType, e_.outputData)
        });
    }

    function leaf(Claim memory c_) internal pure returns (bytes32) {
        return keccak256(abi.encode(c_.requestId, c_.modelId, c_.inputHash, c_.outputHash));
    }

    /// @dev The claims root: {MemMerkle} over the claim leaves, in order.
    function root(Entry[] memory entries_) internal pure returns (bytes32) {
        bytes32[] memory leaves = new bytes32[](entries_.length);
        for (uint256 i = 0; i < entries_.length; ++i) {
            leaves[i] = leaf(claim(entries_[i]));
        }
        return MemMerkle.root(leaves);
    }
}

/// @title RandomBatch
/// @notice Pseudo-random well-formed batches for fuzz tests: each tensor of a random dtype (i8,
///         i16, i32), rank 0 to 3 and dims 0 to 8 (empty tensors included), with random data.
library RandomBatch {
    function _word(uint256 seed_, uint256 i_) private pure returns (uint256) {
        return uint256(keccak256(abi.encode(seed_, i_)));
    }

    /// @dev A random type encoding and data of exactly `numel * size` random bytes.
    function tensor(uint256 seed_) internal pure returns (bytes memory type_, bytes memory data_) {
        uint256 r = _word(seed_, 0);
        uint8 dtype = uint8(1 + r % 3);
        uint8 rank = uint8((r >> 8) % 4);
        type_ = abi.encodePacked(dtype, rank);
        uint256 numel = 1;
        for (uint256 d = 0; d < rank; ++d) {
            uint32 dim = uint32((r >> (16 + 8 * d)) % 9);
            type_ = bytes.concat(type_, abi.encodePacked(dim));
            numel *= dim;
        }
        data_ = new bytes(numel * (dtype == 3 ? 4 : dtype));
        for (uint256 i = 0; i < data_.length; ++i) {
            data_[i] = bytes1(uint8(_word(seed_, 1 + i / 32) >> (8 * (i % 32))));
        }
    }

    /// @dev `n_` random entries.
    function entries(uint256 seed_, uint256 n_) internal pure returns (Entry[] memory e_) {
        e_ = new Entry[](n_);
        for (uint256 i = 0; i < n_; ++i) {
            Entry memory e = e_[i];
            e.requestId = bytes32(_word(seed_, 1000 + 3 * i));
            e.modelId = bytes32(_word(seed_, 1001 + 3 * i) % 4);
            (e.inputType, e.inputData) = tensor(_word(seed_, 1002 + 3 * i));
            (e.outputType, e.outputData) = tensor(_word(seed_, 1002 + 3 * i) ^ 1);
        }
    }
}
