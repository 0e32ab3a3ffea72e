//! Per-sub-block scale searches of the K-quants (ggml's `make_qkx2_quants`, `make_qx_quants` with
//! x²-weighted error, and `make_q3_quants`).
//!
//! Each one picks a scale (and a min) for 16 or 32 values and the codes that go with it. They
//! are greedy, float-order-sensitive searches: a different summation order or an FMA would
//! occasionally flip a comparison and with it a whole sub-block, so the arithmetic below follows
//! ggml's operation by operation (`a * b * c` is `(a * b) * c`, integers converted to f32 where C
//! converts them).

use super::nearest_int;

/// ggml's `GROUP_MAX_EPS`: a sub-block whose largest magnitude is below this counts as all zero.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// The scan of [`fit_scale_min`]: candidate inverse scales `(nmax + rmin + rdelta·i) / (max -
/// min)` for `i` in `0..=steps` (`steps` ≥ 1), each followed by a weighted least-squares fit.
pub(crate) struct ScaleMinSearch {
    pub rmin: f32,
    pub rdelta: f32,
    pub steps: i32,
    /// Judge candidates by weighted |error| (Q2_K) instead of weighted error² (Q4_K, Q5_K).
    pub abs_error: bool,
}

/// Asymmetric fit, `x ≈ scale · code - min` with codes in `0..=nmax` and `min ≥ 0` (a block
/// that is all positive is offset from 0, never from its own minimum). Writes the codes and
/// returns `(scale, min)`. ggml's `make_qkx2_quants`.
pub(crate) fn fit_scale_min(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    search: &ScaleMinSearch,
    codes: &mut [u8],
) -> (f32, f32) {
    let n = x.len();
    let error = |diff: f32| {
        if search.abs_error {
            diff.abs()
        } else {
            diff * diff
        }
    };

    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = if x[i] < min { x[i] } else { min };
        max = if x[i] > max { x[i] } else { max };
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        codes[..n].fill(0);
        return (0.0, -min);
    }

    // Start from the plain min..max grid.
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        codes[i] = l as u8;
        best_error += weights[i] * error(scale * l as f32 + min - x[i]);
    }

    // Try slightly different grids; for each, solve the 2x2 weighted least squares for scale
    // and min given the codes, and keep it if it lowers the error. `min` moves with the best
    // candidate and the following grids are laid from it, as in ggml.
    let mut aux = [0u8; 32];
    for is in 0..=search.steps {
        iscale = (search.rmin + search.rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let w = weights[i];
            let l = l as f32;
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                // The offset may only pull values down: refit the scale alone.
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                cur_error += weights[i] * error(this_scale * aux[i] as f32 + this_min - x[i]);
            }
            if cur_error < best_error {
                codes[..n].copy_from_slice(&aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// The value of largest magnitude, with its sign (the first one on a tie).
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

/// Symmetric fit with codes `l` in `-nmax..nmax` stored as `l + nmax`, minimizing the error
/// weighted by x² (ggml's `make_qx_quants` with `rmse_type == 1` and no importance weights).
/// Scans 18 grids around `nmax / absmax` and keeps the best least-squares scale. Returns the
/// scale; its sign is the opposite of the extreme value's.
pub(crate) fn fit_symmetric(x: &[f32], nmax: i32, codes: &mut [u8]) -> f32 {
    let n = x.len();
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        codes[..n].fill(0);
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // Least-squares sums for the codes of `iscale`: Σ w·x·l and Σ w·l², w = x².
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = code(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let store = |iscale: f32, codes: &mut [u8]| {
        for (c, &v) in codes.iter_mut().zip(x) {
            *c = (code(iscale, v) + nmax) as u8;
        }
    };

    let iscale = -(nmax as f32) / max;
    store(iscale, codes);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    // The fitted scale s reduces the error by s·Σw·x·l = (Σw·x·l)²/Σw·l²; larger is better.
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            store(iscale, codes);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Symmetric 3-bit fit for Q3_K (ggml's `make_q3_quants` with `do_rmse`): codes `l` in
/// `-nmax..nmax` (stored as `l + nmax`) start at the absmax grid, then up to five sweeps move
/// single codes to their best value given the others, keeping a move when it improves the
/// x²-weighted least-squares fit. Returns the scale.
pub(crate) fn fit_q3(x: &[f32], nmax: i32, codes: &mut [u8]) -> f32 {
    let n = x.len();
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        // Note: code 0 here, not the zero point; the sub-block's scale is 0 anyway.
        codes[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut l = [0i32; 16];
    let l = &mut l[..n];
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        l[i] = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        let w = x[i] * x[i];
        sumlx += w * x[i] * l[i] as f32;
        suml2 += w * l[i] as f32 * l[i] as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for i in 0..n {
            let w = x[i] * x[i];
            // The sums without element i; its best code given the others is x·Σl²/Σxl.
            let mut slx = sumlx - w * x[i] * l[i] as f32;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * l[i] as f32 * l[i] as f32;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != l[i] {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    // Keep it if (Σxl)²/Σl², the error reduction, grows.
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (c, &l) in codes.iter_mut().zip(l.iter()) {
        *c = (l + nmax) as u8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}
