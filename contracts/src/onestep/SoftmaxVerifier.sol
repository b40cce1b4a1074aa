// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "../interfaces/IOneStepVerifier.sol";
import {TensorView} from "./LibTensor.sol";
import {DecodedOp} from "./LibOpCodec.sol";
import {OneStepHost} from "./OneStepHost.sol";
import {SoftmaxKernel} from "./kernels/SoftmaxKernel.sol";

/// @title SoftmaxVerifier
/// @notice The one-step of the softmax family: `softmax` (7), `softmax_exp` (18) and
///         `softmax_norm` (19). {OneStepVerifier} creates it and forwards those ops' calls
///         to it; it verifies them on its own, exactly as that contract verifies the others.
contract SoftmaxVerifier is IOneStepVerifier, OneStepHost {
    /// @inheritdoc IOneStepVerifier
    function computeElement(
        bytes calldata op_,
        bytes32 weightsRoot_,
        uint256 weightCount_,
        bytes32 activationsRoot_,
        uint256 slotCount_,
        uint256 index_,
        Opening[] calldata operands_
    ) external pure returns (int256 value_) {
        value_ = _compute(op_, weightsRoot_, weightCount_, activationsRoot_, slotCount_, index_, operands_);
    }

    /// @inheritdoc OneStepHost
    function _element(DecodedOp memory op_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        override
        returns (int256)
    {
        uint256 k = op_.kind;
        if (k == 7) return SoftmaxKernel.softmax(op_.params, x_, out_, index_);
        if (k == 18) return SoftmaxKernel.softmaxExp(op_.params, x_, out_, index_);
        if (k == 19) return SoftmaxKernel.softmaxNorm(op_.params, x_, out_, index_);
        revert UnknownOpKind(k);
    }
}
