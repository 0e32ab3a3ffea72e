//! Q4_K weights × [`Q8KBlock`] activations.
//!
//! A Q4_K super-block (144 bytes) holds 256 values in 8 sub-blocks of 32:
//!
//! - bytes 0..2: `d` (f16), the scale of the sub-block scales;
//! - bytes 2..4: `dmin` (f16), the scale of the sub-block minimums;
//! - bytes 4..16: each sub-block's 6-bit scale `sc` and 6-bit minimum `m`, packed as
//!   [`scales_mins`] reads them;
//! - bytes 16..144: 4-bit codes `q`, 4 chunks of 32 bytes: chunk j holds sub-block 2j in its low
//!   nibbles and sub-block 2j + 1 in its high ones.
//!
//! A value is `d·sc·q − dmin·m`. Against a Q8_K block (scale `da`, codes `a`, `bsums`) the
//! super-block's dot product is
//! `da·(d·Σ_s sc_s·Σ_{i∈s} q_i·a_i − dmin·Σ_s m_s·(bsums[2s] + bsums[2s+1]))`: integer sums
//! scaled once per super-block, the minimums meeting the activations' sums of 16.

use super::activations::{read_block, Q8KBlock, QK_K};
use super::{Isa, Tile, TileFn, MAX_TILE};
use half::f16;

pub(super) const BLOCK_BYTES: usize = 144;
/// Bytes of one activation block.
const A_BYTES: usize = size_of::<Q8KBlock>();

pub(super) fn select(isa: Isa) -> TileFn {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => super::super_blocks_x86::tile_avx512vnni::<x86::Q4K512>,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => super::super_blocks_x86::tile_avx2::<x86::Q4K>,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => tile_neon,
        _ => tile_scalar,
    }
}

/// The 8 sub-block scales and the 8 minimums of a super-block, byte s of each for sub-block s
/// (ggml's `get_scale_min_k4` for all eight at once). In the 12 bytes, read as little-endian
/// words w0, w1, w2: sub-blocks 0..3 have their scales in the low 6 bits of w0's bytes and their
/// minimums in w1's; sub-blocks 4..7 have their low 4 bits in w2's bytes (scale in the low
/// nibble, minimum in the high one) and their top 2 bits in the top 2 bits of w0's (scales) and
/// w1's (minimums) bytes.
fn scales_mins(packed: [u8; 12]) -> (u64, u64) {
    let word = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let (w0, w1, w2) = (word(0), word(1), word(2));
    let scales_lo = w0 & 0x3f3f_3f3f;
    let mins_lo = w1 & 0x3f3f_3f3f;
    let scales_hi = (w2 & 0x0f0f_0f0f) | ((w0 >> 2) & 0x3030_3030);
    let mins_hi = ((w2 >> 4) & 0x0f0f_0f0f) | ((w1 >> 2) & 0x3030_3030);
    (
        scales_lo as u64 | (scales_hi as u64) << 32,
        mins_lo as u64 | (mins_hi as u64) << 32,
    )
}

/// The portable kernel, and the reference the SIMD ones are read against.
fn tile_scalar(t: &Tile<'_>, out: &mut [[f32; MAX_TILE]; MAX_TILE]) {
    for (r, out_row) in out.iter_mut().enumerate().take(t.rows) {
        let mut sums = [0f32; MAX_TILE];
        for b in 0..t.blocks {
            let wb = t.w_block(r, b, BLOCK_BYTES);
            let d = f16::from_le_bytes([wb[0], wb[1]]).to_f32();
            let dmin = f16::from_le_bytes([wb[2], wb[3]]).to_f32();
            let (scales, mins) = scales_mins(wb[4..16].try_into().unwrap());
            let (scales, mins) = (scales.to_le_bytes(), mins.to_le_bytes());
            // The codes in value order, unpacked once for every activation row.
            let mut q = [0u8; QK_K];
            for (j, chunk) in wb[16..].chunks_exact(32).enumerate() {
                for (l, &byte) in chunk.iter().enumerate() {
                    q[64 * j + l] = byte & 15;
                    q[64 * j + 32 + l] = byte >> 4;
                }
            }
            for (c, sum) in sums.iter_mut().enumerate().take(t.cols) {
                let ab: Q8KBlock = read_block(&t.a[c * t.a_row_bytes + b * A_BYTES..]);
                let mut dot = 0i32;
                let mut min_dot = 0i32;
                for s in 0..8 {
                    let sub: i32 = q[32 * s..32 * s + 32]
                        .iter()
                        .zip(&ab.qs[32 * s..32 * s + 32])
                        .map(|(&q, &a)| q as i32 * a as i32)
                        .sum();
                    dot += scales[s] as i32 * sub;
                    min_dot +=
                        mins[s] as i32 * (ab.bsums[2 * s] as i32 + ab.bsums[2 * s + 1] as i32);
                }
                *sum += ab.d * (d * dot as f32 - dmin * min_dot as f32);
            }
        }
        out_row[..t.cols].copy_from_slice(&sums[..t.cols]);
    }
}

/// The body of the AVX2 and AVX-512 VNNI kernels ([`super::super_blocks_x86`]).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{scales_mins, BLOCK_BYTES};
    use crate::matmul::activations::QK_K;
    use crate::matmul::super_blocks_x86::{dpwssd512, interleave, SuperBlocks};
    use std::arch::x86_64::*;
    use std::ptr::read_unaligned;

    /// `da·(bsums[2s] + bsums[2s + 1])` in lane s of the activation super-block at `a`: what
    /// sub-block s's minimum multiplies.
    #[inline(always)]
    unsafe fn scaled_bsum_pairs(a: *const u8) -> __m256 {
        let da = _mm256_set1_ps(read_unaligned(a.cast::<f32>()));
        let bsums = _mm256_loadu_si256(a.add(4 + QK_K).cast());
        _mm256_mul_ps(
            _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, _mm256_set1_epi16(1))),
            da,
        )
    }

    /// One activation super-block, prepared once for every weight row of the tile.
    #[derive(Clone, Copy)]
    pub(in super::super) struct Prepared {
        /// The codes, chunk j interleaved as [`interleave`] does into registers 2j and 2j + 1.
        codes: [__m256i; 8],
        /// The scale `da` in every lane.
        da: __m256,
        /// `da·(bsums[2s] + bsums[2s + 1])` in lane s.
        bsums: __m256,
    }

    /// Per super-block, a weight row's chunk j becomes 2 registers of unsigned codes in the
    /// activations' layout (low nibbles sub-block 2j, high ones 2j + 1); per activation row, two
    /// `maddubs` (u8 code × i8 activation, adjacent pairs summed to i16: at most 2·15·127, twice
    /// that after the add) and one multiply-add by the two scales into i32 lanes. Each (row,
    /// column) pair's integer sum is scaled into its f32 accumulator once per super-block, and
    /// the minimums' term added there as 8 f32 lanes, `dmin·m_s` (per weight row) times the
    /// prepared bsums.
    pub(in super::super) struct Q4K;

    impl SuperBlocks for Q4K {
        const BLOCK_BYTES: usize = BLOCK_BYTES;

        type Prepared = Prepared;
        type Acc = __m256;

        #[inline(always)]
        unsafe fn prepare(a: *const u8) -> Prepared {
            let da = _mm256_set1_ps(read_unaligned(a.cast::<f32>()));
            let mut codes = [_mm256_setzero_si256(); 8];
            for j in 0..4 {
                let x = a.add(4 + 64 * j);
                [codes[2 * j], codes[2 * j + 1]] = interleave(
                    _mm256_loadu_si256(x.cast()),
                    _mm256_loadu_si256(x.add(32).cast()),
                );
            }
            Prepared {
                codes,
                da,
                bsums: scaled_bsum_pairs(a),
            }
        }

        #[inline(always)]
        unsafe fn block<const COLS: usize>(
            w: *const u8,
            a: [&Prepared; COLS],
            row: &mut [__m256; COLS],
        ) {
            let nibble = _mm256_set1_epi8(0x0f);
            let d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(read_unaligned(w.cast::<i32>())));
            let d = _mm256_broadcastss_ps(d_dmin);
            let dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(d_dmin));
            let (scales, mins) = scales_mins(read_unaligned(w.add(4).cast::<[u8; 12]>()));
            let scales = _mm256_set1_epi64x(scales as i64);
            // dmin·m_s in lane s.
            let mins = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(mins as i64));
            let mins = _mm256_mul_ps(_mm256_cvtepi32_ps(mins), dmin);
            let mut dot = [_mm256_setzero_si256(); COLS];
            for j in 0..4 {
                let q = _mm256_loadu_si256(w.add(16 + 32 * j).cast());
                let lo = _mm256_and_si256(q, nibble);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), nibble);
                let [w0, w1] = interleave(lo, hi);
                // The scales of sub-blocks 2j and 2j + 1 in the interleaved layout: byte
                // 2j or 2j + 1, then a zero byte.
                let byte = |sub: usize| (0x8000 | sub) as i16;
                let (s0, s1) = (byte(2 * j), byte(2 * j + 1));
                let scale = _mm256_shuffle_epi8(
                    scales,
                    _mm256_setr_epi16(
                        s0, s0, s0, s0, s1, s1, s1, s1, s0, s0, s0, s0, s1, s1, s1, s1,
                    ),
                );
                for c in 0..COLS {
                    let p = _mm256_add_epi16(
                        _mm256_maddubs_epi16(w0, a[c].codes[2 * j]),
                        _mm256_maddubs_epi16(w1, a[c].codes[2 * j + 1]),
                    );
                    dot[c] = _mm256_add_epi32(dot[c], _mm256_madd_epi16(p, scale));
                }
            }
            for c in 0..COLS {
                let x = _mm256_cvtepi32_ps(dot[c]);
                let x = _mm256_fmadd_ps(x, _mm256_mul_ps(d, a[c].da), row[c]);
                row[c] = _mm256_fnmadd_ps(mins, a[c].bsums, x);
            }
        }
    }

    /// A [`Prepared`] for [`Q4K512`]: the codes of sub-blocks 4i..4i + 4 in registers 2i and
    /// 2i + 1, laid out as that kernel's weight registers are.
    #[derive(Clone, Copy)]
    pub(in super::super) struct Prepared512 {
        codes: [__m512i; 4],
        /// The scale `da` in every lane.
        da: __m512,
        /// `da·(bsums[2s] + bsums[2s + 1])` in lane s < 8, zero above.
        bsums: __m512,
    }

    /// [`Q4K`] on 512-bit vectors with `vpdpwssd` (AVX-512 VNNI): each load of 64 code bytes
    /// (chunks 2i and 2i + 1: sub-blocks 4i..4i + 4) is unpacked and meets the activations
    /// once, half the instructions of the 256-bit kernel for the same integer sums.
    pub(in super::super) struct Q4K512;

    impl SuperBlocks for Q4K512 {
        const BLOCK_BYTES: usize = BLOCK_BYTES;

        type Prepared = Prepared512;
        type Acc = __m512;

        #[inline(always)]
        unsafe fn prepare(a: *const u8) -> Prepared512 {
            let mut codes = [_mm512_setzero_si512(); 4];
            for i in 0..2 {
                // Sub-blocks 4i, 4i + 1 in x; 4i + 2, 4i + 3 in y.
                let x = _mm512_loadu_si512(a.add(4 + 128 * i).cast());
                let y = _mm512_loadu_si512(a.add(4 + 128 * i + 64).cast());
                // [4i | 4i + 2] and [4i + 1 | 4i + 3], as the weights' low and high nibbles.
                let low = _mm512_shuffle_i64x2::<0b01_00_01_00>(x, y);
                let high = _mm512_shuffle_i64x2::<0b11_10_11_10>(x, y);
                codes[2 * i] = _mm512_unpacklo_epi64(low, high);
                codes[2 * i + 1] = _mm512_unpackhi_epi64(low, high);
            }
            Prepared512 {
                codes,
                da: _mm512_set1_ps(read_unaligned(a.cast::<f32>())),
                bsums: _mm512_zextps256_ps512(scaled_bsum_pairs(a)),
            }
        }

        #[inline(always)]
        unsafe fn block<const COLS: usize>(
            w: *const u8,
            a: [&Prepared512; COLS],
            row: &mut [__m512; COLS],
        ) {
            let nibble = _mm512_set1_epi8(0x0f);
            let d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(read_unaligned(w.cast::<i32>())));
            let d = _mm512_broadcastss_ps(d_dmin);
            let dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(d_dmin));
            let (scales, mins) = scales_mins(read_unaligned(w.add(4).cast::<[u8; 12]>()));
            let scales = _mm512_set1_epi64(scales as i64);
            // dmin·m_s in lane s < 8.
            let mins = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(mins as i64));
            let mins = _mm512_zextps256_ps512(_mm256_mul_ps(_mm256_cvtepi32_ps(mins), dmin));
            let mut dot = [_mm512_setzero_si512(); COLS];
            for i in 0..2 {
                let q = _mm512_loadu_si512(w.add(16 + 64 * i).cast());
                let lo = _mm512_and_si512(q, nibble);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(q), nibble);
                let w0 = _mm512_unpacklo_epi64(lo, hi);
                let w1 = _mm512_unpackhi_epi64(lo, hi);
                // In 128-bit lanes 0 and 1, i16 lanes 0..3 belong to sub-block 4i and 4..7 to
                // 4i + 1; in lanes 2 and 3, to 4i + 2 and 4i + 3: their scale bytes, then zero.
                let byte = |sub: usize| (0x8000 | sub) as i16;
                let index: [i16; 32] = std::array::from_fn(|l| {
                    let lane = l / 8;
                    byte(4 * i + 2 * (lane / 2) + (l % 8) / 4)
                });
                let scale = _mm512_shuffle_epi8(scales, _mm512_loadu_si512(index.as_ptr().cast()));
                for c in 0..COLS {
                    let p = _mm512_add_epi16(
                        _mm512_maddubs_epi16(w0, a[c].codes[2 * i]),
                        _mm512_maddubs_epi16(w1, a[c].codes[2 * i + 1]),
                    );
                    dot[c] = dpwssd512(dot[c], p, scale);
                }
            }
            for c in 0..COLS {
                let x = _mm512_cvtepi32_ps(dot[c]);
                let x = _mm512_fmadd_ps(x, _mm512_mul_ps(d, a[c].da), row[c]);
                row[c] = _mm512_fnmadd_ps(mins, a[c].bsums, x);
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
fn tile_neon(t: &Tile<'_>, out: &mut [[f32; MAX_TILE]; MAX_TILE]) {
    t.check_bounds(BLOCK_BYTES, A_BYTES);
    // SAFETY: every aarch64 CPU has NEON; check_bounds keeps every read inside the tile's
    // slices.
    unsafe { neon::tile(t, out) }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{scales_mins, Tile, A_BYTES, MAX_TILE};
    use crate::matmul::activations::QK_K;
    use half::f16;
    use std::arch::aarch64::*;
    use std::ptr::read_unaligned;

    /// Per super-block, each weight row's 256 codes are unpacked once into 16 registers (0..15
    /// as i8, sub-block s in registers 2s and 2s + 1) and meet every activation row: widening
    /// multiplies summed in i16 lanes (4 products, at most 4·15·127), pairwise widened to i32
    /// and scaled by the sub-block's scale.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn tile(t: &Tile<'_>, out: &mut [[f32; MAX_TILE]; MAX_TILE]) {
        let nibble = vdupq_n_u8(0x0f);
        for (r, out_row) in out.iter_mut().enumerate().take(t.rows) {
            let mut sums = [0f32; MAX_TILE];
            for b in 0..t.blocks {
                let w = t.w.as_ptr().add(r * t.w_row_stride + b * t.w_block_stride);
                let d = f16::from_bits(read_unaligned(w.cast::<u16>())).to_f32();
                let dmin = f16::from_bits(read_unaligned(w.add(2).cast::<u16>())).to_f32();
                let (scales, mins) = scales_mins(read_unaligned(w.add(4).cast::<[u8; 12]>()));
                let mins = vreinterpretq_s16_u16(vmovl_u8(vcreate_u8(mins)));
                let mut q = [vdupq_n_s8(0); 16];
                for j in 0..4 {
                    let lo = vld1q_u8(w.add(16 + 32 * j));
                    let hi = vld1q_u8(w.add(32 + 32 * j));
                    q[4 * j] = vreinterpretq_s8_u8(vandq_u8(lo, nibble));
                    q[4 * j + 1] = vreinterpretq_s8_u8(vandq_u8(hi, nibble));
                    q[4 * j + 2] = vreinterpretq_s8_u8(vshrq_n_u8::<4>(lo));
                    q[4 * j + 3] = vreinterpretq_s8_u8(vshrq_n_u8::<4>(hi));
                }
                for (c, sum) in sums.iter_mut().enumerate().take(t.cols) {
                    let a = t.a.as_ptr().add(c * t.a_row_bytes + b * A_BYTES);
                    let x = a.add(4).cast::<i8>();
                    let mut dot = vdupq_n_s32(0);
                    for s in 0..8 {
                        let (a0, a1) = (vld1q_s8(x.add(32 * s)), vld1q_s8(x.add(32 * s + 16)));
                        let mut p = vmull_s8(vget_low_s8(q[2 * s]), vget_low_s8(a0));
                        p = vmlal_high_s8(p, q[2 * s], a0);
                        p = vmlal_s8(p, vget_low_s8(q[2 * s + 1]), vget_low_s8(a1));
                        p = vmlal_high_s8(p, q[2 * s + 1], a1);
                        dot = vmlaq_n_s32(dot, vpaddlq_s16(p), (scales >> (8 * s)) as u8 as i32);
                    }
                    // bsums[2s] + bsums[2s + 1] in lane s (at most 2·16·127), times m_s.
                    let bsums = a.add(4 + QK_K).cast::<i16>();
                    let pairs = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums.add(8)));
                    let min_dot = vmlal_high_s16(
                        vmull_s16(vget_low_s16(pairs), vget_low_s16(mins)),
                        pairs,
                        mins,
                    );
                    let da = read_unaligned(a.cast::<f32>());
                    *sum += da * (d * vaddvq_s32(dot) as f32 - dmin * vaddvq_s32(min_dot) as f32);
                }
            }
            out_row[..t.cols].copy_from_slice(&sums[..t.cols]);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tiles_match_the_reference() {
        super::super::testing::check_tiles(crate::QuantType::Q4K);
    }
}
