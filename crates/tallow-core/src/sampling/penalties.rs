//! Penalties on tokens already in the sequence, over a window of its latest tokens (prompt and
//! generated, as transformers and llama.cpp count them):
//!
//! - repetition penalty, transformers' `RepetitionPenaltyLogitsProcessor`: a token present in the
//!   window has its logit divided by the penalty when positive, multiplied by it when negative
//!   (once, however often the token occurs);
//! - frequency and presence penalties, the OpenAI API's formula:
//!   `logit[j] -= count[j] * frequency + (count[j] > 0) * presence`.
//!
//! The window keeps per-token counts up to date as tokens enter and leave it, so a step costs
//! the number of distinct tokens in the window, not the window's length.

use super::SamplingParams;
use std::collections::{HashMap, VecDeque};

pub struct PenaltyWindow {
    /// Most tokens counted; `usize::MAX` for the whole sequence.
    size: usize,
    /// The counted tokens, oldest first.
    tokens: VecDeque<u32>,
    counts: HashMap<u32, u32>,
}

impl PenaltyWindow {
    /// A window over the latest `size` tokens (0 = all), primed with `history` (the prompt).
    pub fn new(size: usize, history: &[u32]) -> Self {
        let size = if size == 0 { usize::MAX } else { size };
        let mut window = PenaltyWindow {
            size,
            tokens: VecDeque::new(),
            counts: HashMap::new(),
        };
        let start = history.len().saturating_sub(size);
        for &id in &history[start..] {
            window.push(id);
        }
        window
    }

    /// Counts `id`, dropping the oldest token once the window is full.
    pub fn push(&mut self, id: u32) {
        self.tokens.push_back(id);
        *self.counts.entry(id).or_insert(0) += 1;
        if self.tokens.len() > self.size {
            if let Some(old) = self.tokens.pop_front() {
                if let Some(c) = self.counts.get_mut(&old) {
                    *c -= 1;
                    if *c == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
        }
    }

    /// Applies the repetition, frequency and presence penalties of `params` to `logits` [vocab].
    pub fn apply(&self, logits: &mut [f32], params: &SamplingParams) {
        let rep = params.repetition_penalty;
        let (freq, pres) = (params.frequency_penalty, params.presence_penalty);
        for (&id, &count) in &self.counts {
            let Some(l) = logits.get_mut(id as usize) else {
                continue;
            };
            if rep != 1.0 {
                *l = if *l < 0.0 { *l * rep } else { *l / rep };
            }
            if freq != 0.0 || pres != 0.0 {
                *l = *l - count as f32 * freq - pres;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(rep: f32, freq: f32, pres: f32) -> SamplingParams {
        SamplingParams {
            repetition_penalty: rep,
            frequency_penalty: freq,
            presence_penalty: pres,
            ..Default::default()
        }
    }

    #[test]
    fn the_window_forgets_old_tokens() {
        let mut w = PenaltyWindow::new(3, &[5, 5, 1, 2]);
        // Window: [5, 1, 2].
        let mut logits = vec![0.0; 6];
        w.apply(&mut logits, &params(1.0, 1.0, 0.0));
        assert_eq!(logits, [0.0, -1.0, -1.0, 0.0, 0.0, -1.0]);
        w.push(1); // window [1, 2, 1]
        let mut logits = vec![0.0; 6];
        w.apply(&mut logits, &params(1.0, 1.0, 0.5));
        assert_eq!(logits, [0.0, -2.5, -1.5, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn repetition_divides_positive_and_multiplies_negative_logits_once() {
        let w = PenaltyWindow::new(0, &[0, 0, 1]);
        let mut logits = vec![2.0, -2.0, 2.0];
        w.apply(&mut logits, &params(2.0, 0.0, 0.0));
        assert_eq!(logits, [1.0, -4.0, 2.0]);
    }
}
