// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "../interfaces/IOneStepVerifier.sol";
import {LibMerkle} from "../lib/LibMerkle.sol";
import {LibTensor, TensorView} from "./LibTensor.sol";
import {LibOpCodec, DecodedOp} from "./LibOpCodec.sol";
import {LibRangeProof} from "./LibRangeProof.sol";

/// @title OneStepHost
/// @notice What every one-step verifier does around its kernels: decode the op, prove each
///         operand's tensor hash and leaf ranges against the execution state's roots, check
///         the output element's index, and run the kernel of the op's kind ({_element}).
/// @dev Mirrors `inference/src/one_step.rs` `element_from_leaves`: the operands' types are
///      checked as `Op::check` does, every element read must lie in a verified leaf range,
///      and the arithmetic is the reference's (`inference/src/ops/reference.rs`). Stateless.
abstract contract OneStepHost {
    /// @notice Tree sizes above `2^64` leaves (`MAX_DEPTH`) are refused.
    uint256 private constant MAX_TREE_LEAVES = 1 << 64;

    /// @dev `IOneStepVerifier.computeElement` up to the kernel, which {_element} runs.
    function _compute(
        bytes calldata op_,
        bytes32 weightsRoot_,
        uint256 weightCount_,
        bytes32 activationsRoot_,
        uint256 slotCount_,
        uint256 index_,
        IOneStepVerifier.Opening[] calldata operands_
    ) internal pure returns (int256 value_) {
        DecodedOp memory op = LibOpCodec.decode(op_);
        uint256 n = op.tags.length;
        if (operands_.length != n) revert IOneStepVerifier.OperandCountMismatch(n, operands_.length);
        TensorView[] memory inputs = new TensorView[](n);
        for (uint256 i = 0; i < n; ++i) {
            (bytes32 root, uint256 count) =
                op.tags[i] == 1 ? (weightsRoot_, weightCount_) : (activationsRoot_, slotCount_);
            inputs[i] = _open(i, op.indices[i], root, count, operands_[i]);
        }
        TensorView memory out;
        out.dtype = op.outDtype;
        out.size = LibTensor.sizeOf(op.outDtype);
        out.dims = op.outDims;
        out.numel = LibTensor.product(op.outDims, 0, op.outDims.length);
        if (index_ >= out.numel) revert IOneStepVerifier.ElementOutOfRange(index_, out.numel);
        value_ = _element(op, inputs, out, index_);
    }

    /// @dev Runs the kernel of `op_.kind` (reverts `UnknownOpKind` for a kind this verifier
    ///      does not hold).
    function _element(DecodedOp memory op_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        virtual
        returns (int256);

    /// @dev Decodes operand `i_`'s type, proves its tensor hash is leaf `index_` of the tree
    ///      `root_` of `count_` leaves, verifies its leaf ranges against its data root, and
    ///      returns the view the kernels read.
    function _open(uint256 i_, uint256 index_, bytes32 root_, uint256 count_, IOneStepVerifier.Opening calldata o_)
        private
        pure
        returns (TensorView memory t_)
    {
        (uint256 dtype, uint256[] memory dims, uint256 end, bool ok) = LibTensor.decodeType(o_.tensorType, 0);
        if (!ok || end != o_.tensorType.length) revert IOneStepVerifier.MalformedTensorType(i_);
        if (index_ >= count_ || count_ > MAX_TREE_LEAVES) {
            revert IOneStepVerifier.OperandIndexOutOfRange(i_, index_, count_);
        }
        bytes32 tensorHash = keccak256(bytes.concat(o_.tensorType, o_.dataRoot));
        if (
            o_.membership.length != LibTensor.depthFor(count_)
                || LibMerkle.rootFromLeaf(index_, tensorHash, o_.membership) != root_
        ) revert IOneStepVerifier.MembershipProofInvalid(i_);

        t_.operand = i_;
        t_.dtype = dtype;
        t_.size = LibTensor.sizeOf(dtype);
        t_.dims = dims;
        t_.numel = LibTensor.product(dims, 0, dims.length);
        _verifyRanges(t_, o_);
    }

    /// @dev Verifies the leaf ranges of `o_` (in increasing order, without overlap) and their
    ///      shared siblings against its data root (the depth from the type in `t_`), and
    ///      records where each range's leaves lie in calldata.
    function _verifyRanges(TensorView memory t_, IOneStepVerifier.Opening calldata o_) private pure {
        uint256 leaves = LibTensor.leafCount(t_.numel, t_.size);
        uint256 nr = o_.ranges.length;
        t_.starts = new uint256[](nr);
        t_.ends = new uint256[](nr);
        t_.ptrs = new uint256[](nr);
        uint256 prevEnd = 0;
        for (uint256 r = 0; r < nr; ++r) {
            IOneStepVerifier.LeafRange calldata range = o_.ranges[r];
            bytes32[] calldata data = range.leaves;
            uint256 start = range.start;
            if (data.length == 0 || start < prevEnd || start + data.length > leaves) {
                revert IOneStepVerifier.RangeProofInvalid(t_.operand, r);
            }
            uint256 ptr;
            assembly ("memory-safe") {
                ptr := data.offset
            }
            prevEnd = start + data.length;
            t_.starts[r] = start;
            t_.ends[r] = prevEnd;
            t_.ptrs[r] = ptr;
        }
        if (nr == 0) {
            if (o_.siblings.length != 0) revert IOneStepVerifier.LeafProofInvalid(t_.operand);
            return;
        }
        (bytes32 got, bool fits) =
            LibRangeProof.computeRoot(t_.starts, t_.ends, t_.ptrs, o_.siblings, LibTensor.depthFor(leaves));
        if (!fits || got != o_.dataRoot) revert IOneStepVerifier.LeafProofInvalid(t_.operand);
    }
}
