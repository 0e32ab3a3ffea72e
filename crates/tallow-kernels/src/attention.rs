//! Attention on plain f32 slices, for the CPU path: the attention of one new position
//! (generation) over a layer's key/value cache, and the causal softmax of a prompt's scores.
//!
//! Generation ([`Attention::attend_one`]): per query head, scores against every visible cached
//! key, softmax, and the weighted sum of the values, without any intermediate tensor. As tensor
//! operations this was a dozen per layer (a transposed copy of the keys, a contiguous copy of the
//! values, two small matrix products with their thread pool setup, the scale, the softmax) whose
//! fixed costs outweighed their arithmetic at the context lengths of a chat.
//!
//! Prompts ([`Scores::causal_softmax`]): the scores of a micro-batch's queries are still one
//! matrix product per KV head, but scaling, soft-capping, the causal mask and the softmax are one
//! pass over them in place, where the tensor version made four full-size intermediates and ran
//! the C library's `expf` one value at a time.
//!
//! The arithmetic is the tensor version's, in f32: `s = (q·k) · scale`, soft-capped as
//! `cap · tanh(s / cap)` where the model asks, `p = exp(s - max) / Σ exp` (with the vectorized
//! [`exp`], within 2 ulp), `out = Σ p · v`. Dot products, maxima and sums run in [`LANES`]
//! independent lanes combined in a fixed order, so every instruction set tier gives the same
//! bits.

use crate::activation::exp;
use crate::matmul::Isa;
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::Range;

/// Accumulator lanes of a dot product: one AVX-512 register, two AVX2 ones, four of SSE or NEON.
const LANES: usize = 16;

/// Multiply-adds (heads × positions × head_dim), or scores for the softmax, below which the
/// work runs on the calling thread: waking the pool's workers costs more than a few
/// microseconds of arithmetic (Qwen2.5-0.5B at 128 positions is ~115K multiply-adds).
const PARALLEL_WORK: usize = 1 << 20;

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
    pub scores: Scores,
}

/// How a layer's dot products become scores before the softmax: `s = (q · k) · scale`, then
/// `cap · tanh(s / cap)` where the model soft-caps them (Gemma 2).
#[derive(Debug, Clone, Copy)]
pub struct Scores {
    pub scale: f32,
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
        if heads * positions.len() * head_dim < PARALLEL_WORK {
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

impl Scores {
    /// The scores of a prompt's queries turned into probabilities, in place: `scores` is
    /// [rows, total] with row `r` the dot products of query `r % seq` (at position
    /// `total - seq + r % seq`: the rows of the `heads / kv_heads` query heads that share a KV
    /// head follow each other) with the `total` cached keys. Each row is scaled, soft-capped,
    /// and softmaxed over the positions its query sees (causal, within the sliding `window` if
    /// any); the others get probability 0. One pass per row with the vectorized [`exp`], and
    /// no mask tensor: the tensor-library version took four full-size intermediates.
    ///
    /// # Panics
    /// If `scores` is not whole rows of `total`, or `seq` is 0 or more than `total`.
    pub fn causal_softmax(
        &self,
        scores: &mut [f32],
        seq: usize,
        total: usize,
        window: Option<usize>,
    ) {
        assert!(
            (1..=total).contains(&seq) && scores.len().is_multiple_of(total),
            "causal softmax: rows of {total} for {seq} queries"
        );
        let isa = Isa::detect();
        let row = |(r, row): (usize, &mut [f32])| {
            let position = total - seq + r % seq;
            let first = window.map_or(0, |w| (position + 1).saturating_sub(w));
            let (hidden_before, rest) = row.split_at_mut(first);
            let (visible, hidden_after) = rest.split_at_mut(position + 1 - first);
            hidden_before.fill(0.0);
            hidden_after.fill(0.0);
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: Isa::detect found AVX-512F on this CPU for this tier.
                Isa::Avx512Vnni => unsafe { x86::softmax_avx512(self, visible) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: Isa::detect found AVX2 on this CPU for this tier.
                Isa::Avx2 => unsafe { x86::softmax_avx2(self, visible) },
                _ => softmax(self, visible),
            }
        };
        if scores.len() < PARALLEL_WORK {
            scores.chunks_mut(total).enumerate().for_each(row);
        } else {
            scores.par_chunks_mut(total).enumerate().for_each(row);
        }
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
        *score = dot(q, key);
    }
    softmax(&layer.scores, scores);
    out.fill(0.0);
    for (&p, value) in scores.iter().zip(v.chunks_exact(head_dim)) {
        for (o, &x) in out.iter_mut().zip(value) {
            *o += p * x;
        }
    }
}

/// Dot products `q · k` into probabilities, in place: `s = (q · k) · scale`, soft-capped as
/// `cap · tanh(s / cap)`, then `exp(s - max) / Σ exp`.
#[inline(always)]
fn softmax(how: &Scores, scores: &mut [f32]) {
    for score in scores.iter_mut() {
        let s = *score * how.scale;
        *score = match how.softcap {
            Some(cap) => (s / cap).tanh() * cap,
            None => s,
        };
    }
    let max = lanes_fold(scores, f32::NEG_INFINITY, f32::max);
    for s in scores.iter_mut() {
        *s = exp(*s - max);
    }
    let sum = lanes_fold(scores, 0.0, |a, b| a + b);
    for s in scores.iter_mut() {
        *s /= sum;
    }
}

/// `values` folded with `f` in [`LANES`] lanes, the lanes then pairwise ([`combine_lanes`]),
/// then the tail in order: a fixed order (the same bits on every tier) that vectorizes, where a single running
/// value would be a chain of dependent scalar operations.
#[inline(always)]
fn lanes_fold(values: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let (chunks, tail) = values.as_chunks::<LANES>();
    let mut lanes = [init; LANES];
    for chunk in chunks {
        for i in 0..LANES {
            lanes[i] = f(lanes[i], chunk[i]);
        }
    }
    tail.iter()
        .fold(combine_lanes(lanes, &f), |acc, &v| f(acc, v))
}

/// The lanes folded pairwise with `f`: lane i with lane i + 8, then i + 4, i + 2, i + 1 (a tree
/// of vector operations, not a chain of sixteen dependent ones).
#[inline(always)]
fn combine_lanes(mut lanes: [f32; LANES], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] = f(lanes[i], lanes[i + width]);
        }
    }
    lanes[0]
}

/// `a · b` in [`LANES`] lanes (lane i sums the products at i, i + LANES, ...), then the lanes
/// pairwise ([`combine_lanes`]), then the tail in order. The SIMD tiers do exactly these
/// operations.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let ((a_chunks, a_tail), (b_chunks, b_tail)) = (a.as_chunks::<LANES>(), b.as_chunks::<LANES>());
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for i in 0..LANES {
            lanes[i] += x[i] * y[i];
        }
    }
    combine_lanes(lanes, |a, b| a + b) + tail_dot(a_tail, b_tail)
}

/// The products past the last whole group of [`LANES`], summed in order.
#[inline(always)]
fn tail_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{head, softmax, tail_dot, Attention, Scores, LANES};
    use std::arch::x86_64::*;

    /// [`softmax`] on AVX-512.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_avx512(how: &Scores, scores: &mut [f32]) {
        softmax(how, scores)
    }

    /// [`softmax`] on AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn softmax_avx2(how: &Scores, scores: &mut [f32]) {
        softmax(how, scores)
    }

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
        let Scores { scale, softcap } = layer.scores;
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
                scores: Scores {
                    scale: 1.0 / (head_dim as f32).sqrt(),
                    softcap,
                },
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

    /// Causal rows with and without a window, grouped rows (the same query position repeats
    /// every `seq` rows), soft-capping, and enough rows to run in parallel; against the f64
    /// definition with an explicit mask.
    #[test]
    fn causal_softmax_matches_a_masked_softmax() {
        // rows per query (grouped heads), seq, total, window, softcap
        let cases = [
            (1, 5, 5, None, None),
            (7, 16, 40, None, None),
            (4, 9, 9, Some(4), Some(30.0)),
            (2, 300, 2100, Some(1000), None),
        ];
        for (seed, (group, seq, total, window, softcap)) in cases.into_iter().enumerate() {
            let how = Scores {
                scale: 0.125,
                softcap,
            };
            let scores: Vec<f32> = random_values(group * seq * total, seed as u64)
                .iter()
                .map(|s| s * 40.0)
                .collect();
            let mut probs = scores.clone();
            how.causal_softmax(&mut probs, seq, total, window);
            for (r, (row, got)) in scores.chunks(total).zip(probs.chunks(total)).enumerate() {
                let position = total - seq + r % seq;
                let visible = |j: usize| j <= position && window.is_none_or(|w| j + w > position);
                let capped: Vec<f64> = row
                    .iter()
                    .map(|&s| {
                        let s = s as f64 * 0.125;
                        softcap.map_or(s, |cap: f32| (s / cap as f64).tanh() * cap as f64)
                    })
                    .collect();
                let max = (0..total)
                    .filter(|&j| visible(j))
                    .map(|j| capped[j])
                    .fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = (0..total)
                    .filter(|&j| visible(j))
                    .map(|j| (capped[j] - max).exp())
                    .sum();
                for (j, &p) in got.iter().enumerate() {
                    let want = if visible(j) {
                        (capped[j] - max).exp() / sum
                    } else {
                        0.0
                    };
                    assert!(
                        (p as f64 - want).abs() <= 1e-5,
                        "row {r} of {group}×{seq}, position {j}: {p} against {want}"
                    );
                }
            }
        }
    }
}
