//! Q4_0 weights × [`Q8Block`] activations.
//!
//! A Q4_0 block (18 bytes): f16 scale `d`, then 16 bytes of 4-bit codes; byte j holds value j in
//! its low nibble and value j + 16 in its high one, and a value is `d · (code − 8)`.
//!
//! The SIMD kernels are [`super::blocks32`]'s, given the nibbles unpacked into byte codes.

use super::activations::{read_block, Q8Block};
use super::{Isa, PanelFn, Tile, TileFn, MAX_TILE};
use half::f16;
#[cfg(target_arch = "aarch64")]
use {super::blocks32::neon, std::arch::aarch64::*};
#[cfg(target_arch = "x86_64")]
use {super::blocks32::x86, std::arch::x86_64::*};

pub(super) const BLOCK_BYTES: usize = 18;

pub(super) fn select(isa: Isa) -> TileFn {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if let Some(tile) = super::blocks32::simd::<Blocks>(isa) {
        return tile;
    }
    tile_scalar
}

/// The prompt kernel, where this tier has one.
pub(super) fn select_panel(isa: Isa) -> Option<PanelFn> {
    super::blocks32::panel::<Blocks>(isa)
}

/// The portable kernel, and the reference the SIMD ones are read against.
fn tile_scalar(t: &Tile<'_>, out: &mut [[f32; MAX_TILE]; MAX_TILE]) {
    for (r, out_row) in out.iter_mut().enumerate().take(t.rows) {
        for (c, out) in out_row.iter_mut().enumerate().take(t.cols) {
            let a = &t.a[c * t.a_row_bytes..][..t.a_row_bytes];
            let mut sum = 0f32;
            for b in 0..t.blocks {
                let wb = t.w_block(r, b, BLOCK_BYTES);
                let ab: Q8Block = read_block(&a[b * size_of::<Q8Block>()..]);
                let mut dot = 0i32;
                for j in 0..16 {
                    let byte = wb[2 + j];
                    dot += ((byte & 15) as i32 - 8) * ab.qs[j] as i32
                        + ((byte >> 4) as i32 - 8) * ab.qs[j + 16] as i32;
                }
                sum += f16::from_le_bytes([wb[0], wb[1]]).to_f32() * ab.d * dot as f32;
            }
            *out = sum;
        }
    }
}

/// Q4_0 as the SIMD kernels of [`super::blocks32`] read it.
struct Blocks;

#[cfg(target_arch = "x86_64")]
impl x86::Format for Blocks {
    const BLOCK_BYTES: usize = BLOCK_BYTES;
    const CODES: x86::Codes = x86::Codes::Unsigned(8);

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn rows<const R: usize>(block: *const u8, row_bytes: usize) -> [__m256i; 4] {
        // The packed bytes 0..8 and 8..16 of each row, then split: byte j's low nibble is value
        // j, its high nibble value j + 16.
        let [first, second] =
            x86::interleave(x86::load_rows::<R>(|r| block.add(r * row_bytes + 2)));
        let nibble = _mm256_set1_epi8(15);
        let low = |p: __m256i| _mm256_and_si256(p, nibble);
        let high = |p: __m256i| _mm256_and_si256(_mm256_srli_epi16::<4>(p), nibble);
        [low(first), low(second), high(first), high(second)]
    }
}

#[cfg(target_arch = "aarch64")]
impl neon::Format for Blocks {
    const BLOCK_BYTES: usize = BLOCK_BYTES;

    #[inline(always)]
    unsafe fn codes(block: *const u8) -> [int8x16_t; 2] {
        let bytes = vld1q_u8(block.add(2));
        let eight = vdupq_n_s8(8);
        [
            vsubq_s8(vreinterpretq_s8_u8(vandq_u8(bytes, vdupq_n_u8(15))), eight),
            vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(bytes)), eight),
        ]
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tiles_match_the_reference() {
        super::super::testing::check_tiles(crate::QuantType::Q4_0);
    }
}
