//! The filters that shrink the candidate set, each the same rule as transformers' warper of the
//! same name (with `min_tokens_to_keep = 1`, so the most likely token always survives), applied in
//! transformers' order: top-k, top-p, min-p, typical-p. Probabilities are computed in f64 and
//! compared in f32, as transformers compares its float32 tensors.

use super::candidates::{exp_neg, Candidates};

/// `TopKLogitsWarper`: keeps every token whose logit is at least the k-th largest (so tokens tied
/// with the k-th all stay). `k = 0` keeps everything.
pub fn top_k(c: &mut Candidates, k: usize) {
    if k == 0 || k >= c.len() {
        return;
    }
    c.sort_prefix(k);
    let kth = c.items()[k - 1].1;
    let mut i = 0;
    c.retain(|_, l| {
        i += 1;
        i <= k || l >= kth
    });
}

/// `TopPLogitsWarper`: sorted from least to most likely, a token goes when the cumulative
/// probability up to and including it is ≤ 1 - p; the most likely token always stays.
pub fn top_p(c: &mut Candidates, p: f64, scratch: &mut Vec<f64>) {
    if p >= 1.0 || c.len() <= 1 {
        return;
    }
    let total = c.weights(scratch);
    let max = c.max_logit();
    nucleus(c, p, total, max);
}

/// Top-p straight from a vocabulary's logits (divided by `temperature`), for when no top-k has
/// shrunk the set first. transformers sorts the whole vocabulary; here one pass computes the
/// total probability mass and a histogram of it by distance below the top logit: every bucket
/// above the one where the mass reaches `p` is in the nucleus and everything two buckets below
/// it is not, so only the tokens from there up are collected and sorted (typically a few
/// thousand of 150k). Leaves exactly the tokens `top_p` would.
pub fn fill_top_p(
    c: &mut Candidates,
    logits: &[f32],
    temperature: f32,
    p: f64,
    mass: &mut Vec<f64>,
) {
    let scale = |l: f32| {
        if temperature == 1.0 {
            l
        } else {
            l / temperature
        }
    };
    let max = logits
        .iter()
        .fold(f32::NEG_INFINITY, |m, &l| m.max(scale(l)));
    let bucket = |v: f32| (((max - v) * BUCKETS_PER_UNIT) as usize).min(BUCKETS - 1);
    mass.clear();
    mass.resize(BUCKETS, 0.0);
    let mut total = 0.0f64;
    for &l in logits {
        let v = scale(l);
        let w = exp_neg(v - max) as f64; // ~0 for -inf
        total += w;
        mass[bucket(v)] += w;
    }
    let mut head = 0.0;
    let mut cut = BUCKETS - 1;
    for (b, m) in mass.iter().enumerate() {
        head += m;
        if head >= p * total {
            cut = b;
            break;
        }
    }
    // One bucket of slack: rounding must never drop a token the exact rule keeps.
    let keep_through = (cut + 1).min(BUCKETS - 1);
    let items = c.items_mut();
    items.clear();
    items.extend(
        logits
            .iter()
            .enumerate()
            .filter(|(_, l)| **l != f32::NEG_INFINITY)
            .map(|(i, &l)| (i as u32, scale(l)))
            .filter(|&(_, v)| bucket(v) <= keep_through),
    );
    nucleus(c, p, total, max);
}

/// The exact top-p rule over candidates that hold the whole nucleus, given the total mass of
/// the full set (`Σ exp(logit - max)`) and its largest logit. Only as much of the set is sorted as
/// the answer needs (64 tokens, then 8× more at a time).
fn nucleus(c: &mut Candidates, p: f64, total: f64, max: f32) {
    let threshold = (1.0 - p) as f32;
    let mut k = 64;
    loop {
        c.sort_prefix(k);
        let k_now = k.min(c.len());
        // Probability mass of the tokens more likely than item i.
        let mut head = 0.0f64;
        for i in 0..k_now {
            let tail = ((total - head) / total) as f32;
            if i > 0 && tail <= threshold {
                c.truncate(i);
                return;
            }
            head += exp_neg(c.items()[i].1 - max) as f64;
        }
        if k_now == c.len() {
            return;
        }
        k *= 8;
    }
}

/// Histogram resolution: buckets per unit of logit below the maximum, over 32 units (a token 32
/// below the top has relative weight e^-32 ≈ 1e-14; all such share the last bucket).
const BUCKETS_PER_UNIT: f32 = 64.0;
const BUCKETS: usize = 32 * 64 + 1;

/// `MinPLogitsWarper`: drops tokens whose probability is below `min_p` times the largest, i.e.
/// whose weight relative to the top token, exp(logit - max), is below `min_p`.
pub fn min_p(c: &mut Candidates, min_p: f64, _scratch: &mut Vec<f64>) {
    if min_p <= 0.0 || c.len() <= 1 {
        return;
    }
    let max = c.max_logit();
    let bar = min_p as f32;
    c.retain(|_, l| exp_neg(l - max) >= bar);
}

/// `TypicalLogitsWarper`: orders tokens by how far their surprise (-log p) is from the entropy,
/// and keeps the closest ones until their probability reaches `mass` (plus any as close as the
/// last one kept).
pub fn typical(c: &mut Candidates, mass: f64, scratch: &mut Vec<f64>) {
    if mass >= 1.0 || c.len() <= 1 {
        return;
    }
    let total = c.weights(scratch);
    let max = c.max_logit();
    let log_z = max as f64 + total.ln();
    let entropy: f64 = c
        .items()
        .iter()
        .map(|&(_, l)| {
            let nl = l as f64 - log_z;
            -nl * nl.exp()
        })
        .sum();
    let shifted = |l: f32| ((-(l as f64 - log_z)) - entropy).abs() as f32;
    let items = c.items_mut();
    items.sort_by(|a, b| shifted(a.1).total_cmp(&shifted(b.1)).then(a.0.cmp(&b.0)));
    let mass = mass as f32;
    let mut cumulative = 0.0f64;
    let mut below = 0;
    for &(_, l) in items.iter() {
        cumulative += (l as f64 - log_z).exp();
        if (cumulative as f32) < mass {
            below += 1;
        }
    }
    let last = below.min(items.len() - 1);
    let limit = shifted(items[last].1);
    let mut i = 0;
    items.retain(|&(_, l)| {
        i += 1;
        i == 1 || shifted(l) <= limit
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_logits(n: usize, spread: f32, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Rounded to 1/8 so that ties are common.
        (0..n)
            .map(|_| ((rng.random::<f32>() - 0.5) * spread * 8.0).round() / 8.0)
            .collect()
    }

    /// transformers' top-p, literally: sort ascending, cumulative softmax, drop ≤ 1 - p, keep the
    /// top token.
    fn reference_top_p(logits: &[f32], p: f64) -> Vec<bool> {
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l));
        let weights: Vec<f64> = logits.iter().map(|&l| (l - max).exp() as f64).collect();
        let total: f64 = weights.iter().sum();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        // Ascending; among ties the lower id first (a stable sort of ids in order).
        order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(a.cmp(&b)));
        let mut keep = vec![true; logits.len()];
        let mut cumulative = 0.0;
        for (rank, &i) in order.iter().enumerate() {
            cumulative += weights[i];
            if rank + 1 < order.len() && ((cumulative / total) as f32) <= (1.0 - p) as f32 {
                keep[i] = false;
            }
        }
        keep
    }

    #[test]
    fn the_histogram_prefilter_keeps_exactly_the_nucleus() {
        let mut scratch = vec![];
        for (seed, spread, p) in [
            (1, 6.0, 0.95),
            (2, 10.0, 0.5),
            (3, 3.0, 0.99),
            (4, 20.0, 0.9),
        ] {
            let logits = random_logits(60_000, spread, seed);
            let mut c = Candidates::default();
            c.fill(&logits, 1.0);
            top_p(&mut c, p, &mut scratch);
            let expected = reference_top_p(&logits, p);
            let got: Vec<bool> = c
                .to_dense(logits.len())
                .iter()
                .map(|l| l.is_finite())
                .collect();
            let kept = expected.iter().filter(|k| **k).count();
            assert_eq!(got, expected, "seed {seed}: {kept} kept by the reference");
        }
    }

    #[test]
    fn collecting_top_k_directly_equals_filtering_the_whole_set() {
        for (seed, k) in [(5, 1), (6, 40), (7, 500)] {
            let logits = random_logits(30_000, 4.0, seed);
            let mut all = Candidates::default();
            all.fill(&logits, 0.7);
            top_k(&mut all, k);
            let mut direct = Candidates::default();
            direct.fill_top_k(&logits, 0.7, k);
            assert_eq!(direct.to_dense(logits.len()), all.to_dense(logits.len()));
            assert!(direct.len() >= k);
        }
    }
}
