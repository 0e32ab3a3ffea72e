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
    /// The model's `tool_use` template, which transformers prefers when tools are given.
    tool_template: Option<ChatTemplate>,
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
        let (shipped, tool_use) = match (file, config_template) {
            (Some(text), _) => (Some(text), None),
            (None, Some(value)) => {
                let (default, tool_use) = named_templates(value)?;
                (Some(default), tool_use)
            }
            (None, None) => (None, None),
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
        let tool_template = tool_use.map(|s| compile(&s, &special_tokens)).transpose()?;
        Ok(Chat {
            template,
            tool_template,
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
            None => match (&self.tool_template, &self.template) {
                (Some(tools), _) if request.tools.is_some() => tools.render(request),
                (_, Some(t)) => t.render(request),
                (_, None) => Err(Error::new(
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

/// tokenizer_config.json's `chat_template`: a string, or a list of named templates of which
/// transformers uses `default`, and `tool_use` when tools are given. Returns (default, tool_use).
fn named_templates(value: &Value) -> Result<(String, Option<String>)> {
    let invalid = |why: &str| {
        Error::new(
            ErrorCode::InvalidTemplate,
            format!("tokenizer_config.json chat_template: {why}"),
        )
    };
    match value {
        Value::String(s) => Ok((s.clone(), None)),
        Value::Array(list) => {
            let named = |name: &str| {
                list.iter()
                    .find(|entry| entry.get("name").and_then(Value::as_str) == Some(name))
                    .and_then(|entry| entry.get("template").and_then(Value::as_str))
                    .map(String::from)
            };
            let default = named("default")
                .ok_or_else(|| invalid("a list of templates without one named 'default'"))?;
            Ok((default, named("tool_use")))
        }
        _ => Err(invalid("must be a string or a list of {name, template}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_templates_give_the_default_and_the_tool_use_one() {
        let list = json!([
            {"name": "tool_use", "template": "T"},
            {"name": "default", "template": "D"}
        ]);
        assert_eq!(
            named_templates(&list).unwrap(),
            ("D".into(), Some("T".into()))
        );
        assert_eq!(named_templates(&json!("S")).unwrap(), ("S".into(), None));
        let err = named_templates(&json!([{"name": "rag", "template": "R"}])).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidTemplate);
    }
}
