//! Loading a GGUF file: the architecture from its metadata, weights in place from the mapped
//! file, the tokenizer and chat template from `tokenizer.*` metadata.

use super::{require_cpu_for_quantized, sorted_counts, Model, ModelInfo};
use crate::chat::Chat;
use crate::decoder::Decoder;
use crate::device::DeviceKind;
use crate::error::Result;
use crate::gguf::arch::spec_from_gguf;
use crate::gguf::file::GgufFile;
use crate::gguf::file_type::file_type_name;
use crate::gguf::metadata::MetaValue;
use crate::gguf::tokenizer::tokenizer_from_metadata;
use crate::weights::gguf::GgufWeights;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Whether `path` is a file to read as GGUF: named `*.gguf` (then a bad one gets the reader's
/// precise error), or starting with GGUF's magic whatever its name.
pub(super) fn is_gguf_file(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    let named = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let mut magic = [0u8; 4];
    named
        || std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
            && &magic == b"GGUF"
}

pub(super) fn load(path: &Path, device: DeviceKind) -> Result<Model> {
    require_cpu_for_quantized(device)?;
    let mut file = GgufFile::open(path)?;
    let candle_device = device.open()?;
    // Everything the metadata gives is read before the weights load, and the metadata dropped:
    // a large vocabulary's strings are tens of MB that peak memory would otherwise hold too.
    let meta = file.take_metadata();
    let file = Arc::new(file);
    let tok = tokenizer_from_metadata(&meta)?;
    let probe = GgufWeights::new(file.clone(), false, &candle_device);
    let mut spec = spec_from_gguf(&meta, &probe, tok.tokenizer.vocab_size())?;
    spec.bos_token_id = tok.bos_token_id;
    spec.eos_token_ids = tok.eos_token_ids.clone();
    let file_type = meta.u64("general.file_type")?;
    let general = general_metadata(meta.entries());
    drop(meta);
    crate::allocator::trim_heap();
    let weights = GgufWeights::new(file.clone(), spec.norm.sandwich, &candle_device);
    let decoder = Decoder::load(&spec, &weights, &candle_device)?;
    let chat = Chat::new(
        None,
        chat_templates(&tok.chat_template, &tok.chat_templates).as_ref(),
        tok.named_special.clone(),
        &spec.architecture,
        &tok.tokenizer,
    )?;
    let mut types: HashMap<String, usize> = HashMap::new();
    let mut by_elements: HashMap<String, usize> = HashMap::new();
    for t in file.tensors() {
        *types.entry(t.tensor_type.name().to_string()).or_default() += 1;
        *by_elements
            .entry(t.tensor_type.name().to_lowercase())
            .or_default() += t.element_count();
    }
    let dtype = by_elements
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(t, _)| t.clone())
        .unwrap_or_default();
    let info = ModelInfo {
        architecture: spec.architecture.clone(),
        format: "gguf".into(),
        path: path.display().to_string(),
        file_size: file.file_size() as u64,
        parameter_count: file.tensors().iter().map(|t| t.element_count()).sum(),
        context_length: spec.context_length,
        dtype,
        quantization: file_type.map(|id| {
            file_type_name(id)
                .map(String::from)
                .unwrap_or_else(|| format!("file type {id}"))
        }),
        tensor_types: sorted_counts(types),
        compute_dtype: "f32".into(),
        vocab_size: spec.vocab_size,
        bos_token_id: spec.bos_token_id,
        eos_token_ids: spec.eos_token_ids.clone(),
        device: device.name(),
        metadata: general,
    };
    Ok(Model {
        decoder,
        tokenizer: Arc::new(tok.tokenizer),
        chat: Arc::new(chat),
        info,
    })
}

/// The chat templates in the shape tokenizer_config.json gives them: the default alone as a
/// string, or a `[{name, template}]` list when named ones (`tool_use`, ...) exist.
fn chat_templates(default: &Option<String>, named: &[(String, String)]) -> Option<Value> {
    let default = default.as_ref()?;
    if named.is_empty() {
        return Some(Value::String(default.clone()));
    }
    let mut list = vec![serde_json::json!({"name": "default", "template": default})];
    list.extend(
        named
            .iter()
            .map(|(name, template)| serde_json::json!({"name": name, "template": template})),
    );
    Some(Value::Array(list))
}

/// `general.*` entries as JSON; arrays longer than 64 items are summarised by their length.
fn general_metadata<'a>(
    entries: impl Iterator<Item = (&'a str, &'a MetaValue)>,
) -> Map<String, Value> {
    entries
        .filter(|(k, _)| k.starts_with("general."))
        .map(|(k, v)| (k.to_string(), to_json(v)))
        .collect()
}

fn to_json(v: &MetaValue) -> Value {
    match v {
        MetaValue::Array(items) if items.len() > 64 => {
            serde_json::json!({"array_length": items.len()})
        }
        MetaValue::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        MetaValue::String(s) => Value::String(s.clone()),
        MetaValue::Bool(b) => Value::Bool(*b),
        MetaValue::F32(f) => serde_json::json!(f),
        MetaValue::F64(f) => serde_json::json!(f),
        other => other
            .as_i64()
            .map(Value::from)
            .or_else(|| other.as_u64().map(Value::from))
            .unwrap_or(Value::Null),
    }
}
