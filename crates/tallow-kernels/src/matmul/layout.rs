//! Where a weight matrix's blocks lie in memory.
//!
//! GGUF stores rows one after another. A tile reads [`MAX_TILE`] rows at once, block by block,
//! so in that layout it reads four streams a row apart; this machine's cores stream one run of
//! memory at 40–50 GB/s but four interleaved ones at about 36 even with software prefetching.
//! Generation reads every weight once per token, at that rate. The interleaved layout stores
//! each group of [`MAX_TILE`] rows block-interleaved (block 0 of rows 0..4, block 1 of rows
//! 0..4, ...), so that a tile reads one contiguous run; matrices are rewritten into it at load.

use super::MAX_TILE;
use crate::QuantType;
use rayon::prelude::*;

/// How a matrix's rows are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Row after row, as GGUF stores them.
    Rows,
    /// Groups of [`MAX_TILE`] rows (the last may have fewer), one group after another, each
    /// holding block 0 of its rows in row order, then block 1, and so on. A group of `g` rows
    /// occupies the bytes of `g` rows, as in [`Layout::Rows`]. Block types only (not F16).
    Interleaved,
}

impl Layout {
    /// The layouts weights of type `ty` can have: rows, and interleaved groups for block types
    /// (not F16's single values).
    pub fn all_for(ty: QuantType) -> &'static [Layout] {
        if ty.block_size() > 1 {
            &[Layout::Rows, Layout::Interleaved]
        } else {
            &[Layout::Rows]
        }
    }

    /// The layout the kernels of `ty` read fastest. The 32-value formats' kernels walk a tile's
    /// rows block by block, so interleaving makes their reads one run (two threads, Llama-3.2-1B
    /// shapes from memory: Q4_0 ~35 → ~40 GB/s, Q8_0 ~33 → ~38). The K-quant kernels already
    /// read each row in runs of several super-blocks, which interleaving would break up (Q4_K
    /// ~33 → ~30 GB/s); F16 has single-value blocks.
    pub fn best_for(ty: QuantType) -> Layout {
        match ty {
            QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Q8_0 => Layout::Interleaved,
            _ => Layout::Rows,
        }
    }
}

/// A weight matrix as the kernels read it: `rows` rows of `cols` values of type `ty` in ggml's
/// blocks, laid out as `layout` says.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    pub ty: QuantType,
    pub layout: Layout,
    pub bytes: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

impl Weights<'_> {
    /// Bytes of one row's blocks.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_size() * self.ty.block_bytes()
    }

    /// (row stride, block stride) in bytes inside the group of rows that starts at `first`
    /// (a multiple of [`MAX_TILE`]): block b of row `first + r` is at
    /// `first * row_bytes + r * row_stride + b * block_stride`.
    pub fn strides(&self, first: usize) -> (usize, usize) {
        let block = self.ty.block_bytes();
        match self.layout {
            Layout::Rows => (self.row_bytes(), block),
            Layout::Interleaved => (block, MAX_TILE.min(self.rows - first) * block),
        }
    }

    /// Row `r`'s blocks in order, copied into `out` (`row_bytes` long).
    ///
    /// # Panics
    /// If `r` is not a row or `out` has the wrong length.
    pub fn read_row(&self, r: usize, out: &mut [u8]) {
        let row_bytes = self.row_bytes();
        assert!(
            r < self.rows && out.len() == row_bytes,
            "row {r} of {}",
            self.rows
        );
        let first = r / MAX_TILE * MAX_TILE;
        let (row_stride, block_stride) = self.strides(first);
        let group = &self.bytes[first * row_bytes..];
        let block = self.ty.block_bytes();
        for (b, out) in out.chunks_exact_mut(block).enumerate() {
            let at = (r - first) * row_stride + b * block_stride;
            out.copy_from_slice(&group[at..at + block]);
        }
    }

    /// This matrix (in [`Layout::Rows`]) rewritten into `out` in [`Layout::Interleaved`], group
    /// by group in parallel on the current rayon pool.
    ///
    /// # Panics
    /// If the matrix is already interleaved, its type has single-value blocks (F16), or `out`
    /// is not the matrix's size.
    pub fn interleave_into(&self, out: &mut [u8]) {
        assert_eq!(self.layout, Layout::Rows, "already interleaved");
        assert!(
            self.ty.block_size() > 1,
            "{:?} is not a block type",
            self.ty
        );
        assert_eq!(out.len(), self.bytes.len(), "interleaved size");
        let (row_bytes, block) = (self.row_bytes(), self.ty.block_bytes());
        let group_bytes = MAX_TILE * row_bytes;
        out.par_chunks_mut(group_bytes)
            .zip(self.bytes.par_chunks(group_bytes))
            .for_each(|(out, rows)| {
                let count = rows.len() / row_bytes;
                for (b, out) in out.chunks_exact_mut(count * block).enumerate() {
                    for (r, out) in out.chunks_exact_mut(block).enumerate() {
                        let at = r * row_bytes + b * block;
                        out.copy_from_slice(&rows[at..at + block]);
                    }
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of distinct bytes: byte i of row r is (r * 31 + i) mod 251.
    fn plain(ty: QuantType, rows: usize, cols: usize) -> Vec<u8> {
        let row_bytes = cols / ty.block_size() * ty.block_bytes();
        (0..rows * row_bytes)
            .map(|i| ((i / row_bytes * 31 + i % row_bytes) % 251) as u8)
            .collect()
    }

    #[test]
    fn interleaving_keeps_every_row_readable() {
        for (ty, cols) in [(QuantType::Q4_0, 96), (QuantType::Q4K, 512)] {
            for rows in [1, 3, 4, 7, 9] {
                let bytes = plain(ty, rows, cols);
                let rows_layout = Weights {
                    ty,
                    layout: Layout::Rows,
                    bytes: &bytes,
                    rows,
                    cols,
                };
                let mut interleaved = vec![0u8; bytes.len()];
                rows_layout.interleave_into(&mut interleaved);
                let tiles_layout = Weights {
                    layout: Layout::Interleaved,
                    bytes: &interleaved,
                    ..rows_layout
                };
                let row_bytes = rows_layout.row_bytes();
                let mut row = vec![0u8; row_bytes];
                for r in 0..rows {
                    tiles_layout.read_row(r, &mut row);
                    assert_eq!(row, bytes[r * row_bytes..][..row_bytes], "{ty:?} row {r}");
                }
                // A group's first row starts the group; its second block follows the group's
                // first blocks.
                let block = ty.block_bytes();
                let group_rows = MAX_TILE.min(rows);
                assert_eq!(interleaved[..block], bytes[..block]);
                assert_eq!(
                    interleaved[group_rows * block..][..block],
                    bytes[block..][..block]
                );
            }
        }
    }
}
