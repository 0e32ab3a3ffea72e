//! `ModelSpec`: an architecture described as data. The one decoder in `decoder/` reads it; each
//! source format (config.json today, GGUF metadata later) maps onto it. Adding a family means
//! describing it here and in its config mapping, not copying the forward pass.

/// How positions are encoded into queries and keys.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeSpec {
    /// Base of the inverse frequencies, `theta^(-2i/d)`.
    pub theta: f64,
    /// How many leading dimensions of each head are rotated (the whole head for Llama).
    pub rotary_dim: usize,
    pub scaling: RopeScaling,
}

/// Rope frequency scaling, as in transformers' `ROPE_INIT_FUNCTIONS`.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain rope.
    None,
    /// Positions divided by `factor` (all frequencies divided by `factor`).
    Linear { factor: f64 },
    /// Llama 3.1: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

/// The nonlinearity of the feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
}

/// Everything the decoder needs to know about an architecture and its sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The name users know it by, e.g. `LlamaForCausalLM`.
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// The longest sequence (prompt + generated) the model accepts.
    pub context_length: usize,
    pub rms_norm_eps: f64,
    pub rope: RopeSpec,
    /// q/k/v/o projections carry a bias.
    pub attention_bias: bool,
    /// gate/up/down projections carry a bias.
    pub mlp_bias: bool,
    pub activation: Activation,
    /// The output projection reuses the token embedding matrix.
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}
