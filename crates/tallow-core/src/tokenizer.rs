//! Text ↔ token ids, over the `tokenizers` crate (tokenizer.json).

use crate::error::{Error, ErrorCode, Result};
use std::path::Path;

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::new(
                ErrorCode::Io,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| {
            Error::new(
                ErrorCode::InvalidTokenizer,
                format!("{} is not a valid tokenizer.json: {e}", path.display()),
            )
        })?;
        Ok(Tokenizer { inner })
    }

    /// Token ids of `text`; `add_special_tokens` applies the tokenizer's post-processor (e.g. BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, add_special_tokens).map_err(|e| {
            Error::new(ErrorCode::InvalidTokenizer, format!("encoding failed: {e}"))
        })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`; ids outside the vocabulary are an `INVALID_PROMPT` error.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let vocab = self.vocab_size();
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::new(
                ErrorCode::InvalidPrompt,
                format!("token id {bad} is outside the tokenizer's vocabulary of {vocab}"),
            ));
        }
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::new(ErrorCode::InvalidTokenizer, format!("decoding failed: {e}")))
    }

    /// Number of ids the tokenizer can produce, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token given by its text (e.g. `<|end_of_text|>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}
