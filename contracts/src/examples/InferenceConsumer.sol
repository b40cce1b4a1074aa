// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IInferenceConsumer} from "../interfaces/IInferenceConsumer.sol";
import {Claim} from "../interfaces/IDisputeGame.sol";
import {InferenceRollup} from "../InferenceRollup.sol";

/// @title InferenceConsumer
/// @notice An example of a contract that uses the rollup's results: it asks for inferences of
///         one model with {InferenceRollup.requestInference} (paying the fee), records each
///         result when the rollup calls it back on settlement, and can also read the output of
///         any final claim (its own requests or anyone's, the sequencer's HTTP ones included)
///         through {InferenceRollup.readOutput}, by claim and inclusion proof.
/// @dev The callback runs under the rollup's `callbackGasLimit`, so it keeps 32-byte digests
///      in storage (`outputHash`, `keccak256(outputData)`) and puts the output bytes in an
///      event: writing a whole embedding to storage would cost more than the limit allows.
contract InferenceConsumer is IInferenceConsumer {
    /// @notice What this contract knows of one of its requests.
    struct Result {
        /// @dev Whether this contract asked for it.
        bool asked;
        /// @dev Whether the rollup called back with its output.
        bool settled;
        /// @dev The output's tensor hash (zero until settled).
        bytes32 outputHash;
        /// @dev `keccak256` of the output bytes (zero until settled).
        bytes32 outputDigest;
    }

    /// @notice The rollup asked and read through.
    InferenceRollup public immutable rollup;
    /// @notice The model every request of this contract uses.
    bytes32 public immutable modelId;

    /// @notice Results by request id.
    mapping(bytes32 requestId => Result) public results;
    /// @notice `keccak256` of the output bytes read through {readFinalOutput}, by request id.
    mapping(bytes32 requestId => bytes32 outputDigest) public readDigests;
    /// @notice Request ids in the order asked.
    bytes32[] public requestIds;
    /// @notice How many of them the rollup called back.
    uint256 public settledCount;

    /// @notice This contract asked for an inference on `inputBytes` bytes of input, paying `fee` wei.
    event InferenceAsked(bytes32 indexed requestId, uint256 fee, uint256 inputBytes);
    /// @notice The rollup called back: request `requestId` settled with `outputData`.
    event InferenceReceived(bytes32 indexed requestId, bytes32 outputHash, bytes outputData);
    /// @notice The output of the final claim `index` of batch `batchId` (request `requestId`) was
    ///         read and checked against the claim.
    event FinalOutputRead(
        bytes32 indexed requestId, uint256 indexed batchId, uint256 index, bytes32 outputHash, bytes32 outputDigest
    );

    /// @notice `caller` is not the rollup.
    error NotRollup(address caller);
    /// @notice The rollup called back for `requestId`, which this contract never asked for.
    error UnknownRequest(bytes32 requestId);
    /// @notice The rollup called back twice for `requestId`.
    error AlreadySettled(bytes32 requestId);
    /// @notice A claim of model `got` where this contract uses `expected`.
    error WrongModel(bytes32 expected, bytes32 got);
    /// @notice A request without fee.
    error NoFee();

    /// @param rollup_ The rollup.
    /// @param modelId_ The model every request uses (must be registered in the rollup's registry).
    constructor(InferenceRollup rollup_, bytes32 modelId_) {
        rollup = rollup_;
        modelId = modelId_;
    }

    /// @notice Asks the rollup for an inference on `inputData_` of type `inputType_` (the model's
    ///         input type), forwarding `msg.value` as the fee.
    /// @return requestId_ The rollup's request id.
    function ask(bytes calldata inputType_, bytes calldata inputData_) external payable returns (bytes32 requestId_) {
        if (msg.value == 0) revert NoFee();
        requestId_ = rollup.requestInference{value: msg.value}(modelId, inputType_, inputData_);
        results[requestId_].asked = true;
        requestIds.push(requestId_);
        emit InferenceAsked(requestId_, msg.value, inputData_.length);
    }

    /// @inheritdoc IInferenceConsumer
    function onInferenceSettled(
        bytes32 requestId_,
        bytes32 outputHash_,
        bytes calldata,
        bytes calldata outputData_
    ) external {
        if (msg.sender != address(rollup)) revert NotRollup(msg.sender);
        Result storage r = results[requestId_];
        if (!r.asked) revert UnknownRequest(requestId_);
        if (r.settled) revert AlreadySettled(requestId_);
        r.settled = true;
        r.outputHash = outputHash_;
        r.outputDigest = keccak256(outputData_);
        // Cannot overflow: at most one increment per request id pushed in {ask}.
        unchecked {
            ++settledCount;
        }
        emit InferenceReceived(requestId_, outputHash_, outputData_);
    }

    /// @notice Reads the output of claim `index_` of batch `batchId_` through the rollup: reverts
    ///         unless the claim is in the batch (`proof_`), final, of this contract's model, and
    ///         `outputData_` of type `outputType_` is its output. Records the output's digest.
    /// @return output_ The checked output bytes.
    function readFinalOutput(
        uint256 batchId_,
        uint256 index_,
        Claim calldata claim_,
        bytes32[] calldata proof_,
        bytes calldata outputType_,
        bytes calldata outputData_
    ) external returns (bytes memory output_) {
        if (claim_.modelId != modelId) revert WrongModel(modelId, claim_.modelId);
        output_ = rollup.readOutput(batchId_, index_, claim_, proof_, outputType_, outputData_);
        bytes32 digest = keccak256(output_);
        readDigests[claim_.requestId] = digest;
        emit FinalOutputRead(claim_.requestId, batchId_, index_, claim_.outputHash, digest);
    }

    /// @notice How many requests this contract made.
    function requestCount() external view returns (uint256 count_) {
        count_ = requestIds.length;
    }
}
