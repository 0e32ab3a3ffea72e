//! The per-sequence sampler: runs the processors of `SamplingParams` over one position's logits
//! in the documented order (see the module docs) and draws the next token with a seeded ChaCha8
//! generator, so the same seed, model, prompt and options give the same tokens.

use super::bias::apply_logit_bias;
use super::candidates::Candidates;
use super::filters;
use super::penalties::PenaltyWindow;
use super::SamplingParams;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// The tokens the penalties look at; `None` when no penalty is set.
    window: Option<PenaltyWindow>,
    /// Buffers reused across steps: no allocation per token.
    candidates: Candidates,
    scratch: Vec<f64>,
}

impl Sampler {
    /// A sampler for a sequence that starts with `prompt` (counted by the penalties).
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Self {
        let rng = match params.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        let window = params
            .has_penalties()
            .then(|| PenaltyWindow::new(params.penalty_window, prompt));
        Sampler {
            params,
            rng,
            window,
            candidates: Candidates::default(),
            scratch: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Logit bias and penalties, in place on `logits` [vocab]: the processors that apply in
    /// greedy decoding too.
    pub fn process(&self, logits: &mut [f32]) {
        apply_logit_bias(logits, &self.params.logit_bias);
        if let Some(window) = &self.window {
            window.apply(logits, &self.params);
        }
    }

    /// Every processor, leaving the candidates the next token is drawn from (for temperature 0,
    /// the processed logits at temperature 1, unfiltered). `logits` [vocab] is changed in place.
    pub fn distribution(&mut self, logits: &mut [f32]) -> &Candidates {
        self.process(logits);
        let p = &self.params;
        let temperature = if p.temperature == 0.0 {
            1.0
        } else {
            p.temperature
        };
        let small_k = p.top_k > 0 && p.top_k <= logits.len() / 8;
        if p.temperature > 0.0 && small_k {
            // A small top-k: collect only its survivors instead of the whole vocabulary.
            self.candidates.fill_top_k(logits, temperature, p.top_k);
        } else if p.temperature > 0.0 && p.top_k == 0 && p.top_p < 1.0 {
            // Top-p first: collect only the nucleus.
            filters::fill_top_p(
                &mut self.candidates,
                logits,
                temperature,
                p.top_p,
                &mut self.scratch,
            );
        } else {
            self.candidates.fill(logits, temperature);
        }
        if p.temperature > 0.0 {
            filters::top_k(&mut self.candidates, p.top_k);
            if !(p.top_k == 0 && p.top_p < 1.0) {
                filters::top_p(&mut self.candidates, p.top_p, &mut self.scratch);
            }
            filters::min_p(&mut self.candidates, p.min_p, &mut self.scratch);
            filters::typical(&mut self.candidates, p.typical_p, &mut self.scratch);
        }
        &self.candidates
    }

    /// The next token given one position's logits [vocab] (changed in place by the processors).
    /// Call [`Sampler::accept`] with the token that is finally kept.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        if self.params.temperature == 0.0 {
            self.process(logits);
            return argmax(logits);
        }
        self.distribution(logits);
        if self.candidates.is_empty() {
            // Every logit was -inf (a constraint allowing nothing is caught before this).
            return argmax(logits);
        }
        self.candidates.draw(&mut self.rng, &mut self.scratch)
    }

    /// Records a generated token for the penalties.
    pub fn accept(&mut self, id: u32) {
        if let Some(window) = &mut self.window {
            window.push(id);
        }
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

    fn params(temperature: f32, top_k: usize, top_p: f64, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            seed: Some(seed),
            ..SamplingParams::greedy()
        }
    }

    #[test]
    fn temperature_zero_is_argmax_after_bias_and_penalties() {
        let mut s = Sampler::new(params(0.0, 0, 1.0, 1), &[]);
        assert_eq!(s.sample(&mut [0.1, 2.0, 2.0, -1.0]), 1);
        let biased = SamplingParams {
            logit_bias: vec![(3, 5.0)],
            ..params(0.0, 0, 1.0, 1)
        };
        assert_eq!(
            Sampler::new(biased, &[]).sample(&mut [0.1, 2.0, 2.0, -1.0]),
            3
        );
        let penalised = SamplingParams {
            repetition_penalty: 4.0,
            ..params(0.0, 0, 1.0, 1)
        };
        assert_eq!(
            Sampler::new(penalised, &[1]).sample(&mut [0.1, 2.0, 1.0, -1.0]),
            2
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, 0, 1.0, seed), &[]);
            (0..50)
                .map(|_| s.sample(&mut logits.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn a_token_masked_to_minus_infinity_is_never_drawn() {
        let mut s = Sampler::new(params(5.0, 0, 1.0, 3), &[]);
        for _ in 0..500 {
            let id = s.sample(&mut [0.0, f32::NEG_INFINITY, 0.0]);
            assert_ne!(id, 1);
        }
    }
}
