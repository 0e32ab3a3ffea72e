//! Quantization at load (`loadModel(dir, { quantize: 'q4_k' })`): dense checkpoint matrices are
//! turned into ggml blocks as llama-quantize does without an importance matrix: every matrix in
//! the requested type (as `llama-quantize --pure`), except MoE routers, which stay dense, and
//! matrices whose rows do not fill whole blocks, which fall back as llama.cpp's quantizer does.

use super::matrix::{Matrix, QuantMatrix};
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::tensor_type::TensorType;
use candle_core::Tensor;

/// The types `quantize` accepts, by the names users write (lower case, as llama.cpp's
/// `llama-quantize` spells them).
pub const QUANTIZE_TYPES: [(&str, TensorType); 12] = [
    ("f16", TensorType::F16),
    ("bf16", TensorType::BF16),
    ("q8_0", TensorType::Q8_0),
    ("q4_0", TensorType::Q4_0),
    ("q4_1", TensorType::Q4_1),
    ("q5_0", TensorType::Q5_0),
    ("q5_1", TensorType::Q5_1),
    ("q2_k", TensorType::Q2K),
    ("q3_k", TensorType::Q3K),
    ("q4_k", TensorType::Q4K),
    ("q5_k", TensorType::Q5K),
    ("q6_k", TensorType::Q6K),
];

/// Parses a `quantize` option value.
pub fn parse_quantize_type(name: &str) -> Result<TensorType> {
    let lower = name.to_ascii_lowercase();
    QUANTIZE_TYPES
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = QUANTIZE_TYPES.iter().map(|(n, _)| *n).collect();
            Error::new(
                ErrorCode::InvalidOptions,
                format!(
                    "quantize: '{name}' is not a supported type (one of {})",
                    names.join(", ")
                ),
            )
        })
}

/// The type a matrix with rows of `cols` values gets when `target` is asked for: llama.cpp's
/// fallbacks for rows that are not whole 256-value blocks, then f16 if 32 does not divide either.
pub fn type_for(target: TensorType, cols: usize) -> TensorType {
    if cols.is_multiple_of(target.block_size()) {
        return target;
    }
    let fallback = match target {
        TensorType::Q2K | TensorType::Q3K => TensorType::Q4_0,
        TensorType::Q4K => TensorType::Q5_0,
        TensorType::Q5K => TensorType::Q5_1,
        TensorType::Q6K => TensorType::Q8_0,
        other => other,
    };
    if cols.is_multiple_of(fallback.block_size()) {
        fallback
    } else {
        TensorType::F16
    }
}

/// `dense` [rows, cols] quantized to `target` (or its fallback).
pub fn quantize(dense: &Tensor, target: TensorType) -> Result<Matrix> {
    let (_, cols) = dense.dims2()?;
    Ok(Matrix::Quantized(QuantMatrix::quantize(
        dense,
        type_for(target, cols),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_quants_fall_back_like_llama_quantize() {
        assert_eq!(type_for(TensorType::Q4K, 512), TensorType::Q4K);
        assert_eq!(type_for(TensorType::Q4K, 96), TensorType::Q5_0);
        assert_eq!(type_for(TensorType::Q6K, 64), TensorType::Q8_0);
        assert_eq!(type_for(TensorType::Q2K, 64), TensorType::Q4_0);
        assert_eq!(type_for(TensorType::Q8_0, 24), TensorType::F16);
    }

    #[test]
    fn quantize_names_parse() {
        assert_eq!(parse_quantize_type("Q4_K").unwrap(), TensorType::Q4K);
        assert!(parse_quantize_type("q4_k_m").is_err());
    }
}
