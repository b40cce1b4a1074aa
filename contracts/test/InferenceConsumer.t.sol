// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Fixture, FixedVerifier} from "./utils/Fixtures.sol";
import {InferenceRollup} from "../src/InferenceRollup.sol";
import {InferenceConsumer} from "../src/examples/InferenceConsumer.sol";
import {Claim} from "../src/interfaces/IDisputeGame.sol";
import "../src/Errors.sol" as E;

/// @notice The example consumer: asking, the settlement callback, reading final outputs.
contract InferenceConsumerTest is Fixture {
    InferenceConsumer internal consumer;
    bytes internal input;
    bytes[] internal slots;
    bytes32[] internal honest;

    function setUp() public {
        vm.warp(1_000_000);
        _deploy(_config(3, 1), new FixedVerifier());
        consumer = new InferenceConsumer(rollup, modelId);
        input = _input(1);
        bytes[] memory s = _trace(input, 0, 0);
        for (uint256 j = 0; j < s.length; ++j) {
            slots.push(s[j]);
        }
        honest = _slotHashes(s);
        vm.deal(address(this), 10 ether);
    }

    /// @dev Asks, posts the honest claim of the request in a batch of one and waits out the window.
    function _askAndPost() internal returns (bytes32 rid_, uint256 batchId_, Claim memory claim_) {
        rid_ = consumer.ask{value: 0.1 ether}(tensorType, input);
        claim_ = _claim(rid_, honest);
        Claim[] memory cs = new Claim[](1);
        cs[0] = claim_;
        batchId_ = _post(cs);
        vm.warp(block.timestamp + WINDOW + 1);
    }

    function test_ask_succeeds() public {
        vm.expectEmit();
        emit InferenceConsumer.InferenceAsked(
            keccak256(abi.encode(block.chainid, address(rollup), uint256(0))), 0.1 ether, input.length
        );
        bytes32 rid = consumer.ask{value: 0.1 ether}(tensorType, input);
        (bool asked, bool settled,,) = consumer.results(rid);
        assertTrue(asked && !settled, "asked, not settled");
        assertEq(consumer.requestCount(), 1, "one request");
        assertEq(consumer.requestIds(0), rid, "recorded in order");
        (address requester, uint96 fee, bytes32 m, bytes32 inputHash,,,) = rollup.requests(rid);
        assertEq(requester, address(consumer), "the consumer is the requester");
        assertEq(fee, 0.1 ether, "fee forwarded");
        assertEq(m, modelId, "its model");
        assertEq(inputHash, honest[0], "input hash");
    }

    function test_ask_noFee_reverts() public {
        vm.expectRevert(InferenceConsumer.NoFee.selector);
        consumer.ask(tensorType, input);
    }

    function test_ask_wrongType_reverts() public {
        vm.expectRevert(E.InputTypeMismatch.selector);
        consumer.ask{value: 1}(hex"010100000063", input);
    }

    function test_onInferenceSettled_viaSettle_succeeds() public {
        (bytes32 rid, uint256 id, Claim memory cl) = _askAndPost();
        vm.expectEmit();
        emit InferenceConsumer.InferenceReceived(rid, honest[N_OPS], slots[N_OPS]);
        vm.expectEmit();
        emit InferenceRollup.CallbackResult(rid, true);
        rollup.settle(id, 0, cl, new bytes32[](0), tensorType, slots[N_OPS]);
        (bool asked, bool settled, bytes32 outputHash, bytes32 digest) = consumer.results(rid);
        assertTrue(asked && settled, "settled");
        assertEq(outputHash, honest[N_OPS], "output hash");
        assertEq(digest, keccak256(slots[N_OPS]), "output digest");
        assertEq(consumer.settledCount(), 1, "counted");
    }

    function test_onInferenceSettled_notRollup_reverts() public {
        bytes32 rid = consumer.ask{value: 0.1 ether}(tensorType, input);
        vm.expectRevert(abi.encodeWithSelector(InferenceConsumer.NotRollup.selector, address(this)));
        consumer.onInferenceSettled(rid, honest[N_OPS], tensorType, slots[N_OPS]);
    }

    function test_onInferenceSettled_unknownRequest_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(InferenceConsumer.UnknownRequest.selector, bytes32(uint256(7))));
        vm.prank(address(rollup));
        consumer.onInferenceSettled(bytes32(uint256(7)), honest[N_OPS], tensorType, slots[N_OPS]);
    }

    function test_onInferenceSettled_twice_reverts() public {
        bytes32 rid = consumer.ask{value: 0.1 ether}(tensorType, input);
        vm.prank(address(rollup));
        consumer.onInferenceSettled(rid, honest[N_OPS], tensorType, slots[N_OPS]);
        vm.expectRevert(abi.encodeWithSelector(InferenceConsumer.AlreadySettled.selector, rid));
        vm.prank(address(rollup));
        consumer.onInferenceSettled(rid, honest[N_OPS], tensorType, slots[N_OPS]);
    }

    function test_onInferenceSettled_withinCallbackGas_succeeds() public {
        (bytes32 rid, uint256 id, Claim memory cl) = _askAndPost();
        uint256 g = gasleft();
        rollup.settle(id, 0, cl, new bytes32[](0), tensorType, slots[N_OPS]);
        assertLt(g - gasleft(), rollup.callbackGasLimit() + 150_000, "settle and callback within the limit");
        (, bool settled,,) = consumer.results(rid);
        assertTrue(settled, "the callback did not run out of gas");
    }

    function test_readFinalOutput_succeeds() public {
        // A claim of someone else's request (an HTTP one): readable by claim and proof.
        Claim[] memory cs = new Claim[](3);
        for (uint256 i = 0; i < 3; ++i) {
            cs[i] = _claim(bytes32(i + 100), honest);
        }
        uint256 id = _post(cs);
        vm.expectRevert(abi.encodeWithSelector(E.ClaimNotFinal.selector, id, 2));
        consumer.readFinalOutput(id, 2, cs[2], _claimProof(cs, 2), tensorType, slots[N_OPS]);
        vm.warp(block.timestamp + WINDOW + 1);
        vm.expectEmit();
        emit InferenceConsumer.FinalOutputRead(cs[2].requestId, id, 2, honest[N_OPS], keccak256(slots[N_OPS]));
        bytes memory out = consumer.readFinalOutput(id, 2, cs[2], _claimProof(cs, 2), tensorType, slots[N_OPS]);
        assertEq(out, slots[N_OPS], "the output");
        assertEq(consumer.readDigests(cs[2].requestId), keccak256(slots[N_OPS]), "digest recorded");
    }

    function test_readFinalOutput_wrongOutput_reverts() public {
        (, uint256 id, Claim memory cl) = _askAndPost();
        bytes memory other = bytes.concat(slots[N_OPS]);
        other[3] = bytes1(uint8(other[3]) ^ 1);
        vm.expectRevert(E.OutputMismatch.selector);
        consumer.readFinalOutput(id, 0, cl, new bytes32[](0), tensorType, other);
    }

    function test_readFinalOutput_wrongModel_reverts() public {
        (, uint256 id, Claim memory cl) = _askAndPost();
        cl.modelId = bytes32(uint256(5));
        vm.expectRevert(abi.encodeWithSelector(InferenceConsumer.WrongModel.selector, modelId, cl.modelId));
        consumer.readFinalOutput(id, 0, cl, new bytes32[](0), tensorType, slots[N_OPS]);
    }

    function test_readFinalOutput_notIncluded_reverts() public {
        (, uint256 id, Claim memory cl) = _askAndPost();
        cl.outputHash = bytes32(uint256(9));
        vm.expectRevert(abi.encodeWithSelector(E.ClaimNotFinal.selector, id, 0));
        consumer.readFinalOutput(id, 0, cl, new bytes32[](0), tensorType, slots[N_OPS]);
    }

    function testFuzz_ask_anyFee_succeeds(uint96 fee_) public {
        vm.assume(fee_ > 0 && fee_ <= 10 ether);
        bytes32 rid = consumer.ask{value: fee_}(tensorType, input);
        (, uint96 fee,,,,,) = rollup.requests(rid);
        assertEq(fee, fee_, "fee forwarded");
        assertEq(address(rollup).balance >= fee_, true, "held by the rollup");
    }
}
