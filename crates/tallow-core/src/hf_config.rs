//! config.json (a Hugging Face checkpoint) → `ModelSpec`.
//!
//! Both layouts transformers writes are read: 4.x (`rope_theta` + `rope_scaling`) and 5.x
//! (`rope_parameters`). config.json is untrusted input: every field is type-checked, sizes are
//! bounded, and each problem names the field and the value.

use crate::error::{Error, ErrorCode, Result};
use crate::spec::{Activation, ModelSpec, RopeScaling, RopeSpec};
use serde_json::{Map, Value};

/// Architectures (the `architectures[0]` of config.json) this build implements.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["LlamaForCausalLM"];

/// Upper bound on any size read from config.json, so a hostile file cannot ask for absurd
/// allocations before the weights are even looked at.
const MAX_DIM: u64 = 1 << 24;

/// Parses config.json text into a spec.
pub fn parse_config(text: &str) -> Result<ModelSpec> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| invalid(format!("config.json is not valid JSON: {e}")))?;
    let cfg = value
        .as_object()
        .ok_or_else(|| invalid("config.json must hold a JSON object".to_string()))?;
    let architecture = architecture_of(cfg)?;
    match architecture.as_str() {
        "LlamaForCausalLM" => llama(cfg, architecture),
        other => Err(Error::new(
            ErrorCode::UnsupportedArchitecture,
            format!(
                "architecture '{other}' is not supported; supported architectures: {}",
                SUPPORTED_ARCHITECTURES.join(", ")
            ),
        )),
    }
}

fn architecture_of(cfg: &Map<String, Value>) -> Result<String> {
    match cfg.get("architectures") {
        Some(Value::Array(list)) => match list.first() {
            Some(Value::String(name)) => Ok(name.clone()),
            _ => Err(invalid(
                "config.json field 'architectures' must be a non-empty list of strings".into(),
            )),
        },
        Some(_) => Err(invalid(
            "config.json field 'architectures' must be a list".into(),
        )),
        None => Err(invalid(
            "config.json has no 'architectures' field naming the model class".into(),
        )),
    }
}

fn llama(cfg: &Map<String, Value>, architecture: String) -> Result<ModelSpec> {
    let hidden_size = dim(cfg, "hidden_size")?;
    let num_heads = dim(cfg, "num_attention_heads")?;
    let num_kv_heads = opt_dim(cfg, "num_key_value_heads")?.unwrap_or(num_heads);
    if num_heads % num_kv_heads != 0 {
        return Err(invalid(format!(
            "num_attention_heads ({num_heads}) must be a multiple of num_key_value_heads ({num_kv_heads})"
        )));
    }
    let head_dim = match opt_dim(cfg, "head_dim")? {
        Some(d) => d,
        None if hidden_size % num_heads == 0 => hidden_size / num_heads,
        None => {
            return Err(invalid(format!(
                "hidden_size ({hidden_size}) is not divisible by num_attention_heads ({num_heads}) and head_dim is not given"
            )))
        }
    };
    if head_dim % 2 != 0 {
        return Err(invalid(format!(
            "head_dim must be even for rope, got {head_dim}"
        )));
    }
    if let Some(act) = opt_str(cfg, "hidden_act")? {
        if act != "silu" {
            return Err(unsupported("hidden_act", &act));
        }
    }
    Ok(ModelSpec {
        architecture,
        vocab_size: dim(cfg, "vocab_size")?,
        hidden_size,
        intermediate_size: dim(cfg, "intermediate_size")?,
        num_layers: dim(cfg, "num_hidden_layers")?,
        num_heads,
        num_kv_heads,
        head_dim,
        context_length: dim(cfg, "max_position_embeddings")?,
        rms_norm_eps: opt_f64(cfg, "rms_norm_eps")?.unwrap_or(1e-6),
        rope: rope(cfg, head_dim)?,
        attention_bias: opt_bool(cfg, "attention_bias")?.unwrap_or(false),
        mlp_bias: opt_bool(cfg, "mlp_bias")?.unwrap_or(false),
        activation: Activation::Silu,
        tie_word_embeddings: opt_bool(cfg, "tie_word_embeddings")?.unwrap_or(false),
        bos_token_id: opt_token_ids(cfg, "bos_token_id")?.first().copied(),
        eos_token_ids: opt_token_ids(cfg, "eos_token_id")?,
    })
}

/// Rope settings from either layout: transformers 5 keeps them all in `rope_parameters`,
/// 4.x has `rope_theta` at the top and the scaling in `rope_scaling` (`rope_type`, or the older
/// `type`).
fn rope(cfg: &Map<String, Value>, head_dim: usize) -> Result<RopeSpec> {
    let (params, params_field) = match cfg.get("rope_parameters") {
        Some(Value::Object(p)) => (Some(p), "rope_parameters"),
        Some(Value::Null) | None => match cfg.get("rope_scaling") {
            Some(Value::Object(p)) => (Some(p), "rope_scaling"),
            Some(Value::Null) | None => (None, "rope_scaling"),
            Some(_) => return Err(invalid("rope_scaling must be an object or null".into())),
        },
        Some(_) => return Err(invalid("rope_parameters must be an object".into())),
    };
    let theta = match params
        .map(|p| opt_f64(p, "rope_theta"))
        .transpose()?
        .flatten()
    {
        Some(t) => t,
        None => opt_f64(cfg, "rope_theta")?.unwrap_or(10_000.0),
    };
    if !(theta.is_finite() && theta > 0.0) {
        return Err(invalid(format!(
            "rope_theta must be a positive number, got {theta}"
        )));
    }
    let scaling = match params {
        None => RopeScaling::None,
        Some(p) => {
            let kind = match opt_str(p, "rope_type")? {
                Some(k) => k,
                None => opt_str(p, "type")?.unwrap_or_else(|| "default".to_string()),
            };
            let field = |name: &str| format!("{params_field}.{name}");
            match kind.as_str() {
                "default" => RopeScaling::None,
                "linear" => RopeScaling::Linear {
                    factor: positive(p, "factor", &field("factor"))?,
                },
                "llama3" => RopeScaling::Llama3 {
                    factor: positive(p, "factor", &field("factor"))?,
                    low_freq_factor: positive(p, "low_freq_factor", &field("low_freq_factor"))?,
                    high_freq_factor: positive(p, "high_freq_factor", &field("high_freq_factor"))?,
                    original_max_position_embeddings: dim(p, "original_max_position_embeddings")?,
                },
                other => return Err(unsupported(&field("rope_type"), other)),
            }
        }
    };
    if let RopeScaling::Llama3 {
        low_freq_factor,
        high_freq_factor,
        ..
    } = scaling
    {
        if high_freq_factor <= low_freq_factor {
            return Err(invalid(format!(
                "{params_field}: high_freq_factor ({high_freq_factor}) must exceed low_freq_factor ({low_freq_factor})"
            )));
        }
    }
    Ok(RopeSpec {
        theta,
        rotary_dim: head_dim,
        scaling,
    })
}

fn invalid(message: String) -> Error {
    Error::new(ErrorCode::InvalidConfig, message)
}

fn unsupported(field: &str, value: &str) -> Error {
    Error::new(
        ErrorCode::UnsupportedConfig,
        format!("config.json: {field} = '{value}' is not supported"),
    )
}

/// A required positive integer size.
fn dim(cfg: &Map<String, Value>, name: &str) -> Result<usize> {
    opt_dim(cfg, name)?
        .ok_or_else(|| invalid(format!("config.json is missing required field '{name}'")))
}

fn opt_dim(cfg: &Map<String, Value>, name: &str) -> Result<Option<usize>> {
    match cfg.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 && n <= MAX_DIM => Ok(Some(n as usize)),
            _ => Err(invalid(format!(
                "config.json field '{name}' must be an integer in 1..={MAX_DIM}, got {v}"
            ))),
        },
    }
}

fn opt_f64(cfg: &Map<String, Value>, name: &str) -> Result<Option<f64>> {
    match cfg.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            invalid(format!(
                "config.json field '{name}' must be a number, got {v}"
            ))
        }),
    }
}

fn positive(cfg: &Map<String, Value>, name: &str, full_name: &str) -> Result<f64> {
    match opt_f64(cfg, name)? {
        Some(x) if x.is_finite() && x > 0.0 => Ok(x),
        Some(x) => Err(invalid(format!(
            "{full_name} must be a positive number, got {x}"
        ))),
        None => Err(invalid(format!(
            "config.json is missing required field '{full_name}'"
        ))),
    }
}

fn opt_bool(cfg: &Map<String, Value>, name: &str) -> Result<Option<bool>> {
    match cfg.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| {
            invalid(format!(
                "config.json field '{name}' must be true or false, got {v}"
            ))
        }),
    }
}

fn opt_str(cfg: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match cfg.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(invalid(format!(
            "config.json field '{name}' must be a string, got {v}"
        ))),
    }
}

/// A token id field that may be a single id or a list of ids (as eos_token_id often is).
pub(crate) fn opt_token_ids(cfg: &Map<String, Value>, name: &str) -> Result<Vec<u32>> {
    let as_id = |v: &Value| -> Result<u32> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid(format!("'{name}' must hold token ids, got {v}")))
    };
    match cfg.get(name) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(items)) => items.iter().map(as_id).collect(),
        Some(v) => Ok(vec![as_id(v)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,
        "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":512,
        "max_position_embeddings":256,"rms_norm_eps":1e-5"#;

    fn with(extra: &str) -> String {
        format!("{BASE}{extra}}}")
    }

    #[test]
    fn reads_the_transformers_4_layout() {
        let spec = parse_config(&with(
            r#","rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,
            "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":32}"#,
        ))
        .unwrap();
        assert_eq!(spec.head_dim, 16);
        assert_eq!(spec.rope.theta, 500000.0);
        assert!(matches!(spec.rope.scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    }

    #[test]
    fn reads_the_transformers_5_layout() {
        let spec = parse_config(&with(
            r#","rope_parameters":{"rope_type":"default","rope_theta":10000.0},"head_dim":24"#,
        ))
        .unwrap();
        assert_eq!((spec.head_dim, spec.rope.theta), (24, 10000.0));
        assert_eq!(spec.rope.scaling, RopeScaling::None);
    }

    #[test]
    fn an_unknown_rope_type_names_the_field_and_value() {
        let err =
            parse_config(&with(r#","rope_scaling":{"type":"yarn","factor":2.0}"#)).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedConfig);
        assert!(
            err.message.contains("rope_scaling.rope_type = 'yarn'"),
            "{}",
            err.message
        );
    }

    #[test]
    fn an_unknown_architecture_lists_the_supported_ones() {
        let err = parse_config(r#"{"architectures":["BertModel"]}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedArchitecture);
        assert!(err.message.contains("LlamaForCausalLM"));
    }

    #[test]
    fn missing_and_mistyped_fields_are_invalid_config() {
        let err = parse_config(r#"{"architectures":["LlamaForCausalLM"]}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidConfig);
        assert!(err.message.contains("hidden_size"));
        let err = parse_config(&with(r#","tie_word_embeddings":"yes""#)).unwrap_err();
        assert!(err.message.contains("tie_word_embeddings"));
        let err = parse_config("{not json").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidConfig);
        let err = parse_config(
            &BASE
                .replace("\"hidden_size\":64", "\"hidden_size\":-3")
                .replace("1e-5", "1e-5}"),
        )
        .unwrap_err();
        assert!(err.message.contains("hidden_size"), "{}", err.message);
    }
}
