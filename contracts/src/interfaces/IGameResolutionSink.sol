// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title IGameResolutionSink
/// @notice What the dispute game tells the rollup when a game ends.
interface IGameResolutionSink {
    /// @notice Game `gameId_` ended; `challengerWon_` invalidates its claim.
    function onGameResolved(uint256 gameId_, bool challengerWon_) external;
}
