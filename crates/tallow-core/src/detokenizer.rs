//! Incremental detokenization: turns a growing list of token ids into text deltas, each valid
//! UTF-8. Decoding token by token is wrong for byte-level and SentencePiece vocabularies (a
//! character can span tokens; leading spaces depend on the neighbour), so each step decodes a
//! short window of recent tokens and emits only what that window added, holding back text that
//! still ends in an incomplete character (U+FFFD).

use crate::error::Result;
use crate::tokenizer::Tokenizer;

#[derive(Default)]
pub struct Detokenizer {
    ids: Vec<u32>,
    /// Start of the window whose text has already been emitted up to `read_offset`.
    prefix_offset: usize,
    /// Tokens before this index have been emitted.
    read_offset: usize,
}

impl Detokenizer {
    /// Adds `id`; returns the new text it completes, if any.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], true)?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..], true)?;
        if full.len() <= prefix.len() || full.ends_with('\u{FFFD}') || !full.starts_with(&prefix) {
            return Ok(String::new());
        }
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        Ok(full[prefix.len()..].to_string())
    }

    /// Text held back so far (an incomplete character at the end of generation).
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<String> {
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], true)?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..], true)?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok(full.strip_prefix(&prefix).unwrap_or("").to_string())
    }
}
