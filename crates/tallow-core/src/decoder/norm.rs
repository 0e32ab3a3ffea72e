//! RMSNorm: `x / sqrt(mean(x²) + eps) * weight`, over the last dimension. Gemma's `(1 + w)`
//! form is folded into the weight at load (`weight_offset`).
//!
//! Computed as llama.cpp's CPU backend does: the sum of squares accumulated in f64, then
//! `x * (1 / sqrt(mean + eps))` and the weight in f32. Quantized matmuls round these outputs to
//! 8-bit levels, so a one-ulp difference here can move a value across a rounding boundary; doing
//! the same arithmetic keeps tallow on the same side as llama.cpp.

use crate::cpu_values::with_f32_values;
use crate::spec::NormSpec;
use candle_core::{DType, Device, Result, Tensor, D};

pub struct RmsNorm {
    /// [dim]
    weight: Tensor,
    /// The weight's values, for the fused CPU path (None on other devices).
    cpu_weight: Option<Vec<f32>>,
    eps: f32,
}

impl RmsNorm {
    pub fn new(stored_weight: Tensor, spec: &NormSpec) -> Result<Self> {
        let weight = if spec.weight_offset != 0.0 {
            (stored_weight + spec.weight_offset)?
        } else {
            stored_weight
        };
        let cpu_weight = match weight.device() {
            Device::Cpu => Some(weight.to_dtype(DType::F32)?.to_vec1::<f32>()?),
            _ => None,
        };
        Ok(RmsNorm {
            weight,
            cpu_weight,
            eps: spec.eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some(weight), DType::F32) = (&self.cpu_weight, x.dtype()) {
            return self.forward_cpu(x, weight);
        }
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let dim = x.dim(D::Minus1)? as f64;
        // [..., 1]: squares in f32, summed in f64, the mean back in f32.
        let mean =
            (x.sqr()?.to_dtype(DType::F64)?.sum_keepdim(D::Minus1)? / dim)?.to_dtype(DType::F32)?;
        let scale = (mean + self.eps as f64)?.sqrt()?.recip()?;
        x.broadcast_mul(&scale)?
            .broadcast_mul(&self.weight.to_dtype(DType::F32)?)?
            .to_dtype(dtype)
    }

    /// One pass per row over f32 values (tallow-kernels), instead of seven tensor operations.
    fn forward_cpu(&self, x: &Tensor, weight: &[f32]) -> Result<Tensor> {
        let mut out = vec![0f32; x.elem_count()];
        with_f32_values(x, |values| {
            tallow_kernels::norm::rms_norm(values, weight, self.eps, &mut out)
        })?;
        Tensor::from_vec(out, x.shape(), x.device())
    }
}
