//! Q3_K: 3.4375 bits per value. A 256-value super-block of sixteen 16-value sub-blocks with
//! signed 6-bit scales against one fp16 super-block scale, symmetric codes -4..=3:
//!
//! ```text
//! value = d · (sc_j - 32) · (code - 4)
//! ```
//!
//! 110 bytes: `[hmask: 32][qs: 64][scales: 12][d: f16]`. The low two bits of each code are
//! packed as in Q2_K (`pack_2bit`); bit 2 of code `i` is bit `i / 32` of `hmask[i % 32]`. The
//! sixteen 6-bit `sc_j` are split into low nibbles (bytes 0..8: `sc_j` in the low nibble of byte
//! `j % 8`, the high nibble for `j ≥ 8`) and high 2-bit pairs (bytes 8..12: bits 4-5 of `sc_j`
//! at bit `2 · (j / 4)` of byte `8 + j % 4`).

use super::fit::fit_q3;
use super::{nearest_int, pack_2bit, QK_K};
use crate::quantize::float::{fp16_bytes, fp16_value};

pub(crate) const BYTES: usize = QK_K / 8 + QK_K / 4 + 12 + 2;

pub(crate) fn quantize_block(x: &[f32; QK_K], y: &mut [u8; BYTES]) {
    let mut codes = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    // The fitted scale of largest magnitude, with its sign.
    let (mut amax, mut max_scale) = (0.0f32, 0.0f32);
    for (j, (xs, ls)) in x
        .chunks_exact(16)
        .zip(codes.chunks_exact_mut(16))
        .enumerate()
    {
        scales[j] = fit_q3(xs, 4, ls);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }

    // Scales on a signed 6-bit grid whose extreme is -32 (the sign of d absorbs max_scale's),
    // stored offset by 32.
    let mut sc = [0u8; 16];
    let d = if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (s, &scale) in sc.iter_mut().zip(&scales) {
            // ggml narrows to int8_t before clamping.
            *s = ((nearest_int(iscale * scale) as i8).clamp(-32, 31) + 32) as u8;
        }
        1.0 / iscale
    } else {
        0.0
    };
    let d = fp16_bytes(d);

    // Requantize against the stored scales; a sub-block whose scale is zero keeps its fit codes.
    let dv = fp16_value(d);
    for (j, (xs, ls)) in x
        .chunks_exact(16)
        .zip(codes.chunks_exact_mut(16))
        .enumerate()
    {
        let step = dv * (sc[j] as i32 - 32) as f32;
        if step == 0.0 {
            continue;
        }
        for (l, &v) in ls.iter_mut().zip(xs) {
            *l = (nearest_int(v / step).clamp(-4, 3) + 4) as u8;
        }
    }

    let (hmask, rest) = y.split_at_mut(QK_K / 8);
    let (qs, rest) = rest.split_at_mut(QK_K / 4);
    let (packed, d_out) = rest.split_at_mut(12);
    hmask.fill(0);
    for (i, c) in codes.iter_mut().enumerate() {
        if *c > 3 {
            hmask[i % 32] |= 1 << (i / 32);
            *c -= 4;
        }
    }
    pack_2bit(&codes, qs);
    packed.fill(0);
    for (j, &s) in sc.iter().enumerate() {
        packed[j % 8] |= (s & 0x0f) << (4 * (j / 8));
        packed[8 + j % 4] |= (s >> 4) << (2 * (j / 4));
    }
    d_out.copy_from_slice(&d);
}
