// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "../interfaces/IOneStepVerifier.sol";

/// @notice An operand as the kernels see it: its type and the calldata location of every
///         leaf range that was verified against its data root.
/// @dev Built by `OneStepVerifier` only after the membership and range proofs passed, so
///      every byte a read reaches is committed. `dtype` is the op spec's code (i8 = 1,
///      i16 = 2, i32 = 3), `size` the bytes per element. `hint` is the range the last read
///      hit, where the next search starts (strided reads walk the ranges in order).
struct TensorView {
    uint256 operand;
    uint256 dtype;
    uint256 size;
    uint256[] dims;
    uint256 numel;
    uint256[] starts;
    uint256[] ends;
    uint256[] ptrs;
    uint256 hint;
}

/// @title LibTensor
/// @notice Tensor types (decoding, checks) and element reads from verified leaves
///         (`inference/src/one_step.rs`: `leaf_of_element`, `element_in_leaf`).
/// @dev Elements are little-endian inside 32-byte leaves; leaf `k` holds bytes `[32k, 32k + 32)`
///      of the row-major data.
library LibTensor {
    /// @notice Bit mask of dtype `dtype_` (for `requireDtype`).
    uint256 internal constant I8 = 1 << 1;
    /// @notice See `I8`.
    uint256 internal constant I16 = 1 << 2;
    /// @notice See `I8`.
    uint256 internal constant I32 = 1 << 3;
    /// @notice Any element dtype.
    uint256 internal constant ANY = I8 | I16 | I32;

    /// @notice Decodes `dtype u8 || rank u8 || dim u32 BE ...` at `offset_` of calldata `data_`.
    /// @return dtype_ The dtype code (1..=3).
    /// @return dims_ The dimensions, outermost first.
    /// @return end_ The offset just past the type.
    /// @return ok_ False if the bytes run out or the dtype code is unknown.
    function decodeType(bytes calldata data_, uint256 offset_)
        internal
        pure
        returns (uint256 dtype_, uint256[] memory dims_, uint256 end_, bool ok_)
    {
        if (offset_ + 2 > data_.length) return (0, dims_, offset_, false);
        dtype_ = uint8(data_[offset_]);
        uint256 rank = uint8(data_[offset_ + 1]);
        end_ = offset_ + 2 + 4 * rank;
        if (dtype_ == 0 || dtype_ > 3 || end_ > data_.length) return (0, dims_, offset_, false);
        dims_ = new uint256[](rank);
        for (uint256 i = 0; i < rank; ++i) {
            dims_[i] = uint32(bytes4(data_[offset_ + 2 + 4 * i:offset_ + 6 + 4 * i]));
        }
        ok_ = true;
    }

    /// @notice Bytes per element of dtype code `dtype_` (1, 2 or 4).
    function sizeOf(uint256 dtype_) internal pure returns (uint256) {
        return dtype_ == 3 ? 4 : dtype_;
    }

    /// @notice The product of `dims_` (1 for rank 0); reverts on overflow.
    function product(uint256[] memory dims_, uint256 from_, uint256 to_) internal pure returns (uint256 p_) {
        p_ = 1;
        for (uint256 i = from_; i < to_; ++i) {
            p_ *= dims_[i];
        }
    }

    /// @notice The number of 32-byte data leaves of `numel_` elements of `size_` bytes: `max(1, ceil(bytes / 32))`.
    function leafCount(uint256 numel_, uint256 size_) internal pure returns (uint256) {
        uint256 bytes_ = numel_ * size_;
        return bytes_ == 0 ? 1 : (bytes_ + 31) >> 5;
    }

    /// @notice The depth of a tree of `n_` leaves: the smallest `d` with `2^d >= max(n_, 1)`.
    function depthFor(uint256 n_) internal pure returns (uint256 d_) {
        while (d_ < 255 && (uint256(1) << d_) < n_) {
            ++d_;
        }
    }

    /// @notice The smallest and largest value of dtype code `dtype_`.
    function bounds(uint256 dtype_) internal pure returns (int256 min_, int256 max_) {
        if (dtype_ == 1) return (type(int8).min, type(int8).max);
        if (dtype_ == 2) return (type(int16).min, type(int16).max);
        return (type(int32).min, type(int32).max);
    }

    /// @notice `sat_T(v_)`: `v_` clamped into the range of dtype `dtype_`.
    function sat(int256 v_, uint256 dtype_) internal pure returns (int256) {
        (int256 lo, int256 hi) = bounds(dtype_);
        return v_ < lo ? lo : (v_ > hi ? hi : v_);
    }

    /// @notice Reverts unless zero point (or other value) `v_` lies in the range of dtype `dtype_`.
    function requireInRange(int256 v_, uint256 dtype_) internal pure {
        (int256 lo, int256 hi) = bounds(dtype_);
        if (v_ < lo || v_ > hi) revert IOneStepVerifier.ParamOutOfRange();
    }

    /// @notice Reverts unless `t_`'s dtype is in `mask_` (bits `I8 | I16 | I32`).
    function requireDtype(TensorView memory t_, uint256 mask_) internal pure {
        if ((uint256(1) << t_.dtype) & mask_ == 0) revert IOneStepVerifier.OperandTypeInvalid(t_.operand);
    }

    /// @notice Reverts unless `t_` has rank `rank_`.
    function requireRank(TensorView memory t_, uint256 rank_) internal pure {
        if (t_.dims.length != rank_) revert IOneStepVerifier.OperandTypeInvalid(t_.operand);
    }

    /// @notice Reverts unless `t_` has rank at least `rank_`.
    function requireRankAtLeast(TensorView memory t_, uint256 rank_) internal pure {
        if (t_.dims.length < rank_) revert IOneStepVerifier.OperandTypeInvalid(t_.operand);
    }

    /// @notice Reverts unless `t_` is the vector `[n_]`.
    function requireVector(TensorView memory t_, uint256 n_) internal pure {
        if (t_.dims.length != 1 || t_.dims[0] != n_) revert IOneStepVerifier.OperandTypeInvalid(t_.operand);
    }

    /// @notice Whether two shapes are equal.
    function sameDims(uint256[] memory a_, uint256[] memory b_) internal pure returns (bool) {
        if (a_.length != b_.length) return false;
        for (uint256 i = 0; i < a_.length; ++i) {
            if (a_[i] != b_[i]) return false;
        }
        return true;
    }

    /// @notice Reverts unless the output `out_` has a dtype in `mask_` and shape `dims_`.
    function requireOutput(TensorView memory out_, uint256 mask_, uint256[] memory dims_) internal pure {
        if ((uint256(1) << out_.dtype) & mask_ == 0 || !sameDims(out_.dims, dims_)) {
            revert IOneStepVerifier.OutputTypeInvalid();
        }
    }

    /// @notice The multi-index of flat `index_` in `dims_` (row-major).
    function unravel(uint256 index_, uint256[] memory dims_) internal pure returns (uint256[] memory idx_) {
        uint256 r = dims_.length;
        idx_ = new uint256[](r);
        for (uint256 i = r; i > 0; --i) {
            uint256 d = dims_[i - 1];
            if (d == 0) break;
            idx_[i - 1] = index_ % d;
            index_ /= d;
        }
    }

    /// @notice The flat index of multi-index `idx_` in `dims_` (row-major).
    function ravel(uint256[] memory idx_, uint256[] memory dims_) internal pure returns (uint256 flat_) {
        for (uint256 i = 0; i < dims_.length; ++i) {
            flat_ = flat_ * dims_[i] + idx_[i];
        }
    }

    /// @notice Element `e_` of `t_`; reverts if its leaf is in no verified range.
    function get(TensorView memory t_, uint256 e_) internal pure returns (int256) {
        if (e_ >= t_.numel) revert IOneStepVerifier.ElementOutOfRange(e_, t_.numel);
        uint256 byteOffset = e_ * t_.size;
        uint256 leaf = byteOffset >> 5;
        uint256 n = t_.starts.length;
        uint256 i = t_.hint;
        for (uint256 k = 0; k < n; ++k) {
            if (i >= n) i = 0;
            uint256 start = t_.starts[i];
            if (leaf >= start && leaf < t_.ends[i]) {
                t_.hint = i;
                return load(t_.ptrs[i] + byteOffset - (start << 5), t_.size);
            }
            ++i;
        }
        revert IOneStepVerifier.LeafNotOpened(t_.operand, leaf);
    }

    /// @notice Where elements `first_, first_ + stride_, ...` (`count_` of them, all below
    ///         `numel`) lie in calldata, if one verified range holds them all.
    /// @return ok_ Whether one range covers the whole span (else read them with `get`).
    /// @return ptr_ The calldata offset of element `first_`; element `i` is at `ptr_ + i * stride_ * size`.
    function span(TensorView memory t_, uint256 first_, uint256 count_, uint256 stride_)
        internal
        pure
        returns (bool ok_, uint256 ptr_)
    {
        if (count_ == 0) return (false, 0);
        uint256 last = first_ + (count_ - 1) * stride_;
        if (last >= t_.numel) return (false, 0);
        uint256 lo = (first_ * t_.size) >> 5;
        uint256 hi = (last * t_.size) >> 5;
        uint256 n = t_.starts.length;
        for (uint256 i = 0; i < n; ++i) {
            uint256 start = t_.starts[i];
            if (lo >= start && hi < t_.ends[i]) {
                return (true, t_.ptrs[i] + first_ * t_.size - (start << 5));
            }
        }
    }

    /// @notice Element `e_` of `t_`, through the span `(ok_, ptr_)` of `span(t_, 0, numel, 1)`
    ///         when there is one (`e_` must then be below `numel`), else through `get`.
    function at(TensorView memory t_, bool ok_, uint256 ptr_, uint256 e_) internal pure returns (int256) {
        return ok_ ? load(ptr_ + e_ * t_.size, t_.size) : get(t_, e_);
    }

    /// @notice `sum_c (x[first + c] - zp)` and `sum_c (x[first + c] - zp)^2` over `count_` elements.
    /// @dev Exact: `|x - zp| < 2^33` and `count_ <= 2^20` (the norms' bound) keep both sums
    ///      below `2^86`, so the unchecked assembly sums cannot overflow.
    function rowSums(TensorView memory t_, uint256 first_, uint256 count_, int256 zp_)
        internal
        pure
        returns (int256 sum_, int256 sumSq_)
    {
        (bool ok, uint256 ptr) = span(t_, first_, count_, 1);
        if (!ok) {
            for (uint256 c = 0; c < count_; ++c) {
                int256 v = get(t_, first_ + c) - zp_;
                sum_ += v;
                sumSq_ += v * v;
            }
            return (sum_, sumSq_);
        }
        uint256 size = t_.size;
        assembly ("memory-safe") {
            // Bounded as above: plain (wrapping) EVM arithmetic never wraps here.
            let end := add(ptr, mul(count_, size))
            for { let p := ptr } lt(p, end) { p := add(p, size) } {
                let w := calldataload(p)
                let v
                switch size
                case 1 { v := signextend(0, shr(248, w)) }
                case 2 {
                    let b := shr(240, w)
                    v := signextend(1, or(shr(8, b), shl(8, and(b, 0xff))))
                }
                default {
                    let b := shr(224, w)
                    v := signextend(
                        3,
                        or(or(shr(24, b), and(shr(8, b), 0xff00)), or(and(shl(8, b), 0xff0000), shl(24, and(b, 0xff))))
                    )
                }
                v := sub(v, zp_)
                sum_ := add(sum_, v)
                sumSq_ := add(sumSq_, mul(v, v))
            }
        }
    }

    /// @notice Elements `[first_, first_ + count_)` of `t_` as a memory array.
    function loadRow(TensorView memory t_, uint256 first_, uint256 count_) internal pure returns (int256[] memory row_) {
        row_ = new int256[](count_);
        (bool ok, uint256 ptr) = span(t_, first_, count_, 1);
        uint256 size = t_.size;
        for (uint256 c = 0; c < count_; ++c) {
            row_[c] = ok ? load(ptr + c * size, size) : get(t_, first_ + c);
        }
    }

    /// @notice The little-endian signed element of `size_` bytes at calldata offset `ptr_`.
    function load(uint256 ptr_, uint256 size_) internal pure returns (int256 v_) {
        assembly ("memory-safe") {
            let w := calldataload(ptr_)
            switch size_
            case 1 { v_ := signextend(0, shr(248, w)) }
            case 2 {
                let b := shr(240, w)
                v_ := signextend(1, or(shr(8, b), shl(8, and(b, 0xff))))
            }
            default {
                let b := shr(224, w)
                v_ := signextend(
                    3,
                    or(
                        or(shr(24, b), and(shr(8, b), 0xff00)),
                        or(and(shl(8, b), 0xff0000), shl(24, and(b, 0xff)))
                    )
                )
            }
        }
    }
}
