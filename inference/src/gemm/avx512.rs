//! The AVX-512 VNNI path: `vpdpbusd` (the wrapping form, never the saturating
//! `vpdpbusds`) on 512-bit registers, one register per 16-column panel.
//!
//! One tile is `MR` rows of `x` × `NP` panels: `MR · NP` accumulators, `NP` registers of
//! `w + 128` (unsigned) and one broadcast dword of `x` (signed), per group of 4 `k`.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{Blocking, GROUP, LINE, Output, PANEL, PackedMatrix, for_each_block, padded_rows};

/// Rows of the widest tile.
const MR: usize = 8;
/// Panels of the widest tile: 8 × 3 = 24 accumulators + 3 of `w` + 1 of `x` (of 32).
const NP: usize = 3;
/// Rows of the tiles for thin products (decode, `m ≤ 2`).
const MR_THIN: usize = 2;
/// Panels of the thin tiles: enough independent accumulators to hide `vpdpbusd` latency.
const NP_THIN: usize = 8;

/// Whether this CPU can run this path.
pub(super) fn is_supported() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
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
    let x = padded_rows(x, w.k, w.groups);
    let unit = if m <= MR_THIN {
        (MR_THIN, NP_THIN)
    } else {
        (MR, NP)
    };
    let blocking = Blocking {
        unit_rows: unit.0,
        unit_panels: unit.1,
        macs_per_micro: 1 << 19,
    };
    for_each_block(m, w, out, blocking, |rows, panels, output| {
        // SAFETY: the caller guarantees the CPU features; `for_each_block` hands out
        // in-bounds, disjoint blocks of `out`.
        unsafe { block(&x, &bias, w, rows, panels, output, unit) }
    });
}

/// The operands of one tile. Pointers are to the tile's first row / panel / output.
struct Tile {
    x: *const i8,
    x_stride: usize,
    bias: *const i32,
    w: *const u8,
    panel_stride: usize,
    groups: usize,
    out: *mut i32,
    out_stride: usize,
    /// Valid output columns from the tile's first column on (may exceed the tile's width).
    cols: usize,
}

type TileFn = unsafe fn(&Tile);

macro_rules! tiles {
    ($mr:literal; $($np:literal),*) => { [$(tile::<$mr, $np> as TileFn),*] };
}

/// `TILES[mr - 1][np - 1]`.
const TILES: [[TileFn; NP]; MR] = [
    tiles!(1; 1, 2, 3),
    tiles!(2; 1, 2, 3),
    tiles!(3; 1, 2, 3),
    tiles!(4; 1, 2, 3),
    tiles!(5; 1, 2, 3),
    tiles!(6; 1, 2, 3),
    tiles!(7; 1, 2, 3),
    tiles!(8; 1, 2, 3),
];

/// `THIN_TILES[mr - 1][np - 1]`.
const THIN_TILES: [[TileFn; NP_THIN]; MR_THIN] = [
    tiles!(1; 1, 2, 3, 4, 5, 6, 7, 8),
    tiles!(2; 1, 2, 3, 4, 5, 6, 7, 8),
];

/// Computes `rows × panels` of the output.
///
/// # Safety
/// The CPU must support this path; `x` holds the product's rows with stride
/// `w.groups * GROUP`, `bias` one value per row, `rows` and `panels` are within the product
/// and no other thread writes this block of `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn block(
    x: &[i8],
    bias: &[i32],
    w: &PackedMatrix,
    rows: Range<usize>,
    panels: Range<usize>,
    out: Output,
    (mr_max, np_max): (usize, usize),
) {
    let x_stride = w.groups * GROUP;
    assert!(rows.end * x_stride <= x.len() && rows.end <= bias.len() && panels.end <= w.panels);
    let mut p = panels.start;
    while p < panels.end {
        let np = (panels.end - p).min(np_max);
        let wp = w.panel_bytes(p);
        let mut r = rows.start;
        while r < rows.end {
            let mr = (rows.end - r).min(mr_max);
            let tile = Tile {
                x: x[r * x_stride..].as_ptr(),
                x_stride,
                bias: bias[r..].as_ptr(),
                w: wp.as_ptr(),
                panel_stride: w.groups * LINE,
                groups: w.groups,
                // SAFETY: `r < m` and `p * PANEL < n`, so the offset is inside `out`.
                out: unsafe { out.ptr.add(r * out.n + p * PANEL) },
                out_stride: out.n,
                cols: out.n - p * PANEL,
            };
            let f = if mr_max == MR_THIN {
                THIN_TILES[mr - 1][np - 1]
            } else {
                TILES[mr - 1][np - 1]
            };
            // SAFETY: `mr` rows from `r` and `np` panels from `p` are in bounds (asserted
            // above); the CPU features are the caller's promise.
            unsafe { f(&tile) };
            r += mr;
        }
        p += np;
    }
}

/// One `MR × NP`-panel tile over the whole depth.
///
/// # Safety
/// The CPU must support this path; `t.x` has `MR` rows of `t.groups * 4` bytes with stride
/// `t.x_stride`, `t.bias` `MR` values, `t.w` `NP` panels of `t.groups` lines, and `t.out`
/// `MR` rows (stride `t.out_stride`) of `min(t.cols, NP * 16)` writable values.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile<const MR: usize, const NP: usize>(t: &Tile) {
    let mut acc = [[_mm512_setzero_si512(); NP]; MR];
    for (r, row) in acc.iter_mut().enumerate() {
        // SAFETY: `r < MR` values of `bias`.
        let bias = _mm512_set1_epi32(unsafe { *t.bias.add(r) });
        *row = [bias; NP];
    }
    for g in 0..t.groups {
        let mut wv = [_mm512_setzero_si512(); NP];
        for (p, v) in wv.iter_mut().enumerate() {
            // SAFETY: line `g < groups` of panel `p < NP`.
            *v = unsafe { _mm512_loadu_si512(t.w.add(p * t.panel_stride + g * LINE).cast()) };
        }
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: bytes `4g..4g + 4` of row `r < MR`, inside the padded row.
            let xv = unsafe {
                t.x.add(r * t.x_stride + g * GROUP)
                    .cast::<i32>()
                    .read_unaligned()
            };
            let xv = _mm512_set1_epi32(xv);
            for (a, &wv) in row.iter_mut().zip(&wv) {
                *a = _mm512_dpbusd_epi32(*a, wv, xv);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (p, &a) in row.iter().enumerate() {
            let col = p * PANEL;
            // SAFETY: row `r < MR`, columns `col..col + 16` (masked to `cols`) of the tile.
            unsafe {
                let dst = t.out.add(r * t.out_stride + col);
                if col + PANEL <= t.cols {
                    _mm512_storeu_si512(dst.cast(), a);
                } else if col < t.cols {
                    let mask = ((1u32 << (t.cols - col)) - 1) as u16;
                    _mm512_mask_storeu_epi32(dst, mask, a);
                }
            }
        }
    }
}

/// `Σ row` in wrapping `i32`: `vpdpbusd` of the bytes with ones.
///
/// # Safety
/// The CPU must support this path.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn row_sum(row: &[i8]) -> i32 {
    let ones = _mm512_set1_epi8(1);
    let mut acc = _mm512_setzero_si512();
    let mut chunks = row.chunks_exact(64);
    for chunk in &mut chunks {
        // SAFETY: `chunk` is 64 bytes.
        acc = _mm512_dpbusd_epi32(acc, ones, unsafe {
            _mm512_loadu_si512(chunk.as_ptr().cast())
        });
    }
    let tail = chunks.remainder();
    let mask = (1u64 << tail.len()) - 1;
    // SAFETY: the mask covers the `tail.len() < 64` bytes of `tail` only; masked-off bytes
    // are not accessed.
    let tail = unsafe { _mm512_maskz_loadu_epi8(mask, tail.as_ptr()) };
    _mm512_reduce_add_epi32(_mm512_dpbusd_epi32(acc, ones, tail))
}
