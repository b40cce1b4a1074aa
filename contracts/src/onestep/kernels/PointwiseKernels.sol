// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "../../interfaces/IOneStepVerifier.sol";
import {LibTensor, TensorView} from "../LibTensor.sol";
import {LibFixedPoint} from "../LibFixedPoint.sol";

/// @title PointwiseKernels
/// @notice One output element of `add`, `mul`, `requantize` and `lut` (`docs/ops.md` 3 to 6):
///         element `i` of the output from element `i` of each operand.
library PointwiseKernels {
    using LibTensor for TensorView;

    /// @notice `add`: params `a_zp, a_m, b_zp, b_m, shift, y_zp`; operands `a, b`.
    function add(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        _checkBinary(p_[0], p_[2], p_[4], p_[5], x_, out_);
        int256 a = x_[0].get(index_) - p_[0];
        int256 b = x_[1].get(index_) - p_[2];
        return LibTensor.sat(p_[5] + LibFixedPoint.roundShift(a * p_[1] + b * p_[3], uint256(p_[4])), out_.dtype);
    }

    /// @notice `mul`: params `a_zp, b_zp, multiplier, shift, y_zp`; operands `a, b`.
    function mul(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        _checkBinary(p_[0], p_[1], p_[3], p_[4], x_, out_);
        int256 a = x_[0].get(index_) - p_[0];
        int256 b = x_[1].get(index_) - p_[1];
        return LibTensor.sat(p_[4] + LibFixedPoint.roundShift(a * b * p_[2], uint256(p_[3])), out_.dtype);
    }

    /// @notice `requantize`: params `x_zp, multiplier, shift, y_zp`; operand `x`.
    function requantize(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        if (x_.length != 1) revert IOneStepVerifier.OperandCountMismatch(1, x_.length);
        TensorView memory x = x_[0];
        LibTensor.requireInRange(p_[0], x.dtype);
        if (p_[2] > 62) revert IOneStepVerifier.ParamOutOfRange();
        out_.requireOutput(LibTensor.ANY, x.dims);
        LibTensor.requireInRange(p_[3], out_.dtype);
        return LibTensor.sat(p_[3] + LibFixedPoint.roundShift((x.get(index_) - p_[0]) * p_[1], uint256(p_[2])), out_.dtype);
    }

    /// @notice `lut`: operands `x: i8`, `table: [256]`; the output dtype is the table's.
    function lut(TensorView[] memory x_, TensorView memory out_, uint256 index_) internal pure returns (int256) {
        if (x_.length != 2) revert IOneStepVerifier.OperandCountMismatch(2, x_.length);
        x_[0].requireDtype(LibTensor.I8);
        x_[1].requireVector(256);
        out_.requireOutput(uint256(1) << x_[1].dtype, x_[0].dims);
        return x_[1].get(uint256(x_[0].get(index_) + 128));
    }

    /// @dev The checks `add` and `mul` share: two operands of one shape, zero points in their
    ///      dtypes' ranges, a shift in `0..=62`, the output of the same shape.
    function _checkBinary(
        int256 aZp_,
        int256 bZp_,
        int256 shift_,
        int256 yZp_,
        TensorView[] memory x_,
        TensorView memory out_
    ) private pure {
        if (x_.length != 2) revert IOneStepVerifier.OperandCountMismatch(2, x_.length);
        if (!LibTensor.sameDims(x_[0].dims, x_[1].dims)) revert IOneStepVerifier.OperandTypeInvalid(1);
        LibTensor.requireInRange(aZp_, x_[0].dtype);
        LibTensor.requireInRange(bZp_, x_[1].dtype);
        if (shift_ > 62) revert IOneStepVerifier.ParamOutOfRange();
        out_.requireOutput(LibTensor.ANY, x_[0].dims);
        LibTensor.requireInRange(yZp_, out_.dtype);
    }
}
