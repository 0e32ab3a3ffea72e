//! Matrix products with quantized weights, `dst[m, n] = a[m, k] · w[n, k]ᵀ`, on the CPU.
//!
//! The weights stay in ggml's block layout as the GGUF file stores them (read in place from the
//! mapping). The activations are converted once per product into the weight type's dot format
//! ([`ActFormat`]: 8-bit blocks for the quantized types, f16 for F16), then every output is an
//! integer (or f16) dot product per block scaled in f32, as llama.cpp's CPU backend computes it.
//!
//! Work is cut into tiles of up to [`MAX_TILE`] weight rows × [`MAX_TILE`] activation rows, so
//! each unpacked weight block meets several activation rows while it is in registers (prompt
//! processing), and each activation block meets several weight rows (generation). Tiles are
//! grouped into panels that run on the current rayon pool (the engine's, sized to the physical
//! cores). Each weight type has its kernels in its own module: a portable one and SIMD ones
//! chosen at run time ([`Isa`]).
//!
//! Prompts (more than [`MAX_TILE`] activation rows) go by [`PanelFn`] where the type has one on
//! the tier: a task rewrites [`PANEL_ROWS`] weight rows once into a form whose vector lanes are
//! the rows (F16 widened to f32; 32-value blocks unpacked to byte codes), then runs every
//! activation row against it, so each instruction makes 16 rows' products and no weight is
//! unpacked twice. On two Zen 5 threads that took Q4_0 products with 512 activation rows from
//! ~175 to ~480 GMAC/s and F16 from ~120 to ~175; 32 rows rather than 16, so that F16's
//! broadcast activation value feeds two FMAs, took F16 on to ~225.

pub mod activations;
mod blocks32;
mod f16;
pub mod isa;
pub mod layout;
mod q4_0;
mod q4_k;
mod q5_0;
mod q6_k;
mod q8_0;
#[cfg(target_arch = "x86_64")]
mod super_blocks_x86;
#[cfg(test)]
pub(crate) mod testing;

use crate::QuantType;
pub use activations::ActFormat;
pub use isa::Isa;
pub use layout::{Layout, Weights};
use rayon::prelude::*;
use std::cell::RefCell;

/// Largest tile a kernel computes in one call: weight rows and activation rows.
pub const MAX_TILE: usize = 4;

/// How far ahead, in weight rows, the SIMD kernels prefetch the block they are reading: in
/// generation the weights stream from memory once per token, and the hardware prefetchers
/// alone leave a core at about half its streaming bandwidth. Two tiles ahead (about 9 KiB for
/// rows of 2048 4-bit values) lets a line arrive before it is needed; one tile ahead was too
/// close (Llama-3.2-1B Q4_K_M generation: 23 → 33 tokens/s on one thread).
#[cfg(target_arch = "x86_64")]
const PREFETCH_ROWS: usize = 2 * MAX_TILE;

/// One kernel call's operands.
pub struct Tile<'a> {
    /// `rows` weight rows (1..=MAX_TILE) in the weight type's blocks: block b of row r at
    /// `r * w_row_stride + b * w_block_stride` ([`Weights::strides`]).
    pub w: &'a [u8],
    pub w_row_stride: usize,
    pub w_block_stride: usize,
    pub rows: usize,
    /// `cols` activation rows (1..=MAX_TILE) in the type's [`ActFormat`], `a_row_bytes` apart.
    pub a: &'a [u8],
    pub a_row_bytes: usize,
    pub cols: usize,
    /// Blocks per row, the same count on both sides (k / block size; k for F16).
    pub blocks: usize,
}

impl Tile<'_> {
    /// The `len` bytes of block `b` of weight row `r` (the portable kernels).
    pub fn w_block(&self, r: usize, b: usize, len: usize) -> &[u8] {
        &self.w[r * self.w_row_stride + b * self.w_block_stride..][..len]
    }

    /// Bytes from a block of `block_bytes` to the same block [`PREFETCH_ROWS`] rows down, in
    /// either layout (a multiple of [`MAX_TILE`] rows spans whole groups).
    #[cfg(target_arch = "x86_64")]
    fn prefetch_distance(&self, block_bytes: usize) -> usize {
        PREFETCH_ROWS * self.blocks * block_bytes
    }

    /// Asserts that the tile's shape is 1..=MAX_TILE on both sides and that every block a SIMD
    /// kernel reads lies inside its slices: with it, raw-pointer reads of `w_block_bytes` at
    /// `r * w_row_stride + b * w_block_stride` (and of `a_block_bytes` at
    /// `c * a_row_bytes + b * a_block_bytes`) stay in bounds.
    pub fn check_bounds(&self, w_block_bytes: usize, a_block_bytes: usize) {
        // The last block's end: every other block starts at or before it.
        let end = |len: usize, count: usize, stride: usize, block_stride: usize, unit: usize| {
            let last = (count - 1)
                .checked_mul(stride)
                .zip((self.blocks - 1).checked_mul(block_stride))
                .and_then(|(row, block)| row.checked_add(block)?.checked_add(unit));
            last.is_some_and(|last| last <= len)
        };
        assert!(
            (1..=MAX_TILE).contains(&self.rows)
                && (1..=MAX_TILE).contains(&self.cols)
                && self.blocks > 0,
            "tile shape"
        );
        assert!(
            end(
                self.w.len(),
                self.rows,
                self.w_row_stride,
                self.w_block_stride,
                w_block_bytes
            ),
            "weight tile bounds"
        );
        assert!(
            a_block_bytes * self.blocks <= self.a_row_bytes
                && end(
                    self.a.len(),
                    self.cols,
                    self.a_row_bytes,
                    a_block_bytes,
                    a_block_bytes
                ),
            "activation tile bounds"
        );
    }
}

/// Writes `out[r][c]` = dot(weight row r, activation row c) for r < rows, c < cols.
pub type TileFn = fn(&Tile<'_>, &mut [[f32; MAX_TILE]; MAX_TILE]);

/// Weight rows of one prompt panel: two 512-bit vectors hold one f32 per row.
pub const PANEL_ROWS: usize = 32;

/// A prompt panel kernel's operands: [`PANEL_ROWS`] weight rows from `first` (fewer at the end
/// of the matrix) against every activation row.
pub struct Panel<'a> {
    pub w: Weights<'a>,
    /// A multiple of [`PANEL_ROWS`].
    pub first: usize,
    /// Activation rows in the type's [`ActFormat`], `a_row_bytes` apart.
    pub a: &'a [u8],
    pub a_row_bytes: usize,
}

impl Panel<'_> {
    /// Weight rows in the panel.
    pub fn rows(&self) -> usize {
        PANEL_ROWS.min(self.w.rows - self.first)
    }

    /// Asks for part `part` of `parts` of the next panel's weights, so that they come from
    /// memory while this panel computes (the panels a thread takes are mostly consecutive).
    /// A panel's rows are one run of bytes in either layout.
    #[cfg(target_arch = "x86_64")]
    pub fn prefetch_next(&self, part: usize, parts: usize) {
        let row_bytes = self.w.row_bytes();
        let start = (self.first + PANEL_ROWS).min(self.w.rows) * row_bytes;
        let end = (self.first + 2 * PANEL_ROWS).min(self.w.rows) * row_bytes;
        let chunk = (end - start).div_ceil(parts.max(1));
        let from = (start + part * chunk).min(end);
        for at in (from..(from + chunk).min(end)).step_by(64) {
            // SAFETY: `at` is inside the weights, and a prefetch never faults anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                    self.w.bytes.as_ptr().add(at).cast(),
                )
            };
        }
    }
}

/// Writes `out[c][r]` = dot(weight row `first + r`, activation row c) for every activation row
/// c < `out.len()` and r < [`Panel::rows`]. Such a kernel rewrites the panel's weights once into
/// the form its inner loop reads best, which pays off only over many activation rows: prompts.
pub type PanelFn = fn(&Panel<'_>, &mut [[f32; PANEL_ROWS]]);

/// A weight type's kernel for one instruction set.
#[derive(Clone, Copy)]
pub struct Kernel {
    pub act: ActFormat,
    pub tile: TileFn,
    /// For products with more than [`MAX_TILE`] activation rows, where the type has one on
    /// this tier.
    pub panel: Option<PanelFn>,
}

/// The kernel for weights of type `ty` on `isa` (the best variant that tier can run), or None for
/// the types without one (they use candle's block kernels) and for a tier this CPU lacks (its
/// instructions would fault).
pub fn kernel(ty: QuantType, isa: Isa) -> Option<Kernel> {
    if !Isa::available().contains(&isa) {
        return None;
    }
    let (act, tile, panel) = match ty {
        QuantType::F16 => (ActFormat::F16, f16::select(isa), f16::select_panel(isa)),
        QuantType::Q4_0 => (ActFormat::Q8, q4_0::select(isa), q4_0::select_panel(isa)),
        QuantType::Q5_0 => (ActFormat::Q8, q5_0::select(isa), q5_0::select_panel(isa)),
        QuantType::Q8_0 => (ActFormat::Q8, q8_0::select(isa), q8_0::select_panel(isa)),
        QuantType::Q4K => (ActFormat::Q8K, q4_k::select(isa), None),
        QuantType::Q6K => (ActFormat::Q8K, q6_k::select(isa), None),
        _ => return None,
    };
    Some(Kernel { act, tile, panel })
}

/// Activation rows per panel: one panel's converted activations (64 rows of up to 2 KiB per
/// thousand values) stay in L2 while the panel's weight rows stream past.
const COL_PANEL: usize = 64;
/// Weight rows per panel when there are many activation rows.
const ROW_PANEL: usize = 16;

/// `dst[m, n] = a[m, k] · w[n, k]ᵀ` with `w` the `n` rows of `k` values, on the best kernel for
/// this CPU, in parallel on the current rayon pool.
///
/// # Panics
/// If `w`'s type has no kernel ([`kernel`]) or is F16 in [`Layout::Interleaved`], `k` is not a
/// multiple of its block size, or a slice has the wrong length.
pub fn matmul(w: &Weights<'_>, a: &[f32], dst: &mut [f32]) {
    matmul_on(Isa::detect(), w, a, dst)
}

/// [`matmul`] on a given instruction set tier.
///
/// # Panics
/// As [`matmul`], and if this CPU lacks `isa` ([`Isa::available`]).
pub fn matmul_on(isa: Isa, w: &Weights<'_>, a: &[f32], dst: &mut [f32]) {
    let (ty, n, k) = (w.ty, w.rows, w.cols);
    let kernel = kernel(ty, isa).unwrap_or_else(|| panic!("no matmul kernel for {ty:?}"));
    let block = ty.block_size();
    assert!(
        k > 0 && k.is_multiple_of(block),
        "{ty:?}: k = {k} is not a multiple of {block}"
    );
    assert!(
        block > 1 || w.layout == Layout::Rows,
        "{ty:?} has no interleaved layout"
    );
    assert!(a.len().is_multiple_of(k), "activations are not rows of {k}");
    let m = a.len() / k;
    assert_eq!(
        w.bytes.len(),
        n * w.row_bytes(),
        "{ty:?}: weight bytes for {n} rows of {k}"
    );
    assert_eq!(dst.len(), m * n, "output size for [{m}, {n}]");
    if m == 0 || n == 0 {
        return;
    }
    let a_row_bytes = kernel.act.row_bytes(k);
    thread_local! {
        /// Converted activations, reused by every product on this thread (no allocation per
        /// token once the largest product has run).
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|scratch| {
        if scratch.len() < m * a_row_bytes {
            scratch.resize(m * a_row_bytes, 0);
        }
        let acts = &mut scratch[..m * a_row_bytes];
        if m == 1 {
            kernel.act.convert_row(a, acts);
        } else {
            acts.par_chunks_mut(a_row_bytes)
                .zip(a.par_chunks(k))
                .for_each(|(out, x)| kernel.act.convert_row(x, out));
        }
        let operands = Operands {
            tile: kernel.tile,
            panel: kernel.panel.filter(|_| m > MAX_TILE),
            w: *w,
            acts,
            a_row_bytes,
            m,
            blocks: k / block,
        };
        operands.run(dst);
    });
}

/// Everything a panel needs, shared by the threads.
struct Operands<'a> {
    tile: TileFn,
    /// Set for prompts, where the type has a panel kernel.
    panel: Option<PanelFn>,
    w: Weights<'a>,
    acts: &'a [u8],
    a_row_bytes: usize,
    m: usize,
    blocks: usize,
}

/// The output, written by many threads, each to its own cells.
struct Output(*mut f32);
// SAFETY: panels cover disjoint (row, column) cells of the output, so no cell is written twice
// and none is read; the buffer outlives the parallel loop that uses it.
unsafe impl Sync for Output {}

impl Output {
    /// The `len` cells from `start`.
    ///
    /// # Safety
    /// They lie inside the output and no other thread touches them meanwhile.
    #[allow(clippy::mut_from_ref)] // disjoint cells per caller, as for the raw writes
    unsafe fn cells(&self, start: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

impl Operands<'_> {
    fn run(&self, dst: &mut [f32]) {
        if let Some(panel) = self.panel {
            return self.run_panels(panel, dst);
        }
        let threads = rayon::current_num_threads().max(1);
        // Few activation rows (generation): split the weight rows into about 8 panels per
        // thread, enough to even out, in whole tiles. Many (a prompt): small square-ish panels.
        let n = self.w.rows;
        let row_panel = if self.m <= MAX_TILE {
            n.div_ceil(threads * 8).next_multiple_of(MAX_TILE)
        } else {
            ROW_PANEL
        };
        let row_panels = n.div_ceil(row_panel);
        let col_panels = self.m.div_ceil(COL_PANEL);
        let out = Output(dst.as_mut_ptr());
        let panel = |index: usize| {
            let (rp, cp) = (index % row_panels, index / row_panels);
            let rows = rp * row_panel..((rp + 1) * row_panel).min(n);
            let cols = cp * COL_PANEL..((cp + 1) * COL_PANEL).min(self.m);
            self.panel(rows, cols, &out);
        };
        if row_panels * col_panels == 1 || threads == 1 {
            (0..row_panels * col_panels).for_each(panel);
        } else {
            (0..row_panels * col_panels).into_par_iter().for_each(panel);
        }
    }

    /// The product by prompt panels: each task takes [`PANEL_ROWS`] weight rows against every
    /// activation row, so that its rewritten weights serve them all.
    fn run_panels(&self, panel: PanelFn, dst: &mut [f32]) {
        thread_local! {
            /// A panel's outputs, [activation row][weight row].
            static PANEL_OUT: RefCell<Vec<[f32; PANEL_ROWS]>> = const { RefCell::new(Vec::new()) };
        }
        let n = self.w.rows;
        let out = Output(dst.as_mut_ptr());
        let task = |index: usize| {
            let operands = Panel {
                w: self.w,
                first: index * PANEL_ROWS,
                a: self.acts,
                a_row_bytes: self.a_row_bytes,
            };
            PANEL_OUT.with_borrow_mut(|panel_out| {
                panel_out.resize(self.m, [0.0; PANEL_ROWS]);
                panel(&operands, panel_out);
                let rows = operands.rows();
                for (c, values) in panel_out.iter().enumerate() {
                    // SAFETY: c < m and first + rows <= n, so the cells are inside dst [m, n];
                    // this panel is the only one covering them.
                    let cells = unsafe { out.cells(c * n + operands.first, rows) };
                    cells.copy_from_slice(&values[..rows]);
                }
            });
        };
        let panels = n.div_ceil(PANEL_ROWS);
        if panels == 1 || rayon::current_num_threads() <= 1 {
            (0..panels).for_each(task);
        } else {
            (0..panels).into_par_iter().for_each(task);
        }
    }

    /// Weight rows `rows` × activation rows `cols`, tile by tile: each weight tile meets every
    /// activation tile of the panel while it is in L1. `rows` starts at a multiple of
    /// [`MAX_TILE`], so that every tile is a whole group of an interleaved layout.
    fn panel(&self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, out: &Output) {
        let mut tile_out = [[0f32; MAX_TILE]; MAX_TILE];
        let (n, row_bytes) = (self.w.rows, self.w.row_bytes());
        for r0 in rows.clone().step_by(MAX_TILE) {
            let tile_rows = MAX_TILE.min(rows.end - r0);
            let w = &self.w.bytes[r0 * row_bytes..(r0 + tile_rows) * row_bytes];
            let (w_row_stride, w_block_stride) = self.w.strides(r0);
            for c0 in cols.clone().step_by(MAX_TILE) {
                let tile_cols = MAX_TILE.min(cols.end - c0);
                let a = &self.acts[c0 * self.a_row_bytes..(c0 + tile_cols) * self.a_row_bytes];
                let tile = Tile {
                    w,
                    w_row_stride,
                    w_block_stride,
                    rows: tile_rows,
                    a,
                    a_row_bytes: self.a_row_bytes,
                    cols: tile_cols,
                    blocks: self.blocks,
                };
                (self.tile)(&tile, &mut tile_out);
                for (c, col) in (c0..c0 + tile_cols).enumerate() {
                    for (r, row) in (r0..r0 + tile_rows).enumerate() {
                        debug_assert!(col < self.m && row < n);
                        // SAFETY: row < n and col < m, so the cell is inside dst [m, n]; this
                        // panel is the only one covering it.
                        unsafe { *out.0.add(col * n + row) = tile_out[r][c] };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type's prompt panel kernels, where it has them.
    #[test]
    fn panels_match_the_reference_for_every_type() {
        for ty in testing::TYPES {
            testing::check_panels(ty);
        }
    }

    /// The driver over every kernel and layout: shapes with partial tiles and panels on both
    /// sides (and a last interleaved group of fewer rows), one thread and several, against the
    /// f64 reference.
    #[test]
    fn matmul_matches_the_reference_for_every_type_and_shape() {
        for ty in testing::TYPES {
            for &isa in Isa::available() {
                for (m, n) in [(1, 1), (1, 37), (3, 5), (5, 3), (70, 21), (2, 130)] {
                    let k = if ty.block_size() == 1 {
                        33
                    } else {
                        3 * ty.block_size()
                    };
                    for &layout in Layout::all_for(ty) {
                        testing::check_matmul(isa, ty, layout, m, n, k);
                    }
                }
            }
        }
    }
}
