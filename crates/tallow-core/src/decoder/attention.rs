//! Causal self-attention with grouped-query heads, rope, and the sequence's KV cache.

use crate::kv_cache::LayerCache;
use candle_core::{Module, Result, Tensor};
use candle_nn::Linear;

pub struct Attention {
    /// [n_heads * head_dim, hidden]
    pub q: Linear,
    /// [n_kv_heads * head_dim, hidden]
    pub k: Linear,
    pub v: Linear,
    /// [hidden, n_heads * head_dim]
    pub o: Linear,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    /// x: [1, seq, hidden]; cos/sin: [seq, head_dim / 2] for this pass's positions;
    /// mask: [seq, cached + seq] additive (None for a single new token). Returns [1, seq, hidden].
    pub fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut LayerCache,
    ) -> Result<Tensor> {
        let (b, seq, _) = x.dims3()?;
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        // [b, heads, seq, head_dim]
        let heads = |t: Tensor, n: usize| t.reshape((b, seq, n, hd))?.transpose(1, 2)?.contiguous();
        let q = heads(self.q.forward(x)?, h)?;
        let k = heads(self.k.forward(x)?, kvh)?;
        let v = heads(self.v.forward(x)?, kvh)?;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        // [b, kv_heads, total, head_dim]
        let (k, v) = cache.append(&k, &v)?;
        let total = k.dim(2)?;

        // Grouped-query attention without repeating K/V: the `group` query heads that share a
        // KV head are stacked along the sequence axis. q: [b, kv_heads, group * seq, head_dim]
        let group = h / kvh;
        let q = q.reshape((b, kvh, group * seq, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        // [b, kv_heads, group * seq, total]
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = match mask {
            Some(mask) => scores
                .reshape((b, kvh, group, seq, total))?
                .broadcast_add(mask)?
                .reshape((b, kvh, group * seq, total))?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        // [b, kv_heads, group * seq, head_dim] → [b, seq, heads * head_dim]
        let out = probs.matmul(&v.contiguous()?)?;
        let out = out
            .reshape((b, h, seq, hd))?
            .transpose(1, 2)?
            .reshape((b, seq, h * hd))?;
        self.o.forward(&out)
    }
}

/// Additive causal mask [seq, cached + seq]: query i (at position cached + i) sees keys 0..=cached + i.
pub fn causal_mask(seq: usize, cached: usize, device: &candle_core::Device) -> Result<Tensor> {
    let total = cached + seq;
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > cached + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (seq, total), device)
}
