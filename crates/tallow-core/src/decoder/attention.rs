//! Causal self-attention with grouped-query heads, rope, optional q/k norms, soft-capping and a
//! sliding window, over the sequence's KV cache.

use super::linear::Linear;
use super::norm::RmsNorm;
use super::rope::RopeTables;
use crate::cpu_values::{all_cpu_f32, with_f32_values};
use crate::kv_cache::LayerCache;
use candle_core::{CpuStorage, Device, InplaceOp1, Layout, Result, Tensor};

pub struct Attention {
    /// [n_heads * head_dim, hidden]
    pub q: Linear,
    /// [n_kv_heads * head_dim, hidden]
    pub k: Linear,
    pub v: Linear,
    /// [hidden, n_heads * head_dim]
    pub o: Linear,
    /// Per-head norms of queries and keys, over head_dim.
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f64,
    pub softcap: Option<f64>,
    /// Attend only to the last `w` positions (the query's own included).
    pub sliding_window: Option<usize>,
}

impl Attention {
    /// x: [1, seq, hidden]; `rope` holds this pass's positions; `mask`: [seq, cached + seq]
    /// additive, this layer's (None for a single new token). Returns [1, seq, hidden].
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &RopeTables,
        mask: Option<&Tensor>,
        cache: &mut LayerCache,
    ) -> Result<Tensor> {
        let (b, seq, _) = x.dims3()?;
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        // [b, heads, seq, head_dim], normed per head before rope where the family asks.
        let heads = |t: Tensor, n: usize, norm: &Option<RmsNorm>| -> Result<Tensor> {
            let t = t.reshape((b, seq, n, hd))?;
            let t = match norm {
                Some(norm) => norm.forward(&t)?,
                None => t,
            };
            t.transpose(1, 2)?.contiguous()
        };
        let q = rope.apply(&heads(self.q.forward(x)?, h, &self.q_norm)?)?;
        let k = rope.apply(&heads(self.k.forward(x)?, kvh, &self.k_norm)?)?;
        let v = heads(self.v.forward(x)?, kvh, &None)?;
        if b == 1 && seq == 1 && mask.is_none() && all_cpu_f32(&[&q, &k, &v]) {
            return self.o.forward(&self.attend_one_cpu(&q, &k, &v, cache)?);
        }
        // [b, kv_heads, total, head_dim]
        let (mut k, mut v) = cache.append(&k, &v)?;
        if let (Some(w), None) = (self.sliding_window, mask) {
            // A single new token sees the last `w` positions: drop the older ones instead of masking.
            let total = k.dim(2)?;
            if total > w {
                k = k.narrow(2, total - w, w)?;
                v = v.narrow(2, total - w, w)?;
            }
        }
        let total = k.dim(2)?;

        // Grouped-query attention without repeating K/V: the `group` query heads that share a
        // KV head are stacked along the sequence axis. q: [b, kv_heads, group * seq, head_dim]
        let group = h / kvh;
        let q = q.reshape((b, kvh, group * seq, hd))?;
        // q, k, v of `heads` KV heads → [b, heads, group * seq, head_dim].
        let attend = |q: &Tensor, k: &Tensor, v: &Tensor| -> Result<Tensor> {
            let heads = q.dim(1)?;
            // [b, heads, group * seq, total]
            let scores = q.matmul(&k.t()?)?;
            let probs = if b == 1 && mask.is_some() && all_cpu_f32(&[&scores]) {
                self.causal_softmax_cpu(scores, seq, total)?
            } else {
                let mut scores = (scores * self.scale)?;
                if let Some(cap) = self.softcap {
                    scores = ((scores / cap)?.tanh()? * cap)?;
                }
                if let Some(mask) = mask {
                    scores = scores
                        .reshape((b, heads, group, seq, total))?
                        .broadcast_add(mask)?
                        .reshape((b, heads, group * seq, total))?;
                }
                candle_nn::ops::softmax_last_dim(&scores)?
            };
            probs.matmul(&v.contiguous()?)
        };
        // A prompt's scores for all heads at once are large (Llama-3.2-1B, 512 tokens: 32 MiB
        // per intermediate, four of them), so prompts go one KV head at a time: the same
        // products, an eighth of the peak memory.
        let out = if seq == 1 {
            attend(&q, &k, &v)?
        } else {
            let per_head = (0..kvh)
                .map(|i| {
                    attend(
                        &q.narrow(1, i, 1)?,
                        &k.narrow(1, i, 1)?,
                        &v.narrow(1, i, 1)?,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            Tensor::cat(&per_head, 1)?
        };
        // [b, kv_heads, group * seq, head_dim] → [b, seq, heads * head_dim]
        let out = out
            .reshape((b, h, seq, hd))?
            .transpose(1, 2)?
            .reshape((b, seq, h * hd))?;
        self.o.forward(&out)
    }
}

impl Attention {
    /// Generation on the CPU: appends the new position's `k`, `v` ([1, kv_heads, 1, head_dim])
    /// to the cache, then attends `q` ([1, heads, 1, head_dim]) over the cache in place with
    /// tallow-kernels (one pass per head instead of a dozen tensor operations). Returns
    /// [1, 1, heads * head_dim].
    fn attend_one_cpu(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut LayerCache,
    ) -> Result<Tensor> {
        cache.append(k, v)?;
        let (k_buffer, v_buffer, total) = cache
            .buffers()
            .unwrap_or_else(|| unreachable!("a position was just appended"));
        // The last `w` positions with a sliding window (the new one included).
        let first = self.sliding_window.map_or(0, |w| total.saturating_sub(w));
        let layer = tallow_kernels::attention::Attention {
            heads: self.num_heads,
            kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            kv_head_stride: k_buffer.dim(2)? * self.head_dim,
            scores: self.scores(),
        };
        let mut out = vec![0f32; self.num_heads * self.head_dim];
        with_f32_values(q, |q| {
            with_f32_values(k_buffer, |k| {
                with_f32_values(v_buffer, |v| {
                    layer.attend_one(q, k, v, first..total, &mut out)
                })
            })
        })???;
        Tensor::from_vec(out, (1, 1, self.num_heads * self.head_dim), q.device())
    }

    /// A prompt's probabilities on the CPU: `scores` ([1, heads, group * seq, total] dot
    /// products of the `seq` new queries with every cached key) scaled, soft-capped and
    /// softmaxed over the causal window in place (tallow-kernels, no mask tensor).
    fn causal_softmax_cpu(&self, scores: Tensor, seq: usize, total: usize) -> Result<Tensor> {
        scores.inplace_op1(&CausalSoftmax {
            scores: self.scores(),
            seq,
            total,
            window: self.sliding_window,
        })?;
        Ok(scores)
    }

    /// How this layer's dot products become scores, for tallow-kernels.
    fn scores(&self) -> tallow_kernels::attention::Scores {
        tallow_kernels::attention::Scores {
            scale: self.scale as f32,
            softcap: self.softcap.map(|cap| cap as f32),
        }
    }
}

/// [`tallow_kernels::attention::Scores::causal_softmax`] as an in-place op on a contiguous
/// scores tensor (the product's fresh output: no copy).
struct CausalSoftmax {
    scores: tallow_kernels::attention::Scores,
    seq: usize,
    total: usize,
    window: Option<usize>,
}

impl InplaceOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let (CpuStorage::F32(values), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("causal softmax: contiguous f32 scores expected");
        };
        self.scores
            .causal_softmax(&mut values[start..end], self.seq, self.total, self.window);
        Ok(())
    }
}

/// Additive mask [seq, cached + seq]: query i (at position cached + i) sees key j when
/// j ≤ cached + i and, with a window w, j > cached + i - w (as transformers' sliding window).
pub fn attention_mask(
    seq: usize,
    cached: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let total = cached + seq;
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| {
            let pos = cached + i;
            (0..total).map(move |j| {
                let visible = j <= pos && window.is_none_or(|w| j + w > pos);
                if visible {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (seq, total), device)
}
