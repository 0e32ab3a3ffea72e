//! Q6_K weights × [`Q8KBlock`] activations.
//!
//! A Q6_K super-block (210 bytes) holds 256 values in 16 sub-blocks of 16, each a 6-bit code
//! `q` split into its low 4 bits and its high 2:
//!
//! - bytes 0..128, `ql`: the low 4 bits, two halves of 64 bytes (values 0..128 and 128..256);
//!   in half n, byte l < 32 holds value 128n + l in its low nibble and 128n + 64 + l in its
//!   high one, byte 32 + l values 128n + 32 + l and 128n + 96 + l;
//! - bytes 128..192, `qh`: the high 2 bits, two halves of 32 bytes: in half n, byte l holds
//!   those of values 128n + l, + 32, + 64 and + 96 in its bits 0-1, 2-3, 4-5 and 6-7;
//! - bytes 192..208: one signed 8-bit scale `sc` per sub-block of 16 values;
//! - bytes 208..210: `d` (f16), the scale of the scales.
//!
//! A value is `d·sc·(q − 32)`. Against a Q8_K block (scale `da`, codes `a`, `bsums`) the
//! super-block's dot product is `da·d·(Σ_k sc_k·Σ_{i∈k} q_i·a_i − 32·Σ_k sc_k·bsums[k])`: the
//! offset meets the activations' sums of 16, so that the codes stay unsigned.

use super::activations::{read_block, Q8KBlock, QK_K};
use super::{Isa, Tile, TileFn, MAX_TILE};
use half::f16;

pub(super) const BLOCK_BYTES: usize = 210;
/// Bytes of one activation block.
const A_BYTES: usize = size_of::<Q8KBlock>();

pub(super) fn select(isa: Isa) -> TileFn {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => super::super_blocks_x86::tile_avx512vnni::<x86::Q6K512>,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => super::super_blocks_x86::tile_avx2::<x86::Q6K>,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => tile_neon,
        _ => tile_scalar,
    }
}

/// A super-block's 256 codes (0..63) in value order.
fn codes(block: &[u8]) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for half in 0..2 {
        let ql = &block[64 * half..][..64];
        let qh = &block[128 + 32 * half..][..32];
        let q = &mut q[128 * half..][..128];
        for l in 0..32 {
            let h = qh[l];
            q[l] = (ql[l] & 15) | (h & 3) << 4;
            q[l + 32] = (ql[l + 32] & 15) | (h >> 2 & 3) << 4;
            q[l + 64] = (ql[l] >> 4) | (h >> 4 & 3) << 4;
            q[l + 96] = (ql[l + 32] >> 4) | (h >> 6) << 4;
        }
    }
    q
}

/// The portable kernel, and the reference the SIMD ones are read against.
fn tile_scalar(t: &Tile<'_>, out: &mut [[f32; MAX_TILE]; MAX_TILE]) {
    for (r, out_row) in out.iter_mut().enumerate().take(t.rows) {
        let mut sums = [0f32; MAX_TILE];
        for b in 0..t.blocks {
            let wb = t.w_block(r, b, BLOCK_BYTES);
            let q = codes(wb);
            let scales = &wb[192..208];
            let d = f16::from_le_bytes([wb[208], wb[209]]).to_f32();
            for (c, sum) in sums.iter_mut().enumerate().take(t.cols) {
                let ab: Q8KBlock = read_block(&t.a[c * t.a_row_bytes + b * A_BYTES..]);
                let mut dot = 0i32;
                for (k, &scale) in scales.iter().enumerate() {
                    let sub: i32 = q[16 * k..16 * k + 16]
                        .iter()
                        .zip(&ab.qs[16 * k..16 * k + 16])
                        .map(|(&q, &a)| q as i32 * a as i32)
                        .sum();
                    dot += scale as i8 as i32 * (sub - 32 * ab.bsums[k] as i32);
                }
                *sum += ab.d * d * dot as f32;
            }
        }
        out_row[..t.cols].copy_from_slice(&sums[..t.cols]);
    }
}

/// The body of the AVX2 and AVX-512 VNNI kernels ([`super::super_blocks_x86`]).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::BLOCK_BYTES;
    use crate::matmul::activations::QK_K;
    use crate::matmul::super_blocks_x86::{dpwssd512, interleave, SuperBlocks};
    use std::arch::x86_64::*;
    use std::ptr::read_unaligned;

    /// One activation super-block, prepared once for every weight row of the tile.
    #[derive(Clone, Copy)]
    pub(in super::super) struct Prepared {
        /// The codes, chunks 2v and 2v + 1 interleaved as [`interleave`] does into registers
        /// 2v and 2v + 1.
        codes: [__m256i; 8],
        /// The scale `da` in every lane.
        da: __m256,
        /// The sums of 16 codes, i16.
        bsums: __m256i,
    }

    /// Per super-block, a weight row's 6-bit codes are assembled from their two parts into 8
    /// registers of 32 unsigned codes in the activations' layout; per activation row and pair of
    /// chunks, two `maddubs` (u8 code × i8 activation, adjacent pairs summed to i16: at most
    /// 2·63·127, twice that after the add) and one multiply-add by the four sub-blocks' scales
    /// into i32 lanes, which start from the offset's `−32·Σ_k sc_k·bsums[k]`. Each (row, column)
    /// pair's integer sum is scaled into its f32 accumulator once per super-block.
    pub(in super::super) struct Q6K;

    impl SuperBlocks for Q6K {
        const BLOCK_BYTES: usize = BLOCK_BYTES;

        type Prepared = Prepared;
        type Acc = __m256;

        #[inline(always)]
        unsafe fn prepare(a: *const u8) -> Prepared {
            let mut codes = [_mm256_setzero_si256(); 8];
            for v in 0..4 {
                let x = a.add(4 + 64 * v);
                [codes[2 * v], codes[2 * v + 1]] = interleave(
                    _mm256_loadu_si256(x.cast()),
                    _mm256_loadu_si256(x.add(32).cast()),
                );
            }
            Prepared {
                codes,
                da: _mm256_set1_ps(read_unaligned(a.cast::<f32>())),
                bsums: _mm256_loadu_si256(a.add(4 + QK_K).cast()),
            }
        }

        #[inline(always)]
        unsafe fn block<const COLS: usize>(
            w: *const u8,
            a: [&Prepared; COLS],
            row: &mut [__m256; COLS],
        ) {
            let low4 = _mm256_set1_epi8(0x0f);
            let high2 = _mm256_set1_epi8(0x30);
            let d = read_unaligned(w.add(208).cast::<u16>());
            let d = _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(d as i32)));
            // The 16 scales as i16: the offset's multipliers, −32·sc_k in lane k
            // (bsums[k]'s lane), and each half's scales in both 128-bit lanes for the
            // shuffles.
            let scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(192).cast()));
            let offset = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16::<5>(scales));
            let halves = [
                _mm256_permute2x128_si256::<0x00>(scales, scales),
                _mm256_permute2x128_si256::<0x11>(scales, scales),
            ];
            let mut dot = [_mm256_setzero_si256(); COLS];
            for c in 0..COLS {
                dot[c] = _mm256_madd_epi16(a[c].bsums, offset);
            }
            for (n, half) in halves.iter().enumerate() {
                let ql0 = _mm256_loadu_si256(w.add(64 * n).cast());
                let ql1 = _mm256_loadu_si256(w.add(64 * n + 32).cast());
                let qh = _mm256_loadu_si256(w.add(128 + 32 * n).cast());
                // Chunks 4n..4n + 4 of 32 codes: low 4 bits from ql, high 2 from qh.
                let chunks = [
                    _mm256_or_si256(
                        _mm256_and_si256(ql0, low4),
                        _mm256_and_si256(_mm256_slli_epi16::<4>(qh), high2),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(ql1, low4),
                        _mm256_and_si256(_mm256_slli_epi16::<2>(qh), high2),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low4),
                        _mm256_and_si256(qh, high2),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low4),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(qh), high2),
                    ),
                ];
                for p in 0..2 {
                    let [w0, w1] = interleave(chunks[2 * p], chunks[2 * p + 1]);
                    // Scales 4p..4p + 4 of this half as interleave lays the sub-blocks
                    // out: [4p, 4p + 2 | 4p + 1, 4p + 3], four i16 lanes each.
                    let k = |i: i16| (4 * p as i16 + i) * 0x0202 + 0x0100;
                    let (k0, k1, k2, k3) = (k(0), k(2), k(1), k(3));
                    let scale = _mm256_shuffle_epi8(
                        *half,
                        _mm256_setr_epi16(
                            k0, k0, k0, k0, k1, k1, k1, k1, k2, k2, k2, k2, k3, k3, k3, k3,
                        ),
                    );
                    let v = 4 * n + 2 * p;
                    for c in 0..COLS {
                        let prod = _mm256_add_epi16(
                            _mm256_maddubs_epi16(w0, a[c].codes[v]),
                            _mm256_maddubs_epi16(w1, a[c].codes[v + 1]),
                        );
                        dot[c] = _mm256_add_epi32(dot[c], _mm256_madd_epi16(prod, scale));
                    }
                }
            }
            for c in 0..COLS {
                let x = _mm256_cvtepi32_ps(dot[c]);
                row[c] = _mm256_fmadd_ps(x, _mm256_mul_ps(d, a[c].da), row[c]);
            }
        }
    }

    /// A [`Prepared`] for [`Q6K512`]: half n's codes in registers 2n and 2n + 1, laid out as
    /// that kernel's weight registers are.
    #[derive(Clone, Copy)]
    pub(in super::super) struct Prepared512 {
        codes: [__m512i; 4],
        /// The scale `da` in every lane.
        da: __m512,
        /// The sums of 16 codes, i16.
        bsums: __m256i,
    }

    /// [`Q6K`] on 512-bit vectors with `vpdpwssd` (AVX-512 VNNI). Per half of 128 values, the
    /// 64 bytes of low bits are one load, [ql0 | ql1], whose low and high nibbles give chunks
    /// [0 | 1] and [2 | 3] (the 32-byte chunks of the half in value order); the high 2 bits come
    /// from qh shifted by a per-256-bit-lane count. Chunks 0 and 2, and 1 and 3, are
    /// interleaved by quadwords as [`interleave`] does; the integer sums are [`Q6K`]'s.
    pub(in super::super) struct Q6K512;

    impl SuperBlocks for Q6K512 {
        const BLOCK_BYTES: usize = BLOCK_BYTES;

        type Prepared = Prepared512;
        type Acc = __m512;

        #[inline(always)]
        unsafe fn prepare(a: *const u8) -> Prepared512 {
            let mut codes = [_mm512_setzero_si512(); 4];
            for n in 0..2 {
                // Chunks [0 | 1] and [2 | 3] of half n.
                let x = _mm512_loadu_si512(a.add(4 + 128 * n).cast());
                let y = _mm512_loadu_si512(a.add(4 + 128 * n + 64).cast());
                codes[2 * n] = _mm512_unpacklo_epi64(x, y);
                codes[2 * n + 1] = _mm512_unpackhi_epi64(x, y);
            }
            Prepared512 {
                codes,
                da: _mm512_set1_ps(read_unaligned(a.cast::<f32>())),
                bsums: _mm256_loadu_si256(a.add(4 + QK_K).cast()),
            }
        }

        #[inline(always)]
        unsafe fn block<const COLS: usize>(
            w: *const u8,
            a: [&Prepared512; COLS],
            row: &mut [__m512; COLS],
        ) {
            let low4 = _mm512_set1_epi8(0x0f);
            let high2 = _mm512_set1_epi8(0x30);
            // qh's bits for chunks 0 and 1 (shifted up by 4 and 2), and for 2 and 3 (by 0, and
            // down by 2), one count per 256-bit lane.
            let up = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2);
            let down = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
            let d = read_unaligned(w.add(208).cast::<u16>());
            let d = _mm512_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(d as i32)));
            // −32·sc_k in i16 lane k, bsums[k]'s lane: the offset's share.
            let scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(192).cast()));
            let offset = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16::<5>(scales));
            let mut dot = [_mm512_setzero_si512(); COLS];
            for c in 0..COLS {
                dot[c] = _mm512_zextsi256_si512(_mm256_madd_epi16(a[c].bsums, offset));
            }
            for n in 0..2 {
                let ql = _mm512_loadu_si512(w.add(64 * n).cast());
                let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(w.add(128 + 32 * n).cast()));
                let first = _mm512_or_si512(
                    _mm512_and_si512(ql, low4),
                    _mm512_and_si512(_mm512_sllv_epi64(qh, up), high2),
                );
                let second = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16::<4>(ql), low4),
                    _mm512_and_si512(_mm512_srlv_epi64(qh, down), high2),
                );
                let w0 = _mm512_unpacklo_epi64(first, second);
                let w1 = _mm512_unpackhi_epi64(first, second);
                // The sub-blocks of 16 by 128-bit lane l: chunk l / 2's half l % 2 in i16
                // lanes 0..3, chunk l / 2 + 2's in 4..7, that is sub-blocks 8n + l and
                // 8n + l + 4: the half's 8 scales as i16 in every lane, then picked.
                let half = _mm512_broadcast_i32x4(_mm_cvtepi8_epi16(_mm_loadl_epi64(
                    w.add(192 + 8 * n).cast(),
                )));
                let index: [i16; 32] = std::array::from_fn(|i| {
                    let (lane, group) = (i / 8, (i % 8) / 4);
                    let k = (lane + 4 * group) as i16;
                    k * 0x0202 + 0x0100
                });
                let scale = _mm512_shuffle_epi8(half, _mm512_loadu_si512(index.as_ptr().cast()));
                for c in 0..COLS {
                    let prod = _mm512_add_epi16(
                        _mm512_maddubs_epi16(w0, a[c].codes[2 * n]),
                        _mm512_maddubs_epi16(w1, a[c].codes[2 * n + 1]),
                    );
                    dot[c] = dpwssd512(dot[c], prod, scale);
                }
            }
            for c in 0..COLS {
                let x = _mm512_cvtepi32_ps(dot[c]);
                row[c] = _mm512_fmadd_ps(x, _mm512_mul_ps(d, a[c].da), row[c]);
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
    use super::{Tile, A_BYTES, MAX_TILE};
    use half::f16;
    use std::arch::aarch64::*;
    use std::ptr::read_unaligned;

    /// Per super-block, each weight row's 256 codes are assembled once into 16 registers of
    /// signed `q − 32` (register k: sub-block k) and meet every activation row: widening
    /// multiplies summed in i16 lanes (2 products, at most 2·32·128), pairwise widened to i32
    /// and scaled by the sub-block's scale.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn tile(t: &Tile<'_>, out: &mut [[f32; MAX_TILE]; MAX_TILE]) {
        let low4 = vdupq_n_u8(0x0f);
        let high2 = vdupq_n_u8(0x30);
        let offset = vdupq_n_s8(32);
        for (r, out_row) in out.iter_mut().enumerate().take(t.rows) {
            let mut sums = [0f32; MAX_TILE];
            for b in 0..t.blocks {
                let w = t.w.as_ptr().add(r * t.w_row_stride + b * t.w_block_stride);
                let d = f16::from_bits(read_unaligned(w.add(208).cast::<u16>())).to_f32();
                let scales = w.add(192).cast::<i8>();
                let mut q = [vdupq_n_s8(0); 16];
                for half in 0..2 {
                    for l in 0..2 {
                        let ql0 = vld1q_u8(w.add(64 * half + 16 * l));
                        let ql1 = vld1q_u8(w.add(64 * half + 32 + 16 * l));
                        let qh = vld1q_u8(w.add(128 + 32 * half + 16 * l));
                        let codes = [
                            vorrq_u8(vandq_u8(ql0, low4), vandq_u8(vshlq_n_u8::<4>(qh), high2)),
                            vorrq_u8(vandq_u8(ql1, low4), vandq_u8(vshlq_n_u8::<2>(qh), high2)),
                            vorrq_u8(vshrq_n_u8::<4>(ql0), vandq_u8(qh, high2)),
                            vorrq_u8(vshrq_n_u8::<4>(ql1), vandq_u8(vshrq_n_u8::<2>(qh), high2)),
                        ];
                        // Values 128·half + 32·i + 16·l + 0..16: sub-block 8·half + 2·i + l.
                        for (i, codes) in codes.into_iter().enumerate() {
                            q[8 * half + 2 * i + l] = vsubq_s8(vreinterpretq_s8_u8(codes), offset);
                        }
                    }
                }
                for (c, sum) in sums.iter_mut().enumerate().take(t.cols) {
                    let a = t.a.as_ptr().add(c * t.a_row_bytes + b * A_BYTES);
                    let x = a.add(4).cast::<i8>();
                    let mut dot = vdupq_n_s32(0);
                    for (k, q) in q.iter().enumerate() {
                        let a = vld1q_s8(x.add(16 * k));
                        let p = vmlal_high_s8(vmull_s8(vget_low_s8(*q), vget_low_s8(a)), *q, a);
                        dot = vmlaq_n_s32(dot, vpaddlq_s16(p), *scales.add(k) as i32);
                    }
                    let da = read_unaligned(a.cast::<f32>());
                    *sum += da * d * vaddvq_s32(dot) as f32;
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
        super::super::testing::check_tiles(crate::QuantType::Q6K);
    }
}
