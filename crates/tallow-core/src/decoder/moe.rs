//! A routed mixture of experts: a linear router scores every expert per token; the token goes
//! through its `top_k` best experts and their outputs are summed, weighted by the router's
//! softmax probabilities (renormalised over the chosen experts when the family says so).

use super::linear::Linear;
use super::mlp::Mlp;
use candle_core::{Result, Tensor};

pub struct Moe {
    /// [num_experts, hidden]
    pub router: Linear,
    pub experts: Vec<Mlp>,
    pub top_k: usize,
    pub renormalize: bool,
}

impl Moe {
    /// x: [batch, seq, hidden] → [batch, seq, hidden]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, seq, hidden) = x.dims3()?;
        // [tokens, hidden]
        let tokens = x.reshape((b * seq, hidden))?;
        // [tokens, num_experts]
        let scores = self
            .router
            .forward(&tokens)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec2::<f32>()?;
        // Per expert: the tokens routed to it and their weights.
        let mut routed: Vec<(Vec<u32>, Vec<f32>)> = vec![(vec![], vec![]); self.experts.len()];
        for (t, logits) in scores.iter().enumerate() {
            for (expert, weight) in self.route(logits) {
                routed[expert].0.push(t as u32);
                routed[expert].1.push(weight);
            }
        }
        let mut out = tokens.zeros_like()?;
        for (expert, (ids, weights)) in self.experts.iter().zip(routed) {
            if ids.is_empty() {
                continue;
            }
            let n = ids.len();
            let ids = Tensor::from_vec(ids, n, x.device())?;
            let weights = Tensor::from_vec(weights, (n, 1), x.device())?.to_dtype(x.dtype())?;
            // [n, hidden]
            let y = expert
                .forward(&tokens.index_select(&ids, 0)?)?
                .broadcast_mul(&weights)?;
            out = out.index_add(&ids, &y, 0)?;
        }
        out.reshape((b, seq, hidden))
    }

    /// The chosen experts of one token and their weights: softmax over all experts, the
    /// `top_k` most probable (lower index first on ties, as torch.topk), optionally renormalised.
    fn route(&self, logits: &[f32]) -> Vec<(usize, f32)> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let total: f32 = exp.iter().sum();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| exp[b].total_cmp(&exp[a]).then(a.cmp(&b)));
        let chosen: Vec<(usize, f32)> = order[..self.top_k]
            .iter()
            .map(|&e| (e, exp[e] / total))
            .collect();
        if !self.renormalize {
            return chosen;
        }
        let sum: f32 = chosen.iter().map(|c| c.1).sum();
        chosen.into_iter().map(|(e, w)| (e, w / sum)).collect()
    }
}
