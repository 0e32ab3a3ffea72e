//! F16 weights × activations rounded to f16 ([`super::ActFormat::F16`], kept as f32),
//! accumulated in f32 (ggml's `vec_dot_f16`: it rounds the activations to f16 too). A "block"
//! is one value: `Tile::blocks` is the row length.

use super::{Isa, PanelFn, Tile, TileFn, MAX_TILE};
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

/// The prompt kernel where this tier has one (AVX-512).
pub(super) fn select_panel(isa: Isa) -> Option<PanelFn> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => Some(x86::panel_avx512),
        _ => None,
    }
}

fn weight(bytes: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32()
}

fn activation(bytes: &[u8], i: usize) -> f32 {
    f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap())
}

/// Σ w[i]·a[i] for i in `range`, one value at a time (the portable kernel and the SIMD tails).
fn dot_range(w: &[u8], a: &[u8], range: std::ops::Range<usize>) -> f32 {
    range.map(|i| weight(w, i) * activation(a, i)).sum()
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
    //! Each step converts LANES values of every weight row of the tile to f32 once (F16C) and
    //! does R × C fused multiply-adds into per-pair accumulators; the sub-tile shapes are const
    //! generics so the accumulators live in registers.

    use super::super::{Panel, Tile, MAX_TILE, PANEL_ROWS};
    use super::{dot_range, weight};
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    type Out = [[f32; MAX_TILE]; MAX_TILE];
    /// A sub-tile kernel: rows 0..R × columns c0..c0 + C; tables of them by [R − 1][C − 1].
    type SubTile = unsafe fn(&Tile<'_>, usize, usize, &mut Out);

    /// The kernels read each row's values as one run: blocks of one value, 2 bytes apart.
    fn check_bounds(t: &Tile<'_>) {
        assert_eq!(t.w_block_stride, 2, "F16 rows are contiguous");
        t.check_bounds(2, 4);
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
        let ahead = t.prefetch_distance(2);
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut i = 0;
        while i < n {
            let mut wv = [_mm256_setzero_ps(); R];
            for (r, wv) in wv.iter_mut().enumerate() {
                let at = w.add((r0 + r) * t.w_row_stride + 2 * i);
                // As in `avx512`.
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(ahead).cast());
                *wv = _mm256_cvtph_ps(_mm_loadu_si128(at.cast()));
            }
            for c in 0..C {
                let av = _mm256_loadu_ps(a.add((c0 + c) * t.a_row_bytes + 4 * i).cast());
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
        let ahead = t.prefetch_distance(2);
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let mut i = 0;
        while i < n {
            let mut wv = [_mm512_setzero_ps(); R];
            for (r, wv) in wv.iter_mut().enumerate() {
                let at = w.add((r0 + r) * t.w_row_stride + 2 * i);
                // Generation streams the rows from memory, in 4 KiB pages of the mapped file,
                // which the hardware prefetchers do not run across. Never faults.
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(ahead).cast());
                *wv = _mm512_cvtph_ps(_mm256_loadu_si256(at.cast()));
            }
            for c in 0..C {
                let av = _mm512_loadu_ps(a.add((c0 + c) * t.a_row_bytes + 4 * i).cast());
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

    /// Activation rows one pass of the prompt kernel takes: 2 accumulators each.
    const PASS_COLS: usize = 12;

    /// Rows of a panel half: a 512-bit vector's f32 lanes.
    const HALF: usize = 16;
    /// The panel's rows as vectors.
    const HALVES: usize = PANEL_ROWS / HALF;

    /// Prompts on AVX-512. The panel's weights are widened to f32 once, value by value across
    /// its rows: `wide[i]` holds value i of each of the 32 rows in two vectors. Each activation
    /// value is then broadcast against those two vectors, so one broadcast feeds two FMAs of
    /// 16 rows each and no conversion runs in the inner loop (the tile kernel converts each
    /// weight once per pair of activation rows). A pass's 24 accumulators, 2 weight vectors and
    /// a broadcast fill the 32 registers; with 16 rows, a load per FMA bounded the pass.
    pub(super) fn panel_avx512(p: &Panel<'_>, out: &mut [[f32; PANEL_ROWS]]) {
        thread_local! {
            /// The widened panel, [k] pairs of vectors.
            static WIDE: RefCell<Vec<[__m512; HALVES]>> = const { RefCell::new(Vec::new()) };
        }
        let k = p.w.cols;
        assert!(
            p.w.layout == super::super::Layout::Rows
                && p.a_row_bytes >= 4 * k
                && p.a.len() >= out.len() * p.a_row_bytes,
            "F16 panel operands"
        );
        const PASSES: [Pass; PASS_COLS] = [
            pass::<1>, pass::<2>, pass::<3>, pass::<4>, pass::<5>, pass::<6>, pass::<7>, pass::<8>,
            pass::<9>, pass::<10>, pass::<11>, pass::<12>,
        ];
        WIDE.with_borrow_mut(|wide| {
            // SAFETY: only selected when Isa::detect/available found AVX-512 F (and F16C);
            // `widen` writes k vector pairs and reads each panel row's 2k bytes, `pass` reads k
            // pairs and k values of each of its activation rows, all checked above.
            unsafe {
                widen(p, wide);
                let passes = out.len().div_ceil(PASS_COLS);
                for (c0, out) in (0..).step_by(PASS_COLS).zip(out.chunks_mut(PASS_COLS)) {
                    p.prefetch_next(c0 / PASS_COLS, passes);
                    let a = p.a.as_ptr().add(c0 * p.a_row_bytes);
                    PASSES[out.len() - 1](wide, a, p.a_row_bytes, out);
                }
            }
        });
    }

    type Pass = unsafe fn(&[[__m512; HALVES]], *const u8, usize, &mut [[f32; PANEL_ROWS]]);

    /// The panel's rows into `wide`: `wide[i][h]` lane l = value i of row 16h + l (0 past the
    /// last row), by blocks of 16 values of 16 rows transposed in registers.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn widen(p: &Panel<'_>, wide: &mut Vec<[__m512; HALVES]>) {
        const LANES: usize = 16;
        let k = p.w.cols;
        wide.clear();
        wide.resize(k, [_mm512_setzero_ps(); HALVES]);
        // The panel's rows, one after another (F16 weights are always in rows).
        let rows = &p.w.bytes[p.first * 2 * k..][..p.rows() * 2 * k];
        let whole = k / LANES * LANES;
        for (h, half) in rows.chunks(HALF * 2 * k).enumerate() {
            for i0 in (0..whole).step_by(LANES) {
                let mut block = [_mm512_setzero_ps(); HALF];
                for (block, row) in block.iter_mut().zip(half.chunks_exact(2 * k)) {
                    let at = row.as_ptr().add(2 * i0);
                    // 512 values ahead in each of the 16 rows: they come from memory, and 16
                    // streams at once leave the hardware prefetchers behind (Qwen2.5-0.5B F16
                    // prompt: ~280 → ~320 tokens/s). Prefetches never fault, hence wrapping_add.
                    _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(1024).cast());
                    *block = _mm512_cvtph_ps(_mm256_loadu_si256(at.cast()));
                }
                transpose(&mut block);
                for (wide, column) in wide[i0..i0 + LANES].iter_mut().zip(block) {
                    wide[h] = column;
                }
            }
        }
        // The last values of a row that is not a multiple of 16 long, one at a time.
        let lanes: &mut [[f32; PANEL_ROWS]] =
            std::slice::from_raw_parts_mut(wide.as_mut_ptr().cast(), k);
        for (r, row) in rows.chunks_exact(2 * k).enumerate() {
            for (i, lane) in lanes.iter_mut().enumerate().skip(whole) {
                lane[r] = weight(row, i);
            }
        }
    }

    /// The 16×16 block `m` (vector r = row r) transposed in place (vector i = value i of every
    /// row): blocks of 8, 4, 2 and 1 rows swapped across the diagonal in turn.
    #[inline(always)]
    unsafe fn transpose(m: &mut [__m512; 16]) {
        swap_across::<8>(m);
        swap_across::<4>(m);
        swap_across::<2>(m);
        swap_across::<1>(m);
    }

    /// One step of [`transpose`]: row i takes the lanes of row i + D that face it across the
    /// diagonal, and the other way round. D is a constant so that the loop unrolls and the 16
    /// rows stay in registers.
    #[inline(always)]
    unsafe fn swap_across<const D: usize>(m: &mut [__m512; 16]) {
        let low: [i32; 16] =
            std::array::from_fn(|l| if l & D == 0 { l } else { 16 + l - D } as i32);
        let high: [i32; 16] =
            std::array::from_fn(|l| if l & D == 0 { l + D } else { 16 + l } as i32);
        let (low, high) = (
            _mm512_loadu_si512(low.as_ptr().cast()),
            _mm512_loadu_si512(high.as_ptr().cast()),
        );
        for i in 0..16 {
            if i & D == 0 {
                let (a, b) = (m[i], m[i + D]);
                m[i] = _mm512_permutex2var_ps(a, low, b);
                m[i + D] = _mm512_permutex2var_ps(a, high, b);
            }
        }
    }

    /// Activation rows 0..C from `a` (`a_row_bytes` apart) against the widened panel.
    #[allow(clippy::needless_range_loop)] // acc[c] and a row c read as the pass they are
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn pass<const C: usize>(
        wide: &[[__m512; HALVES]],
        a: *const u8,
        a_row_bytes: usize,
        out: &mut [[f32; PANEL_ROWS]],
    ) {
        let mut acc = [[_mm512_setzero_ps(); HALVES]; C];
        for (i, w) in wide.iter().enumerate() {
            for c in 0..C {
                let x = a
                    .add(c * a_row_bytes + 4 * i)
                    .cast::<f32>()
                    .read_unaligned();
                let x = _mm512_set1_ps(x);
                for h in 0..HALVES {
                    acc[c][h] = _mm512_fmadd_ps(w[h], x, acc[c][h]);
                }
            }
        }
        for c in 0..C {
            for h in 0..HALVES {
                _mm512_storeu_ps(out[c].as_mut_ptr().add(HALF * h), acc[c][h]);
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
