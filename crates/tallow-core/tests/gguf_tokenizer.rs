//! The tokenizer built from a GGUF file's metadata against llama.cpp on the same file.
//!
//! fixtures/gguf/tokenizers/NAME.gguf are vocab-only GGUFs written by llama.cpp's converter and
//! NAME.json holds llama.cpp's `llama_tokenize` of the text corpus (fixtures/text/corpus.json
//! plus strings for each vocabulary) with add_special × parse_special, and `llama_detokenize`
//! of a few sequences; scripts/make_gguf_tokenizer_fixtures.py writes both.

mod common;

use common::ids;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tallow_core::error::ErrorCode;
use tallow_core::gguf::file::GgufFile;
use tallow_core::gguf::metadata::{MetaValue, Metadata};
use tallow_core::gguf::tokenizer::{tokenizer_from_metadata, GgufTokenizer};

const FIXTURES: &[&str] = &[
    "spm-llama",
    "spm-phi3",
    "spm-gemma",
    "bpe-default",
    "bpe-gpt2",
    "bpe-llama3",
    "bpe-qwen2",
    "bpe-qwen35",
    "bpe-tekken",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture_dir() -> PathBuf {
    root().join("fixtures/gguf/tokenizers")
}

fn metadata(path: &Path) -> Metadata {
    GgufFile::open(path).unwrap().metadata().clone()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

struct Case {
    name: String,
    text: String,
    /// llama.cpp's ids for (add_special, parse_special).
    ids: [(bool, bool, Vec<u32>); 4],
}

/// The cases of a reference file, with the texts and the tokenizations it leaves out restored
/// (see `compact` in the fixture script).
fn cases(reference: &Value) -> Vec<Case> {
    let corpus = read_json(&root().join(reference["corpus"].as_str().unwrap()));
    let corpus: HashMap<&str, &str> = corpus["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["text"].as_str().unwrap()))
        .collect();
    let max_chars = reference["max_chars"].as_u64().unwrap() as usize;
    let vocab = &reference["vocab"];
    let with_special = |ids: &[u32]| -> Vec<u32> {
        let mut out = vec![];
        if vocab["add_bos"].as_bool().unwrap() {
            out.push(vocab["bos"].as_u64().unwrap() as u32);
        }
        out.extend_from_slice(ids);
        if vocab["add_eos"].as_bool().unwrap() {
            out.push(vocab["eos"].as_u64().unwrap() as u32);
        }
        out
    };
    reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let text = match c.get("text") {
                Some(t) => t.as_str().unwrap().to_string(),
                None => corpus[name.as_str()].chars().take(max_chars).collect(),
            };
            let ff = ids(&c["ff"]);
            let ft = c.get("ft").map(ids).unwrap_or_else(|| ff.clone());
            let tf = c.get("tf").map(ids).unwrap_or_else(|| with_special(&ff));
            let tt = c.get("tt").map(ids).unwrap_or_else(|| with_special(&ft));
            Case {
                name,
                text,
                ids: [
                    (false, false, ff),
                    (false, true, ft),
                    (true, false, tf),
                    (true, true, tt),
                ],
            }
        })
        .collect()
}

/// Encodes every case four ways; returns (comparisons, mismatch descriptions).
fn compare(tok: &GgufTokenizer, cases: &[Case]) -> (usize, Vec<String>) {
    let mut compared = 0;
    let mut mismatches = vec![];
    for case in cases {
        for (add_special, parse_special, expected) in &case.ids {
            compared += 1;
            let got = tok
                .tokenizer
                .encode(&case.text, *add_special, *parse_special)
                .unwrap();
            if &got != expected {
                mismatches.push(format!(
                    "{} (add_special {add_special}, parse_special {parse_special}) {:?}\n  llama.cpp {expected:?}\n  ours      {got:?}",
                    case.name, case.text
                ));
            }
        }
    }
    (compared, mismatches)
}

fn check_vocab(name: &str, tok: &GgufTokenizer, reference: &Value) {
    let vocab = &reference["vocab"];
    let n = vocab["n_tokens"].as_u64().unwrap() as usize;
    assert_eq!(tok.tokenizer.vocab_size(), n, "{name}");
    let bos = vocab["bos"].as_i64().unwrap();
    assert_eq!(tok.bos_token_id.map(i64::from).unwrap_or(-1), bos, "{name}");
    assert_eq!(tok.add_bos, vocab["add_bos"].as_bool().unwrap(), "{name}");
    assert_eq!(tok.add_eos, vocab["add_eos"].as_bool().unwrap(), "{name}");
    // EOS first, then the rest of llama.cpp's end-of-generation set.
    let eos = vocab["eos"].as_i64().unwrap();
    assert_eq!(i64::from(tok.eos_token_ids[0]), eos, "{name}");
    let mut ours = tok.eos_token_ids.clone();
    ours.sort_unstable();
    assert_eq!(ours, ids(&vocab["eog"]), "{name}: end-of-generation tokens");
}

#[test]
fn tokenizes_as_llama_cpp() {
    let mut total = 0;
    let mut failures = vec![];
    for name in FIXTURES {
        let dir = fixture_dir();
        let tok = tokenizer_from_metadata(&metadata(&dir.join(format!("{name}.gguf")))).unwrap();
        let reference = read_json(&dir.join(format!("{name}.json")));
        check_vocab(name, &tok, &reference);
        let cases = cases(&reference);
        assert!(cases.len() > 300, "{name}");
        let (compared, mismatches) = compare(&tok, &cases);
        total += compared;
        eprintln!(
            "{name}: {compared} tokenizations, {} differ from llama.cpp",
            mismatches.len()
        );
        failures.extend(mismatches.into_iter().map(|m| format!("{name}: {m}")));
    }
    assert!(
        failures.is_empty(),
        "{} of {total} tokenizations differ from llama.cpp:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

#[test]
fn decodes_as_llama_cpp() {
    for name in FIXTURES {
        let dir = fixture_dir();
        let tok = tokenizer_from_metadata(&metadata(&dir.join(format!("{name}.gguf")))).unwrap();
        let reference = read_json(&dir.join(format!("{name}.json")));
        let bos = reference["vocab"]["bos"].as_u64().unwrap() as u32;
        let space_prefix = name.starts_with("spm") && *name != "spm-gemma";
        for d in reference["detokenize"].as_array().unwrap() {
            let seq = ids(&d["ids"]);
            // llama_detokenize(remove_special = false, unparse_special = true): every token.
            assert_eq!(
                tok.tokenizer.decode(&seq, false).unwrap(),
                d["special"].as_str().unwrap(),
                "{name}: {seq:?}"
            );
            // unparse_special = false: control tokens left out. llama.cpp removes the space
            // SentencePiece put before the text only when the text comes first; after a BOS it
            // keeps it (" Hello"), where we give back the text that was encoded ("Hello").
            let plain = d["plain"].as_str().unwrap();
            let expected = match plain.strip_prefix(' ') {
                Some(rest) if space_prefix && seq[0] == bos => rest,
                _ => plain,
            };
            assert_eq!(
                tok.tokenizer.decode(&seq, true).unwrap(),
                expected,
                "{name}: {seq:?}"
            );
        }
    }
}

#[test]
fn decoding_round_trips() {
    for name in FIXTURES {
        let dir = fixture_dir();
        let tok = tokenizer_from_metadata(&metadata(&dir.join(format!("{name}.gguf")))).unwrap();
        let reference = read_json(&dir.join(format!("{name}.json")));
        for case in cases(&reference) {
            // A literal "▁" in SentencePiece text is a space once encoded.
            if name.starts_with("spm") && case.text.contains('▁') {
                continue;
            }
            let ids = tok.tokenizer.encode(&case.text, true, false).unwrap();
            assert_eq!(
                tok.tokenizer.decode(&ids, true).unwrap(),
                case.text,
                "{name}: {}",
                case.name
            );
        }
    }
}

fn load(name: &str) -> GgufTokenizer {
    tokenizer_from_metadata(&metadata(&fixture_dir().join(format!("{name}.gguf")))).unwrap()
}

fn named(tok: &GgufTokenizer) -> HashMap<&str, &str> {
    tok.named_special
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn fields_of_a_sentencepiece_vocabulary() {
    let llama = load("spm-llama");
    assert_eq!(llama.bos_token_id, Some(1));
    assert_eq!(llama.eos_token_ids, vec![2]);
    assert!(llama.add_bos && !llama.add_eos);
    assert!(llama
        .chat_template
        .as_deref()
        .unwrap()
        .contains("'[INST] ' + content.strip()"));
    assert!(llama.chat_templates.is_empty());
    let n = named(&llama);
    assert_eq!(n["bos_token"], "<s>");
    assert_eq!(n["eos_token"], "</s>");
    assert_eq!(n["unk_token"], "<unk>");
    assert!(!n.contains_key("pad_token"));
    // Byte fallback: a character outside the 512 pieces is its UTF-8 bytes.
    let t = &llama.tokenizer;
    let ids = t.encode("ж", false, false).unwrap();
    assert!(ids.iter().skip(1).all(|&id| t.is_byte_token(id)), "{ids:?}");
    assert_eq!(t.decode(&ids, false).unwrap(), "ж");
    assert!(t.is_special(1) && t.is_special(0) && !t.is_special(ids[1]));

    let gemma = load("spm-gemma");
    assert_eq!(gemma.bos_token_id, Some(2));
    let end_of_turn = gemma.tokenizer.token_id("<end_of_turn>").unwrap();
    let eos = gemma.tokenizer.token_id("<eos>").unwrap();
    // EOS from the file, then <end_of_turn> and </s> (here an HTML tag, as in Gemma 3), which
    // llama.cpp ends generation on by their text.
    let html_s = gemma.tokenizer.token_id("</s>").unwrap();
    let mut rest = [end_of_turn, html_s];
    rest.sort_unstable();
    assert_eq!(gemma.eos_token_ids[0], eos);
    assert_eq!(&gemma.eos_token_ids[1..], &rest[..]);
    assert_eq!(named(&gemma)["pad_token"], "<pad>");
    assert!(gemma
        .chat_template
        .as_deref()
        .unwrap()
        .contains("<start_of_turn>"));
    // No space prefix: "hi" and " hi" differ.
    let t = &gemma.tokenizer;
    assert_ne!(
        t.encode("hi", false, false).unwrap(),
        t.encode(" hi", false, false).unwrap()
    );
    // User-defined tokens are matched even when special tokens are not parsed.
    let newline2 = t.token_id("\n\n").unwrap();
    assert!(t
        .encode("a\n\nb", false, false)
        .unwrap()
        .contains(&newline2));
    assert!(!t.is_special(newline2));
}

#[test]
fn fields_of_a_byte_level_vocabulary() {
    let qwen = load("bpe-qwen2");
    let t = &qwen.tokenizer;
    let id = |s: &str| t.token_id(s).unwrap();
    assert!(!qwen.add_bos && !qwen.add_eos);
    assert_eq!(qwen.bos_token_id, Some(id("<|endoftext|>")));
    // <|im_end|> (EOS), then <|endoftext|>, <|end_of_text|> and the FIM tokens llama.cpp ends
    // generation on.
    let mut rest = [
        id("<|endoftext|>"),
        id("<|end_of_text|>"),
        id("<|fim_pad|>"),
        id("<|repo_name|>"),
        id("<|file_sep|>"),
    ];
    rest.sort_unstable();
    assert_eq!(qwen.eos_token_ids[0], id("<|im_end|>"));
    assert_eq!(&qwen.eos_token_ids[1..], &rest[..]);
    assert_eq!(qwen.chat_templates.len(), 1);
    assert_eq!(qwen.chat_templates[0].0, "tool_use");
    assert!(qwen.chat_templates[0].1.contains("<tool_call>"));
    assert!(qwen.chat_template.as_deref().unwrap().contains("<think>"));
    assert_eq!(named(&qwen)["pad_token"], "<|endoftext|>");
    // <tool_call> is user-defined: not special, matched in plain text.
    assert!(!t.is_special(id("<tool_call>")));
    assert_eq!(
        t.encode("<tool_call>", false, false).unwrap(),
        vec![id("<tool_call>")]
    );
    assert_ne!(
        t.encode("<|im_start|>", false, false).unwrap(),
        vec![id("<|im_start|>")]
    );

    let llama3 = load("bpe-llama3");
    assert!(llama3.add_bos);
    let t = &llama3.tokenizer;
    assert_eq!(
        t.encode("hi", true, false).unwrap()[0],
        t.token_id("<|begin_of_text|>").unwrap()
    );
}

/// The metadata of fixture `name` with `key` replaced (None: removed).
fn edited(name: &str, changes: &[(&str, Option<MetaValue>)]) -> Metadata {
    let original = metadata(&fixture_dir().join(format!("{name}.gguf")));
    let mut meta = Metadata::default();
    for (key, value) in original.entries() {
        match changes.iter().find(|(k, _)| *k == key) {
            Some((_, Some(v))) => meta.insert(key.to_string(), v.clone()),
            Some((_, None)) => true,
            None => meta.insert(key.to_string(), value.clone()),
        };
    }
    for (key, value) in changes {
        if !original.contains(key) {
            if let Some(v) = value {
                meta.insert(key.to_string(), v.clone());
            }
        }
    }
    meta
}

fn error(meta: &Metadata) -> tallow_core::error::Error {
    tokenizer_from_metadata(meta).err().unwrap()
}

#[test]
fn unsupported_and_invalid_tokenizers_are_errors() {
    let s = |v: &str| Some(MetaValue::String(v.into()));
    let err = error(&edited(
        "bpe-llama3",
        &[("tokenizer.ggml.pre", s("deepseek-v3"))],
    ));
    assert_eq!(err.code, ErrorCode::UnsupportedConfig);
    assert!(err.message.contains("deepseek-v3"), "{}", err.message);
    let err = error(&edited("spm-llama", &[("tokenizer.ggml.model", s("t5"))]));
    assert_eq!(err.code, ErrorCode::UnsupportedConfig);
    assert!(err.message.contains("'t5'"), "{}", err.message);

    for (name, changes) in [
        ("spm-llama", vec![("tokenizer.ggml.model", None)]),
        ("spm-llama", vec![("tokenizer.ggml.tokens", None)]),
        (
            "spm-llama",
            vec![(
                "tokenizer.ggml.scores",
                Some(MetaValue::Array(vec![MetaValue::F32(0.0); 3])),
            )],
        ),
        (
            "spm-llama",
            vec![(
                "tokenizer.ggml.token_type",
                Some(MetaValue::Array(vec![MetaValue::I32(1); 511])),
            )],
        ),
        (
            "spm-llama",
            vec![("tokenizer.ggml.bos_token_id", Some(MetaValue::U32(512)))],
        ),
        (
            "bpe-qwen2",
            vec![("tokenizer.ggml.eos_token_id", Some(MetaValue::U32(100_000)))],
        ),
        ("bpe-gpt2", vec![("tokenizer.ggml.merges", None)]),
        (
            "bpe-gpt2",
            vec![("tokenizer.ggml.tokens", Some(MetaValue::Array(vec![])))],
        ),
        (
            "spm-llama",
            vec![(
                "tokenizer.ggml.tokens",
                Some(MetaValue::Array(vec![s("a").unwrap(), s("a").unwrap()])),
            )],
        ),
    ] {
        let err = error(&edited(name, &changes));
        assert_eq!(err.code, ErrorCode::InvalidTokenizer, "{changes:?}: {err}");
    }
}

/// Development check, not run in CI: vocab-only GGUFs of real tokenizers (tens of MB, written
/// by `scripts/make_gguf_tokenizer_fixtures.py --real DIR`) against llama.cpp.
///
///     TALLOW_GGUF_REAL=/tmp/gguf-real cargo test -p tallow-core --test gguf_tokenizer -- --ignored --nocapture
#[test]
#[ignore]
fn real_tokenizers_tokenize_as_llama_cpp() {
    let dir = PathBuf::from(std::env::var("TALLOW_GGUF_REAL").expect("TALLOW_GGUF_REAL"));
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    let mut failures = 0;
    for json in names {
        let gguf = json.with_extension("gguf");
        let start = std::time::Instant::now();
        let tok = tokenizer_from_metadata(&metadata(&gguf)).unwrap();
        let built = start.elapsed();
        let reference = read_json(&json);
        let name = json.file_stem().unwrap().to_string_lossy().to_string();
        check_vocab(&name, &tok, &reference);
        let (compared, mismatches) = compare(&tok, &cases(&reference));
        eprintln!(
            "{name}: built in {built:.2?}; {compared} tokenizations, {} differ from llama.cpp",
            mismatches.len()
        );
        for m in mismatches.iter().take(5) {
            eprintln!("  {m}");
        }
        failures += mismatches.len();
    }
    assert_eq!(failures, 0);
}
