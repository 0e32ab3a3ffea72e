//! The 16-bit float formats: F16 and BF16 tensors (one value per "block"), and the fp16 scales
//! stored in every quantized block.
//!
//! Both conversions round to nearest, ties to even, keep subnormals and overflow to infinity,
//! which is what `half` does and what ggml's bit-trick conversions compute; only NaN payloads
//! differ, so NaN is mapped here the way ggml maps it.

use half::{bf16, f16};

/// ggml's `GGML_FP32_TO_FP16` as little-endian bytes.
pub(crate) fn fp16_bytes(x: f32) -> [u8; 2] {
    let bits = if x.is_nan() {
        // ggml writes every NaN as the quiet NaN 0x7E00 with the input's sign.
        0x7e00 | ((x.to_bits() >> 16) as u16 & 0x8000)
    } else {
        f16::from_f32(x).to_bits()
    };
    bits.to_le_bytes()
}

/// ggml's `GGML_FP16_TO_FP32` of little-endian bytes (exact: every fp16 is an f32).
pub(crate) fn fp16_value(bytes: [u8; 2]) -> f32 {
    f16::from_bits(u16::from_le_bytes(bytes)).to_f32()
}

/// ggml's `ggml_compute_fp32_to_bf16` as little-endian bytes. `half` quiets NaN the same way
/// (top 16 bits with the quiet bit 0x40 set), so no special case is needed.
fn bf16_bytes(x: f32) -> [u8; 2] {
    bf16::from_f32(x).to_bits().to_le_bytes()
}

pub(crate) fn f16_block(x: &[f32; 1], y: &mut [u8; 2]) {
    *y = fp16_bytes(x[0]);
}

pub(crate) fn bf16_block(x: &[f32; 1], y: &mut [u8; 2]) {
    *y = bf16_bytes(x[0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's fp32 -> fp16 conversion (ggml-impl.h, after Maratyszcza's FP16 library): scaling by
    /// 2^112 and 2^-110 makes the FPU round the mantissa for us.
    fn ggml_fp32_to_fp16(f: f32) -> u16 {
        let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
        let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
        let mut base = (f.abs() * scale_to_inf) * scale_to_zero;
        let w = f.to_bits();
        let shl1_w = w.wrapping_add(w);
        let sign = w & 0x8000_0000;
        let bias = (shl1_w & 0xff00_0000).max(0x7100_0000);
        base += f32::from_bits((bias >> 1) + 0x0780_0000);
        let bits = base.to_bits();
        let exp_bits = (bits >> 13) & 0x7c00;
        let mantissa_bits = bits & 0x0fff;
        let nonsign = exp_bits + mantissa_bits;
        ((sign >> 16)
            | if shl1_w > 0xff00_0000 {
                0x7e00
            } else {
                nonsign
            }) as u16
    }

    fn ggml_fp32_to_bf16(f: f32) -> u16 {
        let u = f.to_bits();
        if u & 0x7fff_ffff > 0x7f80_0000 {
            return ((u >> 16) | 64) as u16;
        }
        ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
    }

    /// Every 2^16-th f32 bit pattern plus a prime stride through the rest (ties, subnormals,
    /// overflow boundaries and NaNs among them) converts exactly as ggml converts it.
    #[test]
    fn conversions_match_ggml_bit_for_bit() {
        let special = [
            0.0f32,
            -0.0,
            65504.0,
            65519.99,
            65520.0,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            5.960_464_5e-8,
            2.980_232_2e-8, // half the smallest fp16 subnormal: a tie to even (0)
            8.940_697e-8,   // 1.5 subnormal steps: a tie to even (2 steps)
            1.0 + 1.0 / 2048.0,
        ];
        let strided = (0..=u32::MAX).step_by(65_521).map(f32::from_bits);
        let lows = (0..1u32 << 16).map(f32::from_bits);
        // Densely through fp16's subnormal range and the first normal binades (2^-26 .. 2^-12),
        // where the rounding trick works hardest.
        let subnormals = (0x3280_0000u32..0x3980_0000)
            .step_by(251)
            .map(f32::from_bits);
        let all = special
            .into_iter()
            .chain(strided)
            .chain(lows)
            .chain(subnormals);
        for x in all.flat_map(|x| [x, -x]) {
            assert_eq!(
                u16::from_le_bytes(fp16_bytes(x)),
                ggml_fp32_to_fp16(x),
                "fp16 of {x:e} ({:#010x})",
                x.to_bits()
            );
            assert_eq!(
                u16::from_le_bytes(bf16_bytes(x)),
                ggml_fp32_to_bf16(x),
                "bf16 of {x:e} ({:#010x})",
                x.to_bits()
            );
        }
    }
}
