//! A Hugging Face model directory: which files hold the config, the weights (one file or shards
//! listed by model.safetensors.index.json), the tokenizer and the generation defaults.

use crate::error::{Error, ErrorCode, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct ModelDir {
    pub root: PathBuf,
    pub config: PathBuf,
    pub weights: Vec<PathBuf>,
    pub tokenizer: PathBuf,
    pub tokenizer_config: Option<PathBuf>,
    /// chat_template.jinja, which newer transformers save beside tokenizer_config.json.
    pub chat_template: Option<PathBuf>,
    pub generation_config: Option<PathBuf>,
}

impl ModelDir {
    /// Finds the files of the model in `root`, failing with the code of the first thing missing.
    pub fn locate(root: &Path) -> Result<Self> {
        if !root.exists() {
            return Err(Error::new(
                ErrorCode::ModelNotFound,
                format!("model path {} does not exist", root.display()),
            ));
        }
        if !root.is_dir() {
            return Err(Error::new(
                ErrorCode::ModelNotFound,
                format!(
                    "model path {} is neither a directory nor a GGUF file; pass a Hugging Face \
                     model directory or a .gguf file",
                    root.display()
                ),
            ));
        }
        let config = root.join("config.json");
        if !config.is_file() {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                format!("{} has no config.json", root.display()),
            ));
        }
        let tokenizer = root.join("tokenizer.json");
        if !tokenizer.is_file() {
            return Err(Error::new(
                ErrorCode::TokenizerNotFound,
                format!("{} has no tokenizer.json", root.display()),
            ));
        }
        let optional = |name: &str| Some(root.join(name)).filter(|p| p.is_file());
        Ok(ModelDir {
            root: root.to_path_buf(),
            config,
            weights: weight_files(root)?,
            tokenizer,
            tokenizer_config: optional("tokenizer_config.json"),
            chat_template: optional("chat_template.jinja"),
            generation_config: optional("generation_config.json"),
        })
    }
}

/// `model.safetensors`, or the shards named by `model.safetensors.index.json`.
fn weight_files(root: &Path) -> Result<Vec<PathBuf>> {
    let single = root.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index_path = root.join("model.safetensors.index.json");
    if !index_path.is_file() {
        return Err(Error::new(
            ErrorCode::InvalidModelFile,
            format!(
                "{} has neither model.safetensors nor model.safetensors.index.json",
                root.display()
            ),
        ));
    }
    let bad_index = |why: String| {
        Error::new(
            ErrorCode::InvalidModelFile,
            format!("model.safetensors.index.json: {why}"),
        )
    };
    let text = read_text(&index_path)?;
    let index: Value =
        serde_json::from_str(&text).map_err(|e| bad_index(format!("not valid JSON: {e}")))?;
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| bad_index("no 'weight_map' object".into()))?;
    let mut files: Vec<PathBuf> = vec![];
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad_index(format!("the file of '{tensor}' is not a string")))?;
        // The index is untrusted: a shard must be a plain file name inside the model directory.
        if file.is_empty() || file.contains(['/', '\\']) || file == ".." || file == "." {
            return Err(bad_index(format!(
                "shard name '{file}' is not a plain file name"
            )));
        }
        let path = root.join(file);
        if !files.contains(&path) {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(bad_index("'weight_map' is empty".into()));
    }
    files.sort();
    Ok(files)
}

/// Reads a text file, mapping failures to `IO_ERROR`.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorCode::Io,
            format!("cannot read {}: {e}", path.display()),
        )
    })
}
