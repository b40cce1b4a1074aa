//! Data movement: `reshape`, `transpose`, `concat`, `slice` and `embedding` (row gather).
//! None of them computes a value; they only move elements, for every dtype alike.

use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorData};

/// Applies a dtype-generic body to the typed storage of a tensor, rebuilding the storage.
macro_rules! per_dtype {
    ($data:expr, |$v:ident| $body:expr) => {
        match $data {
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I32($v) => TensorData::I32($body),
        }
    };
}

/// `reshape`: same elements, new shape.
pub fn reshape(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    x.clone().reshaped(shape.to_vec())
}

/// `transpose`: output axis `i` is input axis `perm[i]`.
pub fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let shape = x.shape();
    let r = shape.len();
    if perm.len() != r {
        return Err(Error::Param(format!(
            "transpose: perm {perm:?} for rank {r}"
        )));
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let plan = Permutation::new(shape, perm);
    let data = per_dtype!(x.data(), |v| {
        let mut o = vec![Default::default(); v.len()];
        plan.apply(v, &mut o);
        o
    });
    Tensor::new(out_shape, data)
}

/// A transpose reduced to its essentials: axes of size 1 dropped, and output axes that are
/// also adjacent (in order) in the input merged. What is left is walked as whole runs
/// (when the innermost axis stays innermost) or as square tiles of a 2-D transpose.
struct Permutation {
    /// Sizes of the output axes, outermost first.
    sizes: Vec<usize>,
    /// Input stride of each output axis.
    strides: Vec<usize>,
}

impl Permutation {
    fn new(shape: &[usize], perm: &[usize]) -> Self {
        let mut in_strides = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * shape[i + 1];
        }
        let (mut sizes, mut strides) = (Vec::new(), Vec::<usize>::new());
        for &p in perm {
            if shape[p] == 1 {
                continue;
            }
            match (sizes.last_mut(), strides.last_mut()) {
                // The previous output axis steps over exactly this one in the input.
                (Some(size), Some(stride)) if *stride == in_strides[p] * shape[p] => {
                    *size *= shape[p];
                    *stride = in_strides[p];
                }
                _ => {
                    sizes.push(shape[p]);
                    strides.push(in_strides[p]);
                }
            }
        }
        Self { sizes, strides }
    }

    /// `dst[i] = src[offset of output index i]`, `dst.len() == src.len()`.
    fn apply<T: Cell>(&self, src: &[T], dst: &mut [T]) {
        if dst.is_empty() {
            return;
        }
        let r = self.sizes.len();
        if r <= 1 {
            dst.copy_from_slice(src);
            return;
        }
        if self.strides[r - 1] == 1 {
            // Runs of the innermost axis, contiguous on both sides.
            let run = self.sizes[r - 1];
            let outer = Odometer::new(&self.sizes[..r - 1], &self.strides[..r - 1]);
            for (chunk, off) in dst.chunks_exact_mut(run).zip(outer) {
                chunk.copy_from_slice(&src[off..off + run]);
            }
            return;
        }
        // The input's innermost axis left (stride 1) is output axis `p < r - 1`; tiles over
        // axes `p` and `r - 1` read and write whole cache lines.
        let p = self.strides[..r - 1]
            .iter()
            .position(|&s| s == 1)
            .unwrap_or(r - 2);
        let (rows, cols) = (self.sizes[p], self.sizes[r - 1]);
        let (row_stride, col_stride) = (self.strides[p], self.strides[r - 1]);
        // Output strides: axis `p` steps over whole blocks of the axes after it.
        let inner_len: usize = self.sizes[p + 1..].iter().product();
        let mid = || Odometer::new(&self.sizes[p + 1..r - 1], &self.strides[p + 1..r - 1]);
        let outer = Odometer::new(&self.sizes[..p], &self.strides[..p]);
        for (block, off) in dst.chunks_exact_mut(rows * inner_len).zip(outer) {
            // block[i * inner_len + m * cols + j] = src[off + i * row_stride + mo(m) + j * col_stride]
            for (m, mo) in mid().enumerate() {
                tile_copy(
                    &src[off + mo..],
                    row_stride,
                    col_stride,
                    &mut block[m * cols..],
                    inner_len,
                    rows,
                    cols,
                );
            }
        }
    }
}

/// The input offsets of the output indices of some axes in row-major order, one step
/// after another (an empty set of axes gives one offset, 0).
struct Odometer<'a> {
    sizes: &'a [usize],
    strides: &'a [usize],
    index: Vec<usize>,
    offset: usize,
    done: bool,
}

impl<'a> Odometer<'a> {
    fn new(sizes: &'a [usize], strides: &'a [usize]) -> Self {
        Self {
            sizes,
            strides,
            index: vec![0; sizes.len()],
            offset: 0,
            done: sizes.contains(&0),
        }
    }
}

impl Iterator for Odometer<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.done {
            return None;
        }
        let current = self.offset;
        self.done = true;
        for ax in (0..self.sizes.len()).rev() {
            self.index[ax] += 1;
            self.offset += self.strides[ax];
            if self.index[ax] < self.sizes[ax] {
                self.done = false;
                break;
            }
            self.offset -= self.strides[ax] * self.sizes[ax];
            self.index[ax] = 0;
        }
        Some(current)
    }
}

/// Edge of the square tiles of a 2-D transpose: a tile of `i32` is 4 KiB.
const TILE: usize = 32;

/// An element the layout ops move. Bytes, the common case (`i8` activations), have an
/// 8 x 8 block transpose in `u64` words.
pub(super) trait Cell: Copy + Default + Send + Sync {
    /// Whether [`Cell::block_8x8`] is implemented.
    const BLOCK: bool = false;

    /// `dst[i * dst_stride + j] = src[i + j * col_stride]` for `i, j < 8`.
    #[inline(always)]
    fn block_8x8(src: &[Self], col_stride: usize, dst: &mut [Self], dst_stride: usize) {
        for i in 0..8 {
            for j in 0..8 {
                dst[i * dst_stride + j] = src[i + j * col_stride];
            }
        }
    }
}

impl Cell for i16 {}
impl Cell for i32 {}

impl Cell for i8 {
    const BLOCK: bool = true;

    #[inline(always)]
    fn block_8x8(src: &[i8], col_stride: usize, dst: &mut [i8], dst_stride: usize) {
        // r[j], byte i: element (i, j). Three rounds of swaps of 1, 2 and 4 bytes turn it
        // into r[i], byte j.
        let mut r: [u64; 8] = std::array::from_fn(|j| {
            let bytes: [i8; 8] = src[j * col_stride..][..8].try_into().unwrap();
            u64::from_le_bytes(bytes.map(|b| b as u8))
        });
        #[inline(always)]
        fn swap(r: &mut [u64; 8], a: usize, b: usize, bits: u32, mask: u64) {
            let t = ((r[a] >> bits) ^ r[b]) & mask;
            r[b] ^= t;
            r[a] ^= t << bits;
        }
        const BYTES: u64 = 0x00ff_00ff_00ff_00ff;
        const PAIRS: u64 = 0x0000_ffff_0000_ffff;
        const QUADS: u64 = 0x0000_0000_ffff_ffff;
        for (a, b) in [(0, 1), (2, 3), (4, 5), (6, 7)] {
            swap(&mut r, a, b, 8, BYTES);
        }
        for (a, b) in [(0, 2), (1, 3), (4, 6), (5, 7)] {
            swap(&mut r, a, b, 16, PAIRS);
        }
        for (a, b) in [(0, 4), (1, 5), (2, 6), (3, 7)] {
            swap(&mut r, a, b, 32, QUADS);
        }
        for (i, row) in r.iter().enumerate() {
            dst[i * dst_stride..][..8].copy_from_slice(&row.to_le_bytes().map(|b| b as i8));
        }
    }
}

/// `dst[i * dst_stride + j] = src[i * row_stride + j * col_stride]` for `i < rows`,
/// `j < cols`, tile by tile so that both sides stay in cache.
fn tile_copy<T: Cell>(
    src: &[T],
    row_stride: usize,
    col_stride: usize,
    dst: &mut [T],
    dst_stride: usize,
    rows: usize,
    cols: usize,
) {
    for i0 in (0..rows).step_by(TILE) {
        for j0 in (0..cols).step_by(TILE) {
            let (i_end, j_end) = ((i0 + TILE).min(rows), (j0 + TILE).min(cols));
            // Whole 8 x 8 blocks where the source runs along i, then the edges one by one.
            let (i_blocks, j_blocks) = if T::BLOCK && row_stride == 1 {
                (i0 + (i_end - i0) / 8 * 8, j0 + (j_end - j0) / 8 * 8)
            } else {
                (i0, j0)
            };
            for i in (i0..i_blocks).step_by(8) {
                for j in (j0..j_blocks).step_by(8) {
                    let d = &mut dst[i * dst_stride + j..];
                    T::block_8x8(&src[i + j * col_stride..], col_stride, d, dst_stride);
                }
            }
            for i in i0..i_end {
                let first = if i < i_blocks { j_blocks } else { j0 };
                let d = &mut dst[i * dst_stride..];
                for j in first..j_end {
                    d[j] = src[i * row_stride + j * col_stride];
                }
            }
        }
    }
}

/// `dst[c * rows + r] = src[r * cols + c]`: the transpose of a `rows x cols` matrix.
pub(super) fn transpose_2d<T: Cell>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    tile_copy(src, 1, cols, dst, rows, cols, rows);
}

/// `concat` along `axis`.
pub fn concat(xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = xs
        .first()
        .ok_or_else(|| Error::Param("concat: no operands".into()))?;
    let shape = first.shape();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out_shape = shape.to_vec();
    out_shape[axis] = xs.iter().map(|t| t.shape()[axis]).sum();
    let mut data = TensorData::zeros(first.dtype(), out_shape.iter().product());
    let mut pos = 0usize;
    let row = out_shape[axis] * inner;
    for t in xs {
        let chunk = t.shape()[axis] * inner;
        match (&mut data, t.data()) {
            (TensorData::I8(d), TensorData::I8(s)) => copy_blocks(d, s, outer, chunk, row, pos),
            (TensorData::I16(d), TensorData::I16(s)) => copy_blocks(d, s, outer, chunk, row, pos),
            (TensorData::I32(d), TensorData::I32(s)) => copy_blocks(d, s, outer, chunk, row, pos),
            _ => return Err(Error::Param("concat: operands differ in dtype".into())),
        }
        pos += chunk;
    }
    Tensor::new(out_shape, data)
}

fn copy_blocks<T: Copy>(
    dst: &mut [T],
    src: &[T],
    outer: usize,
    chunk: usize,
    row: usize,
    pos: usize,
) {
    for o in 0..outer {
        dst[o * row + pos..o * row + pos + chunk].copy_from_slice(&src[o * chunk..(o + 1) * chunk]);
    }
}

/// `slice`: `x[.., start..end, ..]` along `axis`.
pub fn slice(x: &Tensor, axis: usize, start: usize, end: usize) -> Result<Tensor> {
    let shape = x.shape();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let row = shape[axis] * inner;
    let mut out_shape = shape.to_vec();
    out_shape[axis] = end - start;
    let data = per_dtype!(x.data(), |v| {
        let mut o = Vec::with_capacity(outer * (end - start) * inner);
        for b in 0..outer {
            o.extend_from_slice(&v[b * row + start * inner..b * row + end * inner]);
        }
        o
    });
    Tensor::new(out_shape, data)
}

/// `embedding`: row `indices[i]` of `table` for every index; a row of zeros for an index
/// outside `[0, V)`.
pub fn embedding(table: &Tensor, indices: &Tensor) -> Result<Tensor> {
    let idx = indices.as_i32("embedding indices")?;
    let (v, d) = (table.shape()[0], table.shape()[1]);
    let mut out_shape = indices.shape().to_vec();
    out_shape.push(d);
    let data = per_dtype!(table.data(), |t| {
        let mut o = vec![Default::default(); idx.len() * d];
        for (i, &r) in idx.iter().enumerate() {
            if r >= 0 && (r as usize) < v {
                let r = r as usize;
                o[i * d..(i + 1) * d].copy_from_slice(&t[r * d..(r + 1) * d]);
            }
        }
        o
    });
    Tensor::new(out_shape, data)
}

#[cfg(test)]
mod tests {
    use super::super::{Op, reference};
    use super::*;
    use crate::tensor::TensorType;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(super::super::fixed_point::test_config(64))]

        /// Shapes large enough for whole tiles and 8 x 8 blocks (the crate's property tests
        /// use small ones), every dtype, against the reference.
        #[test]
        fn large_transposes_match_the_reference(
            dims in proptest::collection::vec(1usize..40, 2..=4),
            seed in any::<u64>(),
            dtype in 0usize..3,
        ) {
            let numel: usize = dims.iter().product();
            let values: Vec<i64> = (0..numel as u64)
                .map(|i| (seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(17) as i64)
                .collect();
            let x = match dtype {
                0 => Tensor::from_i8(dims.clone(), values.iter().map(|&v| v as i8).collect()),
                1 => Tensor::from_i16(dims.clone(), values.iter().map(|&v| v as i16).collect()),
                _ => Tensor::from_i32(dims.clone(), values.iter().map(|&v| v as i32).collect()),
            }
            .unwrap();
            let mut perm: Vec<usize> = (0..dims.len()).collect();
            let mut s = seed;
            for i in (1..perm.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                perm.swap(i, (s >> 33) as usize % (i + 1));
            }
            let op = Op::Transpose { perm: perm.clone() };
            let ty = TensorType::new(x.dtype(), perm.iter().map(|&p| dims[p]).collect::<Vec<_>>());
            let want = reference::execute(&op, &[&x], &ty).unwrap();
            prop_assert_eq!(transpose(&x, &perm).unwrap(), want);
        }

        #[test]
        fn byte_blocks_transpose(rows in 0usize..70, cols in 0usize..70, seed in any::<u8>()) {
            let src: Vec<i8> = (0..rows * cols).map(|i| (i as u8).wrapping_mul(seed | 1) as i8).collect();
            let mut dst = vec![0i8; rows * cols];
            transpose_2d(&src, rows, cols, &mut dst);
            for r in 0..rows {
                for c in 0..cols {
                    prop_assert_eq!(dst[c * rows + r], src[r * cols + c]);
                }
            }
        }
    }
}
