//! Structured output: generation constrained to a JSON Schema, a regular expression or a Lark
//! grammar, with llguidance (the library made for this: an Earley parser over a lexer, compiled
//! against the vocabulary's token trie so that one step's token mask costs microseconds to a
//! few milliseconds even for 150k-token vocabularies).
//!
//! Each step the constraint's mask sets every token that cannot continue a valid output to -inf,
//! before any other processor (see the module docs of `sampling`); the chosen token is then fed
//! to the parser. End-of-sequence tokens are allowed only where the output is complete, and when
//! the grammar admits nothing more the generation ends (finish detail `constraint`).
//!
//! The token trie needs every token's exact bytes; they are read from the model's tokenizer.json
//! (llguidance's own reader handles byte-level BPE and SentencePiece byte fallback) once per model,
//! on first use, on the engine thread.

use crate::error::{Error, ErrorCode, Result};
use crate::tokenizer::Tokenizer;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// Any JSON object (the OpenAI API's `json_object`).
    JsonObject,
    /// JSON valid under this JSON Schema.
    JsonSchema(serde_json::Value),
    /// Text matching this regular expression (Rust `regex` syntax), whole.
    Regex(String),
    /// Text in the language of this Lark grammar (llguidance's dialect).
    Lark(String),
}

/// JSON is generated compact (no whitespace between tokens, as `JSON.stringify` writes it): with
/// llguidance's default, flexible whitespace, a model may spend its tokens on blanks. A schema
/// that carries its own `x-guidance` options keeps them.
fn compact(mut schema: serde_json::Value) -> serde_json::Value {
    if schema.is_object() && schema.get("x-guidance").is_none() {
        JsonCompileOptions {
            whitespace_flexible: false,
            ..Default::default()
        }
        .apply_to(&mut schema);
    }
    schema
}

impl ResponseFormat {
    fn grammar(&self) -> TopLevelGrammar {
        match self {
            ResponseFormat::JsonObject => {
                TopLevelGrammar::from_json_schema(compact(serde_json::json!({ "type": "object" })))
            }
            ResponseFormat::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(compact(schema.clone()))
            }
            ResponseFormat::Regex(rx) => TopLevelGrammar::from_regex(rx),
            ResponseFormat::Lark(grammar) => TopLevelGrammar::from_lark(grammar.clone()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ResponseFormat::JsonObject => "json_object",
            ResponseFormat::JsonSchema(_) => "json_schema",
            ResponseFormat::Regex(_) => "regex",
            ResponseFormat::Lark(_) => "lark",
        }
    }
}

/// Every token's bytes, indexed by id, padded to the model's vocabulary (rows of the output
/// layer past the tokenizer's tokens are special tokens that are never allowed). Special tokens
/// start with `TokTrie::SPECIAL_TOKEN_MARKER`, as the trie wants them.
#[derive(Debug)]
pub struct TokenBytes {
    pieces: Vec<Vec<u8>>,
}

impl TokenBytes {
    /// From the pieces of a tokenizer (llguidance's convention for special tokens), padded to
    /// `vocab_size`.
    pub fn from_pieces(mut pieces: Vec<Vec<u8>>, vocab_size: usize) -> Self {
        while pieces.len() < vocab_size {
            let mut name = format!(".<[{}]>", pieces.len()).into_bytes();
            name[0] = TokTrie::SPECIAL_TOKEN_MARKER;
            pieces.push(name);
        }
        TokenBytes { pieces }
    }

    /// Reads a tokenizer.json.
    pub fn from_tokenizer_json(path: &Path, vocab_size: usize) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorCode::Io,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::new(
                ErrorCode::InvalidTokenizer,
                format!("{} is not JSON: {e}", path.display()),
            )
        })?;
        let pieces = llguidance::token_bytes_from_tokenizer_json(&json).map_err(|e| {
            Error::new(
                ErrorCode::InvalidTokenizer,
                format!("cannot read the token bytes of {}: {e}", path.display()),
            )
        })?;
        if pieces.len() > vocab_size {
            return Err(Error::new(
                ErrorCode::InvalidTokenizer,
                format!(
                    "{} has {} tokens but the model's vocabulary has {vocab_size}",
                    path.display(),
                    pieces.len()
                ),
            ));
        }
        Ok(Self::from_pieces(pieces, vocab_size))
    }

    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The bytes the token stands for (a special token's text without the marker; a lone 0xFF
    /// is the byte itself, as the trie reads it).
    pub fn bytes(&self, id: u32) -> &[u8] {
        match self.pieces.get(id as usize).map(Vec::as_slice) {
            Some([TokTrie::SPECIAL_TOKEN_MARKER, rest @ ..]) if !rest.is_empty() => rest,
            Some(piece) => piece,
            None => &[],
        }
    }

    /// The token's text; bytes that are not valid UTF-8 on their own become U+FFFD.
    pub fn text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.bytes(id)).into_owned()
    }
}

/// The tokenizer environment llguidance works in: the trie, and our tokenizer for the text it
/// tokenizes itself (forced prefixes).
struct Environment {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl TokenizerEnv for Environment {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.tokenizer
                .encode(text, false, false)
                .unwrap_or_default()
        })
    }
}

/// Builds constraints for one model; holds what is built once per model (the token bytes, the
/// trie and llguidance's parser factory), lazily.
pub struct ConstraintCompiler {
    tokenizer_json: PathBuf,
    tokenizer: Arc<Tokenizer>,
    vocab_size: usize,
    eos: Vec<u32>,
    bytes: OnceLock<std::result::Result<Arc<TokenBytes>, Error>>,
    factory: OnceLock<std::result::Result<Arc<ParserFactory>, Error>>,
}

impl ConstraintCompiler {
    /// For a model loaded from `model_path` (its directory, or a file beside its tokenizer.json).
    pub fn new(
        model_path: &Path,
        tokenizer: Arc<Tokenizer>,
        vocab_size: usize,
        eos: Vec<u32>,
    ) -> Self {
        let dir = if model_path.is_dir() {
            model_path.to_path_buf()
        } else {
            model_path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        };
        ConstraintCompiler {
            tokenizer_json: dir.join("tokenizer.json"),
            tokenizer,
            vocab_size,
            eos,
            bytes: OnceLock::new(),
            factory: OnceLock::new(),
        }
    }

    /// Every token's bytes (built on first use).
    pub fn token_bytes(&self) -> Result<Arc<TokenBytes>> {
        self.bytes
            .get_or_init(|| {
                if !self.tokenizer_json.is_file() {
                    // A GGUF model: its tokenizer lives in the file's metadata, not beside it.
                    return Err(Error::new(
                        ErrorCode::UnsupportedConfig,
                        "logprobs and responseFormat need the model's tokenizer.json (the bytes \
                         of every token); models loaded from a GGUF file do not support them yet",
                    ));
                }
                TokenBytes::from_tokenizer_json(&self.tokenizer_json, self.vocab_size).map(Arc::new)
            })
            .clone()
    }

    fn factory(&self) -> Result<Arc<ParserFactory>> {
        self.factory
            .get_or_init(|| {
                let bytes = self.token_bytes()?;
                let eos = *self.eos.first().ok_or_else(|| {
                    Error::new(
                        ErrorCode::InvalidOptions,
                        "responseFormat needs a model with an end-of-sequence token",
                    )
                })?;
                let info = TokRxInfo::new(bytes.len() as u32, eos);
                let mut trie = TokTrie::from(&info, &bytes.pieces);
                if self.eos.len() > 1 {
                    trie = trie.with_eos_tokens(&self.eos);
                }
                let env = Environment {
                    trie,
                    tokenizer: self.tokenizer.clone(),
                };
                let env: TokEnv = Arc::new(env);
                let mut factory = ParserFactory::new_simple(&env)
                    .map_err(|e| Error::new(ErrorCode::Internal, format!("llguidance: {e}")))?;
                // Grammar warnings and errors come back as values; nothing goes to stderr.
                factory.quiet();
                Ok(Arc::new(factory))
            })
            .clone()
    }

    /// Compiles `format` into a fresh constraint. A schema or grammar llguidance rejects is
    /// `INVALID_OPTIONS` with its message.
    pub fn compile(&self, format: &ResponseFormat) -> Result<Constraint> {
        let factory = self.factory()?;
        let parser = factory.create_parser(format.grammar()).map_err(|e| {
            Error::new(
                ErrorCode::InvalidOptions,
                format!("responseFormat ({}) is not usable: {e}", format.kind()),
            )
        })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::new(
                ErrorCode::InvalidOptions,
                format!("responseFormat ({}) is not usable: {e}", format.kind()),
            ));
        }
        Ok(Constraint { matcher })
    }
}

/// One sequence's constraint: the parser state after the tokens generated so far.
pub struct Constraint {
    matcher: Matcher,
}

impl Constraint {
    /// Sets every token the output cannot continue with to -inf in `logits` [vocab].
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self.matcher.compute_mask().map_err(|e| self.failure(e))?;
        apply_mask(&mask, logits);
        Ok(())
    }

    /// Advances the parser past the chosen token.
    pub fn accept(&mut self, id: u32) -> Result<()> {
        self.matcher.consume_token(id).map_err(|e| self.failure(e))
    }

    /// Whether the output is complete and nothing more may follow.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }

    fn failure(&self, e: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorCode::Internal,
            format!("the output constraint failed: {e}"),
        )
    }
}

/// -inf for every token whose bit is clear; 32 tokens at a time where a whole word is clear.
fn apply_mask(mask: &SimpleVob, logits: &mut [f32]) {
    for (w, &word) in mask.as_slice().iter().enumerate() {
        let start = w * 32;
        if start >= logits.len() {
            break;
        }
        if word == u32::MAX {
            continue;
        }
        let end = (start + 32).min(logits.len());
        for (bit, l) in logits[start..end].iter_mut().enumerate() {
            if word & (1 << bit) == 0 {
                *l = f32::NEG_INFINITY;
            }
        }
    }
    // Tokens past the mask (a mask shorter than the logits) are not allowed either.
    let covered = mask.as_slice().len() * 32;
    for l in logits.iter_mut().skip(covered) {
        *l = f32::NEG_INFINITY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> ConstraintCompiler {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/llama-gqa-tied");
        let tokenizer = Arc::new(Tokenizer::load(&dir).unwrap());
        ConstraintCompiler::new(&dir, tokenizer, 512, vec![1])
    }

    #[test]
    fn token_bytes_agree_with_the_tokenizer() {
        let c = fixture();
        let bytes = c.token_bytes().unwrap();
        assert_eq!(bytes.len(), 512);
        assert_eq!(bytes.bytes(1), b"<|end_of_text|>");
        let mut checked = 0;
        for id in 0..512u32 {
            // The tokenizer decodes a token to its bytes (U+FFFD for a partial character).
            let lossy = String::from_utf8_lossy(bytes.bytes(id));
            assert_eq!(
                c.tokenizer.decode(&[id], false).unwrap(),
                lossy,
                "token {id}"
            );
            checked += 1;
        }
        assert_eq!(checked, 512);
        // And a sequence's bytes, joined, are its text.
        let ids = c.tokenizer.encode("héllo wörld ✓", false, false).unwrap();
        let joined: Vec<u8> = ids.iter().flat_map(|&i| bytes.bytes(i).to_vec()).collect();
        assert_eq!(String::from_utf8(joined).unwrap(), "héllo wörld ✓");
    }

    #[test]
    fn a_regex_constraint_allows_only_its_language() {
        let c = fixture();
        let mut constraint = c
            .compile(&ResponseFormat::Regex("(yes|no)".into()))
            .unwrap();
        let bytes = c.token_bytes().unwrap();
        let mut logits = vec![0.0f32; 512];
        constraint.mask(&mut logits).unwrap();
        let allowed: Vec<u32> = (0..512).filter(|&i| logits[i as usize] == 0.0).collect();
        assert!(!allowed.is_empty());
        for id in allowed {
            let b = bytes.bytes(id);
            assert!(
                b"yes".starts_with(b) || b"no".starts_with(b),
                "{:?}",
                bytes.text(id)
            );
        }
    }

    #[test]
    fn an_invalid_grammar_is_invalid_options() {
        let c = fixture();
        let err = c
            .compile(&ResponseFormat::Lark("start: ( unclosed".into()))
            .err()
            .unwrap();
        assert_eq!(err.code, ErrorCode::InvalidOptions);
        assert!(err.message.contains("lark"), "{}", err.message);
    }
}
