//! config.json (a Hugging Face checkpoint) → `ModelSpec`.
//!
//! Both layouts transformers writes are read: 4.x (`rope_theta` + `rope_scaling`) and 5.x
//! (`rope_parameters`). Families are described in `families.rs`.

mod families;
mod fields;
mod rope;

use crate::error::{Error, ErrorCode, Result};
use crate::spec::ModelSpec;
pub use fields::Fields;
use serde_json::Value;

/// Architectures (the `architectures[0]` of config.json) this build implements.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "MixtralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "Qwen3MoeForCausalLM",
    "Phi3ForCausalLM",
    "Gemma2ForCausalLM",
    "Gemma3ForCausalLM",
];

/// Parses config.json text into a spec.
pub fn parse_config(text: &str) -> Result<ModelSpec> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| fields::invalid(format!("config.json is not valid JSON: {e}")))?;
    let map = value
        .as_object()
        .ok_or_else(|| fields::invalid("config.json must hold a JSON object".to_string()))?;
    let cfg = Fields::new(map, "");
    let architecture = architecture_of(&value)?;
    families::describe(&architecture, cfg)?.ok_or_else(|| {
        Error::new(
            ErrorCode::UnsupportedArchitecture,
            format!(
                "architecture '{architecture}' is not supported; supported architectures: {}",
                SUPPORTED_ARCHITECTURES.join(", ")
            ),
        )
    })
}

fn architecture_of(cfg: &Value) -> Result<String> {
    match cfg.get("architectures") {
        Some(Value::Array(list)) => match list.first() {
            Some(Value::String(name)) => Ok(name.clone()),
            _ => Err(fields::invalid(
                "config.json field 'architectures' must be a non-empty list of strings".into(),
            )),
        },
        Some(_) => Err(fields::invalid(
            "config.json field 'architectures' must be a list".into(),
        )),
        None => Err(fields::invalid(
            "config.json has no 'architectures' field naming the model class".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FfnSpec, RopeScaling};

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
        assert_eq!(spec.ropes[0].theta, 500000.0);
        assert!(
            matches!(spec.ropes[0].scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0)
        );
    }

    #[test]
    fn reads_the_transformers_5_layout() {
        let spec = parse_config(&with(
            r#","rope_parameters":{"rope_type":"default","rope_theta":10000.0},"head_dim":24"#,
        ))
        .unwrap();
        assert_eq!((spec.head_dim, spec.ropes[0].theta), (24, 10000.0));
        assert_eq!(spec.ropes[0].scaling, RopeScaling::None);
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
        assert!(
            err.message.contains("LlamaForCausalLM") && err.message.contains("Gemma3ForCausalLM")
        );
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
        let err = parse_config(&with(r#","hidden_act":"relu""#)).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedConfig);
        assert!(
            err.message.contains("hidden_act = 'relu'"),
            "{}",
            err.message
        );
    }

    #[test]
    fn qwen3_moe_layers_follow_mlp_only_layers_and_the_sparse_step() {
        let cfg = BASE
            .replace("LlamaForCausalLM", "Qwen3MoeForCausalLM")
            .replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":4");
        let spec = parse_config(&format!(
            r#"{cfg},"num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":32,"norm_topk_prob":true,"decoder_sparse_step":1,"mlp_only_layers":[1]}}"#
        ))
        .unwrap();
        let moe: Vec<bool> = spec
            .layers
            .iter()
            .map(|l| matches!(l.ffn, FfnSpec::Moe { .. }))
            .collect();
        assert_eq!(moe, [true, false, true, true]);
    }
}
