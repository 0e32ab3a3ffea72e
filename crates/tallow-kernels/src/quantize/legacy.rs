//! The legacy 32-value block formats: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (ggml's
//! `quantize_row_q*_ref`, which `quantize_q*` calls when there is no importance matrix).
//!
//! Every block is 32 consecutive values with one fp16 scale `d` (and for the `_1` types an fp16
//! offset `m`). The 4- and 5-bit types store element `j` in the low nibble of byte `j` and element
//! `j + 16` in its high nibble; the 5-bit types keep each code's fifth bit in a 32-bit little-endian
//! mask, bit `j` for element `j`.
//!
//! Codes are not found with `nearest_int` here but, as ggml does, by adding 0.5 (plus the zero
//! point) and truncating toward zero; Q8_0 uses `roundf` (ties away from zero), i.e. `f32::round`.

use super::float::fp16_bytes;

const QK: usize = 32;

/// `[d: f16][qs: 16]`, value = d * (code - 8).
pub(crate) const Q4_0_BYTES: usize = 2 + QK / 2;
/// `[d: f16][m: f16][qs: 16]`, value = d * code + m.
pub(crate) const Q4_1_BYTES: usize = 4 + QK / 2;
/// `[d: f16][qh: u32][qs: 16]`, value = d * (code - 16).
pub(crate) const Q5_0_BYTES: usize = 2 + 4 + QK / 2;
/// `[d: f16][m: f16][qh: u32][qs: 16]`, value = d * code + m.
pub(crate) const Q5_1_BYTES: usize = 4 + 4 + QK / 2;
/// `[d: f16][qs: 32 × i8]`, value = d * q.
pub(crate) const Q8_0_BYTES: usize = 2 + QK;

/// The value of largest magnitude, with its sign; the first one wins a tie (+a before -a gives
/// +a), which decides the sign of `d`.
fn signed_absmax(x: &[f32; QK]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32; QK]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// `1/d`, or 0 for an all-zero block so every code lands on the zero point.
fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Packs 32 codes below 16 as nibbles: byte j = code j | code (j + 16) << 4.
fn pack_nibbles(codes: &[u8; QK], qs: &mut [u8]) {
    for j in 0..QK / 2 {
        qs[j] = (codes[j] & 0x0f) | ((codes[j + QK / 2] & 0x0f) << 4);
    }
}

/// Bit j of the mask = bit 4 of code j.
fn fifth_bits(codes: &[u8; QK]) -> [u8; 4] {
    let mut qh = 0u32;
    for (j, &c) in codes.iter().enumerate() {
        qh |= u32::from((c & 0x10) >> 4) << j;
    }
    qh.to_le_bytes()
}

/// Symmetric 4-bit: the extreme value maps to code 0 (-8 · d), so `d` takes the extreme's
/// opposite sign and the other end of the range can use only +7 steps.
pub(crate) fn q4_0_block(x: &[f32; QK], y: &mut [u8; Q4_0_BYTES]) {
    let d = signed_absmax(x) / -8.0;
    let id = inverse(d);
    // `(int8_t)(v + 8.5f)` truncates toward zero, as `as` does for in-range values.
    let codes = x.map(|v| ((v * id + 8.5) as i8).min(15) as u8);
    y[..2].copy_from_slice(&fp16_bytes(d));
    pack_nibbles(&codes, &mut y[2..]);
}

/// Asymmetric 4-bit over [min, max]: 15 steps of `d` above `m = min`.
pub(crate) fn q4_1_block(x: &[f32; QK], y: &mut [u8; Q4_1_BYTES]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    let codes = x.map(|v| (((v - min) * id + 0.5) as i8).min(15) as u8);
    y[..2].copy_from_slice(&fp16_bytes(d));
    y[2..4].copy_from_slice(&fp16_bytes(min));
    pack_nibbles(&codes, &mut y[4..]);
}

/// Symmetric 5-bit, as Q4_0 with 16 steps each way.
pub(crate) fn q5_0_block(x: &[f32; QK], y: &mut [u8; Q5_0_BYTES]) {
    let d = signed_absmax(x) / -16.0;
    let id = inverse(d);
    let codes = x.map(|v| ((v * id + 16.5) as i8).min(31) as u8);
    y[..2].copy_from_slice(&fp16_bytes(d));
    y[2..6].copy_from_slice(&fifth_bits(&codes));
    pack_nibbles(&codes, &mut y[6..]);
}

/// Asymmetric 5-bit, as Q4_1 with 31 steps. ggml clamps nothing here: the codes of
/// `(v - min) / d + 0.5` stay within 0..=31 for finite input.
pub(crate) fn q5_1_block(x: &[f32; QK], y: &mut [u8; Q5_1_BYTES]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = inverse(d);
    let codes = x.map(|v| ((v - min) * id + 0.5) as u8);
    y[..2].copy_from_slice(&fp16_bytes(d));
    y[2..4].copy_from_slice(&fp16_bytes(min));
    y[4..8].copy_from_slice(&fifth_bits(&codes));
    pack_nibbles(&codes, &mut y[8..]);
}

/// Symmetric 8-bit: `d = absmax / 127`, codes rounded half away from zero.
pub(crate) fn q8_0_block(x: &[f32; QK], y: &mut [u8; Q8_0_BYTES]) {
    // ggml's MAX(amax, |v|) keeps amax unless |v| is larger.
    let amax = x.iter().fold(
        0.0f32,
        |amax, v| if amax > v.abs() { amax } else { v.abs() },
    );
    let d = amax / 127.0;
    let id = inverse(d);
    y[..2].copy_from_slice(&fp16_bytes(d));
    for (q, &v) in y[2..].iter_mut().zip(x) {
        *q = (v * id).round() as i8 as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// d = 1 from the first extreme (-8; the later +8 of equal magnitude does not flip the
    /// sign); codes truncate `v + 8.5` and clamp at 15.
    #[test]
    fn q4_0_truncates_and_clamps() {
        let mut x = [0.0f32; QK];
        x[..6].copy_from_slice(&[-8.0, 7.5, 0.5, -0.5, 0.49, -7.9]);
        x[16] = 8.0;
        let mut y = [0u8; Q4_0_BYTES];
        q4_0_block(&x, &mut y);
        let mut expected = [0x88u8; Q4_0_BYTES];
        expected[..8].copy_from_slice(&[0x00, 0x3c, 0xf0, 0x8f, 0x89, 0x88, 0x88, 0x80]);
        assert_eq!(y, expected);
    }

    /// d = 1; codes round half away from zero (2.5 -> 3, -0.5 -> -1), unlike `nearest_int`.
    #[test]
    fn q8_0_rounds_ties_away_from_zero() {
        let mut x = [0.0f32; QK];
        x[..5].copy_from_slice(&[127.0, 2.5, -0.5, 0.5, -127.0]);
        let mut y = [0u8; Q8_0_BYTES];
        q8_0_block(&x, &mut y);
        let mut expected = [0u8; Q8_0_BYTES];
        expected[..7].copy_from_slice(&[0x00, 0x3c, 127, 3, 0xff, 1, 0x81]);
        assert_eq!(y, expected);
    }
}
