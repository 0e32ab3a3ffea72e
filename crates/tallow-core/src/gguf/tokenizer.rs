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
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::SplitDelimiterBehavior::Isolated;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
};

/// Token text → id: the BPE model's own vocabulary type, so the map built to check the
/// metadata is the one the model keeps.
type Ids = tokenizers::models::bpe::Vocab;

/// BPE merges in rank order, as the builder takes them.
type Merges = Vec<(String, String)>;

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
    // A byte-level vocabulary's merges are read while the vocabulary map is built.
    let (ids, merges) = rayon::join(
        || token_ids(&texts),
        || matches!(model, Model::Bpe(_)).then(|| bpe_merges(meta)),
    );
    let ids = ids?;
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
    let tokenizer = build_tokenizer(
        &Vocab {
            texts: &texts,
            scores: &scores,
            kinds: &kinds,
            rstrip: &rstrip,
            unk: special.unk,
        },
        ids,
        merges,
        &model,
        meta,
        add_bos.then_some(special.bos).flatten(),
        add_eos.then_some(special.eos).flatten(),
    )?;

    let (chat_template, chat_templates) = chat_templates(meta)?;
    let named_special = [
        ("bos_token", special.bos),
        ("eos_token", special.eos),
        ("unk_token", special.unk),
        ("pad_token", special.pad),
    ]
    .into_iter()
    .filter_map(|(field, id)| Some((field.to_string(), texts[id? as usize].to_string())))
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
fn end_of_generation(kinds: &mut [Kind], ids: &Ids, special: &SpecialIds) -> Vec<u32> {
    let find = |list: &[&str]| -> Vec<u32> {
        let mut found: Vec<u32> = list.iter().filter_map(|&t| ids.get(t).copied()).collect();
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
fn phi3_rstrip(meta: &Metadata, kinds: &[Kind], ids: &Ids) -> Vec<bool> {
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
fn token_texts(meta: &Metadata) -> Result<Vec<Cow<'_, str>>> {
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
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            if t.is_empty() {
                Cow::Owned(format!("[EMPTY_{i}]"))
            } else {
                Cow::Borrowed(t)
            }
        })
        .collect())
}

/// Each token's id; a text may appear once.
fn token_ids(texts: &[Cow<str>]) -> Result<Ids> {
    let mut ids = Ids::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        if ids.insert(t.to_string(), i as u32).is_some() {
            return Err(invalid(format!(
                "token {t:?} appears twice in tokenizer.ggml.tokens"
            )));
        }
    }
    Ok(ids)
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

/// The vocabulary as llama.cpp holds it.
struct Vocab<'a> {
    texts: &'a [Cow<'a, str>],
    scores: &'a [f32],
    kinds: &'a [Kind],
    /// Special tokens that take the whitespace after them.
    rstrip: &'a [bool],
    /// The unknown token (used by SentencePiece vocabularies only).
    unk: Option<u32>,
}

fn build_error(e: impl std::fmt::Display) -> Error {
    invalid(format!("cannot build the GGUF tokenizer: {e}"))
}

/// The tokenizer, assembled from the `tokenizers` crate's parts as reading a tokenizer.json that
/// describes it would assemble it. `ids` becomes the BPE model's vocabulary; `merges`:
/// `bpe_merges(meta)` if already read; `bos`/`eos`: the tokens encoding with special tokens adds.
fn build_tokenizer(
    vocab: &Vocab,
    ids: Ids,
    merges: Option<Result<Merges>>,
    model: &Model,
    meta: &Metadata,
    bos: Option<u32>,
    eos: Option<u32>,
) -> Result<Tokenizer> {
    let Vocab {
        texts,
        scores,
        kinds,
        rstrip,
        unk,
    } = *vocab;
    let (normalizer, pre_tokenizer, decoder, bpe) = match *model {
        Model::Spm { add_space_prefix } => {
            // Spaces are `▁`; each piece of text between special tokens gets one in front.
            let replace: NormalizerWrapper = Replace::new(" ", "▁").map_err(build_error)?.into();
            let normalizer = if add_space_prefix {
                NormalizerSequence::new(vec![Prepend::new("▁".into()).into(), replace]).into()
            } else {
                replace
            };
            let mut decoders: Vec<DecoderWrapper> = vec![
                Replace::new("▁", " ").map_err(build_error)?.into(),
                ByteFallback::new().into(),
                Fuse::new().into(),
            ];
            if add_space_prefix {
                decoders.push(Strip::new(' ', 1, 0).into());
            }
            let merges = spm_merges(texts, scores, &ids);
            let mut bpe = BPE::builder()
                .vocab_and_merges(ids, merges)
                .fuse_unk(true)
                .byte_fallback(true);
            if let Some(unk) = unk {
                bpe = bpe.unk_token(texts[unk as usize].to_string());
            }
            let bpe = bpe.build().map_err(build_error)?;
            (
                Some(normalizer),
                None,
                DecoderSequence::new(decoders).into(),
                bpe,
            )
        }
        Model::Bpe(pre) => {
            let mut steps = pre
                .regexes
                .iter()
                .map(|r| {
                    Split::new(SplitPattern::Regex(r.to_string()), Isolated, false)
                        .map(PreTokenizerWrapper::from)
                        .map_err(build_error)
                })
                .collect::<Result<Vec<_>>>()?;
            steps.push(ByteLevel::new(false, true, false).into());
            let merges = match merges {
                Some(merges) => merges?,
                None => bpe_merges(meta)?,
            };
            let build = |ids: Ids, merges: Merges| {
                BPE::builder()
                    .vocab_and_merges(ids, merges)
                    .ignore_merges(pre.ignore_merges)
                    .build()
            };
            // The builder looks every merge up in the vocabulary and fails on one that is not
            // there. Converters write none, so only then are the merges looked up first.
            let bpe = build(ids, merges).or_else(|_| {
                let ids = token_ids(texts)?;
                let merges = merges_in_vocab(merge_pairs(meta)?, &ids);
                build(ids, merges).map_err(build_error)
            })?;
            (
                None,
                Some(PreTokenizerSequence::new(steps).into()),
                ByteLevel::new(true, true, true).into(),
                bpe,
            )
        }
    };
    let added_tokens = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| matches!(k, Kind::Control | Kind::UserDefined | Kind::Unknown))
        .map(|(id, k)| {
            AddedToken::from(texts[id].to_string(), *k != Kind::UserDefined)
                .single_word(false)
                .lstrip(false)
                .rstrip(rstrip[id])
                .normalized(false)
        })
        .collect();
    Tokenizer::from_parts(
        bpe.into(),
        normalizer,
        pre_tokenizer,
        post_processor(texts, bos, eos)?,
        Some(decoder),
        added_tokens,
    )
    .map_err(|e| build_error(e.message))
}

/// BOS and/or EOS around each sequence; None when encoding adds neither.
fn post_processor(
    texts: &[Cow<str>],
    bos: Option<u32>,
    eos: Option<u32>,
) -> Result<Option<PostProcessorWrapper>> {
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    // Template pieces name special tokens by a key of ours, not by their text: a text holding
    // `:`, `$` or a space would not parse as a piece.
    let named = [("bos", bos), ("eos", eos)];
    let template = |sequence: &'static str| -> Vec<&'static str> {
        let [bos, eos] = named.map(|(key, id)| id.map(|_| key));
        [bos, Some(sequence), eos].into_iter().flatten().collect()
    };
    let special_tokens = named
        .into_iter()
        .filter_map(|(key, id)| {
            let id = id?;
            let text = texts[id as usize].to_string();
            Some(SpecialToken::new(key.into(), vec![id], vec![text]))
        })
        .collect::<tokenizers::Result<Vec<_>>>()
        .map_err(build_error)?;
    let processor = TemplateProcessing::builder()
        .try_single(template("$A"))
        .map_err(build_error)?
        .try_pair([template("$A"), template("$B")].concat())
        .map_err(build_error)?
        .special_tokens(special_tokens)
        .build()
        .map_err(build_error)?;
    Ok(Some(processor.into()))
}

/// Merges that make BPE tokenize as llama.cpp's SentencePiece tokenizer: every split of a
/// token into two tokens, ranked by the merged token's score (highest first; ties by id, then
/// by split position).
fn spm_merges(texts: &[Cow<str>], scores: &[f32], ids: &Ids) -> Merges {
    // (score key, merged token id, byte position of the split); the key orders as
    // `f32::total_cmp` does, reversed.
    let score_key = |id: usize| {
        let bits = scores[id].to_bits() as i32;
        !(bits ^ (((bits >> 31) as u32) >> 1) as i32)
    };
    let mut splits: Vec<(i32, u32, usize)> = texts
        .par_iter()
        .enumerate()
        .flat_map_iter(|(id, text)| {
            text.char_indices().skip(1).filter_map(move |(pos, _)| {
                let (left, right) = text.split_at(pos);
                (ids.contains_key(left) && ids.contains_key(right))
                    .then(|| (score_key(id), id as u32, pos))
            })
        })
        .collect();
    // The keys are unique, so the unstable sort is deterministic.
    splits.par_sort_unstable();
    splits
        .into_par_iter()
        .map(|(_, id, pos)| {
            let (left, right) = texts[id as usize].split_at(pos);
            (left.to_string(), right.to_string())
        })
        .collect()
}

/// `tokenizer.ggml.merges` ("left right", split at the first space after the first byte, as
/// llama.cpp splits them); a repeated pair keeps its first rank.
fn merge_pairs(meta: &Metadata) -> Result<Vec<(&str, &str)>> {
    let merges = meta
        .strings("tokenizer.ggml.merges")
        .map_err(tokenizer_error)?
        .ok_or_else(|| invalid("the GGUF BPE tokenizer has no 'tokenizer.ggml.merges'"))?;
    // The text names the pair, so a repeated text is a repeated pair.
    let mut seen = HashSet::with_capacity(merges.len());
    Ok(merges
        .into_iter()
        .filter_map(|m| {
            let pos = m.bytes().skip(1).position(|b| b == b' ')? + 1;
            seen.insert(m).then(|| (&m[..pos], &m[pos + 1..]))
        })
        .collect())
}

/// The merges of a byte-level vocabulary, for the BPE builder.
fn bpe_merges(meta: &Metadata) -> Result<Merges> {
    Ok(merge_pairs(meta)?
        .into_iter()
        .map(|(left, right)| (left.to_string(), right.to_string()))
        .collect())
}

/// The merges whose parts and result are tokens: the `tokenizers` crate cannot hold the others
/// (llama.cpp would apply them and spell out a result that is not a token byte by byte).
fn merges_in_vocab(merges: Vec<(&str, &str)>, ids: &Ids) -> Merges {
    let mut merged = String::new();
    merges
        .into_iter()
        .filter(|&(left, right)| {
            merged.clear();
            merged.push_str(left);
            merged.push_str(right);
            ids.contains_key(left) && ids.contains_key(right) && ids.contains_key(merged.as_str())
        })
        .map(|(left, right)| (left.to_string(), right.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids_of(texts: &[&str]) -> Ids {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect()
    }

    fn pairs(merges: &[(String, String)]) -> Vec<(&str, &str)> {
        merges
            .iter()
            .map(|(l, r)| (l.as_str(), r.as_str()))
            .collect()
    }

    #[test]
    fn sentencepiece_merges_rank_by_the_merged_tokens_score() {
        let texts = ["a", "b", "c", "ab", "bc", "abc"];
        let cows: Vec<Cow<str>> = texts.map(Cow::Borrowed).to_vec();
        let scores = [0.0, 0.0, 0.0, -2.0, 0.5, -3.0];
        assert_eq!(
            pairs(&spm_merges(&cows, &scores, &ids_of(&texts))),
            [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]
        );
    }

    fn merges_meta(tokens: &[&str], merges: &[&str]) -> Metadata {
        let string = |t: &str| MetaValue::String(t.into());
        let strings = |v: &[&str]| MetaValue::Array(v.iter().map(|&t| string(t)).collect());
        let mut meta = Metadata::default();
        meta.insert("tokenizer.ggml.model".into(), string("gpt2"));
        meta.insert("tokenizer.ggml.pre".into(), string("gpt-2"));
        meta.insert("tokenizer.ggml.tokens".into(), strings(tokens));
        meta.insert("tokenizer.ggml.merges".into(), strings(merges));
        meta
    }

    #[test]
    fn bpe_merges_split_at_the_first_space_after_the_first_byte() {
        let tokens = ["é", "x", "éx", "a", "b", "ab", " ", " a"];
        let meta = merges_meta(&tokens, &["é x", "a b", "a b", "ab", "  a", "q r", "x a"]);
        // "a b" again keeps its first rank; "ab" has no space.
        let split = merge_pairs(&meta).unwrap();
        assert_eq!(
            split,
            [("é", "x"), ("a", "b"), (" ", "a"), ("q", "r"), ("x", "a")]
        );
        // "q r" names no tokens, "xa" is not one.
        assert_eq!(
            pairs(&merges_in_vocab(split, &ids_of(&tokens))),
            [("é", "x"), ("a", "b"), (" ", "a")]
        );
    }

    #[test]
    fn merges_outside_the_vocabulary_are_left_out() {
        let tokens = ["a", "b", "c", "ab", "bc"];
        let encode = |merges: &[&str]| {
            let tok = tokenizer_from_metadata(&merges_meta(&tokens, merges)).unwrap();
            tok.tokenizer.encode("abc", false, false).unwrap()
        };
        // "b c" keeps its first rank, ahead of "a b", whether or not a merge must be left out.
        assert_eq!(encode(&["b c", "a b", "b c"]), [0, 4]);
        assert_eq!(encode(&["b c", "q r", "a b", "b c", "c a"]), [0, 4]);
        assert_eq!(encode(&["a b", "b c"]), [3, 2]);
    }
}
