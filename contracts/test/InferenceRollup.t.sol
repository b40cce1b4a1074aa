// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Fixture, MemMerkle, FixedVerifier} from "./utils/Fixtures.sol";
import {BatchBuilder, RandomBatch, Entry} from "./utils/BatchBuilder.sol";
import {InferenceRollup} from "../src/InferenceRollup.sol";
import {DisputeGame} from "../src/DisputeGame.sol";
import {IDisputeGame, Claim, Side} from "../src/interfaces/IDisputeGame.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";
import {IInferenceConsumer} from "../src/interfaces/IInferenceConsumer.sol";
import "../src/Errors.sol" as E;

/// @notice A consumer that records its callback, or reverts, or burns all its gas.
contract Consumer is IInferenceConsumer {
    enum Mode {
        Record,
        Revert,
        Burn
    }

    Mode public mode;
    bytes32 public lastRequest;
    bytes public lastOutput;
    InferenceRollup public rollup;

    constructor(InferenceRollup rollup_) {
        rollup = rollup_;
    }

    function setMode(Mode mode_) external {
        mode = mode_;
    }

    function ask(bytes32 modelId_, bytes calldata type_, bytes calldata data_) external payable returns (bytes32) {
        return rollup.requestInference{value: msg.value}(modelId_, type_, data_);
    }

    function onInferenceSettled(bytes32 requestId_, bytes32, bytes calldata, bytes calldata outputData_) external {
        require(msg.sender == address(rollup), "only rollup");
        if (mode == Mode.Revert) revert("no");
        if (mode == Mode.Burn) {
            while (true) {}
        }
        lastRequest = requestId_;
        lastOutput = outputData_;
    }
}

/// @notice Sequencer stake, batches, challenges, finality, requests and callbacks.
contract InferenceRollupTest is Fixture {
    bytes internal input;
    bytes[] internal slots;
    bytes32[] internal honest;

    function setUp() public {
        vm.warp(1_000_000);
        _deploy(_config(3, 1), new FixedVerifier());
        input = _input(1);
        bytes[] memory s = _trace(input, 0, 0);
        for (uint256 j = 0; j < s.length; ++j) {
            slots.push(s[j]);
        }
        honest = _slotHashes(s);
    }

    function _claims(uint256 n_) internal view returns (Claim[] memory cs_) {
        cs_ = new Claim[](n_);
        for (uint256 i = 0; i < n_; ++i) {
            cs_[i] = _claim(bytes32(i + 100), honest);
        }
    }

    // ------------------------------------------------------------ sequencers

    function test_registerSequencer_lowStake_reverts() public {
        vm.deal(address(0xB0B), 5 ether);
        vm.expectRevert(abi.encodeWithSelector(E.InsufficientStake.selector, 5 ether, MIN_STAKE));
        vm.prank(address(0xB0B));
        rollup.registerSequencer{value: 5 ether}();
    }

    function test_registerSequencer_twice_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(E.AlreadyRegistered.selector, sequencer));
        vm.prank(sequencer);
        rollup.registerSequencer{value: MIN_STAKE}();
    }

    function test_addStake_succeeds() public {
        vm.prank(sequencer);
        rollup.addStake{value: 1 ether}();
        (uint128 stake,,,) = rollup.sequencers(sequencer);
        assertEq(stake, MIN_STAKE + 11 ether, "stake grew");
    }

    function test_withdrawStake_afterDelay_succeeds() public {
        vm.prank(sequencer);
        rollup.requestWithdrawal(5 ether);
        vm.expectRevert(abi.encodeWithSelector(E.WithdrawalNotReady.selector, uint64(block.timestamp + 2 days)));
        vm.prank(sequencer);
        rollup.withdrawStake();
        vm.warp(block.timestamp + 2 days);
        uint256 before = sequencer.balance;
        vm.prank(sequencer);
        rollup.withdrawStake();
        assertEq(sequencer.balance - before, 5 ether, "paid");
        assertEq(rollup.freeStake(sequencer), MIN_STAKE + 5 ether, "rest stays");
    }

    function test_withdrawStake_nothingPending_reverts() public {
        vm.expectRevert(E.NoWithdrawalPending.selector);
        vm.prank(sequencer);
        rollup.withdrawStake();
    }

    function test_requestWithdrawal_tooMuch_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(E.BadAmount.selector, 100 ether));
        vm.prank(sequencer);
        rollup.requestWithdrawal(100 ether);
    }

    // ------------------------------------------------------------ batches

    function test_postBatch_succeeds() public {
        Claim[] memory cs = _claims(3);
        uint256 id = _post(cs);
        (bytes32 root, address seq, uint32 count, uint64 postedAt) = rollup.batches(id);
        assertEq(id, 1, "first batch");
        assertEq(seq, sequencer, "sequencer");
        assertEq(count, 3, "count");
        assertEq(postedAt, block.timestamp, "time");
        for (uint256 i = 0; i < 3; ++i) {
            assertTrue(rollup.isIncluded(id, i, cs[i], _claimProof(cs, i)), "included");
        }
        root;
    }

    function test_postBatch_notSequencer_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(E.NotSequencer.selector, challenger));
        vm.prank(challenger);
        rollup.postBatch(bytes32(uint256(1)), 1, "");
    }

    function test_postBatch_empty_reverts() public {
        vm.expectRevert(E.EmptyBatch.selector);
        vm.prank(sequencer);
        rollup.postBatch(bytes32(uint256(1)), 0, "");
    }

    function test_postBatch_stakePendingWithdrawal_reverts() public {
        Entry[] memory es = _entries(1);
        vm.prank(sequencer);
        rollup.requestWithdrawal(11 ether);
        vm.expectRevert(abi.encodeWithSelector(E.InsufficientStake.selector, MIN_STAKE - 1 ether, MIN_STAKE));
        vm.prank(sequencer);
        rollup.postBatch(BatchBuilder.root(es), 1, BatchBuilder.encode(es));
    }

    // ------------------------------------------------------------ batch data

    /// @dev `n_` entries of the toy model on the honest trace.
    function _entries(uint256 n_) internal view returns (Entry[] memory es_) {
        Claim[] memory cs = _claims(n_);
        es_ = new Entry[](n_);
        for (uint256 i = 0; i < n_; ++i) {
            es_[i] = _entry(cs[i]);
        }
    }

    /// @dev Posts `data_` with the root and count of `es_` (the batch `data_` is meant to be).
    function _postData(Entry[] memory es_, bytes memory data_) internal {
        vm.prank(sequencer);
        rollup.postBatch(BatchBuilder.root(es_), uint32(es_.length), data_);
    }

    function test_postBatch_mixedTensors_succeeds() public {
        Entry[] memory es = new Entry[](4);
        // i32 [1, 3] in, i16 [2, 2] out; scalars; an empty i8 [0, 5] in; 33 bytes (2 leaves) each way.
        es[0] = Entry(
            bytes32(uint256(1)),
            modelId,
            hex"03020000000100000003",
            hex"010000000200000003000000",
            hex"02020000000200000002",
            hex"0100ff7f0080feff"
        );
        es[1] = Entry(bytes32(uint256(2)), modelId, hex"0100", hex"7f", hex"0300", hex"01020304");
        es[2] = Entry(bytes32(uint256(3)), bytes32(0), hex"01020000000000000005", "", hex"0201000000ff", new bytes(510));
        bytes memory in33 = _input(7);
        bytes memory out33 = new bytes(33);
        for (uint256 i = 0; i < 33; ++i) {
            out33[i] = in33[i];
        }
        es[3] = Entry(bytes32(uint256(4)), modelId, hex"010100000021", new bytes(33), hex"010100000021", out33);
        uint256 id = _postEntries(es);
        (bytes32 root,, uint32 count,) = rollup.batches(id);
        assertEq(count, 4, "count");
        bytes32[] memory leaves = new bytes32[](4);
        for (uint256 i = 0; i < 4; ++i) {
            leaves[i] = BatchBuilder.leaf(BatchBuilder.claim(es[i]));
        }
        assertEq(root, MemMerkle.root(leaves), "root");
        for (uint256 i = 0; i < 4; ++i) {
            assertTrue(rollup.isIncluded(id, i, BatchBuilder.claim(es[i]), MemMerkle.proof(leaves, i)), "included");
        }
    }

    /// @dev Data of 31, 32 and 33 bytes, all 0xff, followed by non-zero bytes (the next entry's
    ///      requestId): a one-leaf tensor keeps exactly its own bytes, zero-padded.
    function test_postBatch_leafBoundary_succeeds() public {
        Entry[] memory es = new Entry[](3);
        // i8 [32] in, i8 [31] out; i8 [1] in, i32 [8] out; i8 [33] in, i16 [15] out.
        es[0] = Entry(keccak256("a"), modelId, hex"010100000020", _ff(32), hex"01010000001f", _ff(31));
        es[1] = Entry(keccak256("b"), modelId, hex"010100000001", _ff(1), hex"030100000008", _ff(32));
        es[2] = Entry(keccak256("c"), modelId, hex"010100000021", _ff(33), hex"02010000000f", _ff(30));
        uint256 id = _postEntries(es);
        (bytes32 root,, uint32 count,) = rollup.batches(id);
        assertEq(count, 3, "count");
        assertEq(root, BatchBuilder.root(es), "root");
    }

    function _ff(uint256 n_) internal pure returns (bytes memory b_) {
        b_ = new bytes(n_);
        for (uint256 i = 0; i < n_; ++i) {
            b_[i] = 0xff;
        }
    }

    /// @dev The hole this check closes: a root holding a claim for an on-chain request whose
    ///      entry the data does not carry (here: the data of another claim).
    function test_postBatch_hiddenClaim_reverts() public {
        Consumer c = new Consumer(rollup);
        vm.deal(address(this), 1 ether);
        bytes32 rid = c.ask{value: 0.1 ether}(modelId, tensorType, input);
        Claim memory hidden = Claim(rid, modelId, honest[0], bytes32(uint256(666)));
        bytes32[] memory leaves = new bytes32[](1);
        leaves[0] = _leaf(hidden);
        Entry[] memory shown = _entries(1);
        vm.expectRevert(
            abi.encodeWithSelector(E.BatchRootMismatch.selector, MemMerkle.root(leaves), BatchBuilder.root(shown))
        );
        vm.prank(sequencer);
        rollup.postBatch(MemMerkle.root(leaves), 1, BatchBuilder.encode(shown));
    }

    function test_postBatch_wrongRoot_reverts() public {
        Entry[] memory es = _entries(3);
        bytes32 wrong = bytes32(uint256(BatchBuilder.root(es)) ^ 1);
        vm.expectRevert(abi.encodeWithSelector(E.BatchRootMismatch.selector, wrong, BatchBuilder.root(es)));
        vm.prank(sequencer);
        rollup.postBatch(wrong, 3, BatchBuilder.encode(es));
    }

    function test_postBatch_wrongCount_reverts() public {
        Entry[] memory es = _entries(3);
        bytes memory data = BatchBuilder.encode(es);
        vm.expectRevert(abi.encodeWithSelector(E.BatchCountMismatch.selector, 4, 3));
        vm.prank(sequencer);
        rollup.postBatch(BatchBuilder.root(es), 4, data);
        vm.expectRevert(abi.encodeWithSelector(E.BatchCountMismatch.selector, 2, 3));
        vm.prank(sequencer);
        rollup.postBatch(BatchBuilder.root(es), 2, data);
        vm.expectRevert(abi.encodeWithSelector(E.BatchCountMismatch.selector, 1, 0));
        vm.prank(sequencer);
        rollup.postBatch(BatchBuilder.root(es), 1, "");
    }

    function test_postBatch_truncated_reverts() public {
        Entry[] memory es = _entries(2);
        bytes memory data = BatchBuilder.encode(es);
        uint256 one = data.length / 2;
        // Cut inside the output, inside the input, inside the header of entry 1.
        uint256[4] memory cuts = [data.length - 1, one + 68 + 10, one + 67, one + 1];
        for (uint256 k = 0; k < cuts.length; ++k) {
            bytes memory cut = new bytes(cuts[k]);
            for (uint256 i = 0; i < cut.length; ++i) {
                cut[i] = data[i];
            }
            vm.expectRevert(abi.encodeWithSelector(E.BatchTruncated.selector, 1));
            _postData(es, cut);
        }
    }

    function test_postBatch_trailingBytes_reverts() public {
        Entry[] memory es = _entries(2);
        vm.expectRevert(abi.encodeWithSelector(E.BatchTruncated.selector, 2));
        _postData(es, bytes.concat(BatchBuilder.encode(es), hex"00"));
        // A whole extra entry is a count mismatch.
        Entry[] memory three = _entries(3);
        vm.expectRevert(abi.encodeWithSelector(E.BatchCountMismatch.selector, 2, 3));
        _postData(es, BatchBuilder.encode(three));
    }

    function test_postBatch_malformedType_reverts() public {
        bytes[6] memory bad = [
            bytes(hex"040100000064"), // unknown dtype 4
            hex"000100000064", // dtype 0
            hex"01", // shorter than dtype and rank
            hex"0119000000640000", // rank 25: more dims than the tensor has bytes
            hex"0103ffffffffffffffff00000002", // 2^65 - ... elements: over 2^64 - 1
            hex"010200000064" // rank 2 with one dim's bytes, then data read as a dim
        ];
        for (uint256 k = 0; k < bad.length; ++k) {
            for (uint256 side = 0; side < 2; ++side) {
                Entry[] memory es = _entries(2);
                bytes memory tensor = k == 5 ? bytes.concat(bad[k], new bytes(2)) : bad[k];
                if (side == 0) (es[1].inputType, es[1].inputData) = (tensor, "");
                else (es[1].outputType, es[1].outputData) = (tensor, "");
                vm.expectRevert(abi.encodeWithSelector(E.BatchBadTensorType.selector, 1, side == 1));
                _postData(es, BatchBuilder.encode(es));
            }
        }
    }

    function test_postBatch_lengthMismatch_reverts() public {
        Entry[] memory es = _entries(2);
        es[0].inputData = bytes.concat(es[0].inputData, hex"00");
        vm.expectRevert(abi.encodeWithSelector(E.BatchBadTensorData.selector, 0, false, 100, 101));
        _postData(es, BatchBuilder.encode(es));
        es = _entries(2);
        es[1].outputType = hex"0201000000ff"; // i16 [255]: 510 bytes, 100 given
        vm.expectRevert(abi.encodeWithSelector(E.BatchBadTensorData.selector, 1, true, 510, 100));
        _postData(es, BatchBuilder.encode(es));
        es = _entries(1);
        es[0].outputType = hex"0100"; // an i8 scalar: 1 byte
        es[0].outputData = "";
        vm.expectRevert(abi.encodeWithSelector(E.BatchBadTensorData.selector, 0, true, 1, 0));
        _postData(es, BatchBuilder.encode(es));
    }

    function testFuzz_postBatch_randomBatch_succeeds(uint256 seed_, uint256 n_, uint256 index_) public {
        uint256 n = bound(n_, 1, 12);
        Entry[] memory es = RandomBatch.entries(seed_, n);
        uint256 id = _postEntries(es);
        uint256 i = bound(index_, 0, n - 1);
        bytes32[] memory leaves = new bytes32[](n);
        for (uint256 j = 0; j < n; ++j) {
            leaves[j] = BatchBuilder.leaf(BatchBuilder.claim(es[j]));
        }
        assertTrue(rollup.isIncluded(id, i, BatchBuilder.claim(es[i]), MemMerkle.proof(leaves, i)), "included");
    }

    function testFuzz_postBatch_oneByteChanged_reverts(uint256 seed_, uint256 n_, uint256 at_, uint8 flip_) public {
        Entry[] memory es = RandomBatch.entries(seed_, bound(n_, 1, 6));
        bytes memory data = BatchBuilder.encode(es);
        uint256 at = bound(at_, 0, data.length - 1);
        data[at] = bytes1(uint8(data[at]) ^ uint8(bound(flip_, 1, 255)));
        vm.expectRevert();
        _postData(es, data);
    }

    function testFuzz_isIncluded_wrongProof_succeeds(uint256 n_, uint256 index_, bytes32 junk_) public {
        uint256 n = bound(n_, 1, 40);
        uint256 i = bound(index_, 0, n - 1);
        Claim[] memory cs = _claims(n);
        uint256 id = _post(cs);
        bytes32[] memory p = _claimProof(cs, i);
        assertTrue(rollup.isIncluded(id, i, cs[i], p), "the right proof passes");
        assertTrue(!rollup.isIncluded(id, i, cs[(i + 1) % n], p) || n == 1, "another claim fails");
        if (p.length > 0) {
            vm.assume(junk_ != p[0]);
            p[0] = junk_;
            assertTrue(!rollup.isIncluded(id, i, cs[i], p), "a bad sibling fails");
        }
        assertTrue(!rollup.isIncluded(id, i, cs[i], new bytes32[](p.length + 1)), "a longer proof fails");
        assertTrue(!rollup.isIncluded(id, n, cs[i], p), "an index past the count fails");
    }

    // ------------------------------------------------------------ challenges and finality

    function test_challenge_succeeds() public {
        Claim[] memory cs = _claims(2);
        uint256 id = _post(cs);
        vm.prank(challenger);
        uint256 gameId = rollup.challenge{value: CH_BOND}(id, 1, cs[1], _claimProof(cs, 1));
        assertEq(gameId, 1, "first game");
        assertEq(rollup.claimStatus(id, 1).openGames, 1, "one open game");
        assertEq(address(games).balance, CH_BOND + DEF_BOND, "both bonds in the game");
        (uint128 stake,,,) = rollup.sequencers(sequencer);
        assertEq(stake, MIN_STAKE + 10 ether - DEF_BOND, "defender bond taken from stake");
    }

    function test_challenge_afterWindow_reverts() public {
        Claim[] memory cs = _claims(1);
        uint256 id = _post(cs);
        vm.warp(block.timestamp + WINDOW + 1);
        vm.expectRevert(abi.encodeWithSelector(E.ChallengeWindowClosed.selector, id));
        vm.prank(challenger);
        rollup.challenge{value: CH_BOND}(id, 0, cs[0], new bytes32[](0));
    }

    function test_challenge_badProof_reverts() public {
        Claim[] memory cs = _claims(2);
        uint256 id = _post(cs);
        vm.expectRevert(E.InvalidInclusionProof.selector);
        vm.prank(challenger);
        rollup.challenge{value: CH_BOND}(id, 0, cs[1], _claimProof(cs, 0));
    }

    function test_challenge_wrongBond_reverts() public {
        Claim[] memory cs = _claims(1);
        uint256 id = _post(cs);
        vm.expectRevert(abi.encodeWithSelector(E.BadBond.selector, CH_BOND + DEF_BOND, 1 wei + DEF_BOND));
        vm.prank(challenger);
        rollup.challenge{value: 1 wei}(id, 0, cs[0], new bytes32[](0));
    }

    function test_challenge_self_reverts() public {
        Claim[] memory cs = _claims(1);
        uint256 id = _post(cs);
        vm.expectRevert(E.SelfChallenge.selector);
        vm.prank(sequencer);
        rollup.challenge{value: CH_BOND}(id, 0, cs[0], new bytes32[](0));
    }

    function test_challenge_unknownBatch_reverts() public {
        Claim[] memory cs = _claims(1);
        vm.expectRevert(abi.encodeWithSelector(E.BatchNotFound.selector, 9));
        vm.prank(challenger);
        rollup.challenge{value: CH_BOND}(9, 0, cs[0], new bytes32[](0));
    }

    function test_claimState_parallelGames_succeeds() public {
        Claim[] memory cs = _claims(1);
        uint256 id = _post(cs);
        vm.prank(challenger);
        uint256 g1 = rollup.challenge{value: CH_BOND}(id, 0, cs[0], new bytes32[](0));
        vm.prank(challenger2);
        uint256 g2 = rollup.challenge{value: CH_BOND}(id, 0, cs[0], new bytes32[](0));
        assertEq(rollup.claimStatus(id, 0).openGames, 2, "two games");
        // The defender plays both games up to the challengers' first pick; both stall.
        _defendToPick(g1);
        _defendToPick(g2);
        vm.warp(block.timestamp + WINDOW + 1);
        assertTrue(rollup.claimState(id, 0) == InferenceRollup.ClaimState.Pending, "pending while games are open");
        assertTrue(!rollup.verifyClaim(id, 0, cs[0], new bytes32[](0)), "not final");
        games.claimTimeout(g1); // challenger 1 timed out: the defender wins game 1
        assertTrue(rollup.claimState(id, 0) == InferenceRollup.ClaimState.Pending, "game 2 still open");
        games.claimTimeout(g2);
        assertEq(rollup.claimStatus(id, 0).gamesWon, 2, "won both");
        assertTrue(rollup.claimState(id, 0) == InferenceRollup.ClaimState.Final, "final once all games are won");
        assertTrue(rollup.verifyClaim(id, 0, cs[0], new bytes32[](0)), "verifiable");
    }

    function _defendToPick(uint256 gameId_) internal {
        _revealFinal(gameId_, honest);
        bytes32[] memory st = _dissectionStates(gameId_, honest);
        vm.prank(sequencer);
        games.dissect(gameId_, st);
    }

    function test_challenge_invalidated_reverts() public {
        Claim[] memory cs = _claims(1);
        uint256 id = _post(cs);
        vm.prank(challenger);
        uint256 g1 = rollup.challenge{value: CH_BOND}(id, 0, cs[0], new bytes32[](0));
        vm.warp(block.timestamp + CLOCK + 1);
        games.claimTimeout(g1);
        assertTrue(rollup.claimState(id, 0) == InferenceRollup.ClaimState.Invalidated, "lost");
        vm.expectRevert(abi.encodeWithSelector(E.ClaimAlreadyInvalidated.selector, id, 0));
        vm.prank(challenger2);
        rollup.challenge{value: CH_BOND}(id, 0, cs[0], new bytes32[](0));
    }

    function test_challenge_smallStake_succeeds() public {
        // Drain the stake with games until less than a full defender bond is left.
        Claim[] memory cs = _claims(1);
        uint256 id = _post(cs);
        for (uint256 k = 0; k < 10; ++k) {
            address c = address(uint160(0xAA00 + k));
            vm.deal(c, 2 ether);
            vm.prank(c);
            rollup.challenge{value: CH_BOND}(id, 0, cs[0], new bytes32[](0));
        }
        (uint128 stake,,,) = rollup.sequencers(sequencer);
        assertEq(stake, 0, "stake all at risk");
        assertEq(address(games).balance, 10 * CH_BOND + MIN_STAKE + 10 ether, "every wei locked in games");
        assertEq(games.game(10).defenderBond, 2 ether, "the last one still got a full bond");
        vm.prank(challenger);
        uint256 g = rollup.challenge{value: CH_BOND}(id, 0, cs[0], new bytes32[](0));
        assertEq(games.game(g).defenderBond, 0, "nothing left to lock");
    }

    function test_onGameResolved_notGames_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(E.NotGames.selector, address(this)));
        rollup.onGameResolved(1, true);
    }

    function test_claimState_badIndex_reverts() public {
        uint256 id = _post(_claims(2));
        vm.expectRevert(abi.encodeWithSelector(E.ClaimIndexOutOfRange.selector, 2, 2));
        rollup.claimState(id, 2);
    }

    // ------------------------------------------------------------ reading outputs

    function test_readOutput_final_succeeds() public {
        Claim[] memory cs = _claims(1);
        uint256 id = _post(cs);
        vm.expectRevert(abi.encodeWithSelector(E.ClaimNotFinal.selector, id, 0));
        rollup.readOutput(id, 0, cs[0], new bytes32[](0), tensorType, slots[N_OPS]);
        vm.warp(block.timestamp + WINDOW + 1);
        bytes memory out = rollup.readOutput(id, 0, cs[0], new bytes32[](0), tensorType, slots[N_OPS]);
        assertEq(out, slots[N_OPS], "the output");
        bytes memory other = bytes.concat(slots[N_OPS]);
        other[0] = bytes1(uint8(other[0]) ^ 1);
        vm.expectRevert(E.OutputMismatch.selector);
        rollup.readOutput(id, 0, cs[0], new bytes32[](0), tensorType, other);
        vm.expectRevert(abi.encodeWithSelector(E.BadTensorData.selector, 100, 101));
        rollup.readOutput(id, 0, cs[0], new bytes32[](0), tensorType, bytes.concat(slots[N_OPS], hex"00"));
    }

    // ------------------------------------------------------------ requests

    function _requestAndPost(Consumer c_) internal returns (bytes32 rid_, uint256 batchId_, Claim memory claim_) {
        vm.deal(address(this), 1 ether);
        rid_ = c_.ask{value: 0.1 ether}(modelId, tensorType, input);
        claim_ = _claim(rid_, honest);
        Claim[] memory cs = new Claim[](1);
        cs[0] = claim_;
        batchId_ = _post(cs);
        vm.warp(block.timestamp + WINDOW + 1);
    }

    function test_requestInference_succeeds() public {
        Consumer c = new Consumer(rollup);
        vm.deal(address(this), 1 ether);
        bytes32 rid = c.ask{value: 0.1 ether}(modelId, tensorType, input);
        assertEq(rid, keccak256(abi.encode(block.chainid, address(rollup), uint256(0))), "request id rule");
        (address requester, uint96 fee, bytes32 m, bytes32 inputHash,,,) = rollup.requests(rid);
        assertEq(requester, address(c), "requester");
        assertEq(fee, 0.1 ether, "fee");
        assertEq(m, modelId, "model");
        assertEq(inputHash, honest[0], "input hash computed on-chain matches the tensor hash");
    }

    function test_requestInference_wrongType_reverts() public {
        vm.expectRevert(E.InputTypeMismatch.selector);
        rollup.requestInference(modelId, hex"010100000063", input);
        vm.expectRevert(abi.encodeWithSelector(E.ModelNotRegistered.selector, bytes32(0)));
        rollup.requestInference(bytes32(0), tensorType, input);
    }

    function test_settle_callsBack_succeeds() public {
        Consumer c = new Consumer(rollup);
        (bytes32 rid, uint256 id, Claim memory cl) = _requestAndPost(c);
        vm.expectEmit();
        emit InferenceRollup.CallbackResult(rid, true);
        rollup.settle(id, 0, cl, new bytes32[](0), tensorType, slots[N_OPS]);
        assertEq(c.lastRequest(), rid, "called back");
        assertEq(c.lastOutput(), slots[N_OPS], "with the output");
        assertEq(rollup.credit(sequencer), 0.1 ether, "fee to the sequencer");
        assertEq(rollup.readSettledOutput(rid, tensorType, slots[N_OPS]), slots[N_OPS], "readable");
        vm.expectRevert(abi.encodeWithSelector(E.RequestClosed.selector, rid));
        rollup.settle(id, 0, cl, new bytes32[](0), tensorType, slots[N_OPS]);
    }

    function test_settle_revertingConsumer_succeeds() public {
        Consumer c = new Consumer(rollup);
        c.setMode(Consumer.Mode.Revert);
        (bytes32 rid, uint256 id, Claim memory cl) = _requestAndPost(c);
        vm.expectEmit();
        emit InferenceRollup.CallbackResult(rid, false);
        rollup.settle(id, 0, cl, new bytes32[](0), tensorType, slots[N_OPS]);
        (,,,, bytes32 out,, bool closed) = rollup.requests(rid);
        assertTrue(closed && out == honest[N_OPS], "settled anyway");
    }

    function test_settle_gasBurningConsumer_succeeds() public {
        Consumer c = new Consumer(rollup);
        c.setMode(Consumer.Mode.Burn);
        (bytes32 rid, uint256 id, Claim memory cl) = _requestAndPost(c);
        uint256 g = gasleft();
        rollup.settle(id, 0, cl, new bytes32[](0), tensorType, slots[N_OPS]);
        assertLt(g - gasleft(), 400_000, "the callback is held to its limit");
        (,,,,,, bool closed) = rollup.requests(rid);
        assertTrue(closed, "settled anyway");
    }

    function test_settle_lowGas_reverts() public {
        Consumer c = new Consumer(rollup);
        (, uint256 id, Claim memory cl) = _requestAndPost(c);
        vm.expectRevert(E.InsufficientGasForCallback.selector);
        rollup.settle{gas: 150_000}(id, 0, cl, new bytes32[](0), tensorType, slots[N_OPS]);
    }

    function test_settle_notFinal_reverts() public {
        Consumer c = new Consumer(rollup);
        vm.deal(address(this), 1 ether);
        bytes32 rid = c.ask{value: 0.1 ether}(modelId, tensorType, input);
        Claim[] memory cs = new Claim[](1);
        cs[0] = _claim(rid, honest);
        uint256 id = _post(cs);
        vm.expectRevert(abi.encodeWithSelector(E.ClaimNotFinal.selector, id, 0));
        rollup.settle(id, 0, cs[0], new bytes32[](0), tensorType, slots[N_OPS]);
    }

    function test_settle_otherInput_reverts() public {
        Consumer c = new Consumer(rollup);
        (, uint256 id, Claim memory cl) = _requestAndPost(c);
        cl.inputHash = bytes32(uint256(3));
        vm.expectRevert(E.ClaimDoesNotMatchRequest.selector);
        rollup.settle(id, 0, cl, new bytes32[](0), tensorType, slots[N_OPS]);
    }

    function test_refundRequest_succeeds() public {
        Consumer c = new Consumer(rollup);
        vm.deal(address(this), 1 ether);
        bytes32 rid = c.ask{value: 0.1 ether}(modelId, tensorType, input);
        vm.expectRevert(abi.encodeWithSelector(E.RequestNotExpired.selector, rid));
        rollup.refundRequest(rid);
        vm.warp(block.timestamp + 7 days + 1);
        rollup.refundRequest(rid);
        assertEq(rollup.credit(address(c)), 0.1 ether, "fee credited back");
        vm.expectRevert(abi.encodeWithSelector(E.RequestClosed.selector, rid));
        rollup.refundRequest(rid);
    }

    function test_withdraw_fees_succeeds() public {
        Consumer c = new Consumer(rollup);
        (, uint256 id, Claim memory cl) = _requestAndPost(c);
        rollup.settle(id, 0, cl, new bytes32[](0), tensorType, slots[N_OPS]);
        uint256 before = sequencer.balance;
        vm.prank(sequencer);
        rollup.withdraw();
        assertEq(sequencer.balance - before, 0.1 ether, "fee paid");
        vm.expectRevert(E.NothingToWithdraw.selector);
        vm.prank(sequencer);
        rollup.withdraw();
    }

    function test_constructor_gameMismatch_reverts() public {
        vm.expectRevert(E.GameMismatch.selector);
        new InferenceRollup(
            IModelRegistry(address(registry)), IDisputeGame(address(games)), MIN_STAKE, 2 days, WINDOW, 1, 1
        );
        vm.expectRevert(E.BadRollupConfig.selector);
        new InferenceRollup(IModelRegistry(address(registry)), IDisputeGame(address(games)), MIN_STAKE, 1, WINDOW, 1, 1);
    }
}
