#!/usr/bin/env python3
"""GGUF model fixtures made by llama.cpp's own converter and quantizer, with llama.cpp's outputs.

What it does
------------
Deletes and recreates ``fixtures/gguf/models/``. Every GGUF there is written by llama.cpp's
``convert_hf_to_gguf.py`` (and, for quantized types, ``llama-quantize``) from a transformers
checkpoint, and comes with ``<name>-<TYPE>.json``: what llama.cpp itself computes on that file.

1. Family coverage, Q8_0: the f32 checkpoints of ``fixtures/models/`` (scripts/make_fixtures.py)
   converted to an F32 GGUF (temporary) and quantized with ``llama-quantize IN OUT Q8_0``:
   llama-gqa-tied, llama3-rope-headdim, llama-rope-linear, mixtral-moe (experts merged into
   ``ffn_{gate,up,down}_exps`` by the converter), qwen2-bias-tied, qwen3-qknorm, phi3-longrope,
   gemma2, gemma3. Skipped (printed, listed in SKIPPED below):

   * ``llama-rope-dynamic``: llama.cpp has no dynamic-NTK rope (the converter drops the
     scaling silently; the result would be a plain Llama).
   * ``mistral-sliding``: llama.cpp's LLAMA architecture (which Mistral converts to) has no
     sliding window and the GGUF records none; llama.cpp would run full attention.

   fixtures/models/qwen3moe is not converted either (its dense ``mlp_only_layers`` layer cannot
   be mapped by the converter, "Can not map tensor 'model.layers.1.mlp.down_proj.weight'", and
   llama.cpp's QWEN3MOE expects a router in every layer): see 4 for the Qwen3-MoE file.

2. Types on llama-gqa-tied: F32, F16 and BF16 straight from the converter (``--outtype``), and
   the Q8_0 above.

3. ``llama-256``: a new random-init LlamaForCausalLM for the block quantizations (K-quants need
   rows that are multiples of 256), made here with transformers (seed LLAMA_256_SEED, style of
   make_fixtures.py): hidden 256, 1 layer, 4 heads of 64, 2 kv heads, intermediate 256, vocab
   512 (the fixture BPE tokenizer, copied from llama-gqa-tied), untied lm_head (so
   ``output.weight`` exists), rope theta 1e4, max_position_embeddings 512,
   ``initializer_range=0.1`` (logit spread like the hidden-64 fixtures at 0.2), RMSNorm weights
   ``1 + 0.1*N(0,1)``. Committed as float16 safetensors in ``fixtures/gguf/models/llama-256-hf/``
   (the source for in-situ quantization tests). Converted to an F32 GGUF (temporary; exact
   upcast of the f16 weights) and quantized with ``llama-quantize --pure`` to Q4_0, Q4_1, Q5_0,
   Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and without ``--pure`` to the Q4_K_M mix (Q8_0 is covered
   by the family files; its llama-256 file would only add size). Their reference JSONs hold
   ``long`` and ``greedy`` only: ``long`` covers every position of a longer sequence.
   Note: llama-quantize's Q3_K/Q4_K/Q5_K names are aliases of the _M mixes, so those files carry
   general.file_type MOSTLY_Q3_K_M/Q4_K_M/Q5_K_M although --pure makes every 2-D tensor Q3_K/...

4. ``qwen3moe``: the Qwen3-MoE (QWEN3MOE architecture: q/k norms, ``ffn_{gate,up,down}_exps``,
   ``ffn_gate_inp`` router) coverage that fixtures/models/qwen3moe cannot give (see 1). A new
   random-init Qwen3MoeForCausalLM in which every layer is MoE, made here with transformers (seed
   QWEN3MOE_SEED, style of make_fixtures.py's qwen3moe family): hidden 32, 2 layers, 4 heads / 2
   kv heads, head_dim 16, 4 experts, top-2, moe_intermediate_size 32 (so ffn_down_exps rows are
   a multiple of 32 and Q8_0 needs no F16 fallback), ``norm_topk_prob`` true (llama.cpp's
   QWEN3MOE always renormalises the top-k weights), ``mlp_only_layers`` empty, tied embeddings,
   rope theta 1e6, max_position_embeddings 4096, rms_norm_eps 1e-6, vocab 512 (the fixture
   tokenizer, copied from fixtures/models/qwen3moe), ``initializer_range=0.2`` as in
   make_fixtures.py (logit std ~1), RMSNorm weights ``1 + 0.1*N(0,1)``. Saved in f32 to a
   temporary directory (not committed; rebuilt identically by this script), converted to an F32
   GGUF (temporary) and quantized to ``qwen3moe-Q8_0.gguf``. Its JSON has prompts and
   all_positions with the ids of fixtures/models/qwen3moe/reference.json and a greedy prompt
   chosen like llama-256's; transformers' f32 logits for vs_transformers are computed here, and
   the script asserts that no router choice of transformers on those sequences is a near tie
   (k-th vs (k+1)-th probability gap > MIN_ROUTER_GAP), that every expert is picked, and that
   the greedy margin exceeds MIN_GREEDY_MARGIN.
   QWEN3MOE_SEED was picked by trying seeds 3000-3023: with it, Q8_0 moves the logits no more
   than in the other hidden-32 Q8_0 files (~0.2; several seeds jump to 0.5-4 where a router
   choice flips under quantization), greedy agrees with transformers, and the chosen greedy
   prompt is fixtures/models/qwen3moe's own.

Tokenizers
----------
The converter names the BPE pre-tokenizer by hashing a known tokenizer's output; ours (the
512-token byte-level BPE of fixtures/models/*/tokenizer.json) is unknown to it, so this script
imports the converter and overrides ``TextModel.get_vocab_base_pre`` to return ``"gpt-2"``:
that is the regex the tokenizer uses (every family, including llama3-style and qwen ones).
The converter's Gemma 2 and Phi-3 paths insist on a SentencePiece ``tokenizer.model``: those two
are converted from a temporary copy of the checkpoint (weights and config only) plus
``fixtures/tokenizers/spm-512/tokenizer.model`` (made by scripts/make_gguf_tokenizer_fixtures.py),
so their GGUF vocabulary is that SPM one. qwen2-bias-tied is converted from a copy whose
tokenizer_config.json sets ``unk_token``/``pad_token`` to null: transformers 5 loads a
Qwen2Tokenizer for model_type qwen2, which otherwise adds a 513th token ``<|endoftext|>`` and
trips the converter's ``max id < vocab_size`` assertion. The references are token ids (those of
each reference.json), so the tokenizer choice does not change any logit; detokenizing the
greedy ids of the SPM files with their GGUF vocabulary is meaningless. phi3-longrope gets
general.name ``phi-longrope``: llama.cpp's vocab loader special-cases names containing "phi3"
and looks up ``<|endoftext|>``, which these vocabularies lack.

How the references are computed
-------------------------------
``scripts/llama_reference.cpp`` (ours, ~250 lines against llama.h), compiled with g++ against
the shared libllama of the same build, loads a GGUF and runs jobs given on stdin. Settings:
CPU only, no weight repacking (``use_extra_bufts=false``), flash attention disabled, F32 K and V
cache, ``n_ctx = n_batch = n_ubatch = min(512, context_length)`` (so every sequence is one batch
and one ubatch), one sequence, N_THREADS threads, every job from an empty cache with positions
0..n-1. For each file the JSON holds:

* ``prompts``: the 3 prompts of the source reference.json (same ``ids``; for llama-256 those of
  llama-gqa-tied, for qwen3moe those of fixtures/models/qwen3moe): last-position logits, full vocab.
* ``all_positions``: that reference's all_positions ids and the logits at every position.
* ``greedy``: the reference's greedy prompt ids and the 32 tokens llama.cpp picks by plain argmax
  (lowest id on ties), one token per llama_decode, EOS not stopping; ``min_margin`` is the
  smallest top1-top2 logit gap on the way. For llama-256 (and qwen3moe) the prompt is the
  candidate (greedy prompts of all fixtures/models references) whose worst margin over all
  llama-256 files (over qwen3moe-Q8_0) is largest.
* ``long`` (llama-256 only): the first 256 token ids of fixtures/corpus.txt as the fixture
  tokenizer encodes it (BOS first) and the logits at every position in
  ``<name>-<TYPE>.logits.f16``: raw little-endian float16, shape [256, 512], row-major.
* metadata: llama.cpp version/build/commit and system info, settings, source checkpoint,
  converter and quantizer command lines, general.file_type, tensor types (per tensor and
  counted), llama-quantize's shape fallbacks, per-model caveats, and ``vs_transformers``: the
  largest |llama.cpp - transformers f32| over prompts and all_positions and whether the greedy
  tokens agree (informational; for llama-256 transformers runs here on the f16 checkpoint
  upcast to f32, for qwen3moe on its temporary f32 checkpoint).

Logits in JSON are rounded to 6 significant digits.

Things to know when testing against these files: llama.cpp's CPU matmuls round activations to
the weight's ``vec_dot_type`` (F16 for F16 weights, BF16 for BF16, Q8_0 for Q8_0/Q4_0/Q5_0,
Q8_1 for Q4_1/Q5_1, Q8_K for K-quants), and its GELU uses an fp16 lookup table (Gemma logits
move ~1e-3); results depend slightly on the CPU's SIMD level (system info is recorded). The
per-file ``caveats`` list where llama.cpp's semantics differ from transformers' (Gemma's
query_pre_attn_scalar and Gemma 3's layer pattern are not in the GGUF; Phi-3 picks long rope
factors from n_ctx, not sequence length).

Pins
----
llama.cpp: the source that node-llama-cpp (version in scripts/llama_cpp.sh, 3.22.1: llama.cpp
release tag v0.5.0) ships, built by ``scripts/llama_cpp.sh`` into ~/.cache/tallow (nothing of it
is committed). Python packages: scripts/requirements-fixtures.txt (gguf-py itself comes from
the llama.cpp source tree).

How to run
----------
From the repository root (builds llama.cpp first if needed; no network otherwise)::

    .venv/bin/python scripts/make_gguf_fixtures.py

The output is byte-for-byte reproducible on the same machine; check with
``sha256sum fixtures/gguf/models/*``. The JSON records the CPU features, and logits can differ
in the last bits on a CPU with other SIMD support.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "fixtures" / "models"
OUT = ROOT / "fixtures" / "gguf" / "models"
CORPUS = ROOT / "fixtures" / "corpus.txt"
SPM_MODEL = ROOT / "fixtures" / "tokenizers" / "spm-512" / "tokenizer.model"
LLAMA_CPP_SH = ROOT / "scripts" / "llama_cpp.sh"
DUMPER_SRC = ROOT / "scripts" / "llama_reference.cpp"
GENERATOR = "scripts/make_gguf_fixtures.py"

N_THREADS = 2
N_CTX_MAX = 512
GREEDY_STEPS = 32
LOGIT_DIGITS = 6
LONG_LEN = 256
BPE_PRE = "gpt-2"


@dataclass
class Family:
    name: str
    spm: bool = False  # convert with fixtures/tokenizers/spm-512/tokenizer.model
    tokenizer_config_patch: dict = field(default_factory=dict)
    model_name: str | None = None  # general.name, when the fixture name cannot be used
    caveats: list = field(default_factory=list)


GEMMA_GELU = (
    "llama.cpp's CPU GELU reads an fp16 lookup table (GGML_GELU_FP16): logits move ~1e-3 "
    "against an exact tanh-GELU"
)
SPM_VOCAB = (
    "converted with fixtures/tokenizers/spm-512/tokenizer.model (the converter's {arch} path "
    "requires a SentencePiece model): the GGUF vocabulary is that SPM one, the reference ids are "
    "the BPE ids of reference.json, so the logits are unaffected but detokenizing with the GGUF "
    "vocabulary is meaningless"
)

FAMILIES = [
    Family("llama-gqa-tied"),
    Family("llama3-rope-headdim"),
    Family("llama-rope-linear"),
    Family("mixtral-moe"),
    Family(
        "qwen2-bias-tied",
        tokenizer_config_patch={"unk_token": None, "pad_token": None},
        caveats=[
            "converted from a copy whose tokenizer_config.json sets unk_token and pad_token to "
            "null: transformers 5 loads Qwen2Tokenizer for model_type qwen2, which would add a "
            "513th token <|endoftext|> and fail the converter's vocab_size assertion"
        ],
    ),
    Family("qwen3-qknorm"),
    Family(
        "phi3-longrope",
        spm=True,
        model_name="phi-longrope",
        caveats=[
            SPM_VOCAB.format(arch="Phi-3"),
            "llama.cpp uses the long rope factors whenever n_ctx (256) > "
            "original_max_position_embeddings (32), for every sequence length; transformers picks "
            "short factors for sequences of <= 32 tokens, so prompts[0] (21 tokens) and greedy "
            "differ from reference.json",
            "general.name is 'phi-longrope': llama.cpp's vocab loader special-cases names "
            "containing 'phi3' and looks up '<|endoftext|>', which this vocabulary lacks",
        ],
    ),
    Family(
        "gemma2",
        spm=True,
        caveats=[
            SPM_VOCAB.format(arch="Gemma 2"),
            "the GGUF has no query_pre_attn_scalar (32 in config.json): llama.cpp scales queries "
            "by 1/sqrt(head_dim = 16) (its rule for every Gemma 2 size but 27B), so these logits "
            "differ from reference.json; transformers with query_pre_attn_scalar=16 agrees to ~2e-3",
            GEMMA_GELU,
        ],
    ),
    Family(
        "gemma3",
        caveats=[
            "the GGUF has no query_pre_attn_scalar (24 in config.json): llama.cpp scales queries "
            "by 1/sqrt(head_dim = 16)",
            "the GGUF has no sliding_window_pattern (4 in config.json: 3 sliding + 1 full): "
            "llama.cpp defaults to 6 (5 sliding + 1 full), so all 4 layers use the sliding window "
            "and rope_freq_base_swa 1e4 unscaled; the global rope (1e6, linear x8) never runs. "
            "transformers with query_pre_attn_scalar=16 and every layer sliding agrees to ~2e-3",
            GEMMA_GELU,
        ],
    ),
]

SKIPPED = {
    "llama-rope-dynamic": "llama.cpp has no dynamic-NTK rope scaling (the converter drops it)",
    "mistral-sliding": (
        "llama.cpp's LLAMA architecture (Mistral's target) has no sliding window and the GGUF "
        "records none: llama.cpp runs full attention"
    ),
}

LLAMA_GQA_TIED_TYPES = ["F32", "F16", "BF16"]  # plus the family Q8_0

LLAMA_256 = "llama-256"
LLAMA_256_SEED = 256
LLAMA_256_CONFIG = dict(
    vocab_size=512,
    hidden_size=256,
    intermediate_size=256,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    hidden_act="silu",
    max_position_embeddings=512,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    attention_bias=False,
    mlp_bias=False,
    initializer_range=0.1,
    tie_word_embeddings=False,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=None,
)
# An all-MoE Qwen3-MoE, standing in for fixtures/models/qwen3moe (whose dense mlp_only_layers layer the
# converter cannot map and llama.cpp's QWEN3MOE, which wants a router in every layer, cannot run).
QWEN3MOE = "qwen3moe"
QWEN3MOE_SEED = 3002
QWEN3MOE_CONFIG = dict(
    vocab_size=512,
    hidden_size=32,
    intermediate_size=64,  # unused: no dense layer
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    hidden_act="silu",
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    attention_bias=False,
    initializer_range=0.2,
    tie_word_embeddings=True,
    num_experts=4,
    num_experts_per_tok=2,
    norm_topk_prob=True,  # llama.cpp's QWEN3MOE always renormalises the top-k weights
    decoder_sparse_step=1,
    mlp_only_layers=[],
    moe_intermediate_size=32,  # ffn_down_exps rows of 32: Q8_0 without an F16 fallback
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=None,
)
QWEN3MOE_SOURCE = (
    "temporary (not committed): random-init all-MoE Qwen3MoeForCausalLM in f32, built by "
    f"scripts/make_gguf_fixtures.py (build_qwen3moe: seed {QWEN3MOE_SEED}, config QWEN3MOE_CONFIG)"
)
MIN_ROUTER_GAP = 1e-4  # worst k-th vs (k+1)-th router probability gap in transformers (qwen3moe)
MIN_GREEDY_MARGIN = 5e-3  # worst top1-top2 logit gap of llama.cpp's greedy run (qwen3moe)

LLAMA_256_PURE = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
LLAMA_256_MIX = ["Q4_K_M"]
LLAMA_256_CAVEATS = {
    q: [
        f"llama-quantize's type name {q} is an alias of {q}_M, so general.file_type says "
        f"MOSTLY_{q}_M although --pure made every 2-D tensor {q}"
    ]
    for q in ["Q3_K", "Q4_K", "Q5_K"]
} | {
    "Q4_K_M": [
        "llama-quantize's Q4_K_M mix (no --pure): Q6_K for output.weight, attn_v and ffn_down "
        "(its rules for a 1-layer model), Q4_K elsewhere; see gguf.tensor_types"
    ]
}


# --------------------------------------------------------------------------- small helpers


def sig(x: float) -> float:
    if not np.isfinite(x):
        raise ValueError(f"non-finite logit {x}")
    return float(f"{x:.{LOGIT_DIGITS}g}")


def sig_row(row: np.ndarray) -> list:
    return [sig(float(v)) for v in row]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-4000:] + res.stderr[-4000:])
        raise SystemExit(f"failed ({res.returncode}): {' '.join(map(str, cmd))}")
    return res


# --------------------------------------------------------------------------- llama.cpp


def llama_cpp_root() -> Path:
    """scripts/llama_cpp.sh builds llama.cpp once (into the cache) and prints its directory."""
    out = run(["bash", str(LLAMA_CPP_SH)]).stdout.strip().splitlines()
    root = Path(out[-1])
    assert (root / "build" / "bin" / "llama-quantize").is_file(), root
    return root


def llama_cpp_info(root: Path) -> dict:
    sh = LLAMA_CPP_SH.read_text(encoding="utf-8")
    nlc = re.search(r"^NODE_LLAMA_CPP_VERSION=(\S+)$", sh, re.M).group(1)
    commit = run(["git", "-C", str(root / "src"), "rev-parse", "HEAD"]).stdout.strip()
    build_info = (root / "build" / "common" / "build-info.cpp").read_text(encoding="utf-8")
    build_number = int(re.search(r"LLAMA_BUILD_NUMBER = (\d+);", build_info).group(1))
    return {
        "source": f"node-llama-cpp {nlc} (llama/gitRelease.bundle), built by scripts/llama_cpp.sh",
        "node_llama_cpp": nlc,
        "commit": commit,
        "build_number": build_number,
    }


def build_dumper(root: Path) -> Path:
    exe = root / "llama_reference"
    bin_dir = root / "build" / "bin"
    run([
        "g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror",
        f"-I{root / 'src' / 'include'}", f"-I{root / 'src' / 'ggml' / 'include'}",
        str(DUMPER_SRC), "-o", str(exe),
        f"-L{bin_dir}", "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{bin_dir}",
    ])
    return exe


class Converter:
    """llama.cpp's convert_hf_to_gguf.py, imported so that get_vocab_base_pre can be overridden."""

    def __init__(self, root: Path):
        src = root / "src"
        sys.path[:0] = [str(src / "gguf-py"), str(src)]
        # The converter calls logging.basicConfig(INFO); configuring first keeps it quiet.
        logging.basicConfig(level=logging.WARNING)
        import convert_hf_to_gguf
        import conversion.base

        conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: BPE_PRE
        self.module = convert_hf_to_gguf

    def __call__(self, model_dir: Path, outtype: str, out: Path, model_name: str) -> str:
        args = [str(model_dir), "--outtype", outtype, "--outfile", str(out), "--model-name", model_name]
        saved = sys.argv
        sys.argv = ["convert_hf_to_gguf.py", *args]
        try:
            self.module.main()
        finally:
            sys.argv = saved
        assert out.is_file(), out
        return f"convert_hf_to_gguf.py {' '.join(args)}"


FALLBACK_RE = re.compile(
    r"warning: (\S+)\s+- ncols\s+(\d+) not divisible by\s+(\d+) \(required for type\s+(\S+)\) "
    r"(?:\(WARNING: must use F16 due to unusual shape\) )?-> falling back to\s+(\S+)"
)


def quantize(root: Path, src: Path, dst: Path, qtype: str, pure: bool) -> tuple:
    exe = root / "build" / "bin" / "llama-quantize"
    args = (["--pure"] if pure else []) + [str(src), str(dst), qtype, str(N_THREADS)]
    res = run([str(exe), *args])
    fallbacks = [
        f"{m[0]}: ncols {m[1]} not divisible by {m[2]} ({m[3]}) -> {m[4]}"
        for m in FALLBACK_RE.findall(res.stdout + res.stderr)
    ]
    return f"llama-quantize {' '.join(args)}", fallbacks


def gguf_summary(path: Path) -> dict:
    import gguf

    reader = gguf.GGUFReader(path)
    ft = int(reader.fields["general.file_type"].contents())
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    counts: dict = {}
    for t in types.values():
        counts[t] = counts.get(t, 0) + 1
    return {
        "architecture": reader.fields["general.architecture"].contents(),
        "general.name": reader.fields["general.name"].contents(),
        "general.file_type": ft,
        "general.file_type_name": gguf.LlamaFileType(ft).name,
        "tokenizer.ggml.model": reader.fields["tokenizer.ggml.model"].contents(),
        "tokenizer.ggml.pre": reader.fields["tokenizer.ggml.pre"].contents(),
        "tensor_type_counts": dict(sorted(counts.items())),
        "tensor_types": types,
    }


class Dumper:
    """Runs scripts/llama_reference.cpp on one GGUF: queue jobs, then run() them all at once."""

    def __init__(self, exe: Path, gguf_path: Path, n_ctx: int, scratch: Path):
        self.exe, self.gguf_path, self.n_ctx, self.scratch = exe, gguf_path, n_ctx, scratch
        self.jobs: list = []

    def _ids(self, ids: list) -> str:
        return f"{len(ids)} {' '.join(map(str, ids))}"

    def logits(self, ids: list, all_positions: bool) -> int:
        path = self.scratch / f"logits{len(self.jobs)}.f32"
        mode = "all" if all_positions else "last"
        self.jobs.append(("logits", path, len(ids) if all_positions else 1, f"logits {mode} {path} {self._ids(ids)}"))
        return len(self.jobs) - 1

    def greedy(self, ids: list) -> int:
        self.jobs.append(("greedy", None, 0, f"greedy {GREEDY_STEPS} {self._ids(ids)}"))
        return len(self.jobs) - 1

    def run(self) -> tuple:
        stdin = "info\n" + "".join(job[3] + "\n" for job in self.jobs)
        res = subprocess.run(
            [str(self.exe), str(self.gguf_path), str(self.n_ctx), str(N_THREADS)],
            input=stdin, capture_output=True, text=True,
        )
        if res.returncode != 0:
            raise SystemExit(f"llama_reference failed on {self.gguf_path}:\n{res.stderr[-4000:]}")
        lines = iter(res.stdout.splitlines())
        info = {}
        for line in lines:
            if line == "end":
                break
            _, key, value = line.split(" ", 2)
            info[key] = value
        n_vocab = int(info["n_vocab"])
        results = []
        for kind, path, n_rows, _ in self.jobs:
            if kind == "logits":
                assert next(lines) == f"ok {n_rows}"
                results.append(np.fromfile(path, dtype="<f4").reshape(n_rows, n_vocab))
            else:
                tokens = next(lines).split()
                margin = next(lines).split()
                assert tokens[0] == "tokens" and margin[0] == "margin"
                results.append(([int(t) for t in tokens[1:]], float(margin[1])))
        # llama.cpp's WARN lines, without their "(ref: <url>)" pointers.
        warnings = [re.sub(r"\s*\(ref: [^)]*\)", "", l) for l in res.stderr.splitlines() if l.strip()]
        return info, results, warnings


# --------------------------------------------------------------------------- sources


def prepare_source(fam: Family, scratch: Path) -> Path:
    """The checkpoint directory to convert: fixtures/models/NAME or a patched copy of it."""
    src = MODELS / fam.name
    if not fam.spm and not fam.tokenizer_config_patch:
        return src
    dst = scratch / "src" / fam.name
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if fam.spm and f.name.startswith("tokenizer"):
            continue
        if f.name != "reference.json":
            shutil.copy2(f, dst / f.name)
    if fam.spm:
        if not SPM_MODEL.is_file():
            raise SystemExit(f"{rel(SPM_MODEL)} is missing: run scripts/make_gguf_tokenizer_fixtures.py first")
        shutil.copy2(SPM_MODEL, dst / "tokenizer.model")
    if fam.tokenizer_config_patch:
        path = dst / "tokenizer_config.json"
        cfg = json.loads(path.read_text(encoding="utf-8"))
        cfg.update(fam.tokenizer_config_patch)
        path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return dst


def build_llama_256(out_dir: Path) -> None:
    """The f16 source checkpoint of the block-quantization fixtures (deterministic)."""
    torch.manual_seed(LLAMA_256_SEED)
    config = LlamaConfig(**LLAMA_256_CONFIG)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    gen = torch.Generator().manual_seed(LLAMA_256_SEED + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    out_dir.mkdir(parents=True)
    model.to(torch.float16).save_pretrained(out_dir)
    src = MODELS / "llama-gqa-tied"
    shutil.copy2(src / "tokenizer.json", out_dir / "tokenizer.json")
    tok_cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    tok_cfg["model_max_length"] = LLAMA_256_CONFIG["max_position_embeddings"]
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n", encoding="utf-8")
    (out_dir / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 0, "eos_token_id": 1}, indent=2) + "\n", encoding="utf-8"
    )
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"
    ]


def build_qwen3moe(out_dir: Path) -> None:
    """The f32 source checkpoint of qwen3moe-Q8_0.gguf (deterministic; written to a temporary directory)."""
    torch.manual_seed(QWEN3MOE_SEED)
    model = Qwen3MoeForCausalLM(Qwen3MoeConfig(**QWEN3MOE_CONFIG)).to(torch.float32).eval()
    gen = torch.Generator().manual_seed(QWEN3MOE_SEED + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                # every matrix must come from the random init (no uninitialised torch.empty storage)
                std = float(p.std())
                # (the 4x32 routers' std wanders most)
                assert p.dim() >= 2 and 0.14 < std < 0.26, (name, tuple(p.shape), std)
    assert all(type(layer.mlp).__name__ == "Qwen3MoeSparseMoeBlock" for layer in model.model.layers)
    out_dir.mkdir(parents=True)
    model.save_pretrained(out_dir)
    src = MODELS / QWEN3MOE
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        shutil.copy2(src / f, out_dir / f)
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"
    ]


@torch.no_grad()
def transformers_reference(model_dir: Path, prompts: list, ap_ids: list, greedy_ids: list) -> dict:
    """What transformers computes in f32 for a checkpoint without a reference.json (llama-256,
    qwen3moe). For MoE models also the worst gap between the k-th and (k+1)-th router probability
    over every token of these sequences (a near tie could flip llama.cpp's expert choice)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    router = {"min_gap": float("inf"), "counts": None}

    def hook(mod, args, output):
        router_logits, _, indices = output
        top = torch.topk(torch.softmax(router_logits.float(), dim=-1), mod.top_k + 1, dim=-1).values
        router["min_gap"] = min(router["min_gap"], float((top[:, mod.top_k - 1] - top[:, mod.top_k]).min()))
        c = torch.bincount(indices.flatten(), minlength=mod.num_experts)
        router["counts"] = c if router["counts"] is None else router["counts"] + c

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if type(m).__name__.endswith("TopKRouter")
    ]

    def logits(ids):
        return model(torch.tensor([ids]), use_cache=False).logits[0].numpy()

    seq = list(greedy_ids)
    for _ in range(GREEDY_STEPS):
        seq.append(int(np.argmax(logits(seq)[-1])))
    out = {
        "prompts": [{"ids": ids, "last_logits": logits(ids)[-1]} for ids in prompts],
        "all_positions": {"ids": ap_ids, "logits": logits(ap_ids)},
        "greedy": {"ids": greedy_ids, "tokens": seq[len(greedy_ids):]},
    }
    for h in handles:
        h.remove()
    if handles:
        out["router"] = {"min_gap": router["min_gap"], "counts": router["counts"].tolist()}
    return out


# --------------------------------------------------------------------------- references


@dataclass
class Job:
    """One GGUF to write and describe."""

    name: str  # fixture name (llama-gqa-tied, llama-256, ...)
    qtype: str  # F32, F16, BF16, Q8_0, Q4_K_M, ...
    source: str  # checkpoint directory, repository-relative
    commands: list
    n_ctx: int
    caveats: list = field(default_factory=list)
    fallbacks: list = field(default_factory=list)

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.qtype}"

    @property
    def path(self) -> Path:
        return OUT / f"{self.stem}.gguf"


def reference_json(job: Job, dumper_exe: Path, scratch: Path, ref: dict, long_ids: list | None, meta: dict) -> dict:
    d = Dumper(dumper_exe, job.path, job.n_ctx, scratch)
    prompt_jobs = [d.logits(p["ids"], all_positions=False) for p in ref["prompts"]]
    ap_job = d.logits(ref["all_positions"]["ids"], all_positions=True)
    greedy_job = d.greedy(ref["greedy"]["ids"])
    long_job = d.logits(long_ids, all_positions=True) if long_ids is not None else None
    info, results, warnings = d.run()

    prompts = [
        {"text": p.get("text"), "ids": p["ids"], "last_logits": sig_row(results[j][0])}
        for p, j in zip(ref["prompts"], prompt_jobs)
    ]
    ap = results[ap_job]
    tokens, margin = results[greedy_job]

    deltas = [float(np.abs(results[j][0] - np.asarray(p["last_logits"])).max()) for p, j in zip(ref["prompts"], prompt_jobs)]
    deltas.append(float(np.abs(ap - np.asarray(ref["all_positions"]["logits"])).max()))

    obj = {
        "file": job.path.name,
        "model": job.name,
        "type": job.qtype,
        "generator": GENERATOR,
        "source": {"checkpoint": job.source, "token_ids_from": ref["ids_from"]},
        "llama_cpp": {**meta, "version": info["version"], "system_info": info["system"].strip()},
        "commands": job.commands,
        "settings": {
            "n_ctx": job.n_ctx,
            "n_batch": job.n_ctx,
            "n_ubatch": job.n_ctx,
            "n_seq_max": 1,
            "n_threads": N_THREADS,
            "n_gpu_layers": 0,
            "use_extra_bufts": False,
            "flash_attn": "disabled",
            "type_k": "f32",
            "type_v": "f32",
            "swa_full": True,
            "logit_significant_digits": LOGIT_DIGITS,
        },
        "gguf": {
            "size_bytes": job.path.stat().st_size,
            "sha256": sha256(job.path),
            "llama_ftype_name": info["ftype"],
            "model_desc": info["desc"],
            "n_params": int(info["n_params"]),
            **gguf_summary(job.path),
            "quantize_fallbacks": job.fallbacks,
        },
        "caveats": job.caveats,
        "llama_cpp_warnings": warnings,
        "vs_transformers": {
            "max_abs_prompts_last": max(deltas[:-1]),
            "max_abs_all_positions": deltas[-1],
            "greedy_equal": tokens == ref["greedy"]["tokens"],
        },
        "prompts": prompts,
        "all_positions": {
            "text": ref["all_positions"].get("text"),
            "ids": ref["all_positions"]["ids"],
            "logits": [sig_row(row) for row in ap],
        },
        "greedy": {"text": ref["greedy"].get("text"), "ids": ref["greedy"]["ids"], "tokens": tokens, "min_margin": sig(margin)},
    }
    if long_job is not None:
        logits = results[long_job]
        f16_path = OUT / f"{job.stem}.logits.f16"
        logits.astype("<f2").tofile(f16_path)
        obj["long"] = {
            "source": f"fixtures/corpus.txt encoded by the fixture tokenizer (BOS + first {LONG_LEN - 1} tokens)",
            "ids": long_ids,
            "logits_file": f16_path.name,
            "logits_dtype": "float16",
            "logits_byte_order": "little",
            "logits_shape": list(logits.shape),
            "logits_sha256": sha256(f16_path),
        }
        # `long` covers every position of a longer sequence; the short ones would only add size.
        del obj["prompts"], obj["all_positions"]
    return obj


def n_ctx_for(model_dir: Path) -> int:
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return min(N_CTX_MAX, cfg["max_position_embeddings"])


def load_reference(name: str) -> dict:
    ref = json.loads((MODELS / name / "reference.json").read_text(encoding="utf-8"))
    ref["ids_from"] = rel(MODELS / name / "reference.json")
    return ref


def choose_greedy_prompt(dumper_exe: Path, jobs: list, scratch: Path) -> tuple:
    """The greedy prompt (from all fixtures/models references) with the best worst-case margin."""
    candidates = {}
    for ref_path in sorted(MODELS.glob("*/reference.json")):
        g = json.loads(ref_path.read_text(encoding="utf-8"))["greedy"]
        candidates.setdefault(tuple(g["ids"]), g["text"])
    worst = {ids: float("inf") for ids in candidates}
    for job in jobs:
        d = Dumper(dumper_exe, job.path, job.n_ctx, scratch)
        order = [d.greedy(list(ids)) for ids in candidates]
        _, results, _ = d.run()
        for ids, j in zip(candidates, order):
            worst[ids] = min(worst[ids], results[j][1])
    best = max(candidates, key=lambda ids: (worst[ids], ids))
    print(f"  {jobs[0].name} greedy prompt {candidates[best]!r}: worst top1-top2 margin {worst[best]:.4f} over {len(jobs)} files")
    return {"text": candidates[best], "ids": list(best)}, worst[best]


def own_reference(model_dir: Path, base: dict, greedy: dict, ids_from: str) -> dict:
    """transformers' f32 reference for a checkpoint made here: base's prompt and all_positions ids, the
    chosen greedy prompt."""
    ref = transformers_reference(model_dir, [p["ids"] for p in base["prompts"]], base["all_positions"]["ids"], greedy["ids"])
    for p, b in zip(ref["prompts"], base["prompts"]):
        p["text"] = b["text"]
    ref["all_positions"]["text"] = base["all_positions"]["text"]
    ref["greedy"]["text"] = greedy["text"]
    ref["ids_from"] = ids_from + " (greedy: the prompt with the best margin, see docstring)"
    return ref


# --------------------------------------------------------------------------- main


def main() -> int:
    root = llama_cpp_root()
    meta = llama_cpp_info(root)
    dumper_exe = build_dumper(root)
    convert = Converter(root)
    print(f"llama.cpp: {root} (commit {meta['commit'][:12]}), dumper {dumper_exe}")

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    with tempfile.TemporaryDirectory(prefix="tallow-gguf-") as tmp:
        scratch = Path(tmp)
        jobs: list = []

        # 1 + 2: families (Q8_0) and llama-gqa-tied's float types.
        for fam in FAMILIES:
            src_dir = prepare_source(fam, scratch)
            model_name = fam.model_name or fam.name

            def new_job(qtype: str) -> Job:
                return Job(fam.name, qtype, rel(MODELS / fam.name), [], n_ctx_for(src_dir), list(fam.caveats))

            float_types = LLAMA_GQA_TIED_TYPES if fam.name == "llama-gqa-tied" else []
            f32 = OUT / f"{fam.name}-F32.gguf" if "F32" in float_types else scratch / f"{fam.name}-F32.gguf"
            conv_f32 = convert(src_dir, "f32", f32, model_name)
            for qtype in float_types:
                jobs.append(new_job(qtype))
                jobs[-1].commands = [conv_f32 if qtype == "F32" else convert(src_dir, qtype.lower(), jobs[-1].path, model_name)]
            q8 = new_job("Q8_0")
            cmd, q8.fallbacks = quantize(root, f32, q8.path, "Q8_0", pure=False)
            q8.commands = [conv_f32, cmd]
            jobs.append(q8)

        # 3: llama-256 and its block quantizations, all from one F32 GGUF.
        hf_dir = OUT / f"{LLAMA_256}-hf"
        build_llama_256(hf_dir)
        f32 = scratch / f"{LLAMA_256}-F32.gguf"
        conv_f32 = convert(hf_dir, "f32", f32, LLAMA_256)
        jobs_256 = []
        for qtype in LLAMA_256_PURE + LLAMA_256_MIX:
            job_256 = Job(LLAMA_256, qtype, rel(hf_dir), [], n_ctx_for(hf_dir), LLAMA_256_CAVEATS.get(qtype, []))
            cmd, job_256.fallbacks = quantize(root, f32, job_256.path, qtype, pure=qtype in LLAMA_256_PURE)
            job_256.commands = [conv_f32, cmd]
            jobs_256.append(job_256)

        # 4: qwen3moe, every layer MoE, from a checkpoint made here (temporary).
        moe_dir = scratch / f"{QWEN3MOE}-hf"
        build_qwen3moe(moe_dir)
        f32 = scratch / f"{QWEN3MOE}-F32.gguf"
        conv_f32 = convert(moe_dir, "f32", f32, QWEN3MOE)
        job_moe = Job(QWEN3MOE, "Q8_0", QWEN3MOE_SOURCE, [], n_ctx_for(moe_dir))
        cmd, job_moe.fallbacks = quantize(root, f32, job_moe.path, "Q8_0", pure=False)
        assert not job_moe.fallbacks, job_moe.fallbacks
        job_moe.commands = [conv_f32, cmd]

        # Command lines as they would be typed from the repository root (temporary files by name).
        for j in jobs + jobs_256 + [job_moe]:
            j.commands = [
                c.replace(str(scratch / "src") + "/", "<patched copy>/").replace(str(scratch) + "/", "").replace(str(ROOT) + "/", "")
                for c in j.commands
            ]

        # References.
        tok = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
        long_ids = tok.encode(CORPUS.read_text(encoding="utf-8")).ids[:LONG_LEN]
        assert len(long_ids) == LONG_LEN and long_ids[0] == 0
        base = load_reference("llama-gqa-tied")
        greedy_256, _ = choose_greedy_prompt(dumper_exe, jobs_256, scratch)
        ref_256 = own_reference(hf_dir, base, greedy_256, base["ids_from"])

        base_moe = load_reference(QWEN3MOE)
        greedy_moe, margin_moe = choose_greedy_prompt(dumper_exe, [job_moe], scratch)
        assert margin_moe > MIN_GREEDY_MARGIN, margin_moe
        ref_moe = own_reference(moe_dir, base_moe, greedy_moe, base_moe["ids_from"])
        router = ref_moe.pop("router")
        print(f"  {QWEN3MOE}: worst k-th vs (k+1)-th router prob gap {router['min_gap']:.2e}, picks per expert {router['counts']}")
        assert router["min_gap"] > MIN_ROUTER_GAP and min(router["counts"]) > 0, router

        rows = []
        for job in jobs + jobs_256 + [job_moe]:
            is_256 = job.name == LLAMA_256
            ref = ref_256 if is_256 else ref_moe if job is job_moe else load_reference(job.name)
            obj = reference_json(job, dumper_exe, scratch, ref, long_ids if is_256 else None, meta)
            write_json(OUT / f"{job.stem}.json", obj)
            rows.append((job, obj))

    print_summary(rows)
    return 0


def print_summary(rows: list) -> None:
    print()
    print("vs HF: max |llama.cpp - transformers| over prompts and all_positions; greedy: same tokens as transformers")
    print(f"{'file':<34} {'bytes':>9}  {'vs HF':>8}  {'greedy':>6}  {'margin':>7}  tensor types")
    for job, obj in rows:
        counts = " ".join(f"{k}:{v}" for k, v in obj["gguf"]["tensor_type_counts"].items())
        vs = obj["vs_transformers"]
        worst = max(vs["max_abs_prompts_last"], vs["max_abs_all_positions"])
        print(
            f"{job.path.name:<34} {obj['gguf']['size_bytes']:>9}  {worst:>8.2g}  {str(vs['greedy_equal']):>6}  "
            f"{obj['greedy']['min_margin']:>7.4f}  {counts}"
        )
        for fb in obj["gguf"]["quantize_fallbacks"]:
            print(f"    fallback: {fb}")
    for name, why in SKIPPED.items():
        print(f"skipped {name}: {why}")
    files = sorted(p for p in OUT.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    print(f"{len(files)} files in {rel(OUT)}, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
