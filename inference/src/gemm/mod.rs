//! The int8 matrix product at the heart of the engine: `out = x · wᵀ`, summed in wrapping
//! `i32`.
//!
//! Wrapping 32-bit addition is associative and commutative, so the result does not depend on
//! the order of the sum: every [`KernelPath`], every tiling and every thread count gives the
//! same bits, and any of them may serve as the reference for the others.
//!
//! # Layout
//! [`PackedMatrix`] stores `w[n][k]` once, in the layout of `vpdpbusd`: panels of
//! [`PANEL`] = 16 columns (rows of `w`); inside a panel, `k` goes in groups of
//! [`GROUP`] = 4, and one group of one panel is one 64-byte line holding
//! `w[j][4g..4g + 4]` for the panel's 16 columns `j`. Past the ragged edges the packed bytes
//! are 0, and so are the bytes that pad a row of `x` to whole groups: padding adds nothing.
//!
//! Each byte is stored as `w + 128`, an unsigned byte. `vpdpbusd` multiplies unsigned by
//! signed bytes, so the kernels take `w + 128` unsigned and `x` signed as it is, and
//! subtract the bias `128 · Σ_t x[i][t]` of each row of `x` (all wrapping):
//! `Σ x·(w + 128) − 128·Σ x = Σ x·w`. The AVX2 and portable paths use the same layout and
//! the same bias, with exact `i16 × i16 → i32` products instead of `vpdpbusd`.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

/// Columns of `w` (rows of the `[n][k]` matrix) in one panel of a [`PackedMatrix`].
pub const PANEL: usize = 16;
/// Depth (`k`) of one group: the 4 bytes that one `vpdpbusd` lane sums.
pub const GROUP: usize = 4;
/// Bytes of one group of one panel: one cache line.
const LINE: usize = PANEL * GROUP;

/// Parallel work must be worth the hand-off: a product goes to several threads only when it
/// would take at least this long on one. From inside the rayon pool the hand-off costs about
/// a microsecond; from outside, the caller has to wake a sleeping worker (tens of µs).
const PARALLEL_MIN_MICROS_IN_POOL: usize = 1;
/// See [`PARALLEL_MIN_MICROS_IN_POOL`].
const PARALLEL_MIN_MICROS_OUTSIDE_POOL: usize = 32;
/// Bytes of `w` from which packing is split across threads.
const PARALLEL_MIN_PACK_BYTES: usize = 1 << 20;
/// Target size of the slice of `w` that one block of work streams through (fits L2).
const BLOCK_W_BYTES: usize = 256 << 10;
/// Most rows of `x` in one block of work.
const BLOCK_ROWS: usize = 64;
/// Blocks of work per thread, for load balance.
const BLOCKS_PER_THREAD: usize = 4;

/// An implementation of the product. All paths give identical results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelPath {
    /// Plain Rust, left to the compiler's auto-vectorizer; runs everywhere.
    Portable,
    /// x86-64 AVX2: bytes widened to `i16`, then `vpmaddwd` (exact, no saturation).
    Avx2,
    /// x86-64 AVX-512 VNNI: `vpdpbusd` on 512-bit registers.
    Avx512Vnni,
}

impl KernelPath {
    /// The fastest path this CPU supports (runtime detection).
    pub fn detect() -> Self {
        if Self::Avx512Vnni.is_supported() {
            Self::Avx512Vnni
        } else if Self::Avx2.is_supported() {
            Self::Avx2
        } else {
            Self::Portable
        }
    }

    /// Every path this CPU can run, [`KernelPath::Portable`] first, fastest last.
    pub fn available() -> Vec<Self> {
        [Self::Portable, Self::Avx2, Self::Avx512Vnni]
            .into_iter()
            .filter(|path| path.is_supported())
            .collect()
    }

    /// Whether this CPU has the instructions this path needs.
    pub fn is_supported(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => avx2::is_supported(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Vnni => avx512::is_supported(),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Avx2 | Self::Avx512Vnni => false,
        }
    }

    /// A short lowercase name: `portable`, `avx2` or `avx512-vnni`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2",
            Self::Avx512Vnni => "avx512-vnni",
        }
    }
}

/// One packed line: a group of 4 `k` of one 16-column panel, aligned to a cache line so
/// that no 64-byte load splits.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; LINE]);

/// The right-hand matrix `w[n][k]` (`n` rows of `k` bytes), packed once into the kernels'
/// panel layout (see the [module docs](self)) and reused by every product.
///
/// Memory: `⌈n/16⌉·16 × ⌈k/4⌉·4` bytes plus `4n` bytes of row sums.
#[derive(Clone)]
pub struct PackedMatrix {
    n: usize,
    k: usize,
    /// `⌈k / GROUP⌉`.
    groups: usize,
    /// `⌈n / PANEL⌉`.
    panels: usize,
    /// Panel `p`, group `g` is line `p * groups + g`; byte `4c + q` of it is
    /// `w[16p + c][4g + q] + 128` (as `u8`), or 0 past the edges.
    lines: Vec<Line>,
    row_sums: Vec<i32>,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("n", &self.n)
            .field("k", &self.k)
            .finish_non_exhaustive()
    }
}

impl PackedMatrix {
    /// Packs `w`, `n` rows of `k` bytes, row-major.
    ///
    /// Costs one pass over `w`; the result takes about `n·k` bytes.
    ///
    /// # Panics
    /// If `w.len() != n * k`.
    pub fn pack(w: &[i8], n: usize, k: usize) -> Self {
        assert_eq!(
            Some(w.len()),
            n.checked_mul(k),
            "w has {} bytes, not n * k = {n} * {k}",
            w.len()
        );
        let groups = k.div_ceil(GROUP);
        let panels = n.div_ceil(PANEL);
        let mut lines = vec![Line([0; LINE]); panels * groups];
        let mut row_sums = vec![0i32; n];
        if k > 0 {
            for (sum, row) in row_sums.iter_mut().zip(w.chunks_exact(k)) {
                *sum = wrapping_sum(row);
            }
            // One panel at a time, each line written whole: 16 rows of `w` read in step.
            let pack_panel = |(panel_lines, rows): (&mut [Line], &[i8])| {
                for (g, line) in panel_lines.iter_mut().enumerate() {
                    for (slot, row) in line.0.chunks_exact_mut(GROUP).zip(rows.chunks_exact(k)) {
                        let bytes = &row[g * GROUP..k.min((g + 1) * GROUP)];
                        for (slot, &b) in slot.iter_mut().zip(bytes) {
                            *slot = (b as u8) ^ 0x80;
                        }
                    }
                }
            };
            if w.len() >= PARALLEL_MIN_PACK_BYTES {
                lines
                    .par_chunks_mut(groups)
                    .zip(w.par_chunks(PANEL * k))
                    .for_each(pack_panel);
            } else {
                lines
                    .chunks_mut(groups)
                    .zip(w.chunks(PANEL * k))
                    .for_each(pack_panel);
            }
        }
        Self {
            n,
            k,
            groups,
            panels,
            lines,
            row_sums,
        }
    }

    /// Rows of `w`: columns of the product.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Columns of `w`: the depth of the product.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The wrapping `i32` sum of each row of `w` (for zero points).
    pub fn row_sums(&self) -> &[i32] {
        &self.row_sums
    }

    /// Bytes held by the packed matrix (panels and row sums).
    pub fn packed_bytes(&self) -> usize {
        self.lines.len() * LINE + self.row_sums.len() * 4
    }

    /// The packed bytes of panel `p` onwards, as one slice.
    fn panel_bytes(&self, p: usize) -> &[u8] {
        let lines = &self.lines[p * self.groups..];
        // SAFETY: `Line` is `repr(C)` over `[u8; 64]` with no padding (size 64, align 64),
        // so `lines` is `lines.len() * 64` initialized bytes.
        unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<u8>(), lines.len() * LINE) }
    }
}

/// `out[i*n + j] = Σ_t x[i*k + t] · w[j*k + t]` in wrapping `i32`, on the fastest path
/// ([`KernelPath::detect`]). `x` is `m` rows of `k` bytes, row-major; `out` is `m × n`,
/// row-major; `(n, k)` are `w`'s.
///
/// # Panics
/// If `x.len() != m * w.k()` or `out.len() != m * w.n()`.
pub fn matmul(x: &[i8], m: usize, w: &PackedMatrix, out: &mut [i32]) {
    matmul_with(KernelPath::detect(), x, m, w, out);
}

/// [`matmul`] on the given path. A path this CPU lacks ([`KernelPath::is_supported`])
/// runs [`KernelPath::Portable`] instead, with the same result.
///
/// # Panics
/// If `x.len() != m * w.k()` or `out.len() != m * w.n()`.
pub fn matmul_with(path: KernelPath, x: &[i8], m: usize, w: &PackedMatrix, out: &mut [i32]) {
    let (n, k) = (w.n, w.k);
    assert_eq!(
        Some(x.len()),
        m.checked_mul(k),
        "x has {} bytes, not m * k = {m} * {k}",
        x.len()
    );
    assert_eq!(
        Some(out.len()),
        m.checked_mul(n),
        "out has {} values, not m * n = {m} * {n}",
        out.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.fill(0);
        return;
    }
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the guard checked the CPU features.
        KernelPath::Avx512Vnni if avx512::is_supported() => unsafe { avx512::matmul(x, m, w, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the guard checked the CPU features.
        KernelPath::Avx2 if avx2::is_supported() => unsafe { avx2::matmul(x, m, w, out) },
        _ => portable::matmul(x, m, w, out),
    }
}

/// `x` with each row padded with zeros to a whole number of groups (borrowed when `k` is
/// already a multiple of [`GROUP`]); the row stride is `groups * GROUP`.
fn padded_rows(x: &[i8], k: usize, groups: usize) -> Cow<'_, [i8]> {
    let stride = groups * GROUP;
    if stride == k {
        return Cow::Borrowed(x);
    }
    let mut padded = vec![0i8; x.len() / k * stride];
    for (dst, src) in padded.chunks_exact_mut(stride).zip(x.chunks_exact(k)) {
        dst[..k].copy_from_slice(src);
    }
    Cow::Owned(padded)
}

/// The bias of each row of `x`: `−128 · Σ_t x[i][t]`, wrapping; it undoes the `+128` of the
/// packed `w`.
fn row_biases(x: &[i8], k: usize) -> Vec<i32> {
    x.chunks_exact(k)
        .map(|row| wrapping_sum(row).wrapping_mul(-128))
        .collect()
}

/// `Σ row` in wrapping `i32`. Vectorizable: 32 lanes of `i16`, each summing at most 256
/// bytes before it is widened, so it cannot overflow (`256 · −128 = i16::MIN`).
fn wrapping_sum(row: &[i8]) -> i32 {
    const LANES: usize = 32;
    let mut total = 0i32;
    for run in row.chunks(LANES * 256) {
        let mut lanes = [0i16; LANES];
        let mut chunks = run.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (lane, &b) in lanes.iter_mut().zip(chunk) {
                *lane = lane.wrapping_add(i16::from(b));
            }
        }
        for (lane, &b) in lanes.iter_mut().zip(chunks.remainder()) {
            *lane = lane.wrapping_add(i16::from(b));
        }
        total = lanes
            .iter()
            .fold(total, |acc, &lane| acc.wrapping_add(i32::from(lane)));
    }
    total
}

/// The output matrix, shared by the blocks of one product; each writes only its own
/// rows × columns.
#[derive(Clone, Copy)]
struct Output {
    ptr: *mut i32,
    /// Row stride (`n`) and the number of valid columns.
    n: usize,
}

// SAFETY: `Output` is only handed to blocks that write disjoint elements of one `&mut [i32]`
// borrowed for the whole product (see `for_each_block`).
unsafe impl Send for Output {}
// SAFETY: as above.
unsafe impl Sync for Output {}

/// Rows of the next tile when `left` rows remain and tiles hold at most `max`: the rows
/// shared evenly over the fewest tiles (9 rows in tiles of 8 run as 5 + 4, not 8 + 1, so
/// that no tile is too thin to hide the multiply-add latency). Each output element sums
/// the same products in the same order whatever the tiling.
fn balanced_tile_rows(left: usize, max: usize) -> usize {
    left.div_ceil(left.div_ceil(max).max(1)).min(max)
}

/// How a path splits its work: the tile it computes best, and its speed on one thread.
#[derive(Clone, Copy)]
struct Blocking {
    /// Block edges are multiples of these (except at the ends), so kernels can use their
    /// widest tiles.
    unit_rows: usize,
    unit_panels: usize,
    /// Rough single-thread multiply-accumulates per microsecond, to judge when threads pay.
    macs_per_micro: usize,
}

/// Splits the product into blocks of rows × panels and runs `block` on each, on several
/// threads when the product is big enough. The result does not depend on the split.
fn for_each_block(
    m: usize,
    w: &PackedMatrix,
    out: &mut [i32],
    blocking: Blocking,
    block: impl Fn(Range<usize>, Range<usize>, Output) + Sync,
) {
    let Blocking {
        unit_rows,
        unit_panels,
        macs_per_micro,
    } = blocking;
    let output = Output {
        ptr: out.as_mut_ptr(),
        n: w.n,
    };
    let panels = w.panels;
    let threads = crate::row_parallel::kernel_threads();
    let min_micros = if rayon::current_thread_index().is_some() {
        PARALLEL_MIN_MICROS_IN_POOL
    } else {
        PARALLEL_MIN_MICROS_OUTSIDE_POOL
    };
    let macs = m.saturating_mul(w.n).saturating_mul(w.k);
    if threads <= 1 || macs < min_micros.saturating_mul(macs_per_micro) {
        block(0..m, 0..panels, output);
        return;
    }
    let round_up = |v: usize, unit: usize| v.div_ceil(unit) * unit;
    let mut block_panels = round_up((BLOCK_W_BYTES / (w.groups * LINE)).max(1), unit_panels)
        .min(round_up(panels, unit_panels));
    let mut block_rows = round_up(m.min(BLOCK_ROWS), unit_rows);
    let count = |rows: usize, cols: usize| m.div_ceil(rows) * panels.div_ceil(cols);
    let target = threads * BLOCKS_PER_THREAD;
    while count(block_rows, block_panels) < target && block_panels > unit_panels {
        block_panels = round_up(block_panels / 2, unit_panels);
    }
    while count(block_rows, block_panels) < target && block_rows > unit_rows {
        block_rows = round_up(block_rows / 2, unit_rows);
    }
    let row_blocks = m.div_ceil(block_rows);
    let blocks = row_blocks * panels.div_ceil(block_panels);
    // Blocks go to whoever asks next, the calling thread included, so nobody waits for a
    // worker that is slow to wake up (it finds the work done).
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let b = next.fetch_add(1, Ordering::Relaxed);
            if b >= blocks {
                break;
            }
            let (pb, rb) = (b / row_blocks, b % row_blocks);
            let rows = rb * block_rows..((rb + 1) * block_rows).min(m);
            let cols = pb * block_panels..((pb + 1) * block_panels).min(panels);
            block(rows, cols, output);
        }
    };
    rayon::in_place_scope(|scope| {
        for _ in 1..threads.min(blocks) {
            scope.spawn(|_| work());
        }
        work();
    });
}

#[cfg(test)]
mod tests {
    use super::balanced_tile_rows;

    /// The tiles `balanced_tile_rows` cuts `rows` into.
    fn tiles(mut rows: usize, max: usize) -> Vec<usize> {
        let mut out = Vec::new();
        while rows > 0 {
            let mr = balanced_tile_rows(rows, max);
            out.push(mr);
            rows -= mr;
        }
        out
    }

    #[test]
    fn tiles_share_rows_evenly_over_the_fewest_tiles() {
        assert_eq!(tiles(9, 8), [5, 4]);
        assert_eq!(tiles(18, 8), [6, 6, 6]);
        assert_eq!(tiles(17, 8), [6, 6, 5]);
        assert_eq!(tiles(16, 8), [8, 8]);
        assert_eq!(tiles(1, 8), [1]);
        assert_eq!(tiles(3, 2), [2, 1]);
        for max in 1..=8 {
            for rows in 1..100 {
                let t = tiles(rows, max);
                assert_eq!(t.len(), rows.div_ceil(max));
                assert!(t.iter().all(|&r| r >= 1 && r <= max));
                assert!(t.iter().max().unwrap() - t.iter().min().unwrap() <= 1);
            }
        }
    }
}
