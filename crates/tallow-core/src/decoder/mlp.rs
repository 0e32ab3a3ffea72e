//! The gated feed-forward block: `down(act(gate(x)) * up(x))`.

use super::linear::Linear;
use crate::spec::Activation;
use candle_core::{DType, Result, Tensor};

pub struct Mlp {
    /// [intermediate, hidden]
    pub gate: Linear,
    /// [intermediate, hidden]
    pub up: Linear,
    /// [hidden, intermediate]
    pub down: Linear,
    pub activation: Activation,
}

impl Mlp {
    /// x: [..., hidden] → [..., hidden]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate.forward(x)?;
        let gate = match self.activation {
            Activation::Silu => candle_nn::ops::silu(&gate)?,
            Activation::GeluTanh => gate.gelu()?,
            Activation::GeluTanhF16Table => gelu_f16_table(&gate)?,
        };
        self.down.forward(&(gate * self.up.forward(x)?)?)
    }
}

/// llama.cpp's CPU GELU: `f16(gelu(f16(x)))` for |x| < 10 (its lookup table over every f16
/// input), 0 below -10 and x above 10.
fn gelu_f16_table(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let tabled = x
        .to_dtype(DType::F16)?
        .to_dtype(DType::F32)?
        .gelu()?
        .to_dtype(DType::F16)?
        .to_dtype(DType::F32)?;
    let inside = x.abs()?.lt(10.0)?;
    let outside = x.ge(10.0)?.where_cond(&x, &x.zeros_like()?)?;
    inside.where_cond(&tabled, &outside)?.to_dtype(dtype)
}
