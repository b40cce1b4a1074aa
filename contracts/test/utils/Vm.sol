// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Vm
/// @notice The few Foundry cheatcodes these tests use (forge-std is not vendored).
interface Vm {
    /// @notice Sets `block.timestamp`.
    function warp(uint256 timestamp_) external;
    /// @notice Sets `msg.sender` for the next call.
    function prank(address sender_) external;
    /// @notice Sets `msg.sender` until {stopPrank}.
    function startPrank(address sender_) external;
    /// @notice Ends {startPrank}.
    function stopPrank() external;
    /// @notice Sets the balance of `account_`.
    function deal(address account_, uint256 balance_) external;
    /// @notice Expects the next call to revert with exactly `revertData_`.
    function expectRevert(bytes calldata revertData_) external;
    /// @notice Expects the next call to revert with the selector `selector_`.
    function expectRevert(bytes4 selector_) external;
    /// @notice Expects the next call to revert.
    function expectRevert() external;
    /// @notice Expects the next event to match the one emitted next in the test (all topics and data).
    function expectEmit() external;
    /// @notice Writes `data_` to `path_`.
    function writeFile(string calldata path_, string calldata data_) external;
    /// @notice `value_` in decimal.
    function toString(uint256 value_) external pure returns (string memory text_);
    /// @notice `value_` in hex.
    function toString(bytes32 value_) external pure returns (string memory text_);
    /// @notice The address of private key `key_`.
    function addr(uint256 key_) external pure returns (address account_);
    /// @notice Discards the fuzz run unless `condition_`.
    function assume(bool condition_) external pure;
    /// @notice The boolean environment variable `name_`, or `default_` if unset.
    function envOr(string calldata name_, bool default_) external view returns (bool value_);
    /// @notice The nonce of `account_`.
    function getNonce(address account_) external view returns (uint64 nonce_);
}
