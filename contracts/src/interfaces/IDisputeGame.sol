// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "./IOneStepVerifier.sol";

/// @notice One of the two parties of a game (`bisection::Side`): defender 0, challenger 1.
enum Side {
    Defender,
    Challenger
}

/// @notice The phase of a game (`bisection::Phase`). `None` marks a game id never opened.
enum Phase {
    None,
    AwaitFinal,
    AwaitDissection,
    AwaitPick,
    AwaitStep,
    AwaitNodes,
    AwaitNodePick,
    AwaitLeaf,
    AwaitOneStep,
    Resolved
}

/// @notice Why a game ended (`bisection::Reason`).
enum Reason {
    None,
    OneStepMismatch,
    OneStepMatch,
    NonZeroPadding,
    ZeroPadding,
    Timeout
}

/// @notice The claim of one request: `(requestId, modelId, inputHash, outputHash)`. Its leaf in
///         a batch's claims tree is `keccak256(abi.encode(claim))`.
struct Claim {
    bytes32 requestId;
    bytes32 modelId;
    bytes32 inputHash;
    bytes32 outputHash;
}

/// @notice The rules of every game of one {IDisputeGame} deployment (`bisection::GameConfig`).
struct GameConfig {
    /// @dev Trace dissection degree `k >= 2`: the defender reveals `min(k, len) - 1` states per move.
    uint32 degree;
    /// @dev Levels of the output tree revealed per tensor-bisection move (`2^levels` nodes), >= 1.
    uint32 tensorLevels;
    /// @dev Each side's chess clock, in seconds.
    uint64 clockSeconds;
    /// @dev The challenger's bond, in wei.
    uint128 challengerBond;
    /// @dev The part of the sequencer's stake put at risk by one game, in wei (less if its stake is smaller).
    uint128 defenderBond;
    /// @dev Share of the loser's bond burnt instead of paid to the winner, in basis points (<= 10000).
    uint32 burnBps;
}

/// @notice The defender's step reveal (`bisection::Move::RevealStep` plus op `i` with its proof).
struct StepReveal {
    /// @dev `activationsRoot_{i-1}`.
    bytes32 prevActivationsRoot;
    /// @dev `activationsRoot_i`.
    bytes32 activationsRoot;
    /// @dev Siblings of slot `i` (the same in both roots), bottom-up.
    bytes32[] slotSiblings;
    /// @dev Data root of op `i`'s output tensor.
    bytes32 dataRoot;
    /// @dev Op `i`'s encoding (`docs/ops.md`, "Program encoding").
    bytes op;
    /// @dev Siblings of leaf `i - 1` (`keccak256(op)`) in the ops tree, bottom-up.
    bytes32[] opSiblings;
}

/// @title IDisputeGame
/// @notice The bisection game over one disputed claim, exactly as the referee
///         `bisection/src/game.rs` plays it; many games live in one deployment, by id.
interface IDisputeGame {
    /// @notice A game opened against a claim.
    event GameOpened(
        uint256 indexed gameId,
        address indexed defender,
        address indexed challenger,
        Claim claim,
        bytes32 s0,
        uint128 challengerBond,
        uint128 defenderBond
    );
    /// @notice The defender revealed `activationsRoot_n`; `sN` is the final state it fixes.
    event FinalRevealed(uint256 indexed gameId, bytes32 activationsRoot, bytes32 sN);
    /// @notice The defender revealed the interior states of `[lo, hi]`.
    event Dissected(uint256 indexed gameId, uint64 lo, uint64 hi, bytes32[] states);
    /// @notice The challenger picked part `part`: `[lo, hi]` is the disputed interval now.
    event Picked(uint256 indexed gameId, uint32 part, uint64 lo, uint64 hi);
    /// @notice The defender revealed op `op`'s step; `dataRoot` is its output's data root.
    event StepRevealed(
        uint256 indexed gameId, uint64 op, bytes32 prevActivationsRoot, bytes32 activationsRoot, bytes32 dataRoot
    );
    /// @notice The defender revealed the descendants of the disputed node, at `level`, from index `first`.
    event NodesRevealed(uint256 indexed gameId, uint32 level, uint64 first, bytes32[] nodes);
    /// @notice The challenger picked node `child` of the last revealed nodes.
    event NodePicked(uint256 indexed gameId, uint32 child, uint32 level, uint64 index);
    /// @notice The defender revealed the bytes of leaf `leafIndex`.
    event LeafRevealed(uint256 indexed gameId, uint64 leafIndex, bytes32 leaf);
    /// @notice The game ended; `burnt` wei of the loser's bond were burnt.
    event GameResolved(
        uint256 indexed gameId,
        Side winner,
        Reason reason,
        uint256 defenderPayout,
        uint256 challengerPayout,
        uint256 burnt
    );
    /// @notice `account` withdrew `amount` wei of credited payouts.
    event Withdrawn(address indexed account, uint256 amount);

    /// @notice Opens a game against `claim_`; only the rollup calls it, sending both bonds.
    /// @param claim_ The disputed claim (its model must be registered).
    /// @param defender_ The sequencer that posted the claim.
    /// @param challenger_ The party disputing it.
    /// @param defenderBond_ The defender's bond, taken from its stake (`msg.value - challengerBond`).
    /// @return gameId_ The new game's id.
    function open(Claim calldata claim_, address defender_, address challenger_, uint128 defenderBond_)
        external
        payable
        returns (uint256 gameId_);

    /// @notice Defender: `activationsRoot_n` and the siblings proving that the output slot holds
    ///         the claim's output hash.
    function revealFinal(uint256 gameId_, bytes32 activationsRoot_, bytes32[] calldata outputSiblings_) external;

    /// @notice Defender: the states strictly inside the disputed interval, at the dissection points.
    function dissect(uint256 gameId_, bytes32[] calldata states_) external;

    /// @notice Challenger: the part of the last dissection whose start it agrees with and whose
    ///         end it does not; `states_` repeats the dissected states (checked against their hash).
    function pick(uint256 gameId_, uint32 part_, bytes32[] calldata states_) external;

    /// @notice Defender: op `i`'s step `s_{i-1} -> s_i`, with op `i`'s encoding proven against `opsRoot`.
    function revealStep(uint256 gameId_, StepReveal calldata step_) external;

    /// @notice Defender: the `2^min(levels, level)` descendants of the disputed node.
    function revealNodes(uint256 gameId_, bytes32[] calldata nodes_) external;

    /// @notice Challenger: the revealed node that differs from its own; `nodes_` repeats them.
    function pickNode(uint256 gameId_, uint32 child_, bytes32[] calldata nodes_) external;

    /// @notice Defender: the 32 bytes of the disputed leaf.
    function revealLeaf(uint256 gameId_, bytes32 leaf_) external;

    /// @notice Challenger: element `element_` of the leaf, recomputed by the one-step verifier
    ///         from `operands_` opened against `s_{i-1}`; `op_` is op `i`'s encoding again.
    function oneStep(
        uint256 gameId_,
        uint32 element_,
        bytes calldata op_,
        IOneStepVerifier.Opening[] calldata operands_
    ) external;

    /// @notice Ends the game for the side not to move once the side to move let its clock run out.
    function claimTimeout(uint256 gameId_) external;

    /// @notice Sends the caller its credited payouts.
    function withdraw() external;

    /// @notice The rollup that opens games and hears their outcomes.
    function rollup() external view returns (address rollup_);

    /// @notice The challenger's bond of every game.
    function challengerBond() external view returns (uint128 bond_);

    /// @notice The largest defender bond of a game.
    function defenderBond() external view returns (uint128 bond_);
}
