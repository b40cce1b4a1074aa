// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "../interfaces/IOneStepVerifier.sol";
import {LibTensor} from "./LibTensor.sol";

/// @notice One op's encoding, decoded (`docs/ops.md`, "Program encoding").
/// @dev `params` holds the kind's params in encoding order, signed fields sign-extended
///      (for `transpose`, the permutation; `rank` is its length). `tags[i]` is 0 for a slot
///      operand and 1 for a weight operand, `indices[i]` its slot or weight index.
struct DecodedOp {
    uint256 kind;
    int256[] params;
    uint256[] tags;
    uint256[] indices;
    uint256 outDtype;
    uint256[] outDims;
}

/// @title LibOpCodec
/// @notice Decodes `kind u8 || params || n_operands u8 || (tag u8 || index u32)... || output type`,
///         integers big-endian, exactly as `inference/src/program.rs` `encode_op` writes it.
/// @dev Strict: a bool (or RoPE pairing) must be 0 or 1, an operand tag 0 or 1, and the
///      encoding must end exactly after the output type.
library LibOpCodec {
    /// @notice The highest op kind code (`softmax_norm`).
    uint256 internal constant MAX_KIND = 19;
    /// @notice The `transpose` kind code: the one with variable-length params.
    uint256 internal constant TRANSPOSE = 13;

    /// @notice Decodes `op_`; reverts with `MalformedOp` or `UnknownOpKind`.
    function decode(bytes calldata op_) internal pure returns (DecodedOp memory d_) {
        uint256 len = op_.length;
        if (len == 0) revert IOneStepVerifier.MalformedOp(0);
        d_.kind = uint8(op_[0]);
        if (d_.kind == 0 || d_.kind > MAX_KIND) revert IOneStepVerifier.UnknownOpKind(d_.kind);
        uint256 off = 1;
        if (d_.kind == TRANSPOSE) {
            if (off >= len) revert IOneStepVerifier.MalformedOp(off);
            uint256 rank = uint8(op_[off]);
            off += 1;
            if (off + rank > len) revert IOneStepVerifier.MalformedOp(off);
            d_.params = new int256[](rank);
            for (uint256 i = 0; i < rank; ++i) {
                d_.params[i] = int256(uint256(uint8(op_[off + i])));
            }
            off += rank;
        } else {
            bytes memory layout = paramLayout(d_.kind);
            d_.params = new int256[](layout.length);
            for (uint256 i = 0; i < layout.length; ++i) {
                (d_.params[i], off) = readParam(op_, off, layout[i]);
            }
        }
        if (off >= len) revert IOneStepVerifier.MalformedOp(off);
        uint256 n = uint8(op_[off]);
        off += 1;
        if (off + 5 * n > len) revert IOneStepVerifier.MalformedOp(off);
        d_.tags = new uint256[](n);
        d_.indices = new uint256[](n);
        for (uint256 i = 0; i < n; ++i) {
            uint256 tag = uint8(op_[off]);
            if (tag > 1) revert IOneStepVerifier.MalformedOp(off);
            d_.tags[i] = tag;
            d_.indices[i] = uint32(bytes4(op_[off + 1:off + 5]));
            off += 5;
        }
        uint256 end;
        bool ok;
        (d_.outDtype, d_.outDims, end, ok) = LibTensor.decodeType(op_, off);
        if (!ok || end != len) revert IOneStepVerifier.MalformedOp(off);
    }

    /// @notice The params of `kind_` as one letter each: `i` i32, `u` u32, `q` u64, `b` bool
    ///         (0 or 1; also RoPE's pairing), `c` u8.
    function paramLayout(uint256 kind_) internal pure returns (bytes memory) {
        if (kind_ == 1) return "ii"; // fully_connected: x_zp, y_zp
        if (kind_ == 2) return "biiiui"; // batch_matmul: transpose_b, a_zp, b_zp, multiplier, shift, y_zp
        if (kind_ == 3) return "iiiiui"; // add: a_zp, a_m, b_zp, b_m, shift, y_zp
        if (kind_ == 4) return "iiiui"; // mul: a_zp, b_zp, multiplier, shift, y_zp
        if (kind_ == 5) return "iiui"; // requantize: x_zp, multiplier, shift, y_zp
        if (kind_ == 7) return "bui"; // softmax: causal, frac_bits, y_zp
        if (kind_ == 8) return "qui"; // layer_norm: epsilon, shift, y_zp
        if (kind_ == 9) return "iqui"; // rms_norm: x_zp, epsilon, shift, y_zp
        if (kind_ == 11) return "iiuub"; // rope: x_zp, y_zp, position_offset, frac_bits, pairing
        if (kind_ == 14) return "c"; // concat: axis
        if (kind_ == 15) return "cuu"; // slice: axis, start, end
        if (kind_ == 16) return "iui"; // mean_pool: x_zp, frac_bits, y_zp
        if (kind_ == 18) return "b"; // softmax_exp: causal
        if (kind_ == 19) return "ui"; // softmax_norm: frac_bits, y_zp
        return ""; // lut, embedding, reshape, argmax
    }

    /// @notice Reads one param of letter `kind_` at `off_`; returns it and the next offset.
    function readParam(bytes calldata op_, uint256 off_, bytes1 kind_) internal pure returns (int256 v_, uint256 next_) {
        uint256 width = kind_ == "q" ? 8 : (kind_ == "i" || kind_ == "u") ? 4 : 1;
        next_ = off_ + width;
        if (next_ > op_.length) revert IOneStepVerifier.MalformedOp(off_);
        if (width == 8) {
            v_ = int256(uint256(uint64(bytes8(op_[off_:next_]))));
        } else if (width == 4) {
            uint32 raw = uint32(bytes4(op_[off_:next_]));
            v_ = kind_ == "i" ? int256(int32(raw)) : int256(uint256(raw));
        } else {
            v_ = int256(uint256(uint8(op_[off_])));
            if (kind_ == "b" && v_ > 1) revert IOneStepVerifier.MalformedOp(off_);
        }
    }
}
