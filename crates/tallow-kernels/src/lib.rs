//! tallow-kernels: numeric kernels that do not need a tensor library.
//!
//! [`quantize`] holds quantizers that write exactly the bytes llama.cpp's `llama-quantize` writes
//! (without an importance matrix), in ggml's block layouts, so a model quantized at load time is
//! the model llama.cpp would run.
//!
//! [`matmul`] multiplies activations by weights in those layouts with SIMD kernels chosen at run
//! time; [`norm`] is the fused RMSNorm of the CPU path, [`activation`] the feed-forward block's
//! gated SiLU, and [`attention`] the attention of one new position over its cache and the causal
//! softmax of a prompt.

pub mod activation;
pub mod attention;
pub mod matmul;
pub mod norm;
pub mod quantize;

pub use quantize::{quantize_rows, QuantType};
