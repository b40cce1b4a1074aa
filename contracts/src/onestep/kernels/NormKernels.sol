// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "../../interfaces/IOneStepVerifier.sol";
import {LibTensor, TensorView} from "../LibTensor.sol";
import {LibFixedPoint} from "../LibFixedPoint.sol";

/// @title NormKernels
/// @notice One output element of `layer_norm` and `rms_norm` (`docs/ops.md` 8, 9): the row
///         of `x` and the element's `gamma` (and `beta`).
/// @dev `sum_j d[j]^2` is taken in one pass from `sum x` and `sum x^2`:
///      `sum_j (N x_j - s)^2 = N (N sum x^2 - s^2)`, an identity over the integers, so the
///      value is the spec's exactly. `gamma[j]` is read only when `sigma != 0`, as the
///      reference does.
library NormKernels {
    using LibTensor for TensorView;

    /// @notice The widest row a norm accepts (`MAX_NORM_WIDTH`).
    uint256 internal constant MAX_WIDTH = 1 << 20;

    /// @notice `layer_norm`: params `epsilon, shift, y_zp`; operands `x, gamma, beta`.
    function layerNorm(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        if (x_.length != 3) revert IOneStepVerifier.OperandCountMismatch(3, x_.length);
        uint256 n = _width(x_[0]);
        for (uint256 i = 1; i < 3; ++i) {
            x_[i].requireDtype(LibTensor.I32);
            x_[i].requireVector(n);
        }
        if (p_[1] > 62) revert IOneStepVerifier.ParamOutOfRange();
        out_.requireOutput(LibTensor.ANY, x_[0].dims);
        LibTensor.requireInRange(p_[2], out_.dtype);

        uint256 j = index_ % n;
        (int256 s, int256 sigma) = _layerSigma(x_[0], index_ - j, n, uint256(p_[0]));
        int256 b = x_[2].get(j);
        int256 y;
        if (sigma == 0) {
            y = LibFixedPoint.roundShift(b, uint256(p_[1]));
        } else {
            int256 d = int256(n) * x_[0].get(index_) - s;
            y = LibFixedPoint.roundDiv(d * x_[1].get(j) + b * sigma, sigma << uint256(p_[1]));
        }
        return LibTensor.sat(p_[2] + y, out_.dtype);
    }

    /// @dev `sum x` over the row and `sigma = isqrt(floor(sum_j d[j]^2 / N) + epsilon)`, where
    ///      `floor(sum_j d[j]^2 / N) = N sum x^2 - (sum x)^2` exactly.
    function _layerSigma(TensorView memory x_, uint256 first_, uint256 n_, uint256 epsilon_)
        private
        pure
        returns (int256 sum_, int256 sigma_)
    {
        int256 sq;
        (sum_, sq) = x_.rowSums(first_, n_, 0);
        sigma_ = int256(LibFixedPoint.isqrt(uint256(int256(n_) * sq - sum_ * sum_) + epsilon_));
    }

    /// @notice `rms_norm`: params `x_zp, epsilon, shift, y_zp`; operands `x, gamma`.
    function rmsNorm(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        if (x_.length != 2) revert IOneStepVerifier.OperandCountMismatch(2, x_.length);
        uint256 n = _width(x_[0]);
        x_[1].requireDtype(LibTensor.I32);
        x_[1].requireVector(n);
        LibTensor.requireInRange(p_[0], x_[0].dtype);
        if (p_[2] > 62) revert IOneStepVerifier.ParamOutOfRange();
        out_.requireOutput(LibTensor.ANY, x_[0].dims);
        LibTensor.requireInRange(p_[3], out_.dtype);

        uint256 j = index_ % n;
        int256 nn = int256(n);
        (, int256 sq) = x_[0].rowSums(index_ - j, n, p_[0]);
        // floor(sum_j (N (x_j - zp))^2 / N) = N * sum (x_j - zp)^2.
        int256 sigma = int256(LibFixedPoint.isqrt(uint256(nn * sq + int256(uint256(p_[1])))));
        int256 y = sigma == 0
            ? int256(0)
            : LibFixedPoint.roundDiv(
                nn * (x_[0].get(index_) - p_[0]) * x_[1].get(j), sigma << uint256(p_[2])
            );
        return LibTensor.sat(p_[3] + y, out_.dtype);
    }

    /// @dev The width `N` of the last axis: present, non-empty, at most `MAX_WIDTH`.
    function _width(TensorView memory x_) private pure returns (uint256 n_) {
        if (x_.dims.length == 0) revert IOneStepVerifier.OperandTypeInvalid(0);
        n_ = x_.dims[x_.dims.length - 1];
        if (n_ == 0 || n_ > MAX_WIDTH) revert IOneStepVerifier.OperandTypeInvalid(0);
    }
}
