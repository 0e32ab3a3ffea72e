//! The gated feed-forward block: `down(act(gate(x)) * up(x))`.

use super::linear::Linear;
use crate::cpu_values::{all_cpu_f32, with_f32_values};
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
        let up = self.up.forward(x)?;
        let hidden = match self.activation {
            Activation::Silu if all_cpu_f32(&[&gate, &up]) => silu_mul_cpu(&gate, &up)?,
            Activation::Silu => (candle_nn::ops::silu(&gate)? * up)?,
            Activation::GeluTanh => (gate.gelu()? * up)?,
            Activation::GeluTanhF16Table => (gelu_f16_table(&gate)? * up)?,
        };
        self.down.forward(&hidden)
    }
}

/// `silu(gate) · up` in one pass (tallow-kernels), for f32 tensors of one shape on the CPU.
fn silu_mul_cpu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let mut out = vec![0f32; gate.elem_count()];
    with_f32_values(gate, |gate| {
        with_f32_values(up, |up| {
            tallow_kernels::activation::silu_mul(gate, up, &mut out)
        })
    })??;
    Tensor::from_vec(out, gate.shape(), gate.device())
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
