//! Beam search as transformers (≥ 4.50) runs it, step for step, so that the same model gives the
//! same sequence: `num_beams` running hypotheses; each step scores every continuation of every
//! beam by its accumulated log-probability, keeps the best `max(2, 1 + n_eos) · num_beams`
//! (enough that `num_beams` remain after some end), lets those among the best `num_beams` that
//! end (an end token, or the length limit) join the finished hypotheses with score
//! `logprob_sum / generated_len ^ length_penalty`, and continues with the best `num_beams` that
//! did not end. Early stopping (`true`, `false` = a heuristic, `never`) decides when no running
//! beam can beat the finished ones any more. The arithmetic is f32 as in transformers, including
//! its -1e9 stand-ins for "impossible".
//!
//! This file is the bookkeeping alone, driven with each running beam's log-probabilities; the
//! sequence loop (`sequence.rs`) runs the model and keeps one KV cache per beam.

use crate::error::{Error, ErrorCode, Result};

/// transformers' `early_stopping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStopping {
    /// `True`: stop as soon as `num_beams` hypotheses have finished.
    Always,
    /// `False` (the default): stop once the best running beam, scored at its current length,
    /// cannot beat the worst finished hypothesis.
    Heuristic,
    /// `"never"`: stop only when no running beam can beat the finished ones even at the longest
    /// length (the canonical beam search, with `length_penalty` 0).
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BeamParams {
    pub num_beams: usize,
    /// Finished hypotheses are scored `sum of logprobs / length ^ length_penalty`: > 0 favours
    /// longer outputs, < 0 shorter ones.
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
}

impl BeamParams {
    pub fn validate(&self) -> Result<()> {
        if self.num_beams < 2 {
            return Err(Error::new(
                ErrorCode::InvalidOptions,
                format!(
                    "numBeams must be at least 2 for beam search, got {}",
                    self.num_beams
                ),
            ));
        }
        if !self.length_penalty.is_finite() {
            return Err(Error::new(
                ErrorCode::InvalidOptions,
                format!(
                    "lengthPenalty must be a finite number, got {}",
                    self.length_penalty
                ),
            ));
        }
        Ok(())
    }
}

/// transformers' stand-in for an impossible score.
const IMPOSSIBLE: f32 = -1.0e9;

#[derive(Debug, Clone, PartialEq)]
struct Hypothesis {
    tokens: Vec<u32>,
    score: f32,
}

/// What one step decided for the running beams.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamStep {
    /// For each running beam after the step: the index of the beam it continues and the token it
    /// appended (its KV cache is its parent's plus that token).
    pub continued: Vec<(usize, u32)>,
}

pub struct BeamSearch {
    params: BeamParams,
    eos: Vec<u32>,
    /// Most tokens to generate (transformers' `max_length` minus the prompt).
    max_new: usize,
    /// Tokens generated so far by every running beam.
    generated: usize,
    running: Vec<Hypothesis>,
    /// `num_beams` slots; those not `done` hold a placeholder scored `IMPOSSIBLE`.
    finished: Vec<(Hypothesis, bool)>,
    heuristic_unsatisfied: bool,
    over: bool,
}

impl BeamSearch {
    /// A search from the prompt: `num_beams` copies of it, all but the first at `IMPOSSIBLE` so
    /// the first step draws from one copy only.
    pub fn new(params: BeamParams, eos: Vec<u32>, max_new: usize) -> Self {
        let n = params.num_beams;
        let running = (0..n)
            .map(|i| Hypothesis {
                tokens: vec![],
                score: if i == 0 { 0.0 } else { IMPOSSIBLE },
            })
            .collect();
        let finished = (0..n)
            .map(|_| {
                (
                    Hypothesis {
                        tokens: vec![],
                        score: IMPOSSIBLE,
                    },
                    false,
                )
            })
            .collect();
        BeamSearch {
            params,
            eos,
            max_new,
            generated: 0,
            running,
            finished,
            heuristic_unsatisfied: true,
            over: max_new == 0,
        }
    }

    pub fn num_beams(&self) -> usize {
        self.params.num_beams
    }

    /// Whether the search has ended.
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// The best finished hypothesis: its tokens (an end token included) and its score.
    pub fn best(&self) -> (&[u32], f32) {
        let (h, _) = &self.finished[0];
        (&h.tokens, h.score)
    }

    /// Advances every running beam by one token given `log_probs[beam]` [vocab] (log-softmax of
    /// that beam's logits).
    pub fn step(&mut self, log_probs: &[Vec<f32>]) -> BeamStep {
        let n = self.params.num_beams;
        let keep = (2usize.max(1 + self.eos.len())) * n;
        // The best `keep` of every beam's accumulated scores: (score, beam, token), best first,
        // ties by flat index (beam · vocab + token) as torch.topk over [beams · vocab] sees them.
        let mut top: Vec<(f32, usize, u32)> = Vec::with_capacity(keep * n);
        for (b, lp) in log_probs.iter().enumerate() {
            let base = self.running[b].score;
            let mut scored: Vec<(f32, usize, u32)> = lp
                .iter()
                .enumerate()
                .map(|(t, &l)| (l + base, b, t as u32))
                .collect();
            let k = keep.min(scored.len());
            if k < scored.len() {
                scored.select_nth_unstable_by(k - 1, best_first);
                scored.truncate(k);
            }
            top.extend(scored);
        }
        top.sort_by(best_first);
        top.truncate(keep);

        let at_limit = self.generated + 1 >= self.max_new;
        let hits: Vec<bool> = top
            .iter()
            .map(|&(_, _, t)| at_limit || self.eos.contains(&t))
            .collect();
        let extend = |&(score, b, t): &(f32, usize, u32), running: &[Hypothesis]| {
            let mut tokens = running[b].tokens.clone();
            tokens.push(t);
            Hypothesis { tokens, score }
        };

        // The next running beams: the best that did not end.
        let mut next: Vec<(f32, usize)> = top
            .iter()
            .zip(&hits)
            .enumerate()
            .map(|(k, (c, &hit))| (c.0 + if hit { IMPOSSIBLE } else { 0.0 }, k))
            .collect();
        next.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        next.truncate(n);
        let continued = next.iter().map(|&(_, k)| (top[k].1, top[k].2)).collect();
        let new_running: Vec<Hypothesis> = next
            .iter()
            .map(|&(score, k)| Hypothesis {
                score,
                ..extend(&top[k], &self.running)
            })
            .collect();

        // Finished hypotheses: merge those of the best `n` that just ended.
        let divisor = length_divisor(self.generated + 1, self.params.length_penalty);
        let all_done = self.finished.iter().all(|(_, done)| *done);
        let mut merged: Vec<(Hypothesis, bool)> = std::mem::take(&mut self.finished);
        for (k, c) in top.iter().enumerate() {
            let just_finished = hits[k] && k < n;
            let mut score = c.0 / divisor;
            if all_done && self.params.early_stopping == EarlyStopping::Always {
                score += IMPOSSIBLE;
            }
            if !self.heuristic_unsatisfied {
                score += IMPOSSIBLE;
            }
            if !just_finished {
                score += IMPOSSIBLE;
            }
            merged.push((
                Hypothesis {
                    score,
                    ..extend(c, &self.running)
                },
                just_finished,
            ));
        }
        let mut order: Vec<usize> = (0..merged.len()).collect();
        order.sort_by(|&a, &b| {
            merged[b]
                .0
                .score
                .total_cmp(&merged[a].0.score)
                .then(a.cmp(&b))
        });
        self.finished = order[..n].iter().map(|&i| merged[i].clone()).collect();

        self.running = new_running;
        self.generated += 1;

        // Can a running beam still beat the finished ones?
        let best_len = if self.params.early_stopping == EarlyStopping::Never
            && self.params.length_penalty > 0.0
        {
            self.max_new
        } else {
            self.generated
        };
        let best_possible =
            self.running[0].score / length_divisor(best_len, self.params.length_penalty);
        let worst = self
            .finished
            .iter()
            .map(|(h, _)| h.score)
            .fold(f32::INFINITY, f32::min);
        let improvable = self
            .finished
            .iter()
            .any(|(_, done)| best_possible > if *done { worst } else { IMPOSSIBLE });
        self.heuristic_unsatisfied &= improvable;

        let all_done = self.finished.iter().all(|(_, done)| *done);
        let open = !(all_done && self.params.early_stopping == EarlyStopping::Always);
        let can_continue = !hits.iter().all(|&h| h);
        self.over = !(self.heuristic_unsatisfied && open && can_continue);
        BeamStep { continued }
    }
}

fn best_first(a: &(f32, usize, u32), b: &(f32, usize, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
}

/// `length ** length_penalty` as transformers computes it (a Python float), applied in f32.
fn length_divisor(length: usize, length_penalty: f32) -> f32 {
    (length as f64).powf(length_penalty as f64) as f32
}

/// log-softmax of `logits` in f32 (computed in f64).
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let log_z = super::logprobs::log_sum_exp(logits);
    logits.iter().map(|&l| (l as f64 - log_z) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n: usize, lp: f32, es: EarlyStopping) -> BeamParams {
        BeamParams {
            num_beams: n,
            length_penalty: lp,
            early_stopping: es,
        }
    }

    /// A fixed "model": the next-token log-probabilities depend only on the last token.
    fn table(last: Option<u32>) -> Vec<f32> {
        let logits: Vec<f32> = match last {
            None => vec![0.0, 2.0, 1.9, 0.5],
            Some(t) => (0..4).map(|i| ((i * 7 + t * 3) % 5) as f32 * 0.6).collect(),
        };
        log_softmax(&logits)
    }

    fn run(mut s: BeamSearch) -> (Vec<u32>, f32) {
        let mut beams: Vec<Vec<u32>> = vec![vec![]; s.num_beams()];
        while !s.is_over() {
            let lps: Vec<Vec<f32>> = beams.iter().map(|b| table(b.last().copied())).collect();
            let step = s.step(&lps);
            beams = step
                .continued
                .iter()
                .map(|&(p, t)| {
                    let mut b = beams[p].clone();
                    b.push(t);
                    b
                })
                .collect();
        }
        let (t, score) = s.best();
        (t.to_vec(), score)
    }

    /// Exhaustive search over every sequence of the table's model up to `max_new` tokens, scored
    /// as beam search scores finished hypotheses: with `length_penalty` 0 and `never`, beam
    /// search with as many beams as sequences is exact.
    #[test]
    fn a_wide_enough_beam_finds_the_best_sequence() {
        let eos = 0u32;
        let max_new = 3;
        let mut best = (vec![], f32::NEG_INFINITY);
        let mut stack = vec![(vec![], 0.0f32)];
        while let Some((seq, score)) = stack.pop() {
            let lp = table(seq.last().copied());
            for t in 0..4u32 {
                let mut s = seq.clone();
                s.push(t);
                let sc = score + lp[t as usize];
                if t == eos || s.len() == max_new {
                    if sc > best.1 {
                        best = (s, sc);
                    }
                } else {
                    stack.push((s, sc));
                }
            }
        }
        let got = run(BeamSearch::new(
            params(64, 0.0, EarlyStopping::Never),
            vec![eos],
            max_new,
        ));
        assert_eq!(got.0, best.0);
        assert!((got.1 - best.1).abs() < 1e-5);
    }

    #[test]
    fn the_search_stops_at_the_length_limit() {
        let (tokens, _) = run(BeamSearch::new(
            params(2, 1.0, EarlyStopping::Heuristic),
            vec![],
            5,
        ));
        assert_eq!(tokens.len(), 5);
    }
}
