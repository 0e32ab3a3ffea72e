//! The filters that shrink the candidate set, each the same rule as transformers' warper of the
//! same name (with `min_tokens_to_keep = 1`, so the most likely token always survives), applied in
//! transformers' order: top-k, top-p, min-p, typical-p. Probabilities are computed in f64 and
//! compared in f32, as transformers compares its float32 tensors.

use super::candidates::Candidates;

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
/// probability up to and including it is ≤ 1 - p; the most likely token always stays. Only as
/// much of the set is sorted as the answer needs (64 tokens, then 8× more at a time).
pub fn top_p(c: &mut Candidates, p: f64, scratch: &mut Vec<f64>) {
    if p >= 1.0 || c.len() <= 1 {
        return;
    }
    let total = c.weights(scratch);
    let threshold = (1.0 - p) as f32;
    let mut k = 64;
    loop {
        c.sort_prefix(k);
        let k_now = k.min(c.len());
        let max = c.items()[0].1;
        // Probability mass of the tokens more likely than item i.
        let mut head = 0.0f64;
        for i in 0..k_now {
            let tail = ((total - head) / total) as f32;
            if i > 0 && tail <= threshold {
                c.truncate(i);
                return;
            }
            head += ((c.items()[i].1 - max) as f64).exp();
        }
        if k_now == c.len() {
            return;
        }
        k *= 8;
    }
}

/// `MinPLogitsWarper`: drops tokens whose probability is below `min_p` times the largest.
pub fn min_p(c: &mut Candidates, min_p: f64, scratch: &mut Vec<f64>) {
    if min_p <= 0.0 || c.len() <= 1 {
        return;
    }
    let total = c.weights(scratch);
    let max = c.max_logit();
    let scaled = min_p as f32 * (1.0 / total) as f32;
    let mut kept_top = false;
    c.retain(|_, l| {
        let prob = (((l - max) as f64).exp() / total) as f32;
        // The most likely token stays even if rounding put it below the bar.
        let top = l == max && !kept_top;
        kept_top |= top;
        top || prob >= scaled
    });
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
