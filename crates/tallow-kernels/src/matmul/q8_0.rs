//! Q8_0 weights × [`Q8Block`] activations.
//!
//! A Q8_0 block (34 bytes): f16 scale `d`, then 32 signed codes; a value is `d · code`.
//!
//! The SIMD kernels are [`super::blocks32`]'s, given the codes.

use super::activations::{read_block, Q8Block};
use super::{Isa, PanelFn, Tile, TileFn, MAX_TILE};
use half::f16;
#[cfg(target_arch = "aarch64")]
use {super::blocks32::neon, std::arch::aarch64::*};
#[cfg(target_arch = "x86_64")]
use {super::blocks32::x86, std::arch::x86_64::*};

pub(super) const BLOCK_BYTES: usize = 34;

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
                let dot: i32 = wb[2..]
                    .iter()
                    .zip(ab.qs)
                    .map(|(&w, a)| w as i8 as i32 * a as i32)
                    .sum();
                sum += f16::from_le_bytes([wb[0], wb[1]]).to_f32() * ab.d * dot as f32;
            }
            *out = sum;
        }
    }
}

/// Q8_0 as the SIMD kernels read it.
struct Blocks;

#[cfg(target_arch = "x86_64")]
impl x86::Format for Blocks {
    const BLOCK_BYTES: usize = BLOCK_BYTES;
    const CODES: x86::Codes = x86::Codes::Signed;

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn rows<const R: usize>(block: *const u8, row_bytes: usize) -> [__m256i; 4] {
        // Each half of the rows by groups of 8: values 0..16, then 16..32.
        let [c0, c1] = x86::interleave(x86::load_rows::<R>(|r| block.add(r * row_bytes + 2)));
        let [c2, c3] = x86::interleave(x86::load_rows::<R>(|r| block.add(r * row_bytes + 18)));
        [c0, c1, c2, c3]
    }
}

#[cfg(target_arch = "aarch64")]
impl neon::Format for Blocks {
    const BLOCK_BYTES: usize = BLOCK_BYTES;

    #[inline(always)]
    unsafe fn codes(block: *const u8) -> [int8x16_t; 2] {
        let codes = block.add(2).cast::<i8>();
        [vld1q_s8(codes), vld1q_s8(codes.add(16))]
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tiles_match_the_reference() {
        super::super::testing::check_tiles(crate::QuantType::Q8_0);
    }
}
