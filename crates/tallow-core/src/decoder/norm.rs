//! RMSNorm: `x / sqrt(mean(x²) + eps) * weight`, over the last dimension. Gemma's `(1 + w)`
//! form is folded into the weight at load (`weight_offset`).

use crate::spec::NormSpec;
use candle_core::{Result, Tensor};

pub struct RmsNorm {
    /// [dim]
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn new(stored_weight: Tensor, spec: &NormSpec) -> Result<Self> {
        let weight = if spec.weight_offset != 0.0 {
            (stored_weight + spec.weight_offset)?
        } else {
            stored_weight
        };
        Ok(RmsNorm {
            weight,
            eps: spec.eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }
}
