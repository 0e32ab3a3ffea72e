//! Safetensors weights, memory-mapped, one file or a sharded set. Every lookup is checked against
//! the shape the architecture expects, so a checkpoint that disagrees with its config.json fails
//! at load with the tensor's name instead of producing garbage later. Matrices are converted to
//! the compute dtype, or quantized when the caller asked for in-situ quantization.

use super::{in_situ, Matrix, WeightSource};
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::tensor_type::TensorType;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

pub struct Weights {
    files: MmapedSafetensors,
    /// name → (shape, dtype) of every tensor in every shard, read from the headers.
    index: HashMap<String, (Vec<usize>, DType)>,
    /// The dtype tensors are converted to on load.
    compute_dtype: DType,
    /// Quantize matrices to this type at load.
    quantize: Option<TensorType>,
    /// How many tensors of each type (after quantization) the loader took.
    handed_out: RefCell<HashMap<String, usize>>,
    device: Device,
}

impl Weights {
    /// Maps `paths` and reads their headers. A tensor name present in two shards is an error.
    pub fn open(
        paths: &[PathBuf],
        compute_dtype: DType,
        quantize: Option<TensorType>,
        device: &Device,
    ) -> Result<Self> {
        for path in paths {
            if !path.is_file() {
                return Err(Error::new(
                    ErrorCode::InvalidModelFile,
                    format!("weights file {} does not exist", path.display()),
                ));
            }
        }
        // SAFETY: the files are mapped read-only; like every mmap-based loader we assume they are
        // not truncated by another process while the model is loaded.
        let files = unsafe { MmapedSafetensors::multi(paths) }.map_err(|e| {
            Error::new(
                ErrorCode::InvalidModelFile,
                format!("cannot read safetensors weights: {e}"),
            )
        })?;
        let mut index = HashMap::new();
        for (name, view) in files.tensors() {
            let dtype = DType::try_from(view.dtype()).map_err(|_| {
                Error::new(
                    ErrorCode::InvalidModelFile,
                    format!("tensor '{name}' has unsupported dtype {:?}", view.dtype()),
                )
            })?;
            if index
                .insert(name.clone(), (view.shape().to_vec(), dtype))
                .is_some()
            {
                return Err(Error::new(
                    ErrorCode::InvalidModelFile,
                    format!("tensor '{name}' appears in more than one weights file"),
                ));
            }
        }
        Ok(Weights {
            files,
            index,
            compute_dtype,
            quantize,
            handed_out: RefCell::default(),
            device: device.clone(),
        })
    }

    /// Loads `name`, checking that its shape is `shape`, converted to the compute dtype.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (actual, _) = self.index.get(name).ok_or_else(|| {
            Error::new(
                ErrorCode::TensorMissing,
                format!("tensor '{name}' is missing from the weights"),
            )
        })?;
        if actual.as_slice() != shape {
            return Err(Error::new(
                ErrorCode::TensorShapeMismatch,
                format!("tensor '{name}' has shape {actual:?} but config.json implies {shape:?}"),
            ));
        }
        let tensor = self.files.load(name, &self.device).map_err(|e| {
            Error::new(
                ErrorCode::InvalidModelFile,
                format!("cannot read tensor '{name}': {e}"),
            )
        })?;
        Ok(tensor.to_dtype(self.compute_dtype)?)
    }

    /// The dtype most of the checkpoint's parameters are stored in.
    pub fn checkpoint_dtype(&self) -> DType {
        let mut counts: HashMap<DType, usize> = HashMap::new();
        for (shape, dtype) in self.index.values() {
            *counts.entry(*dtype).or_default() += shape.iter().product::<usize>();
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(d, _)| d)
            .unwrap_or(DType::F32)
    }

    /// How many tensors of each type the model was built from (after in-situ quantization).
    pub fn handed_out_types(&self) -> HashMap<String, usize> {
        self.handed_out.borrow().clone()
    }

    fn count(&self, type_name: String) {
        *self.handed_out.borrow_mut().entry(type_name).or_default() += 1;
    }

    /// A loaded dense matrix, quantized if asked.
    fn finish(&self, dense: Tensor) -> Result<Matrix> {
        let matrix = match self.quantize {
            Some(target) => in_situ::quantize(&dense, target)?,
            None => Matrix::Dense(dense),
        };
        self.count(matrix.type_name());
        Ok(matrix)
    }

    /// The number of parameters stored in the files.
    pub fn parameter_count(&self) -> usize {
        self.index
            .values()
            .map(|(shape, _)| shape.iter().product::<usize>())
            .sum()
    }
}

impl WeightSource for Weights {
    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let tensor = self.get(name, shape)?;
        self.count(Matrix::Dense(tensor.clone()).type_name());
        Ok(tensor)
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        self.finish(self.get(name, &[rows, cols])?)
    }

    fn experts(&self, name: &str, count: usize, rows: usize, cols: usize) -> Result<Vec<Matrix>> {
        let stacked = self.get(name, &[count, rows, cols])?;
        (0..count).map(|e| self.finish(stacked.get(e)?)).collect()
    }
}
