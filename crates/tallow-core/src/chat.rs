//! A model's chat formatting: the template it ships (chat_template.jinja, or tokenizer_config.json's
//! `chat_template`), else our built-in one for its family, plus the special tokens templates see.
//! Users may render with a template of their own instead.

use crate::chat_template::{builtin, builtin_name_for, ChatRequest, ChatTemplate};
use crate::error::{Error, ErrorCode, Result};
use crate::tokenizer::Tokenizer;
use serde_json::Value;

pub struct Chat {
    /// The model's template; `None` when it ships none and no built-in fits.
    template: Option<ChatTemplate>,
    /// Where the template came from: `model`, or `builtin:<name>`.
    pub template_source: Option<String>,
    /// `(name, text)` of the special tokens given to every template (`bos_token`, ...).
    special_tokens: Vec<(String, String)>,
}

impl Chat {
    /// `file`: the text of chat_template.jinja if present (it wins, as in transformers);
    /// `config_template`: tokenizer_config.json's `chat_template` (a string, or a list of
    /// `{name, template}` of which transformers uses `default`).
    pub fn new(
        file: Option<String>,
        config_template: Option<&Value>,
        special_tokens: Vec<(String, String)>,
        architecture: &str,
        tokenizer: &Tokenizer,
    ) -> Result<Self> {
        let shipped = match file {
            Some(text) => Some(text),
            None => config_template.map(named_default).transpose()?,
        };
        let (source, origin) = match shipped {
            Some(source) => (Some(source), Some("model".to_string())),
            None => match builtin_name_for(architecture, |t| tokenizer.token_id(t).is_some()) {
                Some(name) => (
                    builtin(name).map(String::from),
                    Some(format!("builtin:{name}")),
                ),
                None => (None, None),
            },
        };
        let template = source.map(|s| compile(&s, &special_tokens)).transpose()?;
        Ok(Chat {
            template,
            template_source: origin,
            special_tokens,
        })
    }

    /// Renders `request` with the model's template, or with `template` (source or the name of
    /// a built-in such as `chatml`) when given.
    pub fn render(&self, request: &ChatRequest, template: Option<&str>) -> Result<String> {
        match template {
            Some(override_source) => {
                let source = builtin(override_source).unwrap_or(override_source);
                compile(source, &self.special_tokens)?.render(request)
            }
            None => match &self.template {
                Some(t) => t.render(request),
                None => Err(Error::new(
                    ErrorCode::InvalidTemplate,
                    "the model has no chat template and none of the built-in ones fits its family; pass one with the `template` option",
                )),
            },
        }
    }
}

fn compile(source: &str, special_tokens: &[(String, String)]) -> Result<ChatTemplate> {
    let mut template = ChatTemplate::new(source, None, None)?;
    for (name, text) in special_tokens {
        template = template.with_special_token(name.clone(), text.clone());
    }
    Ok(template)
}

/// tokenizer_config.json's `chat_template`: a string, or a list of named templates whose
/// `default` transformers uses.
fn named_default(value: &Value) -> Result<String> {
    let invalid = |why: &str| {
        Error::new(
            ErrorCode::InvalidTemplate,
            format!("tokenizer_config.json chat_template: {why}"),
        )
    };
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|entry| entry.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|entry| entry.get("template").and_then(Value::as_str))
            .map(String::from)
            .ok_or_else(|| invalid("a list of templates without one named 'default'")),
        _ => Err(invalid("must be a string or a list of {name, template}")),
    }
}
