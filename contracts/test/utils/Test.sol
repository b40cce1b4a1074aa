// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Vm} from "./Vm.sol";

/// @title Test
/// @notice A minimal test base: the cheatcode handle, assertions that revert with a message,
///         and the invariant target hooks forge reads.
abstract contract Test {
    /// @notice Marks this contract as a test suite for forge.
    bool public IS_TEST = true;

    /// @dev The cheatcode contract.
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    /// @dev Contracts the invariant fuzzer calls.
    address[] internal _targets;

    /// @notice An assertion failed.
    error AssertionFailed(string message);

    /// @notice Contracts the invariant fuzzer calls (read by forge).
    function targetContracts() public view returns (address[] memory targets_) {
        targets_ = _targets;
    }

    function assertTrue(bool c_, string memory m_) internal pure {
        if (!c_) revert AssertionFailed(m_);
    }

    function assertEq(uint256 a_, uint256 b_, string memory m_) internal pure {
        if (a_ != b_) revert AssertionFailed(string.concat(m_, ": ", _u(a_), " != ", _u(b_)));
    }

    function assertEq(int256 a_, int256 b_, string memory m_) internal pure {
        if (a_ != b_) revert AssertionFailed(m_);
    }

    function assertEq(bytes32 a_, bytes32 b_, string memory m_) internal pure {
        if (a_ != b_) revert AssertionFailed(m_);
    }

    function assertEq(address a_, address b_, string memory m_) internal pure {
        if (a_ != b_) revert AssertionFailed(m_);
    }

    function assertEq(bool a_, bool b_, string memory m_) internal pure {
        if (a_ != b_) revert AssertionFailed(m_);
    }

    function assertEq(bytes memory a_, bytes memory b_, string memory m_) internal pure {
        if (keccak256(a_) != keccak256(b_)) revert AssertionFailed(m_);
    }

    function assertLt(uint256 a_, uint256 b_, string memory m_) internal pure {
        if (a_ >= b_) revert AssertionFailed(string.concat(m_, ": ", _u(a_), " >= ", _u(b_)));
    }

    /// @dev `x_` mapped into `[min_, max_]`.
    function bound(uint256 x_, uint256 min_, uint256 max_) internal pure returns (uint256 r_) {
        r_ = min_ + x_ % (max_ - min_ + 1);
    }

    function _u(uint256 v_) private pure returns (string memory s_) {
        if (v_ == 0) return "0";
        uint256 len;
        for (uint256 t = v_; t != 0; t /= 10) {
            ++len;
        }
        bytes memory b = new bytes(len);
        for (; v_ != 0; v_ /= 10) {
            b[--len] = bytes1(uint8(48 + v_ % 10));
        }
        s_ = string(b);
    }
}
