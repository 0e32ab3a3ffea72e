//! What the x86 kernels of the 256-value super-block types (Q4_K, Q6_K) share: their entry
//! points per instruction set, and the vector helpers of their bodies.
//!
//! The tile loop ([`tile`]) is written once, over a type's per-super-block work
//! ([`SuperBlocks`], all `#[inline(always)]`), and compiled into an AVX2 entry and an AVX-512
//! VNNI one, each with its `#[target_feature]`s; the number of activation rows is a constant in
//! it so that the loops over them unroll and their accumulators live in registers.

use super::activations::Q8KBlock;
use super::{Tile, MAX_TILE};
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// A tile's outputs, `[weight row][activation row]`.
type Out = [[f32; MAX_TILE]; MAX_TILE];

/// A super-block weight type's work per super-block on one instruction set, for [`tile`].
///
/// # Safety
/// For every function: the pointers hold a whole block; the CPU has the instruction set of the
/// entry point the implementation is handed to ([`tile_avx2`], [`tile_avx512vnni`]).
pub(super) trait SuperBlocks {
    /// Bytes of one weight super-block.
    const BLOCK_BYTES: usize;
    /// One activation super-block ([`Q8KBlock`]) as the weight blocks meet it.
    type Prepared: Copy;
    /// A (weight row, activation row) pair's running sum, spread over f32 lanes.
    type Acc: Lanes;
    unsafe fn prepare(a: *const u8) -> Self::Prepared;
    /// Adds the dot products of the weight super-block at `w` with the activation super-blocks
    /// `a` (one per activation row) to `row`.
    unsafe fn block<const COLS: usize>(
        w: *const u8,
        a: [&Self::Prepared; COLS],
        row: &mut [Self::Acc; COLS],
    );
}

/// A vector of f32 lanes that accumulates a dot product.
pub(super) trait Lanes: Copy {
    unsafe fn zero() -> Self;
    /// The sum of the lanes.
    unsafe fn sum(self) -> f32;
}

impl Lanes for __m256 {
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm256_setzero_ps()
    }

    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        let s = _mm_add_ps(
            _mm256_castps256_ps128(self),
            _mm256_extractf128_ps::<1>(self),
        );
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
}

impl Lanes for __m512 {
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm512_setzero_ps()
    }

    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        _mm512_reduce_add_ps(self)
    }
}

/// The AVX2 kernel of type `K`.
pub(super) fn tile_avx2<K: SuperBlocks>(t: &Tile<'_>, out: &mut Out) {
    t.check_bounds(K::BLOCK_BYTES, size_of::<Q8KBlock>());
    // SAFETY: the type's select() hands this kernel out for Isa::Avx2 only, which Isa::detect/
    // available report only when the CPU has AVX2, FMA and F16C; the blocks are in bounds.
    unsafe {
        match t.cols {
            1 => avx2::<K, 1>(t, out),
            2 => avx2::<K, 2>(t, out),
            3 => avx2::<K, 3>(t, out),
            _ => avx2::<K, 4>(t, out),
        }
    }
}

/// The AVX-512 VNNI kernel of type `K`.
pub(super) fn tile_avx512vnni<K: SuperBlocks>(t: &Tile<'_>, out: &mut Out) {
    t.check_bounds(K::BLOCK_BYTES, size_of::<Q8KBlock>());
    // SAFETY: the type's select() hands this kernel out for Isa::Avx512Vnni only, which
    // Isa::detect/available report only when the CPU has AVX2, FMA, F16C, AVX-512 F/BW/VL and
    // VNNI; the blocks are in bounds.
    unsafe {
        match t.cols {
            1 => avx512vnni::<K, 1>(t, out),
            2 => avx512vnni::<K, 2>(t, out),
            3 => avx512vnni::<K, 3>(t, out),
            _ => avx512vnni::<K, 4>(t, out),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2<K: SuperBlocks, const COLS: usize>(t: &Tile<'_>, out: &mut Out) {
    tile::<K, COLS>(t, out)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn avx512vnni<K: SuperBlocks, const COLS: usize>(t: &Tile<'_>, out: &mut Out) {
    tile::<K, COLS>(t, out)
}

/// The tile with exactly COLS activation rows, bounds already checked.
///
/// [`GROUP`] super-blocks at a time, the activation rows' super-blocks are prepared, then meet
/// each weight row in turn, super-block by super-block. The weight rows are a loop, not
/// unrolled, so that the compiler keeps one row's values in registers rather than interleaving
/// rows and spilling.
#[inline(always)]
unsafe fn tile<K: SuperBlocks, const COLS: usize>(t: &Tile<'_>, out: &mut Out) {
    let a_bytes = size_of::<Q8KBlock>();
    let mut acc = [[K::Acc::zero(); COLS]; MAX_TILE];
    let ahead = t.prefetch_distance(K::BLOCK_BYTES);
    // [super-block][column]; only the first `group` super-blocks are written and read.
    let mut prepared = [[MaybeUninit::<K::Prepared>::uninit(); COLS]; GROUP];
    for b0 in (0..t.blocks).step_by(GROUP) {
        let group = GROUP.min(t.blocks - b0);
        for (g, prepared) in prepared.iter_mut().enumerate().take(group) {
            for (c, p) in prepared.iter_mut().enumerate() {
                p.write(K::prepare(
                    t.a.as_ptr().add(c * t.a_row_bytes + (b0 + g) * a_bytes),
                ));
            }
        }
        for (r, acc) in acc.iter_mut().enumerate().take(t.rows) {
            let mut row = *acc;
            for (g, a) in prepared.iter().enumerate().take(group) {
                let a = std::array::from_fn(|c| a[c].assume_init_ref());
                let w =
                    t.w.as_ptr()
                        .add(r * t.w_row_stride + (b0 + g) * t.w_block_stride);
                prefetch_ahead::<K>(w, ahead);
                K::block::<COLS>(w, a, &mut row);
            }
            *acc = row;
        }
    }
    for (out_row, acc) in out.iter_mut().zip(&acc).take(t.rows) {
        for (out, acc) in out_row.iter_mut().zip(acc) {
            *out = acc.sum();
        }
    }
}

/// Super-blocks of activations prepared at a time. The weight rows are then read 8
/// super-blocks (1152 bytes of Q4_K, 1680 of Q6_K) in a row, a stream the hardware prefetchers
/// follow, and the prepared activations (2.5 KiB per activation row) stay in L1.
const GROUP: usize = 8;

/// `acc + Σ p·s` over pairs of i16 lanes into the i32 lanes: `vpdpwssd` written out, because
/// LLVM splits the intrinsic back into `vpmaddwd` + `vpaddd` for CPUs it does not know to run it
/// fast (every CPU, compiled for generic x86-64), which costs an instruction per use in a loop
/// bound by instruction throughput.
#[target_feature(enable = "avx512vnni,avx512f")]
#[inline]
pub(super) unsafe fn dpwssd512(mut acc: __m512i, p: __m512i, s: __m512i) -> __m512i {
    std::arch::asm!(
        "vpdpwssd {acc}, {p}, {s}",
        acc = inout(zmm_reg) acc,
        p = in(zmm_reg) p,
        s = in(zmm_reg) s,
        options(pure, nomem, nostack, preserves_flags),
    );
    acc
}

/// Two vectors interleaved by quadwords, [x0 y0 | x2 y2] and [x1 y1 | x3 y3]: in the i16 lanes
/// of a `maddubs` product of either, x's bytes land in lanes 0..3 and 8..11 and y's in 4..7 and
/// 12..15, so that two products can be added before one multiply by per-lane-group scales.
#[inline(always)]
pub(super) unsafe fn interleave(x: __m256i, y: __m256i) -> [__m256i; 2] {
    [_mm256_unpacklo_epi64(x, y), _mm256_unpackhi_epi64(x, y)]
}

/// Asks for the super-block `ahead` bytes down. Prefetches never fault, so the address may lie
/// past the weights.
#[inline(always)]
unsafe fn prefetch_ahead<K: SuperBlocks>(block: *const u8, ahead: usize) {
    let next = block.wrapping_add(ahead);
    for line in (0..K::BLOCK_BYTES).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(line).cast());
    }
}
