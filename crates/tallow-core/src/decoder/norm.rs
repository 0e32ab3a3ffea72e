//! RMSNorm: `x / sqrt(mean(x²) + eps) * weight`, over the last dimension.

use candle_core::{Result, Tensor};

pub struct RmsNorm {
    /// [hidden]
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn new(weight: Tensor, eps: f64) -> Self {
        RmsNorm {
            weight,
            eps: eps as f32,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }
}
