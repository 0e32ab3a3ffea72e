//! Q6_K: 6.5625 bits per value. A 256-value super-block of sixteen 16-value sub-blocks with
//! signed 8-bit scales against one fp16 super-block scale, symmetric codes -32..=31:
//!
//! ```text
//! value = d · scales[j] · (code - 32)
//! ```
//!
//! 210 bytes: `[ql: 128][qh: 64][scales: 16 × i8][d: f16]`. Each 128-value half `h` of the
//! super-block owns 64 bytes of `ql` and 32 of `qh`; for `l` in 0..32, its codes `l`, `l + 32`,
//! `l + 64`, `l + 96` put their low nibbles in `ql[64h + l]` (low, high) and `ql[64h + 32 + l]`
//! (low, high) for the first/third and second/fourth respectively, and their top two bits in
//! bits 0-1, 2-3, 4-5, 6-7 of `qh[32h + l]`.

use super::fit::{fit_symmetric, GROUP_MAX_EPS};
use super::{nearest_int, QK_K};
use crate::quantize::float::{fp16_bytes, fp16_value};

pub(crate) const BYTES: usize = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2;

pub(crate) fn quantize_block(x: &[f32; QK_K], y: &mut [u8; BYTES]) {
    let mut codes = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_abs_scale, mut max_scale) = (0.0f32, 0.0f32);
    for (j, (xs, ls)) in x
        .chunks_exact(16)
        .zip(codes.chunks_exact_mut(16))
        .enumerate()
    {
        scales[j] = fit_symmetric(xs, 32, ls);
        if scales[j].abs() > max_abs_scale {
            max_abs_scale = scales[j].abs();
            max_scale = scales[j];
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        // An all-zero super-block is all-zero bytes (d = +0).
        y.fill(0);
        return;
    }

    // Scales on a signed 8-bit grid whose extreme is -128; the opposite extreme clamps to 127.
    let iscale = -128.0 / max_scale;
    let d = fp16_bytes(1.0 / iscale);
    let sc: [i8; 16] = std::array::from_fn(|j| nearest_int(iscale * scales[j]).min(127) as i8);

    // Requantize against the stored scales; a sub-block whose scale is zero keeps its fit codes.
    let dv = fp16_value(d);
    for (j, (xs, ls)) in x
        .chunks_exact(16)
        .zip(codes.chunks_exact_mut(16))
        .enumerate()
    {
        let step = dv * sc[j] as f32;
        if step == 0.0 {
            continue;
        }
        for (l, &v) in ls.iter_mut().zip(xs) {
            *l = (nearest_int(v / step).clamp(-32, 31) + 32) as u8;
        }
    }

    let (ql, rest) = y.split_at_mut(QK_K / 2);
    let (qh, rest) = rest.split_at_mut(QK_K / 4);
    let (sc_out, d_out) = rest.split_at_mut(QK_K / 16);
    for (half, (ql, qh)) in codes
        .chunks_exact(128)
        .zip(ql.chunks_exact_mut(64).zip(qh.chunks_exact_mut(32)))
    {
        for l in 0..32 {
            let q = [half[l], half[l + 32], half[l + 64], half[l + 96]];
            ql[l] = (q[0] & 0x0f) | (q[2] & 0x0f) << 4;
            ql[l + 32] = (q[1] & 0x0f) | (q[3] & 0x0f) << 4;
            qh[l] = q[0] >> 4 | (q[1] >> 4) << 2 | (q[2] >> 4) << 4 | (q[3] >> 4) << 6;
        }
    }
    for (out, &s) in sc_out.iter_mut().zip(&sc) {
        *out = s as u8;
    }
    d_out.copy_from_slice(&d);
}
