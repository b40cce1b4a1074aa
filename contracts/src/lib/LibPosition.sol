// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice A node of an output tensor's Merkle tree: bits 64..95 its level (leaves are level 0,
///         as `bisection/src/game.rs` counts), bits 0..63 its index within the level.
type Position is uint96;

/// @title LibPosition
/// @notice Positions in the tensor bisection.
library LibPosition {
    /// @notice The position of node `index_` of level `level_`.
    function wrap(uint32 level_, uint64 index_) internal pure returns (Position position_) {
        position_ = Position.wrap((uint96(level_) << 64) | uint96(index_));
    }

    /// @notice The node's level (0 for a leaf).
    function level(Position position_) internal pure returns (uint32 level_) {
        level_ = uint32(Position.unwrap(position_) >> 64);
    }

    /// @notice The node's index within its level.
    function index(Position position_) internal pure returns (uint64 index_) {
        index_ = uint64(Position.unwrap(position_));
    }

    /// @notice The first of the `2^levels_` descendants `levels_` below `position_`.
    /// @dev `levels_ <= level(position_)` and the tree depth is at most 64 (a tensor has fewer
    ///      than 2^64 leaves), so the shifted index still fits 64 bits.
    function firstDescendant(Position position_, uint32 levels_) internal pure returns (Position first_) {
        first_ = wrap(level(position_) - levels_, index(position_) << levels_);
    }

    /// @notice The `offset_`-th node to the right of `position_` on the same level.
    function right(Position position_, uint64 offset_) internal pure returns (Position next_) {
        next_ = wrap(level(position_), index(position_) + offset_);
    }
}
