//! One generation in flight: its tokens, KV cache, sampler, detokenizer and stop matcher. The
//! engine advances it one forward pass at a time (`step`), so sequences can be interleaved and
//! cancelled between tokens.

use crate::decoder::Logits;
use crate::detokenizer::Detokenizer;
use crate::error::{Error, ErrorCode, Result};
use crate::generation::{Event, FinishCause, GenerateRequest, GenerationResult, Prompt};
use crate::kv_cache::{CachedPrefix, SequenceCache};
use crate::model::Model;
use crate::sampling::{
    log_softmax, log_softmax_top, BeamSearch, Constraint, ConstraintCompiler, Sampler, TokenBytes,
    TokenLogprobs,
};
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
    /// The output constraint, when the request has a response format.
    constraint: Option<Constraint>,
    /// Every token's bytes, when the request asks for log-probabilities.
    vocab: Option<Arc<TokenBytes>>,
    logprobs: Vec<TokenLogprobs>,
    /// Beam search state, when the request asks for it (then `cache` is unused).
    beams: Option<Beams>,
    /// The returned hypothesis' score, once beam search is over.
    beam_score: Option<f32>,
}

/// Beam search in flight: the search and one KV cache per running beam.
struct Beams {
    search: BeamSearch,
    caches: Vec<SequenceCache>,
    /// Log-probabilities of the next token for each running beam.
    log_probs: Vec<Vec<f32>>,
    /// Tokens of each running beam (to recompute a cache the rope outdated).
    tokens: Vec<Vec<u32>>,
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
    pub fn step(&mut self, model: &Model, compiler: &ConstraintCompiler) -> bool {
        if self.cancelled.load(Ordering::Relaxed) {
            self.finish(FinishCause::Abort);
            return true;
        }
        let advanced = if self.request.beam.is_some() {
            self.advance_beams(model)
        } else {
            self.advance(model, compiler)
        };
        match advanced {
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
        self.finish(FinishCause::Abort);
    }

    /// The state of a sequence whose prompt is ready: the prompt checked, options checked against
    /// the vocabulary, the session's cache reused where it can be, the constraint compiled.
    fn start(&mut self, model: &Model, compiler: &ConstraintCompiler) -> Result<Running> {
        let started = Instant::now();
        let prompt = self.prompt_ids(model)?;
        check_token_options(&self.request, model)?;
        let constraint = self
            .request
            .response_format
            .as_ref()
            .map(|format| compiler.compile(format))
            .transpose()?;
        let vocab = if self.request.logprobs.is_some() {
            Some(compiler.token_bytes()?)
        } else {
            None
        };
        // Reuse the session's cache for the prompt's common prefix, unless the rope would have
        // rotated those keys differently for this longer sequence.
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
        Ok(Running {
            tokens: vec![],
            text: String::new(),
            cache,
            sampler: Sampler::new(self.request.sampling.clone(), &prompt),
            detokenizer: Detokenizer::default(),
            stop: StopMatcher::new(self.request.stop.clone(), self.request.include_stop),
            started,
            prefill_ms: 0.0,
            prompt,
            cached_prompt,
            constraint,
            vocab,
            logprobs: vec![],
            beams: None,
            beam_score: None,
        })
    }

    fn advance(
        &mut self,
        model: &Model,
        compiler: &ConstraintCompiler,
    ) -> Result<Option<FinishCause>> {
        let (logits, running) = match self.state.as_mut() {
            None => {
                let mut running = self.start(model, compiler)?;
                if self.request.max_tokens == 0 {
                    self.state = Some(running);
                    return Ok(Some(FinishCause::MaxTokens));
                }
                let logits = model.decoder.forward(
                    &running.prompt[running.cached_prompt..],
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
        let mut logits = logits.squeeze(0)?.to_vec1::<f32>()?;
        // Log-probabilities describe the model's own distribution: taken before any processor.
        let raw = running.vocab.as_ref().map(|_| logits.clone());
        if let Some(constraint) = running.constraint.as_mut() {
            constraint.mask(&mut logits)?;
        }
        let id = running.sampler.sample(&mut logits);
        running.sampler.accept(id);
        if let Some(constraint) = running.constraint.as_mut() {
            constraint.accept(id)?;
        }
        let logprobs = match (&raw, &running.vocab, self.request.logprobs) {
            (Some(raw), Some(vocab), Some(n)) => {
                let lp = log_softmax_top(raw, id, n, vocab);
                running.logprobs.push(lp.clone());
                Some(Box::new(lp))
            }
            _ => None,
        };
        if running.tokens.is_empty() {
            running.prefill_ms = running.started.elapsed().as_secs_f64() * 1000.0;
        }
        running.tokens.push(id);

        // What ends the sequence with this token, before the stop strings have looked at its text.
        let mut cause = if self.request.stop_token_ids.contains(&id) {
            Some(FinishCause::StopToken(id))
        } else if !self.request.ignore_eos && model.info.eos_token_ids.contains(&id) {
            Some(FinishCause::Eos(id))
        } else if running
            .constraint
            .as_ref()
            .is_some_and(Constraint::is_finished)
        {
            Some(FinishCause::Constraint)
        } else if running.tokens.len() >= self.request.max_tokens {
            Some(FinishCause::MaxTokens)
        } else if running.prompt.len() + running.tokens.len() >= model.info.context_length {
            // The whole sequence (prompt + generated) stays within the context, as in transformers.
            Some(FinishCause::ContextLength)
        } else {
            None
        };
        // A stop token's own text is not part of the output (an EOS token's is skipped anyway).
        let mut text = if matches!(cause, Some(FinishCause::StopToken(_))) {
            String::new()
        } else {
            running.detokenizer.push(&model.tokenizer, id)?
        };
        if cause.is_some() {
            text.push_str(&running.detokenizer.flush(&model.tokenizer)?);
        }
        let mut emit = match running.stop.push(&text) {
            StopOutcome::Continue(t) => t,
            StopOutcome::Stopped(t) => {
                let matched = running.stop.matched().unwrap_or_default().to_string();
                cause = Some(FinishCause::StopString(matched));
                t
            }
        };
        if cause
            .as_ref()
            .is_some_and(|c| !matches!(c, FinishCause::StopString(_)))
        {
            emit.push_str(&running.stop.flush());
        }
        running.text.push_str(&emit);
        (self.sink)(Event::Token {
            id,
            text: emit,
            logprobs,
        });
        Ok(cause)
    }

    /// One step of beam search: the prompt the first time, then one token on every running beam.
    /// Tokens are sent only once the search is over (the best beam is not known before).
    fn advance_beams(&mut self, model: &Model) -> Result<Option<FinishCause>> {
        let Some(params) = self.request.beam.clone() else {
            return Ok(None);
        };
        let running = match self.state.as_mut() {
            Some(running) => running,
            None => {
                // Beam search never uses a constraint or log-probabilities (both are rejected
                // with it), so the compiler is not needed here.
                let mut running = self.start_plain(model)?;
                let logits = model.decoder.forward(
                    &running.prompt[running.cached_prompt..],
                    &mut running.cache,
                    Logits::Last,
                )?;
                let lp = log_softmax(&logits.squeeze(0)?.to_vec1::<f32>()?);
                let n = params.num_beams;
                let mut caches = Vec::with_capacity(n);
                for _ in 1..n {
                    caches.push(running.cache.fork()?);
                }
                caches.push(std::mem::replace(
                    &mut running.cache,
                    SequenceCache::new(model.decoder.spec().num_layers()),
                ));
                let mut eos: Vec<u32> = self.request.stop_token_ids.clone();
                if !self.request.ignore_eos {
                    for &id in &model.info.eos_token_ids {
                        if !eos.contains(&id) {
                            eos.push(id);
                        }
                    }
                }
                let room = model.info.context_length - running.prompt.len();
                let max_new = self.request.max_tokens.min(room);
                running.beams = Some(Beams {
                    search: BeamSearch::new(params, eos, max_new),
                    caches,
                    log_probs: vec![lp; n],
                    tokens: vec![vec![]; n],
                });
                running.prefill_ms = running.started.elapsed().as_secs_f64() * 1000.0;
                self.state.insert(running)
            }
        };
        let beams = running.beams.as_mut().expect("a beam sequence has beams");
        let step = beams.search.step(&beams.log_probs);
        if beams.search.is_over() {
            return self.emit_best_beam(model).map(Some);
        }
        // Each new beam continues a parent: the parent's cache moves to its first child and is
        // copied for any further one.
        let mut parents: Vec<Option<SequenceCache>> = std::mem::take(&mut beams.caches)
            .into_iter()
            .map(Some)
            .collect();
        let mut uses = vec![0usize; parents.len()];
        for &(p, _) in &step.continued {
            uses[p] += 1;
        }
        let mut caches = Vec::with_capacity(step.continued.len());
        let mut tokens = Vec::with_capacity(step.continued.len());
        for &(p, t) in &step.continued {
            uses[p] -= 1;
            let cache = if uses[p] == 0 {
                parents[p].take().expect("a parent's cache is moved once")
            } else {
                parents[p].as_ref().expect("a parent's cache").fork()?
            };
            caches.push(cache);
            let mut seq = beams.tokens[p].clone();
            seq.push(t);
            tokens.push(seq);
        }
        let mut log_probs = Vec::with_capacity(caches.len());
        for (cache, seq) in caches.iter_mut().zip(&tokens) {
            let cached = cache.len();
            let logits = if model.decoder.cache_outdated(cached, cached + 1) {
                *cache = SequenceCache::new(model.decoder.spec().num_layers());
                let all: Vec<u32> = running.prompt.iter().chain(seq).copied().collect();
                model.decoder.forward(&all, cache, Logits::Last)?
            } else {
                let last = *seq.last().expect("a beam has a token");
                model.decoder.forward(&[last], cache, Logits::Last)?
            };
            log_probs.push(log_softmax(&logits.squeeze(0)?.to_vec1::<f32>()?));
        }
        beams.caches = caches;
        beams.tokens = tokens;
        beams.log_probs = log_probs;
        Ok(None)
    }

    /// A beam sequence's state (no constraint, no log-probabilities).
    fn start_plain(&mut self, model: &Model) -> Result<Running> {
        let started = Instant::now();
        let prompt = self.prompt_ids(model)?;
        check_token_options(&self.request, model)?;
        self.reuse = None; // beam search keeps no session cache
        Ok(Running {
            tokens: vec![],
            text: String::new(),
            cache: SequenceCache::new(model.decoder.spec().num_layers()),
            sampler: Sampler::new(self.request.sampling.clone(), &[]),
            detokenizer: Detokenizer::default(),
            stop: StopMatcher::new(vec![], false),
            started,
            prefill_ms: 0.0,
            prompt,
            cached_prompt: 0,
            constraint: None,
            vocab: None,
            logprobs: vec![],
            beams: None,
            beam_score: None,
        })
    }

    /// Sends the best hypothesis' tokens and says what ended it.
    fn emit_best_beam(&mut self, model: &Model) -> Result<FinishCause> {
        let running = self.state.as_mut().expect("a running beam sequence");
        let beams = running.beams.as_ref().expect("a beam sequence has beams");
        let (best, score) = beams.search.best();
        let best = best.to_vec();
        running.beam_score = Some(score);
        let last = best.last().copied();
        let cause = match last {
            Some(id) if self.request.stop_token_ids.contains(&id) => FinishCause::StopToken(id),
            Some(id) if !self.request.ignore_eos && model.info.eos_token_ids.contains(&id) => {
                FinishCause::Eos(id)
            }
            _ if running.prompt.len() + best.len() >= model.info.context_length => {
                FinishCause::ContextLength
            }
            _ => FinishCause::MaxTokens,
        };
        for (i, &id) in best.iter().enumerate() {
            let is_last = i + 1 == best.len();
            let mut text = if is_last && matches!(cause, FinishCause::StopToken(_)) {
                String::new()
            } else {
                running.detokenizer.push(&model.tokenizer, id)?
            };
            if is_last {
                text.push_str(&running.detokenizer.flush(&model.tokenizer)?);
            }
            running.tokens.push(id);
            running.text.push_str(&text);
            (self.sink)(Event::Token {
                id,
                text,
                logprobs: None,
            });
        }
        Ok(cause)
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

    fn finish(&mut self, cause: FinishCause) {
        let reason = cause.reason();
        let result = match self.state.take() {
            None => {
                // Never started: a session's cache goes back untouched.
                self.kept = self.reuse.take();
                GenerationResult {
                    text: String::new(),
                    tokens: vec![],
                    finish_reason: reason,
                    finish_cause: cause,
                    logprobs: vec![],
                    beam_score: None,
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
                if self.request.session.is_some() && r.beams.is_none() {
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
                    finish_cause: cause,
                    logprobs: r.logprobs,
                    beam_score: r.beam_score,
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

/// Token ids in the options (logit bias, stop tokens) must be in the vocabulary.
fn check_token_options(request: &GenerateRequest, model: &Model) -> Result<()> {
    let vocab = model.info.vocab_size;
    let outside = |id: u32| id as usize >= vocab;
    if let Some(&(id, _)) = request
        .sampling
        .logit_bias
        .iter()
        .find(|(id, _)| outside(*id))
    {
        return Err(Error::new(
            ErrorCode::InvalidOptions,
            format!("logitBias names token {id}, outside the model's vocabulary of {vocab}"),
        ));
    }
    if let Some(&id) = request.stop_token_ids.iter().find(|&&id| outside(id)) {
        return Err(Error::new(
            ErrorCode::InvalidOptions,
            format!("stopTokenIds holds {id}, outside the model's vocabulary of {vocab}"),
        ));
    }
    Ok(())
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
