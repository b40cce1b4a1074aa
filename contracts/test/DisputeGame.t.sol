// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Fixture, MemMerkle, FixedVerifier} from "./utils/Fixtures.sol";
import {DisputeGame} from "../src/DisputeGame.sol";
import {InferenceRollup} from "../src/InferenceRollup.sol";
import {OneStepVerifier} from "../src/onestep/OneStepVerifier.sol";
import {IOneStepVerifier} from "../src/interfaces/IOneStepVerifier.sol";
import {Claim, Phase, Side, Reason, StepReveal} from "../src/interfaces/IDisputeGame.sol";
import "../src/Errors.sol" as E;

/// @notice Whole games over the toy model (5 copy ops of `i8 [100]`), with the real one-step
///         verifier, and every refusal of every move.
contract DisputeGameTest is Fixture {
    bytes internal input;
    bytes[] internal honestSlots;
    bytes32[] internal honest;

    function setUp() public {
        vm.warp(1_000_000);
        _deployDefault();
        input = _input(42);
        bytes[] memory s = _trace(input, 0, 0);
        for (uint256 j = 0; j < s.length; ++j) {
            honestSlots.push(s[j]);
        }
        honest = _slotHashes(s);
    }

    // ------------------------------------------------------------ helpers

    function _opening(bytes memory data_, bytes32[] memory h_, uint64 slot_, uint256 leaf_)
        internal
        view
        returns (IOneStepVerifier.Opening[] memory o_)
    {
        bytes32[] memory chunks = MemMerkle.chunks(data_);
        IOneStepVerifier.LeafRange[] memory r = new IOneStepVerifier.LeafRange[](1);
        bytes32[] memory one = new bytes32[](1);
        one[0] = chunks[leaf_];
        r[0] = IOneStepVerifier.LeafRange({start: uint64(leaf_), leaves: one});
        o_ = new IOneStepVerifier.Opening[](1);
        o_[0] = IOneStepVerifier.Opening({
            tensorType: tensorType,
            dataRoot: MemMerkle.root(chunks),
            membership: MemMerkle.proof(_table(h_, slot_), slot_),
            ranges: r,
            siblings: MemMerkle.proof(chunks, leaf_)
        });
    }

    /// @dev Plays a game between a defender on (`dh_`, `ds_`) and a challenger on (`ch_`, `cs_`)
    ///      to the leaf reveal; returns the game id and the disputed op.
    function _playToOneStep(bytes32[] memory dh_, bytes[] memory ds_, bytes32[] memory ch_, bytes[] memory cs_)
        internal
        returns (uint256 gameId_, uint64 op_)
    {
        (, gameId_) = _postAndChallenge(dh_, challenger);
        _revealFinal(gameId_, dh_);
        _bisectTrace(gameId_, dh_, ch_);
        op_ = games.game(gameId_).hi;
        vm.prank(sequencer);
        games.revealStep(gameId_, _step(dh_, ds_, op_));
        _bisectTensor(gameId_, ds_[op_], cs_[op_]);
        DisputeGame.GameView memory g = games.game(gameId_);
        assertTrue(g.phase == Phase.AwaitLeaf, "at the leaf");
        vm.prank(sequencer);
        games.revealLeaf(gameId_, MemMerkle.chunks(ds_[op_])[g.index]);
    }

    function _lying(uint32 lieAt_, uint256 byte_) internal returns (bytes[] memory s_, bytes32[] memory h_) {
        s_ = _trace(input, lieAt_, byte_);
        h_ = _slotHashes(s_);
    }

    // ------------------------------------------------------------ whole games

    function test_oneStep_lyingDefender_succeeds() public {
        (bytes[] memory ls, bytes32[] memory lh) = _lying(3, 37);
        (uint256 id, uint64 op) = _playToOneStep(lh, ls, honest, honestSlots);
        assertEq(op, 3, "the lie is at op 3");
        DisputeGame.GameView memory g = games.game(id);
        assertEq(g.index, 1, "byte 37 is in leaf 1");
        vm.prank(challenger);
        games.oneStep(id, 5, ops[op - 1], _opening(honestSlots[op - 1], honest, op - 1, 1));
        g = games.game(id);
        assertTrue(g.phase == Phase.Resolved, "resolved");
        assertTrue(g.winner == Side.Challenger && g.reason == Reason.OneStepMismatch, "challenger wins by mismatch");
        assertEq(games.credit(challenger), CH_BOND + DEF_BOND / 2, "bond back plus half the defender's");
        assertEq(games.totalBurnt(), DEF_BOND / 2, "half burnt");
        assertTrue(rollup.claimState(1, 0) == InferenceRollup.ClaimState.Invalidated, "claim invalidated");
    }

    function test_oneStep_honestDefender_succeeds() public {
        // The challenger wrongly believes op 2 changed byte 70.
        (bytes[] memory ws, bytes32[] memory wh) = _lying(2, 70);
        (uint256 id, uint64 op) = _playToOneStep(honest, honestSlots, wh, ws);
        assertEq(op, 2, "the challenger steers to op 2");
        vm.prank(challenger);
        games.oneStep(id, 70 % 32, ops[op - 1], _opening(honestSlots[op - 1], honest, op - 1, 2));
        DisputeGame.GameView memory g = games.game(id);
        assertTrue(g.winner == Side.Defender && g.reason == Reason.OneStepMatch, "defender wins by match");
        assertEq(games.credit(sequencer), DEF_BOND + CH_BOND / 2, "defender paid");
        vm.warp(block.timestamp + WINDOW + 1);
        assertTrue(rollup.claimState(1, 0) == InferenceRollup.ClaimState.Final, "claim final after winning");
    }

    /// @dev A lie at any op and byte, under any degree and tensor levels, loses to an honest challenger.
    function testFuzz_oneStep_anyLieLoses_succeeds(uint256 lieAt_, uint256 byte_, uint256 degree_, uint256 levels_)
        public
    {
        _deploy(
            _config(uint32(bound(degree_, 2, 6)), uint32(bound(levels_, 1, 3))),
            IOneStepVerifier(address(new OneStepVerifier()))
        );
        uint32 at = uint32(bound(lieAt_, 1, N_OPS));
        uint256 b = bound(byte_, 0, NUMEL - 1);
        (bytes[] memory ls, bytes32[] memory lh) = _lying(at, b);
        (uint256 id, uint64 op) = _playToOneStep(lh, ls, honest, honestSlots);
        assertEq(op, at, "bisection finds the lying op");
        assertEq(games.game(id).index, b / 32, "and the lying leaf");
        vm.prank(challenger);
        games.oneStep(id, uint32(b % 32), ops[op - 1], _opening(honestSlots[op - 1], honest, op - 1, b / 32));
        assertTrue(games.game(id).winner == Side.Challenger, "challenger wins");
    }

    function test_oneStep_nonZeroPadding_succeeds() public {
        // The liar's output of op 4 has a non-zero byte at 110, past the tensor's 100 bytes. No
        // batch can carry such a tensor as a claim's output (its data must be exactly 100 bytes),
        // so it stays inside the trace: op 5 outputs real (wrong) data.
        bytes[] memory ls = _trace(input, 0, 0);
        bytes memory d = bytes.concat(ls[4], new bytes(28));
        d[110] = 0x01;
        ls[4] = d;
        ls[5] = bytes.concat(ls[5]);
        ls[5][37] = bytes1(uint8(ls[5][37]) ^ 0x01);
        bytes32[] memory lh = _slotHashes(ls);
        (uint256 id, uint64 op) = _playToOneStep(lh, ls, honest, honestSlots);
        assertEq(op, 4, "op 4");
        vm.prank(challenger);
        games.oneStep(id, 14, ops[op - 1], new IOneStepVerifier.Opening[](0));
        DisputeGame.GameView memory g = games.game(id);
        assertTrue(g.winner == Side.Challenger && g.reason == Reason.NonZeroPadding, "padding must be zero");
    }

    function test_oneStep_zeroPadding_succeeds() public {
        // The lie is at byte 97 (leaf 3); the challenger names a padding element instead.
        (bytes[] memory ls, bytes32[] memory lh) = _lying(1, 97);
        (uint256 id, uint64 op) = _playToOneStep(lh, ls, honest, honestSlots);
        vm.prank(challenger);
        games.oneStep(id, 20, ops[op - 1], new IOneStepVerifier.Opening[](0));
        DisputeGame.GameView memory g = games.game(id);
        assertTrue(g.winner == Side.Defender && g.reason == Reason.ZeroPadding, "zero padding is right");
    }

    // ------------------------------------------------------------ clocks and timeouts

    function test_claimTimeout_silentDefender_succeeds() public {
        (, uint256 id) = _postAndChallenge(honest, challenger);
        vm.warp(block.timestamp + CLOCK + 1);
        vm.prank(challenger);
        games.claimTimeout(id);
        DisputeGame.GameView memory g = games.game(id);
        assertTrue(g.winner == Side.Challenger && g.reason == Reason.Timeout, "timeout");
        assertTrue(
            rollup.claimState(1, 0) == InferenceRollup.ClaimState.Invalidated, "an honest but silent defender loses"
        );
    }

    function test_claimTimeout_inTime_reverts() public {
        (, uint256 id) = _postAndChallenge(honest, challenger);
        vm.warp(block.timestamp + CLOCK);
        vm.expectRevert(abi.encodeWithSelector(E.NotTimedOut.selector, Side.Defender, 0));
        games.claimTimeout(id);
    }

    function test_claimTimeout_resolved_reverts() public {
        (, uint256 id) = _postAndChallenge(honest, challenger);
        vm.warp(block.timestamp + CLOCK + 1);
        games.claimTimeout(id);
        vm.expectRevert(abi.encodeWithSelector(E.GameAlreadyResolved.selector, id));
        games.claimTimeout(id);
    }

    function test_claimTimeout_unknownGame_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(E.GameNotFound.selector, 7));
        games.claimTimeout(7);
    }

    function test_revealFinal_atLastSecond_succeeds() public {
        (, uint256 id) = _postAndChallenge(honest, challenger);
        vm.warp(block.timestamp + CLOCK);
        _revealFinal(id, honest);
        DisputeGame.GameView memory g = games.game(id);
        assertEq(g.defenderLeft, 0, "defender spent its whole clock");
        assertEq(g.challengerLeft, CLOCK, "challenger untouched");
        assertEq(g.turnStarted, block.timestamp, "challenger's turn starts now");
    }

    function test_revealFinal_clockExpired_reverts() public {
        (, uint256 id) = _postAndChallenge(honest, challenger);
        vm.warp(block.timestamp + CLOCK + 5);
        bytes32[] memory sib = MemMerkle.proof(_table(honest, N_OPS), N_OPS);
        bytes32 root = _actRoot(honest, N_OPS);
        vm.expectRevert(abi.encodeWithSelector(E.ClockExpired.selector, Side.Defender, 5));
        vm.prank(sequencer);
        games.revealFinal(id, root, sib);
    }

    function test_clockLeft_runsOnlyForMover_succeeds() public {
        (bytes[] memory ls, bytes32[] memory lh) = _lying(2, 3);
        (, uint256 id) = _postAndChallenge(lh, challenger);
        vm.warp(block.timestamp + 100);
        assertEq(games.clockLeft(id, Side.Defender), CLOCK - 100, "defender's clock runs");
        assertEq(games.clockLeft(id, Side.Challenger), CLOCK, "challenger's does not");
        _revealFinal(id, lh);
        vm.warp(block.timestamp + 40);
        bytes32[] memory st = _dissectionStates(id, lh);
        vm.prank(sequencer);
        games.dissect(id, st);
        vm.warp(block.timestamp + 7);
        assertEq(games.clockLeft(id, Side.Challenger), CLOCK - 7, "challenger's runs on its turn");
        assertEq(games.clockLeft(id, Side.Defender), CLOCK - 140, "defender paid for both its moves");
        ls;
    }

    // ------------------------------------------------------------ refusals

    function test_revealFinal_notYourTurn_reverts() public {
        (, uint256 id) = _postAndChallenge(honest, challenger);
        bytes32 root = _actRoot(honest, N_OPS);
        bytes32[] memory sib = MemMerkle.proof(_table(honest, N_OPS), N_OPS);
        vm.expectRevert(abi.encodeWithSelector(E.NotYourTurn.selector, challenger, Side.Defender));
        vm.prank(challenger);
        games.revealFinal(id, root, sib);
    }

    function test_dissect_wrongMove_reverts() public {
        (, uint256 id) = _postAndChallenge(honest, challenger);
        vm.expectRevert(abi.encodeWithSelector(E.WrongMove.selector, Phase.AwaitFinal, Phase.AwaitDissection));
        vm.prank(sequencer);
        games.dissect(id, new bytes32[](2));
    }

    function test_revealFinal_wrongOutput_reverts() public {
        (, uint256 id) = _postAndChallenge(honest, challenger);
        (, bytes32[] memory lh) = _lying(5, 1); // a table whose output is not the claim's
        bytes32 root = _actRoot(lh, N_OPS);
        bytes32[] memory sib = MemMerkle.proof(_table(lh, N_OPS), N_OPS);
        vm.expectRevert(E.InvalidOutputProof.selector);
        vm.prank(sequencer);
        games.revealFinal(id, root, sib);
    }

    function test_revealFinal_shortProof_reverts() public {
        (, uint256 id) = _postAndChallenge(honest, challenger);
        bytes32 root = _actRoot(honest, N_OPS);
        vm.expectRevert(abi.encodeWithSelector(E.BadProofLength.selector, 3, 2));
        vm.prank(sequencer);
        games.revealFinal(id, root, new bytes32[](2));
    }

    function _toPick() internal returns (uint256 id_, bytes32[] memory st_, bytes32[] memory lh_) {
        (, lh_) = _lying(4, 9);
        (, id_) = _postAndChallenge(lh_, challenger);
        _revealFinal(id_, lh_);
        st_ = _dissectionStates(id_, lh_);
    }

    function test_dissect_wrongCount_reverts() public {
        (uint256 id, bytes32[] memory st,) = _toPick();
        assertEq(st.length, 2, "degree 3 over 5 ops: 2 interior states");
        vm.expectRevert(abi.encodeWithSelector(E.WrongStateCount.selector, 2, 3));
        vm.prank(sequencer);
        games.dissect(id, new bytes32[](3));
    }

    function test_pick_otherStates_reverts() public {
        (uint256 id, bytes32[] memory st,) = _toPick();
        vm.prank(sequencer);
        games.dissect(id, st);
        st[0] = bytes32(uint256(1));
        vm.expectRevert(E.StatesMismatch.selector);
        vm.prank(challenger);
        games.pick(id, 0, st);
    }

    function test_pick_badPart_reverts() public {
        (uint256 id, bytes32[] memory st,) = _toPick();
        vm.prank(sequencer);
        games.dissect(id, st);
        vm.expectRevert(abi.encodeWithSelector(E.BadPart.selector, 3, 3));
        vm.prank(challenger);
        games.pick(id, 3, st);
    }

    function test_pick_points_succeeds() public {
        (uint256 id, bytes32[] memory st,) = _toPick();
        vm.prank(sequencer);
        games.dissect(id, st);
        // [0, 5] in 3 parts: points 0, 1, 3, 5 (as `dissection_points`).
        uint64[] memory pts = games.dissectionPoints(0, 5);
        assertEq(pts.length, 4, "4 points");
        assertEq(pts[1], 1, "p1");
        assertEq(pts[2], 3, "p2");
        vm.prank(challenger);
        games.pick(id, 2, st);
        DisputeGame.GameView memory g = games.game(id);
        assertEq(g.lo, 3, "lo");
        assertEq(g.hi, 5, "hi");
        assertEq(g.a, st[1], "s_lo is the second interior state");
        assertTrue(g.phase == Phase.AwaitDissection, "still an interval of 2");
    }

    function _toStep() internal returns (uint256 id_, bytes[] memory ls_, bytes32[] memory lh_) {
        (ls_, lh_) = _lying(3, 50);
        (, id_) = _postAndChallenge(lh_, challenger);
        _revealFinal(id_, lh_);
        _bisectTrace(id_, lh_, honest);
    }

    function test_revealStep_badOpProof_reverts() public {
        (uint256 id, bytes[] memory ls, bytes32[] memory lh) = _toStep();
        StepReveal memory s = _step(lh, ls, 3);
        s.op = ops[1]; // op 2's encoding for op 3
        vm.expectRevert(E.InvalidOpProof.selector);
        vm.prank(sequencer);
        games.revealStep(id, s);
    }

    function test_revealStep_wrongPrevRoot_reverts() public {
        (uint256 id, bytes[] memory ls, bytes32[] memory lh) = _toStep();
        StepReveal memory s = _step(lh, ls, 3);
        s.prevActivationsRoot = bytes32(uint256(5));
        vm.expectRevert(E.PrevStateMismatch.selector);
        vm.prank(sequencer);
        games.revealStep(id, s);
    }

    function test_revealStep_wrongRoot_reverts() public {
        (uint256 id, bytes[] memory ls, bytes32[] memory lh) = _toStep();
        StepReveal memory s = _step(lh, ls, 3);
        s.activationsRoot = s.prevActivationsRoot;
        vm.expectRevert(E.StateMismatch.selector);
        vm.prank(sequencer);
        games.revealStep(id, s);
    }

    function test_revealStep_wrongDataRoot_reverts() public {
        (uint256 id, bytes[] memory ls, bytes32[] memory lh) = _toStep();
        StepReveal memory s = _step(lh, ls, 3);
        s.dataRoot = MemMerkle.root(MemMerkle.chunks(honestSlots[3]));
        vm.expectRevert(E.SlotNotSet.selector);
        vm.prank(sequencer);
        games.revealStep(id, s);
    }

    function test_revealStep_wrongSiblings_reverts() public {
        (uint256 id, bytes[] memory ls, bytes32[] memory lh) = _toStep();
        StepReveal memory s = _step(lh, ls, 3);
        s.slotSiblings[0] = bytes32(uint256(9));
        vm.expectRevert(E.SlotNotEmpty.selector);
        vm.prank(sequencer);
        games.revealStep(id, s);
    }

    function _toNodes() internal returns (uint256 id_, bytes[] memory ls_) {
        bytes32[] memory lh;
        (id_, ls_, lh) = _toStep();
        vm.prank(sequencer);
        games.revealStep(id_, _step(lh, ls_, 3));
    }

    function test_revealNodes_wrongCount_reverts() public {
        (uint256 id,) = _toNodes();
        vm.expectRevert(abi.encodeWithSelector(E.WrongNodeCount.selector, 2, 4));
        vm.prank(sequencer);
        games.revealNodes(id, new bytes32[](4));
    }

    function test_revealNodes_wrongNodes_reverts() public {
        (uint256 id,) = _toNodes();
        vm.expectRevert(E.NodesMismatch.selector);
        vm.prank(sequencer);
        games.revealNodes(id, new bytes32[](2));
    }

    function test_pickNode_badChild_reverts() public {
        (uint256 id, bytes[] memory ls) = _toNodes();
        bytes32[] memory n = _nodes(ls[3], 1, 0, 2);
        vm.prank(sequencer);
        games.revealNodes(id, n);
        vm.expectRevert(abi.encodeWithSelector(E.BadChild.selector, 2, 2));
        vm.prank(challenger);
        games.pickNode(id, 2, n);
        n[0] = bytes32(0);
        vm.expectRevert(E.RevealedNodesMismatch.selector);
        vm.prank(challenger);
        games.pickNode(id, 0, n);
    }

    function test_revealLeaf_wrongLeaf_reverts() public {
        (uint256 id, bytes[] memory ls) = _toNodes();
        _bisectTensor(id, ls[3], honestSlots[3]);
        vm.expectRevert(E.LeafMismatch.selector);
        vm.prank(sequencer);
        games.revealLeaf(id, bytes32(0));
    }

    function test_oneStep_refusals_reverts() public {
        (bytes[] memory ls, bytes32[] memory lh) = _lying(3, 37);
        (uint256 id, uint64 op) = _playToOneStep(lh, ls, honest, honestSlots);
        IOneStepVerifier.Opening[] memory o = _opening(honestSlots[op - 1], honest, op - 1, 1);
        vm.expectRevert(E.OpMismatch.selector);
        vm.prank(challenger);
        games.oneStep(id, 5, ops[0], o);
        vm.expectRevert(abi.encodeWithSelector(E.BadElement.selector, 32, 32));
        vm.prank(challenger);
        games.oneStep(id, 32, ops[op - 1], o);
        // An opening against the liar's own table at op - 1 is the agreed one too; a forged leaf is not.
        o[0].ranges[0].leaves[0] = bytes32(uint256(1));
        vm.expectRevert();
        vm.prank(challenger);
        games.oneStep(id, 5, ops[op - 1], o);
        assertTrue(games.game(id).phase == Phase.AwaitOneStep, "refusals change nothing");
    }

    function test_open_notRollup_reverts() public {
        Claim memory c = _claim(bytes32(0), honest);
        vm.deal(address(this), 10 ether);
        vm.expectRevert(abi.encodeWithSelector(E.NotRollup.selector, address(this)));
        games.open{value: CH_BOND}(c, sequencer, challenger, 0);
    }

    function test_withdraw_payout_succeeds() public {
        (, uint256 id) = _postAndChallenge(honest, challenger);
        vm.warp(block.timestamp + CLOCK + 1);
        games.claimTimeout(id);
        uint256 before = challenger.balance;
        vm.prank(challenger);
        games.withdraw();
        assertEq(challenger.balance - before, CH_BOND + DEF_BOND / 2, "paid");
        assertEq(games.credit(challenger), 0, "credit cleared");
        vm.expectRevert(E.NothingToWithdraw.selector);
        vm.prank(challenger);
        games.withdraw();
    }

    function test_constructor_badConfig_reverts() public {
        vm.expectRevert(E.BadGameConfig.selector);
        new DisputeGame(address(1), registry, verifier, _config(1, 1));
        vm.expectRevert(E.BadGameConfig.selector);
        new DisputeGame(address(1), registry, verifier, _config(2, 0));
    }

    function test_elementInLeaf_littleEndian_succeeds() public view {
        bytes32 leaf = bytes32(hex"ff7f0080fffffffe");
        assertEq(games.elementInLeaf(leaf, 1, 0), -1, "i8 -1");
        assertEq(games.elementInLeaf(leaf, 1, 1), 127, "i8 127");
        assertEq(games.elementInLeaf(leaf, 2, 0), 0x7fff, "i16 LE");
        assertEq(games.elementInLeaf(leaf, 2, 1), -32768, "i16 min");
        assertEq(games.elementInLeaf(leaf, 4, 1), -16777217, "i32 0xfeffffff");
    }

    // ------------------------------------------------------------ a one-op model with a weight operand

    /// @dev Opening of leaf `leaf_` of `data_` (type `type_`) at position `at_` of the tree over `members_`.
    function _open1(bytes memory type_, bytes memory data_, bytes32[] memory members_, uint256 at_, uint256 leaf_)
        internal
        pure
        returns (IOneStepVerifier.Opening memory o_)
    {
        bytes32[] memory chunks = MemMerkle.chunks(data_);
        IOneStepVerifier.LeafRange[] memory r = new IOneStepVerifier.LeafRange[](1);
        bytes32[] memory one = new bytes32[](1);
        one[0] = chunks[leaf_];
        r[0] = IOneStepVerifier.LeafRange({start: uint64(leaf_), leaves: one});
        o_ = IOneStepVerifier.Opening({
            tensorType: type_, dataRoot: MemMerkle.root(chunks), membership: MemMerkle.proof(members_, at_),
            ranges: r,
            siblings: MemMerkle.proof(chunks, leaf_)
        });
    }

    bytes internal lutTableType = hex"010100000100"; // i8 [256]
    bytes internal lutTable;
    bytes32[] internal lutWeights;
    bytes internal lutOp;
    bytes internal lutY;
    bytes internal lutYLie;
    bytes32[] internal lutSlots;

    /// @dev Registers the one-`lut` model and posts a claim whose output changes y[40]; returns the game.
    function _lutGame() internal returns (uint256 id_) {
        lutTable = new bytes(256);
        for (uint256 j = 0; j < 256; ++j) {
            lutTable[j] = bytes1(uint8(j * 7 + 3));
        }
        lutWeights.push(MemMerkle.tensorHash(lutTableType, lutTable));
        lutWeights.push(weightHashes[0]);
        lutOp = abi.encodePacked(uint8(6), uint8(2), uint8(0), uint32(0), uint8(1), uint32(0), tensorType);
        bytes32[] memory opLeaves = new bytes32[](1);
        opLeaves[0] = keccak256(lutOp);
        bytes32 m =
            registry.register(1, 1, 2, 1, tensorType, MemMerkle.root(opLeaves), MemMerkle.root(lutWeights), "lut");
        // Honest y[i] = table[x[i] + 128]; the liar changes y[40].
        lutY = new bytes(NUMEL);
        for (uint256 i = 0; i < NUMEL; ++i) {
            lutY[i] = lutTable[uint256(int256(int8(uint8(input[i]))) + 128)];
        }
        lutYLie = bytes.concat(lutY);
        lutYLie[40] = bytes1(uint8(lutYLie[40]) ^ 1);
        lutSlots.push(_remember(tensorType, input));
        lutSlots.push(_remember(tensorType, lutYLie));
        Claim[] memory cs = new Claim[](1);
        cs[0] = Claim({requestId: bytes32(uint256(9)), modelId: m, inputHash: lutSlots[0], outputHash: lutSlots[1]});
        uint256 b = _post(cs);
        vm.prank(challenger);
        id_ = rollup.challenge{value: CH_BOND}(b, 0, cs[0], new bytes32[](0));
    }

    /// @dev A single `lut` op (so the game goes from the final reveal straight to the step) whose
    ///      table is weight 0: the one-step opens a slot and a weight.
    function test_oneStep_weightOperand_succeeds() public {
        uint256 id = _lutGame();
        vm.prank(sequencer);
        games.revealFinal(id, MemMerkle.root(lutSlots), MemMerkle.proof(lutSlots, 1));
        assertTrue(games.game(id).phase == Phase.AwaitStep, "one op: straight to the step");
        bytes32[] memory before = new bytes32[](2);
        before[0] = lutSlots[0];
        vm.prank(sequencer);
        games.revealStep(
            id,
            StepReveal({
                prevActivationsRoot: MemMerkle.root(before),
                activationsRoot: MemMerkle.root(lutSlots),
                slotSiblings: MemMerkle.proof(lutSlots, 1),
                dataRoot: MemMerkle.root(MemMerkle.chunks(lutYLie)),
                op: lutOp,
                opSiblings: new bytes32[](0)
            })
        );
        _bisectTensor(id, lutYLie, lutY);
        assertEq(games.game(id).index, 1, "leaf 1 holds y[40]");
        vm.prank(sequencer);
        games.revealLeaf(id, MemMerkle.chunks(lutYLie)[1]);
        uint256 entry = uint256(int256(int8(uint8(input[40]))) + 128);
        IOneStepVerifier.Opening[] memory o = new IOneStepVerifier.Opening[](2);
        o[0] = _open1(tensorType, input, before, 0, 1);
        o[1] = _open1(lutTableType, lutTable, lutWeights, 0, entry / 32);
        vm.prank(challenger);
        games.oneStep(id, 8, lutOp, o);
        DisputeGame.GameView memory g = games.game(id);
        assertTrue(g.winner == Side.Challenger && g.reason == Reason.OneStepMismatch, "the table says otherwise");
    }
}
