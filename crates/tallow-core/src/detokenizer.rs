//! Incremental detokenization: turns a growing list of token ids into text deltas whose
//! concatenation is exactly `decode(all ids)`, each valid UTF-8 and holding no U+FFFD that the
//! full decode does not have.
//!
//! Decoding token by token is wrong: a character can span tokens (byte-level BPE, SentencePiece
//! byte fallback), and decoders treat the first token differently (SentencePiece strips the
//! space it prepended). So each step decodes a window of recent tokens twice, with and without
//! the new ones, and emits what the new ones added. The window starts one emission back, so
//! the first-token rules hit a token already emitted in both decodes. Text is held back while:
//! - the window's text ends in U+FFFD: an incomplete character that later bytes may complete;
//! - the last token that decodes to anything is a byte-fallback token (`<0xE4>`): the decoder
//!   turns a run of them into text as one group (valid UTF-8, or one U+FFFD per byte), so the
//!   text of a run is settled only once a token that is not a byte ends it. A window never
//!   starts inside a run, for the same reason.

use crate::error::Result;
use crate::tokenizer::Tokenizer;

pub struct Detokenizer {
    skip_special_tokens: bool,
    /// Tokens from the start of the current window on (earlier ones are dropped).
    ids: Vec<u32>,
    /// Start of the window: the tokens of the last emission, whose text is emitted already.
    prefix_offset: usize,
    /// Tokens before this index have been emitted.
    read_offset: usize,
}

impl Default for Detokenizer {
    /// Special tokens (BOS, EOS...) are left out of the text, as in generated text.
    fn default() -> Self {
        Detokenizer::new(true)
    }
}

impl Detokenizer {
    pub fn new(skip_special_tokens: bool) -> Self {
        Detokenizer {
            skip_special_tokens,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    /// Adds `id`; returns the new text it completes, if any.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let last_visible = self
            .ids
            .iter()
            .rev()
            .find(|&&id| !(self.skip_special_tokens && tokenizer.is_special(id)));
        if last_visible.is_some_and(|&id| tokenizer.is_byte_token(id)) {
            // Validates the id now rather than when the run ends.
            tokenizer.decode(&[id], self.skip_special_tokens)?;
            return Ok(String::new());
        }
        let (prefix, full) = self.window(tokenizer)?;
        if full.len() <= prefix.len() || full.ends_with('\u{FFFD}') || !full.starts_with(&prefix) {
            return Ok(String::new());
        }
        let text = full[prefix.len()..].to_string();
        self.advance();
        Ok(text)
    }

    /// Text held back so far (an incomplete character or byte run at the end of generation).
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<String> {
        let (prefix, full) = self.window(tokenizer)?;
        let text = full.strip_prefix(&prefix).unwrap_or("").to_string();
        if !text.is_empty() {
            self.advance();
        }
        Ok(text)
    }

    /// The text of the window's emitted tokens, and of the whole window.
    fn window(&self, tokenizer: &Tokenizer) -> Result<(String, String)> {
        let skip = self.skip_special_tokens;
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], skip)?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..], skip)?;
        Ok((prefix, full))
    }

    /// Marks every token emitted; the tokens just emitted become the next window's start.
    fn advance(&mut self) {
        self.ids.drain(..self.read_offset);
        self.prefix_offset = 0;
        self.read_offset = self.ids.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture() -> Tokenizer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/models/llama-gqa-tied/tokenizer.json");
        Tokenizer::from_file(&path).unwrap()
    }

    fn stream(t: &Tokenizer, ids: &[u32], skip: bool) -> Vec<String> {
        let mut d = Detokenizer::new(skip);
        let mut chunks: Vec<String> = ids.iter().map(|&id| d.push(t, id).unwrap()).collect();
        chunks.push(d.flush(t).unwrap());
        chunks
    }

    #[test]
    fn chunks_add_up_to_the_full_decode() {
        let t = fixture();
        for text in [
            "The orchard in winter",
            "naïve café — 中文 😀 👨‍👩‍👧",
            "  spaces\n\n\tand tabs ",
            "<|begin_of_text|>a<|end_of_text|>b",
        ] {
            let ids = t.encode(text, true, true).unwrap();
            for skip in [true, false] {
                let chunks = stream(&t, &ids, skip);
                assert_eq!(chunks.concat(), t.decode(&ids, skip).unwrap(), "{text:?}");
                assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')), "{chunks:?}");
            }
        }
    }

    #[test]
    fn a_split_character_is_held_until_complete() {
        let t = fixture();
        // "😀" is four bytes; a byte-level vocabulary this small spells it in several tokens.
        let ids = t.encode("😀", false, false).unwrap();
        assert!(ids.len() > 1, "{ids:?}");
        let chunks = stream(&t, &ids, true);
        assert!(
            chunks[..ids.len() - 1].iter().all(String::is_empty),
            "{chunks:?}"
        );
        assert_eq!(chunks[ids.len() - 1], "😀");
    }

    #[test]
    fn invalid_bytes_come_out_at_the_end() {
        let t = fixture();
        // The first two tokens of "😀": an incomplete character that nothing completes.
        let ids = t.encode("😀", false, false).unwrap();
        let chunks = stream(&t, &ids[..2], true);
        assert_eq!(chunks.concat(), t.decode(&ids[..2], true).unwrap());
        assert!(chunks.last().unwrap().contains('\u{FFFD}'));
    }

    #[test]
    fn long_streams_keep_a_short_window() {
        let t = fixture();
        let ids = t.encode(&"a b c ".repeat(200), false, false).unwrap();
        let mut d = Detokenizer::default();
        let mut text = String::new();
        for &id in &ids {
            text += &d.push(&t, id).unwrap();
            assert!(d.ids.len() <= 4, "window of {} tokens", d.ids.len());
        }
        assert_eq!(text + &d.flush(&t).unwrap(), t.decode(&ids, true).unwrap());
    }

    /// A SentencePiece-style tokenizer as Llama 2's tokenizer.json has it: byte fallback, and a
    /// decoder that strips the space prepended to the first word.
    fn sentencepiece() -> Tokenizer {
        let special = |id: u32, content: &str| {
            format!(
                r#"{{"id":{id},"content":"{content}","single_word":false,"lstrip":false,
                "rstrip":false,"normalized":false,"special":true}}"#
            )
        };
        let json = format!(
            r#"{{"version":"1.0","truncation":null,"padding":null,
            "added_tokens":[{},{},{}],
            "normalizer":null,"pre_tokenizer":null,"post_processor":null,
            "decoder":{{"type":"Sequence","decoders":[
                {{"type":"Replace","pattern":{{"String":"▁"}},"content":" "}},
                {{"type":"ByteFallback"}},{{"type":"Fuse"}},
                {{"type":"Strip","content":" ","start":1,"stop":0}}]}},
            "model":{{"type":"BPE","dropout":null,"unk_token":"<unk>",
                "continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":true,
                "byte_fallback":true,"ignore_merges":false,
                "vocab":{{"<unk>":0,"<s>":1,"</s>":2,"<0xE4>":3,"<0xB8>":4,"<0xAD>":5,
                    "<0xFF>":6,"▁":7,"a":8,"b":9,"▁a":10,"▁b":11}},
                "merges":[["▁","a"],["▁","b"]]}}}}"#,
            special(0, "<unk>"),
            special(1, "<s>"),
            special(2, "</s>"),
        );
        Tokenizer::from_bytes(json.as_bytes()).unwrap()
    }

    const A: u32 = 10; // "▁a"
    const B: u32 = 11; // "▁b"
    const EOS: u32 = 2;
    const ZHONG: [u32; 3] = [3, 4, 5]; // <0xE4> <0xB8> <0xAD>: "中"
    const FF: u32 = 6; // <0xFF>: never valid UTF-8

    #[test]
    fn a_byte_run_comes_out_once_it_ends() {
        let t = sentencepiece();
        let ids = [A, ZHONG[0], ZHONG[1], ZHONG[2], B];
        assert_eq!(t.decode(&ids, true).unwrap(), "a中 b");
        assert_eq!(stream(&t, &ids, true), ["a", "", "", "", "中 b", ""]);
    }

    #[test]
    fn a_valid_character_followed_by_an_invalid_byte_is_all_invalid() {
        // The decoder turns the run 中 + 0xFF into four U+FFFD: "中" must not be emitted early.
        let t = sentencepiece();
        let ids = [A, ZHONG[0], ZHONG[1], ZHONG[2], FF, B];
        let full = t.decode(&ids, true).unwrap();
        assert_eq!(full, "a\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD} b");
        assert_eq!(stream(&t, &ids, true).concat(), full);
        // Ending on the run: the flush gives it.
        let chunks = stream(&t, &ids[..5], true);
        assert_eq!(chunks.last().unwrap(), &"\u{FFFD}".repeat(4));
        assert_eq!(chunks.concat(), t.decode(&ids[..5], true).unwrap());
    }

    #[test]
    fn skipped_special_tokens_neither_split_a_run_nor_eat_a_space() {
        let t = sentencepiece();
        let ids = [A, EOS, B];
        assert_eq!(t.decode(&ids, true).unwrap(), "a b");
        assert_eq!(stream(&t, &ids, true), ["a", "", " b", ""]);
        assert_eq!(stream(&t, &ids, false).concat(), "a</s> b");
        // With special tokens skipped, a run goes on across them.
        let ids = [ZHONG[0], EOS, ZHONG[1], ZHONG[2], A];
        for skip in [true, false] {
            let full = t.decode(&ids, skip).unwrap();
            assert_eq!(stream(&t, &ids, skip).concat(), full, "skip {skip}");
        }
        assert_eq!(t.decode(&ids, true).unwrap(), "中 a");
    }

    #[test]
    fn ids_outside_the_vocabulary_are_errors() {
        let t = fixture();
        let mut d = Detokenizer::default();
        assert!(d.push(&t, t.vocab_size() as u32).is_err());
    }
}
