//! Q5_K: 5.5 bits per value. As Q4_K (see `scale_min_32`) with codes 0..=31 whose fifth bits
//! go in a separate mask. 176 bytes:
//!
//! ```text
//! [d: f16][dmin: f16][scales: 12][qh: 32][qs: 128]
//! ```
//!
//! `qs` holds the low four bits exactly as Q4_K's codes; bit `2g` of `qh[l]` is the fifth bit of
//! code `64g + l` and bit `2g + 1` that of code `64g + 32 + l`.

use super::fit::ScaleMinSearch;
use super::scale_min_32::{self, HEADER_BYTES};
use super::QK_K;

pub(crate) const BYTES: usize = HEADER_BYTES + QK_K / 8 + QK_K / 2;

/// ggml's grid scan for Q5_K: 16 grids from nmax - 0.5 up in steps of 0.1, squared error.
const SEARCH: ScaleMinSearch = ScaleMinSearch {
    rmin: -0.5,
    rdelta: 0.1,
    steps: 15,
    abs_error: false,
};

pub(crate) fn quantize_block(x: &[f32; QK_K], y: &mut [u8; BYTES]) {
    let (header, rest) = y.split_at_mut(HEADER_BYTES);
    let (qh, qs) = rest.split_at_mut(QK_K / 8);
    let codes = scale_min_32::quantize(x, 31, &SEARCH, header.try_into().unwrap());
    qh.fill(0);
    for (g, (group, out)) in codes
        .chunks_exact(64)
        .zip(qs.chunks_exact_mut(32))
        .enumerate()
    {
        for (l, q) in out.iter_mut().enumerate() {
            let (lo, hi) = (group[l], group[l + 32]);
            *q = (lo & 0x0f) | (hi & 0x0f) << 4;
            qh[l] |= (lo >> 4) << (2 * g) | (hi >> 4) << (2 * g + 1);
        }
    }
}
