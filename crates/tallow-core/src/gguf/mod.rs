//! GGUF files (llama.cpp's format): a validating reader, the metadata → `ModelSpec` mapping, the
//! tokenizer and chat template stored in the metadata, and the quantized weights.

pub mod arch;
pub mod file;
pub mod file_type;
pub mod metadata;
pub mod pre_tokenizer;
pub mod tensor_type;
pub mod tokenizer;
