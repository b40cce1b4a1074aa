// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Side, Phase} from "./interfaces/IDisputeGame.sol";

// ---------------------------------------------------------------- encodings and proofs

/// @notice A level of nodes whose length `length` is not a power of two.
error NotPowerOfTwo(uint256 length);
/// @notice A tensor type encoding with an unknown dtype, a length that does not fit its rank,
///         or more than 2^64 - 1 elements.
error BadTensorType();
/// @notice An op encoding that cannot be parsed (unknown kind, truncated, trailing bytes).
error BadOpEncoding();
/// @notice Tensor data of `got` bytes where its type needs `expected`.
error BadTensorData(uint256 expected, uint256 got);
/// @notice A proof with `got` siblings where the tree needs `expected`.
error BadProofLength(uint256 expected, uint256 got);

// ---------------------------------------------------------------- registry

/// @notice The model `modelId` is registered already (registrations are immutable).
error ModelAlreadyRegistered(bytes32 modelId);
/// @notice A program without ops.
error EmptyProgram();
/// @notice Output slot `slot` of a program of `nOps` ops (slots are `0..=nOps`).
error BadOutputSlot(uint32 slot, uint32 nOps);
/// @notice The model `modelId` is not registered.
error ModelNotRegistered(bytes32 modelId);

// ---------------------------------------------------------------- dispute game

/// @notice Game rules out of range: degree < 2, tensor levels 0 or burn above 10000 bps.
error BadGameConfig();
/// @notice `caller` is not the rollup.
error NotRollup(address caller);
/// @notice `got` wei where the bonds are `expected`.
error BadBond(uint256 expected, uint256 got);
/// @notice Game `gameId` was never opened.
error GameNotFound(uint256 gameId);
/// @notice Game `gameId` is over.
error GameAlreadyResolved(uint256 gameId);
/// @notice `caller` may not move: it is `turn`'s turn.
error NotYourTurn(address caller, Side turn);
/// @notice The mover's clock ran out `over` seconds before the move.
error ClockExpired(Side side, uint256 over);
/// @notice This move does not fit `phase` (it fits `expected`).
error WrongMove(Phase phase, Phase expected);
/// @notice The output slot of the revealed `activationsRoot_n` does not hold the claim's output hash.
error InvalidOutputProof();
/// @notice A dissection with `got` states where the interval needs `expected`.
error WrongStateCount(uint256 expected, uint256 got);
/// @notice The states repeated by a pick are not the ones dissected.
error StatesMismatch();
/// @notice Part `part` of a dissection into `parts`.
error BadPart(uint256 part, uint256 parts);
/// @notice The op encoding is not op `i` of the model's ops tree.
error InvalidOpProof();
/// @notice `activationsRoot_{i-1}` does not give `s_{i-1}`.
error PrevStateMismatch();
/// @notice `activationsRoot_i` does not give `s_i`.
error StateMismatch();
/// @notice Slot `i` is not empty in `activationsRoot_{i-1}`.
error SlotNotEmpty();
/// @notice `activationsRoot_i` is not `activationsRoot_{i-1}` with slot `i` set to the revealed tensor.
error SlotNotSet();
/// @notice `got` nodes revealed where `expected` are due.
error WrongNodeCount(uint256 expected, uint256 got);
/// @notice The revealed nodes do not hash to the disputed node.
error NodesMismatch();
/// @notice The nodes repeated by a node pick are not the ones revealed.
error RevealedNodesMismatch();
/// @notice Child `child` of `count` revealed nodes.
error BadChild(uint256 child, uint256 count);
/// @notice The revealed leaf does not hash to the disputed leaf.
error LeafMismatch();
/// @notice The op encoding given to the one-step is not the disputed op.
error OpMismatch();
/// @notice Element `element` of a leaf of `perLeaf` elements.
error BadElement(uint256 element, uint256 perLeaf);
/// @notice The side to move, `side`, still has `left` seconds.
error NotTimedOut(Side side, uint256 left);

// ---------------------------------------------------------------- rollup

/// @notice Rollup parameters out of range (withdrawal delay below the window, zero stake).
error BadRollupConfig();
/// @notice The dispute game contract reports to another rollup.
error GameMismatch();
/// @notice `caller` is not the dispute game contract.
error NotGames(address caller);
/// @notice `account` is not a registered sequencer.
error NotSequencer(address account);
/// @notice `account` is registered already.
error AlreadyRegistered(address account);
/// @notice A stake of `have` wei where `need` are required.
error InsufficientStake(uint256 have, uint256 need);
/// @notice An amount of zero or more than available.
error BadAmount(uint256 amount);
/// @notice No stake withdrawal is pending.
error NoWithdrawalPending();
/// @notice The stake withdrawal is executable only from `at`.
error WithdrawalNotReady(uint64 at);
/// @notice A batch without claims.
error EmptyBatch();
/// @notice The batch data ends inside entry `entry` (its header, input or output runs past the end).
error BatchTruncated(uint256 entry);
/// @notice The input (`output` false) or output type of batch entry `entry` is malformed: an
///         unknown dtype, a rank that does not fit the tensor's bytes, or more than 2^64 - 1 elements.
error BatchBadTensorType(uint256 entry, bool output);
/// @notice The input or output data of batch entry `entry` is `got` bytes where its type needs `expected`.
error BatchBadTensorData(uint256 entry, bool output, uint256 expected, uint256 got);
/// @notice The batch data holds `entries` claims where the post says `count`.
error BatchCountMismatch(uint256 count, uint256 entries);
/// @notice The claims of the batch data have the root `computed`, not the posted `claimsRoot`.
error BatchRootMismatch(bytes32 claimsRoot, bytes32 computed);
/// @notice Batch `batchId` does not exist.
error BatchNotFound(uint256 batchId);
/// @notice Claim `index` of a batch of `count`.
error ClaimIndexOutOfRange(uint256 index, uint256 count);
/// @notice The claim is not in the batch at that index.
error InvalidInclusionProof();
/// @notice The challenge window of batch `batchId` is over.
error ChallengeWindowClosed(uint256 batchId);
/// @notice A sequencer cannot dispute its own claim.
error SelfChallenge();
/// @notice Claim `index` of batch `batchId` lost a game already.
error ClaimAlreadyInvalidated(uint256 batchId, uint256 index);
/// @notice Game `gameId` is not one the rollup opened.
error UnknownGame(uint256 gameId);
/// @notice Claim `index` of batch `batchId` is not final (or not the claim at that index).
error ClaimNotFinal(uint256 batchId, uint256 index);
/// @notice The output bytes do not hash to the claim's output hash.
error OutputMismatch();
/// @notice The input type is not the model's.
error InputTypeMismatch();
/// @notice Request `requestId` does not exist.
error RequestNotFound(bytes32 requestId);
/// @notice Request `requestId` is settled or refunded already.
error RequestClosed(bytes32 requestId);
/// @notice Request `requestId` has no settled output.
error RequestNotSettled(bytes32 requestId);
/// @notice Request `requestId` may not be refunded yet.
error RequestNotExpired(bytes32 requestId);
/// @notice The claim is for another model or input than the request.
error ClaimDoesNotMatchRequest();
/// @notice Too little gas left to give the callback its limit.
error InsufficientGasForCallback();

// ---------------------------------------------------------------- payments

/// @notice Nothing credited to withdraw.
error NothingToWithdraw();
/// @notice The transfer of ETH failed.
error TransferFailed();
/// @notice A reentrant call.
error Reentrancy();
