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
use tallow_kernels::matmul::{matmul, Isa, Layout, Weights, MAX_TILE};
use tallow_kernels::{quantize_rows, QuantType};

/// Bytes that quantized rows live in: a mapped file, or blocks made at load.
pub trait BlockBytes: Send + Sync {
    fn bytes(&self) -> &[u8];

    /// Says that `bytes()[start..start + len]` will not be read again soon (its rows were
    /// copied elsewhere), so that its memory can go.
    fn release(&self, _start: usize, _len: usize) {}
}

impl BlockBytes for memmap2::Mmap {
    fn bytes(&self) -> &[u8] {
        self
    }

    /// Drops the range's pages from this process (they stay in the page cache): without it, a
    /// matrix rewritten at load would count twice in the resident set, once mapped, once copied.
    fn release(&self, start: usize, len: usize) {
        #[cfg(unix)]
        // SAFETY: the map is a read-only private mapping of a file, which this process never
        // writes: after MADV_DONTNEED a read faults the same bytes back in from the file, so
        // every slice into the map stays valid and unchanged. A failure only keeps the pages.
        unsafe {
            let _ = self.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len);
        }
    }
}

/// Quantized blocks made in memory: an anonymous map (page-aligned, so any block type can be
/// viewed in place), in transparent 2 MiB pages where the kernel offers them. Small pages cost
/// a fault each on first write, about a second per GiB in a virtual machine (most of a 1B
/// model's load time once its matrices are rewritten); huge pages cost one per 2 MiB, and
/// generation's weight streams take fewer TLB misses.
pub struct OwnedBlocks {
    map: memmap2::MmapMut,
    /// Where the blocks start in `map`: its first 2 MiB boundary.
    offset: usize,
    len: usize,
}

const HUGE_PAGE: usize = 2 << 20;

impl OwnedBlocks {
    /// `len` zero bytes.
    fn zeroed(len: usize) -> Result<Self> {
        let map = memmap2::MmapMut::map_anon(len + HUGE_PAGE).map_err(|e| {
            Error::new(
                ErrorCode::Io,
                format!("cannot allocate {len} bytes for weights: {e}"),
            )
        })?;
        let offset = map.as_ptr().align_offset(HUGE_PAGE);
        // Only whole huge pages: a partial one would still take 2 MiB.
        let whole = len / HUGE_PAGE * HUGE_PAGE;
        #[cfg(target_os = "linux")]
        if whole > 0 {
            // Advice only: without transparent huge pages the map keeps small pages.
            let _ = map.advise_range(memmap2::Advice::HugePage, offset, whole);
        }
        Ok(OwnedBlocks { map, offset, len })
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map[self.offset..self.offset + self.len]
    }
}

impl BlockBytes for OwnedBlocks {
    fn bytes(&self) -> &[u8] {
        &self.map[self.offset..self.offset + self.len]
    }
}

/// Rows of one quantization type in `storage[start..]`, one after another or in the kernels'
/// interleaved groups ([`Layout`]).
#[derive(Clone)]
pub struct QuantMatrix {
    storage: Arc<dyn BlockBytes>,
    start: usize,
    ty: TensorType,
    rows: usize,
    cols: usize,
    layout: Layout,
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
            layout: Layout::Rows,
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
        let mut blocks = OwnedBlocks::zeroed(row_bytes * rows)?;
        if rows > 0 {
            quantize_rows(kernel_type, &values, cols, blocks.bytes_mut());
        }
        QuantMatrix::new(Arc::new(blocks), 0, ty, rows, cols)?.in_kernel_layout()
    }

    /// This matrix in the layout its kernel reads fastest ([`Layout::best_for`]): rows copied
    /// into interleaved groups (in parallel on the current rayon pool), the source released.
    /// Unchanged where that layout is the rows as they are, or the type has no kernel.
    ///
    /// The copy goes a few MiB of whole groups at a time, each chunk's source released as soon
    /// as it is copied: peak memory holds the copy and one chunk, not the matrix twice (a tied
    /// 151936×896 Q8_0 embedding is 144 MB).
    pub fn in_kernel_layout(self) -> Result<Self> {
        const CHUNK_BYTES: usize = 4 << 20;
        let Some(kernel_type) = self.kernel_type else {
            return Ok(self);
        };
        let layout = Layout::best_for(kernel_type);
        if layout == self.layout {
            return Ok(self);
        }
        let source = self.weights();
        let row_bytes = source.row_bytes();
        let chunk_rows = (CHUNK_BYTES / row_bytes).max(MAX_TILE) / MAX_TILE * MAX_TILE;
        let mut blocks = OwnedBlocks::zeroed(source.bytes.len())?;
        let chunk_bytes = chunk_rows * row_bytes;
        let chunks = blocks.bytes_mut().chunks_mut(chunk_bytes);
        for (at, out) in (0..).step_by(chunk_bytes).zip(chunks) {
            let bytes = &source.bytes[at..at + out.len()];
            let rows = bytes.len() / row_bytes;
            Weights {
                bytes,
                rows,
                ..source
            }
            .interleave_into(out);
            self.storage.release(self.start + at, bytes.len());
        }
        Ok(QuantMatrix {
            storage: Arc::new(blocks),
            start: 0,
            layout,
            ..self
        })
    }

    /// The matrix as tallow-kernels reads it (types with a kernel only).
    fn weights(&self) -> Weights<'_> {
        Weights {
            ty: self
                .kernel_type
                .unwrap_or_else(|| unreachable!("only types with kernels are laid out")),
            layout: self.layout,
            bytes: self.data(),
            rows: self.rows,
            cols: self.cols,
        }
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

    /// Rows `first..first + count`: a view sharing the storage where the rows are whole
    /// groups of the layout, else a copy.
    pub fn rows(&self, first: usize, count: usize) -> Result<Self> {
        if first.checked_add(count).is_none_or(|end| end > self.rows) {
            return Err(Error::new(
                ErrorCode::InvalidModelFile,
                format!("rows {first}..+{count} of a matrix of {}", self.rows),
            ));
        }
        let start = self.start + first * self.row_bytes();
        if self.layout == Layout::Rows {
            return QuantMatrix::new(self.storage.clone(), start, self.ty, count, self.cols);
        }
        let whole_groups = first.is_multiple_of(MAX_TILE)
            && (count.is_multiple_of(MAX_TILE) || first + count == self.rows);
        if whole_groups {
            return Ok(QuantMatrix {
                start,
                rows: count,
                ..self.clone()
            });
        }
        let row_bytes = self.row_bytes();
        let mut blocks = OwnedBlocks::zeroed(count * row_bytes)?;
        let weights = self.weights();
        for (r, out) in (first..first + count).zip(blocks.bytes_mut().chunks_exact_mut(row_bytes)) {
            weights.read_row(r, out);
        }
        QuantMatrix::new(Arc::new(blocks), 0, self.ty, count, self.cols)?.in_kernel_layout()
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
            if self.kernel_type.is_some() {
                matmul(&self.weights(), lhs, &mut dst);
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
        // One row's blocks in order, gathered from an interleaved group into 8-byte words (the
        // block structs are read in place).
        let mut gathered = match self.layout {
            Layout::Rows => Vec::new(),
            Layout::Interleaved => vec![0u64; row_bytes.div_ceil(8)],
        };
        for (&id, dst) in ids.iter().zip(out.chunks_mut(self.cols)) {
            let id = id as usize;
            if id >= self.rows {
                return Err(Error::new(
                    ErrorCode::InvalidPrompt,
                    format!("token id {id} is outside the vocabulary ({})", self.rows),
                ));
            }
            let row = match self.layout {
                Layout::Rows => &data[id * row_bytes..(id + 1) * row_bytes],
                Layout::Interleaved => {
                    // SAFETY: `gathered` holds at least `row_bytes` bytes; any bytes are valid
                    // u64s.
                    let bytes = unsafe {
                        std::slice::from_raw_parts_mut(
                            gathered.as_mut_ptr().cast::<u8>(),
                            row_bytes,
                        )
                    };
                    self.weights().read_row(id, bytes);
                    &*bytes
                }
            };
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
