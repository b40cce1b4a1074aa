// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IOneStepVerifier} from "../../interfaces/IOneStepVerifier.sol";
import {LibTensor, TensorView} from "../LibTensor.sol";

/// @title SoftmaxKernel
/// @notice One output element of `softmax` (`docs/ops.md` 7): the row of `x`, the mask row,
///         the exp-table entries the kept columns use; and of its halves `softmax_exp` (18:
///         the row of `x`, the mask row, one entry) and `softmax_norm` (19: the row of `e`).
/// @dev Reads what `inference/src/ops/reference.rs` reads: the whole row of `x`, the whole
///      mask row, and only the exp-table entries `min(max - x[c], T - 1)` of the kept
///      columns `c` (a negative entry reads as 0), so a prover opens only their leaves.
library SoftmaxKernel {
    /// @notice One row: which columns are kept, the row of `x`, whether any column is kept,
    ///         the maximum over the kept ones, and the output column `j`.
    struct Row {
        bool[] keep;
        int256[] xs;
        bool any;
        int256 max;
        uint256 j;
    }

    /// @notice The row width `N`, the rows `M` per matrix and `L / G`, the matrices per mask
    ///         row (1 without a mask).
    struct Shape {
        uint256 n;
        uint256 m;
        uint256 groupRows;
    }

    using LibTensor for TensorView;

    /// @notice Exp tables of at most this many leaves get a leaf -> calldata map for the
    ///         scattered entry reads (memory grows with the table; larger ones search the
    ///         opened ranges per read instead).
    uint256 private constant MAP_MAX_LEAVES = 8192;
    /// @notice Tables opened in at most this many ranges are read through `LibTensor.get`.
    uint256 private constant MAP_MIN_RANGES = 4;

    /// @notice `softmax`: params `causal, frac_bits, y_zp`; operands `x, exp_table[, mask]`.
    function softmax(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        Shape memory sh = _check(x_);
        if (p_[1] > 30) revert IOneStepVerifier.ParamOutOfRange();
        out_.requireOutput(LibTensor.ANY, x_[0].dims);
        LibTensor.requireInRange(p_[2], out_.dtype);
        Row memory r = _row(p_[0] == 1, x_, sh, index_);
        if (!r.any) return LibTensor.sat(p_[2], out_.dtype);
        (int256 sum, int256 ej) = _expSums(x_[1], r);
        return _normalized(ej, sum, p_[1], p_[2], out_.dtype);
    }

    /// @notice `softmax_exp`: param `causal`; operands `x, exp_table[, mask]`; `i32` output:
    ///         `e[j]` of `softmax`, one table entry.
    function softmaxExp(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256 e_)
    {
        Shape memory sh = _check(x_);
        out_.requireOutput(LibTensor.I32, x_[0].dims);
        bool causal = p_[0] == 1;
        (bool fast, bool kept, uint256 d) = _distance(x_, sh, index_, causal);
        if (!fast) {
            Row memory r = _row(causal, x_, sh, index_);
            kept = r.keep[r.j];
            // A kept column lies in [max - 2^16, max] (i8, i16 x).
            if (kept) d = uint256(r.max - r.xs[r.j]);
        }
        if (!kept) return 0;
        TensorView memory table = x_[1];
        if (d >= table.numel) d = table.numel - 1;
        e_ = table.get(d);
        if (e_ < 0) e_ = 0;
    }

    /// @dev For output element `index_` of `softmax_exp`, in one pass over calldata without
    ///      memory arrays: whether column `j` is kept and its distance `max - x[j]` below the
    ///      maximum of the kept columns. `fast_` is false (and nothing read) unless the row of
    ///      `x` and the mask row each lie in one opened leaf range; the caller then takes the
    ///      general path, which reads the same values.
    function _distance(TensorView[] memory x_, Shape memory sh_, uint256 index_, bool causal_)
        private
        pure
        returns (bool fast_, bool kept_, uint256 d_)
    {
        uint256 n = sh_.n;
        uint256 row = index_ / n;
        Scan memory sc;
        (fast_, sc.px) = x_[0].span(row * n, n, 1);
        if (!fast_) return (false, false, 0);
        if (x_.length == 3) {
            (fast_, sc.pm) = x_[2].span(((row / sh_.m) / sh_.groupRows) * n, n, 1);
            if (!fast_) return (false, false, 0);
            sc.maskSize = x_[2].size;
        }
        // Causal: column c is visible from row r = row % M when c + M <= r + N.
        sc.limit = n;
        if (causal_) {
            uint256 end = row % sh_.m + n + 1;
            sc.limit = end > sh_.m ? end - sh_.m : 0;
            if (sc.limit > n) sc.limit = n;
        }
        sc.xSize = x_[0].size;
        sc.j = index_ - row * n;
        (kept_, d_) = _scan(sc);
    }

    /// @notice Where {_distance} scans: the row of `x` and the mask row in calldata, their
    ///         element sizes (`maskSize` 0 without a mask), the visible columns, the column `j`.
    struct Scan {
        uint256 px;
        uint256 pm;
        uint256 xSize;
        uint256 maskSize;
        uint256 limit;
        uint256 j;
    }

    /// @dev The scan of {_distance}: whether column `sc_.j` is kept, and `max - x[j]`.
    function _scan(Scan memory sc_) private pure returns (bool kept_, uint256 d_) {
        int256 max = type(int256).min;
        int256 xj;
        // Calldata reads only, inside the verified ranges (c < limit <= n); x is i8 or i16
        // (little-endian, sign-extended), a mask element of any width is kept when non-zero.
        assembly ("memory-safe") {
            let px := mload(sc_)
            let pm := mload(add(sc_, 0x20))
            let xSize := mload(add(sc_, 0x40))
            let maskSize := mload(add(sc_, 0x60))
            let limit := mload(add(sc_, 0x80))
            let j := mload(add(sc_, 0xa0))
            let xShift := sub(256, shl(3, xSize))
            let maskShift := sub(256, shl(3, maskSize))
            for { let c := 0 } lt(c, limit) { c := add(c, 1) } {
                let keep := 1
                if maskSize { keep := iszero(iszero(shr(maskShift, calldataload(add(pm, mul(c, maskSize)))))) }
                if keep {
                    let raw := shr(xShift, calldataload(add(px, mul(c, xSize))))
                    let v := signextend(0, raw)
                    if eq(xSize, 2) { v := signextend(1, or(shr(8, raw), shl(8, and(raw, 0xff)))) }
                    if sgt(v, max) { max := v }
                    if eq(c, j) {
                        kept_ := 1
                        xj := v
                    }
                }
            }
        }
        // A kept column lies in [max - 2^16, max] (i8, i16 x).
        if (kept_) d_ = uint256(max - xj);
    }

    /// @notice `softmax_norm`: params `frac_bits, y_zp`; operand `e: i32 [.., N]`: `e[j]` (a
    ///         negative entry read as 0) divided by the row's sum as `softmax` divides.
    function softmaxNorm(int256[] memory p_, TensorView[] memory x_, TensorView memory out_, uint256 index_)
        internal
        pure
        returns (int256)
    {
        if (x_.length != 1) revert IOneStepVerifier.OperandCountMismatch(1, x_.length);
        TensorView memory e = x_[0];
        e.requireDtype(LibTensor.I32);
        e.requireRankAtLeast(1);
        if (p_[0] > 30) revert IOneStepVerifier.ParamOutOfRange();
        out_.requireOutput(LibTensor.ANY, e.dims);
        LibTensor.requireInRange(p_[1], out_.dtype);
        uint256 n = e.dims[e.dims.length - 1];
        (int256 sum, int256 ej) = _rowSum(e, index_ - index_ % n, n, index_ % n);
        return _normalized(ej, sum, p_[0], p_[1], out_.dtype);
    }

    /// @dev The sum of the `n_` entries of `e_` from `first_` (a negative one read as 0) and
    ///      entry `j_` of them.
    function _rowSum(TensorView memory e_, uint256 first_, uint256 n_, uint256 j_)
        private
        pure
        returns (int256 sum_, int256 ej_)
    {
        (bool ok, uint256 ptr) = e_.span(first_, n_, 1);
        if (ok) {
            // The row in one verified range: little-endian i32 entries straight from calldata,
            // a negative one (top bit set) read as 0; n <= 2^32 entries below 2^31 sum below 2^63.
            assembly ("memory-safe") {
                for { let c := 0 } lt(c, n_) { c := add(c, 1) } {
                    let b := shr(224, calldataload(add(ptr, shl(2, c))))
                    let v :=
                        or(or(shr(24, b), and(shr(8, b), 0xff00)), or(and(shl(8, b), 0xff0000), shl(24, and(b, 0xff))))
                    if gt(v, 0x7fffffff) { v := 0 }
                    sum_ := add(sum_, v)
                    if eq(c, j_) { ej_ := v }
                }
            }
            return (sum_, ej_);
        }
        // c < n <= 2^32; the sum of n entries below 2^31 stays below 2^63.
        unchecked {
            for (uint256 c = 0; c < n_; ++c) {
                int256 v = e_.get(first_ + c);
                if (v < 0) v = 0;
                sum_ += v;
                if (c == j_) ej_ = v;
            }
        }
    }

    /// @dev `sat(y_zp + floor((e * 2^q + floor(S / 2)) / S))` of non-negative `e <= S`;
    ///      `sat(y_zp)` when `S = 0`.
    function _normalized(int256 e_, int256 sum_, int256 q_, int256 yZp_, uint256 dtype_) private pure returns (int256) {
        if (sum_ == 0) return LibTensor.sat(yZp_, dtype_);
        return LibTensor.sat(yZp_ + ((e_ << uint256(q_)) + sum_ / 2) / sum_, dtype_);
    }

    /// @dev The row of output element `index_` of `x` shaped `sh_`.
    function _row(bool causal_, TensorView[] memory x_, Shape memory sh_, uint256 index_)
        private
        pure
        returns (Row memory r_)
    {
        uint256 n = sh_.n;
        r_.j = index_ % n;
        r_.keep = _maskRow(x_, ((index_ / n) / sh_.m) / sh_.groupRows, n);
        _readRow(x_[0], index_ / n, sh_.m, causal_, r_);
    }

    /// @dev Row `row_` of `x` into `r_.xs`, with `r_.keep` narrowed to the visible columns;
    ///      whether any column is kept and the maximum over the kept ones.
    function _readRow(TensorView memory x_, uint256 row_, uint256 m_, bool causal_, Row memory r_) private pure {
        uint256 n = r_.keep.length;
        // Causal: column c is visible from row r = row % M when c + M <= r + N.
        uint256 visible = causal_ ? row_ % m_ + n : type(uint256).max;
        int256[] memory xs = new int256[](n);
        bool[] memory keep = r_.keep;
        int256 max = type(int256).min;
        (bool ok, uint256 ptr) = x_.span(row_ * n, n, 1);
        // c < n <= 2^32 and the offsets below stay far from overflow.
        unchecked {
            for (uint256 c = 0; c < n; ++c) {
                int256 v = ok ? LibTensor.load(ptr + c * x_.size, x_.size) : x_.get(row_ * n + c);
                xs[c] = v;
                if (keep[c] && c + m_ <= visible) {
                    if (v > max) max = v;
                } else {
                    keep[c] = false;
                }
            }
        }
        r_.xs = xs;
        r_.max = max;
        // x is i8 or i16: the maximum moved off its start iff some column is kept.
        r_.any = max != type(int256).min;
    }

    /// @dev `S = sum of e[c]` over the kept columns and `e[j_]` (0 if not kept), with
    ///      `e[c] = max(table[min(max - x[c], T - 1)], 0)`: only those entries are read.
    function _expSums(TensorView memory table_, Row memory r_) private pure returns (int256 sum_, int256 ej_) {
        uint256 last = table_.numel - 1;
        (bool ok, uint256 ptr) = table_.span(0, table_.numel, 1);
        uint256[] memory map;
        // Scattered entries in many ranges: map leaves to calldata once (a few ranges are
        // searched per read instead).
        if (!ok && table_.starts.length > MAP_MIN_RANGES && LibTensor.leafCount(table_.numel, 4) <= MAP_MAX_LEAVES) {
            map = _leafMap(table_);
        }
        int256[] memory xs = r_.xs;
        bool[] memory keep = r_.keep;
        int256 max = r_.max;
        uint256 j = r_.j;
        // max - x[c] is in [0, 2^16) for a kept column; S < N 2^31 <= 2^63.
        unchecked {
            for (uint256 c = 0; c < xs.length; ++c) {
                if (!keep[c]) continue;
                uint256 d = uint256(max - xs[c]);
                if (d > last) d = last;
                int256 e = ok ? LibTensor.load(ptr + (d << 2), 4) : _entry(table_, map, d);
                if (e < 0) e = 0;
                sum_ += e;
                if (c == j) ej_ = e;
            }
        }
    }

    /// @dev Entry `d_` of the table `t_` through the leaf map `map_` if there is one.
    function _entry(TensorView memory t_, uint256[] memory map_, uint256 d_) private pure returns (int256) {
        if (map_.length == 0) return t_.get(d_);
        uint256 at = map_[d_ >> 3];
        if (at == 0) revert IOneStepVerifier.LeafNotOpened(t_.operand, d_ >> 3);
        return LibTensor.load(at + ((d_ & 7) << 2), 4);
    }

    /// @dev For each leaf of the `i32` table `t_`, the calldata offset of its 32 bytes, or 0
    ///      if no verified range holds it (calldata offset 0 is the selector, never a leaf).
    function _leafMap(TensorView memory t_) private pure returns (uint256[] memory map_) {
        map_ = new uint256[](LibTensor.leafCount(t_.numel, 4));
        for (uint256 r = 0; r < t_.starts.length; ++r) {
            uint256 start = t_.starts[r];
            uint256 end = t_.ends[r];
            uint256 p = t_.ptrs[r];
            for (uint256 l = start; l < end; ++l) {
                map_[l] = p + ((l - start) << 5);
            }
        }
    }

    /// @dev Whether mask row `g_` keeps each of the `n_` columns (all kept without a mask).
    function _maskRow(TensorView[] memory x_, uint256 g_, uint256 n_) private pure returns (bool[] memory keep_) {
        keep_ = new bool[](n_);
        if (x_.length < 3) {
            for (uint256 c = 0; c < n_; ++c) {
                keep_[c] = true;
            }
            return keep_;
        }
        TensorView memory mask = x_[2];
        (bool ok, uint256 ptr) = mask.span(g_ * n_, n_, 1);
        for (uint256 c = 0; c < n_; ++c) {
            keep_[c] = (ok ? LibTensor.load(ptr + c * mask.size, mask.size) : mask.get(g_ * n_ + c)) != 0;
        }
    }

    /// @dev `Op::check` for the operands of softmax and softmax_exp; returns their shape.
    function _check(TensorView[] memory x_) private pure returns (Shape memory sh_) {
        if (x_.length < 2 || x_.length > 3) revert IOneStepVerifier.OperandCountMismatch(2, x_.length);
        TensorView memory x = x_[0];
        x.requireDtype(LibTensor.I8 | LibTensor.I16);
        x.requireRankAtLeast(1);
        x_[1].requireDtype(LibTensor.I32);
        x_[1].requireRank(1);
        if (x_[1].dims[0] == 0) revert IOneStepVerifier.OperandTypeInvalid(1);
        uint256 rk = x.dims.length;
        sh_.n = x.dims[rk - 1];
        sh_.m = rk >= 2 ? x.dims[rk - 2] : 1;
        uint256 l = LibTensor.product(x.dims, 0, rk >= 2 ? rk - 2 : 0);
        sh_.groupRows = 1;
        if (x_.length == 3) {
            TensorView memory mask = x_[2];
            mask.requireRank(2);
            uint256 g = mask.dims[0];
            if (mask.dims[1] != sh_.n || g == 0 || l % g != 0) revert IOneStepVerifier.OperandTypeInvalid(2);
            sh_.groupRows = l / g;
        }
    }
}
