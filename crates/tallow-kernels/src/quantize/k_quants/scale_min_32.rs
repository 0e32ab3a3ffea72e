//! The scale structure shared by Q4_K and Q5_K: eight sub-blocks of 32 values, each with a 6-bit
//! scale `sc` and a 6-bit min `m` against two fp16 super-block scales,
//!
//! ```text
//! value = d · sc_j · code - dmin · m_j        (j = sub-block, code in 0..=nmax)
//! ```
//!
//! stored as the 16-byte block header `[d: f16][dmin: f16][scales: 12]`. The 12 bytes hold
//! sixteen 6-bit numbers (ggml's `get_scale_min_k4` reads them back):
//!
//! ```text
//! bytes 0..4   sc_j (j < 4) in bits 0-5, bits 4-5 of sc_{j+4} in bits 6-7
//! bytes 4..8   m_j  (j < 4) in bits 0-5, bits 4-5 of m_{j+4}  in bits 6-7
//! bytes 8..12  bits 0-3 of sc_{j+4} in bits 0-3, bits 0-3 of m_{j+4} in bits 4-7
//! ```

use super::fit::{fit_scale_min, ScaleMinSearch};
use super::{nearest_int, QK_K};
use crate::quantize::float::{fp16_bytes, fp16_value};

/// Bytes of `[d][dmin][scales]` before the codes.
pub(crate) const HEADER_BYTES: usize = 16;

/// Fits the eight sub-blocks of `x`, writes the header and returns the codes (0..=nmax) to pack.
pub(crate) fn quantize(
    x: &[f32; QK_K],
    nmax: i32,
    search: &ScaleMinSearch,
    header: &mut [u8; HEADER_BYTES],
) -> [u8; QK_K] {
    let mut codes = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (j, (xs, ls)) in x
        .chunks_exact(32)
        .zip(codes.chunks_exact_mut(32))
        .enumerate()
    {
        // Weight each value by its magnitude plus the sub-block's RMS, so large values count
        // more without small ones being ignored.
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|l| av_x + xs[l].abs());
        (scales[j], mins[j]) = fit_scale_min(xs, &weights, nmax, search, ls);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    // Scales and mins on 6-bit grids up to their maxima. A negative fitted scale would wrap
    // through u8 and clamp to 63, as ggml's `uint8_t ls = nearest_int(...)` does.
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let sc: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_scale * scales[j]) as u8).min(63));
    let m: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_min * mins[j]) as u8).min(63));
    let d = fp16_bytes(max_scale / 63.0);
    let dmin = fp16_bytes(max_min / 63.0);
    header[0..2].copy_from_slice(&d);
    header[2..4].copy_from_slice(&dmin);
    for j in 0..4 {
        header[4 + j] = sc[j] | (sc[j + 4] >> 4) << 6;
        header[8 + j] = m[j] | (m[j + 4] >> 4) << 6;
        header[12 + j] = (sc[j + 4] & 0x0f) | (m[j + 4] & 0x0f) << 4;
    }

    // Requantize against the scales as stored. A sub-block whose scale decodes to zero keeps
    // the codes of its fit.
    let (d, dmin) = (fp16_value(d), fp16_value(dmin));
    for (j, (xs, ls)) in x
        .chunks_exact(32)
        .zip(codes.chunks_exact_mut(32))
        .enumerate()
    {
        let step = d * sc[j] as f32;
        if step == 0.0 {
            continue;
        }
        let offset = dmin * m[j] as f32;
        for (l, &v) in ls.iter_mut().zip(xs) {
            *l = nearest_int((v + offset) / step).clamp(0, nmax) as u8;
        }
    }
    codes
}
