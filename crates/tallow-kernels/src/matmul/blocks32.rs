//! The SIMD tile kernels of the formats of 32-value blocks that start with an f16 scale (Q4_0,
//! Q5_0, Q8_0). Those differ only in how a block unpacks into byte codes, which each format's
//! module says by implementing [`x86::Format`] and [`neon::Format`].
//!
//! The kernels walk the blocks once for a whole tile: per block index, each weight row's block
//! is unpacked once and each activation block read once, the integer dots of the tile's
//! (weight row, activation row) pairs are converted to f32 and added times `d_w · d_a` into
//! vector accumulators that stay in registers, and summed across lanes at the end.

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use super::{Isa, TileFn, MAX_TILE};

/// The SIMD kernel of format `W` for `isa`, or None where this CPU tier has none (the format's
/// portable kernel applies).
#[cfg(target_arch = "x86_64")]
pub(super) fn simd<W: x86::Format>(isa: Isa) -> Option<TileFn> {
    match isa {
        Isa::Avx512Vnni => Some(x86::tile_avx512vnni::<W>),
        Isa::Avx2 => Some(x86::tile_avx2::<W>),
        _ => None,
    }
}

/// The prompt kernel of format `W` for `isa`, or None where this tier has none (the tiles run
/// prompts too).
#[cfg(target_arch = "x86_64")]
pub(super) fn panel<W: x86::Format>(isa: Isa) -> Option<super::PanelFn> {
    match isa {
        Isa::Avx512Vnni => Some(x86::panel_avx512vnni::<W>),
        _ => None,
    }
}

/// No prompt kernels outside x86-64 yet: the tiles run prompts.
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::extra_unused_type_parameters)] // the same call as on x86-64
pub(super) fn panel<W>(_isa: super::Isa) -> Option<super::PanelFn> {
    None
}

/// The SIMD kernel of format `W` for `isa`, or None where this CPU tier has none (the format's
/// portable kernel applies).
#[cfg(target_arch = "aarch64")]
pub(super) fn simd<W: neon::Format>(isa: Isa) -> Option<TileFn> {
    match isa {
        Isa::Neon => Some(neon::select::<W>()),
        _ => None,
    }
}

/// A tile's outputs, `[weight row][activation row]`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
type Out = [[f32; MAX_TILE]; MAX_TILE];

/// The kernels for x86-64: AVX2 (with FMA and F16C), and AVX-512 VNNI (`vpdpbusd` on 512-bit
/// vectors).
///
/// Per block index, the tile's (up to) 4 weight rows of codes are interleaved by 8-byte groups:
/// vector j holds values 8j..8j + 8 of row r in its qword r. Against an activation row's bytes
/// 8j..8j + 8 broadcast to every qword (a plain broadcast load), the dots of that activation row
/// with all the weight rows come out in one vector, lanes 2r and 2r + 1 for weight row r, and
/// are scaled by `d_w[r] · d_a` with one FMA: one conversion and FMA per activation row and
/// block rather than per (row, column) pair, and no scale broadcast per pair.
///
/// Unsigned codes (Q4_0, Q5_0) are multiplied as they are, and the offset's share, −offset·Σa,
/// starts the integer sum (the [`Q8Block`] carries Σa). `vpdpbusd` multiplies unsigned by
/// signed bytes, so Q8_0's signed codes go in shifted by 128 (offset 128); `vpmaddubsw` would
/// saturate on those, so AVX2 moves their sign onto the activations instead.
#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::super::activations::Q8Block;
    use super::super::{Panel, Tile, MAX_TILE, PANEL_ROWS};
    use super::Out;
    use std::arch::x86_64::*;
    use std::cell::RefCell;
    use std::mem::offset_of;

    /// What a block's byte codes stand for.
    pub(in super::super) enum Codes {
        /// Codes 0..2·offset (offset at most 16), a value is `d · (code − offset)`.
        Unsigned(i32),
        /// Signed codes, a value is `d · code`.
        Signed,
    }

    /// A format of 32-value blocks that start with their f16 scale, as the x86 kernels read it.
    pub(in super::super) trait Format {
        const BLOCK_BYTES: usize;
        const CODES: Codes;
        /// The codes of the blocks at `block` in rows 0..R (`row_bytes` apart), by groups of 8:
        /// vector j holds values 8j..8j + 8 of row r in qword r (absent rows zero).
        ///
        /// # Safety
        /// `block` points to R whole blocks `row_bytes` apart; the CPU has AVX2.
        unsafe fn rows<const R: usize>(block: *const u8, row_bytes: usize) -> [__m256i; 4];
        /// [`Format::rows`] where AVX-512 BW and VL can do it faster.
        ///
        /// # Safety
        /// As [`Format::rows`]; the CPU has AVX-512 BW and VL.
        #[inline]
        #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
        unsafe fn rows_avx512<const R: usize>(block: *const u8, row_bytes: usize) -> [__m256i; 4] {
            Self::rows::<R>(block, row_bytes)
        }
    }

    /// Four rows' 16 bytes as two vectors by 8-byte groups: `[p0.q0 p1.q0 | p2.q0 p3.q0]` and
    /// `[p0.q1 p1.q1 | p2.q1 p3.q1]`.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(in super::super) unsafe fn interleave(p: [__m128i; 4]) -> [__m256i; 2] {
        let even = _mm256_set_m128i(p[2], p[0]);
        let odd = _mm256_set_m128i(p[3], p[1]);
        [
            _mm256_unpacklo_epi64(even, odd),
            _mm256_unpackhi_epi64(even, odd),
        ]
    }

    /// Row r's 16 bytes at `at(r)`, or zeros for the rows past R.
    ///
    /// # Safety
    /// Each of the R addresses has 16 bytes.
    #[inline(always)]
    pub(in super::super) unsafe fn load_rows<const R: usize>(
        at: impl Fn(usize) -> *const u8,
    ) -> [__m128i; 4] {
        let mut p = [_mm_setzero_si128(); 4];
        for (r, p) in p.iter_mut().enumerate().take(R) {
            *p = _mm_loadu_si128(at(r).cast());
        }
        p
    }

    /// Whole rows of 32 codes (`rows[r]` in value order) by groups of 8, as [`Format::rows`].
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(in super::super) unsafe fn transpose(rows: [__m256i; 4]) -> [__m256i; 4] {
        let even01 = _mm256_unpacklo_epi64(rows[0], rows[1]);
        let odd01 = _mm256_unpackhi_epi64(rows[0], rows[1]);
        let even23 = _mm256_unpacklo_epi64(rows[2], rows[3]);
        let odd23 = _mm256_unpackhi_epi64(rows[2], rows[3]);
        [
            _mm256_permute2x128_si256::<0x20>(even01, even23),
            _mm256_permute2x128_si256::<0x20>(odd01, odd23),
            _mm256_permute2x128_si256::<0x31>(even01, even23),
            _mm256_permute2x128_si256::<0x31>(odd01, odd23),
        ]
    }

    /// The AVX2 kernel of format `W`.
    pub(in super::super) fn tile_avx2<W: Format>(t: &Tile<'_>, out: &mut Out) {
        debug_assert!(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));
        t.check_bounds(W::BLOCK_BYTES, size_of::<Q8Block>());
        // SAFETY: the kernels are only selected for Isa::Avx2 and Isa::Avx512Vnni, which
        // Isa::available lists only on CPUs with AVX2, FMA and F16C; the blocks are in bounds.
        unsafe { tile_avx2_unchecked::<W>(t, out) }
    }

    /// The AVX-512 VNNI kernel of format `W`.
    pub(in super::super) fn tile_avx512vnni<W: Format>(t: &Tile<'_>, out: &mut Out) {
        debug_assert!(is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("fma"));
        t.check_bounds(W::BLOCK_BYTES, size_of::<Q8Block>());
        // SAFETY: the kernel is only selected for Isa::Avx512Vnni, which Isa::available lists
        // only on CPUs with AVX2, FMA, F16C, AVX-512 F, BW, VL and VNNI; the blocks are in bounds.
        unsafe { tile_avx512vnni_unchecked::<W>(t, out) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_avx2_unchecked<W: Format>(t: &Tile<'_>, out: &mut Out) {
        by_shape::<Avx2, W>(t, out)
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile_avx512vnni_unchecked<W: Format>(t: &Tile<'_>, out: &mut Out) {
        by_shape::<Avx512Vnni, W>(t, out)
    }

    /// A tile kernel of one instruction set, generic over the format and the tile's shape.
    ///
    /// It is `#[inline(always)]` into the `#[target_feature]` entry points above, so the
    /// intrinsics compile with that entry's features.
    trait Kernel {
        /// The tile's `R` weight rows × `C` activation rows.
        unsafe fn tile<W: Format, const R: usize, const C: usize>(t: &Tile<'_>, out: &mut Out);
    }

    struct Avx2;

    impl Avx2 {
        /// The offset of the codes [`Format::rows`] gives: Σ (code − offset)·a = Σ code·a −
        /// offset·Σ a.
        #[inline(always)]
        fn offset<W: Format>() -> i32 {
            match W::CODES {
                Codes::Unsigned(offset) => offset,
                Codes::Signed => 0,
            }
        }

        /// `init` plus, in each 32-bit lane, the products of its 4 codes in `t[j]` with its 4
        /// activations in `a[j]`, summed over j.
        #[inline(always)]
        unsafe fn dot<W: Format>(init: __m256i, t: &[__m256i; 4], a: &[__m256i; 4]) -> __m256i {
            // vpmaddubsw multiplies unsigned by signed bytes and adds pairs into i16 with
            // saturation. Unsigned codes up to 31 by |a| ≤ 127 give at most 2·31·127 per pair,
            // and the 4 products' pairs still fit in i16 (4·7874 < 2^15), so they are summed
            // there before one widening vpmaddwd. Signed codes go in as |code| with the sign
            // moved onto a; their pairs (up to 2·128·127) widen one by one.
            let ones = _mm256_set1_epi16(1);
            let sum = match W::CODES {
                Codes::Unsigned(offset) => {
                    debug_assert!(offset <= 16);
                    let pairs = |k: usize| _mm256_maddubs_epi16(t[k], a[k]);
                    let sum = _mm256_add_epi16(
                        _mm256_add_epi16(pairs(0), pairs(1)),
                        _mm256_add_epi16(pairs(2), pairs(3)),
                    );
                    _mm256_madd_epi16(sum, ones)
                }
                Codes::Signed => {
                    let quads = |k: usize| {
                        let pairs = _mm256_maddubs_epi16(
                            _mm256_abs_epi8(t[k]),
                            _mm256_sign_epi8(a[k], t[k]),
                        );
                        _mm256_madd_epi16(pairs, ones)
                    };
                    _mm256_add_epi32(
                        _mm256_add_epi32(quads(0), quads(1)),
                        _mm256_add_epi32(quads(2), quads(3)),
                    )
                }
            };
            _mm256_add_epi32(init, sum)
        }
    }

    struct Avx512Vnni;

    /// Format `W`'s codes as `vpdpbusd` takes them, unsigned bytes first: (offset, the byte to
    /// XOR into the codes). Signed codes go in shifted by 128.
    #[inline(always)]
    fn vnni_codes<W: Format>() -> (i32, i8) {
        match W::CODES {
            Codes::Unsigned(offset) => (offset, 0),
            Codes::Signed => (128, -128),
        }
    }

    /// The AVX-512 VNNI kernel, on 512-bit vectors: the 4 rows' codes by 16-byte groups, row r
    /// in 128-bit lane r (vector j: values 16j..16j + 16), against an activation row's 16 bytes
    /// broadcast to every lane; `vpdpbusd` leaves row r's dot in i32 lanes 4r..4r + 3. Half the
    /// multiply instructions and broadcasts of the 256-bit layout per (block, activation row).
    impl Kernel for Avx512Vnni {
        #[inline(always)]
        unsafe fn tile<W: Format, const R: usize, const C: usize>(t: &Tile<'_>, out: &mut Out) {
            let (offset, flip) = vnni_codes::<W>();
            // −offset in the low i16 half of lane 4r, the first of each row's lanes; 0 elsewhere.
            let minus_offset = _mm512_maskz_set1_epi32(0x1111, i32::from(-offset as u16));
            // Qwords 2r, 2r + 1 of the 16-byte groups ← qword r of the 8-byte groups j, j + 1.
            let pairs = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
            // Lane 4r + i ← row r's scale.
            let spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
            // Lanes 4r..4r + 3 of acc[c]: weight row r × activation row c.
            let mut acc = [_mm512_setzero_ps(); C];
            let ahead = t.prefetch_distance(W::BLOCK_BYTES);
            for b in 0..t.blocks {
                let w = t.w.as_ptr().add(b * t.w_block_stride);
                let a = t.a.as_ptr().add(b * size_of::<Q8Block>());
                prefetch_ahead::<R>(w, ahead, t.w_row_stride);
                let bits = row_scales::<R>(w, t.w_row_stride);
                let dw = _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64));
                let dw = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(dw));
                let [v0, v1, v2, v3] = W::rows_avx512::<R>(w, t.w_row_stride);
                let wide = |x: __m256i, y: __m256i| {
                    let codes = _mm512_permutex2var_epi64(
                        _mm512_castsi256_si512(x),
                        pairs,
                        _mm512_castsi256_si512(y),
                    );
                    _mm512_xor_si512(codes, _mm512_set1_epi8(flip))
                };
                let (codes0, codes1) = (wide(v0, v1), wide(v2, v3));
                for (c, acc) in acc.iter_mut().enumerate() {
                    let block = a.add(c * t.a_row_bytes);
                    let (d, sum) = scale_and_sum(block);
                    let qs = block.add(offset_of!(Q8Block, qs));
                    let a0 = _mm512_broadcast_i32x4(_mm_loadu_si128(qs.cast()));
                    let a1 = _mm512_broadcast_i32x4(_mm_loadu_si128(qs.add(16).cast()));
                    // −offset·Σa in each row's first lane (|Σa| ≤ 32·127 fits the low i16).
                    let init = _mm512_madd_epi16(_mm512_set1_epi32(sum), minus_offset);
                    let dot =
                        _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, codes0, a0), codes1, a1);
                    let dot = _mm512_cvtepi32_ps(dot);
                    *acc = _mm512_fmadd_ps(dot, _mm512_mul_ps(dw, _mm512_set1_ps(d)), *acc);
                }
            }
            for (c, acc) in acc.iter().enumerate() {
                let mut lanes = [0f32; 16];
                _mm512_storeu_ps(lanes.as_mut_ptr(), *acc);
                for (r, out) in out.iter_mut().enumerate().take(R) {
                    out[c] = lanes[4 * r..4 * r + 4].iter().sum();
                }
            }
        }
    }

    /// The f16 scale bits of the blocks at `block` in rows 0..R (`row_bytes` apart), row r in
    /// bits 16r..16r + 16.
    #[inline(always)]
    unsafe fn row_scales<const R: usize>(block: *const u8, row_bytes: usize) -> u64 {
        let mut bits = 0u64;
        for r in 0..R {
            let d = block.add(r * row_bytes).cast::<u16>().read_unaligned();
            bits |= u64::from(d) << (16 * r);
        }
        bits
    }

    /// The scale `d` and the code sum of the [`Q8Block`] at `block`.
    #[inline(always)]
    unsafe fn scale_and_sum(block: *const u8) -> (f32, i32) {
        let d = block
            .add(offset_of!(Q8Block, d))
            .cast::<f32>()
            .read_unaligned();
        let sum = block
            .add(offset_of!(Q8Block, sum))
            .cast::<i32>()
            .read_unaligned();
        (d, sum)
    }

    /// Asks for the same block of the tile's rows `ahead` bytes down. Prefetches never fault, so
    /// the address may lie past the weights (hence `wrapping_add`).
    #[inline(always)]
    unsafe fn prefetch_ahead<const R: usize>(block: *const u8, ahead: usize, row_stride: usize) {
        for r in 0..R {
            _mm_prefetch::<_MM_HINT_T0>(block.wrapping_add(ahead + r * row_stride).cast());
        }
    }

    /// The tile's shape as compile-time constants, so that every loop over rows and columns
    /// unrolls and the accumulators live in registers.
    #[inline(always)]
    unsafe fn by_shape<I: Kernel, W: Format>(t: &Tile<'_>, out: &mut Out) {
        match (t.rows, t.cols) {
            (1, 1) => I::tile::<W, 1, 1>(t, out),
            (1, 2) => I::tile::<W, 1, 2>(t, out),
            (1, 3) => I::tile::<W, 1, 3>(t, out),
            (1, _) => I::tile::<W, 1, 4>(t, out),
            (2, 1) => I::tile::<W, 2, 1>(t, out),
            (2, 2) => I::tile::<W, 2, 2>(t, out),
            (2, 3) => I::tile::<W, 2, 3>(t, out),
            (2, _) => I::tile::<W, 2, 4>(t, out),
            (3, 1) => I::tile::<W, 3, 1>(t, out),
            (3, 2) => I::tile::<W, 3, 2>(t, out),
            (3, 3) => I::tile::<W, 3, 3>(t, out),
            (3, _) => I::tile::<W, 3, 4>(t, out),
            (_, 1) => I::tile::<W, 4, 1>(t, out),
            (_, 2) => I::tile::<W, 4, 2>(t, out),
            (_, 3) => I::tile::<W, 4, 3>(t, out),
            (_, _) => I::tile::<W, 4, 4>(t, out),
        }
    }

    impl Kernel for Avx2 {
        #[inline(always)]
        unsafe fn tile<W: Format, const R: usize, const C: usize>(t: &Tile<'_>, out: &mut Out) {
            // −offset in the low i16 half of even lanes, 0 elsewhere.
            let minus_offset = _mm256_set1_epi64x(i64::from(-Self::offset::<W>() as u16));
            // Lanes 2r and 2r + 1 of acc[c]: weight row r × activation row c.
            let mut acc = [_mm256_setzero_ps(); C];
            let ahead = t.prefetch_distance(W::BLOCK_BYTES);
            for b in 0..t.blocks {
                let w = t.w.as_ptr().add(b * t.w_block_stride);
                let a = t.a.as_ptr().add(b * size_of::<Q8Block>());
                prefetch_ahead::<R>(w, ahead, t.w_row_stride);
                // The rows' f16 scales, each twice, widened at once.
                let bits = row_scales::<R>(w, t.w_row_stride);
                let bits = _mm_cvtsi64_si128(bits as i64);
                let dw = _mm256_cvtph_ps(_mm_unpacklo_epi16(bits, bits));
                let codes = W::rows::<R>(w, t.w_row_stride);
                for (c, acc) in acc.iter_mut().enumerate() {
                    let block = a.add(c * t.a_row_bytes);
                    let (d, sum) = scale_and_sum(block);
                    let qs = block.add(offset_of!(Q8Block, qs)).cast::<i64>();
                    let mut acts = [_mm256_setzero_si256(); 4];
                    for (j, acts) in acts.iter_mut().enumerate() {
                        *acts = _mm256_set1_epi64x(qs.add(j).read_unaligned());
                    }
                    // The offset's correction −offset·Σa, once per weight row: in its even lane,
                    // from Σa (|Σa| ≤ 32·127, exact in the low i16 half of each lane) times −offset.
                    let init = _mm256_madd_epi16(_mm256_set1_epi32(sum), minus_offset);
                    let dot = _mm256_cvtepi32_ps(Self::dot::<W>(init, &codes, &acts));
                    *acc = _mm256_fmadd_ps(dot, _mm256_mul_ps(dw, _mm256_set1_ps(d)), *acc);
                }
            }
            for (c, acc) in acc.iter().enumerate() {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), *acc);
                for (r, out) in out.iter_mut().enumerate().take(R) {
                    out[c] = lanes[2 * r] + lanes[2 * r + 1];
                }
            }
        }
    }

    /// Weight rows the prompt kernel unpacks and runs at a time: a vector's 16 lanes (a panel
    /// is two of them).
    const HALF: usize = 16;

    /// One block index of half a prompt panel, as its kernel reads it: the 16 rows' scales,
    /// and their codes as unsigned bytes by groups of 4 values, `codes[q]` lane r = values
    /// 4q..4q + 4 of row r (rows past the matrix's end: scale and codes 0).
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct PanelBlock {
        scales: [f32; HALF],
        codes: [[u32; HALF]; 8],
    }

    const EMPTY_BLOCK: PanelBlock = PanelBlock {
        scales: [0.0; HALF],
        codes: [[0; HALF]; 8],
    };

    /// Activation rows one pass of the prompt kernel takes: its accumulators.
    const PASS_COLS: usize = 8;

    type Pass = unsafe fn(&[PanelBlock], i32, *const u8, usize, &mut [[f32; PANEL_ROWS]], usize);

    /// Prompts on AVX-512 VNNI, [`HALF`] rows at a time. Their codes are unpacked once into
    /// [`PanelBlock`]s, so that a 32-bit lane holds 4 codes of one row and the 16 lanes 16
    /// rows. Against an activation row's 4 bytes broadcast to every lane, `vpdpbusd` then adds
    /// 4 products to each of the 16 rows' dots, 8 of them make the block's 16 integer dots, and
    /// one conversion and FMA scale them: the tile kernel spends that conversion and FMA on 4
    /// rows, and unpacks the weights again for every 4 activation rows.
    pub(in super::super) fn panel_avx512vnni<W: Format>(
        p: &Panel<'_>,
        out: &mut [[f32; PANEL_ROWS]],
    ) {
        thread_local! {
            /// The unpacked panel, one PanelBlock per block index.
            static UNPACKED: RefCell<Vec<PanelBlock>> = const { RefCell::new(Vec::new()) };
        }
        debug_assert!(is_x86_feature_detected!("avx512vnni"));
        let blocks = p.w.cols / 32;
        assert!(
            p.w.bytes.len() == p.w.rows * blocks * W::BLOCK_BYTES
                && p.first < p.w.rows
                && p.a_row_bytes >= blocks * size_of::<Q8Block>()
                && p.a.len() >= out.len() * p.a_row_bytes,
            "panel operands"
        );
        let (offset, _) = vnni_codes::<W>();
        const PASSES: [Pass; PASS_COLS] = [
            pass::<1>, pass::<2>, pass::<3>, pass::<4>, pass::<5>, pass::<6>, pass::<7>, pass::<8>,
        ];
        UNPACKED.with_borrow_mut(|unpacked| {
            // SAFETY: only selected for Isa::Avx512Vnni, which Isa::available lists only on
            // CPUs with AVX2, FMA, F16C and AVX-512 F, BW, VL and VNNI; `unpack` reads the
            // panel's rows' blocks inside the weights (checked above), `pass` reads `blocks`
            // Q8 blocks of each of its activation rows, inside `p.a` (checked above).
            unsafe {
                let passes = out.len().div_ceil(PASS_COLS);
                let halves = p.rows().div_ceil(HALF);
                for half in 0..halves {
                    let first = p.first + half * HALF;
                    unpack::<W>(p, first..(first + HALF).min(p.w.rows), blocks, unpacked);
                    for (c0, out) in (0..).step_by(PASS_COLS).zip(out.chunks_mut(PASS_COLS)) {
                        p.prefetch_next(half * passes + c0 / PASS_COLS, halves * passes);
                        let a = p.a.as_ptr().add(c0 * p.a_row_bytes);
                        PASSES[out.len() - 1](unpacked, offset, a, p.a_row_bytes, out, half);
                    }
                }
            }
        });
    }

    /// Weight rows `rows` (at most [`HALF`], from a multiple of [`MAX_TILE`]) into `unpacked`,
    /// a group of (up to) 4 rows at a time by the tile kernels' [`Format::rows_avx512`].
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn unpack<W: Format>(
        p: &Panel<'_>,
        rows: std::ops::Range<usize>,
        blocks: usize,
        unpacked: &mut Vec<PanelBlock>,
    ) {
        unpacked.clear();
        unpacked.resize(blocks, EMPTY_BLOCK);
        let flip = _mm256_set1_epi8(vnni_codes::<W>().1);
        let (start, rows) = (rows.start, rows.len());
        for g in (0..rows).step_by(MAX_TILE) {
            let first = start + g;
            let (row_stride, block_stride) = p.w.strides(first);
            let group = p.w.bytes.as_ptr().add(first * p.w.row_bytes());
            let count = MAX_TILE.min(rows - g);
            for (b, out) in unpacked.iter_mut().enumerate() {
                let block = group.add(b * block_stride);
                let dw = _mm_cvtph_ps(_mm_cvtsi64_si128(
                    row_scales_of(count, block, row_stride) as i64
                ));
                _mm_storeu_ps(out.scales.as_mut_ptr().add(g), dw);
                // Vector j: qword r = values 8j..8j + 8 of row r, i.e. u32 lanes 2r, 2r + 1 =
                // the groups of 4 values 2j and 2j + 1.
                let vectors = match count {
                    1 => W::rows_avx512::<1>(block, row_stride),
                    2 => W::rows_avx512::<2>(block, row_stride),
                    3 => W::rows_avx512::<3>(block, row_stride),
                    _ => W::rows_avx512::<4>(block, row_stride),
                };
                for (j, v) in vectors.into_iter().enumerate() {
                    let mut lanes = [0u32; 8];
                    _mm256_storeu_si256(lanes.as_mut_ptr().cast(), _mm256_xor_si256(v, flip));
                    for r in 0..count {
                        out.codes[2 * j][g + r] = lanes[2 * r];
                        out.codes[2 * j + 1][g + r] = lanes[2 * r + 1];
                    }
                }
            }
        }
    }

    /// [`row_scales`] for a run-time row count.
    #[inline(always)]
    unsafe fn row_scales_of(count: usize, block: *const u8, row_stride: usize) -> u64 {
        match count {
            1 => row_scales::<1>(block, row_stride),
            2 => row_scales::<2>(block, row_stride),
            3 => row_scales::<3>(block, row_stride),
            _ => row_scales::<4>(block, row_stride),
        }
    }

    /// Activation rows 0..C from `a` (`a_row_bytes` apart) against the unpacked half `half` of
    /// the panel, into its lanes of `out`; codes stand for `code − offset`.
    #[allow(clippy::needless_range_loop)] // acc[c] and activation row c read as the pass
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn pass<const C: usize>(
        unpacked: &[PanelBlock],
        offset: i32,
        a: *const u8,
        a_row_bytes: usize,
        out: &mut [[f32; PANEL_ROWS]],
        half: usize,
    ) {
        let mut acc = [_mm512_setzero_ps(); C];
        for (b, block) in unpacked.iter().enumerate() {
            let dw = _mm512_load_ps(block.scales.as_ptr());
            let codes: [__m512i; 8] =
                std::array::from_fn(|q| _mm512_load_si512(block.codes[q].as_ptr().cast()));
            for c in 0..C {
                let act = a.add(c * a_row_bytes + b * size_of::<Q8Block>());
                let (d, sum) = scale_and_sum(act);
                let qs = act.add(offset_of!(Q8Block, qs)).cast::<i32>();
                let four = |q: usize| _mm512_set1_epi32(qs.add(q).read_unaligned());
                // Two chains of 4, so that each waits on half as many multiply-adds.
                let mut even = _mm512_set1_epi32(-offset * sum);
                let mut odd = _mm512_setzero_si512();
                for q in (0..8).step_by(2) {
                    even = _mm512_dpbusd_epi32(even, codes[q], four(q));
                    odd = _mm512_dpbusd_epi32(odd, codes[q + 1], four(q + 1));
                }
                let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(even, odd));
                acc[c] = _mm512_fmadd_ps(dot, _mm512_mul_ps(dw, _mm512_set1_ps(d)), acc[c]);
            }
        }
        for c in 0..C {
            _mm512_storeu_ps(out[c].as_mut_ptr().add(half * HALF), acc[c]);
        }
    }
}

/// The kernels for aarch64. Each (weight row, activation row) pair's 32 products are summed into
/// 4 i32 lanes, either by widening i8 products (`smull`/`smlal2`, summed pairwise by `sadalp`:
/// baseline Advanced SIMD) or by `sdot` where the CPU has the dot product extension; converted
/// and scaled by `d_w · d_a` (a lane of a per-column scale vector) into the pair's accumulator.
#[cfg(target_arch = "aarch64")]
pub(super) mod neon {
    use super::super::activations::Q8Block;
    use super::super::{Tile, TileFn, MAX_TILE};
    use super::Out;
    use std::arch::aarch64::*;
    use std::arch::asm;
    use std::mem::offset_of;

    /// Accumulators a pass keeps in registers: 8 of the 32, beside 2 rows and 4 activation rows
    /// of codes (2 registers each) and the scales.
    const PAIRS: usize = 8;

    /// A format of 32-value blocks that start with their f16 scale, as the NEON kernels read it.
    pub(in super::super) trait Format {
        const BLOCK_BYTES: usize;
        /// The block's 32 values as signed codes (`d · code`), values 0..16 then 16..32.
        ///
        /// # Safety
        /// `block` points to a whole block.
        unsafe fn codes(block: *const u8) -> [int8x16_t; 2];
    }

    /// The kernel of format `W` for this CPU: with `sdot` where it has the dot product extension.
    pub(in super::super) fn select<W: Format>() -> TileFn {
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            tile_dotprod::<W>
        } else {
            tile::<W>
        }
    }

    fn tile<W: Format>(t: &Tile<'_>, out: &mut Out) {
        t.check_bounds(W::BLOCK_BYTES, size_of::<Q8Block>());
        // SAFETY: Advanced SIMD is baseline on aarch64; the blocks are in bounds.
        unsafe { by_shape::<Widening, W>(t, out) }
    }

    fn tile_dotprod<W: Format>(t: &Tile<'_>, out: &mut Out) {
        t.check_bounds(W::BLOCK_BYTES, size_of::<Q8Block>());
        // SAFETY: `select` returns this only where the CPU has the dot product extension; the
        // blocks are in bounds.
        unsafe { tile_dotprod_unchecked::<W>(t, out) }
    }

    #[target_feature(enable = "dotprod")]
    unsafe fn tile_dotprod_unchecked<W: Format>(t: &Tile<'_>, out: &mut Out) {
        by_shape::<DotProd, W>(t, out)
    }

    /// How a pair's 32 products are summed into 4 lanes.
    trait Dot {
        unsafe fn dot(w: [int8x16_t; 2], a: [int8x16_t; 2]) -> int32x4_t;
    }

    struct Widening;

    impl Dot for Widening {
        #[inline(always)]
        unsafe fn dot([w0, w1]: [int8x16_t; 2], [a0, a1]: [int8x16_t; 2]) -> int32x4_t {
            // Two products per i16 lane: at most 2·128·127 < 2^15.
            let p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(a0)), w0, a0);
            let p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(a1)), w1, a1);
            vpadalq_s16(vpaddlq_s16(p0), p1)
        }
    }

    struct DotProd;

    impl Dot for DotProd {
        #[inline(always)]
        unsafe fn dot([w0, w1]: [int8x16_t; 2], [a0, a1]: [int8x16_t; 2]) -> int32x4_t {
            sdot(sdot(vdupq_n_s32(0), w0, a0), w1, a1)
        }
    }

    /// `acc` plus, in lane i, the products of bytes 4i..4i + 4 of `a` and `b`.
    #[inline]
    #[target_feature(enable = "dotprod")]
    unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // The intrinsic (vdotq_s32) is not stable yet.
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
        acc
    }

    /// The tile's shape as compile-time constants, so that every loop over rows and columns
    /// unrolls and the accumulators live in registers; shapes with more pairs than [`PAIRS`]
    /// go in passes over fewer rows.
    #[inline(always)]
    unsafe fn by_shape<I: Dot, W: Format>(t: &Tile<'_>, out: &mut Out) {
        match t.cols {
            1 => by_rows::<I, W, 1>(t, out),
            2 => by_rows::<I, W, 2>(t, out),
            3 => by_rows::<I, W, 3>(t, out),
            _ => by_rows::<I, W, 4>(t, out),
        }
    }

    #[inline(always)]
    unsafe fn by_rows<I: Dot, W: Format, const C: usize>(t: &Tile<'_>, out: &mut Out) {
        let pass = (PAIRS / C).min(MAX_TILE);
        for row0 in (0..t.rows).step_by(pass) {
            match (t.rows - row0).min(pass) {
                1 => kernel::<I, W, 1, C>(t, row0, out),
                2 => kernel::<I, W, 2, C>(t, row0, out),
                3 => kernel::<I, W, 3, C>(t, row0, out),
                _ => kernel::<I, W, 4, C>(t, row0, out),
            }
        }
    }

    /// Weight rows `row0..row0 + R` × the tile's `C` activation rows.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // r and c index several arrays of the same tile
    unsafe fn kernel<I: Dot, W: Format, const R: usize, const C: usize>(
        t: &Tile<'_>,
        row0: usize,
        out: &mut Out,
    ) {
        let w = t.w.as_ptr().add(row0 * t.w_row_stride);
        let a = t.a.as_ptr();
        let mut acc = [[vdupq_n_f32(0.0); C]; R];
        for b in 0..t.blocks {
            let w = w.add(b * t.w_block_stride);
            let a = a.add(b * size_of::<Q8Block>());
            // The rows' f16 scales side by side, widened at once.
            let mut bits = 0u64;
            for r in 0..R {
                let d = w.add(r * t.w_row_stride).cast::<u16>().read_unaligned();
                bits |= u64::from(d) << (16 * r);
            }
            let dw = widen_f16(bits);
            // Per activation row: d_w · d_a for each weight row, and the codes.
            let mut scales = [vdupq_n_f32(0.0); C];
            let mut acts = [[vdupq_n_s8(0); 2]; C];
            for c in 0..C {
                let block = a.add(c * t.a_row_bytes);
                let d = block
                    .add(offset_of!(Q8Block, d))
                    .cast::<f32>()
                    .read_unaligned();
                scales[c] = vmulq_n_f32(dw, d);
                let qs = block.add(offset_of!(Q8Block, qs)).cast::<i8>();
                acts[c] = [vld1q_s8(qs), vld1q_s8(qs.add(16))];
            }
            for r in 0..R {
                let codes = W::codes(w.add(r * t.w_row_stride));
                for c in 0..C {
                    let dot = vcvtq_f32_s32(I::dot(codes, acts[c]));
                    acc[r][c] = vfmaq_n_f32(acc[r][c], dot, lane(scales[c], r));
                }
            }
        }
        for r in 0..R {
            for c in 0..C {
                out[row0 + r][c] = vaddvq_f32(acc[r][c]);
            }
        }
    }

    /// Lane `i` of `v` (`i` < 4, a constant once the kernel unrolls).
    #[inline(always)]
    unsafe fn lane(v: float32x4_t, i: usize) -> f32 {
        match i {
            0 => vgetq_lane_f32::<0>(v),
            1 => vgetq_lane_f32::<1>(v),
            2 => vgetq_lane_f32::<2>(v),
            _ => vgetq_lane_f32::<3>(v),
        }
    }

    /// Four f16 (`bits`, little end first) widened to f32.
    #[inline(always)]
    unsafe fn widen_f16(bits: u64) -> float32x4_t {
        // fcvtl is baseline Advanced SIMD; its intrinsic needs the unstable f16 vector types.
        let wide: float32x4_t;
        asm!(
            "fcvtl {wide:v}.4s, {narrow:v}.4h",
            wide = lateout(vreg) wide,
            narrow = in(vreg) bits,
            options(pure, nomem, nostack, preserves_flags),
        );
        wide
    }
}
