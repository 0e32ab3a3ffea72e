//! llama.cpp's BPE pre-tokenizers (`tokenizer.ggml.pre`): how text is cut into words before the
//! byte-level merges, and the per-type defaults that come with the name.
//!
//! The regexes are llama.cpp's (src/llama-vocab.cpp, `llm_tokenizer_bpe`), applied in order, each
//! one splitting the pieces the previous one left (matches and the text between them both become
//! pieces), exactly as a `Sequence` of `Split(.., "Isolated")` pre-tokenizers does. llama.cpp
//! runs some of them through hand-written matchers (GPT-2, Llama 3, Qwen 2) and the rest through
//! `std::regex` over text whose non-ASCII characters are replaced by one placeholder per Unicode
//! category; both agree with the regexes below as written, which is what the GGUF tokenizer tests
//! check against llama.cpp. Where llama.cpp rewrote `(?i:'s|..)` as `'[sS]|..` we use its form:
//! Oniguruma's case folding would also match `'ſ` (U+017F), llama.cpp's does not.

/// GPT-2's word regex, with the trailing `\s+` that llama.cpp's matcher implements.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Llama 3's with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2's with combining marks kept in words.
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Mistral's Tekken, in llama.cpp's form: its `std::regex` has no `\p{Lu}`/`\p{Ll}`, so an
/// upper-case letter is "a letter that is not a-z" and a lower-case one "a letter that is not
/// A-Z" (every non-ASCII letter is both).
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's fallback for a missing or `default` pre-tokenizer: runs of punctuation first,
/// then GPT-2's words, then digit runs, then groups of three ASCII digits.
const DEFAULT: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"];

/// One `tokenizer.ggml.pre` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreTokenizer {
    /// Applied in order, each to the pieces the previous one produced.
    pub regexes: &'static [&'static str],
    /// A word that is itself in the vocabulary is one token, whatever the merges say.
    pub ignore_merges: bool,
    /// `tokenizer.ggml.add_bos_token` when the file does not say.
    pub add_bos: bool,
}

impl PreTokenizer {
    const fn new(regexes: &'static [&'static str]) -> Self {
        PreTokenizer {
            regexes,
            ignore_merges: false,
            add_bos: false,
        }
    }

    const fn with_bos_and_ignore_merges(regexes: &'static [&'static str]) -> Self {
        PreTokenizer {
            regexes,
            ignore_merges: true,
            add_bos: true,
        }
    }
}

/// The pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre` = `name` (None: absent), or None
/// if tallow does not implement it. The names are llama.cpp's, aliases included, for the types
/// of the model families tallow runs (and the types that share their regexes and defaults).
pub fn pre_tokenizer(name: Option<&str>) -> Option<PreTokenizer> {
    let Some(name) = name else {
        return Some(PreTokenizer::new(DEFAULT));
    };
    Some(match name {
        "default" => PreTokenizer::new(DEFAULT),
        "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling"
        | "exaone4" => PreTokenizer::new(&[GPT2]),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => PreTokenizer::with_bos_and_ignore_merges(&[LLAMA3]),
        "dbrx" | "smaug-bpe" => PreTokenizer::new(&[LLAMA3]),
        "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" => PreTokenizer::new(&[QWEN2]),
        "qwen35" => PreTokenizer::new(&[QWEN35]),
        "tekken" => PreTokenizer::with_bos_and_ignore_merges(&[TEKKEN]),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_llama_cpp_types() {
        assert_eq!(pre_tokenizer(None), pre_tokenizer(Some("default")));
        assert_eq!(pre_tokenizer(Some("default")).unwrap().regexes.len(), 4);
        let llama3 = pre_tokenizer(Some("llama-bpe")).unwrap();
        assert!(llama3.add_bos && llama3.ignore_merges);
        let dbrx = pre_tokenizer(Some("dbrx")).unwrap();
        assert_eq!(dbrx.regexes, llama3.regexes);
        assert!(!dbrx.add_bos && !dbrx.ignore_merges);
        assert!(pre_tokenizer(Some("deepseek-v3")).is_none());
    }
}
