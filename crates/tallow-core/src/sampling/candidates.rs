//! The tokens still in the running at one step, with their (temperature-scaled) logits. Filters
//! shrink the set instead of writing -inf into a vocabulary-sized vector: a removed token has
//! probability 0, so a softmax over the survivors is exactly transformers' softmax over its
//! -inf-masked scores, and later filters touch only what is left (often a few dozen tokens of a
//! 150k vocabulary).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;

/// e^x for x ≤ 0 (a logit minus the largest), within 2 ulp of `f32::exp`: range reduction to
/// r ∈ [-ln2/2, ln2/2], its Taylor polynomial, and the power of two written into the exponent
/// bits (degree 7). Unlike the libm call it inlines and vectorizes, which is most of what a pass over a
/// 150k vocabulary costs.
#[inline(always)]
pub(super) fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[derive(Debug, Default, Clone)]
pub struct Candidates {
    /// (token, logit) pairs.
    items: Vec<(u32, f32)>,
    /// How many leading items are in final order: most likely first, ties by higher id.
    sorted: usize,
}

/// Most likely first; among equal logits the higher id first. That is the reverse of a stable
/// ascending sort, which is what transformers' top-p sorts by: where tied tokens straddle the
/// top-p boundary, the lower ids are the ones that go.
pub(super) fn by_logit(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(b.0.cmp(&a.0))
}

/// An f32 with a total order, for heaps.
#[derive(PartialEq)]
struct OrderedF32(f32);

impl Eq for OrderedF32 {}

impl PartialOrd for OrderedF32 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedF32 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Candidates {
    /// Every finite logit of `logits` [vocab] divided by `temperature` (tokens at -inf, e.g.
    /// masked by a constraint, are never candidates). Reuses this set's buffer.
    pub fn fill(&mut self, logits: &[f32], temperature: f32) {
        self.items.clear();
        self.sorted = 0;
        if temperature == 1.0 {
            self.items.extend(
                logits
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| **l != f32::NEG_INFINITY)
                    .map(|(i, &l)| (i as u32, l)),
            );
        } else {
            self.items.extend(
                logits
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| **l != f32::NEG_INFINITY)
                    .map(|(i, &l)| (i as u32, l / temperature)),
            );
        }
    }

    /// Only the tokens `top_k` would keep (the k largest scaled logits and any tied with the
    /// k-th), in two linear passes over `logits`: a k-sized heap finds the k-th value, then the
    /// survivors are collected. For a small k this skips building and selecting over a
    /// vocabulary-sized set.
    pub fn fill_top_k(&mut self, logits: &[f32], temperature: f32, k: usize) {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        self.items.clear();
        self.sorted = 0;
        let scale = |l: f32| {
            if temperature == 1.0 {
                l
            } else {
                l / temperature
            }
        };
        // Min-heap of the k largest (scaled) logits seen so far.
        let mut heap: BinaryHeap<Reverse<OrderedF32>> = BinaryHeap::with_capacity(k + 1);
        for &l in logits {
            if l == f32::NEG_INFINITY {
                continue;
            }
            let v = scale(l);
            if heap.len() < k {
                heap.push(Reverse(OrderedF32(v)));
            } else if heap.peek().is_some_and(|min| v > min.0 .0) {
                heap.pop();
                heap.push(Reverse(OrderedF32(v)));
            }
        }
        let Some(kth) = heap.peek().map(|min| min.0 .0) else {
            return;
        };
        self.items.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, l)| **l != f32::NEG_INFINITY)
                .map(|(i, &l)| (i as u32, scale(l)))
                .filter(|&(_, v)| v >= kth),
        );
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[(u32, f32)] {
        &self.items
    }

    /// The largest logit; -inf when empty.
    pub fn max_logit(&self) -> f32 {
        if self.sorted > 0 {
            return self.items[0].1;
        }
        self.items
            .iter()
            .fold(f32::NEG_INFINITY, |m, &(_, l)| m.max(l))
    }

    /// Puts the `k` most likely candidates first, in order (k is clamped to the set's size).
    /// Costs O(n) plus O(k log k), not a sort of the whole set.
    pub fn sort_prefix(&mut self, k: usize) {
        let k = k.min(self.items.len());
        if k <= self.sorted {
            return;
        }
        if k < self.items.len() {
            let rest = &mut self.items[self.sorted..];
            rest.select_nth_unstable_by(k - self.sorted - 1, by_logit);
        }
        self.items[self.sorted..k].sort_unstable_by(by_logit);
        self.sorted = k;
    }

    /// Sorts the whole set.
    pub fn sort_all(&mut self) {
        self.sort_prefix(self.items.len());
    }

    /// Keeps the first `n` items (they must be the sorted prefix, or order must not matter).
    pub fn truncate(&mut self, n: usize) {
        self.items.truncate(n);
        self.sorted = self.sorted.min(n);
    }

    /// Keeps the candidates for which `keep` holds; order is preserved.
    pub fn retain(&mut self, mut keep: impl FnMut(u32, f32) -> bool) {
        let sorted = self.sorted;
        let mut kept_sorted = 0;
        let mut i = 0;
        self.items.retain(|&(id, l)| {
            let k = keep(id, l);
            if k && i < sorted {
                kept_sorted += 1;
            }
            i += 1;
            k
        });
        // Survivors of a sorted prefix stay a sorted prefix only if none of it was dropped.
        self.sorted = if kept_sorted == sorted { sorted } else { 0 };
    }

    /// Replaces the items (used by filters that reorder, such as typical-p).
    pub(super) fn items_mut(&mut self) -> &mut Vec<(u32, f32)> {
        self.sorted = 0;
        &mut self.items
    }

    /// exp(logit - max) for each candidate and their sum in f64.
    pub fn weights(&self, out: &mut Vec<f64>) -> f64 {
        let max = self.max_logit();
        out.clear();
        out.extend(self.items.iter().map(|&(_, l)| exp_neg(l - max) as f64));
        out.iter().sum()
    }

    /// Draws one candidate with probability softmax(logit).
    pub fn draw(&self, rng: &mut ChaCha8Rng, scratch: &mut Vec<f64>) -> u32 {
        let total = self.weights(scratch);
        let mut r = rng.random::<f64>() * total;
        for (i, w) in scratch.iter().enumerate() {
            if r < *w {
                return self.items[i].0;
            }
            r -= w;
        }
        // Rounding left r just past the last weight: the last candidate with weight > 0.
        self.items
            .iter()
            .zip(scratch.iter())
            .rev()
            .find(|(_, w)| **w > 0.0)
            .map_or(self.items[0].0, |(c, _)| c.0)
    }

    /// The candidates as a vocabulary-sized vector, -inf for every token not in the set: the
    /// shape transformers' processors return (for tests and for inspection).
    pub fn to_dense(&self, vocab: usize) -> Vec<f32> {
        let mut out = vec![f32::NEG_INFINITY; vocab];
        for &(id, l) in &self.items {
            out[id as usize] = l;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_exp_is_within_two_ulp() {
        let mut worst = 0.0f32;
        let mut x = 0.0f32;
        while x > -87.0 {
            let (fast, exact) = (exp_neg(x), x.exp());
            let ulp = (exact.to_bits() as i64 - fast.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {fast}, libm {exact}");
            worst = worst.max((fast - exact).abs() / exact);
            x -= 0.000_37;
        }
        assert!(worst < 3e-7, "{worst}");
        assert_eq!(exp_neg(0.0), 1.0);
    }
}
