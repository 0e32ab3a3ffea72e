//! The one decoder: token embedding, one block per layer (attention + feed-forward, each with its
//! norms and residual), final norm and the output projection, built from a `ModelSpec` and the
//! checkpoint's weights. Architectures differ only through the spec; there is no per-family
//! forward pass.

mod attention;
mod linear;
mod load;
mod mlp;
mod moe;
mod norm;
mod rope;

use crate::error::Result;
use crate::kv_cache::SequenceCache;
use crate::spec::ModelSpec;
use crate::weights::{Matrix, WeightSource};
use attention::{attention_mask, Attention};
use candle_core::{DType, Device, Tensor};
use linear::Linear;
use mlp::Mlp;
use moe::Moe;
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

enum FeedForward {
    Dense(Mlp),
    Moe(Moe),
}

impl FeedForward {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            FeedForward::Dense(mlp) => mlp.forward(x),
            FeedForward::Moe(moe) => moe.forward(x),
        }
    }
}

/// One layer. Pre-norm: `x + attn(norm(x))`, then `x + ffn(norm(x))`; with Gemma's sandwich
/// norms each block's output is normed again before the residual add.
struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    post_attn_norm: Option<RmsNorm>,
    ffn_norm: RmsNorm,
    ffn: FeedForward,
    post_ffn_norm: Option<RmsNorm>,
    /// Index into `Decoder::ropes`.
    rope: usize,
}

/// Most tokens one pass through the layers takes: a longer prompt runs in micro-batches of this
/// many (as llama.cpp's ubatch), each attending to the positions cached before it, with the same
/// logits. It bounds the pass's f32 intermediates ([tokens, intermediate] per MLP tensor, the
/// attention scores): Qwen2.5-0.5B's 512-token prompt peaks 50 MB lower in two batches, and
/// runs faster per token.
const MICRO_BATCH: usize = 256;

pub struct Decoder {
    spec: ModelSpec,
    /// [vocab, hidden]
    embed: Matrix,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    ropes: Vec<Rope>,
    device: Device,
}

impl Decoder {
    /// Builds the decoder, checking every tensor's presence and shape against `spec`.
    pub fn load(spec: &ModelSpec, weights: &dyn WeightSource, device: &Device) -> Result<Self> {
        load::decoder(spec, weights, device)
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Whether a sequence with `cached` positions in its cache must be recomputed from scratch
    /// before growing to `seq_len` positions (see `Rope::invalidates_cache`).
    pub fn cache_outdated(&self, cached: usize, seq_len: usize) -> bool {
        cached > 0
            && self
                .ropes
                .iter()
                .any(|r| r.invalidates_cache(cached, seq_len))
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
        self.forward_in_batches(tokens, cache, logits, MICRO_BATCH)
    }

    /// [`Decoder::forward`] with at most `batch` tokens per pass through the layers (tests
    /// compare batch sizes: the logits are those of one pass).
    pub fn forward_in_batches(
        &self,
        tokens: &[u32],
        cache: &mut SequenceCache,
        logits: Logits,
        batch: usize,
    ) -> Result<Tensor> {
        let pass_end = cache.len() + tokens.len();
        if tokens.len() <= batch {
            let hidden = self.layers(tokens, cache, pass_end)?;
            return self.logits(hidden, logits);
        }
        let batches = tokens.chunks(batch.max(1));
        let count = batches.len();
        let mut outputs = Vec::new();
        for (i, batch) in batches.enumerate() {
            let hidden = self.layers(batch, cache, pass_end)?;
            // Where only the last position's logits are wanted, the earlier batches only fill
            // the cache (no output projection: for Qwen2.5-0.5B F16, 272 MB read for nothing).
            if logits == Logits::All || i + 1 == count {
                outputs.push(self.logits(hidden, logits)?);
            }
        }
        match logits {
            Logits::All => Ok(Tensor::cat(&outputs, 0)?),
            Logits::Last => Ok(outputs
                .pop()
                .unwrap_or_else(|| unreachable!("the last batch has logits"))),
        }
    }

    /// One pass through the layers for `tokens`, part of a pass that ends at `pass_end`
    /// positions. Returns the last layer's output, [1, seq, hidden].
    fn layers(&self, tokens: &[u32], cache: &mut SequenceCache, pass_end: usize) -> Result<Tensor> {
        let seq = tokens.len();
        let start = cache.len();
        // [1, seq, hidden]
        let mut x = self.embed.embed(tokens, &self.device)?.unsqueeze(0)?;
        if let Some(scale) = self.spec.embedding_scale {
            x = (x * scale)?;
        }
        let ropes = self
            .ropes
            .iter()
            .map(|r| r.tables(start, seq, pass_end, &self.device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        // One mask per distinct window among the layers; none for a single new token.
        let mut masks: Vec<(Option<usize>, Tensor)> = vec![];
        if seq > 1 {
            for layer in &self.spec.layers {
                if !masks.iter().any(|(w, _)| *w == layer.sliding_window) {
                    let mask = attention_mask(seq, start, layer.sliding_window, &self.device)?;
                    masks.push((layer.sliding_window, mask.to_dtype(x.dtype())?));
                }
            }
        }
        for ((block, layer_cache), layer) in self
            .blocks
            .iter()
            .zip(cache.layers.iter_mut())
            .zip(&self.spec.layers)
        {
            let mask = masks
                .iter()
                .find(|(w, _)| *w == layer.sliding_window)
                .map(|(_, m)| m);
            let mut h = block.attn.forward(
                &block.attn_norm.forward(&x)?,
                &ropes[block.rope],
                mask,
                layer_cache,
            )?;
            if let Some(norm) = &block.post_attn_norm {
                h = norm.forward(&h)?;
            }
            x = (x + h)?;
            let mut h = block.ffn.forward(&block.ffn_norm.forward(&x)?)?;
            if let Some(norm) = &block.post_ffn_norm {
                h = norm.forward(&h)?;
            }
            x = (x + h)?;
        }
        cache.advance(seq);
        Ok(x)
    }

    /// The logits of `hidden` ([1, seq, hidden], the layers' output): every position's, or the
    /// last one's.
    fn logits(&self, hidden: Tensor, logits: Logits) -> Result<Tensor> {
        let x = match logits {
            Logits::Last => hidden.narrow(1, hidden.dim(1)? - 1, 1)?,
            Logits::All => hidden,
        };
        let mut out = self
            .lm_head
            .forward(&self.norm.forward(&x)?)?
            .squeeze(0)?
            .to_dtype(DType::F32)?;
        if let Some(cap) = self.spec.final_logit_softcap {
            out = ((out / cap)?.tanh()? * cap)?;
        }
        Ok(out)
    }
}
