//! RMSNorm over rows, in one pass per row and as llama.cpp's CPU backend computes it: squares in
//! f32 summed in f64, `scale = 1 / sqrt(mean + eps)` in f32, then `x · scale · weight`.

use rayon::prelude::*;

/// `out[i] = x[i] · scale(row) · weight[i mod dim]` for rows of `dim = weight.len()` values.
///
/// # Panics
/// If `x` is not whole rows or `out` has another length.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    assert!(
        dim > 0 && x.len().is_multiple_of(dim),
        "rms_norm: rows of {dim}"
    );
    assert_eq!(x.len(), out.len(), "rms_norm: output length");
    let row = |(x, out): (&[f32], &mut [f32])| {
        let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / dim as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
            *o = v * scale * w;
        }
    };
    // One row (generation) is a few microseconds: not worth waking another thread.
    if x.len() == dim {
        row((x, out));
    } else {
        x.par_chunks(dim).zip(out.par_chunks_mut(dim)).for_each(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_each_row_to_unit_rms_times_the_weight() {
        let x = [3.0, 4.0, 0.0, 0.0, 1.0, 1.0];
        let w = [1.0, 2.0];
        let mut out = [0.0; 6];
        rms_norm(&x, &w, 0.0, &mut out);
        // Row 0: rms = sqrt(12.5); row 2: rms 1. Row 1 (zeros) needs eps: checked below.
        let s = 1.0 / 12.5f32.sqrt();
        assert_eq!(&out[..2], &[3.0 * s, 4.0 * s * 2.0]);
        assert_eq!(&out[4..], &[1.0, 2.0]);
        rms_norm(&x, &w, 1e-6, &mut out);
        assert_eq!(&out[2..4], &[0.0, 0.0]);
    }
}
