// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IDisputeGame, Side, Phase, Reason, Claim, GameConfig, StepReveal} from "./interfaces/IDisputeGame.sol";
import {IOneStepVerifier} from "./interfaces/IOneStepVerifier.sol";
import {IModelRegistry, Model} from "./interfaces/IModelRegistry.sol";
import {IGameResolutionSink} from "./interfaces/IGameResolutionSink.sol";
import {LibMerkle} from "./lib/LibMerkle.sol";
import {LibTensorType} from "./lib/LibTensorType.sol";
import {LibClock, Clock} from "./lib/LibClock.sol";
import {LibPosition, Position} from "./lib/LibPosition.sol";
import "./Errors.sol" as E;

/// @title DisputeGame
/// @notice Every dispute of one rollup, by id: the rules of `bisection/src/game.rs` move by move
///         (same checks, same outcomes, same clock accounting, same payouts). Differences forced
///         by the chain, all documented in `docs/contracts.md`:
///         - the program is not stored: where the referee reads op `i`, the defender supplies its
///           encoding with a proof against `opsRoot` (in {revealStep}; {oneStep} repeats it);
///         - revealed states and nodes are kept as a hash: {pick} and {pickNode} repeat them;
///         - bonds are ETH, credited to the winner and paid by {withdraw}; burnt wei stay locked here.
contract DisputeGame is IDisputeGame {
    using LibClock for Clock;
    using LibPosition for Position;

    /// @dev One game. Slots 0 and 1 change on every move; the meaning of `a`, `b` and
    ///      `commitment` depends on the phase (see `docs/contracts.md`, "Game storage").
    struct GameState {
        Clock clock;
        Phase phase;
        Side winner;
        Reason reason;
        uint32 moves;
        uint64 lo;
        uint64 hi;
        Position position;
        bytes32 a;
        bytes32 b;
        bytes32 commitment;
        bytes32 prevActivationsRoot;
        address defender;
        uint32 nOps;
        uint32 nWeights;
        uint32 outputSlot;
        address challenger;
        uint128 challengerBond;
        uint128 defenderBond;
        bytes32 weightsRoot;
        bytes32 opsRoot;
    }

    /// @notice A read-only view of one game.
    struct GameView {
        Phase phase;
        Side winner;
        Reason reason;
        uint32 moves;
        uint64 lo;
        uint64 hi;
        uint32 level;
        uint64 index;
        bytes32 a;
        bytes32 b;
        bytes32 commitment;
        bytes32 prevActivationsRoot;
        address defender;
        address challenger;
        uint64 defenderLeft;
        uint64 challengerLeft;
        uint64 turnStarted;
        uint128 challengerBond;
        uint128 defenderBond;
        bytes32 weightsRoot;
        bytes32 opsRoot;
        uint32 nOps;
        uint32 nWeights;
        uint32 outputSlot;
    }

    /// @notice The rollup: the only caller of {open} and the receiver of every resolution.
    address public immutable rollup;
    /// @notice Where models are looked up when a game opens.
    IModelRegistry public immutable registry;
    /// @notice The one-step verifier.
    IOneStepVerifier public immutable verifier;
    /// @notice Trace dissection degree.
    uint32 public immutable degree;
    /// @notice Tensor levels revealed per move.
    uint32 public immutable tensorLevels;
    /// @notice Each side's clock, in seconds.
    uint64 public immutable clockSeconds;
    /// @notice The challenger's bond.
    uint128 public immutable challengerBond;
    /// @notice The largest defender bond of a game.
    uint128 public immutable defenderBond;
    /// @notice Share of the loser's bond burnt, in basis points.
    uint32 public immutable burnBps;

    /// @notice Games opened so far (ids start at 1).
    uint256 public gameCount;
    /// @notice Wei burnt so far (kept locked in this contract forever).
    uint256 public totalBurnt;
    /// @notice Wei locked in games not yet resolved.
    uint256 public totalLocked;
    /// @notice Payouts credited and not yet withdrawn, by account.
    mapping(address account => uint256 amount) public credit;

    /// @dev Games by id.
    mapping(uint256 gameId => GameState) internal _games;

    /// @dev Transient reentrancy lock slot.
    bytes32 private constant _LOCK = keccak256("DisputeGame.lock");

    /// @param rollup_ The rollup that opens games (deploy it at this address next).
    /// @param registry_ The model registry.
    /// @param verifier_ The one-step verifier.
    /// @param config_ The rules of every game.
    constructor(address rollup_, IModelRegistry registry_, IOneStepVerifier verifier_, GameConfig memory config_) {
        if (config_.degree < 2 || config_.tensorLevels == 0 || config_.burnBps > 10_000) revert E.BadGameConfig();
        rollup = rollup_;
        registry = registry_;
        verifier = verifier_;
        degree = config_.degree;
        tensorLevels = config_.tensorLevels;
        clockSeconds = config_.clockSeconds;
        challengerBond = config_.challengerBond;
        defenderBond = config_.defenderBond;
        burnBps = config_.burnBps;
    }

    /// @inheritdoc IDisputeGame
    function open(Claim calldata claim_, address defender_, address challenger_, uint128 defenderBond_)
        external
        payable
        returns (uint256 gameId_)
    {
        if (msg.sender != rollup) revert E.NotRollup(msg.sender);
        if (defenderBond_ > defenderBond || msg.value != uint256(challengerBond) + defenderBond_) {
            revert E.BadBond(uint256(challengerBond) + defenderBond_, msg.value);
        }
        Model memory m = registry.model(claim_.modelId);
        if (m.registrant == address(0)) revert E.ModelNotRegistered(claim_.modelId);
        bytes32 s0 =
            _state(m.weightsRoot, LibMerkle.rootOfFirstLeaf(claim_.inputHash, LibMerkle.depthFor(uint256(m.nOps) + 1)));
        gameId_ = ++gameCount;
        GameState storage g = _games[gameId_];
        g.clock = LibClock.wrap(clockSeconds, clockSeconds, uint64(block.timestamp));
        g.phase = Phase.AwaitFinal;
        g.a = s0;
        g.b = claim_.outputHash;
        g.defender = defender_;
        g.nOps = m.nOps;
        g.nWeights = m.nWeights;
        g.outputSlot = m.outputSlot;
        g.challenger = challenger_;
        g.challengerBond = challengerBond;
        g.defenderBond = defenderBond_;
        g.weightsRoot = m.weightsRoot;
        g.opsRoot = m.opsRoot;
        totalLocked += msg.value;
        emit GameOpened(gameId_, defender_, challenger_, claim_, s0, challengerBond, defenderBond_);
    }

    /// @inheritdoc IDisputeGame
    function revealFinal(uint256 gameId_, bytes32 activationsRoot_, bytes32[] calldata outputSiblings_) external {
        (GameState storage g, Clock next) = _begin(gameId_, Phase.AwaitFinal);
        uint256 slotDepth = LibMerkle.depthFor(uint256(g.nOps) + 1);
        if (outputSiblings_.length != slotDepth) revert E.BadProofLength(slotDepth, outputSiblings_.length);
        if (!LibMerkle.verifyLeaf(activationsRoot_, slotDepth, g.outputSlot, g.b, outputSiblings_)) {
            revert E.InvalidOutputProof();
        }
        bytes32 sN = _state(g.weightsRoot, activationsRoot_);
        _interval(g, 0, g.nOps, g.a, sN);
        _end(g, next);
        emit FinalRevealed(gameId_, activationsRoot_, sN);
    }

    /// @inheritdoc IDisputeGame
    function dissect(uint256 gameId_, bytes32[] calldata states_) external {
        (GameState storage g, Clock next) = _begin(gameId_, Phase.AwaitDissection);
        uint256 parts = _parts(g.lo, g.hi);
        if (states_.length != parts - 1) revert E.WrongStateCount(parts - 1, states_.length);
        g.commitment = keccak256(abi.encodePacked(states_));
        g.phase = Phase.AwaitPick;
        _end(g, next);
        emit Dissected(gameId_, g.lo, g.hi, states_);
    }

    /// @inheritdoc IDisputeGame
    function pick(uint256 gameId_, uint32 part_, bytes32[] calldata states_) external {
        (GameState storage g, Clock next) = _begin(gameId_, Phase.AwaitPick);
        if (keccak256(abi.encodePacked(states_)) != g.commitment) revert E.StatesMismatch();
        (uint64 lo, uint64 hi) = (g.lo, g.hi);
        uint256 parts = _parts(lo, hi);
        if (part_ >= parts) revert E.BadPart(part_, parts);
        uint256 len = hi - lo;
        // `part_ + 1 <= parts <= len < 2^64`, so `(part_ + 1) * len < 2^128`; each point <= hi.
        uint64 newLo;
        uint64 newHi;
        unchecked {
            newLo = uint64(lo + uint256(part_) * len / parts);
            newHi = uint64(lo + (uint256(part_) + 1) * len / parts);
        }
        bytes32 sLo = part_ == 0 ? g.a : states_[part_ - 1];
        bytes32 sHi = part_ == parts - 1 ? g.b : states_[part_];
        _interval(g, newLo, newHi, sLo, sHi);
        _end(g, next);
        emit Picked(gameId_, part_, newLo, newHi);
    }

    /// @inheritdoc IDisputeGame
    function revealStep(uint256 gameId_, StepReveal calldata step_) external {
        (GameState storage g, Clock next) = _begin(gameId_, Phase.AwaitStep);
        bytes32 opHash = _provenOp(g, step_.op, step_.opSiblings);
        _checkStep(g, step_);
        g.prevActivationsRoot = step_.prevActivationsRoot;
        g.b = opHash;
        _nodeOrLeaf(g, LibPosition.wrap(_outputDepth(step_.op), 0), step_.dataRoot);
        _end(g, next);
        emit StepRevealed(gameId_, g.hi, step_.prevActivationsRoot, step_.activationsRoot, step_.dataRoot);
    }

    /// @inheritdoc IDisputeGame
    function revealNodes(uint256 gameId_, bytes32[] calldata nodes_) external {
        (GameState storage g, Clock next) = _begin(gameId_, Phase.AwaitNodes);
        Position pos = g.position;
        uint32 level = pos.level();
        uint32 l = tensorLevels < level ? tensorLevels : level;
        if (nodes_.length != uint256(1) << l) revert E.WrongNodeCount(uint256(1) << l, nodes_.length);
        if (LibMerkle.rootOfLevel(nodes_) != g.a) revert E.NodesMismatch();
        Position first = pos.firstDescendant(l);
        g.position = first;
        g.commitment = keccak256(abi.encodePacked(nodes_));
        g.phase = Phase.AwaitNodePick;
        _end(g, next);
        emit NodesRevealed(gameId_, first.level(), first.index(), nodes_);
    }

    /// @inheritdoc IDisputeGame
    function pickNode(uint256 gameId_, uint32 child_, bytes32[] calldata nodes_) external {
        (GameState storage g, Clock next) = _begin(gameId_, Phase.AwaitNodePick);
        if (keccak256(abi.encodePacked(nodes_)) != g.commitment) revert E.RevealedNodesMismatch();
        if (child_ >= nodes_.length) revert E.BadChild(child_, nodes_.length);
        Position pos = g.position.right(child_);
        _nodeOrLeaf(g, pos, nodes_[child_]);
        _end(g, next);
        emit NodePicked(gameId_, child_, pos.level(), pos.index());
    }

    /// @inheritdoc IDisputeGame
    function revealLeaf(uint256 gameId_, bytes32 leaf_) external {
        (GameState storage g, Clock next) = _begin(gameId_, Phase.AwaitLeaf);
        if (LibMerkle.hashLeaf(leaf_) != g.a) revert E.LeafMismatch();
        g.a = leaf_;
        g.phase = Phase.AwaitOneStep;
        _end(g, next);
        emit LeafRevealed(gameId_, g.position.index(), leaf_);
    }

    /// @inheritdoc IDisputeGame
    function oneStep(
        uint256 gameId_,
        uint32 element_,
        bytes calldata op_,
        IOneStepVerifier.Opening[] calldata operands_
    ) external {
        (GameState storage g, Clock next) = _begin(gameId_, Phase.AwaitOneStep);
        if (keccak256(op_) != g.b) revert E.OpMismatch();
        (bool challengerRight, Reason reason) = _judge(g, element_, op_, operands_);
        _end(g, next);
        _resolve(gameId_, g, challengerRight ? Side.Challenger : Side.Defender, reason);
    }

    /// @inheritdoc IDisputeGame
    function claimTimeout(uint256 gameId_) external {
        GameState storage g = _games[gameId_];
        Phase phase = g.phase;
        if (phase == Phase.None) revert E.GameNotFound(gameId_);
        if (phase == Phase.Resolved) revert E.GameAlreadyResolved(gameId_);
        Side mover = turnOf(phase);
        Clock clock = g.clock;
        if (!clock.expired(mover, block.timestamp)) {
            revert E.NotTimedOut(mover, clock.leftAt(mover, mover, block.timestamp));
        }
        _resolve(gameId_, g, mover == Side.Defender ? Side.Challenger : Side.Defender, Reason.Timeout);
    }

    /// @inheritdoc IDisputeGame
    function withdraw() external {
        _lock();
        uint256 amount = credit[msg.sender];
        if (amount == 0) revert E.NothingToWithdraw();
        credit[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert E.TransferFailed();
        _unlock();
    }

    /// @notice The side to move in `phase_` (the defender in every phase it reveals in).
    function turnOf(Phase phase_) public pure returns (Side side_) {
        side_ = (phase_ == Phase.AwaitPick || phase_ == Phase.AwaitNodePick || phase_ == Phase.AwaitOneStep)
            ? Side.Challenger
            : Side.Defender;
    }

    /// @notice Element `k_` (little-endian, signed) of a 32-byte leaf of elements of `size_` bytes.
    function elementInLeaf(bytes32 leaf_, uint256 size_, uint256 k_) public pure returns (int256 value_) {
        uint256 raw;
        for (uint256 j = 0; j < size_; ++j) {
            raw |= uint256(uint8(leaf_[k_ * size_ + j])) << (8 * j);
        }
        if (size_ == 1) value_ = int8(uint8(raw));
        else if (size_ == 2) value_ = int16(uint16(raw));
        else value_ = int32(uint32(raw));
    }

    /// @notice The points splitting `[lo_, hi_]` into `min(degree, hi_ - lo_)` parts, ends included.
    function dissectionPoints(uint64 lo_, uint64 hi_) external view returns (uint64[] memory points_) {
        uint256 parts = _parts(lo_, hi_);
        points_ = new uint64[](parts + 1);
        for (uint256 j = 0; j <= parts; ++j) {
            points_[j] = uint64(lo_ + j * (hi_ - lo_) / parts);
        }
    }

    /// @notice Seconds `side_` has left in game `gameId_` now (its clock runs only on its turn).
    function clockLeft(uint256 gameId_, Side side_) external view returns (uint64 left_) {
        GameState storage g = _games[gameId_];
        if (g.phase == Phase.Resolved || g.phase == Phase.None) return g.clock.left(side_);
        left_ = g.clock.leftAt(side_, turnOf(g.phase), block.timestamp);
    }

    /// @notice Game `gameId_` as a struct.
    function game(uint256 gameId_) external view returns (GameView memory view_) {
        GameState storage g = _games[gameId_];
        view_ = GameView({
            phase: g.phase,
            winner: g.winner,
            reason: g.reason,
            moves: g.moves,
            lo: g.lo,
            hi: g.hi,
            level: g.position.level(),
            index: g.position.index(),
            a: g.a,
            b: g.b,
            commitment: g.commitment,
            prevActivationsRoot: g.prevActivationsRoot,
            defender: g.defender,
            challenger: g.challenger,
            defenderLeft: g.clock.left(Side.Defender),
            challengerLeft: g.clock.left(Side.Challenger),
            turnStarted: g.clock.turnStarted(),
            challengerBond: g.challengerBond,
            defenderBond: g.defenderBond,
            weightsRoot: g.weightsRoot,
            opsRoot: g.opsRoot,
            nOps: g.nOps,
            nWeights: g.nWeights,
            outputSlot: g.outputSlot
        });
    }

    /// @dev Checks that `msg.sender` is to move in game `gameId_` with a move of `expected_`,
    ///      in time (the referee's order: resolved, turn, clock, move); returns the clocks after it.
    function _begin(uint256 gameId_, Phase expected_) internal view returns (GameState storage g_, Clock next_) {
        g_ = _games[gameId_];
        Phase phase = g_.phase;
        if (phase == Phase.None) revert E.GameNotFound(gameId_);
        if (phase == Phase.Resolved) revert E.GameAlreadyResolved(gameId_);
        Side mover = turnOf(phase);
        if (msg.sender != (mover == Side.Defender ? g_.defender : g_.challenger)) {
            revert E.NotYourTurn(msg.sender, mover);
        }
        next_ = g_.clock.charge(mover, block.timestamp);
        if (phase != expected_) revert E.WrongMove(phase, expected_);
    }

    /// @dev The hash of `op_` once proven to be the disputed op `i` of the model's ops tree.
    function _provenOp(GameState storage g_, bytes calldata op_, bytes32[] calldata opSiblings_)
        internal
        view
        returns (bytes32 opHash_)
    {
        opHash_ = keccak256(op_);
        if (!LibMerkle.verifyLeaf(g_.opsRoot, LibMerkle.depthFor(g_.nOps), g_.hi - 1, opHash_, opSiblings_)) {
            revert E.InvalidOpProof();
        }
    }

    /// @dev The depth of the data tree of the output of `op_`.
    function _outputDepth(bytes calldata op_) internal pure returns (uint32 depth_) {
        (uint256 size, uint256 numel) = LibTensorType.parse(LibTensorType.outputType(op_));
        depth_ = uint32(LibMerkle.depthFor(LibTensorType.leafCount(size, numel)));
    }

    /// @dev The referee's checks of a step: both roots give the agreed and disputed states, and
    ///      the disputed one is the agreed one with slot `op_` set from empty to `tensor_`.
    function _checkStep(GameState storage g_, StepReveal calldata step_) internal view {
        uint64 op = g_.hi;
        bytes32 prevRoot = step_.prevActivationsRoot;
        if (_state(g_.weightsRoot, prevRoot) != g_.a) revert E.PrevStateMismatch();
        if (_state(g_.weightsRoot, step_.activationsRoot) != g_.b) revert E.StateMismatch();
        uint256 slotDepth = LibMerkle.depthFor(uint256(g_.nOps) + 1);
        bytes32[] calldata siblings = step_.slotSiblings;
        if (siblings.length != slotDepth) revert E.BadProofLength(slotDepth, siblings.length);
        bytes32 tensor = LibTensorType.tensorHash(LibTensorType.outputType(step_.op), step_.dataRoot);
        if (LibMerkle.rootFromNode(op, LibMerkle.hashLeaf(bytes32(0)), siblings) != prevRoot) {
            revert E.SlotNotEmpty();
        }
        if (LibMerkle.rootFromLeaf(op, tensor, siblings) != step_.activationsRoot) revert E.SlotNotSet();
    }

    /// @dev The one-step decision on element `element_` of the revealed leaf (the referee's
    ///      `one_step`): past the tensor's end the bytes must be zero, else the verifier recomputes it.
    function _judge(
        GameState storage g_,
        uint32 element_,
        bytes calldata op_,
        IOneStepVerifier.Opening[] calldata operands_
    ) internal view returns (bool challengerRight_, Reason reason_) {
        (uint256 size, uint256 numel) = LibTensorType.parse(LibTensorType.outputType(op_));
        uint256 perLeaf = 32 / size;
        if (element_ >= perLeaf) revert E.BadElement(element_, perLeaf);
        uint256 index = uint256(g_.position.index()) * perLeaf + element_;
        int256 revealed = elementInLeaf(g_.a, size, element_);
        if (index >= numel) {
            challengerRight_ = revealed != 0;
            reason_ = challengerRight_ ? Reason.NonZeroPadding : Reason.ZeroPadding;
        } else {
            challengerRight_ = _compute(g_, op_, index, operands_) != revealed;
            reason_ = challengerRight_ ? Reason.OneStepMismatch : Reason.OneStepMatch;
        }
    }

    /// @dev Element `index_` of the disputed op's output, from operands opened against `s_{i-1}`.
    function _compute(
        GameState storage g_,
        bytes calldata op_,
        uint256 index_,
        IOneStepVerifier.Opening[] calldata operands_
    ) internal view returns (int256 value_) {
        value_ = verifier.computeElement(
            op_, g_.weightsRoot, g_.nWeights, g_.prevActivationsRoot, uint256(g_.nOps) + 1, index_, operands_
        );
    }

    /// @dev Records an accepted move.
    function _end(GameState storage g_, Clock next_) internal {
        g_.clock = next_;
        // A game has fewer than 2^32 moves: each costs a transaction and the phases bound them.
        unchecked {
            g_.moves += 1;
        }
    }

    /// @dev The next phase for the disputed interval `[lo_, hi_]`.
    function _interval(GameState storage g_, uint64 lo_, uint64 hi_, bytes32 sLo_, bytes32 sHi_) internal {
        g_.phase = hi_ - lo_ == 1 ? Phase.AwaitStep : Phase.AwaitDissection;
        g_.lo = lo_;
        g_.hi = hi_;
        g_.a = sLo_;
        g_.b = sHi_;
    }

    /// @dev The next phase for the disputed node `position_` with `hash_` of the output tree.
    function _nodeOrLeaf(GameState storage g_, Position position_, bytes32 hash_) internal {
        g_.phase = position_.level() == 0 ? Phase.AwaitLeaf : Phase.AwaitNodes;
        g_.position = position_;
        g_.a = hash_;
    }

    /// @dev Ends the game, credits the payouts and tells the rollup.
    function _resolve(uint256 gameId_, GameState storage g_, Side winner_, Reason reason_) internal {
        g_.phase = Phase.Resolved;
        g_.winner = winner_;
        g_.reason = reason_;
        (uint256 win, uint256 lose) = winner_ == Side.Defender
            ? (uint256(g_.defenderBond), uint256(g_.challengerBond))
            : (uint256(g_.challengerBond), uint256(g_.defenderBond));
        uint256 burnt = lose * burnBps / 10_000;
        uint256 prize = win + lose - burnt;
        credit[winner_ == Side.Defender ? g_.defender : g_.challenger] += prize;
        totalBurnt += burnt;
        totalLocked -= win + lose;
        emit GameResolved(
            gameId_,
            winner_,
            reason_,
            winner_ == Side.Defender ? prize : 0,
            winner_ == Side.Challenger ? prize : 0,
            burnt
        );
        IGameResolutionSink(rollup).onGameResolved(gameId_, winner_ == Side.Challenger);
    }

    /// @dev Number of parts of a dissection of `[lo_, hi_]`: `max(1, min(degree, hi_ - lo_))`.
    function _parts(uint64 lo_, uint64 hi_) internal view returns (uint256 parts_) {
        uint256 len = hi_ - lo_;
        parts_ = len < degree ? len : degree;
        if (parts_ == 0) parts_ = 1;
    }

    /// @dev `s = keccak256(weightsRoot || activationsRoot)`.
    function _state(bytes32 weightsRoot_, bytes32 activationsRoot_) internal pure returns (bytes32 s_) {
        s_ = LibMerkle.hashPair(weightsRoot_, activationsRoot_);
    }

    /// @dev Takes the transient reentrancy lock.
    function _lock() internal {
        bytes32 slot = _LOCK;
        bool locked;
        assembly ("memory-safe") {
            locked := tload(slot)
        }
        if (locked) revert E.Reentrancy();
        assembly ("memory-safe") {
            tstore(slot, 1)
        }
    }

    /// @dev Releases the transient reentrancy lock.
    function _unlock() internal {
        bytes32 slot = _LOCK;
        assembly ("memory-safe") {
            tstore(slot, 0)
        }
    }
}
