//! A loaded model: the decoder with its weights, the tokenizer, the chat template, and what users
//! can ask about it. Two sources: a Hugging Face directory (config.json + safetensors, see
//! `hf.rs`) or a GGUF file (see `gguf.rs`); both end in the same `ModelSpec` and decoder.

mod gguf;
mod hf;

use crate::chat::Chat;
use crate::decoder::Decoder;
use crate::device::DeviceKind;
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::tensor_type::TensorType;
use crate::tokenizer::Tokenizer;
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Arc;

/// Facts about a loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub architecture: String,
    /// `safetensors` or `gguf`.
    pub format: String,
    pub path: String,
    /// Bytes of the weight files.
    pub file_size: u64,
    pub parameter_count: usize,
    pub context_length: usize,
    /// The dtype most weights are stored in: `f32`, `f16`, `bf16`, or a quantization (`q4_k`).
    pub dtype: String,
    /// The quantization the weights run in: GGUF's file type (`Q4_K_M`, ...) or the type asked
    /// for at load (`Q8_0`, ...); None for unquantized weights.
    pub quantization: Option<String>,
    /// How many tensors of each storage type the model runs with (`Q4_K` → 96, `F32` → 65, ...),
    /// sorted by name.
    pub tensor_types: Vec<(String, usize)>,
    /// The dtype the forward pass computes in.
    pub compute_dtype: String,
    pub vocab_size: usize,
    pub bos_token_id: Option<u32>,
    /// Tokens that end generation (from generation_config.json, config.json, tokenizer_config.json
    /// or the GGUF tokenizer metadata).
    pub eos_token_ids: Vec<u32>,
    pub device: String,
    /// A GGUF file's `general.*` metadata (name, author, license, file_type...), as JSON values.
    pub metadata: Map<String, Value>,
}

pub struct Model {
    pub decoder: Decoder,
    pub tokenizer: Arc<Tokenizer>,
    pub chat: Arc<Chat>,
    pub info: ModelInfo,
}

impl Model {
    /// Loads a Hugging Face model directory or a GGUF file onto `device`, quantizing a
    /// directory's matrices to `quantize` if given.
    pub fn load(path: &Path, device: DeviceKind, quantize: Option<TensorType>) -> Result<Self> {
        if gguf::is_gguf_file(path) {
            if let Some(ty) = quantize {
                return Err(Error::new(
                    ErrorCode::InvalidOptions,
                    format!(
                        "quantize ('{}') applies to safetensors checkpoints; {} is a GGUF file, \
                         already in its own quantization",
                        ty.name().to_lowercase(),
                        path.display()
                    ),
                ));
            }
            return gguf::load(path, device);
        }
        hf::load(path, device, quantize)
    }
}

/// Quantized weights run on the CPU kernels only (for now): say so instead of copying every
/// activation back and forth.
fn require_cpu_for_quantized(device: DeviceKind) -> Result<()> {
    if device == DeviceKind::Cpu {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::UnsupportedDevice,
        format!(
            "quantized weights (GGUF files or the quantize option) run on the CPU only; \
             device '{}' is not supported for them yet",
            device.name()
        ),
    ))
}

fn merge(first: &[u32], second: &[u32]) -> Vec<u32> {
    let mut all = first.to_vec();
    all.extend(second.iter().filter(|id| !first.contains(id)));
    all
}

/// `counts` as sorted (type, count) pairs.
fn sorted_counts(counts: std::collections::HashMap<String, usize>) -> Vec<(String, usize)> {
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort();
    v
}
