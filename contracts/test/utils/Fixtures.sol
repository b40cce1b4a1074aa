// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Test} from "./Test.sol";
import {ModelRegistry} from "../../src/ModelRegistry.sol";
import {InferenceRollup} from "../../src/InferenceRollup.sol";
import {DisputeGame} from "../../src/DisputeGame.sol";
import {OneStepVerifier} from "../../src/onestep/OneStepVerifier.sol";
import {IOneStepVerifier} from "../../src/interfaces/IOneStepVerifier.sol";
import {IModelRegistry} from "../../src/interfaces/IModelRegistry.sol";
import {IDisputeGame, Claim, GameConfig, Phase, Side, StepReveal} from "../../src/interfaces/IDisputeGame.sol";
import {BatchBuilder, Entry} from "./BatchBuilder.sol";

/// @title MemMerkle
/// @notice The tree of `inference/src/merkle.rs` over memory arrays, written independently of
///         `LibMerkle` (level by level) so the tests check the library against a second build.
library MemMerkle {
    function leafHash(bytes32 leaf_) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(leaf_));
    }

    function pair(bytes32 l_, bytes32 r_) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(l_, r_));
    }

    /// @dev All levels of the tree over `leaves_` (raw 32-byte leaves), padded with zero leaves;
    ///      `levels[0]` are the leaf hashes, the last level the root.
    function levels(bytes32[] memory leaves_) internal pure returns (bytes32[][] memory lv_) {
        uint256 width = 1;
        uint256 depth;
        while (width < leaves_.length) {
            width <<= 1;
            ++depth;
        }
        lv_ = new bytes32[][](depth + 1);
        lv_[0] = new bytes32[](width);
        for (uint256 i = 0; i < width; ++i) {
            lv_[0][i] = leafHash(i < leaves_.length ? leaves_[i] : bytes32(0));
        }
        for (uint256 d = 1; d <= depth; ++d) {
            width >>= 1;
            lv_[d] = new bytes32[](width);
            for (uint256 i = 0; i < width; ++i) {
                lv_[d][i] = pair(lv_[d - 1][2 * i], lv_[d - 1][2 * i + 1]);
            }
        }
    }

    function root(bytes32[] memory leaves_) internal pure returns (bytes32) {
        bytes32[][] memory lv = levels(leaves_);
        return lv[lv.length - 1][0];
    }

    /// @dev Bottom-up siblings of leaf `index_`.
    function proof(bytes32[] memory leaves_, uint256 index_) internal pure returns (bytes32[] memory sib_) {
        bytes32[][] memory lv = levels(leaves_);
        sib_ = new bytes32[](lv.length - 1);
        for (uint256 d = 0; d + 1 < lv.length; ++d) {
            sib_[d] = lv[d][index_ ^ 1];
            index_ >>= 1;
        }
    }

    /// @dev 32-byte leaves of `data_`, the last zero-padded, at least one.
    function chunks(bytes memory data_) internal pure returns (bytes32[] memory leaves_) {
        uint256 n = (data_.length + 31) / 32;
        if (n == 0) n = 1;
        leaves_ = new bytes32[](n);
        // The leaves are consecutive words, freshly zeroed: copying the bytes in leaves the
        // padding of the last one zero. `data_.length <= 32 * n` keeps the copy inside.
        assembly ("memory-safe") {
            mcopy(add(leaves_, 0x20), add(data_, 0x20), mload(data_))
        }
    }

    function tensorHash(bytes memory type_, bytes memory data_) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(type_, root(chunks(data_))));
    }
}

/// @title FixedVerifier
/// @notice TEST ONLY: answers every one-step with a value the test sets. Used where a test
///         checks the game's flow around the one-step, never as a stand-in for the real kernels
///         (the one-step tests deploy the real {OneStepVerifier}).
contract FixedVerifier is IOneStepVerifier {
    int256 public answer;
    uint256 public lastIndex;

    function setAnswer(int256 answer_) external {
        answer = answer_;
    }

    function computeElement(bytes calldata, bytes32, uint256, bytes32, uint256, uint256, Opening[] calldata)
        external
        view
        returns (int256 value_)
    {
        value_ = answer;
    }
}

/// @title Fixture
/// @notice Deploys the registry, the real one-step verifier, the game and the rollup, and a toy
///         model: `N_OPS` `requantize` ops with multiplier 1 and shift 0 (each copies its input),
///         op `i` reading slot `i - 1`, all of type `i8 [100]` (4 data leaves, the last with 28
///         padding bytes). One weight (an `i32 [8]` tensor, unused by the ops) keeps a real weights tree.
abstract contract Fixture is Test {
    uint32 internal constant N_OPS = 5;
    uint32 internal constant NUMEL = 100;
    uint64 internal constant WINDOW = 1 days;
    uint64 internal constant CLOCK = 3 hours;
    uint128 internal constant CH_BOND = 1 ether;
    uint128 internal constant DEF_BOND = 2 ether;
    uint128 internal constant MIN_STAKE = 10 ether;

    ModelRegistry internal registry;
    IOneStepVerifier internal verifier;
    DisputeGame internal games;
    InferenceRollup internal rollup;

    address internal sequencer = address(0x5E0);
    address internal challenger = address(0xC4A1);
    address internal challenger2 = address(0xC4A2);

    bytes internal tensorType = hex"010100000064"; // i8 [100]
    bytes[] internal ops;
    bytes32[] internal opHashes;
    bytes32 internal opsRoot;
    bytes32[] internal weightHashes;
    bytes32 internal weightsRoot;
    bytes32 internal modelId;

    /// @dev A tensor whose hash a claim may name.
    struct Tensor {
        bytes tensorType;
        bytes data;
    }

    /// @dev Tensors by hash ({_remember}): the data {_post} publishes with the claims.
    mapping(bytes32 tensorHash => Tensor) internal _known;

    function _config(uint32 degree_, uint32 levels_) internal pure returns (GameConfig memory c_) {
        c_ = GameConfig({
            degree: degree_,
            tensorLevels: levels_,
            clockSeconds: CLOCK,
            challengerBond: CH_BOND,
            defenderBond: DEF_BOND,
            burnBps: 5_000
        });
    }

    /// @dev The address the next-but-`skip_` contract created by this test gets.
    function _nextAddress(uint256 skip_) internal view returns (address) {
        uint256 nonce = vm.getNonce(address(this)) + skip_;
        require(nonce < 0x80 && nonce > 0, "nonce range");
        return
            address(
                uint160(uint256(keccak256(abi.encodePacked(bytes1(0xd6), bytes1(0x94), address(this), uint8(nonce)))))
            );
    }

    function _deploy(GameConfig memory config_, IOneStepVerifier verifier_) internal {
        registry = new ModelRegistry();
        verifier = verifier_;
        address predicted = _nextAddress(1);
        games = new DisputeGame(predicted, IModelRegistry(address(registry)), verifier_, config_);
        rollup = new InferenceRollup(
            IModelRegistry(address(registry)), IDisputeGame(address(games)), MIN_STAKE, 2 days, WINDOW, 200_000, 7 days
        );
        require(address(rollup) == predicted, "prediction");
        _registerToy();
        vm.deal(sequencer, 100 ether);
        vm.deal(challenger, 100 ether);
        vm.deal(challenger2, 100 ether);
        vm.prank(sequencer);
        rollup.registerSequencer{value: MIN_STAKE + 10 ether}();
    }

    function _deployDefault() internal {
        _deploy(_config(3, 1), IOneStepVerifier(address(new OneStepVerifier())));
    }

    /// @dev Op `i` (1-based): `requantize` of slot `i - 1`, x_zp 0, multiplier 1, shift 0, y_zp 0.
    function _op(uint32 i_) internal view returns (bytes memory) {
        return abi.encodePacked(
            uint8(5), int32(0), int32(1), uint32(0), int32(0), uint8(1), uint8(0), uint32(i_ - 1), tensorType
        );
    }

    function _registerToy() internal {
        delete ops;
        delete opHashes;
        for (uint32 i = 1; i <= N_OPS; ++i) {
            ops.push(_op(i));
            opHashes.push(keccak256(_op(i)));
        }
        opsRoot = MemMerkle.root(opHashes);
        bytes memory w = new bytes(32);
        w[0] = 0x07;
        weightHashes.push(MemMerkle.tensorHash(hex"030100000008", w));
        weightsRoot = MemMerkle.root(weightHashes);
        modelId = registry.register(1, N_OPS, 1, N_OPS, tensorType, opsRoot, weightsRoot, "ipfs://toy");
    }

    // ------------------------------------------------------------ traces

    /// @dev An input of 100 i8 values.
    function _input(uint256 seed_) internal pure returns (bytes memory x_) {
        x_ = new bytes(NUMEL);
        for (uint256 i = 0; i < NUMEL; ++i) {
            x_[i] = bytes1(uint8(uint256(keccak256(abi.encode(seed_, i)))));
        }
    }

    /// @dev Slot data of a trace in which the op `lieAt_` (0: none) flips byte `byte_` of its
    ///      output; later ops copy the lie on.
    function _trace(bytes memory input_, uint32 lieAt_, uint256 byte_) internal pure returns (bytes[] memory slots_) {
        slots_ = new bytes[](N_OPS + 1);
        slots_[0] = input_;
        for (uint32 i = 1; i <= N_OPS; ++i) {
            bytes memory d = bytes.concat(slots_[i - 1]);
            if (i == lieAt_) d[byte_] = bytes1(uint8(d[byte_]) ^ 0x01);
            slots_[i] = d;
        }
    }

    /// @dev The tensor hashes of `slots_` (all of `tensorType`), each remembered for {_post}.
    function _slotHashes(bytes[] memory slots_) internal returns (bytes32[] memory h_) {
        h_ = new bytes32[](slots_.length);
        for (uint256 j = 0; j < slots_.length; ++j) {
            h_[j] = _remember(tensorType, slots_[j]);
        }
    }

    /// @dev The tensor hash of (`type_`, `data_`), remembered so that {_post} can publish the
    ///      tensor of a claim that names it.
    function _remember(bytes memory type_, bytes memory data_) internal returns (bytes32 hash_) {
        hash_ = MemMerkle.tensorHash(type_, data_);
        _known[hash_] = Tensor(type_, data_);
    }

    /// @dev The activation table after op `i_`: leaves `0..=i_` set, the rest zero.
    function _table(bytes32[] memory h_, uint256 i_) internal pure returns (bytes32[] memory t_) {
        t_ = new bytes32[](h_.length);
        for (uint256 j = 0; j <= i_; ++j) {
            t_[j] = h_[j];
        }
    }

    function _actRoot(bytes32[] memory h_, uint256 i_) internal pure returns (bytes32) {
        return MemMerkle.root(_table(h_, i_));
    }

    function _stateAt(bytes32[] memory h_, uint256 i_) internal view returns (bytes32) {
        return keccak256(abi.encodePacked(weightsRoot, _actRoot(h_, i_)));
    }

    function _claim(bytes32 requestId_, bytes32[] memory h_) internal view returns (Claim memory c_) {
        c_ = Claim({requestId: requestId_, modelId: modelId, inputHash: h_[0], outputHash: h_[N_OPS]});
    }

    function _leaf(Claim memory c_) internal pure returns (bytes32) {
        return keccak256(abi.encode(c_.requestId, c_.modelId, c_.inputHash, c_.outputHash));
    }

    /// @dev The batch entry of `claim_`, its input and output looked up among the remembered
    ///      tensors ({_remember}).
    function _entry(Claim memory claim_) internal view returns (Entry memory e_) {
        Tensor memory input = _known[claim_.inputHash];
        Tensor memory output = _known[claim_.outputHash];
        require(input.tensorType.length != 0 && output.tensorType.length != 0, "claim of an unknown tensor");
        e_ = Entry(claim_.requestId, claim_.modelId, input.tensorType, input.data, output.tensorType, output.data);
    }

    /// @dev Posts `claims_` as one batch with their inputs and outputs as the data; returns the
    ///      batch id.
    function _post(Claim[] memory claims_) internal returns (uint256 batchId_) {
        Entry[] memory entries = new Entry[](claims_.length);
        bytes32[] memory leaves = new bytes32[](claims_.length);
        for (uint256 i = 0; i < claims_.length; ++i) {
            entries[i] = _entry(claims_[i]);
            leaves[i] = _leaf(claims_[i]);
        }
        vm.prank(sequencer);
        batchId_ = rollup.postBatch(MemMerkle.root(leaves), uint32(claims_.length), BatchBuilder.encode(entries));
    }

    /// @dev Posts `entries_` as one batch (root and count from {BatchBuilder}); returns the batch id.
    function _postEntries(Entry[] memory entries_) internal returns (uint256 batchId_) {
        bytes memory data = BatchBuilder.encode(entries_);
        bytes32 root = BatchBuilder.root(entries_);
        vm.prank(sequencer);
        batchId_ = rollup.postBatch(root, uint32(entries_.length), data);
    }

    function _claimProof(Claim[] memory claims_, uint256 index_) internal pure returns (bytes32[] memory) {
        bytes32[] memory leaves = new bytes32[](claims_.length);
        for (uint256 i = 0; i < claims_.length; ++i) {
            leaves[i] = _leaf(claims_[i]);
        }
        return MemMerkle.proof(leaves, index_);
    }

    /// @dev Posts one claim (from `h_`) and opens a game from `challenger_`; returns (batch, game).
    function _postAndChallenge(bytes32[] memory h_, address challenger_)
        internal
        returns (uint256 batchId_, uint256 gameId_)
    {
        Claim[] memory cs = new Claim[](1);
        cs[0] = _claim(bytes32(uint256(1)), h_);
        batchId_ = _post(cs);
        vm.prank(challenger_);
        gameId_ = rollup.challenge{value: CH_BOND}(batchId_, 0, cs[0], new bytes32[](0));
    }

    // ------------------------------------------------------------ players

    /// @dev The defender's final reveal for trace `h_`.
    function _revealFinal(uint256 gameId_, bytes32[] memory h_) internal {
        vm.prank(sequencer);
        games.revealFinal(gameId_, _actRoot(h_, N_OPS), MemMerkle.proof(_table(h_, N_OPS), N_OPS));
    }

    /// @dev The defender's states for the current dissection.
    function _dissectionStates(uint256 gameId_, bytes32[] memory h_) internal view returns (bytes32[] memory s_) {
        DisputeGame.GameView memory g = games.game(gameId_);
        uint64[] memory pts = games.dissectionPoints(g.lo, g.hi);
        s_ = new bytes32[](pts.length - 2);
        for (uint256 j = 1; j + 1 < pts.length; ++j) {
            s_[j - 1] = _stateAt(h_, pts[j]);
        }
    }

    /// @dev The first part whose end the honest trace `honest_` disagrees with.
    function _partToPick(uint256 gameId_, bytes32[] memory honest_, bytes32[] memory states_)
        internal
        view
        returns (uint32)
    {
        DisputeGame.GameView memory g = games.game(gameId_);
        uint64[] memory pts = games.dissectionPoints(g.lo, g.hi);
        for (uint256 j = 1; j < pts.length; ++j) {
            bytes32 claimed = j + 1 == pts.length ? g.b : states_[j - 1];
            if (claimed != _stateAt(honest_, pts[j])) return uint32(j - 1);
        }
        revert("no disputed part");
    }

    /// @dev The defender's step reveal for op `op_` of trace (`h_`, `slots_`).
    function _step(bytes32[] memory h_, bytes[] memory slots_, uint64 op_)
        internal
        view
        returns (StepReveal memory s_)
    {
        s_ = StepReveal({
            prevActivationsRoot: _actRoot(h_, op_ - 1),
            activationsRoot: _actRoot(h_, op_),
            slotSiblings: MemMerkle.proof(_table(h_, op_), op_),
            dataRoot: MemMerkle.root(MemMerkle.chunks(slots_[op_])),
            op: ops[op_ - 1],
            opSiblings: MemMerkle.proof(opHashes, op_ - 1)
        });
    }

    /// @dev The `count_` nodes of level `level_` of `data_`'s tree from index `first_`.
    function _nodes(bytes memory data_, uint256 level_, uint256 first_, uint256 count_)
        internal
        pure
        returns (bytes32[] memory n_)
    {
        bytes32[][] memory lv = MemMerkle.levels(MemMerkle.chunks(data_));
        n_ = new bytes32[](count_);
        for (uint256 i = 0; i < count_; ++i) {
            n_[i] = lv[level_][first_ + i];
        }
    }

    /// @dev Plays trace bisection until the step (defender on `liar_`, challenger on `honest_`).
    function _bisectTrace(uint256 gameId_, bytes32[] memory liar_, bytes32[] memory honest_) internal {
        while (games.game(gameId_).phase == Phase.AwaitDissection) {
            bytes32[] memory st = _dissectionStates(gameId_, liar_);
            vm.prank(sequencer);
            games.dissect(gameId_, st);
            uint32 part = _partToPick(gameId_, honest_, st);
            vm.prank(challenger);
            games.pick(gameId_, part, st);
        }
    }

    /// @dev Plays tensor bisection until the leaf (defender's data `liar_`, challenger's `honest_`).
    function _bisectTensor(uint256 gameId_, bytes memory liar_, bytes memory honest_) internal {
        while (games.game(gameId_).phase == Phase.AwaitNodes) {
            DisputeGame.GameView memory g = games.game(gameId_);
            uint32 l = games.tensorLevels() < g.level ? games.tensorLevels() : g.level;
            uint256 lvl = g.level - l;
            uint256 first = uint256(g.index) << l;
            bytes32[] memory nodes = _nodes(liar_, lvl, first, 1 << l);
            vm.prank(sequencer);
            games.revealNodes(gameId_, nodes);
            bytes32[] memory mine = _nodes(honest_, lvl, first, 1 << l);
            uint32 child;
            while (nodes[child] == mine[child]) ++child;
            vm.prank(challenger);
            games.pickNode(gameId_, child, nodes);
        }
    }
}
