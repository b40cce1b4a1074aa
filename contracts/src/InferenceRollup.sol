// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IDisputeGame, Claim} from "./interfaces/IDisputeGame.sol";
import {IModelRegistry, Model} from "./interfaces/IModelRegistry.sol";
import {IGameResolutionSink} from "./interfaces/IGameResolutionSink.sol";
import {IInferenceConsumer} from "./interfaces/IInferenceConsumer.sol";
import {LibMerkle} from "./lib/LibMerkle.sol";
import {LibBatch} from "./lib/LibBatch.sol";
import {LibTensorType} from "./lib/LibTensorType.sol";
import "./Errors.sol" as E;

/// @title InferenceRollup
/// @notice Settlement of batched inference results: staked sequencers post batches of claims
///         (inputs and outputs in calldata), anyone may dispute a claim within the challenge
///         window through {DisputeGame}, and a claim that survives becomes final and readable by
///         contracts. On-chain requests are paid here and called back when they settle.
/// @dev The claim leaf of a batch is `keccak256(abi.encode(requestId, modelId, inputHash,
///      outputHash))`, a 32-byte leaf of the {LibMerkle} tree over the batch's claims in order
///      (depth `ceil(log2(count))`). Formats: `docs/contracts.md`.
contract InferenceRollup is IGameResolutionSink {
    /// @notice A staked sequencer.
    struct Sequencer {
        /// @dev Wei at stake (slashable), pending withdrawal included.
        uint128 stake;
        /// @dev Wei asked back, still slashable until withdrawn.
        uint128 pendingWithdrawal;
        /// @dev When the pending withdrawal may be executed.
        uint64 withdrawableAt;
        /// @dev Whether it registered.
        bool registered;
    }

    /// @notice A posted batch.
    struct Batch {
        /// @dev Root of the claims tree.
        bytes32 claimsRoot;
        /// @dev The sequencer that posted it (the defender of its games).
        address sequencer;
        /// @dev Number of claims.
        uint32 count;
        /// @dev Block timestamp of the post.
        uint64 postedAt;
    }

    /// @notice The dispute state of one claim (by batch and index).
    struct ClaimStatus {
        /// @dev Games open against it.
        uint32 openGames;
        /// @dev Games it won.
        uint32 gamesWon;
        /// @dev Whether it lost a game (then it never becomes final).
        bool invalidated;
    }

    /// @notice An on-chain inference request.
    struct Request {
        /// @dev Who asked (and is called back, if a contract).
        address requester;
        /// @dev The fee paid, in wei.
        uint96 fee;
        /// @dev The model.
        bytes32 modelId;
        /// @dev Tensor hash of the input.
        bytes32 inputHash;
        /// @dev Tensor hash of the settled output (zero until settled).
        bytes32 outputHash;
        /// @dev Block timestamp of the request.
        uint64 createdAt;
        /// @dev Settled (or refunded).
        bool closed;
    }

    /// @notice How a claim stands.
    enum ClaimState {
        /// @dev In its challenge window, or with a game open.
        Pending,
        /// @dev Final: readable, never changes again.
        Final,
        /// @dev Lost a game.
        Invalidated
    }

    /// @notice A sequencer registered with `stake` wei.
    event SequencerRegistered(address indexed sequencer, uint256 stake);
    /// @notice `sequencer` added `amount` wei to its stake.
    event StakeAdded(address indexed sequencer, uint256 amount, uint256 stake);
    /// @notice `sequencer` asked `amount` wei back, withdrawable at `withdrawableAt`.
    event WithdrawalRequested(address indexed sequencer, uint256 amount, uint64 withdrawableAt);
    /// @notice `sequencer` withdrew `amount` wei of stake.
    event StakeWithdrawn(address indexed sequencer, uint256 amount);
    /// @notice `amount` wei of `sequencer`'s stake went into game `gameId` as its bond.
    event StakeLocked(address indexed sequencer, uint256 indexed gameId, uint256 amount);
    /// @notice A batch was posted; its claims and their inputs and outputs are the call's `data_`.
    event BatchPosted(uint256 indexed batchId, address indexed sequencer, bytes32 claimsRoot, uint32 count);
    /// @notice Claim `index` of batch `batchId` is disputed in game `gameId`.
    event ClaimChallenged(uint256 indexed batchId, uint256 indexed index, uint256 indexed gameId, address challenger);
    /// @notice The game `gameId` over claim `index` of batch `batchId` ended.
    event ClaimGameResolved(uint256 indexed batchId, uint256 indexed index, uint256 indexed gameId, bool challengerWon);
    /// @notice Claim `index` of batch `batchId` lost a game and is invalid for good.
    event ClaimInvalidated(uint256 indexed batchId, uint256 indexed index);
    /// @notice A contract or account asked for an inference.
    event InferenceRequested(
        bytes32 indexed requestId,
        address indexed requester,
        bytes32 indexed modelId,
        bytes32 inputHash,
        uint256 fee,
        bytes inputType,
        bytes inputData
    );
    /// @notice Request `requestId` settled with claim `index` of batch `batchId`.
    event RequestSettled(
        bytes32 indexed requestId, uint256 indexed batchId, uint256 index, bytes32 outputHash, address sequencer
    );
    /// @notice The requester's callback for `requestId` returned (`success`) or failed.
    event CallbackResult(bytes32 indexed requestId, bool success);
    /// @notice Request `requestId` expired unsettled and its fee was credited back.
    event RequestRefunded(bytes32 indexed requestId, address indexed requester, uint256 fee);
    /// @notice `account` withdrew `amount` wei of credited fees or refunds.
    event Withdrawn(address indexed account, uint256 amount);

    /// @notice The model registry.
    IModelRegistry public immutable registry;
    /// @notice The dispute games.
    IDisputeGame public immutable games;
    /// @notice Smallest stake a sequencer needs (free of pending withdrawals) to post.
    uint128 public immutable minStake;
    /// @notice Delay between asking stake back and receiving it (at least the challenge window).
    uint64 public immutable withdrawalDelay;
    /// @notice How long after its post a claim can be disputed.
    uint64 public immutable challengeWindow;
    /// @notice Gas given to a requester's callback.
    uint64 public immutable callbackGasLimit;
    /// @notice After how long an unsettled request can be refunded.
    uint64 public immutable requestTimeout;

    /// @notice Sequencers by address.
    mapping(address sequencer => Sequencer) public sequencers;
    /// @notice Batches by id (ids start at 1).
    mapping(uint256 batchId => Batch) public batches;
    /// @notice Batches posted so far.
    uint256 public batchCount;
    /// @notice Requests by id.
    mapping(bytes32 requestId => Request) public requests;
    /// @notice Requests made so far (the nonce of the next request id).
    uint256 public requestCount;
    /// @notice Fees and refunds credited and not yet withdrawn.
    mapping(address account => uint256 amount) public credit;

    /// @dev Dispute state by claim key `keccak256(abi.encode(batchId, index))`.
    mapping(bytes32 claimKey => ClaimStatus) internal _claims;
    /// @dev The claim of each game: batch id and index.
    mapping(uint256 gameId => uint256 batchAndIndex) internal _gameClaim;

    /// @dev Transient reentrancy lock slot.
    bytes32 private constant _LOCK = keccak256("InferenceRollup.lock");

    /// @param registry_ The model registry.
    /// @param games_ The dispute games, deployed with this contract's address as their rollup.
    /// @param minStake_ Smallest stake to post.
    /// @param withdrawalDelay_ Delay of stake withdrawals, at least `challengeWindow_`.
    /// @param challengeWindow_ Challenge window of a batch, in seconds.
    /// @param callbackGasLimit_ Gas of a requester's callback.
    /// @param requestTimeout_ When an unsettled request can be refunded.
    constructor(
        IModelRegistry registry_,
        IDisputeGame games_,
        uint128 minStake_,
        uint64 withdrawalDelay_,
        uint64 challengeWindow_,
        uint64 callbackGasLimit_,
        uint64 requestTimeout_
    ) {
        if (withdrawalDelay_ < challengeWindow_ || minStake_ == 0) revert E.BadRollupConfig();
        if (games_.rollup() != address(this)) revert E.GameMismatch();
        registry = registry_;
        games = games_;
        minStake = minStake_;
        withdrawalDelay = withdrawalDelay_;
        challengeWindow = challengeWindow_;
        callbackGasLimit = callbackGasLimit_;
        requestTimeout = requestTimeout_;
    }

    // ---------------------------------------------------------------- sequencers

    /// @notice Registers the caller as a sequencer with `msg.value` wei of stake (>= {minStake}).
    function registerSequencer() external payable {
        Sequencer storage s = sequencers[msg.sender];
        if (s.registered) revert E.AlreadyRegistered(msg.sender);
        if (msg.value < minStake) revert E.InsufficientStake(msg.value, minStake);
        s.registered = true;
        s.stake = uint128(msg.value);
        emit SequencerRegistered(msg.sender, msg.value);
    }

    /// @notice Adds `msg.value` wei to the caller's stake.
    function addStake() external payable {
        Sequencer storage s = sequencers[msg.sender];
        if (!s.registered) revert E.NotSequencer(msg.sender);
        s.stake += uint128(msg.value);
        emit StakeAdded(msg.sender, msg.value, s.stake);
    }

    /// @notice Asks `amount_` wei of stake back (replacing any pending request); it stays
    ///         slashable until {withdrawStake} after {withdrawalDelay}.
    function requestWithdrawal(uint128 amount_) external {
        Sequencer storage s = sequencers[msg.sender];
        if (!s.registered) revert E.NotSequencer(msg.sender);
        if (amount_ == 0 || amount_ > s.stake) revert E.BadAmount(amount_);
        s.pendingWithdrawal = amount_;
        s.withdrawableAt = uint64(block.timestamp) + withdrawalDelay;
        emit WithdrawalRequested(msg.sender, amount_, s.withdrawableAt);
    }

    /// @notice Sends the caller its pending withdrawal (less whatever games took meanwhile).
    function withdrawStake() external {
        _lock();
        Sequencer storage s = sequencers[msg.sender];
        uint256 pending = s.pendingWithdrawal;
        if (pending == 0) revert E.NoWithdrawalPending();
        if (block.timestamp < s.withdrawableAt) revert E.WithdrawalNotReady(s.withdrawableAt);
        uint128 amount = uint128(pending < s.stake ? pending : s.stake);
        s.pendingWithdrawal = 0;
        s.stake -= amount;
        emit StakeWithdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert E.TransferFailed();
        _unlock();
    }

    /// @notice The caller's stake free of pending withdrawals.
    function freeStake(address sequencer_) public view returns (uint256 free_) {
        Sequencer storage s = sequencers[sequencer_];
        free_ = s.stake > s.pendingWithdrawal ? s.stake - s.pendingWithdrawal : 0;
    }

    // ---------------------------------------------------------------- batches

    /// @notice Posts a batch of `count_` claims under `claimsRoot_`; `data_` carries every claim
    ///         with its input and output (format version 1 in `docs/contracts.md`), so that anyone
    ///         can re-execute. The data must reproduce the post: exactly `count_` well-formed
    ///         entries whose claims tree has the root `claimsRoot_`, or the call reverts
    ///         ({LibBatch} errors, {E.BatchCountMismatch}, {E.BatchRootMismatch}).
    /// @return batchId_ The batch's id.
    function postBatch(bytes32 claimsRoot_, uint32 count_, bytes calldata data_) external returns (uint256 batchId_) {
        if (!sequencers[msg.sender].registered) revert E.NotSequencer(msg.sender);
        uint256 free = freeStake(msg.sender);
        if (free < minStake) revert E.InsufficientStake(free, minStake);
        if (count_ == 0) revert E.EmptyBatch();
        (bytes32 root, uint256 entries) = LibBatch.claimsRoot(data_);
        if (entries != count_) revert E.BatchCountMismatch(count_, entries);
        if (root != claimsRoot_) revert E.BatchRootMismatch(claimsRoot_, root);
        batchId_ = ++batchCount;
        batches[batchId_] =
            Batch({claimsRoot: claimsRoot_, sequencer: msg.sender, count: count_, postedAt: uint64(block.timestamp)});
        emit BatchPosted(batchId_, msg.sender, claimsRoot_, count_);
    }

    /// @notice The leaf of `claim_` in a batch's claims tree.
    function claimLeaf(Claim calldata claim_) public pure returns (bytes32 leaf_) {
        leaf_ = keccak256(abi.encode(claim_.requestId, claim_.modelId, claim_.inputHash, claim_.outputHash));
    }

    /// @notice Whether `claim_` is claim `index_` of batch `batchId_` (`proof_`: bottom-up siblings,
    ///         exactly `ceil(log2(count))` of them).
    function isIncluded(uint256 batchId_, uint256 index_, Claim calldata claim_, bytes32[] calldata proof_)
        public
        view
        returns (bool included_)
    {
        Batch storage b = batches[batchId_];
        if (index_ >= b.count) return false;
        included_ = LibMerkle.verifyLeaf(b.claimsRoot, LibMerkle.depthFor(b.count), index_, claimLeaf(claim_), proof_);
    }

    // ---------------------------------------------------------------- disputes

    /// @notice Disputes claim `index_` of batch `batchId_` with the challenger bond as `msg.value`;
    ///         opens a game in which the batch's sequencer defends. Any number of games may be
    ///         open against one claim.
    /// @return gameId_ The game's id in {games}.
    function challenge(uint256 batchId_, uint256 index_, Claim calldata claim_, bytes32[] calldata proof_)
        external
        payable
        returns (uint256 gameId_)
    {
        Batch storage b = batches[batchId_];
        if (b.count == 0) revert E.BatchNotFound(batchId_);
        if (block.timestamp > uint256(b.postedAt) + challengeWindow) revert E.ChallengeWindowClosed(batchId_);
        if (!isIncluded(batchId_, index_, claim_, proof_)) revert E.InvalidInclusionProof();
        address sequencer = b.sequencer;
        if (msg.sender == sequencer) revert E.SelfChallenge();
        ClaimStatus storage c = _claims[_claimKey(batchId_, index_)];
        if (c.invalidated) revert E.ClaimAlreadyInvalidated(batchId_, index_);
        // The defender bond comes out of the stake (pending withdrawals included): all of it if smaller.
        Sequencer storage s = sequencers[sequencer];
        uint128 bond = games.defenderBond();
        if (s.stake < bond) bond = s.stake;
        s.stake -= bond;
        if (s.pendingWithdrawal > s.stake) s.pendingWithdrawal = s.stake;
        c.openGames += 1;
        gameId_ = games.open{value: msg.value + bond}(claim_, sequencer, msg.sender, bond);
        _gameClaim[gameId_] = (batchId_ << 128) | index_;
        emit StakeLocked(sequencer, gameId_, bond);
        emit ClaimChallenged(batchId_, index_, gameId_, msg.sender);
    }

    /// @inheritdoc IGameResolutionSink
    function onGameResolved(uint256 gameId_, bool challengerWon_) external {
        if (msg.sender != address(games)) revert E.NotGames(msg.sender);
        uint256 packed = _gameClaim[gameId_];
        if (packed == 0) revert E.UnknownGame(gameId_);
        (uint256 batchId, uint256 index) = (packed >> 128, uint128(packed));
        ClaimStatus storage c = _claims[_claimKey(batchId, index)];
        c.openGames -= 1;
        emit ClaimGameResolved(batchId, index, gameId_, challengerWon_);
        if (challengerWon_) {
            if (!c.invalidated) {
                c.invalidated = true;
                emit ClaimInvalidated(batchId, index);
            }
        } else {
            c.gamesWon += 1;
        }
    }

    /// @notice The dispute state of claim `index_` of batch `batchId_`.
    function claimStatus(uint256 batchId_, uint256 index_) external view returns (ClaimStatus memory status_) {
        status_ = _claims[_claimKey(batchId_, index_)];
    }

    /// @notice How claim `index_` of batch `batchId_` stands now. Final: its window is over, it
    ///         has no open game and lost none.
    function claimState(uint256 batchId_, uint256 index_) public view returns (ClaimState state_) {
        Batch storage b = batches[batchId_];
        if (index_ >= b.count) revert E.ClaimIndexOutOfRange(index_, b.count);
        ClaimStatus storage c = _claims[_claimKey(batchId_, index_)];
        if (c.invalidated) return ClaimState.Invalidated;
        if (c.openGames != 0 || block.timestamp <= uint256(b.postedAt) + challengeWindow) return ClaimState.Pending;
        return ClaimState.Final;
    }

    // ---------------------------------------------------------------- reading results

    /// @notice Whether `claim_` is claim `index_` of batch `batchId_` and final: what a contract
    ///         checks before trusting a result.
    function verifyClaim(uint256 batchId_, uint256 index_, Claim calldata claim_, bytes32[] calldata proof_)
        public
        view
        returns (bool final_)
    {
        if (!isIncluded(batchId_, index_, claim_, proof_)) return false;
        final_ = claimState(batchId_, index_) == ClaimState.Final;
    }

    /// @notice Returns `outputData_` if it is the output of the final claim `claim_` (its tensor
    ///         hash with `outputType_` is the claim's output hash); reverts otherwise.
    function readOutput(
        uint256 batchId_,
        uint256 index_,
        Claim calldata claim_,
        bytes32[] calldata proof_,
        bytes calldata outputType_,
        bytes calldata outputData_
    ) external view returns (bytes memory output_) {
        if (!verifyClaim(batchId_, index_, claim_, proof_)) {
            revert E.ClaimNotFinal(batchId_, index_);
        }
        if (LibTensorType.hashData(outputType_, outputData_) != claim_.outputHash) revert E.OutputMismatch();
        output_ = outputData_;
    }

    /// @notice Returns `outputData_` if it is the settled output of request `requestId_`.
    function readSettledOutput(bytes32 requestId_, bytes calldata outputType_, bytes calldata outputData_)
        external
        view
        returns (bytes memory output_)
    {
        bytes32 outputHash = requests[requestId_].outputHash;
        if (outputHash == bytes32(0)) revert E.RequestNotSettled(requestId_);
        if (LibTensorType.hashData(outputType_, outputData_) != outputHash) revert E.OutputMismatch();
        output_ = outputData_;
    }

    // ---------------------------------------------------------------- on-chain requests

    /// @notice Asks for an inference of model `modelId_` on `inputData_` (little-endian elements)
    ///         of type `inputType_` (the model's input type), paying `msg.value` as the fee.
    /// @return requestId_ `keccak256(abi.encode(block.chainid, address(this), requestCount))`.
    function requestInference(bytes32 modelId_, bytes calldata inputType_, bytes calldata inputData_)
        external
        payable
        returns (bytes32 requestId_)
    {
        Model memory m = registry.model(modelId_);
        if (m.registrant == address(0)) revert E.ModelNotRegistered(modelId_);
        if (keccak256(inputType_) != m.inputTypeHash) revert E.InputTypeMismatch();
        if (msg.value > type(uint96).max) revert E.BadAmount(msg.value);
        bytes32 inputHash = LibTensorType.hashData(inputType_, inputData_);
        requestId_ = keccak256(abi.encode(block.chainid, address(this), requestCount++));
        requests[requestId_] = Request({
            requester: msg.sender,
            fee: uint96(msg.value),
            modelId: modelId_,
            inputHash: inputHash,
            outputHash: bytes32(0),
            createdAt: uint64(block.timestamp),
            closed: false
        });
        emit InferenceRequested(requestId_, msg.sender, modelId_, inputHash, msg.value, inputType_, inputData_);
    }

    /// @notice Settles request `claim_.requestId` with its final claim `index_` of batch
    ///         `batchId_` and the output bytes: credits the fee to the batch's sequencer, records
    ///         the output hash and calls the requester back (if a contract) with
    ///         {callbackGasLimit} gas. A failing callback is recorded and does not revert.
    function settle(
        uint256 batchId_,
        uint256 index_,
        Claim calldata claim_,
        bytes32[] calldata proof_,
        bytes calldata outputType_,
        bytes calldata outputData_
    ) external {
        _lock();
        Request storage r = requests[claim_.requestId];
        if (r.requester == address(0)) revert E.RequestNotFound(claim_.requestId);
        if (r.closed) revert E.RequestClosed(claim_.requestId);
        if (r.modelId != claim_.modelId || r.inputHash != claim_.inputHash) revert E.ClaimDoesNotMatchRequest();
        if (!verifyClaim(batchId_, index_, claim_, proof_)) revert E.ClaimNotFinal(batchId_, index_);
        if (LibTensorType.hashData(outputType_, outputData_) != claim_.outputHash) revert E.OutputMismatch();
        r.closed = true;
        r.outputHash = claim_.outputHash;
        address sequencer = batches[batchId_].sequencer;
        credit[sequencer] += r.fee;
        emit RequestSettled(claim_.requestId, batchId_, index_, claim_.outputHash, sequencer);
        address requester = r.requester;
        if (requester.code.length != 0) {
            bytes memory payload = abi.encodeCall(
                IInferenceConsumer.onInferenceSettled, (claim_.requestId, claim_.outputHash, outputType_, outputData_)
            );
            uint256 gasLimit = callbackGasLimit;
            // The caller must leave the callback its whole limit after the 1/64 kept back (EIP-150).
            if (gasleft() < gasLimit + gasLimit / 63 + 10_000) revert E.InsufficientGasForCallback();
            bool ok;
            // No return data is copied: a consumer cannot grief with a huge revert reason.
            assembly ("memory-safe") {
                ok := call(gasLimit, requester, 0, add(payload, 0x20), mload(payload), 0, 0)
            }
            emit CallbackResult(claim_.requestId, ok);
        }
        _unlock();
    }

    /// @notice Credits the fee of request `requestId_` back to its requester once it has waited
    ///         {requestTimeout} unsettled.
    function refundRequest(bytes32 requestId_) external {
        Request storage r = requests[requestId_];
        if (r.requester == address(0)) revert E.RequestNotFound(requestId_);
        if (r.closed) revert E.RequestClosed(requestId_);
        if (block.timestamp <= uint256(r.createdAt) + requestTimeout) revert E.RequestNotExpired(requestId_);
        r.closed = true;
        credit[r.requester] += r.fee;
        emit RequestRefunded(requestId_, r.requester, r.fee);
    }

    /// @notice Sends the caller its credited fees and refunds.
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

    /// @dev The key of claim `index_` of batch `batchId_`.
    function _claimKey(uint256 batchId_, uint256 index_) internal pure returns (bytes32 key_) {
        key_ = keccak256(abi.encode(batchId_, index_));
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

