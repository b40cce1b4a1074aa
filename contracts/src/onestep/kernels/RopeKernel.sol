// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "../../interfaces/IOneStepVerifier.sol";
import {LibTensor, TensorView} from "../LibTensor.sol";
import {LibFixedPoint} from "../LibFixedPoint.sol";

/// @title RopeKernel
/// @notice One output element of `rope` (`docs/ops.md` 11): the two elements of its pair and
///         one `cos` and `sin` entry.
library RopeKernel {
    using LibTensor for TensorView;

    /// @notice `rope`: params `x_zp, y_zp, position_offset, frac_bits, pairing`; operands `x, cos, sin`.
    function rope(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        (bool first, uint256 at, uint256 ia, uint256 ib) = _pair(p_, index_, _check(p_, x_, out_));
        int256 a = x_[0].get(ia) - p_[0];
        int256 b = x_[0].get(ib) - p_[0];
        int256 rot = first ? a * x_[1].get(at) - b * x_[2].get(at) : b * x_[1].get(at) + a * x_[2].get(at);
        return LibTensor.sat(p_[1] + LibFixedPoint.roundShift(rot, uint256(p_[3])), out_.dtype);
    }

    /// @dev For output element `index_` (`sd_` = the last two axes of `x`): whether it is the
    ///      first of its pair, the flat `[position, pair]` entry of `cos`/`sin`, and the flat
    ///      indices of the pair's two elements in `x`.
    function _pair(int256[] memory p_, uint256 index_, uint256[2] memory sd_)
        private
        pure
        returns (bool first_, uint256 at_, uint256 ia_, uint256 ib_)
    {
        uint256 d = sd_[1];
        uint256 half = d / 2;
        uint256 j = index_ % d;
        bool interleaved = p_[4] == 1;
        first_ = interleaved ? j % 2 == 0 : j < half;
        uint256 i = interleaved ? j / 2 : j % half;
        at_ = (uint256(p_[2]) + (index_ / d) % sd_[0]) * half + i;
        ia_ = index_ - j + (interleaved ? 2 * i : i);
        ib_ = index_ - j + (interleaved ? 2 * i + 1 : i + half);
    }

    /// @dev `Op::check` for `rope`; returns `[S, D]`, the last two axes of `x`.
    function _check(int256[] memory p_, TensorView[] memory x_, TensorView memory out_)
        private
        pure
        returns (uint256[2] memory sd_)
    {
        if (x_.length != 3) revert IOneStepVerifier.OperandCountMismatch(3, x_.length);
        TensorView memory x = x_[0];
        x.requireDtype(LibTensor.I8 | LibTensor.I16);
        x.requireRankAtLeast(2);
        uint256 r = x.dims.length;
        (sd_[0], sd_[1]) = (x.dims[r - 2], x.dims[r - 1]);
        if (sd_[1] % 2 != 0) revert IOneStepVerifier.OperandTypeInvalid(0);
        uint256 half = sd_[1] / 2;
        for (uint256 i = 1; i < 3; ++i) {
            x_[i].requireDtype(LibTensor.I32);
            x_[i].requireRank(2);
            if (x_[i].dims[1] != half) revert IOneStepVerifier.OperandTypeInvalid(i);
        }
        if (!LibTensor.sameDims(x_[1].dims, x_[2].dims)) revert IOneStepVerifier.OperandTypeInvalid(2);
        if (uint256(p_[2]) + sd_[0] > x_[1].dims[0] || p_[3] > 30) revert IOneStepVerifier.ParamOutOfRange();
        LibTensor.requireInRange(p_[0], x.dtype);
        out_.requireOutput(LibTensor.I8 | LibTensor.I16, x.dims);
        LibTensor.requireInRange(p_[1], out_.dtype);
    }
}
