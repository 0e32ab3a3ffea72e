//! Borrowing the values of a CPU tensor, for the kernels that work on plain slices.

use candle_core::{CpuStorage, DType, Result, Storage, Tensor};

/// Whether every tensor is f32 on the CPU: what the fused kernels of tallow-kernels take.
pub fn all_cpu_f32(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Runs `f` on the values of `x`, an f32 tensor on the CPU, in row-major order and without
/// copying them when `x` is already contiguous.
pub fn with_f32_values<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(values)) = &*storage else {
        candle_core::bail!("expected f32 values on the CPU, got {:?}", x.dtype());
    };
    Ok(f(&values[layout.start_offset()..][..x.elem_count()]))
}
