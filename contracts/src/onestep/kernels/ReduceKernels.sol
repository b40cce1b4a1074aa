// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "../../interfaces/IOneStepVerifier.sol";
import {LibTensor, TensorView} from "../LibTensor.sol";
import {LibFixedPoint} from "../LibFixedPoint.sol";

/// @title ReduceKernels
/// @notice One output element of `mean_pool` (`docs/ops.md` 16: the mask row and the kept
///         elements of one row of `x`) and `argmax` (17: the row of `x`).
library ReduceKernels {
    using LibTensor for TensorView;

    /// @notice `mean_pool`: params `x_zp, frac_bits, y_zp`; operands `x [B, D, S]`, `mask [B, S]`.
    function meanPool(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        (uint256 s, uint256 d) = _checkMeanPool(p_, x_, out_);
        uint256 b = index_ / d;
        (int256 sum, uint256 kept) = _keptRowSum(x_[0], x_[1], b * s, index_ * s, s);
        if (kept == 0) return LibTensor.sat(p_[2], out_.dtype);
        // sum (x - zp) over the kept positions.
        sum -= int256(kept) * p_[0];
        return LibTensor.sat(p_[2] + LibFixedPoint.roundDiv(sum << uint256(p_[1]), int256(kept)), out_.dtype);
    }

    /// @dev `sum x[b, d, s]` over the `s` kept by mask row `b`, and how many are kept. The
    ///      `S` operands of output `b * D + d` are contiguous in `x`: they start at element
    ///      `xFirst_ = (b * D + d) * S`; mask row `b` starts at `maskFirst_ = b * S`.
    function _keptRowSum(
        TensorView memory x_,
        TensorView memory mask_,
        uint256 maskFirst_,
        uint256 xFirst_,
        uint256 s_
    ) private pure returns (int256 sum_, uint256 kept_) {
        (bool okM, uint256 ptrM) = mask_.span(maskFirst_, s_, 1);
        (bool okX, uint256 ptrX) = x_.span(xFirst_, s_, 1);
        for (uint256 si = 0; si < s_; ++si) {
            if ((okM ? LibTensor.load(ptrM + si * mask_.size, mask_.size) : mask_.get(maskFirst_ + si)) != 0) {
                ++kept_;
                sum_ += okX ? LibTensor.load(ptrX + si * x_.size, x_.size) : x_.get(xFirst_ + si);
            }
        }
    }

    /// @dev `Op::check` for `mean_pool`; returns `S` and `D`.
    function _checkMeanPool(int256[] memory p_, TensorView[] memory x_, TensorView memory out_)
        private
        pure
        returns (uint256 s_, uint256 d_)
    {
        if (x_.length != 2) revert IOneStepVerifier.OperandCountMismatch(2, x_.length);
        TensorView memory x = x_[0];
        TensorView memory mask = x_[1];
        x.requireRank(3);
        mask.requireRank(2);
        d_ = x.dims[1];
        s_ = x.dims[2];
        if (mask.dims[0] != x.dims[0] || mask.dims[1] != s_) revert IOneStepVerifier.OperandTypeInvalid(1);
        LibTensor.requireInRange(p_[0], x.dtype);
        if (p_[1] > 30) revert IOneStepVerifier.ParamOutOfRange();
        uint256[] memory shape = new uint256[](2);
        (shape[0], shape[1]) = (x.dims[0], d_);
        out_.requireOutput(LibTensor.ANY, shape);
        LibTensor.requireInRange(p_[2], out_.dtype);
    }

    /// @notice `argmax`: the smallest index of the row maximum over the last axis, as `i32`.
    function argmax(TensorView[] memory x_, TensorView memory out_, uint256 index_) internal pure returns (int256) {
        if (x_.length != 1) revert IOneStepVerifier.OperandCountMismatch(1, x_.length);
        TensorView memory x = x_[0];
        uint256 r = x.dims.length;
        if (r == 0 || x.dims[r - 1] == 0) revert IOneStepVerifier.OperandTypeInvalid(0);
        uint256 n = x.dims[r - 1];
        uint256[] memory shape = new uint256[](r - 1);
        for (uint256 i = 0; i + 1 < r; ++i) {
            shape[i] = x.dims[i];
        }
        out_.requireOutput(LibTensor.I32, shape);

        uint256 first = index_ * n;
        (bool ok, uint256 ptr) = x.span(first, n, 1);
        if (ok) return int256(_argmaxCalldata(ptr, n, x.size));
        int256 best = x.get(first);
        uint256 at;
        for (uint256 c = 1; c < n; ++c) {
            int256 v = x.get(first + c);
            if (v > best) (best, at) = (v, c);
        }
        return int256(at);
    }

    /// @dev The first maximum of `n_` contiguous little-endian elements of `size_` bytes at `ptr_`.
    function _argmaxCalldata(uint256 ptr_, uint256 n_, uint256 size_) private pure returns (uint256 at_) {
        assembly ("memory-safe") {
            function le(p, size) -> v {
                let w := calldataload(p)
                switch size
                case 1 { v := signextend(0, shr(248, w)) }
                case 2 {
                    let b := shr(240, w)
                    v := signextend(1, or(shr(8, b), shl(8, and(b, 0xff))))
                }
                default {
                    let b := shr(224, w)
                    v := signextend(
                        3,
                        or(or(shr(24, b), and(shr(8, b), 0xff00)), or(and(shl(8, b), 0xff0000), shl(24, and(b, 0xff))))
                    )
                }
            }
            // Strictly greater: the first maximum wins.
            let best := le(ptr_, size_)
            for { let c := 1 } lt(c, n_) { c := add(c, 1) } {
                let v := le(add(ptr_, mul(c, size_)), size_)
                if sgt(v, best) {
                    best := v
                    at_ := c
                }
            }
        }
    }
}
