// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title IOneStepVerifier
/// @notice Recomputes one element of one op's output from opened operands: the last step of a
///         dispute (`docs/ops.md`, "What one step costs on-chain").
/// @dev Every revert is one of the custom errors below; the Rust model of `computeElement` is
///      `inference/src/one_step.rs` (`element_from_leaves` over the leaves of `needed_leaves`).
interface IOneStepVerifier {
    /// Leaves [start, start + leaves.length) of an operand's data tree.
    struct LeafRange { uint64 start; bytes32[] leaves; }
    /// One operand of the disputed op: its type (the op spec's `type` encoding), data root,
    /// membership proof (siblings) in the weights tree (weight operand) or the activations tree (slot operand), the leaves the element needs
    /// (ranges in increasing order, without overlap) and their shared siblings: the multi-range proof of `inference/src/merkle.rs`
    /// `ranges_root` (each sibling once, level by level from the bottom, intervals left to right, left neighbour before right); the tree depth
    /// comes from the operand's type.
    struct Opening { bytes tensorType; bytes32 dataRoot; bytes32[] membership; LeafRange[] ranges; bytes32[] siblings; }

    /// @notice The op encoding is truncated, has trailing bytes or an invalid field at `offset`.
    error MalformedOp(uint256 offset);
    /// @notice The op's kind code is not one of the 17 of the op spec.
    error UnknownOpKind(uint256 kind);
    /// @notice The op names `expected` operands (or its kind takes that many) but `got` were given.
    error OperandCountMismatch(uint256 expected, uint256 got);
    /// @notice The type encoding of `operand` is malformed (bad dtype code, truncated, trailing bytes).
    error MalformedTensorType(uint256 operand);
    /// @notice Operand `operand` names entry `index` of a tree of only `count` leaves.
    error OperandIndexOutOfRange(uint256 operand, uint256 index, uint256 count);
    /// @notice The tensor hash of `operand` is not at its index in the weights or activations tree.
    error MembershipProofInvalid(uint256 operand);
    /// @notice Range `range` of `operand` is empty, overlaps or precedes the range before it, or lies past the tensor's leaves.
    error RangeProofInvalid(uint256 operand, uint256 range);
    /// @notice The leaves of `operand` and their shared siblings do not give its data root (or siblings are missing or left over).
    error LeafProofInvalid(uint256 operand);
    /// @notice The element needs leaf `leaf` of `operand`, which no verified range opens.
    error LeafNotOpened(uint256 operand, uint256 leaf);
    /// @notice Element `index` of a tensor of `count` elements was asked for.
    error ElementOutOfRange(uint256 index, uint256 count);
    /// @notice Operand `operand`'s dtype or shape is not what the op requires.
    error OperandTypeInvalid(uint256 operand);
    /// @notice The declared output type is not the one the op gives for its operands.
    error OutputTypeInvalid();
    /// @notice A parameter of the op is outside the range the op spec allows.
    error ParamOutOfRange();
    /// @notice Element `element` of `operand`, a parameter weight (per-channel shift, exp table), is outside its range.
    error WeightValueInvalid(uint256 operand, uint256 element);

    /// Recomputes element `index_` (flat, row-major) of the output of `op_` (one op's encoding, docs/ops.md "Program encoding")
    /// from operands opened against `weightsRoot_` (tree of `weightCount_` leaves) and `activationsRoot_` (tree of `slotCount_` leaves).
    /// Reverts with a custom error on a bad proof or malformed input. `index_` must be < the output's element count.
    function computeElement(bytes calldata op_, bytes32 weightsRoot_, uint256 weightCount_, bytes32 activationsRoot_, uint256 slotCount_, uint256 index_, Opening[] calldata operands_) external view returns (int256 value_);
}
