//! The tokenizer and chat template stored in a GGUF file's metadata (`tokenizer.*`), rebuilt on
//! the `tokenizers` crate so that it agrees with llama.cpp's (src/llama-vocab.cpp) token for
//! token: tests/gguf_tokenizer.rs compares both over a corpus, with and without BOS/EOS and
//! special-token parsing.
//!
//! Two vocabulary kinds (`tokenizer.ggml.model`):
//! * `llama`: SentencePiece. llama.cpp merges, over the whole text, the adjacent pair whose
//!   concatenation is the vocabulary token with the highest score (`tokenizer.ggml.scores`), and
//!   falls back to `<0xNN>` byte tokens for characters outside the vocabulary. That is BPE with
//!   one merge per way of splitting a token into two tokens, ranked by the score of the result;
//!   spaces become `▁`, and each piece of text (the whole text, or what lies between special
//!   tokens) gets a leading `▁` unless `tokenizer.ggml.add_space_prefix` is false (Gemma).
//! * `gpt2`: byte-level BPE with `tokenizer.ggml.merges`, after the word splitting named by
//!   `tokenizer.ggml.pre` (see `pre_tokenizer.rs`).
//!
//! Special tokens are the control, user-defined and unknown tokens (`tokenizer.ggml.token_type`),
//! as in llama.cpp; they become added tokens matched in the raw text before anything else.
//! Control and unknown tokens are matched only when parsing special tokens (the `tokenizers`
//! crate's "special"); user-defined tokens always (its non-special added tokens). llama.cpp
//! also promotes some tokens to control tokens by their text (`<|im_end|>`, `<end_of_turn>`...)
//! and takes its end-of-generation set from the same lists; both are reproduced here.

use super::metadata::{MetaValue, Metadata};
use super::pre_tokenizer::{pre_tokenizer, PreTokenizer};
use crate::error::{Error, ErrorCode, Result};
use crate::tokenizer::Tokenizer;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

/// A GGUF file's tokenizer and what the model loader and chat templates need around it.
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    /// `tokenizer.ggml.bos_token_id`, or llama.cpp's default for the vocabulary kind.
    pub bos_token_id: Option<u32>,
    /// The tokens that end generation, as llama.cpp counts them: `tokenizer.ggml.eos_token_id`
    /// first, then the EOT/EOM ids and the tokens llama.cpp recognises by their text
    /// (`<|eot_id|>`, `<|im_end|>`, `<end_of_turn>`, ...), in id order.
    pub eos_token_ids: Vec<u32>,
    /// Whether encoding with special tokens prepends BOS / appends EOS
    /// (`tokenizer.ggml.add_bos_token` / `add_eos_token`, or llama.cpp's defaults).
    pub add_bos: bool,
    pub add_eos: bool,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// The named templates `tokenizer.chat_template.NAME` (e.g. `tool_use`), in file order.
    pub chat_templates: Vec<(String, String)>,
    /// ("bos_token", "<s>"), ("eos_token", ..), ("unk_token", ..), ("pad_token", ..): the texts
    /// of those tokens, for chat templates.
    pub named_special: Vec<(String, String)>,
}

/// What llama.cpp makes of a token (`llama_token_attr`), from its GGUF type and text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    /// Unused, byte and undefined tokens: never matched as special-token text.
    Other,
}

/// GGUF token types (`llama_token_type`).
fn kind_of_type(token_type: i64) -> Kind {
    match token_type {
        1 => Kind::Normal,
        2 => Kind::Unknown,
        3 => Kind::Control,
        4 => Kind::UserDefined,
        _ => Kind::Other,
    }
}

/// Texts llama.cpp takes for end of turn / end of message / fill-in-the-middle tokens when the
/// file names none (`llama_vocab::impl::load`); it makes them control tokens.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Tokens llama.cpp ends generation on by their text (and makes control tokens).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidTokenizer, message)
}

/// Metadata errors about tokenizer keys are tokenizer errors.
fn tokenizer_error(e: Error) -> Error {
    invalid(e.message)
}

/// The tokenizer of a GGUF file, from its metadata.
pub fn tokenizer_from_metadata(meta: &Metadata) -> Result<GgufTokenizer> {
    let model = read_model(meta)?;
    let texts = token_texts(meta)?;
    let n = texts.len();
    let mut ids = HashMap::with_capacity(n);
    for (i, t) in texts.iter().enumerate() {
        if ids.insert(t.as_str(), i as u32).is_some() {
            return Err(invalid(format!(
                "token {t:?} appears twice in tokenizer.ggml.tokens"
            )));
        }
    }
    let scores = token_scores(meta, n)?;
    let mut kinds = token_kinds(meta, n)?;
    let special = SpecialIds::read(meta, n, &model)?;

    let add_bos = meta
        .bool("tokenizer.ggml.add_bos_token")
        .map_err(tokenizer_error)?
        .unwrap_or(match model {
            Model::Spm { .. } => true,
            Model::Bpe(pre) => pre.add_bos,
        });
    let add_eos = meta
        .bool("tokenizer.ggml.add_eos_token")
        .map_err(tokenizer_error)?
        .unwrap_or(false);
    if add_bos && special.bos.is_none() {
        return Err(invalid("the GGUF tokenizer adds a BOS token but has none"));
    }
    if add_eos && special.eos.is_none() {
        return Err(invalid("the GGUF tokenizer adds an EOS token but has none"));
    }

    let eos_token_ids = end_of_generation(&mut kinds, &ids, &special);
    let rstrip = phi3_rstrip(meta, &kinds, &ids);
    let json = tokenizer_json(
        &Vocab {
            texts: &texts,
            scores: &scores,
            kinds: &kinds,
            rstrip: &rstrip,
            ids: &ids,
        },
        &model,
        meta,
        add_bos.then_some(special.bos).flatten(),
        add_eos.then_some(special.eos).flatten(),
        special.unk,
    )?;
    let tokenizer = Tokenizer::from_bytes(&json)
        .map_err(|e| invalid(format!("cannot build the GGUF tokenizer: {}", e.message)))?;

    let (chat_template, chat_templates) = chat_templates(meta)?;
    let named_special = [
        ("bos_token", special.bos),
        ("eos_token", special.eos),
        ("unk_token", special.unk),
        ("pad_token", special.pad),
    ]
    .into_iter()
    .filter_map(|(field, id)| Some((field.to_string(), texts[id? as usize].clone())))
    .collect();
    Ok(GgufTokenizer {
        tokenizer,
        bos_token_id: special.bos,
        eos_token_ids,
        add_bos,
        add_eos,
        chat_template,
        chat_templates,
        named_special,
    })
}

/// `tokenizer.ggml.model` (and `tokenizer.ggml.pre` for BPE).
enum Model {
    /// SentencePiece (`llama`): whether each piece of text gets a leading `▁`.
    Spm { add_space_prefix: bool },
    /// Byte-level BPE (`gpt2`).
    Bpe(PreTokenizer),
}

fn read_model(meta: &Metadata) -> Result<Model> {
    let model = meta
        .string("tokenizer.ggml.model")
        .map_err(tokenizer_error)?
        .ok_or_else(|| invalid("the GGUF file has no tokenizer (no 'tokenizer.ggml.model')"))?;
    match model {
        "llama" => Ok(Model::Spm {
            add_space_prefix: meta
                .bool("tokenizer.ggml.add_space_prefix")
                .map_err(tokenizer_error)?
                .unwrap_or(true),
        }),
        "gpt2" => {
            let name = meta.string("tokenizer.ggml.pre").map_err(tokenizer_error)?;
            pre_tokenizer(name).map(Model::Bpe).ok_or_else(|| {
                Error::new(
                    ErrorCode::UnsupportedConfig,
                    format!(
                        "GGUF pre-tokenizer '{}' (tokenizer.ggml.pre) is not supported",
                        name.unwrap_or_default()
                    ),
                )
            })
        }
        other => Err(Error::new(
            ErrorCode::UnsupportedConfig,
            format!(
                "GGUF tokenizer model '{other}' (tokenizer.ggml.model) is not supported; \
                 supported: 'llama' (SentencePiece), 'gpt2' (byte-level BPE)"
            ),
        )),
    }
}

/// `tokenizer.ggml.scores` (all 0 when absent, as in llama.cpp).
fn token_scores(meta: &Metadata, n: usize) -> Result<Vec<f32>> {
    match meta
        .numbers("tokenizer.ggml.scores")
        .map_err(tokenizer_error)?
    {
        Some(s) if s.len() < n => Err(invalid(format!(
            "tokenizer.ggml.scores has {} entries for {n} tokens",
            s.len()
        ))),
        Some(s) => Ok(s[..n].iter().map(|&v| v as f32).collect()),
        None => Ok(vec![0.0; n]),
    }
}

/// `tokenizer.ggml.token_type` (all normal when absent, as in llama.cpp).
fn token_kinds(meta: &Metadata, n: usize) -> Result<Vec<Kind>> {
    match meta
        .array("tokenizer.ggml.token_type")
        .map_err(tokenizer_error)?
    {
        Some(t) if t.len() < n => Err(invalid(format!(
            "tokenizer.ggml.token_type has {} entries for {n} tokens",
            t.len()
        ))),
        Some(t) => t[..n]
            .iter()
            .map(|v| {
                v.as_i64().map(kind_of_type).ok_or_else(|| {
                    invalid(format!(
                        "tokenizer.ggml.token_type must hold integers, found {}",
                        v.type_name()
                    ))
                })
            })
            .collect(),
        None => Ok(vec![Kind::Normal; n]),
    }
}

/// The special token ids: llama.cpp's defaults for the vocabulary kind, then the file's.
struct SpecialIds {
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    fim_pre: Option<u32>,
    fim_suf: Option<u32>,
    fim_mid: Option<u32>,
    fim_pad: Option<u32>,
    fim_rep: Option<u32>,
    fim_sep: Option<u32>,
}

impl SpecialIds {
    fn read(meta: &Metadata, n: usize, model: &Model) -> Result<Self> {
        let default = |id: u32| (id < n as u32).then_some(id);
        let (bos, eos, unk) = match model {
            Model::Spm { .. } => (default(1), default(2), default(0)),
            Model::Bpe(_) => (default(11), default(11), None),
        };
        // BOS, EOS, EOT and EOM drive generation: an id outside the vocabulary is an error.
        // llama.cpp ignores the others when they are out of range, and so do we.
        let id = |key: &str| special_id(meta, key, n, false);
        let fim = |key: &str, old: &str| -> Result<Option<u32>> { Ok(id(key)?.or(id(old)?)) };
        Ok(SpecialIds {
            bos: special_id(meta, "bos_token_id", n, true)?.or(bos),
            eos: special_id(meta, "eos_token_id", n, true)?.or(eos),
            unk: id("unknown_token_id")?.or(unk),
            pad: id("padding_token_id")?,
            eot: special_id(meta, "eot_token_id", n, true)?,
            eom: special_id(meta, "eom_token_id", n, true)?,
            fim_pre: fim("fim_pre_token_id", "prefix_token_id")?,
            fim_suf: fim("fim_suf_token_id", "suffix_token_id")?,
            fim_mid: fim("fim_mid_token_id", "middle_token_id")?,
            fim_pad: id("fim_pad_token_id")?,
            fim_rep: id("fim_rep_token_id")?,
            fim_sep: id("fim_sep_token_id")?,
        })
    }
}

/// llama.cpp's end-of-generation tokens, EOS first; promotes the tokens it recognises by their
/// text to control tokens, as llama.cpp does (`llama_vocab::impl::load`).
fn end_of_generation(
    kinds: &mut [Kind],
    ids: &HashMap<&str, u32>,
    special: &SpecialIds,
) -> Vec<u32> {
    let find = |list: &[&str]| -> Vec<u32> {
        let mut found: Vec<u32> = list.iter().filter_map(|t| ids.get(t).copied()).collect();
        found.sort_unstable();
        found
    };
    let mut promote = |found: &[u32]| {
        for &id in found {
            kinds[id as usize] = Kind::Control;
        }
    };
    // Ids the file leaves out are looked for by text.
    for (set, list) in [
        (special.eot, EOT_TEXTS),
        (special.eom, EOM_TEXTS),
        (special.fim_pre, FIM_PRE_TEXTS),
        (special.fim_suf, FIM_SUF_TEXTS),
        (special.fim_mid, FIM_MID_TEXTS),
        (special.fim_pad, FIM_PAD_TEXTS),
        (special.fim_rep, FIM_REP_TEXTS),
        (special.fim_sep, FIM_SEP_TEXTS),
    ] {
        if set.is_none() {
            promote(&find(list));
        }
    }
    let detected = |set: Option<u32>, list: &[&str]| set.or_else(|| find(list).first().copied());
    let mut eog: BTreeSet<u32> = [
        detected(special.fim_pad, FIM_PAD_TEXTS),
        detected(special.fim_rep, FIM_REP_TEXTS),
        detected(special.fim_sep, FIM_SEP_TEXTS),
    ]
    .into_iter()
    .flatten()
    .collect();
    let by_text = find(EOG_TEXTS);
    promote(&by_text);
    eog.extend(by_text);
    // gpt-oss: these are rendered even when special tokens are not.
    for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        if let Some(&id) = ids.get(t) {
            kinds[id as usize] = Kind::UserDefined;
        }
    }
    eog.extend(
        [special.eos, special.eot, special.eom]
            .into_iter()
            .flatten(),
    );
    let in_eog = |eog: &BTreeSet<u32>, t: &str| ids.get(t).filter(|id| eog.contains(id)).copied();
    // gpt-oss / Solar Open: <|end|> ends a message, not generation.
    if let Some(end) = in_eog(&eog, "<|end|>") {
        let harmony = in_eog(&eog, "<|return|>").is_some() && in_eog(&eog, "<|call|>").is_some();
        let solar = in_eog(&eog, "<|calls|>").is_some() && in_eog(&eog, "<|flush|>").is_some();
        if harmony || solar {
            eog.remove(&end);
            kinds[end as usize] = Kind::UserDefined;
        }
    }
    // Gemma 4: </s> is text.
    if let Some(s) = in_eog(&eog, "</s>") {
        if in_eog(&eog, "<|tool_response>").is_some() {
            eog.remove(&s);
            kinds[s as usize] = Kind::Normal;
        }
    }
    let mut out: Vec<u32> = special.eos.into_iter().collect();
    out.extend(eog.into_iter().filter(|&id| Some(id) != special.eos));
    out
}

/// Phi-3's special tokens swallow the whitespace after them: llama.cpp sets that by the model's
/// name (`general.name`), on every special token but `<unk>`, `<s>` and `<|endoftext|>`.
fn phi3_rstrip(meta: &Metadata, kinds: &[Kind], ids: &HashMap<&str, u32>) -> Vec<bool> {
    let name = meta
        .string("general.name")
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_lowercase();
    if !name.contains("phi-3") && !name.contains("phi3") {
        return vec![false; kinds.len()];
    }
    let mut rstrip: Vec<bool> = kinds
        .iter()
        .map(|k| matches!(k, Kind::Control | Kind::UserDefined | Kind::Unknown))
        .collect();
    for (t, on) in [
        ("</s>", true),
        ("<unk>", false),
        ("<s>", false),
        ("<|endoftext|>", false),
    ] {
        if let Some(&id) = ids.get(t) {
            rstrip[id as usize] = on;
        }
    }
    rstrip
}

/// `tokenizer.ggml.tokens`; empty entries are named `[EMPTY_i]` as llama.cpp names them.
fn token_texts(meta: &Metadata) -> Result<Vec<String>> {
    let tokens = meta
        .strings("tokenizer.ggml.tokens")
        .map_err(tokenizer_error)?
        .ok_or_else(|| invalid("the GGUF tokenizer has no 'tokenizer.ggml.tokens'"))?;
    if tokens.is_empty() {
        return Err(invalid("tokenizer.ggml.tokens is empty"));
    }
    if tokens.len() > u32::MAX as usize {
        return Err(invalid("tokenizer.ggml.tokens has too many tokens"));
    }
    Ok(tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                t.to_string()
            }
        })
        .collect())
}

/// `tokenizer.ggml.<key>`. An id outside the vocabulary is an error where the model needs it
/// (`required_in_range`: BOS, EOS, EOT, EOM); elsewhere llama.cpp ignores it, and so do we.
fn special_id(
    meta: &Metadata,
    key: &str,
    n: usize,
    required_in_range: bool,
) -> Result<Option<u32>> {
    let key = format!("tokenizer.ggml.{key}");
    let Some(value) = meta.get(&key) else {
        return Ok(None);
    };
    let Some(id) = value.as_u64() else {
        if !required_in_range {
            return Ok(None);
        }
        return Err(invalid(format!(
            "{key} must be a non-negative integer, found {}",
            value.type_name()
        )));
    };
    if id < n as u64 {
        Ok(Some(id as u32))
    } else if required_in_range {
        Err(invalid(format!(
            "{key} is {id}, outside the vocabulary of {n} tokens"
        )))
    } else {
        Ok(None)
    }
}

/// (name, template) pairs.
type NamedTemplates = Vec<(String, String)>;

/// `tokenizer.chat_template` and the named `tokenizer.chat_template.NAME`.
fn chat_templates(meta: &Metadata) -> Result<(Option<String>, NamedTemplates)> {
    let text = |key: &str, v: &MetaValue| match v {
        MetaValue::String(s) => Ok(s.clone()),
        v => Err(invalid(format!(
            "{key} must be a string, found {}",
            v.type_name()
        ))),
    };
    let mut default = None;
    let mut named = vec![];
    for (key, value) in meta.entries() {
        if key == "tokenizer.chat_template" {
            default = Some(text(key, value)?);
        } else if let Some(name) = key.strip_prefix("tokenizer.chat_template.") {
            named.push((name.to_string(), text(key, value)?));
        }
    }
    Ok((default, named))
}

/// The vocabulary as a tokenizer.json "vocab" object, in id order.
struct VocabMap<'a>(&'a [String]);

impl Serialize for VocabMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (id, text) in self.0.iter().enumerate() {
            map.serialize_entry(text, &id)?;
        }
        map.end()
    }
}

#[derive(serde::Serialize)]
struct BpeJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    dropout: Option<f32>,
    unk_token: Option<&'a str>,
    continuing_subword_prefix: Option<&'a str>,
    end_of_word_suffix: Option<&'a str>,
    fuse_unk: bool,
    byte_fallback: bool,
    ignore_merges: bool,
    vocab: VocabMap<'a>,
    merges: Vec<(&'a str, &'a str)>,
}

#[derive(serde::Serialize)]
struct TokenizerJson<'a> {
    version: &'static str,
    truncation: Option<()>,
    padding: Option<()>,
    added_tokens: Vec<Value>,
    normalizer: Value,
    pre_tokenizer: Value,
    post_processor: Value,
    decoder: Value,
    model: BpeJson<'a>,
}

/// The vocabulary as llama.cpp holds it.
struct Vocab<'a> {
    texts: &'a [String],
    scores: &'a [f32],
    kinds: &'a [Kind],
    /// Special tokens that take the whitespace after them.
    rstrip: &'a [bool],
    ids: &'a HashMap<&'a str, u32>,
}

/// The tokenizer as a tokenizer.json document; `bos`/`eos`: the tokens encoding with special
/// tokens adds.
fn tokenizer_json(
    vocab: &Vocab,
    model: &Model,
    meta: &Metadata,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
) -> Result<Vec<u8>> {
    let Vocab {
        texts,
        scores,
        kinds,
        rstrip,
        ids,
    } = *vocab;
    let added_tokens = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| matches!(k, Kind::Control | Kind::UserDefined | Kind::Unknown))
        .map(|(id, k)| {
            json!({
                "id": id,
                "content": texts[id],
                "single_word": false,
                "lstrip": false,
                "rstrip": rstrip[id],
                "normalized": false,
                "special": *k != Kind::UserDefined,
            })
        })
        .collect();

    let (normalizer, pre_tokenizer, decoder, model) = match *model {
        Model::Spm { add_space_prefix } => {
            // Spaces are `▁`; each piece of text between special tokens gets one in front.
            let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
            let normalizer = if add_space_prefix {
                json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, replace]})
            } else {
                replace
            };
            let mut decoders = vec![
                json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if add_space_prefix {
                decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            let model = BpeJson {
                kind: "BPE",
                dropout: None,
                unk_token: unk.map(|id| texts[id as usize].as_str()),
                continuing_subword_prefix: None,
                end_of_word_suffix: None,
                fuse_unk: true,
                byte_fallback: true,
                ignore_merges: false,
                vocab: VocabMap(texts),
                merges: spm_merges(texts, scores, ids),
            };
            (
                normalizer,
                Value::Null,
                json!({"type": "Sequence", "decoders": decoders}),
                model,
            )
        }
        Model::Bpe(pre) => {
            let mut steps: Vec<Value> = pre
                .regexes
                .iter()
                .map(|r| json!({"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false}))
                .collect();
            steps.push(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}));
            let model = BpeJson {
                kind: "BPE",
                dropout: None,
                unk_token: None,
                continuing_subword_prefix: None,
                end_of_word_suffix: None,
                fuse_unk: false,
                byte_fallback: false,
                ignore_merges: pre.ignore_merges,
                vocab: VocabMap(texts),
                merges: bpe_merges(meta, ids)?,
            };
            (
                Value::Null,
                json!({"type": "Sequence", "pretokenizers": steps}),
                json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}),
                model,
            )
        }
    };

    let post_processor = if bos.is_some() || eos.is_some() {
        let piece = |id: Option<u32>| {
            id.map(|id| json!({"SpecialToken": {"id": texts[id as usize], "type_id": 0}}))
        };
        let single: Vec<Value> = [
            piece(bos),
            Some(json!({"Sequence": {"id": "A", "type_id": 0}})),
            piece(eos),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut pair = single.clone();
        pair.extend(
            [
                piece(bos),
                Some(json!({"Sequence": {"id": "B", "type_id": 0}})),
                piece(eos),
            ]
            .into_iter()
            .flatten(),
        );
        let specials: serde_json::Map<String, Value> = [bos, eos]
            .into_iter()
            .flatten()
            .map(|id| {
                let t = &texts[id as usize];
                (t.clone(), json!({"id": t, "ids": [id], "tokens": [t]}))
            })
            .collect();
        json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
    } else {
        Value::Null
    };

    let doc = TokenizerJson {
        version: "1.0",
        truncation: None,
        padding: None,
        added_tokens,
        normalizer,
        pre_tokenizer,
        post_processor,
        decoder,
        model,
    };
    serde_json::to_vec(&doc).map_err(|e| invalid(format!("cannot build the GGUF tokenizer: {e}")))
}

/// Merges that make BPE tokenize as llama.cpp's SentencePiece tokenizer: every split of a
/// token into two tokens, ranked by the merged token's score (highest first; ties by id, then
/// by split position).
fn spm_merges<'a>(
    texts: &'a [String],
    scores: &[f32],
    ids: &HashMap<&str, u32>,
) -> Vec<(&'a str, &'a str)> {
    let mut merges: Vec<(u32, usize, &str, &str)> = vec![];
    for (id, text) in texts.iter().enumerate() {
        for (pos, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(pos);
            if ids.contains_key(left) && ids.contains_key(right) {
                merges.push((id as u32, pos, left, right));
            }
        }
    }
    merges.sort_by(|a, b| {
        scores[b.0 as usize]
            .total_cmp(&scores[a.0 as usize])
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    merges.into_iter().map(|(_, _, l, r)| (l, r)).collect()
}

/// `tokenizer.ggml.merges` ("left right", split at the first space after the first byte, as
/// llama.cpp splits them); a repeated pair keeps its first rank. Merges whose parts or result
/// are not tokens are left out: the `tokenizers` crate cannot hold them (llama.cpp would apply
/// them and spell out a result that is not a token byte by byte), and converters write none.
fn bpe_merges<'a>(meta: &'a Metadata, ids: &HashMap<&str, u32>) -> Result<Vec<(&'a str, &'a str)>> {
    let merges = meta
        .strings("tokenizer.ggml.merges")
        .map_err(tokenizer_error)?
        .ok_or_else(|| invalid("the GGUF BPE tokenizer has no 'tokenizer.ggml.merges'"))?;
    let mut seen = std::collections::HashSet::with_capacity(merges.len());
    let mut out = Vec::with_capacity(merges.len());
    for m in merges {
        let Some(pos) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
            continue;
        };
        let (left, right) = (&m[..pos], &m[pos + 1..]);
        if ids.contains_key(left)
            && ids.contains_key(right)
            && ids.contains_key(format!("{left}{right}").as_str())
            && seen.insert((left, right))
        {
            out.push((left, right));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentencepiece_merges_rank_by_the_merged_tokens_score() {
        let texts: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"]
            .map(String::from)
            .to_vec();
        let ids: HashMap<&str, u32> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0];
        assert_eq!(
            spm_merges(&texts, &scores, &ids),
            [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]
        );
    }

    #[test]
    fn bpe_merges_split_at_the_first_space_after_the_first_byte() {
        let texts: Vec<String> = ["é", "x", "éx", "a", "b", "ab", " ", " a"]
            .map(String::from)
            .to_vec();
        let ids: HashMap<&str, u32> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let mut meta = Metadata::default();
        let merges = ["é x", "a b", "a b", "ab", "  a", "q r"]
            .map(|m| MetaValue::String(m.into()))
            .to_vec();
        meta.insert("tokenizer.ggml.merges".into(), MetaValue::Array(merges));
        // "a b" again keeps its first rank; "ab" has no space; "q r" names no tokens.
        assert_eq!(
            bpe_merges(&meta, &ids).unwrap(),
            [("é", "x"), ("a", "b"), (" ", "a")]
        );
    }
}
