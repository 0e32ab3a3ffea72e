//! The K-quants: super-blocks of 256 values split into sub-blocks of 16 or 32, each sub-block
//! with its own scale (and for Q2_K/Q4_K/Q5_K its own min), and those scales quantized again
//! against one or two fp16 super-block scales. Ported from ggml's `quantize_row_q*_K_ref`, the
//! path `quantize_q*_K` takes without an importance matrix.
//!
//! Every type works in two passes: fit a scale (and min) per sub-block with a small search
//! ([`fit`]), then quantize those scales to 4, 6 or 8 bits and requantize the values against the
//! scales the decoder will actually see. Sub-blocks whose decoded scale is zero keep the codes of
//! the first pass, as in ggml.

pub(crate) mod fit;
pub(crate) mod q2_k;
pub(crate) mod q3_k;
pub(crate) mod q4_k;
pub(crate) mod q5_k;
pub(crate) mod q6_k;
mod scale_min_32;

/// Values per super-block.
pub(crate) const QK_K: usize = 256;

/// ggml's `nearest_int`: adding 1.5 · 2^23 leaves the integer part of the sum in the low mantissa
/// bits, rounded to nearest with ties to even. For |v| < 2^22 this is `v.round_ties_even()`; it
/// is computed the same way here so that the rare out-of-range argument (a huge ratio against a
/// tiny scale) gives the same garbage code ggml stores.
pub(crate) fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// Packs 2-bit codes 128 at a time: within each half of the super-block, byte `l` (0..32) holds
/// codes `l`, `l + 32`, `l + 64` and `l + 96` in bits 0-1, 2-3, 4-5 and 6-7. Codes are below 4
/// by construction (Q3_K takes its third bit out first), so the masks never drop anything.
fn pack_2bit(codes: &[u8; QK_K], qs: &mut [u8]) {
    for (half, out) in codes.chunks_exact(128).zip(qs.chunks_exact_mut(32)) {
        for (l, q) in out.iter_mut().enumerate() {
            *q = (half[l] & 3)
                | (half[l + 32] & 3) << 2
                | (half[l + 64] & 3) << 4
                | (half[l + 96] & 3) << 6;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::nearest_int;

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        for (v, n) in [
            (0.5f32, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (-2.5, -2),
            (0.49999997, 0),
            (3.7, 4),
            (-3.7, -4),
            (4_194_303.0, 4_194_303),
            (-4_194_303.0, -4_194_303),
        ] {
            assert_eq!(nearest_int(v), n, "nearest_int({v})");
        }
    }
}
