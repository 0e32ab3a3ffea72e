//! What a generation request asks for and what it reports back.

use crate::error::{Error, ErrorCode, Result};
use crate::sampling::{BeamParams, ResponseFormat, SamplingParams, TokenLogprobs};

/// A prompt: text to tokenize (with the tokenizer's special tokens, e.g. BOS) or token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Special-token text inside `text` (e.g. `<|im_start|>`) becomes control tokens only if
    /// `parse_special`; otherwise it is encoded as plain text.
    Text {
        text: String,
        parse_special: bool,
    },
    Tokens(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    /// Most tokens to generate.
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends at the first of these strings.
    pub stop: Vec<String>,
    /// The stop string that ended generation is part of the output (by default it is not).
    pub include_stop: bool,
    /// Keep generating past end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Further tokens that end generation as end-of-sequence tokens do (even with `ignore_eos`).
    pub stop_token_ids: Vec<u32>,
    /// Report each generated token's log-probability and this many most likely alternatives.
    pub logprobs: Option<usize>,
    /// Constrain the output to a JSON Schema, a regex or a grammar.
    pub response_format: Option<ResponseFormat>,
    /// Beam search instead of sampling (`sampling` is then unused).
    pub beam: Option<BeamParams>,
    /// Keep this sequence's KV cache under this id when it ends, and start from the cache kept
    /// under it: the longest common prefix of the cached tokens and this prompt is not computed
    /// again (chat sessions re-send the whole conversation each turn).
    pub session: Option<u64>,
}

impl Default for GenerateRequest {
    /// An empty text prompt with the default options; fill in at least the prompt.
    fn default() -> Self {
        GenerateRequest {
            prompt: Prompt::Tokens(vec![]),
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: vec![],
            include_stop: false,
            ignore_eos: false,
            session: None,
            stop_token_ids: vec![],
            logprobs: None,
            response_format: None,
            beam: None,
        }
    }
}

impl GenerateRequest {
    /// Checks every option's range and rejects combinations that contradict each other.
    pub fn validate(&self) -> Result<()> {
        self.sampling.validate()?;
        let conflict = |what: &str| Err(Error::new(ErrorCode::InvalidOptions, what.to_string()));
        if let Some(beam) = &self.beam {
            beam.validate()?;
            if self.response_format.is_some() {
                return conflict(
                    "responseFormat cannot be combined with beam search (numBeams > 1)",
                );
            }
            if self.logprobs.is_some() {
                return conflict("logprobs cannot be combined with beam search (numBeams > 1)");
            }
            if !self.stop.is_empty() {
                return conflict("stop strings cannot be combined with beam search (numBeams > 1); use stopTokenIds");
            }
        }
        if self.response_format.is_some() && self.ignore_eos {
            return conflict("ignoreEos cannot be combined with responseFormat: the end of the output is where the constraint allows end-of-sequence");
        }
        if let Some(n) = self.logprobs {
            if n > MAX_TOP_LOGPROBS {
                return Err(Error::new(
                    ErrorCode::InvalidOptions,
                    format!("topLogprobs must be in [0, {MAX_TOP_LOGPROBS}], got {n}"),
                ));
            }
        }
        Ok(())
    }
}

/// The most alternatives a position reports (the OpenAI API allows 20).
pub const MAX_TOP_LOGPROBS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
    /// Cancelled by the caller, or the engine shut down.
    Abort,
}

/// Exactly what ended a generation (`FinishReason` is its coarse, OpenAI-style summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishCause {
    /// One of the model's end-of-sequence tokens.
    Eos(u32),
    /// One of the request's `stop_token_ids`.
    StopToken(u32),
    /// One of the request's stop strings.
    StopString(String),
    /// The output constraint admits nothing more: the output is complete.
    Constraint,
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// The sequence filled the model's context.
    ContextLength,
    /// Cancelled by the caller, or the engine shut down.
    Abort,
}

impl FinishCause {
    /// The OpenAI-style summary.
    pub fn reason(&self) -> FinishReason {
        match self {
            FinishCause::Eos(_)
            | FinishCause::StopToken(_)
            | FinishCause::StopString(_)
            | FinishCause::Constraint => FinishReason::Stop,
            FinishCause::MaxTokens | FinishCause::ContextLength => FinishReason::Length,
            FinishCause::Abort => FinishReason::Abort,
        }
    }

    /// `eos`, `stop_token`, `stop_string`, `constraint`, `max_tokens`, `context_length`, `abort`.
    pub fn kind(&self) -> &'static str {
        match self {
            FinishCause::Eos(_) => "eos",
            FinishCause::StopToken(_) => "stop_token",
            FinishCause::StopString(_) => "stop_string",
            FinishCause::Constraint => "constraint",
            FinishCause::MaxTokens => "max_tokens",
            FinishCause::ContextLength => "context_length",
            FinishCause::Abort => "abort",
        }
    }
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationResult {
    /// The generated text: the concatenation of every `Event::Token` text.
    pub text: String,
    /// Generated token ids (an end-of-sequence token that ended generation included).
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    /// What exactly ended it.
    pub finish_cause: FinishCause,
    /// Per generated token, when the request asked for log-probabilities (else empty).
    pub logprobs: Vec<TokenLogprobs>,
    /// Beam search: the returned hypothesis' score (sum of log-probabilities / length ^
    /// length_penalty).
    pub beam_score: Option<f32>,
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values came from the session's cache instead of a forward pass.
    pub cached_prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Time to process the prompt and choose the first token.
    pub prefill_ms: f64,
    /// Time spent producing the tokens after the first.
    pub decode_ms: f64,
    /// Tokens after the first per second of `decode_ms`.
    pub tokens_per_second: f64,
}

/// What the engine reports about one generation, in order: `Token`s, then `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generated token and the text it completes (often empty: held back for UTF-8 or stops).
    Token {
        id: u32,
        text: String,
        /// When the request asked for them.
        logprobs: Option<Box<TokenLogprobs>>,
    },
    Done(GenerationResult),
    Error(Error),
}
