//! tallow-core: the inference engine behind tallow. It loads a model (architecture described as
//! a [`spec::ModelSpec`], weights memory-mapped), runs it on threads it owns ([`Engine`]), and
//! streams generated tokens and text back as [`Event`]s. It knows nothing of Node.

pub mod allocator;
pub mod chat;
pub mod chat_template;
mod cpu_values;
pub mod decoder;
pub mod detokenizer;
pub mod device;
pub mod engine;
pub mod error;
pub mod generation;
pub mod gguf;
pub mod guard;
pub mod hf_config;
pub mod kv_cache;
pub mod model;
pub mod model_dir;
pub mod sampling;
pub mod sequence;
pub mod spec;
pub mod stop;
pub mod tokenizer;
pub mod weights;

pub use decoder::Logits;
pub use device::{available_devices, DeviceKind};
pub use engine::{CancelHandle, Engine, LoadOptions};
pub use error::{Error, ErrorCode, Result};
pub use generation::{Event, FinishCause, FinishReason, GenerateRequest, GenerationResult, Prompt};
pub use model::ModelInfo;
pub use sampling::{
    BeamParams, EarlyStopping, ResponseFormat, SamplingParams, TokenLogprob, TokenLogprobs,
};
