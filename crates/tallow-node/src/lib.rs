//! The napi-rs binding: thin classes over tallow-core. No logic lives here beyond converting
//! values; errors cross as `[CODE] message` and the TypeScript SDK turns them into `TallowError`.

use napi::bindgen_prelude::Float32Array;
use napi::{Error, Result};
use napi_derive::napi;
use std::collections::HashMap;
use std::sync::Arc;
use tallow_core::chat_template::ChatRequest;
use tallow_core::detokenizer::Detokenizer;
use tallow_core::guard::catch_panic;
use tallow_core::tokenizer::Tokenizer;
use tallow_core::weights::in_situ::parse_quantize_type;
use tallow_core::{
    BeamParams, CancelHandle, DeviceKind, EarlyStopping, Engine, Event, FinishCause,
    GenerateRequest, GenerationResult, LoadOptions, Logits, Prompt, ResponseFormat, SamplingParams,
    TokenLogprob, TokenLogprobs,
};
use tokio::sync::{mpsc, oneshot, Mutex};

/// The addon's own allocations (the engine's tensors) reuse freed large blocks instead of
/// faulting in fresh pages for every operation (see tallow_core::allocator).
#[global_allocator]
static ALLOCATOR: tallow_core::allocator::ReusingAllocator =
    tallow_core::allocator::ReusingAllocator::new();

fn to_js(e: tallow_core::Error) -> Error {
    Error::from_reason(e.to_string())
}

fn engine_gone() -> Error {
    to_js(tallow_core::Error::new(
        tallow_core::ErrorCode::Internal,
        "the engine thread stopped without answering",
    ))
}

#[napi(object)]
pub struct NativeLoadOptions {
    pub device: String,
    pub threads: Option<u32>,
    /// In-situ quantization type name ('q8_0', 'q4_k', ...), for safetensors checkpoints.
    pub quantize: Option<String>,
}

#[napi(object)]
pub struct NativeModelInfo {
    pub architecture: String,
    pub format: String,
    pub path: String,
    pub parameter_count: f64,
    pub context_length: u32,
    pub dtype: String,
    pub compute_dtype: String,
    pub vocab_size: u32,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub device: String,
    pub threads: u32,
    /// Where the chat template comes from: 'model', 'builtin:<name>', or absent.
    pub chat_template: Option<String>,
    pub file_size: f64,
    pub quantization: Option<String>,
    /// Storage type name → number of tensors.
    pub tensor_types: HashMap<String, u32>,
    /// GGUF `general.*` metadata.
    pub metadata: serde_json::Value,
}

#[napi(object)]
pub struct NativePrompt {
    pub text: Option<String>,
    pub tokens: Option<Vec<u32>>,
}

#[napi(object)]
pub struct NativeGenerateOptions {
    pub max_tokens: u32,
    pub temperature: f64,
    pub top_k: u32,
    pub top_p: f64,
    pub seed: Option<i64>,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// The stop string that ended generation is part of the text.
    pub include_stop: bool,
    /// For a text prompt: special-token text in it becomes control tokens.
    pub parse_special: bool,
    /// Keep the KV cache under this id and start from the one kept under it.
    pub session: Option<u32>,
    // The options below are validated (and defaulted) by src/sampling.ts; see SamplingOptions.
    pub min_p: Option<f64>,
    pub typical_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub penalty_window: Option<u32>,
    pub logit_bias: Option<Vec<NativeLogitBias>>,
    pub stop_token_ids: Option<Vec<u32>>,
    /// Report log-probabilities with this many alternatives per position.
    pub top_logprobs: Option<u32>,
    pub response_format: Option<NativeResponseFormat>,
    /// Beam search when > 1.
    pub num_beams: Option<u32>,
    pub length_penalty: Option<f64>,
    /// 'true', 'false' or 'never'.
    pub early_stopping: Option<String>,
}

#[napi(object)]
pub struct NativeLogitBias {
    pub token_id: u32,
    pub bias: f64,
}

/// An output constraint: `kind` is 'json_object', 'json_schema' (with `schema`), 'regex' (with
/// `pattern`) or 'lark' (with `grammar`).
#[napi(object)]
pub struct NativeResponseFormat {
    pub kind: String,
    pub schema: Option<serde_json::Value>,
    pub pattern: Option<String>,
    pub grammar: Option<String>,
}

#[napi(object)]
pub struct NativeTokenLogprob {
    pub token_id: u32,
    pub token: String,
    pub bytes: Vec<u32>,
    pub logprob: f64,
}

#[napi(object)]
pub struct NativeTokenLogprobs {
    pub chosen: NativeTokenLogprob,
    pub top: Vec<NativeTokenLogprob>,
}

/// What ended a generation: `kind` is 'eos', 'stop_token', 'stop_string', 'constraint',
/// 'max_tokens', 'context_length' or 'abort'.
#[napi(object)]
pub struct NativeFinishCause {
    pub kind: String,
    pub token_id: Option<u32>,
    pub stop_string: Option<String>,
}

impl From<&TokenLogprob> for NativeTokenLogprob {
    fn from(t: &TokenLogprob) -> Self {
        NativeTokenLogprob {
            token_id: t.id,
            token: t.token.clone(),
            bytes: t.bytes.iter().map(|&b| u32::from(b)).collect(),
            logprob: f64::from(t.logprob),
        }
    }
}

impl From<&TokenLogprobs> for NativeTokenLogprobs {
    fn from(t: &TokenLogprobs) -> Self {
        NativeTokenLogprobs {
            chosen: (&t.chosen).into(),
            top: t.top.iter().map(Into::into).collect(),
        }
    }
}

impl From<&FinishCause> for NativeFinishCause {
    fn from(c: &FinishCause) -> Self {
        let (token_id, stop_string) = match c {
            FinishCause::Eos(id) | FinishCause::StopToken(id) => (Some(*id), None),
            FinishCause::StopString(s) => (None, Some(s.clone())),
            _ => (None, None),
        };
        NativeFinishCause {
            kind: c.kind().into(),
            token_id,
            stop_string,
        }
    }
}

fn invalid_options(message: String) -> Error {
    to_js(tallow_core::Error::new(
        tallow_core::ErrorCode::InvalidOptions,
        message,
    ))
}

fn response_format(f: NativeResponseFormat) -> Result<ResponseFormat> {
    let missing =
        |field: &str| invalid_options(format!("responseFormat '{}' needs {field}", f.kind));
    Ok(match f.kind.as_str() {
        "json_object" => ResponseFormat::JsonObject,
        "json_schema" => {
            ResponseFormat::JsonSchema(f.schema.clone().ok_or_else(|| missing("schema"))?)
        }
        "regex" => ResponseFormat::Regex(f.pattern.clone().ok_or_else(|| missing("pattern"))?),
        "lark" => ResponseFormat::Lark(f.grammar.clone().ok_or_else(|| missing("grammar"))?),
        other => {
            return Err(invalid_options(format!(
                "unknown responseFormat type '{other}'"
            )))
        }
    })
}

fn beam_params(options: &NativeGenerateOptions) -> Result<Option<BeamParams>> {
    let num_beams = options.num_beams.unwrap_or(1) as usize;
    if num_beams <= 1 {
        return Ok(None);
    }
    let early_stopping = match options.early_stopping.as_deref().unwrap_or("false") {
        "true" => EarlyStopping::Always,
        "false" => EarlyStopping::Heuristic,
        "never" => EarlyStopping::Never,
        other => return Err(invalid_options(format!("unknown earlyStopping '{other}'"))),
    };
    Ok(Some(BeamParams {
        num_beams,
        length_penalty: options.length_penalty.unwrap_or(1.0) as f32,
        early_stopping,
    }))
}

/// A conversation to render with a chat template (see tallow_core::chat_template::ChatRequest).
#[napi(object)]
pub struct NativeChatRequest {
    pub messages: Vec<serde_json::Value>,
    pub tools: Option<Vec<serde_json::Value>>,
    pub documents: Option<Vec<serde_json::Value>>,
    pub add_generation_prompt: bool,
    /// Leave the last message open for the model to continue (assistant prefill).
    pub continue_final_message: bool,
    /// Further template variables, e.g. `{ enable_thinking: false }`.
    pub variables: Option<serde_json::Map<String, serde_json::Value>>,
    /// A template source, or a built-in's name (`chatml`, `llama3`, ...), instead of the model's.
    pub template: Option<String>,
}

#[napi(object)]
pub struct NativeResult {
    pub text: String,
    pub tokens: Vec<u32>,
    pub finish_reason: String,
    pub finish_cause: NativeFinishCause,
    /// Per generated token, when asked for.
    pub logprobs: Option<Vec<NativeTokenLogprobs>>,
    /// Beam search: the returned hypothesis' score.
    pub beam_score: Option<f64>,
    pub prompt_tokens: u32,
    pub cached_prompt_tokens: u32,
    pub completion_tokens: u32,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub tokens_per_second: f64,
}

#[napi(object)]
pub struct NativeEvent {
    pub kind: String,
    pub token_id: Option<u32>,
    pub text: Option<String>,
    pub result: Option<NativeResult>,
    pub logprobs: Option<NativeTokenLogprobs>,
}

impl From<GenerationResult> for NativeResult {
    fn from(r: GenerationResult) -> Self {
        NativeResult {
            text: r.text,
            tokens: r.tokens,
            finish_reason: r.finish_reason.as_str().into(),
            finish_cause: (&r.finish_cause).into(),
            logprobs: (!r.logprobs.is_empty()).then(|| r.logprobs.iter().map(Into::into).collect()),
            beam_score: r.beam_score.map(f64::from),
            prompt_tokens: r.prompt_tokens as u32,
            cached_prompt_tokens: r.cached_prompt_tokens as u32,
            completion_tokens: r.completion_tokens as u32,
            prefill_ms: r.prefill_ms,
            decode_ms: r.decode_ms,
            tokens_per_second: r.tokens_per_second,
        }
    }
}

/// A model running on its own engine thread.
#[napi]
pub struct NativeModel {
    engine: Arc<Engine>,
}

#[napi]
impl NativeModel {
    /// Loads the model directory on a thread the engine owns.
    #[napi]
    pub async fn load(path: String, options: NativeLoadOptions) -> Result<NativeModel> {
        let options = LoadOptions {
            device: DeviceKind::parse(&options.device).map_err(to_js)?,
            threads: options.threads.map(|n| n as usize),
            quantize: options
                .quantize
                .as_deref()
                .map(parse_quantize_type)
                .transpose()
                .map_err(to_js)?,
        };
        let (tx, rx) = oneshot::channel();
        Engine::start(path.into(), options, move |loaded| {
            let _ = tx.send(loaded);
        });
        let engine = rx.await.map_err(|_| engine_gone())?.map_err(to_js)?;
        Ok(NativeModel {
            engine: Arc::new(engine),
        })
    }

    #[napi(catch_unwind)]
    pub fn info(&self) -> NativeModelInfo {
        let i = self.engine.info();
        NativeModelInfo {
            architecture: i.architecture.clone(),
            format: i.format.clone(),
            path: i.path.clone(),
            parameter_count: i.parameter_count as f64,
            context_length: i.context_length as u32,
            dtype: i.dtype.clone(),
            compute_dtype: i.compute_dtype.clone(),
            vocab_size: i.vocab_size as u32,
            bos_token_id: i.bos_token_id,
            eos_token_ids: i.eos_token_ids.clone(),
            device: i.device.clone(),
            threads: self.engine.threads() as u32,
            chat_template: self.engine.chat_template_source().map(String::from),
            file_size: i.file_size as f64,
            quantization: i.quantization.clone(),
            tensor_types: i
                .tensor_types
                .iter()
                .map(|(name, n)| (name.clone(), *n as u32))
                .collect(),
            metadata: serde_json::Value::Object(i.metadata.clone()),
        }
    }

    #[napi(catch_unwind)]
    pub fn tokenize(
        &self,
        text: String,
        add_special_tokens: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        let tokenizer = self.engine.tokenizer().map_err(to_js)?;
        tokenizer
            .encode(&text, add_special_tokens, parse_special)
            .map_err(to_js)
    }

    #[napi(catch_unwind)]
    pub fn detokenize(&self, ids: Vec<u32>, skip_special_tokens: bool) -> Result<String> {
        let tokenizer = self.engine.tokenizer().map_err(to_js)?;
        tokenizer.decode(&ids, skip_special_tokens).map_err(to_js)
    }

    /// Queues a generation on the engine; events are pulled with `NativeStream.next()`.
    #[napi(catch_unwind)]
    pub fn generate(
        &self,
        prompt: NativePrompt,
        options: NativeGenerateOptions,
    ) -> Result<NativeStream> {
        let prompt = match (prompt.text, prompt.tokens) {
            (Some(text), None) => Prompt::Text {
                text,
                parse_special: options.parse_special,
            },
            (None, Some(tokens)) => Prompt::Tokens(tokens),
            _ => {
                return Err(to_js(tallow_core::Error::new(
                    tallow_core::ErrorCode::InvalidPrompt,
                    "a prompt is either text or token ids",
                )))
            }
        };
        let beam = beam_params(&options)?;
        let response_format = options.response_format.map(response_format).transpose()?;
        let defaults = SamplingParams::default();
        let request = GenerateRequest {
            prompt,
            max_tokens: options.max_tokens as usize,
            sampling: SamplingParams {
                temperature: options.temperature as f32,
                top_k: options.top_k as usize,
                top_p: options.top_p,
                min_p: options.min_p.unwrap_or(defaults.min_p),
                typical_p: options.typical_p.unwrap_or(defaults.typical_p),
                repetition_penalty: options
                    .repetition_penalty
                    .map_or(defaults.repetition_penalty, |v| v as f32),
                frequency_penalty: options
                    .frequency_penalty
                    .map_or(defaults.frequency_penalty, |v| v as f32),
                presence_penalty: options
                    .presence_penalty
                    .map_or(defaults.presence_penalty, |v| v as f32),
                penalty_window: options
                    .penalty_window
                    .map_or(defaults.penalty_window, |v| v as usize),
                logit_bias: options
                    .logit_bias
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| (b.token_id, b.bias as f32))
                    .collect(),
                seed: options.seed.map(|s| s as u64),
            },
            stop: options.stop,
            ignore_eos: options.ignore_eos,
            include_stop: options.include_stop,
            session: options.session.map(u64::from),
            stop_token_ids: options.stop_token_ids.unwrap_or_default(),
            logprobs: options.top_logprobs.map(|n| n as usize),
            response_format,
            beam,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = self
            .engine
            .generate(
                request,
                Box::new(move |event| {
                    let _ = tx.send(event);
                }),
            )
            .map_err(to_js)?;
        Ok(NativeStream {
            events: Mutex::new(rx),
            cancel,
        })
    }

    /// Logits of the last position ([vocab]) or of all positions (row-major [n, vocab]).
    #[napi]
    pub async fn evaluate(&self, tokens: Vec<u32>, all_positions: bool) -> Result<Float32Array> {
        let (tx, rx) = oneshot::channel();
        let logits = if all_positions {
            Logits::All
        } else {
            Logits::Last
        };
        self.engine
            .evaluate(
                tokens,
                logits,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            )
            .map_err(to_js)?;
        let values = rx.await.map_err(|_| engine_gone())?.map_err(to_js)?;
        Ok(Float32Array::new(values))
    }

    /// Renders a conversation into prompt text with the model's chat template.
    #[napi(catch_unwind)]
    pub fn apply_chat_template(&self, request: NativeChatRequest) -> Result<String> {
        let chat = ChatRequest {
            messages: request.messages,
            tools: request.tools,
            documents: request.documents,
            add_generation_prompt: request.add_generation_prompt,
            continue_final_message: request
                .continue_final_message
                .then(|| "content".to_string()),
            extra: request.variables.unwrap_or_default(),
            ..Default::default()
        };
        self.engine
            .render_chat(&chat, request.template.as_deref())
            .map_err(to_js)
    }

    /// Frees the KV cache kept for a session.
    #[napi(catch_unwind)]
    pub fn drop_session(&self, session: u32) -> Result<()> {
        self.engine.drop_session(u64::from(session)).map_err(to_js)
    }

    /// Stops the engine thread; generations in flight end with finishReason 'abort'. Idempotent.
    #[napi(catch_unwind)]
    pub fn dispose(&self) {
        self.engine.shutdown();
    }
}

/// A tokenizer on its own, without a model (tokenizer.json).
#[napi]
pub struct NativeTokenizer {
    inner: Arc<Tokenizer>,
}

#[napi]
impl NativeTokenizer {
    /// Loads a tokenizer.json, or the one in a directory, on a thread of its own.
    #[napi]
    pub async fn load(path: String) -> Result<NativeTokenizer> {
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(catch_panic(|| Tokenizer::load(path.as_ref())));
        });
        let tokenizer = rx
            .await
            .map_err(|_| {
                to_js(tallow_core::Error::new(
                    tallow_core::ErrorCode::Internal,
                    "the tokenizer loading thread stopped without answering",
                ))
            })?
            .map_err(to_js)?;
        Ok(NativeTokenizer {
            inner: Arc::new(tokenizer),
        })
    }

    #[napi(catch_unwind)]
    pub fn vocab_size(&self) -> u32 {
        self.inner.vocab_size() as u32
    }

    #[napi(catch_unwind)]
    pub fn tokenize(
        &self,
        text: String,
        add_special_tokens: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        self.inner
            .encode(&text, add_special_tokens, parse_special)
            .map_err(to_js)
    }

    #[napi(catch_unwind)]
    pub fn detokenize(&self, ids: Vec<u32>, skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(&ids, skip_special_tokens).map_err(to_js)
    }

    /// The chunks the engine's incremental detokenizer emits for `ids` pushed one at a time:
    /// one per id, then what the final flush returns.
    #[napi(catch_unwind)]
    pub fn decode_stream(&self, ids: Vec<u32>, skip_special_tokens: bool) -> Result<Vec<String>> {
        let mut detokenizer = Detokenizer::new(skip_special_tokens);
        let mut chunks = ids
            .iter()
            .map(|&id| detokenizer.push(&self.inner, id))
            .collect::<tallow_core::Result<Vec<_>>>()
            .map_err(to_js)?;
        chunks.push(detokenizer.flush(&self.inner).map_err(to_js)?);
        Ok(chunks)
    }
}

/// The events of one generation, pulled one at a time.
#[napi]
pub struct NativeStream {
    events: Mutex<mpsc::UnboundedReceiver<Event>>,
    cancel: CancelHandle,
}

#[napi]
impl NativeStream {
    /// The next event; null once the 'done' event has been returned. Rejects with a coded error
    /// if the generation failed.
    #[napi]
    pub async fn next(&self) -> Result<Option<NativeEvent>> {
        let event = self.events.lock().await.recv().await;
        match event {
            None => Ok(None),
            Some(Event::Token { id, text, logprobs }) => Ok(Some(NativeEvent {
                kind: "token".into(),
                token_id: Some(id),
                text: Some(text),
                result: None,
                logprobs: logprobs.as_deref().map(Into::into),
            })),
            Some(Event::Done(result)) => Ok(Some(NativeEvent {
                kind: "done".into(),
                token_id: None,
                text: None,
                result: Some(result.into()),
                logprobs: None,
            })),
            Some(Event::Error(e)) => Err(to_js(e)),
        }
    }

    /// Asks the engine to stop this generation before its next token.
    #[napi(catch_unwind)]
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// A stream dropped by JavaScript (garbage-collected without being drained) stops its generation.
impl Drop for NativeStream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Devices this build was compiled for, e.g. `['cpu']` or `['cpu', 'cuda']`.
#[napi]
pub fn available_devices() -> Vec<String> {
    tallow_core::available_devices()
        .into_iter()
        .map(String::from)
        .collect()
}

/// Test hook proving panics never abort the process: `'sync'` panics in this call on the JS
/// thread, `'thread'` panics on a separate thread behind the engine's panic guard. Both throw.
#[napi(catch_unwind)]
pub fn debug_panic(place: String) -> Result<()> {
    match place.as_str() {
        "sync" => panic!("debugPanic('sync') was asked to panic"),
        _ => {
            let worker = std::thread::spawn(|| {
                catch_panic::<()>(|| panic!("debugPanic('thread') was asked to panic"))
            });
            match worker.join() {
                Ok(guarded) => guarded.map_err(to_js),
                Err(_) => Err(Error::from_reason("the guard let a panic through")),
            }
        }
    }
}
