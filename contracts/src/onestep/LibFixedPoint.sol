// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title LibFixedPoint
/// @notice The primitives every op is defined with (`docs/ops.md`, "Primitives";
///         `inference/src/ops/fixed_point.rs`). One rounding rule: to nearest, ties away from zero.
/// @dev Inputs stay far inside int256 (the op spec bounds every intermediate by 2^127), so the
///      checked arithmetic below never reverts on a valid op.
library LibFixedPoint {
    /// @notice `round_shift(v, s)`: `v` if `s = 0`, else `sign(v) * floor((|v| + 2^(s-1)) / 2^s)`.
    function roundShift(int256 v_, uint256 s_) internal pure returns (int256) {
        if (s_ == 0) return v_;
        uint256 q = (abs(v_) + (uint256(1) << (s_ - 1))) >> s_;
        return v_ < 0 ? -int256(q) : int256(q);
    }

    /// @notice `round_div(a, b)` for `b > 0`: `sign(a) * floor((|a| + floor(b / 2)) / b)`.
    function roundDiv(int256 a_, int256 b_) internal pure returns (int256) {
        uint256 b = uint256(b_);
        uint256 q = (abs(a_) + b / 2) / b;
        return a_ < 0 ? -int256(q) : int256(q);
    }

    /// @notice `isqrt(v)`: the largest `r` with `r * r <= v`.
    /// @dev Newton's iteration from a power of two at or above the root decreases
    ///      monotonically to `floor(sqrt(v))`.
    function isqrt(uint256 v_) internal pure returns (uint256 r_) {
        if (v_ < 2) return v_;
        uint256 bits = 0;
        uint256 t = v_;
        while (t > 0) {
            t >>= 1;
            ++bits;
        }
        // 2^ceil(bits / 2) >= sqrt(v): an upper bound to start from.
        r_ = uint256(1) << ((bits + 1) / 2);
        uint256 y = (r_ + v_ / r_) >> 1;
        while (y < r_) {
            r_ = y;
            y = (r_ + v_ / r_) >> 1;
        }
    }

    /// @notice `wrap32(v)`: `v` reduced to `[-2^31, 2^31)` modulo `2^32`.
    function wrap32(int256 v_) internal pure returns (int256 r_) {
        assembly ("memory-safe") {
            r_ := signextend(3, v_)
        }
    }

    /// @notice `|v|` (defined for every int256 but the minimum, which no op reaches).
    function abs(int256 v_) internal pure returns (uint256) {
        return v_ < 0 ? uint256(-v_) : uint256(v_);
    }
}
