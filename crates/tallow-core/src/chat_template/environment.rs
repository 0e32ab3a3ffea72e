//! The minijinja environment, set up the way transformers sets up its Jinja2 one
//! (`_cached_compile_jinja_template` in transformers/utils/chat_template_utils.py):
//!
//! ```python
//! jinja_env = ImmutableSandboxedEnvironment(
//!     trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols]
//! )
//! jinja_env.filters["tojson"] = tojson
//! jinja_env.globals["raise_exception"] = raise_exception
//! jinja_env.globals["strftime_now"] = strftime_now
//! jinja_env.globals["dict"] = TemplateDict()
//! jinja_env.globals["namespace"] = TemplateNamespace
//! ```
//!
//! `strftime_now` is not here: it reads the request's [`Clock`](super::Clock), so it is passed
//! with each render's variables.

use super::filters;
use super::json;
use super::limits::Limits;
use super::python;
use crate::error::{Error, ErrorCode, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use std::fmt;

/// What `raise_exception(message)` raised, found again in the error chain after rendering.
#[derive(Debug)]
pub(super) struct Raised(pub(super) String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// `raise_exception(message)`: transformers raises `jinja2.exceptions.TemplateError(message)`.
fn raise_exception(message: Option<Value>) -> std::result::Result<Value, minijinja::Error> {
    let message = match message {
        Some(message) => python::to_str(&message)?,
        None => String::new(),
    };
    Err(
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message.clone())
            .with_source(Raised(message)),
    )
}

pub(super) fn build(limits: &Limits) -> Result<Environment<'static>> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| Error::new(ErrorCode::Internal, format!("chat template syntax: {e}")))?;
    env.set_syntax(syntax);
    // Jinja2's default `Undefined`: prints as "", iterates as empty, fails on attribute access.
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    // Jinja2's default: no autoescaping (minijinja would pick it from the template name).
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_formatter(python::format_value);
    env.set_unknown_method_callback(python::call_method);
    // minijinja's `pprint` is not Python's `pprint.pformat` (which sorts dict keys and wraps at 80
    // columns), and it runs for seconds per fuel on deeply nested values: chat templates never
    // use it, so it is unavailable.
    env.remove_filter("pprint");
    env.add_filter("tojson", json::tojson);
    env.add_filter("trim", filters::trim_filter);
    env.add_filter("string", filters::string_filter);
    env.add_filter("wordcount", filters::wordcount_filter);
    env.add_filter("center", filters::center_filter);
    env.add_filter("indent", filters::indent_filter);
    env.add_filter("int", filters::int_filter);
    env.add_filter("float", filters::float_filter);
    env.add_test("sequence", filters::is_sequence);
    env.add_function("raise_exception", raise_exception);
    env.add_function("namespace", filters::namespace);
    apply_limits(&mut env, limits);
    Ok(env)
}

pub(super) fn apply_limits(env: &mut Environment<'static>, limits: &Limits) {
    env.set_fuel(Some(limits.fuel));
    env.set_recursion_limit(limits.max_recursion);
}

/// The source as minijinja should see it to behave like Jinja2:
/// - Jinja2's lexer turns every `\r\n` and `\r` of the template into `\n` (its default
///   `newline_sequence`), in text and in string literals alike;
/// - some block tags are rewritten, see [`rewrite_tags`].
pub(super) fn prepare_source(source: &str) -> String {
    let source = if source.contains('\r') {
        source.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        source.to_string()
    };
    rewrite_tags(&source)
}

/// Block tags minijinja reads differently from transformers' Jinja2:
/// - transformers' `AssistantTracker` extension adds a `{% generation %}...{% endgeneration %}`
///   block that renders its body unchanged (it only records where assistant text lies, for
///   `return_assistant_tokens_mask`). minijinja has no such tag, so it becomes an `if true`
///   block: same output, same whitespace control (`-`/`+` markers are kept). Only a `set` inside
///   the block differs (Jinja2 scopes it to the block).
/// - Jinja2 does not apply `trim_blocks` to the newline right after `{% raw %}` (it does after
///   `{% endraw %}`); minijinja does, unless the tag ends with `+%}`, so that is added.
fn rewrite_tags(source: &str) -> String {
    if !source.contains("generation") && !source.contains("raw") {
        return source.to_string();
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let tag_end = rest.find("%}").map(|e| e + 2).unwrap_or(rest.len());
        let tag = &rest[..tag_end];
        rest = &rest[tag_end..];
        let Some((open, name, close)) = split_tag(tag) else {
            out.push_str(tag);
            continue;
        };
        match name {
            "generation" => out.push_str(&format!("{{%{open} if true {close}%}}")),
            "endgeneration" => out.push_str(&format!("{{%{open} endif {close}%}}")),
            "raw" => {
                let close = if close.is_empty() { "+" } else { close };
                out.push_str(&format!("{{%{open} raw {close}%}}"));
                // the body of a raw block is text: copy it, and its endraw tag, unchanged
                let body_end = find_endraw(rest).unwrap_or(rest.len());
                out.push_str(&rest[..body_end]);
                rest = &rest[body_end..];
            }
            _ => out.push_str(tag),
        }
    }
    out.push_str(rest);
    out
}

/// `{%- name +%}` -> `("-", "name", "+")`; `None` unless the tag holds a single word.
fn split_tag(tag: &str) -> Option<(&str, &str, &str)> {
    let inner = tag.strip_prefix("{%")?.strip_suffix("%}")?;
    let (open, inner) = match inner.strip_prefix(['-', '+']) {
        Some(rest) => (&inner[..1], rest),
        None => ("", inner),
    };
    let (inner, close) = match inner.strip_suffix(['-', '+']) {
        Some(rest) => (rest, &inner[inner.len() - 1..]),
        None => (inner, ""),
    };
    let name = inner.trim();
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some((open, name, close))
}

/// The end of the `{% endraw %}` tag that closes a raw block starting at `body`.
fn find_endraw(body: &str) -> Option<usize> {
    let mut offset = 0;
    while let Some(at) = body[offset..].find("{%") {
        let start = offset + at;
        let end = body[start..].find("%}").map(|e| start + e + 2)?;
        if split_tag(&body[start..end]).is_some_and(|(_, name, _)| name == "endraw") {
            return Some(end);
        }
        offset = start + 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_if_blocks() {
        assert_eq!(
            rewrite_tags("a{%- generation %}b{% endgeneration -%}c{{ generation }}"),
            "a{%- if true %}b{% endif -%}c{{ generation }}"
        );
        assert_eq!(
            rewrite_tags("{% if x %}{%+ generation +%}{% endif %}"),
            "{% if x %}{%+ if true +%}{% endif %}"
        );
    }

    #[test]
    fn raw_blocks_keep_their_first_newline() {
        assert_eq!(
            rewrite_tags("{%- raw %}\n{% generation %}{% endraw %}{% generation -%}"),
            "{%- raw +%}\n{% generation %}{% endraw %}{% if true -%}"
        );
        assert_eq!(
            rewrite_tags("{% raw -%}x{%endraw%}"),
            "{% raw -%}x{%endraw%}"
        );
    }
}
