//! Quantization of f32 weight rows into ggml's formats, byte for byte as `llama-quantize` writes
//! them when it has no importance matrix.
//!
//! llama-quantize hands every tensor to `ggml_quantize_chunk`, which for these types calls the
//! per-type reference quantizer (`quantize_row_*_ref`; the importance-weighted variants only run
//! with an imatrix) and `ggml_fp32_to_fp16_row` / `ggml_fp32_to_bf16_row_ref` for F16/BF16.
//! Reproducing their bytes means reproducing their arithmetic: every f32 operation in the same
//! order (ggml-base is built without `-ffast-math` or FMA, so the C is plain IEEE single
//! precision, as Rust's f32 is), ggml's rounding helpers, and its tie-breaking rules. The
//! individual modules say where that matters.
//!
//! Every format quantizes fixed-size blocks of consecutive values independently, so a matrix is
//! quantized block by block in parallel with identical results for any thread count.

mod float;
mod k_quants;
mod legacy;
#[cfg(test)]
mod tests;

use rayon::prelude::*;

/// A ggml storage type that [`quantize_rows`] can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantType {
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

impl QuantType {
    /// Values per block; a row's length must be a multiple of it.
    pub fn block_size(self) -> usize {
        match self {
            QuantType::F16 | QuantType::BF16 => 1,
            QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q5_0 | QuantType::Q5_1 => 32,
            QuantType::Q8_0 => 32,
            QuantType::Q2K | QuantType::Q3K | QuantType::Q4K | QuantType::Q5K | QuantType::Q6K => {
                k_quants::QK_K
            }
        }
    }

    /// Bytes per block (ggml's `type_size`).
    pub fn block_bytes(self) -> usize {
        match self {
            QuantType::F16 | QuantType::BF16 => 2,
            QuantType::Q4_0 => legacy::Q4_0_BYTES,
            QuantType::Q4_1 => legacy::Q4_1_BYTES,
            QuantType::Q5_0 => legacy::Q5_0_BYTES,
            QuantType::Q5_1 => legacy::Q5_1_BYTES,
            QuantType::Q8_0 => legacy::Q8_0_BYTES,
            QuantType::Q2K => k_quants::q2_k::BYTES,
            QuantType::Q3K => k_quants::q3_k::BYTES,
            QuantType::Q4K => k_quants::q4_k::BYTES,
            QuantType::Q5K => k_quants::q5_k::BYTES,
            QuantType::Q6K => k_quants::q6_k::BYTES,
        }
    }
}

/// Quantizes `src` (rows of `cols` values, cols a multiple of the block size) into `dst` (exactly
/// rows * cols / block_size * block_bytes bytes), in ggml's block layout.
///
/// # Panics
/// If `cols` is zero or not a multiple of `ty.block_size()`, `src.len()` is not a multiple of
/// `cols`, or `dst` has the wrong length.
pub fn quantize_rows(ty: QuantType, src: &[f32], cols: usize, dst: &mut [u8]) {
    let block = ty.block_size();
    assert!(
        cols > 0 && cols.is_multiple_of(block),
        "{ty:?}: row length {cols} is not a positive multiple of the block size {block}"
    );
    assert!(
        src.len().is_multiple_of(cols),
        "{ty:?}: {} values do not make rows of {cols}",
        src.len()
    );
    let blocks = src.len() / block;
    assert_eq!(
        dst.len(),
        blocks * ty.block_bytes(),
        "{ty:?}: destination size for {} rows of {cols}",
        src.len() / cols
    );
    match ty {
        QuantType::F16 => in_parallel(src, dst, float::f16_block),
        QuantType::BF16 => in_parallel(src, dst, float::bf16_block),
        QuantType::Q4_0 => in_parallel(src, dst, legacy::q4_0_block),
        QuantType::Q4_1 => in_parallel(src, dst, legacy::q4_1_block),
        QuantType::Q5_0 => in_parallel(src, dst, legacy::q5_0_block),
        QuantType::Q5_1 => in_parallel(src, dst, legacy::q5_1_block),
        QuantType::Q8_0 => in_parallel(src, dst, legacy::q8_0_block),
        QuantType::Q2K => in_parallel(src, dst, k_quants::q2_k::quantize_block),
        QuantType::Q3K => in_parallel(src, dst, k_quants::q3_k::quantize_block),
        QuantType::Q4K => in_parallel(src, dst, k_quants::q4_k::quantize_block),
        QuantType::Q5K => in_parallel(src, dst, k_quants::q5_k::quantize_block),
        QuantType::Q6K => in_parallel(src, dst, k_quants::q6_k::quantize_block),
    }
}

/// Runs a block quantizer (`N` values in, `B` bytes out) over every block of `src`, handing
/// rayon groups of blocks big enough that scheduling costs little next to the work.
fn in_parallel<const N: usize, const B: usize>(
    src: &[f32],
    dst: &mut [u8],
    quantize_block: fn(&[f32; N], &mut [u8; B]),
) {
    // About 8K values per task: a 4096-wide row of Q4_K, or 8192 elements of F16.
    let blocks_per_task = (8192 / N).max(1);
    src.par_chunks(blocks_per_task * N)
        .zip(dst.par_chunks_mut(blocks_per_task * B))
        .for_each(|(xs, ys)| {
            for (x, y) in xs.chunks_exact(N).zip(ys.chunks_exact_mut(B)) {
                // chunks_exact yields exactly N and B elements, so these cannot fail.
                quantize_block(x.try_into().unwrap(), y.try_into().unwrap());
            }
        });
}
