//! Text ↔ token ids, over the `tokenizers` crate (tokenizer.json).
//!
//! Special-token text inside a prompt (`<|im_start|>`, `<s>`, `<start_of_turn>`...) becomes a
//! control token only when the caller asks for it (`parse_special`); otherwise it is encoded as
//! the plain text it is, so that user content cannot inject turns into a conversation. The
//! `tokenizers` crate keeps that switch (`encode_special_tokens`, transformers'
//! `split_special_tokens=True`) on the tokenizer itself, not per call, so we hold two front ends
//! that differ only in it. They share one vocabulary model through an `Arc`: the model (vocab
//! and merges) is nearly all of a tokenizer's memory, so the second front end costs only its
//! added-token tables.

use crate::error::{Error, ErrorCode, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::{
    AddedToken, DecoderWrapper, Model, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizerWrapper, Token, TokenizerImpl,
};

/// The vocabulary model, shared by both front ends; every call is passed through.
#[derive(Clone)]
struct SharedModel(Arc<ModelWrapper>);

impl<'de> serde::Deserialize<'de> for SharedModel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        ModelWrapper::deserialize(d).map(|m| SharedModel(Arc::new(m)))
    }
}

impl Model for SharedModel {
    type Trainer = TrainerWrapper;

    fn tokenize(&self, sequence: &str) -> tokenizers::Result<Vec<Token>> {
        self.0.tokenize(sequence)
    }
    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.0.token_to_id(token)
    }
    fn id_to_token(&self, id: u32) -> Option<String> {
        self.0.id_to_token(id)
    }
    fn get_vocab(&self) -> HashMap<String, u32> {
        self.0.get_vocab()
    }
    fn get_vocab_size(&self) -> usize {
        self.0.get_vocab_size()
    }
    fn save(&self, folder: &Path, prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        self.0.save(folder, prefix)
    }
    fn get_trainer(&self) -> TrainerWrapper {
        self.0.get_trainer()
    }
}

type Inner = TokenizerImpl<
    SharedModel,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

pub struct Tokenizer {
    /// Matches special-token text as control tokens (`parse_special`); also used to decode.
    parsing: Inner,
    /// Encodes special-token text as plain text.
    literal: Inner,
    /// The decoder turns `<0xNN>` tokens into bytes (SentencePiece byte fallback).
    byte_fallback: bool,
    /// Ids are in `0..vocab_size` (the crate recounts the added tokens on every call).
    vocab_size: usize,
}

impl Tokenizer {
    /// Loads `path`: a tokenizer.json file, or a directory holding one.
    pub fn load(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        if !file.is_file() {
            return Err(Error::new(
                ErrorCode::TokenizerNotFound,
                if path.is_dir() {
                    format!("{} has no tokenizer.json", path.display())
                } else {
                    format!("{} does not exist", path.display())
                },
            ));
        }
        Self::from_file(&file)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::new(
                ErrorCode::Io,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::from_bytes(&bytes).map_err(|e| {
            Error::new(
                ErrorCode::InvalidTokenizer,
                format!(
                    "{} is not a valid tokenizer.json: {}",
                    path.display(),
                    e.message
                ),
            )
        })
    }

    /// Parses the content of a tokenizer.json.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let parsing = Inner::from_bytes(bytes)
            .map_err(|e| Error::new(ErrorCode::InvalidTokenizer, e.to_string()))?;
        Ok(Self::from_inner(parsing))
    }

    /// A tokenizer assembled from its parts, as tokenizer.json's reader assembles it: the
    /// stages first, then `added_tokens` (in id order) in one call, so their tables are built
    /// once.
    pub fn from_parts(
        model: ModelWrapper,
        normalizer: Option<NormalizerWrapper>,
        pre_tokenizer: Option<PreTokenizerWrapper>,
        post_processor: Option<PostProcessorWrapper>,
        decoder: Option<DecoderWrapper>,
        added_tokens: Vec<AddedToken>,
    ) -> Result<Self> {
        let invalid = |e: tokenizers::Error| Error::new(ErrorCode::InvalidTokenizer, e.to_string());
        let mut parsing = Inner::new(SharedModel(Arc::new(model)));
        parsing.with_normalizer(normalizer).map_err(invalid)?;
        parsing
            .with_pre_tokenizer(pre_tokenizer)
            .with_post_processor(post_processor)
            .with_decoder(decoder);
        parsing.add_tokens(added_tokens).map_err(invalid)?;
        Ok(Self::from_inner(parsing))
    }

    /// Both front ends from the one that parses special tokens.
    fn from_inner(parsing: Inner) -> Self {
        let mut literal = parsing.clone();
        literal.set_encode_special_tokens(true);
        let byte_fallback = parsing.get_decoder().is_some_and(has_byte_fallback);
        let vocab_size = parsing.get_vocab_size(true);
        Tokenizer {
            parsing,
            literal,
            byte_fallback,
            vocab_size,
        }
    }

    /// Token ids of `text`. `add_special_tokens` applies the tokenizer's post-processor (e.g.
    /// BOS); `parse_special` turns special-token text in `text` into those tokens, otherwise it
    /// is encoded as plain text.
    pub fn encode(
        &self,
        text: &str,
        add_special_tokens: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        let front = if parse_special {
            &self.parsing
        } else {
            &self.literal
        };
        let encoding = front.encode(text, add_special_tokens).map_err(|e| {
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
        self.parsing
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::new(ErrorCode::InvalidTokenizer, format!("decoding failed: {e}")))
    }

    /// Number of ids the tokenizer can produce, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a token given by its text (e.g. `<|end_of_text|>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.parsing.token_to_id(token)
    }

    /// Whether `decode(.., skip_special_tokens = true)` leaves `id` out: the same test the
    /// `tokenizers` crate applies.
    pub fn is_special(&self, id: u32) -> bool {
        self.parsing
            .id_to_token(id)
            .is_some_and(|t| self.parsing.get_added_vocabulary().is_special_token(&t))
    }

    /// Whether `id` is a byte-fallback token (`<0xE4>`) that the decoder turns into a raw byte.
    /// A run of them decodes as one group: valid UTF-8 or one U+FFFD per byte.
    pub fn is_byte_token(&self, id: u32) -> bool {
        self.byte_fallback
            && self.parsing.id_to_token(id).is_some_and(|t| {
                t.len() == 6
                    && t.starts_with("<0x")
                    && t.ends_with('>')
                    && u8::from_str_radix(&t[3..5], 16).is_ok()
            })
    }
}

fn has_byte_fallback(decoder: &DecoderWrapper) -> bool {
    match decoder {
        DecoderWrapper::ByteFallback(_) => true,
        DecoderWrapper::Sequence(s) => s.get_decoders().iter().any(has_byte_fallback),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Tokenizer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/models/llama-gqa-tied/tokenizer.json");
        Tokenizer::from_file(&path).unwrap()
    }

    #[test]
    fn special_token_text_is_plain_text_unless_parsed() {
        let t = fixture();
        let bos = t.token_id("<|begin_of_text|>").unwrap();
        let text = "hi <|begin_of_text|> there";
        let parsed = t.encode(text, false, true).unwrap();
        let literal = t.encode(text, false, false).unwrap();
        assert!(parsed.contains(&bos), "{parsed:?}");
        assert!(!literal.contains(&bos), "{literal:?}");
        // Both spell the same text.
        assert_eq!(t.decode(&literal, false).unwrap(), text);
        assert_eq!(t.decode(&parsed, false).unwrap(), text);
        // The post-processor's BOS is added either way.
        assert_eq!(t.encode(text, true, false).unwrap()[0], bos);
        assert!(t.is_special(bos));
        assert!(!t.is_special(literal[0]));
    }

    #[test]
    fn byte_level_vocabularies_have_no_byte_tokens() {
        let t = fixture();
        assert!((0..t.vocab_size() as u32).all(|id| !t.is_byte_token(id)));
    }

    #[test]
    fn a_directory_without_tokenizer_json_is_tokenizer_not_found() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let err = Tokenizer::load(&dir).err().unwrap();
        assert_eq!(err.code, ErrorCode::TokenizerNotFound);
        let err = Tokenizer::from_bytes(b"{\"model\": 42}").err().unwrap();
        assert_eq!(err.code, ErrorCode::InvalidTokenizer);
    }
}
