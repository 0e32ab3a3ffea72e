//! What a generation request asks for and what it reports back.

use crate::error::Error;
use crate::sampler::SamplingParams;

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
    /// Keep this sequence's KV cache under this id when it ends, and start from the cache kept
    /// under it: the longest common prefix of the cached tokens and this prompt is not computed
    /// again (chat sessions re-send the whole conversation each turn).
    pub session: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
    /// Cancelled by the caller, or the engine shut down.
    Abort,
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
    },
    Done(GenerationResult),
    Error(Error),
}
