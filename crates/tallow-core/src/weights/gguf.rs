//! Weights read in place from a GGUF file. The loader asks by transformers' names; this maps
//! them onto llama.cpp's (`model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`)
//! and hands matrices out as views of the memory-mapped file, in their stored quantization, so a
//! loaded model's resident memory is about the file's size. Small tensors (norms, biases) are
//! copied out as f32.

use super::matrix::{BlockBytes, QuantMatrix};
use super::{Matrix, WeightSource};
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::file::{GgufFile, TensorInfo};
use candle_core::{Device, Tensor};
use std::sync::Arc;

pub struct GgufWeights {
    file: Arc<GgufFile>,
    /// Gemma's sandwich norms: `post_attention_layernorm` is then a norm of the attention output
    /// (`post_attention_norm`), not the pre-FFN norm (`ffn_norm`).
    sandwich: bool,
    device: Device,
}

/// The GGUF name of a transformers tensor name, or None if GGUF has no such tensor.
fn gguf_name(name: &str, sandwich: bool) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        "lm_head.bias" => return Some("output.bias".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = match rest.rsplit_once('.') {
        Some((m, s @ ("weight" | "bias"))) => (m, s),
        // Stacked experts are asked for without a suffix.
        _ => (rest, "weight"),
    };
    let gguf = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.qkv_proj" => "attn_qkv",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "post_attention_layernorm" if sandwich => "post_attention_norm",
        "post_attention_layernorm" | "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" | "mlp.gate_up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "mlp.gate" => "ffn_gate_inp",
        "mlp.experts.gate_proj" => "ffn_gate_exps",
        "mlp.experts.up_proj" => "ffn_up_exps",
        "mlp.experts.down_proj" => "ffn_down_exps",
        _ => return None,
    };
    Some(format!("blk.{layer}.{gguf}.{suffix}"))
}

impl GgufWeights {
    pub fn new(file: Arc<GgufFile>, sandwich: bool, device: &Device) -> Self {
        GgufWeights {
            file,
            sandwich,
            device: device.clone(),
        }
    }

    /// The tensor behind `name`, checked against `shape` (outermost dimension first).
    fn find(&self, name: &str, shape: &[usize]) -> Result<&TensorInfo> {
        let missing = || {
            Error::new(
                ErrorCode::TensorMissing,
                format!("tensor '{name}' is missing from the GGUF file"),
            )
        };
        let gguf = gguf_name(name, self.sandwich).ok_or_else(missing)?;
        let info = self.file.tensor(&gguf).ok_or_else(|| {
            Error::new(
                ErrorCode::TensorMissing,
                format!("tensor '{gguf}' is missing from the GGUF file"),
            )
        })?;
        if info.shape() != shape {
            return Err(Error::new(
                ErrorCode::TensorShapeMismatch,
                format!(
                    "tensor '{gguf}' has shape {:?} but the metadata implies {shape:?}",
                    info.shape()
                ),
            ));
        }
        Ok(info)
    }

    /// The tensor as `rows` rows of its innermost dimension, in place.
    fn view(&self, info: &TensorInfo) -> Result<QuantMatrix> {
        let cols = info.dims[0];
        let rows = info.element_count() / cols;
        let storage: Arc<dyn BlockBytes> = self.file.mmap().clone();
        QuantMatrix::new(storage, info.offset, info.tensor_type, rows, cols)
            .map_err(|e| Error::new(e.code, format!("tensor '{}': {}", info.name, e.message)))
    }

    /// Whether the file holds the tensor named `gguf_name` (llama.cpp's name).
    pub fn has_gguf_tensor(&self, gguf_name: &str) -> bool {
        self.file.tensor(gguf_name).is_some()
    }

    /// The outermost dimension of a tensor by its GGUF name (rows of a matrix).
    pub fn rows_of(&self, gguf_name: &str) -> Option<usize> {
        self.file
            .tensor(gguf_name)
            .and_then(|t| t.shape().first().copied())
    }

    /// Any tensor by its GGUF name, dequantized to f32 with its shape; for metadata-like tensors
    /// the architecture reads (rope frequency factors).
    pub fn raw_f32(&self, gguf_name: &str) -> Result<Option<Vec<f32>>> {
        let Some(info) = self.file.tensor(gguf_name) else {
            return Ok(None);
        };
        Ok(Some(self.view(info)?.dequantize_all()?))
    }
}

impl WeightSource for GgufWeights {
    fn contains(&self, name: &str) -> bool {
        gguf_name(name, self.sandwich).is_some_and(|g| self.file.tensor(&g).is_some())
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let info = self.find(name, shape)?;
        let values = self.view(info)?.dequantize_all()?;
        Ok(Tensor::from_vec(values, shape, &self.device)?)
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let info = self.find(name, &[rows, cols])?;
        Ok(Matrix::Quantized(self.view(info)?.in_kernel_layout()?))
    }

    fn experts(&self, name: &str, count: usize, rows: usize, cols: usize) -> Result<Vec<Matrix>> {
        let info = self.find(name, &[count, rows, cols])?;
        let all = self.view(info)?.in_kernel_layout()?;
        (0..count)
            .map(|e| Ok(Matrix::Quantized(all.rows(e * rows, rows)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::gguf_name;

    #[test]
    fn names_map_to_llama_cpp() {
        let n = |s: &str, sandwich| gguf_name(s, sandwich);
        assert_eq!(
            n("model.embed_tokens.weight", false).unwrap(),
            "token_embd.weight"
        );
        assert_eq!(
            n("model.layers.3.self_attn.q_proj.bias", false).unwrap(),
            "blk.3.attn_q.bias"
        );
        assert_eq!(
            n("model.layers.0.post_attention_layernorm.weight", false).unwrap(),
            "blk.0.ffn_norm.weight"
        );
        assert_eq!(
            n("model.layers.0.post_attention_layernorm.weight", true).unwrap(),
            "blk.0.post_attention_norm.weight"
        );
        assert_eq!(
            n("model.layers.1.mlp.experts.down_proj", false).unwrap(),
            "blk.1.ffn_down_exps.weight"
        );
        assert_eq!(n("model.layers.x.mlp.gate_proj.weight", false), None);
    }
}
