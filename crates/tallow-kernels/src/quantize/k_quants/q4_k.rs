//! Q4_K: 4.5 bits per value. A 256-value super-block of eight 32-value sub-blocks with 6-bit
//! scales and mins (see `scale_min_32`), codes 0..=15. 144 bytes:
//!
//! ```text
//! [d: f16][dmin: f16][scales: 12][qs: 128]
//! ```
//!
//! `qs` is four 32-byte groups; group `g` holds sub-block `2g` in its low nibbles and sub-block
//! `2g + 1` in its high nibbles (byte `l` = code `64g + l` | code `64g + 32 + l` << 4).

use super::fit::ScaleMinSearch;
use super::scale_min_32::{self, HEADER_BYTES};
use super::QK_K;

pub(crate) const BYTES: usize = HEADER_BYTES + QK_K / 2;

/// ggml's grid scan for Q4_K: 21 grids from nmax - 1 up in steps of 0.1, squared error.
const SEARCH: ScaleMinSearch = ScaleMinSearch {
    rmin: -1.0,
    rdelta: 0.1,
    steps: 20,
    abs_error: false,
};

pub(crate) fn quantize_block(x: &[f32; QK_K], y: &mut [u8; BYTES]) {
    let (header, qs) = y.split_at_mut(HEADER_BYTES);
    let codes = scale_min_32::quantize(x, 15, &SEARCH, header.try_into().unwrap());
    for (group, out) in codes.chunks_exact(64).zip(qs.chunks_exact_mut(32)) {
        for (l, q) in out.iter_mut().enumerate() {
            *q = group[l] | group[l + 32] << 4;
        }
    }
}
