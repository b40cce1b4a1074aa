// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "../../interfaces/IOneStepVerifier.sol";
import {LibTensor, TensorView} from "../LibTensor.sol";

/// @title LayoutKernels
/// @notice One output element of the layout ops `embedding`, `reshape`, `transpose`, `concat`,
///         `slice` (`docs/ops.md` 10, 12 to 15): one element of one operand (for `embedding`,
///         the index, then one table element).
library LayoutKernels {
    using LibTensor for TensorView;

    /// @notice `embedding`: operands `table [V, D]`, `indices: i32`; an index outside `[0, V)` gives 0.
    function embedding(TensorView[] memory x_, TensorView memory out_, uint256 index_) internal pure returns (int256) {
        if (x_.length != 2) revert IOneStepVerifier.OperandCountMismatch(2, x_.length);
        TensorView memory table = x_[0];
        table.requireRank(2);
        x_[1].requireDtype(LibTensor.I32);
        uint256 d = table.dims[1];
        uint256 r = x_[1].dims.length;
        uint256[] memory shape = new uint256[](r + 1);
        for (uint256 i = 0; i < r; ++i) {
            shape[i] = x_[1].dims[i];
        }
        shape[r] = d;
        out_.requireOutput(uint256(1) << table.dtype, shape);

        int256 row = x_[1].get(index_ / d);
        if (row < 0 || uint256(row) >= table.dims[0]) return 0;
        return table.get(uint256(row) * d + index_ % d);
    }

    /// @notice `reshape`: the same elements under the declared output shape.
    function reshape(TensorView[] memory x_, TensorView memory out_, uint256 index_) internal pure returns (int256) {
        if (x_.length != 1) revert IOneStepVerifier.OperandCountMismatch(1, x_.length);
        if (out_.dtype != x_[0].dtype || out_.numel != x_[0].numel) revert IOneStepVerifier.OutputTypeInvalid();
        return x_[0].get(index_);
    }

    /// @notice `transpose`: params the permutation; output axis `i` is input axis `perm[i]`.
    function transpose(int256[] memory perm_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        if (x_.length != 1) revert IOneStepVerifier.OperandCountMismatch(1, x_.length);
        TensorView memory x = x_[0];
        uint256 r = x.dims.length;
        if (perm_.length != r) revert IOneStepVerifier.ParamOutOfRange();
        bool[] memory seen = new bool[](r);
        uint256[] memory shape = new uint256[](r);
        for (uint256 i = 0; i < r; ++i) {
            uint256 p = uint256(perm_[i]);
            if (p >= r || seen[p]) revert IOneStepVerifier.ParamOutOfRange();
            seen[p] = true;
            shape[i] = x.dims[p];
        }
        out_.requireOutput(uint256(1) << x.dtype, shape);

        uint256[] memory o = LibTensor.unravel(index_, out_.dims);
        uint256[] memory src = new uint256[](r);
        for (uint256 i = 0; i < r; ++i) {
            src[uint256(perm_[i])] = o[i];
        }
        return x.get(LibTensor.ravel(src, x.dims));
    }

    /// @notice `concat`: params `axis`; 1 to 64 operands of one dtype, equal outside `axis`.
    function concat(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        if (x_.length == 0 || x_.length > 64) revert IOneStepVerifier.OperandCountMismatch(1, x_.length);
        uint256 axis = uint256(p_[0]);
        TensorView memory head = x_[0];
        uint256 r = head.dims.length;
        if (axis >= r) revert IOneStepVerifier.ParamOutOfRange();
        uint256[] memory shape = new uint256[](r);
        for (uint256 i = 0; i < r; ++i) {
            shape[i] = head.dims[i];
        }
        shape[axis] = 0;
        for (uint256 t = 0; t < x_.length; ++t) {
            TensorView memory xt = x_[t];
            if (xt.dtype != head.dtype || xt.dims.length != r) revert IOneStepVerifier.OperandTypeInvalid(t);
            for (uint256 i = 0; i < r; ++i) {
                if (i != axis && xt.dims[i] != head.dims[i]) revert IOneStepVerifier.OperandTypeInvalid(t);
            }
            shape[axis] += xt.dims[axis];
        }
        out_.requireOutput(uint256(1) << head.dtype, shape);

        uint256[] memory o = LibTensor.unravel(index_, out_.dims);
        uint256 pos = o[axis];
        for (uint256 t = 0; t < x_.length; ++t) {
            uint256 size = x_[t].dims[axis];
            if (pos < size) {
                o[axis] = pos;
                return x_[t].get(LibTensor.ravel(o, x_[t].dims));
            }
            pos -= size;
        }
        revert IOneStepVerifier.ElementOutOfRange(index_, out_.numel);
    }

    /// @notice `slice`: params `axis, start, end`; `y[.., i, ..] = x[.., start + i, ..]` along `axis`.
    function slice(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        if (x_.length != 1) revert IOneStepVerifier.OperandCountMismatch(1, x_.length);
        TensorView memory x = x_[0];
        uint256 axis = uint256(p_[0]);
        uint256 start = uint256(p_[1]);
        uint256 end = uint256(p_[2]);
        uint256 r = x.dims.length;
        if (axis >= r || start > end || end > x.dims[axis]) revert IOneStepVerifier.ParamOutOfRange();
        uint256[] memory shape = new uint256[](r);
        for (uint256 i = 0; i < r; ++i) {
            shape[i] = x.dims[i];
        }
        shape[axis] = end - start;
        out_.requireOutput(uint256(1) << x.dtype, shape);

        uint256[] memory o = LibTensor.unravel(index_, out_.dims);
        o[axis] += start;
        return x.get(LibTensor.ravel(o, x.dims));
    }
}
