//! Q2_K: 2.625 bits per value. A 256-value super-block of sixteen 16-value sub-blocks, each with
//! a 4-bit scale and a 4-bit min against two fp16 super-block scales:
//!
//! ```text
//! value = d · (scales[j] & 15) · code - dmin · (scales[j] >> 4)      (code in 0..=3)
//! ```
//!
//! 84 bytes: `[scales: 16][qs: 64][d: f16][dmin: f16]`, the codes packed four to a byte (see
//! `pack_2bit`).

use super::fit::{fit_scale_min, ScaleMinSearch};
use super::{nearest_int, pack_2bit, QK_K};
use crate::quantize::float::{fp16_bytes, fp16_value};

pub(crate) const BYTES: usize = QK_K / 16 + QK_K / 4 + 4;

/// ggml's grid scan for Q2_K: 16 grids from nmax - 0.5 up in steps of 0.1, judged by weighted
/// absolute error.
const SEARCH: ScaleMinSearch = ScaleMinSearch {
    rmin: -0.5,
    rdelta: 0.1,
    steps: 15,
    abs_error: true,
};

pub(crate) fn quantize_block(x: &[f32; QK_K], y: &mut [u8; BYTES]) {
    let mut codes = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    let mut mins = [0.0f32; 16];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (j, (xs, ls)) in x
        .chunks_exact(16)
        .zip(codes.chunks_exact_mut(16))
        .enumerate()
    {
        let weights: [f32; 16] = std::array::from_fn(|l| xs[l].abs());
        (scales[j], mins[j]) = fit_scale_min(xs, &weights, 3, &SEARCH, ls);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    // Scales in the low nibbles, mins in the high ones, each on a 4-bit grid up to its maximum.
    // The codes are not clamped: they cannot exceed 15, and ggml stores `nearest_int` as is.
    let mut packed = [0u8; 16];
    let d = if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for (p, &s) in packed.iter_mut().zip(&scales) {
            *p = nearest_int(iscale * s) as u8;
        }
        max_scale / 15.0
    } else {
        0.0
    };
    let dmin = if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (p, &m) in packed.iter_mut().zip(&mins) {
            *p |= (nearest_int(iscale * m) << 4) as u8;
        }
        max_min / 15.0
    } else {
        0.0
    };
    let (d, dmin) = (fp16_bytes(d), fp16_bytes(dmin));

    // Requantize against the stored scales; a sub-block whose scale is zero keeps its fit codes.
    let (dv, dminv) = (fp16_value(d), fp16_value(dmin));
    for (j, (xs, ls)) in x
        .chunks_exact(16)
        .zip(codes.chunks_exact_mut(16))
        .enumerate()
    {
        let step = dv * (packed[j] & 0x0f) as f32;
        if step == 0.0 {
            continue;
        }
        let offset = dminv * (packed[j] >> 4) as f32;
        for (l, &v) in ls.iter_mut().zip(xs) {
            *l = nearest_int((v + offset) / step).clamp(0, 3) as u8;
        }
    }

    y[..16].copy_from_slice(&packed);
    pack_2bit(&codes, &mut y[16..80]);
    y[80..82].copy_from_slice(&d);
    y[82..84].copy_from_slice(&dmin);
}
