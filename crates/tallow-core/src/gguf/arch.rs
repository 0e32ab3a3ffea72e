//! GGUF metadata → `ModelSpec`, following llama.cpp's reading of each architecture (its
//! `llama-model.cpp` and `models/<arch>.cpp`) rather than transformers' where the two differ,
//! because a GGUF file means what llama.cpp does with it:
//!
//! * `llama` q/k rows were permuted by the converter to Meta's interleaved layout, so its rope
//!   rotates adjacent pairs; Llama 3 scaling arrives as the `rope_freqs` divisors tensor.
//! * Gemma norm weights already hold `1 + w` (the converter adds one), the sliding-window layer
//!   pattern is llama.cpp's fixed one (every 2nd layer global for Gemma 2, every 6th for
//!   Gemma 3) unless the file gives `attention.sliding_window_pattern`, the attention scale is
//!   `1/sqrt(head_dim)` except for the 27B shapes, and Gemma 3's linear rope scaling applies to
//!   its global layers only.
//! * Phi-3 LongRoPE uses the long factors when the model's context exceeds the original one
//!   (llama.cpp decides by context size, not per sequence), times `rope.scaling.attn_factor`.
//! * MoE routing renormalises the chosen experts' weights (Mixtral, Qwen3-MoE).
//! * Sliding windows of llama (Mistral), qwen2 and phi3 files are not used, as in llama.cpp.

use super::metadata::{MetaValue, Metadata};
use crate::error::{Error, ErrorCode, Result};
use crate::spec::{
    Activation, AttentionSpec, FfnSpec, LayerSpec, ModelSpec, NormSpec, RopeScaling, RopeSpec,
    TensorLayout,
};
use crate::weights::gguf::GgufWeights;

/// The GGUF architectures tallow runs, with the transformers class each corresponds to.
pub const SUPPORTED_GGUF_ARCHITECTURES: [(&str, &str); 7] = [
    ("llama", "LlamaForCausalLM"),
    ("qwen2", "Qwen2ForCausalLM"),
    ("qwen3", "Qwen3ForCausalLM"),
    ("qwen3moe", "Qwen3MoeForCausalLM"),
    ("phi3", "Phi3ForCausalLM"),
    ("gemma2", "Gemma2ForCausalLM"),
    ("gemma3", "Gemma3ForCausalLM"),
];

/// Bounds sizes read from metadata before anything is allocated from them.
const MAX_DIM: u64 = 1 << 24;

fn unsupported(message: String) -> Error {
    Error::new(ErrorCode::UnsupportedConfig, message)
}

fn invalid(message: String) -> Error {
    Error::new(ErrorCode::InvalidModelFile, message)
}

/// `{arch}.`-prefixed reads with llama.cpp's defaults and bounds.
struct Keys<'a> {
    meta: &'a Metadata,
    arch: &'a str,
}

impl Keys<'_> {
    fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.arch)
    }

    fn dim_opt(&self, name: &str) -> Result<Option<usize>> {
        let key = self.key(name);
        let value = match self.meta.get(&key) {
            None => return Ok(None),
            // Per-layer arrays (llama.cpp's get_key_or_arr): tallow needs them uniform.
            Some(MetaValue::Array(items)) => {
                let first = items.first().and_then(MetaValue::as_u64);
                if first.is_none() || items.iter().any(|v| v.as_u64() != first) {
                    return Err(unsupported(format!(
                        "GGUF '{key}' varies per layer, which tallow does not support"
                    )));
                }
                first.unwrap_or(0)
            }
            Some(_) => self.meta.required_u64(&key)?,
        };
        if value == 0 || value > MAX_DIM {
            return Err(invalid(format!("GGUF '{key}' = {value} is out of range")));
        }
        Ok(Some(value as usize))
    }

    fn dim(&self, name: &str) -> Result<usize> {
        self.dim_opt(name)?
            .ok_or_else(|| invalid(format!("GGUF metadata '{}' is missing", self.key(name))))
    }

    fn float(&self, name: &str) -> Result<Option<f64>> {
        let value = self.meta.f64(&self.key(name))?;
        if let Some(v) = value {
            if !v.is_finite() {
                return Err(invalid(format!(
                    "GGUF '{}' = {v} is not finite",
                    self.key(name)
                )));
            }
        }
        Ok(value)
    }

    /// Which layers use the sliding window: `attention.sliding_window_pattern` (per-layer bools,
    /// or n: every n-th layer global) else llama.cpp's default period for the family.
    fn swa_layers(&self, layers: usize, default_period: usize) -> Result<Vec<bool>> {
        let key = self.key("attention.sliding_window_pattern");
        let by_period = |n: usize| (0..layers).map(|il| il % n < n - 1).collect();
        match self.meta.get(&key) {
            None => Ok(by_period(default_period)),
            Some(MetaValue::Array(items)) if items.len() == layers => items
                .iter()
                .map(|v| match v {
                    MetaValue::Bool(b) => Ok(*b),
                    _ => Err(invalid(format!("GGUF '{key}' must hold bools"))),
                })
                .collect(),
            Some(MetaValue::Array(_)) => Err(invalid(format!(
                "GGUF '{key}' must have one entry per layer ({layers})"
            ))),
            Some(_) => {
                let n = self.meta.required_u64(&key)? as usize;
                if n == 0 {
                    return Err(invalid(format!("GGUF '{key}' must be at least 1")));
                }
                Ok(by_period(n))
            }
        }
    }
}

/// The architecture of a GGUF file. `weights` gives the tensors that carry architecture facts
/// (rope factors, which optional tensors exist); `vocab_size` is the tokenizer's, which llama.cpp
/// takes as the model's.
pub fn spec_from_gguf(
    meta: &Metadata,
    weights: &GgufWeights,
    vocab_size: usize,
) -> Result<ModelSpec> {
    let arch = meta.required_string("general.architecture")?;
    let Some(&(_, class)) = SUPPORTED_GGUF_ARCHITECTURES
        .iter()
        .find(|(a, _)| *a == arch)
    else {
        let names: Vec<&str> = SUPPORTED_GGUF_ARCHITECTURES
            .iter()
            .map(|(a, _)| *a)
            .collect();
        return Err(Error::new(
            ErrorCode::UnsupportedArchitecture,
            format!(
                "GGUF architecture '{arch}' is not supported (supported: {})",
                names.join(", ")
            ),
        ));
    };
    let k = Keys { meta, arch };
    let context_length = k.dim("context_length")?;
    let hidden = k.dim("embedding_length")?;
    let layers = k.dim("block_count")?;
    let heads = k.dim("attention.head_count")?;
    let kv_heads = k.dim_opt("attention.head_count_kv")?.unwrap_or(heads);
    if heads % kv_heads != 0 {
        return Err(invalid(format!(
            "{heads} attention heads cannot share {kv_heads} key/value heads"
        )));
    }
    let head_dim = k.dim_opt("attention.key_length")?.unwrap_or(hidden / heads);
    if let Some(v) = k.dim_opt("attention.value_length")? {
        if v != head_dim {
            return Err(unsupported(format!(
                "value heads of {v} differ from key heads of {head_dim}"
            )));
        }
    }
    let rotary_dim = k.dim_opt("rope.dimension_count")?.unwrap_or(head_dim);
    if rotary_dim > head_dim || rotary_dim % 2 != 0 {
        return Err(invalid(format!(
            "rope.dimension_count {rotary_dim} does not fit heads of {head_dim}"
        )));
    }
    let eps = k
        .float("attention.layer_norm_rms_epsilon")?
        .ok_or_else(|| {
            invalid(format!(
                "GGUF metadata '{arch}.attention.layer_norm_rms_epsilon' is missing"
            ))
        })?;
    let theta = k.float("rope.freq_base")?.unwrap_or(10_000.0);
    let attn_factor = k.float("rope.scaling.attn_factor")?.unwrap_or(1.0);
    let scaling_type = meta
        .string(&k.key("rope.scaling.type"))?
        .unwrap_or("linear");
    // freq_scale as llama.cpp keeps it: 1/factor, forced to 1 for "none".
    let linear_factor = match scaling_type {
        "none" => 1.0,
        "linear" => match k.float("rope.scaling.factor")? {
            Some(f) if f > 0.0 => f,
            Some(0.0) | None => 1.0,
            Some(f) => return Err(invalid(format!("rope.scaling.factor {f} is negative"))),
        },
        other => {
            return Err(unsupported(format!(
                "GGUF rope scaling '{other}' is not supported (supported: none, linear)"
            )))
        }
    };
    let intermediate = k.dim_opt("feed_forward_length")?;
    let experts = k.dim_opt("expert_count")?;
    let vocab_rows = weights.rows_of("token_embd.weight");
    if vocab_rows.is_some_and(|rows| rows != vocab_size) {
        return Err(invalid(format!(
            "token_embd has {} rows but the tokenizer has {vocab_size} tokens",
            vocab_rows.unwrap_or(0)
        )));
    }
    let has = |name: &str| weights.has_gguf_tensor(name);

    let half = rotary_dim / 2;
    // Divisors of the rope frequencies, from a factors tensor and the linear scale.
    let factors = |tensor: Option<Vec<f32>>, linear: f64| -> Result<RopeScaling> {
        let divisors: Vec<f64> = match tensor {
            Some(values) if values.len() == half => {
                values.iter().map(|&f| f as f64 * linear).collect()
            }
            Some(values) => {
                return Err(invalid(format!(
                    "rope factors hold {} values, heads need {half}",
                    values.len()
                )))
            }
            None if linear == 1.0 && attn_factor == 1.0 => return Ok(RopeScaling::None),
            None => vec![linear; half],
        };
        Ok(RopeScaling::Factors {
            divisors,
            attention_factor: attn_factor,
        })
    };
    let rope = |theta: f64, scaling: RopeScaling, interleaved: bool| RopeSpec {
        theta,
        rotary_dim,
        scaling,
        interleaved,
    };
    let dense = |bias: bool| -> Result<FfnSpec> {
        Ok(FfnSpec::Dense {
            intermediate_size: intermediate.ok_or_else(|| {
                invalid(format!(
                    "GGUF metadata '{arch}.feed_forward_length' is missing"
                ))
            })?,
            bias,
        })
    };
    // `expert_ff`: the experts' feed-forward length if the family stores one of its own.
    let moe = |expert_ff: Option<usize>| -> Result<FfnSpec> {
        let num_experts = experts.unwrap_or(0);
        let top_k = k.dim("expert_used_count")?;
        if top_k > num_experts {
            return Err(invalid(format!(
                "{top_k} experts used per token but only {num_experts} exist"
            )));
        }
        let intermediate_size = expert_ff
            .ok_or_else(|| invalid("the experts' feed-forward length is missing".into()))?;
        Ok(FfnSpec::Moe {
            num_experts,
            top_k,
            intermediate_size,
            renormalize: true,
        })
    };
    let uniform = |ffn: FfnSpec| -> Vec<LayerSpec> {
        (0..layers)
            .map(|_| LayerSpec {
                sliding_window: None,
                rope: 0,
                ffn: ffn.clone(),
            })
            .collect()
    };
    let qkv_bias = has("blk.0.attn_q.bias") || has("blk.0.attn_qkv.bias");
    let out_bias = has("blk.0.attn_output.bias");
    let ffn_bias = has("blk.0.ffn_up.bias");
    if arch != "phi3" && has("blk.0.attn_qkv.weight") {
        return Err(unsupported(
            "GGUF files with fused attn_qkv tensors (converted with --fuse-qkv) are not supported \
             for this architecture"
                .into(),
        ));
    }
    let default_scale = 1.0 / (head_dim as f64).sqrt();
    let mut spec = ModelSpec {
        architecture: class.to_string(),
        vocab_size,
        hidden_size: hidden,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        context_length,
        norm: NormSpec {
            eps,
            weight_offset: 0.0,
            sandwich: false,
        },
        attention: AttentionSpec {
            qkv_bias,
            out_bias,
            qk_norm: false,
            scale: default_scale,
            softcap: None,
        },
        layers: vec![],
        ropes: vec![],
        activation: Activation::Silu,
        embedding_scale: None,
        final_logit_softcap: None,
        tie_word_embeddings: !has("output.weight"),
        tensors: TensorLayout::Separate,
        bos_token_id: None,
        eos_token_ids: vec![],
    };
    match arch {
        "llama" => {
            if rotary_dim != head_dim {
                return Err(invalid(format!(
                    "llama: rope.dimension_count {rotary_dim} must equal the head size {head_dim}"
                )));
            }
            let scaling = factors(weights.raw_f32("rope_freqs.weight")?, linear_factor)?;
            spec.ropes = vec![rope(theta, scaling, true)];
            if experts.is_some_and(|e| e > 0) {
                spec.architecture = "MixtralForCausalLM".into();
                // Mixtral's experts have the model's feed_forward_length.
                spec.layers = uniform(moe(intermediate)?);
            } else {
                spec.layers = uniform(dense(ffn_bias)?);
            }
        }
        "qwen2" | "qwen3" => {
            spec.attention.qk_norm = arch == "qwen3";
            spec.ropes = vec![rope(theta, factors(None, linear_factor)?, false)];
            spec.layers = uniform(dense(ffn_bias)?);
        }
        "qwen3moe" => {
            spec.attention.qk_norm = true;
            spec.ropes = vec![rope(theta, factors(None, linear_factor)?, false)];
            // llama.cpp's default: feed_forward_length split over the experts used.
            let expert_ff = k.dim_opt("expert_feed_forward_length")?;
            let top_k = k.dim("expert_used_count")?;
            spec.layers = uniform(moe(expert_ff.or(intermediate.map(|ff| ff / top_k)))?);
        }
        "phi3" => {
            let original = k
                .dim_opt("rope.scaling.original_context_length")?
                .unwrap_or(context_length);
            let which = if context_length > original {
                "rope_factors_long.weight"
            } else {
                "rope_factors_short.weight"
            };
            let scaling = factors(weights.raw_f32(which)?, linear_factor)?;
            spec.ropes = vec![rope(theta, scaling, false)];
            spec.tensors = TensorLayout::Fused;
            spec.layers = uniform(dense(ffn_bias)?);
        }
        "gemma2" | "gemma3" => {
            let gemma3 = arch == "gemma3";
            spec.norm.sandwich = true;
            spec.activation = Activation::GeluTanhF16Table;
            spec.embedding_scale = Some((hidden as f32).sqrt() as f64);
            spec.tie_word_embeddings = !gemma3 || !has("output.weight");
            let big = if gemma3 { 62 } else { 46 };
            if layers == big {
                spec.attention.scale = 1.0 / ((hidden / heads) as f64).sqrt();
            }
            let final_cap = k.float("final_logit_softcapping")?;
            if gemma3 {
                spec.attention.qk_norm = true;
                spec.final_logit_softcap = final_cap.filter(|c| *c > 0.0);
            } else {
                spec.attention.softcap = Some(k.float("attn_logit_softcapping")?.unwrap_or(50.0));
                spec.final_logit_softcap = Some(final_cap.unwrap_or(30.0));
            }
            let window = k.dim_opt("attention.sliding_window")?;
            let (window, swa) = if gemma3 {
                match window {
                    Some(w) => (w, k.swa_layers(layers, 6)?),
                    None => (0, vec![false; layers]),
                }
            } else {
                (window.unwrap_or(4096), k.swa_layers(layers, 2)?)
            };
            // Rope 0 for global layers; rope 1 for sliding ones (own base, and in Gemma 3 no
            // linear scaling).
            let swa_theta =
                k.float("rope.freq_base_swa")?
                    .unwrap_or(if gemma3 { 10_000.0 } else { theta });
            let swa_linear = if gemma3 { 1.0 } else { linear_factor };
            spec.ropes = vec![
                rope(theta, factors(None, linear_factor)?, false),
                rope(swa_theta, factors(None, swa_linear)?, false),
            ];
            let ffn = dense(ffn_bias)?;
            spec.layers = swa
                .into_iter()
                .map(|sliding| LayerSpec {
                    sliding_window: sliding.then_some(window),
                    rope: usize::from(sliding),
                    ffn: ffn.clone(),
                })
                .collect();
        }
        _ => unreachable!("checked against SUPPORTED_GGUF_ARCHITECTURES"),
    }
    Ok(spec)
}
