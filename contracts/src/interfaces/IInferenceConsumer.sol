// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title IInferenceConsumer
/// @notice Implemented by a contract that requests inferences on-chain: the rollup calls it,
///         with a gas limit, once its request settles. A revert or running out of gas is recorded
///         and ignored; the output stays readable from the rollup.
interface IInferenceConsumer {
    /// @notice Request `requestId_` settled with the output `outputData_` of type `outputType_`
    ///         (its tensor hash is `outputHash_`).
    function onInferenceSettled(
        bytes32 requestId_,
        bytes32 outputHash_,
        bytes calldata outputType_,
        bytes calldata outputData_
    ) external;
}
