// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Fixture, MemMerkle} from "./utils/Fixtures.sol";
import {Test} from "./utils/Test.sol";
import {DisputeGame} from "../src/DisputeGame.sol";
import {InferenceRollup} from "../src/InferenceRollup.sol";
import {OneStepVerifier} from "../src/onestep/OneStepVerifier.sol";
import {IOneStepVerifier} from "../src/interfaces/IOneStepVerifier.sol";
import {Claim, Phase, Side, Reason} from "../src/interfaces/IDisputeGame.sol";

/// @notice Random but legal play against the real contracts: posts (honest or lying claims),
///         challenges (honest challengers, with right and corrupted proofs), moves of both
///         sides by their traces, stalls, timeouts, withdrawals and strangers trying to post.
contract Handler is Fixture {
    bytes[] internal honestSlots;
    bytes32[] internal honest;
    bytes[] internal lieSlots;
    bytes32[] internal lie;

    struct Posted {
        uint256 batchId;
        bool lying;
    }

    Posted[] public posted;
    uint256[] public gameIds;
    mapping(uint256 gameId => bool lying) public gameLying;
    mapping(uint256 gameId => uint256 openedAt) public openedAt;
    uint256[] public finalBatches;

    uint256 public deposited;
    uint256 public defenderBonds;
    uint256 public withdrawn;
    uint256 public strangerPosts;
    uint256 public badProofsAccepted;
    address[] public accounts;

    constructor() {
        vm.warp(1_000_000);
        _deployDefault();
        bytes[] memory s = _trace(_input(9), 0, 0);
        bytes[] memory l = _trace(_input(9), 2, 33);
        for (uint256 j = 0; j < s.length; ++j) {
            honestSlots.push(s[j]);
            lieSlots.push(l[j]);
        }
        honest = _slotHashes(s);
        lie = _slotHashes(l);
        accounts.push(sequencer);
        accounts.push(challenger);
        accounts.push(challenger2);
    }

    function gamesAddr() external view returns (address) {
        return address(games);
    }

    function rollupAddr() external view returns (address) {
        return address(rollup);
    }

    function sequencerAddr() external view returns (address) {
        return sequencer;
    }

    function MIN_STAKE_() external pure returns (uint256) {
        return MIN_STAKE;
    }

    function CLOCK_() external pure returns (uint256) {
        return CLOCK;
    }

    function gameCount() external view returns (uint256) {
        return gameIds.length;
    }

    function postedCount() external view returns (uint256) {
        return posted.length;
    }

    function finalCount() external view returns (uint256) {
        return finalBatches.length;
    }

    function accountCount() external view returns (uint256) {
        return accounts.length;
    }

    // ------------------------------------------------------------ actions

    function post(bool lying_) external {
        if (rollup.freeStake(sequencer) < MIN_STAKE) return;
        Claim[] memory cs = new Claim[](1);
        cs[0] = _claim(bytes32(posted.length), lying_ ? lie : honest);
        posted.push(Posted(_post(cs), lying_));
    }

    function postAsStranger(address who_) external {
        if (who_ == sequencer) return;
        vm.prank(who_);
        try rollup.postBatch(bytes32(uint256(1)), 1, "") {
            ++strangerPosts;
        } catch {}
    }

    function challenge(uint256 batchSeed_, bool second_) external {
        if (posted.length == 0) return;
        Posted memory p = posted[batchSeed_ % posted.length];
        (,,, uint64 at) = rollup.batches(p.batchId);
        if (block.timestamp > at + WINDOW) return;
        if (rollup.claimStatus(p.batchId, 0).invalidated) return;
        if (rollup.freeStake(sequencer) == 0 && second_) return;
        address who = second_ ? challenger2 : challenger;
        Claim memory c = _claim(bytes32(batchSeed_ % posted.length), p.lying ? lie : honest);
        vm.prank(who);
        uint256 id = rollup.challenge{value: CH_BOND}(p.batchId, 0, c, new bytes32[](0));
        deposited += CH_BOND + games.game(id).defenderBond;
        defenderBonds += games.game(id).defenderBond;
        gameIds.push(id);
        gameLying[id] = p.lying;
        openedAt[id] = block.timestamp;
    }

    function challengeBadProof(uint256 batchSeed_, bytes32 junk_) external {
        if (posted.length == 0) return;
        Posted memory p = posted[batchSeed_ % posted.length];
        Claim memory c = _claim(bytes32(batchSeed_ % posted.length), p.lying ? lie : honest);
        c.outputHash = junk_ == c.outputHash ? bytes32(uint256(junk_) ^ 1) : junk_;
        vm.prank(challenger);
        try rollup.challenge{value: CH_BOND}(p.batchId, 0, c, new bytes32[](0)) {
            ++badProofsAccepted;
        } catch {}
    }

    /// @dev One move of whichever side is to move in a game, each by its own trace.
    function move(uint256 gameSeed_) external {
        if (gameIds.length == 0) return;
        uint256 id = gameIds[gameSeed_ % gameIds.length];
        DisputeGame.GameView memory g = games.game(id);
        if (g.phase == Phase.Resolved) return;
        Side mover = games.turnOf(g.phase);
        if (games.clockLeft(id, mover) == 0) return;
        (bytes32[] memory dh, bytes[] memory ds) = gameLying[id] ? (lie, lieSlots) : (honest, honestSlots);
        address who = mover == Side.Defender ? sequencer : g.challenger;
        if (g.phase == Phase.AwaitFinal) {
            _revealFinal(id, dh);
        } else if (g.phase == Phase.AwaitDissection) {
            bytes32[] memory st = _dissectionStates(id, dh);
            vm.prank(sequencer);
            games.dissect(id, st);
        } else if (g.phase == Phase.AwaitPick) {
            bytes32[] memory st = _dissectionStates(id, dh);
            uint32 part = _partToPickOrLast(id, st);
            vm.prank(who);
            games.pick(id, part, st);
        } else if (g.phase == Phase.AwaitStep) {
            vm.prank(sequencer);
            games.revealStep(id, _step(dh, ds, g.hi));
        } else if (g.phase == Phase.AwaitNodes) {
            uint32 l = games.tensorLevels() < g.level ? games.tensorLevels() : g.level;
            bytes32[] memory nodes = _nodes(ds[g.hi], g.level - l, uint256(g.index) << l, 1 << l);
            vm.prank(sequencer);
            games.revealNodes(id, nodes);
        } else if (g.phase == Phase.AwaitNodePick) {
            uint256 count = 2; // tensor levels 1: two nodes per reveal
            bytes32[] memory nodes = _nodes(ds[g.hi], g.level, g.index, count);
            bytes32[] memory mine = _nodes(honestSlots[g.hi], g.level, g.index, count);
            uint32 child = nodes[0] != mine[0] ? 0 : 1;
            vm.prank(who);
            games.pickNode(id, child, nodes);
        } else if (g.phase == Phase.AwaitLeaf) {
            vm.prank(sequencer);
            games.revealLeaf(id, MemMerkle.chunks(ds[g.hi])[g.index]);
        } else if (g.phase == Phase.AwaitOneStep) {
            uint32 e = 0;
            bytes32 mine = MemMerkle.chunks(honestSlots[g.hi])[g.index];
            while (e < 31 && g.a[e] == mine[e]) ++e;
            vm.prank(who);
            games.oneStep(id, e, ops[g.hi - 1], _openingOf(honestSlots[g.hi - 1], g.hi - 1, g.index));
        }
    }

    function warp(uint256 dt_) external {
        vm.warp(block.timestamp + bound(dt_, 1, 4 * CLOCK));
    }

    function timeout(uint256 gameSeed_) external {
        if (gameIds.length == 0) return;
        uint256 id = gameIds[gameSeed_ % gameIds.length];
        DisputeGame.GameView memory g = games.game(id);
        if (g.phase == Phase.Resolved) return;
        Side mover = games.turnOf(g.phase);
        bool expired = block.timestamp - g.turnStarted > (mover == Side.Defender ? g.defenderLeft : g.challengerLeft);
        if (expired) games.claimTimeout(id); // must not revert: clocks always end a game
    }

    function withdraw(uint256 who_) external {
        address who = accounts[who_ % accounts.length];
        uint256 c = games.credit(who);
        if (c == 0) return;
        vm.prank(who);
        games.withdraw();
        withdrawn += c;
    }

    function markFinal(uint256 batchSeed_) external {
        if (posted.length == 0) return;
        uint256 b = posted[batchSeed_ % posted.length].batchId;
        if (rollup.claimState(b, 0) == InferenceRollup.ClaimState.Final) finalBatches.push(b);
    }

    // ------------------------------------------------------------ helpers

    function _partToPickOrLast(uint256 id_, bytes32[] memory st_) internal view returns (uint32) {
        DisputeGame.GameView memory g = games.game(id_);
        uint64[] memory pts = games.dissectionPoints(g.lo, g.hi);
        for (uint256 j = 1; j < pts.length; ++j) {
            bytes32 claimed = j + 1 == pts.length ? g.b : st_[j - 1];
            if (claimed != _stateAt(honest, pts[j])) return uint32(j - 1);
        }
        return uint32(pts.length - 2);
    }

    function _openingOf(bytes memory data_, uint64 slot_, uint256 leaf_)
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
            membership: MemMerkle.proof(_table(honest, slot_), slot_),
            ranges: r,
            siblings: MemMerkle.proof(chunks, leaf_)
        });
    }
}

/// @notice The rollup's and the games' invariants under the handler's random play.
contract InvariantsTest is Test {
    Handler internal handler;

    function setUp() public {
        handler = new Handler();
        _targets.push(address(handler));
    }

    /// @dev Every wei that entered the games is locked, credited, burnt or withdrawn.
    function invariant_bondsConserved() public view {
        DisputeGame g = _games();
        uint256 credits;
        for (uint256 i = 0; i < handler.accountCount(); ++i) {
            credits += g.credit(handler.accounts(i));
        }
        assertEq(handler.deposited(), g.totalLocked() + credits + g.totalBurnt() + handler.withdrawn(), "conservation");
        assertEq(address(g).balance, handler.deposited() - handler.withdrawn(), "balance");
    }

    /// @dev The rollup holds exactly the stake still at risk (no request fees in this play): every
    ///      wei of stake that left went into a game as a defender bond.
    function invariant_stakeAccounted() public view {
        InferenceRollup r = _rollup();
        (uint128 stake,,,) = r.sequencers(handler.sequencerAddr());
        assertEq(address(r).balance, stake, "rollup balance is the stake");
        assertEq(stake + handler.defenderBonds(), handler.MIN_STAKE_() + 10 ether, "stake + bonds taken = stake put in");
    }

    /// @dev A claim with an open game is never final.
    function invariant_noFinalWithOpenGame() public view {
        InferenceRollup r = _rollup();
        for (uint256 i = 0; i < handler.postedCount(); ++i) {
            (uint256 b,) = handler.posted(i);
            if (r.claimStatus(b, 0).openGames != 0) {
                assertTrue(r.claimState(b, 0) != InferenceRollup.ClaimState.Final, "open game");
            }
        }
    }

    /// @dev A game decided by its one-step goes to the side that told the truth.
    function invariant_oneStepDecidesOnMerit() public view {
        DisputeGame g = _games();
        for (uint256 i = 0; i < handler.gameCount(); ++i) {
            uint256 id = handler.gameIds(i);
            DisputeGame.GameView memory v = g.game(id);
            if (v.phase != Phase.Resolved || v.reason == Reason.Timeout) continue;
            assertTrue(v.winner == (handler.gameLying(id) ? Side.Challenger : Side.Defender), "merit");
        }
    }

    /// @dev Once final, always final.
    function invariant_finalNeverChanges() public view {
        InferenceRollup r = _rollup();
        for (uint256 i = 0; i < handler.finalCount(); ++i) {
            assertTrue(r.claimState(handler.finalBatches(i), 0) == InferenceRollup.ClaimState.Final, "final stays");
        }
    }

    /// @dev A game older than both clocks together is over or can be timed out now.
    function invariant_clocksEndGames() public view {
        DisputeGame g = _games();
        for (uint256 i = 0; i < handler.gameCount(); ++i) {
            uint256 id = handler.gameIds(i);
            DisputeGame.GameView memory v = g.game(id);
            assertTrue(uint256(v.defenderLeft) + v.challengerLeft <= 2 * handler.CLOCK_(), "clocks only shrink");
            if (v.phase != Phase.Resolved && block.timestamp > handler.openedAt(id) + 2 * handler.CLOCK_()) {
                assertEq(g.clockLeft(id, g.turnOf(v.phase)), 0, "the mover's clock is out");
            }
        }
    }

    /// @dev Only the registered sequencer posts; a corrupted inclusion proof never opens a game.
    function invariant_onlySequencerPostsAndProofsHold() public view {
        assertEq(handler.strangerPosts(), 0, "a stranger posted");
        assertEq(handler.badProofsAccepted(), 0, "a bad proof was accepted");
    }

    function _games() internal view returns (DisputeGame) {
        return DisputeGame(payable(address(handler.gamesAddr())));
    }

    function _rollup() internal view returns (InferenceRollup) {
        return InferenceRollup(handler.rollupAddr());
    }
}

/// @notice The handler's moves do play games to their end (so the invariants see real games).
contract HandlerSmokeTest is Test {
    function test_move_playsGamesToTheEnd_succeeds() public {
        Handler h = new Handler();
        h.post(true);
        h.post(false);
        h.challenge(0, false);
        h.challenge(1, false);
        for (uint256 k = 0; k < 40; ++k) {
            h.move(k);
        }
        DisputeGame g = DisputeGame(payable(h.gamesAddr()));
        DisputeGame.GameView memory a = g.game(1);
        DisputeGame.GameView memory b = g.game(2);
        assertTrue(
            a.phase == Phase.Resolved && a.winner == Side.Challenger && a.reason == Reason.OneStepMismatch, "lie lost"
        );
        // The honest challenger finds no difference and ends on the last leaf's padding.
        assertTrue(
            b.phase == Phase.Resolved && b.winner == Side.Defender && b.reason == Reason.ZeroPadding, "truth won"
        );
    }
}
