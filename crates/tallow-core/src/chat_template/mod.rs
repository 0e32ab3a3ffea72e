//! Chat templates: turns a conversation into the prompt text a model was trained on by running
//! the model's Jinja `chat_template` (tokenizer_config.json, GGUF `tokenizer.chat_template`)
//! exactly as Hugging Face transformers' `apply_chat_template(..., tokenize=False)` does, on
//! minijinja.
//!
//! What transformers does, and where it lives here:
//! - the input clean-up of `apply_chat_template` and `render_jinja_template` (keys whose value is
//!   None dropped, reasoning fields aliased, `continue_final_message`): [`ChatTemplate::render`];
//! - the Jinja2 environment (trim_blocks, lstrip_blocks, loop controls, `tojson`,
//!   `raise_exception`, `strftime_now`, `namespace`): `environment.rs`, `json.rs`, `clock.rs`;
//! - the Python behaviour templates assume (`str()` output, string methods): `python.rs`, and
//!   Jinja2's filters where minijinja's differ: `filters.rs`.
//!
//! Templates are untrusted: parsing and every render run on a thread of their own with a large
//! stack, under [`Limits`] (fuel, recursion, output size, wall-clock), so a hostile template fails
//! with an error within a second instead of hanging, exhausting memory or overflowing the stack.
//!
//! Models that ship no template get one of ours by architecture: [`builtin_for`].
//!
//! Known differences from Jinja2 that remain (none is used by real chat templates we know of;
//! each either errors here or prints differently): `~` prints floats with Rust's `Display`
//! (`1e20` -> `100000000000000000000.0`); `'%s' % x` is not supported (the `format` filter is);
//! string literals with `\U`, `\v`, `\a`, `\N{...}` escapes or a backslash before a non-ASCII
//! character decode differently; `set ns._x = ...` is accepted (transformers refuses `_` names;
//! `namespace(_x=...)` is refused here too); comparing values of different types (`1 < 'a'`) does
//! not fail; `groupby` yields lists, not named tuples; the filters `truncate`, `striptags`,
//! `urlencode`, `pprint` and the test `callable` are missing; unassigned code points in strings
//! printed inside lists are not escaped as Python's `repr` would.

mod builtin;
mod clock;
mod environment;
mod filters;
mod json;
mod limits;
mod python;

pub use builtin::{builtin, builtin_for, builtin_name_for, BUILTIN_NAMES};
pub use clock::{strftime, Clock};
pub use limits::Limits;

use crate::error::{Error, ErrorCode, Result};
use limits::CappedWriter;
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind, Value as JinjaValue};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The name the template is stored under in its environment (it shows in error messages).
const TEMPLATE_NAME: &str = "chat_template";

/// Real templates are a few KiB (large tool-calling ones ~20 KiB).
const MAX_SOURCE_BYTES: usize = 128 << 10;

/// The stack the parser gets: minijinja recurses once per nesting level of an expression
/// (`- - - 1`, `not not x`), so a hostile template of [`MAX_SOURCE_BYTES`] needs a deep one.
const COMPILE_STACK_BYTES: usize = 64 << 20;

/// What transformers appends to the message being continued, to find where it ends after
/// rendering.
const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// The names a message's reasoning goes by; the first is the one chat templates read.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// One render: the conversation and the variables the template sees.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// The conversation: objects with `role`, `content` (a string or a list of parts),
    /// and whatever else the template reads (`tool_calls`, `tool_call_id`, `name`,
    /// `reasoning_content`...). Keys are seen in the order given.
    pub messages: Vec<Value>,
    /// Tool definitions (JSON schemas); `None` renders as `tools = none`.
    pub tools: Option<Vec<Value>>,
    /// Documents for retrieval-augmented templates; `None` renders as `documents = none`.
    pub documents: Option<Vec<Value>>,
    /// Append the header that starts the assistant's reply.
    pub add_generation_prompt: bool,
    /// Leave the last message open so the model continues it (assistant prefill). `Some("content")`
    /// is transformers' `continue_final_message=True`; another name continues that field (e.g.
    /// `"reasoning_content"`). Cannot be combined with `add_generation_prompt`.
    pub continue_final_message: Option<String>,
    /// Further template variables (`enable_thinking`, `date_string`, ...); they override the
    /// special tokens of the same name.
    pub extra: Map<String, Value>,
    /// Where `strftime_now` reads the time.
    pub clock: Clock,
}

/// A compiled chat template, ready to render many requests (it is `Send + Sync`; clones share
/// the compiled template).
#[derive(Clone)]
pub struct ChatTemplate {
    compiled: Arc<Compiled>,
    /// Set once a render ran past [`Limits::max_duration`]: that render's thread may still be
    /// running (it cannot be stopped, only left to run out of fuel), so the template refuses to
    /// start another.
    timed_out: Arc<AtomicBool>,
}

/// The template and everything a render reads besides the request.
#[derive(Clone)]
struct Compiled {
    env: Environment<'static>,
    source: String,
    /// `bos_token`, `eos_token` and any other named special tokens, as template variables.
    special_tokens: Vec<(String, String)>,
    limits: Limits,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.compiled.source.len())
            .field("special_tokens", &self.compiled.special_tokens)
            .field("limits", &self.compiled.limits)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`. `bos_token`/`eos_token` are the tokenizer's (what transformers passes
    /// from `special_tokens_map`); add the others with [`with_special_token`](Self::with_special_token).
    ///
    /// A template that does not parse, is longer than 128 KiB or takes longer than
    /// [`Limits::DEFAULT`]'s `max_duration` to parse is `INVALID_TEMPLATE`.
    pub fn new(source: &str, bos_token: Option<String>, eos_token: Option<String>) -> Result<Self> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(Error::new(
                ErrorCode::InvalidTemplate,
                format!(
                    "the chat template is {} bytes long; tallow accepts templates of up to {MAX_SOURCE_BYTES} bytes",
                    source.len()
                ),
            ));
        }
        let limits = Limits::default();
        let prepared = environment::prepare_source(source);
        let env = limits::run_bounded(COMPILE_STACK_BYTES, limits.max_duration, move || {
            let mut env = environment::build(&limits)?;
            env.add_template_owned(TEMPLATE_NAME, prepared)
                .map_err(|e| {
                    Error::new(
                        ErrorCode::InvalidTemplate,
                        format!("the chat template does not parse: {}", describe(&e)),
                    )
                })?;
            Ok(env)
        })
        .unwrap_or_else(|| {
            Err(Error::new(
                ErrorCode::InvalidTemplate,
                format!(
                    "the chat template took longer than {:?} to parse",
                    limits.max_duration
                ),
            ))
        })?;
        let mut template = ChatTemplate {
            compiled: Arc::new(Compiled {
                env,
                source: source.to_string(),
                special_tokens: Vec::new(),
                limits,
            }),
            timed_out: Arc::new(AtomicBool::new(false)),
        };
        if let Some(bos) = bos_token {
            template = template.with_special_token("bos_token", bos);
        }
        if let Some(eos) = eos_token {
            template = template.with_special_token("eos_token", eos);
        }
        Ok(template)
    }

    /// Adds (or replaces) a named special token variable such as `pad_token`, `unk_token` or
    /// Gemma 3's `boi_token`: transformers passes every entry of `special_tokens_map`.
    pub fn with_special_token(mut self, name: impl Into<String>, token: impl Into<String>) -> Self {
        let (name, token) = (name.into(), token.into());
        let tokens = &mut Arc::make_mut(&mut self.compiled).special_tokens;
        match tokens.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = token,
            None => tokens.push((name, token)),
        }
        self
    }

    /// Replaces the rendering budgets ([`Limits::DEFAULT`] otherwise).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        let compiled = Arc::make_mut(&mut self.compiled);
        environment::apply_limits(&mut compiled.env, &limits);
        compiled.limits = limits;
        self
    }

    /// The template source as given.
    pub fn source(&self) -> &str {
        &self.compiled.source
    }

    pub fn limits(&self) -> Limits {
        self.compiled.limits
    }

    /// Renders `request` to the prompt text, byte for byte what
    /// `tokenizer.apply_chat_template(messages, tools=..., documents=..., add_generation_prompt=...,
    /// continue_final_message=..., tokenize=False, **extra)` returns.
    ///
    /// The render runs on a thread of its own (see [`Limits`]); this call waits for it.
    ///
    /// Errors: `INVALID_PROMPT` for input transformers rejects (no messages, a message that is not
    /// an object, a final message that cannot be continued); `TEMPLATE_ERROR` when the template
    /// raises (its message verbatim); `INVALID_TEMPLATE` when the template itself fails or runs
    /// over a [`Limits`] budget.
    pub fn render(&self, request: &ChatRequest) -> Result<String> {
        let limits = self.compiled.limits;
        if self.timed_out.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorCode::InvalidTemplate,
                format!(
                    "the chat template is disabled: an earlier render ran longer than {:?}",
                    limits.max_duration
                ),
            ));
        }
        let compiled = Arc::clone(&self.compiled);
        let request = request.clone();
        let result = limits::run_bounded(
            limits.render_stack_bytes(),
            limits.max_duration,
            move || compiled.render_here(&request),
        );
        result.unwrap_or_else(|| {
            self.timed_out.store(true, Ordering::Relaxed);
            Err(Error::new(
                ErrorCode::InvalidTemplate,
                format!(
                    "the chat template ran longer than {:?} (Limits::max_duration)",
                    limits.max_duration
                ),
            ))
        })
    }
}

impl Compiled {
    /// [`render`](Self::render) on the current thread.
    fn render_here(&self, request: &ChatRequest) -> Result<String> {
        if request.messages.is_empty() {
            return Err(invalid_prompt(
                "Cannot apply chat template to an empty conversation. Provide at least one message.",
            ));
        }
        let continue_field = request.continue_final_message.as_deref();
        if continue_field.is_some() && request.add_generation_prompt {
            return Err(invalid_prompt(
                "continue_final_message and add_generation_prompt are not compatible. Use \
                 continue_final_message when you want the model to continue the final message, and \
                 add_generation_prompt when you want to add a header that will prompt it to start a \
                 new assistant message instead.",
            ));
        }
        let mut messages = request
            .messages
            .iter()
            .map(prepare_message)
            .collect::<Result<Vec<_>>>()?;
        let continued = match continue_field {
            Some(field) => Some(self.tag_final_message(&mut messages, field)?),
            None => None,
        };
        let tools = check_objects(request.tools.as_deref(), || {
            "Tools should either be a JSON schema, or a callable function with type hints and a \
             docstring suitable for auto-conversion to a schema."
        })?;
        let documents = check_objects(request.documents.as_deref(), || {
            "Documents should be a list of dicts with 'title' and 'text' keys!"
        })?;

        let mut context: Vec<(String, JinjaValue)> = vec![
            ("messages".into(), JinjaValue::from(Serde(&messages))),
            ("tools".into(), optional(tools)),
            ("documents".into(), optional(documents)),
            (
                "add_generation_prompt".into(),
                JinjaValue::from(request.add_generation_prompt),
            ),
        ];
        let clock = request.clock;
        context.push((
            "strftime_now".into(),
            JinjaValue::from_function(move |state: &minijinja::State, format: &str| {
                // one fuel per conversion: formatting one costs about as much as an instruction
                state.consume_fuel(format.matches('%').count() as u64)?;
                Ok::<_, minijinja::Error>(clock.strftime_now(format))
            }),
        ));
        for (name, token) in &self.special_tokens {
            context.push((name.clone(), JinjaValue::from(token.as_str())));
        }
        for (name, value) in &request.extra {
            if matches!(
                name.as_str(),
                "messages" | "tools" | "documents" | "add_generation_prompt"
            ) {
                return Err(Error::new(
                    ErrorCode::InvalidOptions,
                    format!("extra template variable `{name}` would replace the one the renderer sets; set it in the request instead"),
                ));
            }
            context.push((name.clone(), JinjaValue::from(Serde(value))));
        }

        let mut rendered = self.run(JinjaValue::from_pairs(context))?;
        if let Some(final_text) = continued {
            rendered = cut_at_continue_tag(rendered, &final_text)?;
        }
        Ok(rendered)
    }

    /// Renders the template with `context` under the limits.
    fn run(&self, context: JinjaValue) -> Result<String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        let mut writer = CappedWriter::new(self.limits.max_output_bytes);
        let result = template.render_captured_to(context, &mut writer);
        if writer.exceeded {
            return Err(Error::new(
                ErrorCode::InvalidTemplate,
                format!(
                    "the rendered chat prompt exceeds {} bytes (Limits::max_output_bytes)",
                    self.limits.max_output_bytes
                ),
            ));
        }
        if let Err(e) = result {
            return Err(render_error(&e, &self.limits));
        }
        String::from_utf8(writer.buf).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))
    }

    /// transformers' `continue_final_message`: appends [`CONTINUE_TAG`] to the text to continue
    /// and returns that text (without the tag), to cut the rendered prompt after it.
    fn tag_final_message(&self, messages: &mut [Value], field: &str) -> Result<String> {
        let last = messages
            .last_mut()
            .and_then(Value::as_object_mut)
            .ok_or_else(|| {
                invalid_prompt("continue_final_message is set but the conversation is empty!")
            })?;
        let Some(final_value) = last.get(field).cloned() else {
            return Err(invalid_prompt(format!(
                "continue_final_message is set but the final message has no \"{field}\" to continue!"
            )));
        };
        let fields: Vec<String> = if REASONING_FIELDS.contains(&field) {
            // reasoning is copied under several names: tag every copy
            REASONING_FIELDS
                .iter()
                .filter(|f| last.get(**f) == Some(&final_value))
                .map(|f| f.to_string())
                .collect()
        } else {
            vec![field.to_string()]
        };
        if !fields.iter().any(|f| self.source.contains(f.as_str())) {
            return Err(invalid_prompt(format!(
                "continue_final_message is set to \"{field}\" but this is not an accepted field in the chat_template"
            )));
        }
        match final_value {
            Value::Array(mut blocks) => {
                // the last text block of the message
                let Some(block) = blocks
                    .iter_mut()
                    .rev()
                    .find_map(|b| b.as_object_mut().filter(|b| b.contains_key("text")))
                else {
                    return Err(invalid_prompt(
                        "continue_final_message is set but we could not find any text to continue in the final message!",
                    ));
                };
                let text = block.get("text").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
                    invalid_prompt("continue_final_message is set but the text to continue is not a string")
                })?;
                block.insert("text".into(), Value::String(format!("{text}{CONTINUE_TAG}")));
                last.insert(field.to_string(), Value::Array(blocks));
                Ok(text)
            }
            Value::String(text) => {
                for f in &fields {
                    last.insert(f.clone(), Value::String(format!("{text}{CONTINUE_TAG}")));
                }
                Ok(text)
            }
            _ => Err(invalid_prompt(format!(
                "continue_final_message is set but the final message's \"{field}\" is neither text nor a list of parts"
            ))),
        }
    }
}

/// The end of `render_jinja_template`: cut the prompt right after the continued text.
fn cut_at_continue_tag(rendered: String, final_text: &str) -> Result<String> {
    let tag = CONTINUE_TAG.trim_end();
    let final_stripped = python::strip(final_text, None, true, true);
    if !rendered.contains(final_stripped) || !rendered.contains(tag) {
        return Err(invalid_prompt(format!(
            "continue_final_message is set but the final message does not appear in the chat after \
             applying the chat template! This can happen if the chat template deletes portions of \
             the final message. Please verify the chat template and final message in your chat to \
             ensure they are compatible.Final message to continue: {final_stripped}\nRendered chat:\n{rendered}"
        )));
    }
    let at = rendered.rfind(tag).unwrap_or(rendered.len());
    if rendered[at..].starts_with(CONTINUE_TAG) {
        Ok(rendered[..at].to_string())
    } else {
        // the template trimmed the space after the tag: trim the message end the same way
        Ok(python::strip(&rendered[..at], None, false, true).to_string())
    }
}

/// The clean-up `apply_chat_template` does on each message: keys whose value is None are
/// dropped (templates treat a missing key better than a None one), then the reasoning is copied
/// under its other names (`render_jinja_template`'s `_alias_reasoning_fields`).
fn prepare_message(message: &Value) -> Result<Value> {
    let Value::Object(fields) = message else {
        return Err(invalid_prompt(format!(
            "Chat messages should be dicts (JSON objects), but got {message}."
        )));
    };
    let fields: Map<String, Value> = fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let reasoning = REASONING_FIELDS
        .iter()
        .find_map(|f| fields.get(*f))
        .cloned();
    let Some(reasoning) = reasoning else {
        return Ok(Value::Object(fields));
    };
    // {"thinking": reasoning, **message, "reasoning_content": reasoning}
    let mut aliased = Map::new();
    aliased.insert("thinking".into(), reasoning.clone());
    for (k, v) in fields {
        aliased.insert(k, v);
    }
    aliased.insert("reasoning_content".into(), reasoning);
    Ok(Value::Object(aliased))
}

fn check_objects(
    items: Option<&[Value]>,
    message: impl Fn() -> &'static str,
) -> Result<Option<&[Value]>> {
    if let Some(items) = items {
        if items.iter().any(|item| !item.is_object()) {
            return Err(invalid_prompt(message()));
        }
    }
    Ok(items)
}

fn optional(items: Option<&[Value]>) -> JinjaValue {
    match items {
        Some(items) => JinjaValue::from(Serde(items)),
        None => JinjaValue::from(()),
    }
}

fn invalid_prompt(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidPrompt, message)
}

/// Maps a minijinja render error to ours: the template's own `raise_exception` is
/// `TEMPLATE_ERROR` with its message verbatim; everything else is `INVALID_TEMPLATE`.
fn render_error(err: &minijinja::Error, limits: &Limits) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<environment::Raised>() {
            return Error::new(ErrorCode::TemplateError, raised.0.clone());
        }
        source = e.source();
    }
    let message = match err.kind() {
        ErrorKind::OutOfFuel => format!(
            "the chat template ran out of its budget of {} fuel (Limits::fuel): it loops too long or builds too much data",
            limits.fuel
        ),
        _ => format!("the chat template failed: {}", describe(err)),
    };
    Error::new(ErrorCode::InvalidTemplate, message)
}

/// A minijinja error with its location and the errors it wraps.
fn describe(err: &minijinja::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reasoning_is_aliased_like_transformers() {
        let m = prepare_message(
            &json!({"role": "assistant", "content": "x", "reasoning": "r", "name": null}),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"thinking":"r","role":"assistant","content":"x","reasoning":"r","reasoning_content":"r"}"#
        );
    }
}
