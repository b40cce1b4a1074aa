// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Test} from "./utils/Test.sol";
import {MemMerkle} from "./utils/Fixtures.sol";
import {LibMerkle} from "../src/lib/LibMerkle.sol";
import {LibTensorType} from "../src/lib/LibTensorType.sol";
import {LibClock, Clock} from "../src/lib/LibClock.sol";
import {LibPosition, Position} from "../src/lib/LibPosition.sol";
import {Side} from "../src/interfaces/IDisputeGame.sol";
import "../src/Errors.sol" as E;

/// @notice Exposes the calldata libraries to tests.
contract LibHarness {
    function dataRoot(bytes calldata d_) external pure returns (bytes32) {
        return LibMerkle.dataRoot(d_);
    }

    function rootOfLevel(bytes32[] calldata n_) external pure returns (bytes32) {
        return LibMerkle.rootOfLevel(n_);
    }

    function verifyLeaf(bytes32 r_, uint256 d_, uint256 i_, bytes32 l_, bytes32[] calldata s_)
        external
        pure
        returns (bool)
    {
        return LibMerkle.verifyLeaf(r_, d_, i_, l_, s_);
    }

    function parse(bytes calldata t_) external pure returns (uint256, uint256) {
        return LibTensorType.parse(t_);
    }

    function outputType(bytes calldata op_) external pure returns (bytes memory) {
        return LibTensorType.outputType(op_);
    }

    function hashData(bytes calldata t_, bytes calldata d_) external pure returns (bytes32) {
        return LibTensorType.hashData(t_, d_);
    }

    function charge(Clock c_, Side s_, uint256 now_) external pure returns (Clock) {
        return LibClock.charge(c_, s_, now_);
    }
}

/// @notice The libraries against independent builds of the same trees and encodings.
contract LibsTest is Test {
    LibHarness internal h;

    function setUp() public {
        h = new LibHarness();
    }

    function testFuzz_dataRoot_matchesTree_succeeds(bytes memory data_) public view {
        assertEq(h.dataRoot(data_), MemMerkle.root(MemMerkle.chunks(data_)), "data root");
    }

    /// @dev Longer data than fuzzed bytes usually are: up to 160 leaves, every padding case.
    function testFuzz_dataRoot_longData_matchesTree_succeeds(uint256 len_, uint256 seed_) public view {
        bytes memory d = new bytes(bound(len_, 0, 5100));
        for (uint256 i = 0; i < d.length; ++i) {
            d[i] = bytes1(uint8(uint256(keccak256(abi.encode(seed_, i / 32))) >> (8 * (i % 32))));
        }
        assertEq(h.dataRoot(d), MemMerkle.root(MemMerkle.chunks(d)), "data root");
    }

    /// @dev The data root ignores whatever calldata follows the data (here: non-zero padding).
    function test_dataRoot_trailingCalldata_succeeds() public view {
        bytes memory d = hex"0102030405";
        bytes memory call = abi.encodeCall(LibHarness.dataRoot, (d));
        // selector, offset, length, then the 5 data bytes: set the ABI padding after them.
        for (uint256 i = 4 + 64 + 5; i < call.length; ++i) {
            call[i] = 0xff;
        }
        (bool ok, bytes memory ret) = address(h).staticcall(call);
        assertTrue(ok, "call");
        assertEq(abi.decode(ret, (bytes32)), MemMerkle.root(MemMerkle.chunks(d)), "padding reads as zero");
    }

    function test_dataRoot_empty_succeeds() public view {
        assertEq(h.dataRoot(""), keccak256(abi.encodePacked(bytes32(0))), "one zero leaf");
    }

    function test_depthFor_succeeds() public pure {
        assertEq(LibMerkle.depthFor(0), 0, "0");
        assertEq(LibMerkle.depthFor(1), 0, "1");
        assertEq(LibMerkle.depthFor(2), 1, "2");
        assertEq(LibMerkle.depthFor(3), 2, "3");
        assertEq(LibMerkle.depthFor(44), 6, "44");
        assertEq(LibMerkle.depthFor(1024), 10, "1024");
        assertEq(LibMerkle.depthFor(1025), 11, "1025");
    }

    function testFuzz_rootOfFirstLeaf_matchesTree_succeeds(bytes32 leaf_, uint256 slots_) public pure {
        uint256 n = bound(slots_, 1, 300);
        bytes32[] memory leaves = new bytes32[](n);
        leaves[0] = leaf_;
        assertEq(LibMerkle.rootOfFirstLeaf(leaf_, LibMerkle.depthFor(n)), MemMerkle.root(leaves), "s0 table");
    }

    function testFuzz_verifyLeaf_succeeds(uint256 n_, uint256 i_, bytes32 salt_) public view {
        uint256 n = bound(n_, 1, 70);
        uint256 i = bound(i_, 0, n - 1);
        bytes32[] memory leaves = new bytes32[](n);
        for (uint256 k = 0; k < n; ++k) {
            leaves[k] = keccak256(abi.encode(salt_, k));
        }
        bytes32 root = MemMerkle.root(leaves);
        bytes32[] memory p = MemMerkle.proof(leaves, i);
        uint256 d = LibMerkle.depthFor(n);
        assertTrue(h.verifyLeaf(root, d, i, leaves[i], p), "valid");
        assertTrue(!h.verifyLeaf(root, d, i, bytes32(uint256(leaves[i]) ^ 1), p), "other leaf");
        assertTrue(!h.verifyLeaf(root, d, i + (1 << d), leaves[i], p), "index past the width");
        assertTrue(!h.verifyLeaf(root, d + 1, i, leaves[i], p), "wrong depth");
    }

    function testFuzz_rootOfLevel_succeeds(uint8 k_, bytes32 salt_) public view {
        uint256 n = 1 << (k_ % 6);
        bytes32[] memory leaves = new bytes32[](n);
        for (uint256 k = 0; k < n; ++k) {
            leaves[k] = keccak256(abi.encode(salt_, k));
        }
        bytes32[][] memory lv = MemMerkle.levels(leaves);
        assertEq(h.rootOfLevel(lv[0]), lv[lv.length - 1][0], "root from the leaf level");
    }

    function test_rootOfLevel_notPowerOfTwo_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(E.NotPowerOfTwo.selector, 3));
        h.rootOfLevel(new bytes32[](3));
    }

    function test_parse_succeeds() public view {
        (uint256 size, uint256 numel) = h.parse(hex"0203000000020000000300000004");
        assertEq(size, 2, "i16");
        assertEq(numel, 24, "2*3*4");
        (size, numel) = h.parse(hex"0300");
        assertEq(size, 4, "i32 scalar");
        assertEq(numel, 1, "rank 0 holds one element");
    }

    function test_parse_bad_reverts() public {
        vm.expectRevert(E.BadTensorType.selector);
        h.parse(hex"00");
        vm.expectRevert(E.BadTensorType.selector);
        h.parse(hex"0001000000");
        vm.expectRevert(E.BadTensorType.selector);
        h.parse(hex"01020000000200000003ff");
        vm.expectRevert(E.BadTensorType.selector);
        h.parse(hex"0103ffffffffffffffffffffffff");
    }

    /// @dev Every kind's params length, checked by building an op of that kind around a known type.
    function test_outputType_everyKind_succeeds() public view {
        uint256[19] memory len = [uint256(8), 21, 24, 20, 16, 0, 9, 16, 20, 0, 17, 0, 3, 1, 9, 12, 0, 1, 8];
        bytes memory ty = hex"02020000000300000005";
        for (uint256 k = 1; k <= 19; ++k) {
            bytes memory params = new bytes(len[k - 1]);
            if (k == 13) params = hex"020100"; // transpose: rank 2, perm [1, 0]
            bytes memory op = bytes.concat(bytes1(uint8(k)), params, hex"02", hex"0000000000", hex"0100000007", ty);
            assertEq(h.outputType(op), ty, "output type");
        }
    }

    function test_outputType_bad_reverts() public {
        vm.expectRevert(E.BadOpEncoding.selector);
        h.outputType(hex"");
        vm.expectRevert(E.BadOpEncoding.selector);
        h.outputType(hex"14"); // no kind 20
        vm.expectRevert(E.BadOpEncoding.selector);
        h.outputType(hex"0600"); // lut, no operands, no type
        vm.expectRevert(E.BadTensorType.selector);
        h.outputType(hex"060001010000ff"); // truncated dims
    }

    function test_hashData_succeeds() public view {
        bytes memory d = hex"0102030405";
        assertEq(h.hashData(hex"010100000005", d), MemMerkle.tensorHash(hex"010100000005", d), "tensor hash");
    }

    function test_hashData_wrongLength_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(E.BadTensorData.selector, 10, 5));
        h.hashData(hex"020100000005", hex"0102030405");
    }

    function testFuzz_charge_succeeds(uint64 left_, uint64 elapsed_, bool challenger_) public view {
        Side s = challenger_ ? Side.Challenger : Side.Defender;
        Clock c = LibClock.wrap(left_, left_ / 2, 1000);
        uint64 before = LibClock.left(c, s);
        // Block timestamps stay below 2^64 (the clock packs them in 64 bits).
        uint256 now_ = 1000 + bound(elapsed_, 0, type(uint64).max - 1000);
        elapsed_ = uint64(now_ - 1000);
        if (elapsed_ > before) {
            assertTrue(LibClock.expired(c, s, now_), "expired");
            return;
        }
        assertTrue(!LibClock.expired(c, s, now_), "in time");
        Clock n = h.charge(c, s, now_);
        assertEq(LibClock.left(n, s), before - elapsed_, "mover paid");
        Side o = challenger_ ? Side.Defender : Side.Challenger;
        assertEq(LibClock.left(n, o), LibClock.left(c, o), "other untouched");
        assertEq(LibClock.turnStarted(n), now_, "turn restarts");
    }

    function test_charge_expired_reverts() public {
        Clock c = LibClock.wrap(10, 10, 0);
        vm.expectRevert(abi.encodeWithSelector(E.ClockExpired.selector, Side.Defender, 1));
        h.charge(c, Side.Defender, 11);
    }

    function testFuzz_position_succeeds(uint32 level_, uint64 index_, uint8 l_) public pure {
        uint32 level = uint32(bound(level_, 1, 64));
        uint32 l = uint32(bound(l_, 1, level));
        uint64 index = uint64(bound(index_, 0, (uint256(1) << (64 - level)) - 1));
        Position p = LibPosition.wrap(level, index);
        assertEq(LibPosition.level(p), level, "level");
        assertEq(LibPosition.index(p), index, "index");
        Position f = LibPosition.firstDescendant(p, l);
        assertEq(LibPosition.level(f), level - l, "down l levels");
        assertEq(LibPosition.index(f), uint256(index) << l, "first child");
        assertEq(LibPosition.index(LibPosition.right(f, 1)), (uint256(index) << l) + 1, "right: the second child");
    }
}
