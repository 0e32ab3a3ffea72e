//! Log-probabilities of generated tokens, in the OpenAI API's shape: the chosen token's and the
//! `n` most likely alternatives' at each position. They are those of the model's own distribution
//! (log-softmax of the raw logits, before any processor or constraint), so they say how likely
//! the model found each token whatever the sampling options (vLLM's default, `raw_logprobs`).

use super::constraint::TokenBytes;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One token and its log-probability.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    /// The token's text (U+FFFD where it holds part of a UTF-8 character).
    pub token: String,
    /// The token's exact bytes (the pieces of a multi-byte character add up across tokens).
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// What one generated position reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub chosen: TokenLogprob,
    /// The `n` most likely tokens, most likely first (ties: lower id first).
    pub top: Vec<TokenLogprob>,
}

/// A (logit, id) pair ordered so that a max-heap pops the least wanted: the lowest logit, and on
/// equal logits the higher id.
#[derive(PartialEq)]
struct Worst(f32, u32);

impl Eq for Worst {}

impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// log Σ exp(logits), in f64.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) as f64;
    max + logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

/// The log-probability of `chosen` and the `n` most likely tokens under softmax(`logits`).
/// O(vocab · log n).
pub fn log_softmax_top(logits: &[f32], chosen: u32, n: usize, vocab: &TokenBytes) -> TokenLogprobs {
    let log_z = log_sum_exp(logits);
    let entry = |id: u32| TokenLogprob {
        id,
        token: vocab.text(id),
        bytes: vocab.bytes(id).to_vec(),
        logprob: (logits[id as usize] as f64 - log_z) as f32,
    };
    let mut heap: BinaryHeap<Worst> = BinaryHeap::with_capacity(n + 1);
    if n > 0 {
        for (i, &l) in logits.iter().enumerate() {
            let candidate = Worst(l, i as u32);
            if heap.len() < n {
                heap.push(candidate);
            } else if heap.peek().is_some_and(|worst| candidate < *worst) {
                heap.pop();
                heap.push(candidate);
            }
        }
    }
    let mut top: Vec<Worst> = heap.into_vec();
    top.sort();
    TokenLogprobs {
        chosen: entry(chosen),
        top: top.into_iter().map(|w| entry(w.1)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_n_is_sorted_and_normalised() {
        let vocab = TokenBytes::from_pieces((0..5).map(|i| vec![b'a' + i]).collect(), 5);
        let logits = [1.0f32, 3.0, 2.0, 3.0, -1.0];
        let r = log_softmax_top(&logits, 4, 3, &vocab);
        let ids: Vec<u32> = r.top.iter().map(|t| t.id).collect();
        assert_eq!(ids, [1, 3, 2]);
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        assert!((r.chosen.logprob as f64 - (-1.0 - z.ln())).abs() < 1e-6);
        assert_eq!(r.top[0].token, "b");
        let total: f64 = (0..5)
            .map(|i| log_softmax_top(&logits, i, 0, &vocab).chosen.logprob as f64)
            .map(f64::exp)
            .sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
