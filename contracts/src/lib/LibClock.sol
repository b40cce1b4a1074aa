// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Side} from "../interfaces/IDisputeGame.sol";
import {ClockExpired} from "../Errors.sol";

/// @notice Both chess clocks of a game and the start of the current turn, packed:
///         bits 128..191 the defender's seconds left, 64..127 the challenger's, 0..63 the
///         timestamp at which the side to move started its turn.
type Clock is uint192;

/// @title LibClock
/// @notice Chess clocks as `bisection/src/game.rs` keeps them: only the side to move spends
///         time; a move at `elapsed == left` is still in time, a timeout needs `elapsed > left`.
library LibClock {
    /// @notice Packs both clocks and the turn start.
    function wrap(uint64 defenderLeft_, uint64 challengerLeft_, uint64 turnStarted_)
        internal
        pure
        returns (Clock clock_)
    {
        clock_ = Clock.wrap((uint192(defenderLeft_) << 128) | (uint192(challengerLeft_) << 64) | uint192(turnStarted_));
    }

    /// @notice Seconds left on `side_`'s clock at the start of the current turn.
    function left(Clock clock_, Side side_) internal pure returns (uint64 left_) {
        left_ = uint64(Clock.unwrap(clock_) >> (side_ == Side.Defender ? 128 : 64));
    }

    /// @notice When the current turn started.
    function turnStarted(Clock clock_) internal pure returns (uint64 started_) {
        started_ = uint64(Clock.unwrap(clock_));
    }

    /// @notice Seconds `side_` has left at `now_`, given that `mover_` is to move.
    function leftAt(Clock clock_, Side side_, Side mover_, uint256 now_) internal pure returns (uint64 left_) {
        left_ = left(clock_, side_);
        if (side_ != mover_) return left_;
        uint256 elapsed = now_ - turnStarted(clock_);
        left_ = elapsed >= left_ ? 0 : uint64(left_ - elapsed);
    }

    /// @notice Whether `mover_` has let its clock run out by `now_` (`elapsed > left`).
    function expired(Clock clock_, Side mover_, uint256 now_) internal pure returns (bool expired_) {
        expired_ = now_ - turnStarted(clock_) > left(clock_, mover_);
    }

    /// @notice The clocks after `mover_` moves at `now_`: its clock loses the elapsed time and
    ///         the other side's turn starts. Reverts with {ClockExpired} if the time ran out.
    function charge(Clock clock_, Side mover_, uint256 now_) internal pure returns (Clock next_) {
        uint256 elapsed = now_ - turnStarted(clock_);
        uint64 moverLeft = left(clock_, mover_);
        if (elapsed > moverLeft) revert ClockExpired(mover_, elapsed - moverLeft);
        // `elapsed <= moverLeft < 2^64`; block timestamps fit in 64 bits for billions of years.
        unchecked {
            uint64 rest = uint64(moverLeft - elapsed);
            next_ = mover_ == Side.Defender
                ? wrap(rest, left(clock_, Side.Challenger), uint64(now_))
                : wrap(left(clock_, Side.Defender), rest, uint64(now_));
        }
    }
}
