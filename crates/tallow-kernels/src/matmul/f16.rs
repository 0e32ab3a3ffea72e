//! F16 weights × f16 activations, accumulated in f32 (ggml's `vec_dot_f16`: it rounds the
//! activations to f16 too). A "block" is one value: `Tile::blocks` is the row length.

use super::{Isa, Tile, TileFn, MAX_TILE};
use half::f16;

pub(super) fn select(isa: Isa) -> TileFn {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => x86::tile_avx512,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::tile_avx2,
        _ => tile_scalar,
    }
}

fn value(bytes: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32()
}

/// Σ w[i]·a[i] for i in `range`, one value at a time (the portable kernel and the SIMD tails).
fn dot_range(w: &[u8], a: &[u8], range: std::ops::Range<usize>) -> f32 {
    range.map(|i| value(w, i) * value(a, i)).sum()
}

/// The portable kernel, and the reference the SIMD ones are read against.
fn tile_scalar(t: &Tile<'_>, out: &mut [[f32; MAX_TILE]; MAX_TILE]) {
    for (r, out_row) in out.iter_mut().enumerate().take(t.rows) {
        let w = &t.w[r * t.w_row_stride..][..2 * t.blocks];
        for (c, out) in out_row.iter_mut().enumerate().take(t.cols) {
            let a = &t.a[c * t.a_row_bytes..][..t.a_row_bytes];
            *out = dot_range(w, a, 0..t.blocks);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Each step converts LANES values of every weight row and every activation row of the tile
    //! to f32 once (F16C) and does R × C fused multiply-adds into per-pair accumulators; the
    //! sub-tile shapes are const generics so the accumulators live in registers.

    use super::super::{Tile, MAX_TILE};
    use super::dot_range;
    use std::arch::x86_64::*;

    type Out = [[f32; MAX_TILE]; MAX_TILE];
    /// A sub-tile kernel: rows 0..R × columns c0..c0 + C; tables of them by [R − 1][C − 1].
    type SubTile = unsafe fn(&Tile<'_>, usize, usize, &mut Out);

    /// The kernels read each row's values as one run: blocks of one value, 2 bytes apart.
    fn check_bounds(t: &Tile<'_>) {
        assert_eq!(t.w_block_stride, 2, "F16 rows are contiguous");
        t.check_bounds(2, 2);
    }

    pub(super) fn tile_avx2(t: &Tile<'_>, out: &mut Out) {
        check_bounds(t);
        // AVX2 has 16 vector registers: at most 4 × 2 accumulators, so wider tiles go in two
        // column halves (the weight rows are re-read from L1).
        const SUB: [[SubTile; 2]; 4] = [
            [avx2::<1, 1>, avx2::<1, 2>],
            [avx2::<2, 1>, avx2::<2, 2>],
            [avx2::<3, 1>, avx2::<3, 2>],
            [avx2::<4, 1>, avx2::<4, 2>],
        ];
        let mut c0 = 0;
        while c0 < t.cols {
            let cols = (t.cols - c0).min(2);
            // SAFETY: tile_avx2 is only selected when Isa::detect/available found AVX2, FMA and
            // F16C; it reads rows < t.rows and columns < t.cols, inside the checked slices.
            unsafe { SUB[t.rows - 1][cols - 1](t, 0, c0, out) };
            c0 += cols;
        }
    }

    pub(super) fn tile_avx512(t: &Tile<'_>, out: &mut Out) {
        check_bounds(t);
        const SUB: [[SubTile; 2]; 4] = [
            [avx512::<1, 1>, avx512::<1, 2>],
            [avx512::<2, 1>, avx512::<2, 2>],
            [avx512::<3, 1>, avx512::<3, 2>],
            [avx512::<4, 1>, avx512::<4, 2>],
        ];
        // SAFETY: only selected when Isa::detect/available found AVX-512 F (and AVX2, FMA,
        // F16C); reads stay inside the tile's checked rows and columns.
        unsafe {
            if t.cols == 1 {
                // Generation: one row after the other, so the weights stream sequentially.
                for r in 0..t.rows {
                    avx512::<1, 1>(t, r, 0, out);
                }
            } else {
                // Two activation rows at a time: 4 × 4 accumulators spill.
                let mut c0 = 0;
                while c0 < t.cols {
                    let cols = (t.cols - c0).min(2);
                    SUB[t.rows - 1][cols - 1](t, 0, c0, out);
                    c0 += cols;
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// Rows 0..R × columns c0..c0 + C of the tile, 8 values a step.
    #[allow(clippy::needless_range_loop)] // acc[r][c] reads as the tile it is
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn avx2<const R: usize, const C: usize>(
        t: &Tile<'_>,
        r0: usize,
        c0: usize,
        out: &mut Out,
    ) {
        const LANES: usize = 8;
        let n = t.blocks / LANES * LANES;
        let (w, a) = (t.w.as_ptr(), t.a.as_ptr());
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut i = 0;
        while i < n {
            let mut wv = [_mm256_setzero_ps(); R];
            for (r, wv) in wv.iter_mut().enumerate() {
                *wv = _mm256_cvtph_ps(_mm_loadu_si128(
                    w.add((r0 + r) * t.w_row_stride + 2 * i).cast(),
                ));
            }
            for c in 0..C {
                let av = _mm256_cvtph_ps(_mm_loadu_si128(
                    a.add((c0 + c) * t.a_row_bytes + 2 * i).cast(),
                ));
                for r in 0..R {
                    acc[r][c] = _mm256_fmadd_ps(wv[r], av, acc[r][c]);
                }
            }
            i += LANES;
        }
        for r in 0..R {
            for c in 0..C {
                let w = &t.w[(r0 + r) * t.w_row_stride..][..2 * t.blocks];
                let a = &t.a[(c0 + c) * t.a_row_bytes..][..t.a_row_bytes];
                out[r0 + r][c0 + c] = hsum256(acc[r][c]) + dot_range(w, a, n..t.blocks);
            }
        }
    }

    /// Rows 0..R × columns c0..c0 + C of the tile, 16 values a step.
    #[allow(clippy::needless_range_loop)] // acc[r][c] reads as the tile it is
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn avx512<const R: usize, const C: usize>(
        t: &Tile<'_>,
        r0: usize,
        c0: usize,
        out: &mut Out,
    ) {
        const LANES: usize = 16;
        let n = t.blocks / LANES * LANES;
        let (w, a) = (t.w.as_ptr(), t.a.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let mut i = 0;
        while i < n {
            let mut wv = [_mm512_setzero_ps(); R];
            for (r, wv) in wv.iter_mut().enumerate() {
                *wv = _mm512_cvtph_ps(_mm256_loadu_si256(
                    w.add((r0 + r) * t.w_row_stride + 2 * i).cast(),
                ));
            }
            for c in 0..C {
                let av = _mm512_cvtph_ps(_mm256_loadu_si256(
                    a.add((c0 + c) * t.a_row_bytes + 2 * i).cast(),
                ));
                for r in 0..R {
                    acc[r][c] = _mm512_fmadd_ps(wv[r], av, acc[r][c]);
                }
            }
            i += LANES;
        }
        for r in 0..R {
            for c in 0..C {
                let w = &t.w[(r0 + r) * t.w_row_stride..][..2 * t.blocks];
                let a = &t.a[(c0 + c) * t.a_row_bytes..][..t.a_row_bytes];
                out[r0 + r][c0 + c] =
                    _mm512_reduce_add_ps(acc[r][c]) + dot_range(w, a, n..t.blocks);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tiles_match_the_reference() {
        super::super::testing::check_tiles(crate::QuantType::F16);
    }
}
