//! The formats activations are converted to, once per matmul, before they meet the weights: the
//! "vec_dot types" of ggml's CPU backend, computed as it computes them so that products agree
//! with llama.cpp's.
//!
//! Blocks are laid out back to back in byte rows (`row_bytes` per activation row) and read by the
//! kernels with unaligned loads, so no alignment is assumed.

use half::f16;
use half::slice::HalfFloatSliceExt;

/// Values per [`Q8Block`] and per block of the 32-value weight formats.
pub const QK8: usize = 32;
/// Values per [`Q8KBlock`] and per K-quant super-block.
pub const QK_K: usize = 256;

/// 32 activations as signed bytes: `x ≈ d · qs`. ggml's `block_q8_0` plus the integer sum of
/// `qs`, which lets kernels use unsigned weight codes (`Σ (w + o)·a = Σ w·a + o·sum`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Q8Block {
    /// The scale as ggml stores it (f16), widened to f32.
    pub d: f32,
    /// Σ qs.
    pub sum: i32,
    pub qs: [i8; QK8],
}

/// 256 activations as signed bytes: `x ≈ d · qs`, with the sums of each 16 (ggml's `block_q8_K`,
/// for the K-quants, whose sub-block minimums multiply those sums).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Q8KBlock {
    pub d: f32,
    pub qs: [i8; QK_K],
    /// bsums[j] = Σ qs[16j..16j + 16].
    pub bsums: [i16; QK_K / 16],
}

/// How a weight type wants its activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActFormat {
    /// [`Q8Block`]s: Q4_0, Q5_0 and Q8_0 weights.
    Q8,
    /// [`Q8KBlock`]s: the K-quants.
    Q8K,
    /// f32 values rounded to f16 precision: F16 weights (ggml rounds the activations to f16
    /// too). Kept 4 bytes wide so that kernels read them without a conversion per use.
    F16,
}

impl ActFormat {
    /// Values per unit of the format.
    pub fn block_size(self) -> usize {
        match self {
            ActFormat::Q8 => QK8,
            ActFormat::Q8K => QK_K,
            ActFormat::F16 => 1,
        }
    }

    /// Bytes of one converted row of `k` values (`k` a multiple of the block size).
    pub fn row_bytes(self, k: usize) -> usize {
        let units = k / self.block_size();
        units
            * match self {
                ActFormat::Q8 => std::mem::size_of::<Q8Block>(),
                ActFormat::Q8K => std::mem::size_of::<Q8KBlock>(),
                ActFormat::F16 => 4,
            }
    }

    /// Converts one row `x` into `out` (exactly `row_bytes(x.len())` bytes).
    pub fn convert_row(self, x: &[f32], out: &mut [u8]) {
        assert_eq!(out.len(), self.row_bytes(x.len()), "activation row size");
        match self {
            ActFormat::Q8 => {
                for (x, out) in x
                    .chunks_exact(QK8)
                    .zip(out.chunks_exact_mut(size_of::<Q8Block>()))
                {
                    write_block(out, &quantize_q8(x.try_into().unwrap()));
                }
            }
            ActFormat::Q8K => {
                for (x, out) in x
                    .chunks_exact(QK_K)
                    .zip(out.chunks_exact_mut(size_of::<Q8KBlock>()))
                {
                    write_block(out, &quantize_q8k(x.try_into().unwrap()));
                }
            }
            ActFormat::F16 => {
                // Through f16 and back by half's slice conversions (vectorized where the CPU
                // has F16C; one value at a time they were 8% of an F16 prompt).
                const CHUNK: usize = 64;
                let (mut halves, mut rounded) = ([f16::ZERO; CHUNK], [0f32; CHUNK]);
                for (x, out) in x.chunks(CHUNK).zip(out.chunks_mut(4 * CHUNK)) {
                    let (halves, rounded) = (&mut halves[..x.len()], &mut rounded[..x.len()]);
                    halves.convert_from_f32_slice(x);
                    halves.convert_to_f32_slice(rounded);
                    for (v, out) in rounded.iter().zip(out.chunks_exact_mut(4)) {
                        out.copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
    }
}

/// ggml's `quantize_row_q8_0` as its AVX2 and NEON versions compute it: `d = amax / 127` stored
/// as f16, codes `x · (127 / amax)` rounded half to even.
pub fn quantize_q8(x: &[f32; QK8]) -> Q8Block {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = f16::from_f32(amax / 127.0).to_f32();
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; QK8];
    for (q, v) in qs.iter_mut().zip(x) {
        *q = nearest_int(v * id) as i8;
    }
    let sum = qs.iter().map(|&q| q as i32).sum();
    Q8Block { d, sum, qs }
}

/// ggml's `quantize_row_q8_K_ref`: the scale comes from the value of largest magnitude `max`
/// (sign included), `iscale = -127 / max`, codes rounded half to even and capped at 127 (the
/// code of `max` itself is -127), `d = 1 / iscale`.
pub fn quantize_q8k(x: &[f32; QK_K]) -> Q8KBlock {
    let mut block = Q8KBlock {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        return block;
    }
    let iscale = -127.0 / max;
    for (q, v) in block.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (sum, qs) in block.bsums.iter_mut().zip(block.qs.chunks_exact(16)) {
        *sum = qs.iter().map(|&q| q as i16).sum();
    }
    block.d = 1.0 / iscale;
    block
}

/// `x` rounded half to even, for |x| < 2^22 (codes are within ±128), without the libm call
/// `round_ties_even` becomes on baseline x86-64: adding 1.5·2^23 leaves the rounded integer in
/// the low mantissa bits (ggml's `nearest_int`).
fn nearest_int(x: f32) -> i32 {
    let bits = (x + 12_582_912.0).to_bits();
    (bits & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Copies a plain-old-data block into its bytes.
fn write_block<T: Copy>(out: &mut [u8], block: &T) {
    assert_eq!(out.len(), size_of::<T>());
    // SAFETY: `out` has exactly size_of::<T>() bytes; T is a repr(C) struct of integers and
    // floats without padding (checked by the size assertions in the tests), and an unaligned
    // write needs no alignment.
    unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast::<T>(), *block) }
}

/// Reads the block of type `T` (plain integers and floats: a block struct) at the start of
/// `bytes` (tests and scalar kernels).
pub(crate) fn read_block<T>(bytes: &[u8]) -> T {
    assert!(bytes.len() >= size_of::<T>());
    // SAFETY: enough bytes (asserted); every bit pattern is a valid block of integers and floats.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        for x in [
            -127.5f32, -2.5, -0.5, -0.49, 0.0, 0.5, 1.5, 2.5, 126.5, 127.0,
        ] {
            assert_eq!(nearest_int(x), x.round_ties_even() as i32, "{x}");
        }
    }

    #[test]
    fn blocks_have_no_padding() {
        assert_eq!(size_of::<Q8Block>(), 4 + 4 + 32);
        assert_eq!(size_of::<Q8KBlock>(), 4 + 256 + 32);
    }

    #[test]
    fn q8_rounds_half_to_even_and_keeps_the_f16_scale() {
        // amax 127 → d = 1: 2.5 → 2, 3.5 → 4, -0.5 → -0.
        let mut x = [0f32; QK8];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = 3.5;
        x[3] = -0.5;
        let b = quantize_q8(&x);
        assert_eq!((b.d, &b.qs[..4]), (1.0, &[127i8, 2, 4, 0][..]));
        assert_eq!(b.sum, 133);
        // A scale that f16 cannot hold exactly is stored rounded.
        x[0] = 0.1 * 127.0;
        assert_eq!(quantize_q8(&x).d, f16::from_f32(0.1).to_f32());
    }

    #[test]
    fn q8k_takes_its_scale_from_the_signed_extreme() {
        let mut x = [0.5f32; QK_K];
        x[7] = -2.0;
        let b = quantize_q8k(&x);
        // iscale = -127 / -2 = 63.5: the extreme codes to -127, 0.5 · 63.5 = 31.75 to 32.
        assert_eq!(b.qs[7], -127);
        assert_eq!(b.d, 1.0 / 63.5);
        assert_eq!(b.qs[0], 32);
        assert_eq!(b.bsums[0], -127 + 32 * 15);
        assert_eq!(
            quantize_q8k(&[0.0; QK_K]),
            Q8KBlock {
                d: 0.0,
                qs: [0; QK_K],
                bsums: [0; 16]
            }
        );
    }
}
