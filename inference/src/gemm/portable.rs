//! The portable path: plain Rust over the packed layout, shaped for the auto-vectorizer:
//! 16 independent column sums per row, and each column's 4 bytes taken as one word whose
//! even and odd bytes are 16-bit lanes (what SSE2's `pmaddwd` multiplies and adds in pairs).

use std::ops::Range;

use super::{
    Blocking, GROUP, LINE, Output, PANEL, PackedMatrix, for_each_block, padded_rows, row_biases,
};

/// Rows of one tile.
const MR: usize = 4;

/// [`super::matmul`] on this path; shapes are checked and non-empty.
pub(super) fn matmul(x: &[i8], m: usize, w: &PackedMatrix, out: &mut [i32]) {
    let bias = row_biases(x, w.k);
    let x = padded_rows(x, w.k, w.groups);
    let blocking = Blocking {
        unit_rows: MR,
        unit_panels: 1,
        macs_per_micro: 1 << 14,
    };
    for_each_block(m, w, out, blocking, |rows, panels, output| {
        block(&x, &bias, w, rows, panels, output)
    });
}

/// Computes `rows × panels` of the output; `for_each_block` guarantees that the block is
/// inside `out` and that no other thread writes it.
fn block(
    x: &[i8],
    bias: &[i32],
    w: &PackedMatrix,
    rows: Range<usize>,
    panels: Range<usize>,
    out: Output,
) {
    let stride = w.groups * GROUP;
    for p in panels {
        let wp = &w.panel_bytes(p)[..w.groups * LINE];
        let cols = (w.n - p * PANEL).min(PANEL);
        let mut r = rows.start;
        while r < rows.end {
            let mr = (rows.end - r).min(MR);
            let mut acc = [[0i32; PANEL]; MR];
            let (x, bias) = (&x[r * stride..], &bias[r..]);
            match mr {
                1 => tile::<1>(x, stride, bias, wp, &mut acc),
                2 => tile::<2>(x, stride, bias, wp, &mut acc),
                3 => tile::<3>(x, stride, bias, wp, &mut acc),
                _ => tile::<MR>(x, stride, bias, wp, &mut acc),
            }
            for (i, sums) in acc[..mr].iter().enumerate() {
                let offset = (r + i) * out.n + p * PANEL;
                // SAFETY: row `r + i < m` and columns `16p..16p + cols` (`cols ≤ n - 16p`) are
                // inside `out`, and only this block writes them.
                let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr.add(offset), cols) };
                dst.copy_from_slice(&sums[..cols]);
            }
            r += mr;
        }
    }
}

/// `acc[r][c] = bias[r] + Σ_t x[r][t] · (w[c][t] + 128)` for the first `R` rows and one panel.
#[inline(always)]
fn tile<const R: usize>(
    x: &[i8],
    stride: usize,
    bias: &[i32],
    wp: &[u8],
    acc: &mut [[i32; PANEL]; MR],
) {
    for (row, &b) in acc[..R].iter_mut().zip(bias) {
        *row = [b; PANEL];
    }
    for (g, line) in wp.chunks_exact(LINE).enumerate() {
        // A column's 4 bytes as one word; bytes 0, 2 and 1, 3 as 16-bit halves (the shape of
        // `pmaddwd`).
        let words: [u32; PANEL] = std::array::from_fn(|c| {
            u32::from_le_bytes(line[c * GROUP..][..GROUP].try_into().unwrap())
        });
        let even = words.map(|v| v & 0x00ff_00ff);
        let odd = words.map(|v| (v >> 8) & 0x00ff_00ff);
        for (r, row) in acc[..R].iter_mut().enumerate() {
            let xs = &x[r * stride + g * GROUP..][..GROUP];
            let [x0, x1, x2, x3] = [xs[0], xs[1], xs[2], xs[3]].map(i32::from);
            for ((sum, &e), &o) in row.iter_mut().zip(&even).zip(&odd) {
                // Bytes are at most 255 and |x| at most 128: the four products fit in i32.
                let dot = (e & 0xffff) as i32 * x0
                    + (e >> 16) as i32 * x2
                    + (o & 0xffff) as i32 * x1
                    + (o >> 16) as i32 * x3;
                *sum = sum.wrapping_add(dot);
            }
        }
    }
}
