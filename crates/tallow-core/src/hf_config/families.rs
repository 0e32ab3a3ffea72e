//! The supported families, each described as how its config.json maps onto a `ModelSpec`.
//! Everything starts from the Llama description (`base`); a family states only where it differs.

use super::fields::{invalid, unsupported, Fields};
use super::rope::{rope, RopeFor};
use crate::error::Result;
use crate::spec::{
    Activation, AttentionSpec, FfnSpec, LayerSpec, ModelSpec, NormSpec, TensorLayout,
};

/// The spec of `architecture`, or `None` if it is not a supported family.
pub fn describe(architecture: &str, cfg: Fields) -> Result<Option<ModelSpec>> {
    let spec = match architecture {
        "LlamaForCausalLM" => base(architecture, cfg)?,
        "MistralForCausalLM" => sliding_everywhere(base(architecture, cfg)?, cfg)?,
        "MixtralForCausalLM" => mixtral(cfg)?,
        "Qwen2ForCausalLM" => qwen2(cfg)?,
        "Qwen3ForCausalLM" => qwen3(architecture, cfg)?,
        "Qwen3MoeForCausalLM" => qwen3_moe(cfg)?,
        "Phi3ForCausalLM" => phi3(cfg)?,
        "Gemma2ForCausalLM" => gemma2(cfg)?,
        "Gemma3ForCausalLM" => gemma3(cfg)?,
        _ => return Ok(None),
    };
    Ok(Some(spec))
}

/// Llama: pre-norm blocks, RMSNorm, full-head rope, SiLU-gated MLP, optional biases.
fn base(architecture: &str, cfg: Fields) -> Result<ModelSpec> {
    let hidden_size = cfg.dim("hidden_size")?;
    let num_heads = cfg.dim("num_attention_heads")?;
    let num_kv_heads = cfg.opt_dim("num_key_value_heads")?.unwrap_or(num_heads);
    if num_heads % num_kv_heads != 0 {
        return Err(invalid(format!(
            "num_attention_heads ({num_heads}) must be a multiple of num_key_value_heads ({num_kv_heads})"
        )));
    }
    let head_dim = match cfg.opt_dim("head_dim")? {
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
    let attention_bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
    let dense = FfnSpec::Dense {
        intermediate_size: cfg.dim("intermediate_size")?,
        bias: cfg.opt_bool("mlp_bias")?.unwrap_or(false),
    };
    let num_layers = cfg.dim("num_hidden_layers")?;
    let mut context_length = cfg.dim("max_position_embeddings")?;
    let rope = rope(cfg, RopeFor::AllLayers, head_dim)?;
    if let crate::spec::RopeScaling::Dynamic { factor, .. } = rope.scaling {
        // Dynamic NTK exists to run past the trained length.
        context_length = (context_length as f64 * factor) as usize;
    }
    Ok(ModelSpec {
        architecture: architecture.to_string(),
        vocab_size: cfg.dim("vocab_size")?,
        hidden_size,
        num_heads,
        num_kv_heads,
        head_dim,
        context_length,
        norm: NormSpec {
            eps: cfg.opt_positive("rms_norm_eps")?.unwrap_or(1e-6),
            weight_offset: 0.0,
            sandwich: false,
        },
        attention: AttentionSpec {
            qkv_bias: attention_bias,
            out_bias: attention_bias,
            qk_norm: false,
            scale: 1.0 / (head_dim as f64).sqrt(),
            softcap: None,
        },
        layers: (0..num_layers)
            .map(|_| LayerSpec {
                sliding_window: None,
                rope: 0,
                ffn: dense.clone(),
            })
            .collect(),
        ropes: vec![rope],
        activation: activation(cfg)?,
        embedding_scale: None,
        final_logit_softcap: None,
        tie_word_embeddings: cfg.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        tensors: TensorLayout::Separate,
        bos_token_id: cfg.token_ids("bos_token_id")?.first().copied(),
        eos_token_ids: cfg.token_ids("eos_token_id")?,
    })
}

fn activation(cfg: Fields) -> Result<Activation> {
    let (field, name) = match cfg.opt_str("hidden_activation")? {
        Some(name) => ("hidden_activation", name),
        None => ("hidden_act", cfg.opt_str("hidden_act")?.unwrap_or("silu")),
    };
    match name {
        "silu" | "swish" => Ok(Activation::Silu),
        "gelu_pytorch_tanh" | "gelu_tanh" => Ok(Activation::GeluTanh),
        other => Err(unsupported(field, other)),
    }
}

/// Which layers use the sliding window: `layer_types` when config.json lists them, otherwise
/// `default_sliding(layer)`.
fn apply_layer_types(
    mut spec: ModelSpec,
    cfg: Fields,
    window: Option<usize>,
    default_sliding: impl Fn(usize) -> bool,
) -> Result<ModelSpec> {
    let n = spec.layers.len();
    let sliding: Vec<bool> = match cfg.opt_str_list("layer_types")? {
        Some(types) => {
            if types.len() != n {
                return Err(invalid(format!(
                    "layer_types has {} entries for {n} layers",
                    types.len()
                )));
            }
            types
                .iter()
                .map(|t| match *t {
                    "sliding_attention" => Ok(true),
                    "full_attention" => Ok(false),
                    other => Err(unsupported("layer_types[]", other)),
                })
                .collect::<Result<_>>()?
        }
        None => (0..n).map(default_sliding).collect(),
    };
    for (layer, sliding) in spec.layers.iter_mut().zip(sliding) {
        layer.sliding_window = match (sliding, window) {
            (true, Some(w)) => Some(w),
            (true, None) => {
                return Err(invalid(
                    "a layer uses sliding attention but sliding_window is not set".into(),
                ))
            }
            (false, _) => None,
        };
    }
    Ok(spec)
}

/// Mistral (and Phi-3): every layer attends within `sliding_window` when it is set.
fn sliding_everywhere(spec: ModelSpec, cfg: Fields) -> Result<ModelSpec> {
    let window = cfg.opt_dim("sliding_window")?;
    apply_layer_types(spec, cfg, window, |_| window.is_some())
}

fn moe_everywhere(mut spec: ModelSpec, moe: FfnSpec) -> ModelSpec {
    for layer in spec.layers.iter_mut() {
        layer.ffn = moe.clone();
    }
    spec
}

/// Mixtral: Mistral with a top-k routed mixture of experts (renormalised) in every layer.
fn mixtral(cfg: Fields) -> Result<ModelSpec> {
    let spec = sliding_everywhere(base("MixtralForCausalLM", cfg)?, cfg)?;
    let moe = FfnSpec::Moe {
        num_experts: cfg.dim("num_local_experts")?,
        top_k: cfg.dim("num_experts_per_tok")?,
        intermediate_size: cfg.dim("intermediate_size")?,
        renormalize: true,
    };
    check_moe(&moe)?;
    Ok(moe_everywhere(spec, moe))
}

fn check_moe(moe: &FfnSpec) -> Result<()> {
    if let FfnSpec::Moe {
        num_experts, top_k, ..
    } = moe
    {
        if top_k > num_experts {
            return Err(invalid(format!(
                "num_experts_per_tok ({top_k}) exceeds the number of experts ({num_experts})"
            )));
        }
    }
    Ok(())
}

/// Qwen 2/3 slide only when `use_sliding_window`, and then only from `max_window_layers` on.
fn qwen_windows(spec: ModelSpec, cfg: Fields) -> Result<ModelSpec> {
    let enabled = cfg.opt_bool("use_sliding_window")?.unwrap_or(false);
    let window = if enabled {
        cfg.opt_dim("sliding_window")?
    } else {
        None
    };
    let first_sliding = cfg.opt_count("max_window_layers")?.unwrap_or(0);
    apply_layer_types(spec, cfg, window, |i| {
        window.is_some() && i >= first_sliding
    })
}

/// Qwen 2: biases on q, k and v (not on the output projection).
fn qwen2(cfg: Fields) -> Result<ModelSpec> {
    let mut spec = base("Qwen2ForCausalLM", cfg)?;
    spec.attention.qkv_bias = true;
    spec.attention.out_bias = false;
    qwen_windows(spec, cfg)
}

/// Qwen 3: RMSNorm on each query and key head.
fn qwen3(architecture: &str, cfg: Fields) -> Result<ModelSpec> {
    let mut spec = base(architecture, cfg)?;
    spec.attention.qk_norm = true;
    qwen_windows(spec, cfg)
}

/// Qwen 3 MoE: Qwen 3 whose feed-forward is a routed mixture of experts, except in
/// `mlp_only_layers` and layers off the `decoder_sparse_step` grid.
fn qwen3_moe(cfg: Fields) -> Result<ModelSpec> {
    let mut spec = qwen3("Qwen3MoeForCausalLM", cfg)?;
    // transformers 4.x writes `num_experts`, 5.x `num_local_experts`.
    let num_experts = match cfg.opt_count("num_experts")? {
        Some(n) => n,
        None => cfg.opt_count("num_local_experts")?.unwrap_or(0),
    };
    let step = cfg.opt_dim("decoder_sparse_step")?.unwrap_or(1);
    let dense_only = cfg.index_list("mlp_only_layers")?;
    let moe = FfnSpec::Moe {
        num_experts,
        top_k: cfg.dim("num_experts_per_tok")?,
        intermediate_size: cfg.dim("moe_intermediate_size")?,
        renormalize: cfg.opt_bool("norm_topk_prob")?.unwrap_or(false),
    };
    check_moe(&moe)?;
    for (i, layer) in spec.layers.iter_mut().enumerate() {
        if !dense_only.contains(&i) && num_experts > 0 && (i + 1) % step == 0 {
            layer.ffn = moe.clone();
        }
    }
    Ok(spec)
}

/// Phi-3: q/k/v and gate/up stored fused; LongRoPE and partial rotary come through the rope.
fn phi3(cfg: Fields) -> Result<ModelSpec> {
    let mut spec = sliding_everywhere(base("Phi3ForCausalLM", cfg)?, cfg)?;
    spec.tensors = TensorLayout::Fused;
    Ok(spec)
}

/// What Gemma 2 and 3 share: (1 + w) RMSNorm in a pre/post "sandwich", embeddings scaled by
/// sqrt(hidden_size), GELU-tanh, a query scale from `query_pre_attn_scalar`, tied embeddings.
fn gemma(architecture: &str, cfg: Fields) -> Result<ModelSpec> {
    let mut spec = base(architecture, cfg)?;
    spec.norm.weight_offset = 1.0;
    spec.norm.sandwich = true;
    spec.embedding_scale = Some((spec.hidden_size as f64).sqrt());
    if let Some(scalar) = cfg.opt_positive("query_pre_attn_scalar")? {
        spec.attention.scale = 1.0 / scalar.sqrt();
    }
    spec.attention.softcap = cfg.opt_positive("attn_logit_softcapping")?;
    spec.final_logit_softcap = cfg.opt_positive("final_logit_softcapping")?;
    spec.tie_word_embeddings = cfg.opt_bool("tie_word_embeddings")?.unwrap_or(true);
    Ok(spec)
}

/// Gemma 2: sliding and global attention alternate, starting with sliding.
fn gemma2(cfg: Fields) -> Result<ModelSpec> {
    let spec = gemma("Gemma2ForCausalLM", cfg)?;
    let window = cfg.opt_dim("sliding_window")?;
    apply_layer_types(spec, cfg, window, |i| (i + 1) % 2 != 0)
}

/// Gemma 3 (text): q/k norms, and every `sliding_window_pattern`-th layer global with its own
/// rope (sliding layers use `rope_local_base_freq` without scaling).
fn gemma3(cfg: Fields) -> Result<ModelSpec> {
    let mut spec = gemma("Gemma3ForCausalLM", cfg)?;
    spec.attention.qk_norm = true;
    spec.ropes = vec![
        rope(cfg, RopeFor::FullAttention, spec.head_dim)?,
        rope(cfg, RopeFor::SlidingAttention, spec.head_dim)?,
    ];
    let window = cfg.opt_dim("sliding_window")?;
    let pattern = cfg.opt_dim("sliding_window_pattern")?.unwrap_or(6);
    let mut spec = apply_layer_types(spec, cfg, window, |i| (i + 1) % pattern != 0)?;
    for layer in spec.layers.iter_mut() {
        layer.rope = if layer.sliding_window.is_some() { 1 } else { 0 };
    }
    Ok(spec)
}
