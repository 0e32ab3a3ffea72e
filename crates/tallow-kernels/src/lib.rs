//! tallow-kernels: numeric kernels that do not need a tensor library.
//!
//! [`quantize`] holds quantizers that write exactly the bytes llama.cpp's `llama-quantize` writes
//! (without an importance matrix), in ggml's block layouts, so a model quantized at load time is
//! the model llama.cpp would run.

pub mod quantize;

pub use quantize::{quantize_rows, QuantType};
