//! The one decoder: token embedding, `num_layers` pre-norm blocks (attention + gated MLP), final
//! norm and the output projection, built from a `ModelSpec` and the checkpoint's weights.
//! Architectures differ only through the spec; there is no per-family forward pass.

mod attention;
mod mlp;
mod norm;
mod rope;

use crate::error::Result;
use crate::kv_cache::SequenceCache;
use crate::spec::ModelSpec;
use crate::weights::Weights;
use attention::{causal_mask, Attention};
use candle_core::{Device, Module, Tensor};
use candle_nn::{Embedding, Linear};
use mlp::Mlp;
use norm::RmsNorm;
use rope::Rope;

/// Which positions' logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position: [1, vocab].
    Last,
    /// Every position of the pass: [seq, vocab].
    All,
}

struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    mlp_norm: RmsNorm,
    mlp: Mlp,
}

pub struct Decoder {
    spec: ModelSpec,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    device: Device,
}

impl Decoder {
    /// Builds the decoder, checking every tensor's presence and shape against `spec`.
    /// Tensor names follow transformers (`model.layers.{i}.self_attn.q_proj.weight`, ...).
    pub fn load(spec: &ModelSpec, weights: &Weights, device: &Device) -> Result<Self> {
        let (hidden, hd, inter) = (spec.hidden_size, spec.head_dim, spec.intermediate_size);
        let linear = |name: &str, out_dim: usize, in_dim: usize, bias: bool| -> Result<Linear> {
            let w = weights.get(&format!("{name}.weight"), &[out_dim, in_dim])?;
            let b = if bias {
                Some(weights.get(&format!("{name}.bias"), &[out_dim])?)
            } else {
                None
            };
            Ok(Linear::new(w, b))
        };
        let norm = |name: &str| -> Result<RmsNorm> {
            Ok(RmsNorm::new(
                weights.get(&format!("{name}.weight"), &[hidden])?,
                spec.rms_norm_eps,
            ))
        };
        let embed_weight = weights.get("model.embed_tokens.weight", &[spec.vocab_size, hidden])?;
        let mut blocks = Vec::with_capacity(spec.num_layers);
        for i in 0..spec.num_layers {
            let p = format!("model.layers.{i}");
            let ab = spec.attention_bias;
            blocks.push(Block {
                attn_norm: norm(&format!("{p}.input_layernorm"))?,
                attn: Attention {
                    q: linear(
                        &format!("{p}.self_attn.q_proj"),
                        spec.num_heads * hd,
                        hidden,
                        ab,
                    )?,
                    k: linear(
                        &format!("{p}.self_attn.k_proj"),
                        spec.num_kv_heads * hd,
                        hidden,
                        ab,
                    )?,
                    v: linear(
                        &format!("{p}.self_attn.v_proj"),
                        spec.num_kv_heads * hd,
                        hidden,
                        ab,
                    )?,
                    o: linear(
                        &format!("{p}.self_attn.o_proj"),
                        hidden,
                        spec.num_heads * hd,
                        ab,
                    )?,
                    num_heads: spec.num_heads,
                    num_kv_heads: spec.num_kv_heads,
                    head_dim: hd,
                },
                mlp_norm: norm(&format!("{p}.post_attention_layernorm"))?,
                mlp: Mlp {
                    gate: linear(&format!("{p}.mlp.gate_proj"), inter, hidden, spec.mlp_bias)?,
                    up: linear(&format!("{p}.mlp.up_proj"), inter, hidden, spec.mlp_bias)?,
                    down: linear(&format!("{p}.mlp.down_proj"), hidden, inter, spec.mlp_bias)?,
                    activation: spec.activation,
                },
            });
        }
        // Tied checkpoints may still carry an lm_head copy; the config decides which is used.
        let lm_head = if spec.tie_word_embeddings {
            Linear::new(embed_weight.clone(), None)
        } else {
            linear("lm_head", spec.vocab_size, hidden, false)?
        };
        Ok(Decoder {
            embed: Embedding::new(embed_weight, hidden),
            blocks,
            norm: norm("model.norm")?,
            lm_head,
            rope: Rope::new(&spec.rope),
            spec: spec.clone(),
            device: device.clone(),
        })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Runs `tokens` (the next positions of the sequence whose state is `cache`) through the
    /// model, appending their keys and values to `cache`. Returns f32 logits, [1, vocab] for
    /// `Logits::Last` or [tokens.len(), vocab] for `Logits::All`.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut SequenceCache,
        logits: Logits,
    ) -> Result<Tensor> {
        let seq = tokens.len();
        let start = cache.len();
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        // [1, seq, hidden]
        let mut x = self.embed.forward(&ids)?;
        let (cos, sin) = self.rope.cos_sin(start, seq, &self.device)?;
        let mask = if seq > 1 {
            Some(causal_mask(seq, start, &self.device)?.to_dtype(x.dtype())?)
        } else {
            None
        };
        for (block, layer_cache) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let h = block.attn.forward(
                &block.attn_norm.forward(&x)?,
                &cos,
                &sin,
                mask.as_ref(),
                layer_cache,
            )?;
            x = (x + h)?;
            let h = block.mlp.forward(&block.mlp_norm.forward(&x)?)?;
            x = (x + h)?;
        }
        cache.advance(seq);
        if logits == Logits::Last {
            x = x.narrow(1, seq - 1, 1)?;
        }
        let out = self.lm_head.forward(&self.norm.forward(&x)?)?;
        Ok(out.squeeze(0)?.to_dtype(candle_core::DType::F32)?)
    }
}
