//! `ModelSpec`: an architecture described as data. The one decoder in `decoder/` reads it; each
//! source format (config.json today, GGUF metadata later) maps onto it. Adding a family means
//! describing it (see `hf_config/families.rs`), not copying the forward pass.

/// How positions are encoded into queries and keys.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeSpec {
    /// Base of the inverse frequencies, `theta^(-2i/d)`.
    pub theta: f64,
    /// How many leading dimensions of each head are rotated (the whole head unless the model
    /// uses partial rotary embeddings).
    pub rotary_dim: usize,
    pub scaling: RopeScaling,
    /// Rotates adjacent pairs `(x[2i], x[2i+1])` instead of the two halves `(x[i], x[i+d/2])`:
    /// llama.cpp's "normal" rope, for GGUF llama models whose q/k rows the converter permuted
    /// from transformers' half layout to Meta's original interleaved one.
    pub interleaved: bool,
}

/// Rope frequency scaling, as in transformers' `ROPE_INIT_FUNCTIONS`.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain rope.
    None,
    /// Positions divided by `factor` (all frequencies divided by `factor`).
    Linear { factor: f64 },
    /// Dynamic NTK: once the sequence outgrows `original_max_position_embeddings`, the base
    /// grows with the sequence length of the forward pass.
    Dynamic {
        factor: f64,
        original_max_position_embeddings: usize,
    },
    /// Llama 3.1: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// Phi-3 LongRoPE: per-frequency divisors, `short_factor` while the sequence fits in
    /// `original_max_position_embeddings` and `long_factor` beyond; cos/sin scaled by
    /// `attention_factor`.
    LongRope {
        short_factor: Vec<f64>,
        long_factor: Vec<f64>,
        original_max_position_embeddings: usize,
        attention_factor: f64,
    },
    /// llama.cpp's fixed per-frequency divisors (GGUF `rope_freqs`, Phi-3's chosen long or short
    /// factors, linear scaling as a constant divisor); cos/sin scaled by `attention_factor`.
    Factors {
        divisors: Vec<f64>,
        attention_factor: f64,
    },
}

/// The nonlinearity of the feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
    /// The same GELU as llama.cpp's CPU backend computes it (the meaning of a GGUF Gemma): from
    /// a table indexed by the input rounded to f16, holding f16 outputs; exact outside ±10.
    GeluTanhF16Table,
}

/// RMSNorm settings shared by every norm of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct NormSpec {
    pub eps: f64,
    /// Added to the stored weight before use: Gemma stores `w` and scales by `1 + w`.
    pub weight_offset: f64,
    /// Gemma's "sandwich": norms after attention and after the feed-forward block too, each
    /// applied to the block's output before the residual add.
    pub sandwich: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSpec {
    /// q, k and v projections carry a bias.
    pub qkv_bias: bool,
    /// The output projection carries a bias.
    pub out_bias: bool,
    /// RMSNorm over each query and key head before rope (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Multiplies q·k: `1/sqrt(head_dim)`, or `1/sqrt(query_pre_attn_scalar)` for Gemma.
    pub scale: f64,
    /// Scores become `cap * tanh(scores / cap)` before masking (Gemma 2).
    pub softcap: Option<f64>,
}

/// The feed-forward block of one layer.
#[derive(Debug, Clone, PartialEq)]
pub enum FfnSpec {
    /// `down(act(gate(x)) * up(x))`.
    Dense {
        intermediate_size: usize,
        bias: bool,
    },
    /// A router picks `top_k` of `num_experts` dense experts per token (softmax over all
    /// experts, then top-k, then optionally renormalised to sum to one).
    Moe {
        num_experts: usize,
        top_k: usize,
        intermediate_size: usize,
        renormalize: bool,
    },
}

/// What differs between layers of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    /// Attend only to the last `w` positions (the query's included), or to all of them.
    pub sliding_window: Option<usize>,
    /// Index into `ModelSpec::ropes`.
    pub rope: usize,
    pub ffn: FfnSpec,
}

/// How the checkpoint names and packs its tensors, where families differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorLayout {
    /// Separate q/k/v and gate/up projections (`model.layers.N.self_attn.q_proj`, ...).
    Separate,
    /// Phi-3: `self_attn.qkv_proj` and `mlp.gate_up_proj` hold the projections stacked by rows.
    Fused,
}

/// Everything the decoder needs to know about an architecture and its sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The name users know it by, e.g. `LlamaForCausalLM`.
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// The longest sequence (prompt + generated) the model accepts.
    pub context_length: usize,
    pub norm: NormSpec,
    pub attention: AttentionSpec,
    /// One entry per layer.
    pub layers: Vec<LayerSpec>,
    /// The rope variants the layers use (Gemma 3: one for global, one for sliding layers).
    pub ropes: Vec<RopeSpec>,
    pub activation: Activation,
    /// Token embeddings are multiplied by this (Gemma: `sqrt(hidden_size)`).
    pub embedding_scale: Option<f64>,
    /// Final logits become `cap * tanh(logits / cap)` (Gemma 2).
    pub final_logit_softcap: Option<f64>,
    /// The output projection reuses the token embedding matrix.
    pub tie_word_embeddings: bool,
    pub tensors: TensorLayout,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl ModelSpec {
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
}
