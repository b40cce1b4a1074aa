// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {LibMerkle} from "./LibMerkle.sol";
import {BadTensorType, BadOpEncoding, BadTensorData} from "../Errors.sol";

/// @title LibTensorType
/// @notice Tensor types and op encodings of the op spec (`docs/ops.md`, "Program encoding"):
///         `type = dtype u8 || rank u8 || dim u32 ... (big-endian)`, dtype codes i8 = 1,
///         i16 = 2, i32 = 3; `op = kind u8 || params || n_operands u8 || (tag u8 || index u32)...
///         || output type`. The tensor hash is `keccak256(type || dataRoot)`: the type encoding
///         is exactly the prefix the tensor hash binds.
library LibTensorType {
    /// @notice The largest element count accepted (`2^64 - 1`): bounds every product below.
    uint256 internal constant MAX_ELEMENTS = 0xffffffffffffffff;

    /// @notice Checks `type_` and returns its element size in bytes and its element count.
    /// @dev Reverts with {BadTensorType} on an unknown dtype, a length that does not match the
    ///      rank, or more than {MAX_ELEMENTS} elements.
    function parse(bytes calldata type_) internal pure returns (uint256 size_, uint256 numel_) {
        uint256 offset;
        assembly ("memory-safe") {
            offset := type_.offset
        }
        (uint256 typeLength, uint256 size, uint256 numel, bool ok) = parseAt(offset, type_.length);
        if (!ok || typeLength != type_.length) revert BadTensorType();
        (size_, numel_) = (size, numel);
    }

    /// @notice Reads the type that starts the `length_` calldata bytes at `offset_` (a tensor
    ///         `type || data`): its length `2 + 4 * rank`, element size and element count.
    /// @dev `ok_` is false on an unknown dtype, a type longer than `length_` or more than
    ///      {MAX_ELEMENTS} elements (then the other values mean nothing).
    function parseAt(uint256 offset_, uint256 length_)
        internal
        pure
        returns (uint256 typeLength_, uint256 size_, uint256 numel_, bool ok_)
    {
        // Reads only inside `[offset_, offset_ + typeLength_)`, and only once `typeLength_ <=
        // length_`. `numel_ <= MAX_ELEMENTS < 2^64` before each product and a dim is below 2^32, so
        // no product reaches 2^96; `offset_ + typeLength_` stays below 2^64 + 1022.
        assembly ("memory-safe") {
            if gt(length_, 1) {
                let head := calldataload(offset_)
                let dtype := byte(0, head)
                typeLength_ := add(2, shl(2, byte(1, head)))
                // i8 = 1, i16 = 2, i32 = 3: `1 << (dtype - 1)` bytes (dtype 0 wraps and fails).
                size_ := shl(sub(dtype, 1), 1)
                ok_ := and(lt(sub(dtype, 1), 3), iszero(gt(typeLength_, length_)))
                numel_ := 1
                if ok_ {
                    let typeEnd := add(offset_, typeLength_)
                    for { let at := add(offset_, 2) } lt(at, typeEnd) { at := add(at, 4) } {
                        numel_ := mul(numel_, shr(224, calldataload(at)))
                        if gt(numel_, MAX_ELEMENTS) {
                            ok_ := 0
                            break
                        }
                    }
                }
            }
        }
    }

    /// @notice The tensor hash `keccak256(type || dataRoot_)` of the type of `typeLength_`
    ///         calldata bytes at `offset_` (checked by the caller, see {parseAt}).
    function tensorHashAt(uint256 offset_, uint256 typeLength_, bytes32 dataRoot_)
        internal
        pure
        returns (bytes32 hash_)
    {
        // Temporary memory past the free memory pointer, not kept after this block.
        assembly ("memory-safe") {
            let p := mload(0x40)
            calldatacopy(p, offset_, typeLength_)
            mstore(add(p, typeLength_), dataRoot_)
            hash_ := keccak256(p, add(typeLength_, 0x20))
        }
    }

    /// @notice The number of 32-byte leaves of a tensor of `numel_` elements of `size_` bytes:
    ///         `max(1, ceil(numel_ * size_ / 32))`.
    function leafCount(uint256 size_, uint256 numel_) internal pure returns (uint256 leaves_) {
        // `numel_ < 2^64` and `size_ <= 4`: no overflow.
        unchecked {
            leaves_ = (numel_ * size_ + 31) / 32;
        }
        if (leaves_ == 0) leaves_ = 1;
    }

    /// @notice The tensor hash of a tensor of type `type_` (encoded) with data root `dataRoot_`.
    function tensorHash(bytes calldata type_, bytes32 dataRoot_) internal pure returns (bytes32 hash_) {
        hash_ = keccak256(abi.encodePacked(type_, dataRoot_));
    }

    /// @notice The tensor hash of `data_` (little-endian elements) of type `type_`; reverts with
    ///         {BadTensorData} unless `data_` holds exactly the type's bytes.
    function hashData(bytes calldata type_, bytes calldata data_) internal pure returns (bytes32 hash_) {
        (uint256 size, uint256 numel) = parse(type_);
        // `numel < 2^64`, `size <= 4`: no overflow.
        unchecked {
            if (data_.length != numel * size) revert BadTensorData(numel * size, data_.length);
        }
        hash_ = tensorHash(type_, LibMerkle.dataRoot(data_));
    }

    /// @notice The length of the params of op kind `kind_`, whose params start at `op_[1]`
    ///         (only `transpose` has a variable length: `rank u8 || perm u8 x rank`).
    function paramsLength(bytes calldata op_, uint8 kind_) internal pure returns (uint256 len_) {
        if (kind_ == 1) return 8; // fully_connected
        if (kind_ == 2) return 21; // batch_matmul
        if (kind_ == 3) return 24; // add
        if (kind_ == 4) return 20; // mul
        if (kind_ == 5) return 16; // requantize
        if (kind_ == 6) return 0; // lut
        if (kind_ == 7) return 9; // softmax
        if (kind_ == 8) return 16; // layer_norm
        if (kind_ == 9) return 20; // rms_norm
        if (kind_ == 10) return 0; // embedding
        if (kind_ == 11) return 17; // rope
        if (kind_ == 12) return 0; // reshape
        if (kind_ == 13) {
            if (op_.length < 2) revert BadOpEncoding();
            return 1 + uint8(op_[1]); // transpose
        }
        if (kind_ == 14) return 1; // concat
        if (kind_ == 15) return 9; // slice
        if (kind_ == 16) return 12; // mean_pool
        if (kind_ == 17) return 0; // argmax
        if (kind_ == 18) return 1; // softmax_exp
        if (kind_ == 19) return 8; // softmax_norm
        revert BadOpEncoding();
    }

    /// @notice The declared output type of the op encoded in `op_` (a slice of `op_`), checked
    ///         to be a well-formed type that ends the encoding exactly.
    function outputType(bytes calldata op_) internal pure returns (bytes calldata type_) {
        if (op_.length == 0) revert BadOpEncoding();
        uint256 at = 1 + paramsLength(op_, uint8(op_[0]));
        if (op_.length <= at) revert BadOpEncoding();
        // `at < op_.length` and `5 * 255 + 1` more bytes cannot overflow.
        unchecked {
            at += 1 + 5 * uint256(uint8(op_[at]));
        }
        if (op_.length < at + 2) revert BadOpEncoding();
        type_ = op_[at:];
        parse(type_);
    }
}
