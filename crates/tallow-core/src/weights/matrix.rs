//! A weight matrix [rows, cols] as the decoder multiplies by it: either a dense f32 tensor or
//! rows of quantized blocks in one of ggml's formats, read in place from a memory-mapped GGUF
//! file or quantized at load from a dense checkpoint.
//!
//! Quantized products on the CPU run tallow-kernels' SIMD kernels where the type has one (F16,
//! Q4_0, Q5_0, Q8_0, Q4_K, Q6_K: what llama.cpp's common files hold) and candle's
//! ggml-compatible block kernels (`k_quants::matmul`) for the rest. Both convert the activations
//! to the format's dot-product type (Q8_0, Q8_1 or Q8_K; f16/bf16 for half-precision weights)
//! exactly as llama.cpp's CPU backend does, so results agree with it.

use crate::cpu_values::with_f32_values;
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::tensor_type::TensorType;
use candle_core::quantized::k_quants::{
    self, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
    BlockQ6K, BlockQ8_0, GgmlType,
};
use candle_core::{Module, Tensor};
use half::{bf16, f16};
use std::sync::Arc;
use tallow_kernels::matmul::{matmul, Isa};
use tallow_kernels::{quantize_rows, QuantType};

/// Bytes that quantized rows live in: a mapped file, or blocks made at load.
pub trait BlockBytes: Send + Sync {
    fn bytes(&self) -> &[u8];
}

impl BlockBytes for memmap2::Mmap {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Quantized blocks made in memory, 8-byte aligned so any block type can be viewed in place.
pub struct OwnedBlocks {
    words: Vec<u64>,
    len: usize,
}

impl BlockBytes for OwnedBlocks {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

/// Rows of one quantization type, stored one after another in `storage[start..]`.
#[derive(Clone)]
pub struct QuantMatrix {
    storage: Arc<dyn BlockBytes>,
    start: usize,
    ty: TensorType,
    rows: usize,
    cols: usize,
    /// The type as tallow-kernels' matmul takes it, where it has a kernel on this CPU; None:
    /// candle's block kernels run the product.
    kernel_type: Option<QuantType>,
}

/// Runs `$body` with `$T` bound to the block type of `$ty`; `$other` for types without kernels.
macro_rules! with_block_type {
    ($ty:expr, $T:ident => $body:expr, $other:ident => $fallback:expr) => {
        match $ty {
            TensorType::F32 => {
                type $T = f32;
                $body
            }
            TensorType::F16 => {
                type $T = f16;
                $body
            }
            TensorType::BF16 => {
                type $T = bf16;
                $body
            }
            TensorType::Q4_0 => {
                type $T = BlockQ4_0;
                $body
            }
            TensorType::Q4_1 => {
                type $T = BlockQ4_1;
                $body
            }
            TensorType::Q5_0 => {
                type $T = BlockQ5_0;
                $body
            }
            TensorType::Q5_1 => {
                type $T = BlockQ5_1;
                $body
            }
            TensorType::Q8_0 => {
                type $T = BlockQ8_0;
                $body
            }
            TensorType::Q2K => {
                type $T = BlockQ2K;
                $body
            }
            TensorType::Q3K => {
                type $T = BlockQ3K;
                $body
            }
            TensorType::Q4K => {
                type $T = BlockQ4K;
                $body
            }
            TensorType::Q5K => {
                type $T = BlockQ5K;
                $body
            }
            TensorType::Q6K => {
                type $T = BlockQ6K;
                $body
            }
            $other => $fallback,
        }
    };
}

/// The quantizer for `ty`, for the types tallow can quantize to.
fn quant_type(ty: TensorType) -> Option<QuantType> {
    Some(match ty {
        TensorType::F16 => QuantType::F16,
        TensorType::BF16 => QuantType::BF16,
        TensorType::Q4_0 => QuantType::Q4_0,
        TensorType::Q4_1 => QuantType::Q4_1,
        TensorType::Q5_0 => QuantType::Q5_0,
        TensorType::Q5_1 => QuantType::Q5_1,
        TensorType::Q8_0 => QuantType::Q8_0,
        TensorType::Q2K => QuantType::Q2K,
        TensorType::Q3K => QuantType::Q3K,
        TensorType::Q4K => QuantType::Q4K,
        TensorType::Q5K => QuantType::Q5K,
        TensorType::Q6K => QuantType::Q6K,
        _ => return None,
    })
}

/// Whether tallow can multiply by (and look up rows of) tensors of type `ty`.
pub fn supported(ty: TensorType) -> bool {
    with_block_type!(ty, T => block_layout_matches::<T>(ty), _other => false)
}

/// candle's block structs must have exactly ggml's layout to be read in place.
fn block_layout_matches<T: GgmlType>(ty: TensorType) -> bool {
    std::mem::size_of::<T>() == ty.type_size() && T::BLCK_SIZE == ty.block_size()
}

/// `bytes` viewed as blocks of `T`.
fn blocks<T: GgmlType>(bytes: &[u8]) -> Result<&[T]> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size)
        || bytes.as_ptr().align_offset(std::mem::align_of::<T>()) != 0
    {
        return Err(Error::new(
            ErrorCode::InvalidModelFile,
            "tensor data is not aligned for its block type",
        ));
    }
    // SAFETY: length and alignment are checked above; every bit pattern is a valid block
    // (plain integers and half floats).
    Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

fn unsupported(ty: TensorType) -> Error {
    let names: Vec<&str> = TensorType::ALL
        .iter()
        .filter(|t| supported(**t))
        .map(|t| t.name())
        .collect();
    Error::new(
        ErrorCode::UnsupportedTensorType,
        format!(
            "tensor type {} is not supported (supported: {})",
            ty.name(),
            names.join(", ")
        ),
    )
}

impl QuantMatrix {
    /// `rows` rows of `cols` elements of type `ty` at `storage[start..]`. Checks the type is
    /// supported, the row length fits its blocks and the bytes are inside the storage.
    pub fn new(
        storage: Arc<dyn BlockBytes>,
        start: usize,
        ty: TensorType,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        if !supported(ty) {
            return Err(unsupported(ty));
        }
        let row_bytes = ty.row_bytes(cols).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidModelFile,
                format!("rows of {cols} are not whole {} blocks", ty.name()),
            )
        })?;
        let end = row_bytes
            .checked_mul(rows)
            .and_then(|n| n.checked_add(start));
        if end.is_none_or(|end| end > storage.bytes().len()) {
            return Err(Error::new(
                ErrorCode::InvalidModelFile,
                "tensor data lies outside its file",
            ));
        }
        let kernel_type =
            quant_type(ty).filter(|&t| tallow_kernels::matmul::kernel(t, Isa::detect()).is_some());
        let matrix = QuantMatrix {
            storage,
            start,
            ty,
            rows,
            cols,
            kernel_type,
        };
        with_block_type!(ty, T => blocks::<T>(matrix.data()).map(|_| ()), _other => Ok(()))?;
        Ok(matrix)
    }

    /// Quantizes a dense f32 matrix [rows, cols] to `ty` with tallow-kernels' quantizers, which
    /// write the bytes llama-quantize writes without an importance matrix.
    pub fn quantize(dense: &Tensor, ty: TensorType) -> Result<Self> {
        let (rows, cols) = dense.dims2()?;
        let kernel_type = quant_type(ty).ok_or_else(|| unsupported(ty))?;
        let row_bytes = ty.row_bytes(cols).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidOptions,
                format!(
                    "cannot quantize rows of {cols} to {}: blocks hold {} values",
                    ty.name(),
                    ty.block_size()
                ),
            )
        })?;
        let values = dense
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let len = row_bytes * rows;
        let mut words = vec![0u64; len.div_ceil(8)];
        // SAFETY: `words` holds at least `len` bytes; any byte pattern is a valid u64.
        let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) };
        if rows > 0 {
            quantize_rows(kernel_type, &values, cols, bytes);
        }
        QuantMatrix::new(Arc::new(OwnedBlocks { words, len }), 0, ty, rows, cols)
    }

    pub fn tensor_type(&self) -> TensorType {
        self.ty
    }

    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn row_bytes(&self) -> usize {
        self.ty
            .row_bytes(self.cols)
            .unwrap_or_else(|| unreachable!("checked in new"))
    }

    fn data(&self) -> &[u8] {
        &self.storage.bytes()[self.start..self.start + self.rows * self.row_bytes()]
    }

    /// Rows `first..first + count`, sharing the storage.
    pub fn rows(&self, first: usize, count: usize) -> Result<Self> {
        QuantMatrix::new(
            self.storage.clone(),
            self.start + first * self.row_bytes(),
            self.ty,
            count,
            self.cols,
        )
    }

    /// x: [..., cols] → [..., rows] in f32.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut out_dims = x.dims().to_vec();
        let k = out_dims.pop().unwrap_or(0);
        if k != self.cols {
            candle_core::bail!("matmul: input has {k} columns, weight has {}", self.cols);
        }
        let m: usize = out_dims.iter().product();
        let mut dst = vec![0f32; m * self.rows];
        with_f32_values(&x.to_dtype(candle_core::DType::F32)?, |lhs| {
            if let Some(kernel_type) = self.kernel_type {
                matmul(kernel_type, self.data(), self.rows, lhs, k, &mut dst);
                Ok(())
            } else {
                let mkn = (m, k, self.rows);
                with_block_type!(self.ty, T => {
                    let rhs = blocks::<T>(self.data()).map_err(candle_core::Error::wrap)?;
                    k_quants::matmul(mkn, lhs, rhs, &mut dst)
                }, other => candle_core::bail!("tensor type {} is not supported", other.name()))
            }
        })??;
        out_dims.push(self.rows);
        Tensor::from_vec(dst, out_dims, x.device())
    }

    /// Every row dequantized to f32: [rows, cols].
    pub fn dequantize_all(&self) -> Result<Vec<f32>> {
        let ids: Vec<u32> = (0..self.rows as u32).collect();
        self.dequantize_rows(&ids)
    }

    /// The rows `ids` dequantized to f32: [ids.len(), cols].
    pub fn dequantize_rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut out = vec![0f32; ids.len() * self.cols];
        let row_bytes = self.row_bytes();
        let data = self.data();
        for (&id, dst) in ids.iter().zip(out.chunks_mut(self.cols)) {
            let id = id as usize;
            if id >= self.rows {
                return Err(Error::new(
                    ErrorCode::InvalidPrompt,
                    format!("token id {id} is outside the vocabulary ({})", self.rows),
                ));
            }
            let row = &data[id * row_bytes..(id + 1) * row_bytes];
            with_block_type!(self.ty, T => T::to_float(blocks::<T>(row)?, dst),
                other => return Err(unsupported(other)));
        }
        Ok(out)
    }
}

/// A weight matrix [rows, cols] in whichever form it was loaded.
#[derive(Clone)]
pub enum Matrix {
    /// f32 (or the compute dtype) on the model's device.
    Dense(Tensor),
    Quantized(QuantMatrix),
}

impl Matrix {
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Matrix::Dense(w) => Ok(w.dims2()?),
            Matrix::Quantized(q) => Ok(q.dims()),
        }
    }

    /// Rows `first..first + count` (a view where the storage allows).
    pub fn rows(&self, first: usize, count: usize) -> Result<Matrix> {
        match self {
            Matrix::Dense(w) => Ok(Matrix::Dense(w.narrow(0, first, count)?)),
            Matrix::Quantized(q) => Ok(Matrix::Quantized(q.rows(first, count)?)),
        }
    }

    /// x: [..., cols] → [..., rows].
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            // candle_nn::Linear's matmul (broadcast over the leading dims).
            Matrix::Dense(w) => candle_nn::Linear::new(w.clone(), None).forward(x),
            Matrix::Quantized(q) => q.forward(x),
        }
    }

    /// Looks up rows by id (token embeddings): [ids.len(), cols].
    pub fn embed(&self, ids: &[u32], device: &candle_core::Device) -> Result<Tensor> {
        match self {
            Matrix::Dense(w) => {
                let (rows, _) = w.dims2()?;
                if let Some(&bad) = ids.iter().find(|&&id| id as usize >= rows) {
                    return Err(Error::new(
                        ErrorCode::InvalidPrompt,
                        format!("token id {bad} is outside the vocabulary ({rows})"),
                    ));
                }
                Ok(w.index_select(&Tensor::new(ids, device)?, 0)?)
            }
            Matrix::Quantized(q) => {
                let values = q.dequantize_rows(ids)?;
                Ok(Tensor::from_vec(values, (ids.len(), q.dims().1), device)?)
            }
        }
    }

    /// The storage type's name: `F32` for dense f32, else the ggml name (`Q4_K`, ...).
    pub fn type_name(&self) -> String {
        match self {
            Matrix::Dense(w) => format!("{:?}", w.dtype()).to_uppercase(),
            Matrix::Quantized(q) => q.tensor_type().name().to_string(),
        }
    }
}
