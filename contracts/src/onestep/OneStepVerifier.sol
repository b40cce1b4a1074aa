// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "../interfaces/IOneStepVerifier.sol";
import {TensorView} from "./LibTensor.sol";
import {DecodedOp} from "./LibOpCodec.sol";
import {OneStepHost} from "./OneStepHost.sol";
import {SoftmaxVerifier} from "./SoftmaxVerifier.sol";
import {MatmulKernels} from "./kernels/MatmulKernels.sol";
import {PointwiseKernels} from "./kernels/PointwiseKernels.sol";
import {NormKernels} from "./kernels/NormKernels.sol";
import {RopeKernel} from "./kernels/RopeKernel.sol";
import {LayoutKernels} from "./kernels/LayoutKernels.sol";
import {ReduceKernels} from "./kernels/ReduceKernels.sol";

/// @title OneStepVerifier
/// @notice The on-chain one-step of a dispute: one output element of one op, recomputed from
///         operand leaves proven against the execution state's weights and activations roots.
/// @dev The kernels of every op but the softmax family run here; `softmax`, `softmax_exp` and
///      `softmax_norm` run in {softmaxVerifier}, a {SoftmaxVerifier} this contract creates, to
///      which their calls are forwarded unchanged (the whole op set no longer fits one
///      contract's 24,576 bytes, EIP-170). Stateless.
contract OneStepVerifier is IOneStepVerifier, OneStepHost {
    /// @notice The verifier of the softmax family, created with this contract.
    address public immutable softmaxVerifier;

    constructor() {
        softmaxVerifier = address(new SoftmaxVerifier());
    }

    /// @inheritdoc IOneStepVerifier
    function computeElement(
        bytes calldata op_,
        bytes32 weightsRoot_,
        uint256 weightCount_,
        bytes32 activationsRoot_,
        uint256 slotCount_,
        uint256 index_,
        Opening[] calldata operands_
    ) external view returns (int256 value_) {
        if (op_.length != 0) {
            uint256 kind = uint8(op_[0]);
            if (kind == 7 || kind == 18 || kind == 19) _forward(softmaxVerifier);
        }
        value_ = _compute(op_, weightsRoot_, weightCount_, activationsRoot_, slotCount_, index_, operands_);
    }

    /// @dev Runs this call's calldata (same selector, same arguments) on `to_` and returns or
    ///      reverts with exactly what it returned or reverted with (custom errors included).
    function _forward(address to_) private view {
        assembly ("memory-safe") {
            let p := mload(0x40)
            calldatacopy(p, 0, calldatasize())
            let ok := staticcall(gas(), to_, p, calldatasize(), 0, 0)
            returndatacopy(p, 0, returndatasize())
            if iszero(ok) { revert(p, returndatasize()) }
            return(p, returndatasize())
        }
    }

    /// @inheritdoc OneStepHost
    function _element(DecodedOp memory op_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        override
        returns (int256)
    {
        uint256 k = op_.kind;
        int256[] memory p = op_.params;
        if (k == 1) return MatmulKernels.fullyConnected(p, x_, out_, index_);
        if (k == 2) return MatmulKernels.batchMatmul(p, x_, out_, index_);
        if (k == 3) return PointwiseKernels.add(p, x_, out_, index_);
        if (k == 4) return PointwiseKernels.mul(p, x_, out_, index_);
        if (k == 5) return PointwiseKernels.requantize(p, x_, out_, index_);
        if (k == 6) return PointwiseKernels.lut(x_, out_, index_);
        if (k == 8) return NormKernels.layerNorm(p, x_, out_, index_);
        if (k == 9) return NormKernels.rmsNorm(p, x_, out_, index_);
        if (k == 10) return LayoutKernels.embedding(x_, out_, index_);
        if (k == 11) return RopeKernel.rope(p, x_, out_, index_);
        if (k == 12) return LayoutKernels.reshape(x_, out_, index_);
        if (k == 13) return LayoutKernels.transpose(p, x_, out_, index_);
        if (k == 14) return LayoutKernels.concat(p, x_, out_, index_);
        if (k == 15) return LayoutKernels.slice(p, x_, out_, index_);
        if (k == 16) return ReduceKernels.meanPool(p, x_, out_, index_);
        if (k == 17) return ReduceKernels.argmax(x_, out_, index_);
        // The softmax family was forwarded; LibOpCodec refused any other kind.
        revert UnknownOpKind(k);
    }
}
