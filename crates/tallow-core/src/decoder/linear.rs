//! A linear layer `x · Wᵀ + b` over a weight matrix in whichever form it was loaded (dense or
//! quantized blocks).

use crate::error::{Error, ErrorCode, Result};
use crate::weights::Matrix;
use candle_core::Tensor;

#[derive(Clone)]
pub struct Linear {
    /// [out, in]
    weight: Matrix,
    /// [out]
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Matrix, bias: Option<Tensor>) -> Self {
        Linear { weight, bias }
    }

    /// x: [..., in] → [..., out]
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.weight.forward(x)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// Splits a bias-free layer by output rows into consecutive parts of the given sizes
    /// (fused projections such as Phi-3's `qkv_proj`).
    pub fn split_rows<const N: usize>(&self, sizes: [usize; N]) -> Result<[Linear; N]> {
        if self.bias.is_some() {
            return Err(Error::new(
                ErrorCode::UnsupportedConfig,
                "fused projections with a bias are not supported",
            ));
        }
        let mut offset = 0;
        let mut parts = Vec::with_capacity(N);
        for rows in sizes {
            parts.push(Linear::new(self.weight.rows(offset, rows)?, None));
            offset += rows;
        }
        Ok(parts
            .try_into()
            .unwrap_or_else(|_| unreachable!("N parts were made")))
    }
}
