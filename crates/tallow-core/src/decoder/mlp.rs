//! The gated feed-forward block: `down(act(gate(x)) * up(x))`.

use crate::spec::Activation;
use candle_core::{Module, Result, Tensor};
use candle_nn::Linear;

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
        };
        self.down.forward(&(gate * self.up.forward(x)?)?)
    }
}
