//! Attention of one new position (generation) over a layer's key/value cache, on plain f32
//! slices: per query head, scores against every visible cached key, softmax, and the weighted sum
//! of the values, without materializing any intermediate tensor.
//!
//! Why: in generation the tensor-library version is a dozen operations per layer (a transposed
//! copy of the keys, a contiguous copy of the values, two small matrix products with their thread
//! pool setup, the scale, the softmax) whose fixed costs outweigh their arithmetic at the context
//! lengths of a chat. Here it is one pass per head over the cache as it lies in memory.
//!
//! The arithmetic is that of the tensor version, in f32: `s = (q·k) · scale`, soft-capped as
//! `cap · tanh(s / cap)` where the model asks, `p = exp(s - max) / Σ exp`, `out = Σ p · v`. Dot
//! products accumulate in [`LANES`] independent lanes combined in a fixed order, so every
//! instruction set tier gives the same bits.

use crate::matmul::Isa;
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::Range;

/// Accumulator lanes of a dot product: one AVX-512 register, two AVX2 ones, four of SSE or NEON.
const LANES: usize = 16;

/// Multiply-adds below which the heads run on the calling thread: waking the pool's workers
/// costs more than a few microseconds of arithmetic (Qwen2.5-0.5B at 128 positions is ~115K).
const PARALLEL_MACS: usize = 1 << 20;

/// One layer's attention: its heads, its scores, and the layout of its cache.
#[derive(Debug, Clone, Copy)]
pub struct Attention {
    /// Query heads; a multiple of `kv_heads` (grouped-query attention: query head `h` reads KV
    /// head `h / (heads / kv_heads)`).
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Values from one KV head's position 0 to the next head's, in the key and value buffers
    /// (the cache's capacity × `head_dim`).
    pub kv_head_stride: usize,
    /// Factor on `q · k`.
    pub scale: f32,
    /// Scores become `cap · tanh(s / cap)` before the softmax (Gemma 2).
    pub softcap: Option<f32>,
}

impl Attention {
    /// `out[h] = softmax(q[h] · K[g]ᵀ · scale) · V[g]` for every query head `h` (KV head `g`),
    /// over the cached positions `positions`.
    ///
    /// * `q`, `out`: [heads, head_dim].
    /// * `k`, `v`: [kv_heads, capacity, head_dim] buffers, KV head `g` from `g * kv_head_stride`.
    ///
    /// # Panics
    /// If the shapes disagree, `positions` is empty, or a buffer is too short for them.
    pub fn attend_one(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        positions: Range<usize>,
        out: &mut [f32],
    ) {
        let Attention {
            heads,
            kv_heads,
            head_dim,
            kv_head_stride,
            ..
        } = *self;
        assert!(
            kv_heads > 0 && heads.is_multiple_of(kv_heads) && head_dim > 0,
            "attention heads: {heads} query heads over {kv_heads} KV heads of {head_dim}"
        );
        assert!(!positions.is_empty(), "attention over no positions");
        assert!(
            positions.end * head_dim <= kv_head_stride,
            "positions beyond a head's buffer"
        );
        let kv_len = (kv_heads - 1) * kv_head_stride + positions.end * head_dim;
        assert!(k.len() >= kv_len && v.len() >= kv_len, "cache buffers");
        assert_eq!(q.len(), heads * head_dim, "queries: [{heads}, {head_dim}]");
        assert_eq!(out.len(), heads * head_dim, "output: [{heads}, {head_dim}]");

        let isa = Isa::detect();
        let head = |(h, out): (usize, &mut [f32])| {
            let cache = self.cache_range(h, &positions);
            let query = &q[h * head_dim..][..head_dim];
            one_head(isa, self, query, &k[cache.clone()], &v[cache], out);
        };
        if heads * positions.len() * head_dim < PARALLEL_MACS {
            out.chunks_mut(head_dim).enumerate().for_each(head);
        } else {
            out.par_chunks_mut(head_dim).enumerate().for_each(head);
        }
    }

    /// Where query head `h`'s keys (and values) for `positions` lie in the cache buffers.
    fn cache_range(&self, h: usize, positions: &Range<usize>) -> Range<usize> {
        let base = h / (self.heads / self.kv_heads) * self.kv_head_stride;
        base + positions.start * self.head_dim..base + positions.end * self.head_dim
    }
}

/// One query head over `k`, `v` ([positions, head_dim]), into `out` ([head_dim]).
fn one_head(isa: Isa, layer: &Attention, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
    thread_local! {
        /// Scores, then probabilities, one per position (reused: no allocation per token).
        static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    SCORES.with_borrow_mut(|scores| {
        scores.clear();
        scores.resize(k.len() / q.len(), 0.0);
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Isa::detect found AVX-512F on this CPU for this tier.
            Isa::Avx512Vnni => unsafe { x86::head_avx512(layer, q, k, v, scores, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Isa::detect found AVX2 on this CPU for this tier.
            Isa::Avx2 => unsafe { x86::head_avx2(layer, q, k, v, scores, out) },
            _ => head(layer, dot, q, k, v, scores, out),
        }
    });
}

/// The body of every tier, given its dot product; inlined into each tier's `#[target_feature]`
/// wrapper so that the softmax and the weighted sum compile to that tier's vectors too.
#[inline(always)]
fn head(
    layer: &Attention,
    dot: impl Fn(&[f32], &[f32]) -> f32,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    scores: &mut [f32],
    out: &mut [f32],
) {
    let head_dim = q.len();
    for (score, key) in scores.iter_mut().zip(k.chunks_exact(head_dim)) {
        let s = dot(q, key) * layer.scale;
        *score = match layer.softcap {
            Some(cap) => (s / cap).tanh() * cap,
            None => s,
        };
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    for (&e, value) in scores.iter().zip(v.chunks_exact(head_dim)) {
        let p = e / sum;
        for (o, &x) in out.iter_mut().zip(value) {
            *o += p * x;
        }
    }
}

/// `a · b` in [`LANES`] lanes (lane i sums the products at i, i + LANES, ...), then the lanes
/// pairwise (lane i += lane i + 8, then i + 4, i + 2, i + 1), then the tail in order. The SIMD
/// tiers do exactly these operations.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let ((a_chunks, a_tail), (b_chunks, b_tail)) = (a.as_chunks::<LANES>(), b.as_chunks::<LANES>());
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for i in 0..LANES {
            lanes[i] += x[i] * y[i];
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0] + tail_dot(a_tail, b_tail)
}

/// The products past the last whole group of [`LANES`], summed in order.
#[inline(always)]
fn tail_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{head, tail_dot, Attention, LANES};
    use std::arch::x86_64::*;

    /// [`head`] on AVX-512.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn head_avx512(
        layer: &Attention,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        head(layer, |a, b| dot_avx512(a, b), q, k, v, scores, out)
    }

    /// [`head`] on AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn head_avx2(
        layer: &Attention,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        head(layer, |a, b| dot_avx2(a, b), q, k, v, scores, out)
    }

    /// [`super::dot`] with the 16 lanes in one register.
    #[target_feature(enable = "avx512f")]
    fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let ((a_chunks, a_tail), (b_chunks, b_tail)) =
            (a.as_chunks::<LANES>(), b.as_chunks::<LANES>());
        let mut lanes = _mm512_setzero_ps();
        for (x, y) in a_chunks.iter().zip(b_chunks) {
            // SAFETY: x and y are 16 f32 each.
            let (x, y) = unsafe { (_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(y.as_ptr())) };
            lanes = _mm512_add_ps(lanes, _mm512_mul_ps(x, y));
        }
        let low = _mm512_castps512_ps256(lanes);
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(lanes)));
        sum_eight(_mm256_add_ps(low, high)) + tail_dot(a_tail, b_tail)
    }

    /// [`super::dot`] with lanes 0–7 and 8–15 in two registers.
    #[target_feature(enable = "avx2")]
    fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let ((a_chunks, a_tail), (b_chunks, b_tail)) =
            (a.as_chunks::<LANES>(), b.as_chunks::<LANES>());
        let (mut low, mut high) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (x, y) in a_chunks.iter().zip(b_chunks) {
            // SAFETY: x and y are 16 f32 each.
            unsafe {
                let (x, y) = (x.as_ptr(), y.as_ptr());
                low = _mm256_add_ps(low, _mm256_mul_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(y)));
                let (x, y) = (_mm256_loadu_ps(x.add(8)), _mm256_loadu_ps(y.add(8)));
                high = _mm256_add_ps(high, _mm256_mul_ps(x, y));
            }
        }
        sum_eight(_mm256_add_ps(low, high)) + tail_dot(a_tail, b_tail)
    }

    /// The last three halvings of [`super::dot`]'s lanes: 8 → 4 → 2 → 1.
    #[target_feature(enable = "avx2")]
    fn sum_eight(lanes: __m256) -> f32 {
        let four = _mm_add_ps(
            _mm256_castps256_ps128(lanes),
            _mm256_extractf128_ps::<1>(lanes),
        );
        let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
        let one = _mm_add_ss(two, _mm_shuffle_ps::<1>(two, two));
        _mm_cvtss_f32(one)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::testing::random_values;

    /// The definition in f64: scores, softmax and weighted sum, head by head.
    fn reference(
        layer: &Attention,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        positions: Range<usize>,
    ) -> Vec<f64> {
        let hd = layer.head_dim;
        let (scale, softcap) = (layer.scale, layer.softcap);
        let mut out = vec![0f64; layer.heads * hd];
        for h in 0..layer.heads {
            let base = layer.cache_range(h, &(0..0)).start;
            let scores: Vec<f64> = positions
                .clone()
                .map(|p| {
                    let s: f64 = (0..hd)
                        .map(|i| q[h * hd + i] as f64 * k[base + p * hd + i] as f64)
                        .sum::<f64>()
                        * scale as f64;
                    softcap.map_or(s, |cap| (s / cap as f64).tanh() * cap as f64)
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            for (s, p) in scores.iter().zip(positions.clone()) {
                let weight = (s - max).exp() / sum;
                for i in 0..hd {
                    out[h * hd + i] += weight * v[base + p * hd + i] as f64;
                }
            }
        }
        out
    }

    /// Odd head sizes (tails of the lanes), grouped and plain heads, a window that starts past
    /// position 0, one position, soft-capping, and enough work to run the heads in parallel;
    /// on every tier this CPU has, against the f64 definition and against each other.
    #[test]
    fn attend_one_matches_the_definition_on_every_tier() {
        let cases = [
            // heads, kv_heads, head_dim, capacity, positions, softcap
            (4, 2, 64, 40, 0..37, None),
            (3, 3, 19, 8, 0..1, None),
            (8, 2, 80, 300, 100..300, Some(50.0)),
            (2, 1, 33, 16, 5..16, Some(30.0)),
            (16, 4, 64, 1100, 0..1030, None),
        ];
        for (seed, (heads, kv_heads, head_dim, capacity, positions, softcap)) in
            cases.into_iter().enumerate()
        {
            let layer = Attention {
                heads,
                kv_heads,
                head_dim,
                kv_head_stride: capacity * head_dim,
                scale: 1.0 / (head_dim as f32).sqrt(),
                softcap,
            };
            let seed = seed as u64 * 3;
            let q = random_values(heads * head_dim, seed);
            let k = random_values(kv_heads * capacity * head_dim, seed + 1);
            let v = random_values(k.len(), seed + 2);
            let expected = reference(&layer, &q, &k, &v, positions.clone());
            let mut first: Option<Vec<f32>> = None;
            for &isa in Isa::available() {
                let mut out = vec![0f32; heads * head_dim];
                // Every tier through the dispatcher of one head, then the public entry point.
                for (h, out) in out.chunks_mut(head_dim).enumerate() {
                    let cache = layer.cache_range(h, &positions);
                    let query = &q[h * head_dim..][..head_dim];
                    one_head(isa, &layer, query, &k[cache.clone()], &v[cache], out);
                }
                for (i, (&got, &want)) in out.iter().zip(&expected).enumerate() {
                    assert!(
                        (got as f64 - want).abs() <= 1e-5,
                        "{isa:?} heads {heads}/{kv_heads} × {head_dim}, {positions:?}: \
                         [{i}] {got} against {want}"
                    );
                }
                match &first {
                    Some(first) => assert_eq!(first, &out, "{isa:?} differs from the first tier"),
                    None => first = Some(out),
                }
            }
            let mut out = vec![0f32; heads * head_dim];
            layer.attend_one(&q, &k, &v, positions, &mut out);
            assert_eq!(first.as_ref(), Some(&out), "attend_one against its tiers");
        }
    }
}
