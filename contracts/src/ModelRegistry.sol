// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IModelRegistry, Model} from "./interfaces/IModelRegistry.sol";
import {LibTensorType} from "./lib/LibTensorType.sol";
import {ModelAlreadyRegistered, EmptyProgram, BadOutputSlot} from "./Errors.sol";

/// @title ModelRegistry
/// @notice Registers models by their program header and roots. The program hash and the model id
///         are computed here, exactly as `inference/src/program.rs` and `inference/src/commit.rs`
///         compute them, so a registered id always names one program and one weights root.
contract ModelRegistry is IModelRegistry {
    /// @dev Models by id.
    mapping(bytes32 modelId => Model) internal _models;

    /// @inheritdoc IModelRegistry
    function register(
        uint32 version_,
        uint32 nOps_,
        uint32 nWeights_,
        uint32 outputSlot_,
        bytes calldata inputType_,
        bytes32 opsRoot_,
        bytes32 weightsRoot_,
        string calldata uri_
    ) external returns (bytes32 modelId_) {
        // A program without ops has nothing to dispute (the referee refuses it too).
        if (nOps_ == 0) revert EmptyProgram();
        if (outputSlot_ > nOps_) revert BadOutputSlot(outputSlot_, nOps_);
        LibTensorType.parse(inputType_);
        bytes32 programHash = keccak256(abi.encodePacked(version_, nOps_, nWeights_, outputSlot_, inputType_, opsRoot_));
        modelId_ = keccak256(abi.encodePacked(programHash, weightsRoot_));
        if (_models[modelId_].registrant != address(0)) revert ModelAlreadyRegistered(modelId_);
        Model memory m = Model({
            programHash: programHash,
            opsRoot: opsRoot_,
            weightsRoot: weightsRoot_,
            inputTypeHash: keccak256(inputType_),
            version: version_,
            nOps: nOps_,
            nWeights: nWeights_,
            outputSlot: outputSlot_,
            registrant: msg.sender
        });
        _models[modelId_] = m;
        emit ModelRegistered(modelId_, programHash, msg.sender, m, inputType_, uri_);
    }

    /// @inheritdoc IModelRegistry
    function model(bytes32 modelId_) external view returns (Model memory model_) {
        model_ = _models[modelId_];
    }

    /// @inheritdoc IModelRegistry
    function isRegistered(bytes32 modelId_) external view returns (bool registered_) {
        registered_ = _models[modelId_].registrant != address(0);
    }
}
