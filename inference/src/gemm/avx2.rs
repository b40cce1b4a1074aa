//! The AVX2 path: `w + 128` zero-extended and `x` sign-extended to `i16`, multiplied and
//! summed in pairs by `vpmaddwd`. Exact: a pair is at most `2 · 255 · 128` in magnitude, far
//! from `vpmaddwd`'s one overflow (`2 · (−32768)²`), and the `i32` sums wrap. (`vpmaddubsw`
//! would saturate to `i16`, so it is not used.)
//!
//! One register holds 4 columns × 2 pairs of a group; a tile is `MR` rows × 8 or 16
//! columns, and its pairs are folded into columns once, after the whole depth.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{Blocking, GROUP, LINE, Output, PANEL, PackedMatrix, for_each_block, wrapping_sum};

/// Rows of the widest tile (one half panel: 6 × 2 accumulators + 2 of `w` + 1 of `x`).
const MR: usize = 6;
/// Rows of the tiles for thin products (decode, `m ≤ 2`), which cover whole panels.
const MR_THIN: usize = 2;
/// Columns of one register: 4 columns × 4 bytes of a group.
const QUAD: usize = 4;
/// Columns of a half panel.
const HALF: usize = PANEL / 2;

/// Whether this CPU can run this path.
pub(super) fn is_supported() -> bool {
    is_x86_feature_detected!("avx2")
}

/// [`super::matmul`] on this path; shapes are checked and non-empty.
///
/// # Safety
/// The CPU must support this path ([`is_supported`]).
pub(super) unsafe fn matmul(x: &[i8], m: usize, w: &PackedMatrix, out: &mut [i32]) {
    let bias: Vec<i32> = x
        .chunks_exact(w.k)
        // SAFETY: the caller guarantees the CPU features.
        .map(|row| unsafe { row_sum(row) }.wrapping_mul(-128))
        .collect();
    // `x` widened to i16 once, zero-padded to whole groups, so a group is one broadcast.
    let stride = w.groups * GROUP;
    let mut wide = vec![0i16; m * stride];
    for (dst, src) in wide.chunks_exact_mut(stride).zip(x.chunks_exact(w.k)) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = i16::from(s);
        }
    }
    let thin = m <= MR_THIN;
    let blocking = Blocking {
        unit_rows: if thin { MR_THIN } else { MR },
        unit_panels: 1,
        macs_per_micro: 1 << 17,
    };
    for_each_block(m, w, out, blocking, |rows, panels, output| {
        // SAFETY: the caller guarantees the CPU features; `for_each_block` hands out
        // in-bounds, disjoint blocks of `out`.
        unsafe { block(&wide, &bias, w, rows, panels, output, thin) }
    });
}

/// The operands of one tile. Pointers are to the tile's first row / column / output.
struct Tile {
    x: *const i16,
    x_stride: usize,
    bias: *const i32,
    /// Bytes of the tile's first column in the panel's first line.
    w: *const u8,
    groups: usize,
    out: *mut i32,
    out_stride: usize,
    /// Valid output columns from the tile's first column on (may exceed the tile's width).
    cols: usize,
}

type TileFn = unsafe fn(&Tile);

/// `TILES[mr - 1]`: half-panel tiles.
const TILES: [TileFn; MR] = [
    tile::<1, 1>,
    tile::<2, 1>,
    tile::<3, 1>,
    tile::<4, 1>,
    tile::<5, 1>,
    tile::<6, 1>,
];
/// `THIN_TILES[mr - 1]`: whole-panel tiles.
const THIN_TILES: [TileFn; MR_THIN] = [tile::<1, 2>, tile::<2, 2>];

/// Computes `rows × panels` of the output.
///
/// # Safety
/// The CPU must support AVX2; `x` holds the product's rows widened to `i16` with stride
/// `w.groups * GROUP`, `bias` one value per row, `rows` and `panels` are within the product
/// and no other thread writes this block of `out`.
#[target_feature(enable = "avx2")]
unsafe fn block(
    x: &[i16],
    bias: &[i32],
    w: &PackedMatrix,
    rows: Range<usize>,
    panels: Range<usize>,
    out: Output,
    thin: bool,
) {
    let x_stride = w.groups * GROUP;
    assert!(rows.end * x_stride <= x.len() && rows.end <= bias.len() && panels.end <= w.panels);
    let (mr_max, width) = if thin { (MR_THIN, PANEL) } else { (MR, HALF) };
    for p in panels {
        let wp = w.panel_bytes(p);
        for start in (0..PANEL).step_by(width) {
            let col = p * PANEL + start;
            if col >= out.n {
                break;
            }
            let mut r = rows.start;
            while r < rows.end {
                let mr = super::balanced_tile_rows(rows.end - r, mr_max);
                let tile = Tile {
                    x: x[r * x_stride..].as_ptr(),
                    x_stride,
                    bias: bias[r..].as_ptr(),
                    w: wp[start * GROUP..].as_ptr(),
                    groups: w.groups,
                    // SAFETY: `r < m` and `col < n`, so the offset is inside `out`.
                    out: unsafe { out.ptr.add(r * out.n + col) },
                    out_stride: out.n,
                    cols: out.n - col,
                };
                let f = if thin {
                    THIN_TILES[mr - 1]
                } else {
                    TILES[mr - 1]
                };
                // SAFETY: `mr` rows from `r` and the panel's columns from `start` are in
                // bounds (asserted above); the CPU features are the caller's promise.
                unsafe { f(&tile) };
                r += mr;
            }
        }
    }
}

/// One tile of `MR` rows × `H` half panels over the whole depth.
///
/// # Safety
/// The CPU must support AVX2; `t.x` has `MR` rows of `t.groups * 4` values with stride
/// `t.x_stride`, `t.bias` `MR` values, `t.w` `t.groups` lines of at least `8H` columns
/// (stride 64 bytes), and `t.out` `MR` rows (stride `t.out_stride`) of
/// `min(t.cols, 8H)` writable values.
#[target_feature(enable = "avx2")]
unsafe fn tile<const MR: usize, const H: usize>(t: &Tile) {
    // Registers per half panel: 2; `acc[r][q]` covers columns `4q..4q + 4`.
    let mut acc = [[[_mm256_setzero_si256(); 2]; H]; MR];
    for g in 0..t.groups {
        let mut wv = [[_mm256_setzero_si256(); 2]; H];
        for (q, v) in wv.as_flattened_mut().iter_mut().enumerate() {
            // SAFETY: 16 bytes (4 columns) of line `g < groups`, inside the panel.
            *v = _mm256_cvtepu8_epi16(unsafe {
                _mm_loadu_si128(t.w.add(g * LINE + q * QUAD * GROUP).cast())
            });
        }
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: values `4g..4g + 4` of row `r < MR`, inside the padded row.
            let xv = unsafe {
                t.x.add(r * t.x_stride + g * GROUP)
                    .cast::<i64>()
                    .read_unaligned()
            };
            let xv = _mm256_set1_epi64x(xv);
            for (a, &wv) in row.as_flattened_mut().iter_mut().zip(wv.as_flattened()) {
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(wv, xv));
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: `r < MR` values of `bias`.
        let bias = _mm256_set1_epi32(unsafe { *t.bias.add(r) });
        for (h, &[a0, a1]) in row.iter().enumerate() {
            // Lanes `2c, 2c + 1` of a register are the two pair sums of its column `c`.
            let sums = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a0, a1), 0b11_01_10_00);
            let sums = _mm256_add_epi32(sums, bias);
            let col = h * HALF;
            // SAFETY: row `r < MR`, columns `col..col + 8` of the tile, cut to `cols`.
            unsafe {
                let dst = t.out.add(r * t.out_stride + col);
                if col + HALF <= t.cols {
                    _mm256_storeu_si256(dst.cast(), sums);
                } else if col < t.cols {
                    let mut tmp = [0i32; HALF];
                    _mm256_storeu_si256(tmp.as_mut_ptr().cast(), sums);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, t.cols - col);
                }
            }
        }
    }
}

/// `Σ row` in wrapping `i32`: bytes summed in pairs by `vpmaddubsw` with ones (at most
/// `2 · 128` in magnitude: no saturation), the pairs by `vpmaddwd`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn row_sum(row: &[i8]) -> i32 {
    let (ones8, ones16) = (_mm256_set1_epi8(1), _mm256_set1_epi16(1));
    let mut acc = _mm256_setzero_si256();
    let mut chunks = row.chunks_exact(32);
    for chunk in &mut chunks {
        // SAFETY: `chunk` is 32 bytes.
        let bytes = unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) };
        acc = _mm256_add_epi32(
            acc,
            _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, bytes), ones16),
        );
    }
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` is 32 bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
    lanes
        .iter()
        .fold(wrapping_sum(chunks.remainder()), |total, &lane| {
            total.wrapping_add(lane)
        })
}
