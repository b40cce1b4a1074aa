// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice What the chain keeps of a registered model: the program header and the roots.
struct Model {
    /// @dev `keccak256(version || n_ops || n_weights || output_slot || input type || opsRoot)`.
    bytes32 programHash;
    /// @dev Merkle root over `keccak256(op_1), ..., keccak256(op_n)`.
    bytes32 opsRoot;
    /// @dev Merkle root over the weights' tensor hashes, in program order.
    bytes32 weightsRoot;
    /// @dev `keccak256(input type encoding)`.
    bytes32 inputTypeHash;
    /// @dev Program format version.
    uint32 version;
    /// @dev Number of ops `n` (the activation table has `n + 1` slots).
    uint32 nOps;
    /// @dev Number of weight tensors.
    uint32 nWeights;
    /// @dev The slot holding the output.
    uint32 outputSlot;
    /// @dev Who registered it.
    address registrant;
}

/// @title IModelRegistry
/// @notice Models by id, `modelId = keccak256(programHash || weightsRoot)`; immutable once registered.
interface IModelRegistry {
    /// @notice A model was registered.
    event ModelRegistered(
        bytes32 indexed modelId,
        bytes32 indexed programHash,
        address indexed registrant,
        Model model,
        bytes inputType,
        string uri
    );

    /// @notice Registers a model from its program header and roots; returns its id.
    function register(
        uint32 version_,
        uint32 nOps_,
        uint32 nWeights_,
        uint32 outputSlot_,
        bytes calldata inputType_,
        bytes32 opsRoot_,
        bytes32 weightsRoot_,
        string calldata uri_
    ) external returns (bytes32 modelId_);

    /// @notice The model `modelId_` (all zero if unknown).
    function model(bytes32 modelId_) external view returns (Model memory model_);

    /// @notice Whether `modelId_` is registered.
    function isRegistered(bytes32 modelId_) external view returns (bool registered_);
}
