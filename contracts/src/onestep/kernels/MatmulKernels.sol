// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "../../interfaces/IOneStepVerifier.sol";
import {LibTensor, TensorView} from "../LibTensor.sol";
import {LibFixedPoint} from "../LibFixedPoint.sol";

/// @title MatmulKernels
/// @notice One output element of `fully_connected` and `batch_matmul` (`docs/ops.md` 1, 2):
///         an `i8 x i8` dot product of length `K` summed in wrapping 32-bit arithmetic, then
///         requantized once.
library MatmulKernels {
    /// @notice One dot product: `a` from element `aFirst` on (contiguous), `b` from `bFirst`
    ///         every `bStride` elements, `k` terms, with their zero points.
    struct Dot {
        uint256 aFirst;
        int256 aZp;
        uint256 bFirst;
        uint256 bStride;
        int256 bZp;
        uint256 k;
    }

    using LibTensor for TensorView;

    /// @notice `fully_connected`: params `x_zp, y_zp`; operands `x, w, bias, multiplier, shift`.
    function fullyConnected(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        (uint256 n, uint256 k) = _checkFullyConnected(p_, x_, out_);
        uint256 ch = index_ % n;
        int256 acc = LibFixedPoint.wrap32(x_[2].get(ch) + _dot(x_[0], x_[1], Dot((index_ / n) * k, p_[0], ch * k, 1, 0, k)));
        int256 shift = x_[4].get(ch);
        if (shift < 0 || shift > 62) revert IOneStepVerifier.WeightValueInvalid(4, ch);
        return LibTensor.sat(p_[1] + LibFixedPoint.roundShift(acc * x_[3].get(ch), uint256(shift)), out_.dtype);
    }

    /// @dev `Op::check` for `fully_connected`; returns `N` and `K`.
    function _checkFullyConnected(int256[] memory p_, TensorView[] memory x_, TensorView memory out_)
        private
        pure
        returns (uint256 n_, uint256 k_)
    {
        if (x_.length != 5) revert IOneStepVerifier.OperandCountMismatch(5, x_.length);
        TensorView memory x = x_[0];
        TensorView memory w = x_[1];
        x.requireDtype(LibTensor.I8);
        w.requireDtype(LibTensor.I8);
        x.requireRankAtLeast(1);
        w.requireRank(2);
        n_ = w.dims[0];
        k_ = w.dims[1];
        if (x.dims[x.dims.length - 1] != k_) revert IOneStepVerifier.OperandTypeInvalid(0);
        for (uint256 i = 2; i < 5; ++i) {
            x_[i].requireDtype(LibTensor.I32);
            x_[i].requireVector(n_);
        }
        LibTensor.requireInRange(p_[0], 1);
        uint256[] memory shape = _copy(x.dims);
        shape[shape.length - 1] = n_;
        out_.requireOutput(LibTensor.ANY, shape);
        LibTensor.requireInRange(p_[1], out_.dtype);
    }

    /// @notice `batch_matmul`: params `transpose_b, a_zp, b_zp, multiplier, shift, y_zp`; operands `a, b`.
    function batchMatmul(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        Dot memory d = _batchMatmulDot(p_, x_, out_, index_);
        int256 acc = LibFixedPoint.wrap32(_dot(x_[0], x_[1], d));
        return LibTensor.sat(p_[5] + LibFixedPoint.roundShift(acc * p_[3], uint256(p_[4])), out_.dtype);
    }

    /// @dev The dot product behind output element `index_` of `batch_matmul` (after its checks).
    function _batchMatmulDot(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        private
        pure
        returns (Dot memory d_)
    {
        (uint256 m, uint256 k, uint256 n, uint256 group) = _checkBatchMatmul(p_, x_, out_);
        uint256 c = index_ % n;
        uint256 row = index_ / n; // bi * M + r
        // Batch bi of a uses batch bj = bi / (Ba / Bb) of b.
        uint256 bj = (row / m) / group;
        bool transposeB = p_[0] == 1;
        d_ = Dot(row * k, p_[1], transposeB ? (bj * n + c) * k : bj * k * n + c, transposeB ? 1 : n, p_[2], k);
    }

    /// @dev `Op::check` for `batch_matmul`; returns `M`, `K`, `N` and `Ba / Bb`.
    function _checkBatchMatmul(int256[] memory p_, TensorView[] memory x_, TensorView memory out_)
        private
        pure
        returns (uint256 m_, uint256 k_, uint256 n_, uint256 group_)
    {
        if (x_.length != 2) revert IOneStepVerifier.OperandCountMismatch(2, x_.length);
        TensorView memory a = x_[0];
        TensorView memory b = x_[1];
        a.requireDtype(LibTensor.I8);
        b.requireDtype(LibTensor.I8);
        a.requireRank(3);
        b.requireRank(3);
        bool transposeB = p_[0] == 1;
        m_ = a.dims[1];
        k_ = a.dims[2];
        n_ = transposeB ? b.dims[1] : b.dims[2];
        if ((transposeB ? b.dims[2] : b.dims[1]) != k_ || b.dims[0] == 0 || a.dims[0] % b.dims[0] != 0) {
            revert IOneStepVerifier.OperandTypeInvalid(1);
        }
        group_ = a.dims[0] / b.dims[0];
        LibTensor.requireInRange(p_[1], 1);
        LibTensor.requireInRange(p_[2], 1);
        if (p_[4] > 62) revert IOneStepVerifier.ParamOutOfRange();
        uint256[] memory shape = new uint256[](3);
        (shape[0], shape[1], shape[2]) = (a.dims[0], m_, n_);
        out_.requireOutput(LibTensor.ANY, shape);
        LibTensor.requireInRange(p_[5], out_.dtype);
    }

    /// @notice `sum_i (a[aFirst + i] - aZp) * (b[bFirst + i*bStride] - bZp)` over `k` `i8`
    ///         elements, modulo `2^256` (callers wrap it to 32 bits).
    /// @dev Fast path when one verified range holds each run: straight calldata reads.
    function _dot(TensorView memory a_, TensorView memory b_, Dot memory d_) private pure returns (int256 acc_) {
        (bool okA, uint256 pa) = a_.span(d_.aFirst, d_.k, 1);
        (bool okB, uint256 pb) = b_.span(d_.bFirst, d_.k, d_.bStride);
        if (okA && okB) return _dotCalldata(pa, pb, d_.bStride, d_.aZp, d_.bZp, d_.k);
        for (uint256 i = 0; i < d_.k; ++i) {
            acc_ += (a_.get(d_.aFirst + i) - d_.aZp) * (b_.get(d_.bFirst + i * d_.bStride) - d_.bZp);
        }
    }

    /// @dev The dot product of `k_` `i8` at calldata `pa_` (contiguous) and `pb_` (every
    ///      `bStride_` bytes).
    function _dotCalldata(uint256 pa_, uint256 pb_, uint256 bStride_, int256 aZp_, int256 bZp_, uint256 k_)
        private
        pure
        returns (int256 acc_)
    {
        assembly ("memory-safe") {
            // Wrapping (mod 2^256) sums: the caller reduces modulo 2^32, which commutes.
            for { let end := add(pa_, k_) } lt(pa_, end) { pa_ := add(pa_, 1) } {
                acc_ := add(
                    acc_,
                    mul(
                        sub(signextend(0, byte(0, calldataload(pa_))), aZp_),
                        sub(signextend(0, byte(0, calldataload(pb_))), bZp_)
                    )
                )
                pb_ := add(pb_, bStride_)
            }
        }
    }

    function _copy(uint256[] memory a_) private pure returns (uint256[] memory b_) {
        b_ = new uint256[](a_.length);
        for (uint256 i = 0; i < a_.length; ++i) {
            b_[i] = a_[i];
        }
    }
}
