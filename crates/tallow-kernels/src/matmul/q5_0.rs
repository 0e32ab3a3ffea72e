//! Q5_0 weights × [`Q8Block`] activations.
//!
//! A Q5_0 block (22 bytes): f16 scale `d`, a little-endian u32 `qh` of fifth bits, 16 bytes of
//! low nibbles (byte j: value j low, value j + 16 high); value i's code is its nibble plus
//! `((qh >> i) & 1) << 4`, and the value is `d · (code − 16)`.
//!
//! The SIMD kernels are [`super::blocks32`]'s, given the nibbles and fifth bits unpacked into byte
//! codes.

use super::activations::{read_block, Q8Block};
use super::{Isa, PanelFn, Tile, TileFn, MAX_TILE};
use half::f16;
#[cfg(target_arch = "aarch64")]
use {super::blocks32::neon, std::arch::aarch64::*};
#[cfg(target_arch = "x86_64")]
use {super::blocks32::x86, std::arch::x86_64::*};

pub(super) const BLOCK_BYTES: usize = 22;

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
                let qh = u32::from_le_bytes([wb[2], wb[3], wb[4], wb[5]]);
                let mut dot = 0i32;
                for j in 0..16 {
                    let byte = wb[6 + j];
                    let lo = (byte & 15) as i32 | (((qh >> j) & 1) << 4) as i32;
                    let hi = (byte >> 4) as i32 | (((qh >> (j + 16)) & 1) << 4) as i32;
                    dot += (lo - 16) * ab.qs[j] as i32 + (hi - 16) * ab.qs[j + 16] as i32;
                }
                sum += f16::from_le_bytes([wb[0], wb[1]]).to_f32() * ab.d * dot as f32;
            }
            *out = sum;
        }
    }
}

/// Q5_0 as the SIMD kernels of [`super::blocks32`] read it.
struct Blocks;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
impl Blocks {
    /// The block's fifth bits, bit i for value i.
    ///
    /// # Safety
    /// `block` points to a whole block.
    #[inline(always)]
    unsafe fn fifth_bits(block: *const u8) -> u32 {
        u32::from_le(block.add(2).cast::<u32>().read_unaligned())
    }
}

#[cfg(target_arch = "x86_64")]
impl x86::Format for Blocks {
    const BLOCK_BYTES: usize = BLOCK_BYTES;
    const CODES: x86::Codes = x86::Codes::Unsigned(16);

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn rows<const R: usize>(block: *const u8, row_bytes: usize) -> [__m256i; 4] {
        let mut rows = [_mm256_setzero_si256(); 4];
        for (r, row) in rows.iter_mut().enumerate().take(R) {
            *row = codes(block.add(r * row_bytes));
        }
        x86::transpose(rows)
    }

    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
    unsafe fn rows_avx512<const R: usize>(block: *const u8, row_bytes: usize) -> [__m256i; 4] {
        let mut rows = [_mm256_setzero_si256(); 4];
        for (r, row) in rows.iter_mut().enumerate().take(R) {
            *row = codes_avx512(block.add(r * row_bytes));
        }
        x86::transpose(rows)
    }
}

/// The 32 codes of the block at `block`, in value order.
///
/// # Safety
/// `block` points to a whole block; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn codes(block: *const u8) -> __m256i {
    // Byte i takes byte i / 8 of qh, keeps bit i % 8 of it and becomes 0xFF where it is set.
    let qh = _mm256_set1_epi32(Blocks::fifth_bits(block) as i32);
    let spread = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let bit_set = _mm256_and_si256(_mm256_shuffle_epi8(qh, spread), bit);
    let high = _mm256_and_si256(_mm256_cmpeq_epi8(bit_set, bit), _mm256_set1_epi8(16));
    _mm256_or_si256(nibbles(block), high)
}

/// [`codes`] with qh as the byte mask of the values that get 16 added.
///
/// # Safety
/// `block` points to a whole block; the CPU has AVX-512 BW and VL.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
unsafe fn codes_avx512(block: *const u8) -> __m256i {
    let nibbles = nibbles(block);
    _mm256_mask_add_epi8(
        nibbles,
        Blocks::fifth_bits(block),
        nibbles,
        _mm256_set1_epi8(16),
    )
}

/// The block's low nibbles as bytes in value order (byte j: value j low, value j + 16 high).
///
/// # Safety
/// `block` points to a whole block; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn nibbles(block: *const u8) -> __m256i {
    // The 16 bytes in both halves, the upper half shifted down a nibble.
    let bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128(block.add(6).cast()));
    let shifted = _mm256_srlv_epi64(bytes, _mm256_set_epi64x(4, 4, 0, 0));
    _mm256_and_si256(shifted, _mm256_set1_epi8(15))
}

#[cfg(target_arch = "aarch64")]
impl neon::Format for Blocks {
    const BLOCK_BYTES: usize = BLOCK_BYTES;

    #[inline(always)]
    unsafe fn codes(block: *const u8) -> [int8x16_t; 2] {
        let qh = Self::fifth_bits(block);
        let bytes = vld1q_u8(block.add(6));
        // Byte i of a half takes byte i / 8 of its 16 fifth bits and tests bit i % 8 of it.
        const BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
        let bit = vld1q_u8(BIT.as_ptr());
        let set = |half: u32| {
            let spread = vcombine_u8(vdup_n_u8(half as u8), vdup_n_u8((half >> 8) as u8));
            vtstq_u8(spread, bit)
        };
        // code − 16 = nibble − 16 where the fifth bit is clear.
        let code = |nibble: uint8x16_t, set: uint8x16_t| {
            vreinterpretq_s8_u8(vsubq_u8(nibble, vbicq_u8(vdupq_n_u8(16), set)))
        };
        [
            code(vandq_u8(bytes, vdupq_n_u8(15)), set(qh)),
            code(vshrq_n_u8::<4>(bytes), set(qh >> 16)),
        ]
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tiles_match_the_reference() {
        super::super::testing::check_tiles(crate::QuantType::Q5_0);
    }
}
