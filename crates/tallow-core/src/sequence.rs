//! One generation in flight: its tokens, KV cache, sampler, detokenizer and stop matcher. The
//! engine advances it one forward pass at a time (`step`), so sequences can be interleaved and
//! cancelled between tokens.

use crate::decoder::Logits;
use crate::detokenizer::Detokenizer;
use crate::error::{Error, ErrorCode, Result};
use crate::generation::{Event, FinishReason, GenerateRequest, GenerationResult, Prompt};
use crate::kv_cache::{CachedPrefix, SequenceCache};
use crate::model::Model;
use crate::sampler::Sampler;
use crate::stop::{StopMatcher, StopOutcome};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Receives a sequence's events on the engine thread; must not block for long.
pub type EventSink = Box<dyn FnMut(Event) + Send>;

pub struct Sequence {
    request: GenerateRequest,
    sink: EventSink,
    cancelled: Arc<AtomicBool>,
    state: Option<Running>,
    /// The session's cache this sequence may start from (given before its first step).
    reuse: Option<CachedPrefix>,
    /// This sequence's cache, kept for its session once it has ended.
    kept: Option<CachedPrefix>,
}

/// State that exists once the prompt is tokenized.
struct Running {
    /// The prompt's token ids.
    prompt: Vec<u32>,
    /// Leading prompt positions served by the session's cache.
    cached_prompt: usize,
    tokens: Vec<u32>,
    text: String,
    cache: SequenceCache,
    sampler: Sampler,
    detokenizer: Detokenizer,
    stop: StopMatcher,
    started: Instant,
    prefill_ms: f64,
}

impl Sequence {
    pub fn new(request: GenerateRequest, sink: EventSink, cancelled: Arc<AtomicBool>) -> Self {
        Sequence {
            request,
            sink,
            cancelled,
            state: None,
            reuse: None,
            kept: None,
        }
    }

    /// The session whose cache this sequence uses and keeps.
    pub fn session(&self) -> Option<u64> {
        self.request.session
    }

    /// Lets the sequence start from a session's cache.
    pub fn resume_from(&mut self, prefix: CachedPrefix) {
        self.reuse = Some(prefix);
    }

    /// The cache to keep for the session, once the sequence has ended.
    pub fn take_kept(&mut self) -> Option<CachedPrefix> {
        self.kept.take()
    }

    /// Runs one forward pass (the prompt the first time, then one token). Returns true once
    /// the sequence has sent its final event.
    pub fn step(&mut self, model: &Model) -> bool {
        if self.cancelled.load(Ordering::Relaxed) {
            self.finish(FinishReason::Abort);
            return true;
        }
        match self.advance(model) {
            Ok(None) => false,
            Ok(Some(reason)) => {
                self.finish(reason);
                true
            }
            Err(e) => {
                (self.sink)(Event::Error(e));
                true
            }
        }
    }

    /// Ends the sequence now, e.g. when the engine shuts down.
    pub fn abort(&mut self) {
        self.finish(FinishReason::Abort);
    }

    fn advance(&mut self, model: &Model) -> Result<Option<FinishReason>> {
        let (logits, running) = match self.state.as_mut() {
            None => {
                let started = Instant::now();
                let prompt = self.prompt_ids(model)?;
                // Reuse the session's cache for the prompt's common prefix, unless the rope
                // would have rotated those keys differently for this longer sequence.
                let mut cache = SequenceCache::new(model.decoder.spec().num_layers());
                let mut cached_prompt = 0;
                if let Some(prefix) = self.reuse.take() {
                    let usable = prefix.reusable_for(&prompt);
                    if usable > 0 && !model.decoder.cache_outdated(usable, prompt.len()) {
                        cache = prefix.cache;
                        cache.truncate(usable);
                        cached_prompt = usable;
                    }
                }
                let mut running = Running {
                    tokens: vec![],
                    text: String::new(),
                    cache,
                    sampler: Sampler::new(self.request.sampling.clone()),
                    detokenizer: Detokenizer::default(),
                    stop: StopMatcher::new(self.request.stop.clone(), self.request.include_stop),
                    started,
                    prefill_ms: 0.0,
                    prompt,
                    cached_prompt,
                };
                if self.request.max_tokens == 0 {
                    self.state = Some(running);
                    return Ok(Some(FinishReason::Length));
                }
                let logits = model.decoder.forward(
                    &running.prompt[cached_prompt..],
                    &mut running.cache,
                    Logits::Last,
                )?;
                (logits, self.state.insert(running))
            }
            Some(running) => {
                let cached = running.cache.len();
                let logits = if model.decoder.cache_outdated(cached, cached + 1) {
                    // The cached keys no longer fit the rope (LongRoPE outgrew its original
                    // context): recompute the whole sequence, as transformers does.
                    running.cache = SequenceCache::new(model.decoder.spec().num_layers());
                    let all: Vec<u32> = running
                        .prompt
                        .iter()
                        .chain(&running.tokens)
                        .copied()
                        .collect();
                    model
                        .decoder
                        .forward(&all, &mut running.cache, Logits::Last)?
                } else {
                    let last = *running
                        .tokens
                        .last()
                        .expect("a running sequence has a token");
                    model
                        .decoder
                        .forward(&[last], &mut running.cache, Logits::Last)?
                };
                (logits, running)
            }
        };
        let logits = logits.squeeze(0)?.to_vec1::<f32>()?;
        let id = running.sampler.sample(&logits);
        if running.tokens.is_empty() {
            running.prefill_ms = running.started.elapsed().as_secs_f64() * 1000.0;
        }
        running.tokens.push(id);

        let is_eos = !self.request.ignore_eos && model.info.eos_token_ids.contains(&id);
        // The whole sequence (prompt + generated) stays within the context, as in transformers.
        let out_of_room = running.tokens.len() >= self.request.max_tokens
            || running.prompt.len() + running.tokens.len() >= model.info.context_length;
        let mut text = running.detokenizer.push(&model.tokenizer, id)?;
        if is_eos || out_of_room {
            text.push_str(&running.detokenizer.flush(&model.tokenizer)?);
        }
        let (mut emit, stopped) = match running.stop.push(&text) {
            StopOutcome::Continue(t) => (t, false),
            StopOutcome::Stopped(t) => (t, true),
        };
        if !stopped && (is_eos || out_of_room) {
            emit.push_str(&running.stop.flush());
        }
        running.text.push_str(&emit);
        (self.sink)(Event::Token { id, text: emit });
        Ok(if stopped || is_eos {
            Some(FinishReason::Stop)
        } else if out_of_room {
            Some(FinishReason::Length)
        } else {
            None
        })
    }

    /// The prompt as token ids, checked against the vocabulary and the context.
    fn prompt_ids(&self, model: &Model) -> Result<Vec<u32>> {
        let ids = match &self.request.prompt {
            Prompt::Text {
                text,
                parse_special,
            } => model.tokenizer.encode(text, true, *parse_special)?,
            Prompt::Tokens(ids) => ids.clone(),
        };
        check_prompt(&ids, model, Room::ForGeneration)?;
        Ok(ids)
    }

    fn finish(&mut self, reason: FinishReason) {
        let result = match self.state.take() {
            None => {
                // Never started: a session's cache goes back untouched.
                self.kept = self.reuse.take();
                GenerationResult {
                    text: String::new(),
                    tokens: vec![],
                    finish_reason: reason,
                    prompt_tokens: 0,
                    cached_prompt_tokens: 0,
                    completion_tokens: 0,
                    prefill_ms: 0.0,
                    decode_ms: 0.0,
                    tokens_per_second: 0.0,
                }
            }
            Some(r) => {
                let total_ms = r.started.elapsed().as_secs_f64() * 1000.0;
                let decode_ms = (total_ms - r.prefill_ms).max(0.0);
                let decoded = r.tokens.len().saturating_sub(1);
                if self.request.session.is_some() {
                    // The cache holds every token but the last generated one (never fed back).
                    let mut tokens: Vec<u32> = r.prompt.iter().chain(&r.tokens).copied().collect();
                    tokens.truncate(r.cache.len());
                    self.kept = Some(CachedPrefix {
                        tokens,
                        cache: r.cache,
                    });
                }
                GenerationResult {
                    completion_tokens: r.tokens.len(),
                    text: r.text,
                    tokens: r.tokens,
                    finish_reason: reason,
                    prompt_tokens: r.prompt.len(),
                    cached_prompt_tokens: r.cached_prompt,
                    prefill_ms: r.prefill_ms,
                    decode_ms,
                    tokens_per_second: if decode_ms > 0.0 {
                        decoded as f64 / (decode_ms / 1000.0)
                    } else {
                        0.0
                    },
                }
            }
        };
        (self.sink)(Event::Done(result));
    }
}

/// Whether a prompt must leave room in the context for generated tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Evaluation: the prompt may fill the whole context.
    None,
    /// Generation: at least one position must remain for a generated token.
    ForGeneration,
}

/// A prompt must be non-empty, within the vocabulary and fit the context.
pub fn check_prompt(ids: &[u32], model: &Model, room: Room) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidPrompt,
            "the prompt has no tokens",
        ));
    }
    let vocab = model.info.vocab_size;
    if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(Error::new(
            ErrorCode::InvalidPrompt,
            format!("token id {bad} is outside the model's vocabulary of {vocab}"),
        ));
    }
    let context = model.info.context_length;
    let limit = match room {
        Room::None => context,
        Room::ForGeneration => context - 1,
    };
    if ids.len() > limit {
        let room_note = if room == Room::ForGeneration {
            " and generation needs at least one free position"
        } else {
            ""
        };
        return Err(Error::new(
            ErrorCode::ContextOverflow,
            format!(
                "the prompt has {} tokens but the model's context holds {context}{room_note}",
                ids.len()
            ),
        ));
    }
    Ok(())
}
