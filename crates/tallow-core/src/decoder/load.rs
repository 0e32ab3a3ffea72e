//! Building the decoder from checkpoint tensors. Names follow transformers
//! (`model.layers.{i}.self_attn.q_proj.weight`, ...); where families store tensors differently
//! (Phi-3's fused projections, the expert layouts of MoE checkpoints) the difference is handled
//! here, so the forward pass never sees it. GGUF files answer to the same names (see
//! `weights::gguf`).

use super::attention::Attention;
use super::linear::Linear;
use super::mlp::Mlp;
use super::moe::Moe;
use super::norm::RmsNorm;
use super::rope::Rope;
use super::{Block, Decoder, FeedForward};
use crate::error::Result;
use crate::spec::{FfnSpec, ModelSpec, TensorLayout};
use crate::weights::WeightSource;
use candle_core::{Device, Tensor};

struct Loader<'a> {
    spec: &'a ModelSpec,
    weights: &'a dyn WeightSource,
}

impl Loader<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.weights.tensor(name, shape)
    }

    /// `{name}.weight` [out, in] and, with `bias`, `{name}.bias` [out].
    fn linear(&self, name: &str, out_dim: usize, in_dim: usize, bias: bool) -> Result<Linear> {
        let w = self
            .weights
            .matrix(&format!("{name}.weight"), out_dim, in_dim)?;
        let b = if bias {
            Some(self.tensor(&format!("{name}.bias"), &[out_dim])?)
        } else {
            None
        };
        Ok(Linear::new(w, b))
    }

    fn norm(&self, name: &str, dim: usize) -> Result<RmsNorm> {
        Ok(RmsNorm::new(
            self.tensor(&format!("{name}.weight"), &[dim])?,
            &self.spec.norm,
        )?)
    }

    fn attention(&self, p: &str, sliding_window: Option<usize>) -> Result<Attention> {
        let s = self.spec;
        let (h, kvh, hd, hidden) = (s.num_heads, s.num_kv_heads, s.head_dim, s.hidden_size);
        let bias = s.attention.qkv_bias;
        let (q, k, v) = match s.tensors {
            TensorLayout::Separate => (
                self.linear(&format!("{p}.self_attn.q_proj"), h * hd, hidden, bias)?,
                self.linear(&format!("{p}.self_attn.k_proj"), kvh * hd, hidden, bias)?,
                self.linear(&format!("{p}.self_attn.v_proj"), kvh * hd, hidden, bias)?,
            ),
            TensorLayout::Fused => {
                // qkv_proj: [(heads + 2 * kv_heads) * head_dim, hidden], q rows then k then v.
                let qkv = self.linear(
                    &format!("{p}.self_attn.qkv_proj"),
                    (h + 2 * kvh) * hd,
                    hidden,
                    bias,
                )?;
                let [q, k, v] = qkv.split_rows([h * hd, kvh * hd, kvh * hd])?;
                (q, k, v)
            }
        };
        let qk_norm = |which: &str| -> Result<Option<RmsNorm>> {
            if s.attention.qk_norm {
                Ok(Some(self.norm(&format!("{p}.self_attn.{which}"), hd)?))
            } else {
                Ok(None)
            }
        };
        Ok(Attention {
            q,
            k,
            v,
            o: self.linear(
                &format!("{p}.self_attn.o_proj"),
                hidden,
                h * hd,
                s.attention.out_bias,
            )?,
            q_norm: qk_norm("q_norm")?,
            k_norm: qk_norm("k_norm")?,
            num_heads: h,
            num_kv_heads: kvh,
            head_dim: hd,
            scale: s.attention.scale,
            softcap: s.attention.softcap,
            sliding_window,
        })
    }

    /// A gated MLP whose tensors are under `p` (`{p}.gate_proj`, ... or `{p}.gate_up_proj`).
    fn dense(&self, p: &str, intermediate: usize, bias: bool) -> Result<Mlp> {
        let hidden = self.spec.hidden_size;
        let (gate, up) = match self.spec.tensors {
            TensorLayout::Separate => (
                self.linear(&format!("{p}.gate_proj"), intermediate, hidden, bias)?,
                self.linear(&format!("{p}.up_proj"), intermediate, hidden, bias)?,
            ),
            TensorLayout::Fused => {
                // gate_up_proj: [2 * intermediate, hidden], gate rows first.
                let gate_up =
                    self.linear(&format!("{p}.gate_up_proj"), 2 * intermediate, hidden, bias)?;
                let [gate, up] = gate_up.split_rows([intermediate, intermediate])?;
                (gate, up)
            }
        };
        Ok(Mlp {
            gate,
            up,
            down: self.linear(&format!("{p}.down_proj"), hidden, intermediate, bias)?,
            activation: self.spec.activation,
        })
    }

    /// A mixture of experts, from whichever of the layouts checkpoints use:
    /// transformers 5's stacked `mlp.experts.gate_up_proj` [experts, 2 * inter, hidden] and
    /// `mlp.experts.down_proj` [experts, hidden, inter]; stacked separate `mlp.experts.gate_proj`,
    /// `up_proj` [experts, inter, hidden] and `down_proj` (GGUF's merged `ffn_*_exps`); per-expert
    /// `mlp.experts.{e}.gate_proj` (Qwen MoE); or Mixtral's `block_sparse_moe.experts.{e}.w1/w3/w2`
    /// (gate/up/down).
    fn moe(
        &self,
        p: &str,
        num_experts: usize,
        top_k: usize,
        inter: usize,
        renormalize: bool,
    ) -> Result<Moe> {
        let hidden = self.spec.hidden_size;
        let activation = self.spec.activation;
        let w = self.weights;
        let stacked = format!("{p}.mlp.experts");
        let mixtral = format!("{p}.block_sparse_moe");
        let expert = |gate: Linear, up: Linear, down: Linear| Mlp {
            gate,
            up,
            down,
            activation,
        };
        let bare = |m| Linear::new(m, None);
        let (root, experts) = if w.contains(&format!("{stacked}.gate_up_proj")) {
            let gate_up = w.experts(
                &format!("{stacked}.gate_up_proj"),
                num_experts,
                2 * inter,
                hidden,
            )?;
            let down = w.experts(&format!("{stacked}.down_proj"), num_experts, hidden, inter)?;
            let experts = gate_up
                .into_iter()
                .zip(down)
                .map(|(gate_up, down)| -> Result<Mlp> {
                    let [gate, up] = bare(gate_up).split_rows([inter, inter])?;
                    Ok(expert(gate, up, bare(down)))
                })
                .collect::<Result<Vec<_>>>()?;
            (format!("{p}.mlp"), experts)
        } else if w.contains(&format!("{stacked}.gate_proj")) {
            let gate = w.experts(&format!("{stacked}.gate_proj"), num_experts, inter, hidden)?;
            let up = w.experts(&format!("{stacked}.up_proj"), num_experts, inter, hidden)?;
            let down = w.experts(&format!("{stacked}.down_proj"), num_experts, hidden, inter)?;
            let experts = gate
                .into_iter()
                .zip(up)
                .zip(down)
                .map(|((g, u), d)| expert(bare(g), bare(u), bare(d)))
                .collect();
            (format!("{p}.mlp"), experts)
        } else if w.contains(&format!("{mixtral}.gate.weight")) {
            let experts = (0..num_experts)
                .map(|e| -> Result<Mlp> {
                    let ep = format!("{mixtral}.experts.{e}");
                    Ok(expert(
                        self.linear(&format!("{ep}.w1"), inter, hidden, false)?,
                        self.linear(&format!("{ep}.w3"), inter, hidden, false)?,
                        self.linear(&format!("{ep}.w2"), hidden, inter, false)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            (mixtral, experts)
        } else {
            let experts = (0..num_experts)
                .map(|e| self.dense(&format!("{stacked}.{e}"), inter, false))
                .collect::<Result<Vec<_>>>()?;
            (format!("{p}.mlp"), experts)
        };
        Ok(Moe {
            // Routers stay dense under quantization, as in llama.cpp.
            router: bare(w.dense_matrix(&format!("{root}.gate.weight"), num_experts, hidden)?),
            experts,
            top_k,
            renormalize,
        })
    }
}

pub fn decoder(spec: &ModelSpec, weights: &dyn WeightSource, device: &Device) -> Result<Decoder> {
    let l = Loader { spec, weights };
    let hidden = spec.hidden_size;
    let embed = weights.matrix("model.embed_tokens.weight", spec.vocab_size, hidden)?;
    let mut blocks = Vec::with_capacity(spec.num_layers());
    for (i, layer) in spec.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        let (post_attn_norm, ffn_norm, post_ffn_norm) = if spec.norm.sandwich {
            (
                Some(l.norm(&format!("{p}.post_attention_layernorm"), hidden)?),
                l.norm(&format!("{p}.pre_feedforward_layernorm"), hidden)?,
                Some(l.norm(&format!("{p}.post_feedforward_layernorm"), hidden)?),
            )
        } else {
            (
                None,
                l.norm(&format!("{p}.post_attention_layernorm"), hidden)?,
                None,
            )
        };
        let ffn = match layer.ffn {
            FfnSpec::Dense {
                intermediate_size,
                bias,
            } => FeedForward::Dense(l.dense(&format!("{p}.mlp"), intermediate_size, bias)?),
            FfnSpec::Moe {
                num_experts,
                top_k,
                intermediate_size,
                renormalize,
            } => FeedForward::Moe(l.moe(&p, num_experts, top_k, intermediate_size, renormalize)?),
        };
        blocks.push(Block {
            attn_norm: l.norm(&format!("{p}.input_layernorm"), hidden)?,
            attn: l.attention(&p, layer.sliding_window)?,
            post_attn_norm,
            ffn_norm,
            ffn,
            post_ffn_norm,
            rope: layer.rope,
        });
    }
    // Tied checkpoints may still carry an lm_head copy; the config decides which is used.
    let lm_head = if spec.tie_word_embeddings {
        Linear::new(embed.clone(), None)
    } else {
        l.linear(
            "lm_head",
            spec.vocab_size,
            hidden,
            weights.contains("lm_head.bias"),
        )?
    };
    Ok(Decoder {
        embed,
        blocks,
        norm: l.norm("model.norm", hidden)?,
        lm_head,
        ropes: spec.ropes.iter().map(Rope::new).collect(),
        spec: spec.clone(),
        device: device.clone(),
    })
}
