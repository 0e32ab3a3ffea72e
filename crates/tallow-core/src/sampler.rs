//! Choosing the next token from logits: greedy (temperature 0) or seeded sampling after
//! temperature, top-k and top-p, applied in that order (transformers' order for these three).

use crate::error::{Error, ErrorCode, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 selects the most likely token (greedy); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`; 1 disables.
    pub top_p: f32,
    /// Seed of the random generator; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            seed: None,
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::new(ErrorCode::InvalidOptions, what));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!(
                "temperature must be a finite number ≥ 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("topP must be in (0, 1], got {}", self.top_p));
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Scratch (token, weight) pairs reused across steps: no allocation per token.
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        Sampler {
            params,
            rng,
            candidates: Vec::new(),
        }
    }

    /// The next token given one position's logits [vocab].
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.params.temperature == 0.0 {
            return argmax(logits);
        }
        let t = self.params.temperature;
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l / t)));
        // Most likely first; ties keep the lower id first, as a stable sort would.
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = self.params.top_k;
        if k > 0 && k < self.candidates.len() {
            self.candidates.select_nth_unstable_by(k - 1, by_logit);
            self.candidates.truncate(k);
        }
        self.candidates.sort_unstable_by(by_logit);
        // Softmax over the survivors (the max is first).
        let max = self.candidates[0].1;
        let mut total = 0.0f32;
        for c in self.candidates.iter_mut() {
            c.1 = (c.1 - max).exp();
            total += c.1;
        }
        // Top-p: keep tokens until the cumulative probability reaches top_p (at least one).
        if self.params.top_p < 1.0 {
            let mut cumulative = 0.0f32;
            let mut keep = self.candidates.len();
            for (i, c) in self.candidates.iter().enumerate() {
                cumulative += c.1 / total;
                if cumulative >= self.params.top_p {
                    keep = i + 1;
                    break;
                }
            }
            self.candidates.truncate(keep);
            total = self.candidates.iter().map(|c| c.1).sum();
        }
        let mut r = self.rng.random::<f32>() * total;
        for c in &self.candidates {
            if r < c.1 {
                return c.0;
            }
            r -= c.1;
        }
        self.candidates.last().map_or(0, |c| c.0)
    }
}

/// Index of the largest logit; the first one on ties (as torch.argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            seed: Some(seed),
        }
    }

    #[test]
    fn temperature_zero_is_argmax() {
        let mut s = Sampler::new(params(0.0, 0, 1.0, 1));
        assert_eq!(s.sample(&[0.1, 2.0, 2.0, -1.0]), 1);
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, 0, 1.0, seed));
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let logits = [3.0, 2.9, 0.0, -5.0, 2.8];
        let mut s = Sampler::new(params(1.0, 2, 1.0, 3));
        for _ in 0..200 {
            assert!([0, 1].contains(&s.sample(&logits)));
        }
        // p(0) ≈ 0.36, p(1) ≈ 0.33: top_p 0.5 keeps both, 0.3 keeps only the first.
        let mut s = Sampler::new(params(1.0, 0, 0.3, 3));
        for _ in 0..200 {
            assert_eq!(s.sample(&logits), 0);
        }
    }

    #[test]
    fn sampled_frequencies_follow_the_softmax() {
        let logits = [0.0f32, 1.0, 2.0];
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        let mut s = Sampler::new(params(1.0, 0, 1.0, 11));
        let mut counts = [0usize; 3];
        let n = 30_000;
        for _ in 0..n {
            counts[s.sample(&logits) as usize] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let expected = logits[i].exp() / z;
            assert!((c as f32 / n as f32 - expected).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn validation_names_the_option() {
        let err = params(-1.0, 0, 1.0, 0).validate().unwrap_err();
        assert!(err.message.contains("temperature"));
        let err = params(1.0, 0, 0.0, 0).validate().unwrap_err();
        assert!(err.message.contains("topP"));
    }
}
