//! Loading a Hugging Face model directory: config.json → `ModelSpec`, safetensors weights
//! (optionally quantized at load), tokenizer.json, and the special tokens and chat template of
//! generation_config.json and tokenizer_config.json.

use super::{merge, require_cpu_for_quantized, sorted_counts, Model, ModelInfo};
use crate::chat::Chat;
use crate::decoder::Decoder;
use crate::device::DeviceKind;
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::tensor_type::TensorType;
use crate::hf_config::{parse_config, Fields};
use crate::model_dir::{read_text, ModelDir};
use crate::tokenizer::Tokenizer;
use crate::weights::safetensors::Weights;
use candle_core::DType;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// Loads a Hugging Face model directory onto `device`, quantizing its matrices to `quantize`.
pub(super) fn load(path: &Path, device: DeviceKind, quantize: Option<TensorType>) -> Result<Model> {
    if quantize.is_some() {
        require_cpu_for_quantized(device)?;
    }
    let dir = ModelDir::locate(path)?;
    let mut spec = parse_config(&read_text(&dir.config)?)?;
    let tokenizer = Tokenizer::from_file(&dir.tokenizer)?;
    // Parsing tokenizer.json leaves tens of MB of freed heap behind, before the weights.
    crate::allocator::trim_heap();
    let candle_device = device.open()?;
    // CPUs have no fast half-precision arithmetic: compute in f32 there (as llama.cpp does).
    let compute_dtype = DType::F32;
    let weights = Weights::open(&dir.weights, compute_dtype, quantize, &candle_device)?;
    let special = SpecialTokens::read(&dir, &tokenizer)?;
    spec.eos_token_ids = merge(&special.eos, &spec.eos_token_ids);
    spec.bos_token_id = special.bos.or(spec.bos_token_id);
    let chat_file = dir.chat_template.as_deref().map(read_text).transpose()?;
    let chat = Chat::new(
        chat_file,
        special.chat_template.as_ref(),
        special.named.clone(),
        &spec.architecture,
        &tokenizer,
    )?;
    let decoder = Decoder::load(&spec, &weights, &candle_device)?;
    let info = ModelInfo {
        architecture: spec.architecture.clone(),
        format: "safetensors".into(),
        path: dir.root.display().to_string(),
        file_size: files_size(&dir.weights)?,
        parameter_count: weights.parameter_count(),
        context_length: spec.context_length,
        dtype: dtype_name(weights.checkpoint_dtype()),
        quantization: quantize.map(|t| t.name().to_string()),
        tensor_types: sorted_counts(weights.handed_out_types()),
        compute_dtype: dtype_name(compute_dtype),
        vocab_size: spec.vocab_size,
        bos_token_id: spec.bos_token_id,
        eos_token_ids: spec.eos_token_ids.clone(),
        device: device.name(),
        metadata: Default::default(),
    };
    Ok(Model {
        decoder,
        tokenizer: Arc::new(tokenizer),
        chat: Arc::new(chat),
        info,
    })
}

fn files_size(paths: &[std::path::PathBuf]) -> Result<u64> {
    let mut total = 0;
    for path in paths {
        total += std::fs::metadata(path)
            .map_err(|e| Error::new(ErrorCode::Io, format!("{}: {e}", path.display())))?
            .len();
    }
    Ok(total)
}

fn dtype_name(dtype: DType) -> String {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        other => return format!("{other:?}").to_lowercase(),
    }
    .into()
}

/// BOS/EOS as generation_config.json (ids) and tokenizer_config.json (token strings) give them,
/// and the named special tokens chat templates see (`bos_token`, `eos_token`, ...).
struct SpecialTokens {
    bos: Option<u32>,
    eos: Vec<u32>,
    named: Vec<(String, String)>,
    /// tokenizer_config.json's `chat_template`, if any.
    chat_template: Option<Value>,
}

impl SpecialTokens {
    fn read(dir: &ModelDir, tokenizer: &Tokenizer) -> Result<Self> {
        let mut bos = None;
        let mut eos = vec![];
        let mut named = vec![];
        let mut chat_template = None;
        if let Some(path) = &dir.generation_config {
            let cfg = json_object(path)?;
            let fields = Fields::new(&cfg, "generation_config.json:");
            bos = fields.token_ids("bos_token_id")?.first().copied();
            eos = fields.token_ids("eos_token_id")?;
        }
        if let Some(path) = &dir.tokenizer_config {
            let cfg = json_object(path)?;
            let text = |field: &str| -> Option<String> {
                match cfg.get(field)? {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => Some(o.get("content")?.as_str()?.to_string()),
                    _ => None,
                }
            };
            let token = |field: &str| text(field).and_then(|t| tokenizer.token_id(&t));
            bos = bos.or(token("bos_token"));
            if let Some(id) = token("eos_token") {
                eos = merge(&eos, &[id]);
            }
            for field in ["bos_token", "eos_token", "unk_token", "pad_token"] {
                if let Some(t) = text(field) {
                    named.push((field.to_string(), t));
                }
            }
            chat_template = cfg.get("chat_template").cloned();
        }
        Ok(SpecialTokens {
            bos,
            eos,
            named,
            chat_template,
        })
    }
}

fn json_object(path: &Path) -> Result<serde_json::Map<String, Value>> {
    match serde_json::from_str(&read_text(path)?) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Error::new(
            ErrorCode::InvalidConfig,
            format!("{} is not a JSON object", path.display()),
        )),
    }
}
