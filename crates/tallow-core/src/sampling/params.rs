//! The sampling options of one request, their defaults and their ranges. The TypeScript SDK
//! validates them first (with the same ranges and messages); the engine checks again because Rust
//! callers reach it directly.

use crate::error::{Error, ErrorCode, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 selects the most likely token (greedy); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (and any tied with the k-th); 0 disables.
    pub top_k: usize,
    /// Keep the most likely tokens whose probability mass before them is below `top_p`; 1 disables.
    pub top_p: f64,
    /// Drop tokens less likely than `min_p` times the most likely one; 0 disables.
    pub min_p: f64,
    /// Locally typical sampling: keep the tokens whose surprise is closest to the entropy, up to
    /// this much probability mass; 1 disables.
    pub typical_p: f64,
    /// transformers' repetition penalty: a seen token's logit is divided by it when positive and
    /// multiplied by it when negative; 1 disables.
    pub repetition_penalty: f32,
    /// OpenAI's frequency penalty: subtracted once per occurrence of a token in the window.
    pub frequency_penalty: f32,
    /// OpenAI's presence penalty: subtracted once from every token present in the window.
    pub presence_penalty: f32,
    /// How many of the latest tokens (prompt and generated) the penalties look at; 0 = all.
    pub penalty_window: usize,
    /// Added to a token's logit before anything else (OpenAI's `logit_bias`); -100 in effect bans.
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the random generator; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.0,
            typical_p: 1.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_window: 0,
            logit_bias: vec![],
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding with no processor: what `temperature: 0` gives by itself.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            ..Default::default()
        }
    }

    /// Checks every range; the message names the option as the SDK spells it.
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
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("minP must be in [0, 1], got {}", self.min_p));
        }
        if !(self.typical_p > 0.0 && self.typical_p <= 1.0) {
            return bad(format!(
                "typicalP must be in (0, 1], got {}",
                self.typical_p
            ));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!(
                "repetitionPenalty must be a finite number > 0, got {}",
                self.repetition_penalty
            ));
        }
        for (name, value) in [
            ("frequencyPenalty", self.frequency_penalty),
            ("presencePenalty", self.presence_penalty),
        ] {
            if !(-2.0..=2.0).contains(&value) {
                return bad(format!("{name} must be in [-2, 2], got {value}"));
            }
        }
        for &(id, bias) in &self.logit_bias {
            if !(-100.0..=100.0).contains(&bias) {
                return bad(format!(
                    "logitBias[{id}] must be a number in [-100, 100], got {bias}"
                ));
            }
        }
        Ok(())
    }

    /// Whether any penalty changes the logits (so the sampler must track a window).
    pub fn has_penalties(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.frequency_penalty != 0.0
            || self.presence_penalty != 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_option() {
        let cases: [(SamplingParams, &str); 7] = [
            (
                SamplingParams {
                    temperature: -1.0,
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SamplingParams {
                    top_p: 0.0,
                    ..Default::default()
                },
                "topP",
            ),
            (
                SamplingParams {
                    min_p: 1.5,
                    ..Default::default()
                },
                "minP",
            ),
            (
                SamplingParams {
                    typical_p: 0.0,
                    ..Default::default()
                },
                "typicalP",
            ),
            (
                SamplingParams {
                    repetition_penalty: 0.0,
                    ..Default::default()
                },
                "repetitionPenalty",
            ),
            (
                SamplingParams {
                    presence_penalty: 2.5,
                    ..Default::default()
                },
                "presencePenalty",
            ),
            (
                SamplingParams {
                    logit_bias: vec![(3, 101.0)],
                    ..Default::default()
                },
                "logitBias[3]",
            ),
        ];
        for (params, name) in cases {
            let err = params.validate().unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidOptions);
            assert!(err.message.starts_with(name), "{}", err.message);
        }
        assert!(SamplingParams::default().validate().is_ok());
    }
}
