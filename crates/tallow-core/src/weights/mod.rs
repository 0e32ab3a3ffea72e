//! Where the decoder's tensors come from. The loader asks by transformers' names
//! (`model.layers.{i}.self_attn.q_proj.weight`, ...) with the shapes the architecture implies;
//! each source (a safetensors checkpoint, a GGUF file) finds them in its own naming and storage
//! and checks the shape, so a file that disagrees with its configuration fails at load with the
//! tensor's name.

pub mod gguf;
pub mod in_situ;
pub mod matrix;
pub mod safetensors;

use crate::error::Result;
use candle_core::Tensor;
pub use matrix::Matrix;

pub trait WeightSource {
    /// Whether the checkpoint holds `name` (a tensor, or a stacked expert group, see `experts`).
    fn contains(&self, name: &str) -> bool;

    /// A small tensor (norm weights, biases) in the compute dtype, checked against `shape`.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor>;

    /// A weight matrix [rows, cols] that inputs are multiplied by, kept quantized where the
    /// source is (or is asked to be).
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix>;

    /// A matrix that stays dense whatever the quantization (MoE routers, as llama.cpp keeps them).
    fn dense_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        Ok(Matrix::Dense(self.tensor(name, &[rows, cols])?))
    }

    /// `count` experts' matrices [rows, cols] stacked in one tensor [count, rows, cols].
    fn experts(&self, name: &str, count: usize, rows: usize, cols: usize) -> Result<Vec<Matrix>>;
}
