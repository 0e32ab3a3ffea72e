#!/usr/bin/env python3
"""Generate tiny, random, deterministic checkpoints (Llama + other families) plus reference outputs.

What it does
------------
Deletes and recreates ``fixtures/models/``:

* Trains a byte-level BPE tokenizer (vocab 512, incl. ``<|begin_of_text|>`` = 0
  and ``<|end_of_text|>`` = 1, full 256-byte initial alphabet) on
  ``fixtures/corpus.txt`` with the ``tokenizers`` package.
* Builds four tiny Llama models with transformers (2 layers, hidden 64,
  intermediate 128, random init with fixed seeds, ``initializer_range=0.2`` so
  logits are well spread; RMSNorm weights are also perturbed to
  ``1 + 0.1*N(0,1)`` so that an engine ignoring them is caught):

  ``llama-gqa-tied``       f32, 4 heads / 2 kv heads, tied embeddings,
                           rope_theta 1e4, max_pos 4096, single file,
                           config.json exactly as transformers 5 writes it.
  ``llama3-rope-headdim``  f32, head_dim 24 (!= 64/4), untied, rope_theta 5e5,
                           llama3 rope scaling (factor 8, low 1, high 4,
                           original_max_position_embeddings 32), max_pos 1024,
                           sharded safetensors + index; config.json rewritten
                           to the transformers-4.x layout (top-level
                           ``rope_theta`` + ``rope_scaling``, ``torch_dtype``).
  ``llama-bf16``           llama-gqa-tied weights stored as bfloat16.
  ``llama-f16``            llama3-rope-headdim weights stored as float16,
                           single file, 4.x-layout config.

* Writes ``reference.json`` per model, computed by transformers on CPU from the
  model RELOADED from its directory with ``dtype=torch.float32`` (half-precision
  checkpoints are upcast), eval mode, no grad, ``attn_implementation="eager"``:
  last-position logits for 3 prompts (one >= 48 tokens), logits at every
  position for one ~28-token prompt, and a 32-step greedy continuation
  (plain argmax over a full no-cache forward each step, EOS ignored). The greedy
  prompt is picked from GREEDY_CANDIDATES as the one with the largest worst-case
  top1-top2 margin (printed), so f32 rounding noise cannot flip a choice.
  reference.json also records ``attn_implementation``.
* Prints the max |delta logit| of native bf16/f16 compute vs the f32 reference
  (informational).
* Then, independently of the above (own seeds, built after the Llama files are
  final, so they never change a byte of them), one tiny f32 checkpoint per
  architecture family (hidden 32, vocab 512, random init, initializer_range
  0.2, RMSNorm weights perturbed: ``1 + 0.1*N(0,1)``, or ``0.1*N(0,1)`` for the
  Gemma ``(1 + w)`` norms; random q/k/v biases for Qwen2), single safetensors
  file, same tokenizer files:

  ``llama-rope-linear``   linear rope scaling (factor 4); 4.x config.
  ``llama-rope-dynamic``  dynamic NTK rope (factor 2, max_pos 32); v5 config;
                          context length 64 = max_pos * factor (as vLLM): all its
                          reference sequences fit in 64 tokens (third prompt
                          replaced by a 58-token one, greedy prompt + 32 <= 64,
                          tokenizer model_max_length 64).
  ``mistral-sliding``     sliding window 8 on every layer; v5 config.
  ``mixtral-moe``         4 experts, top-2; 4.x config.
  ``qwen2-bias-tied``     random q/k/v biases, tied; v5 config.
  ``qwen3-qknorm``        q_norm/k_norm, head_dim 16 != 32/4; 4.x config.
  ``qwen3moe``            3 layers, layer 1 dense (mlp_only_layers), 4 experts
                          top-2, norm_topk_prob; v5 config.
  ``phi3-longrope``       fused qkv/gate_up, longrope (original 32, max 256);
                          4.x config.
  ``gemma2``              soft-capping, (1+w) norms, sliding/full alternating,
                          query_pre_attn_scalar; v5 config.
  ``gemma3``              q/k norms, 3 sliding + 1 full layer with different
                          rope per layer type, final soft-capping; 4.x config.

  "v5 config" is config.json as save_pretrained writes it (``rope_parameters``);
  "4.x config" is rewritten to the transformers-4.x layout (``rope_theta`` +
  ``rope_scaling`` [+ ``rope_local_base_freq``, ``sliding_window_pattern``],
  ``torch_dtype``), after checking that transformers loads it with identical
  rope parameters, rope buffers and logits. Their reference.json has the same
  keys plus ``exercises`` (what the model tests), ``decode`` (the all_positions
  prompt run through transformers one token per forward with its KV cache: its
  own decode path, which differs from prefill for length-dependent rope),
  ``greedy.tokens_kv_cache`` (prompt prefilled with use_cache, then one token per
  forward) and ``greedy.tokens_generate`` (what transformers' own
  ``model.generate(do_sample=False, max_new_tokens=32)`` returns with the model's
  generation_config, an all-ones attention_mask and only EOS switched off via
  ``eos_token_id=None``; asserted to run no logits processor; printed whether it
  equals ``tokens`` and/or ``tokens_kv_cache``: Phi3's generate drops the cache
  once when crossing original_max_position_embeddings, so it follows ``tokens``
  there). Their all_positions prompt has 16 tokens (> the sliding windows), or
  36 (> 32) for the dynamic/longrope families; their greedy prompt is chosen per
  model; logits are rounded to 6 decimals. The script asserts that sliding
  windows and length-dependent rope change all_positions, decode and greedy, that
  greedy margins are > 5e-3 and that no MoE router choice is a near tie, and
  prints decode-vs-prefill deltas, margins and soft-capping statistics.
* Prints the total size of ``fixtures/``.

How to run
----------
From the repository root::

    python3 -m venv .venv
    .venv/bin/pip install -r scripts/requirements-fixtures.txt
    .venv/bin/python scripts/make_fixtures.py

No network access is needed (HF_HUB_OFFLINE=1 is forced). Output is
byte-for-byte reproducible with the pinned versions; check with e.g.
``find fixtures/models -type f | sort | xargs sha256sum``.
"""

import json
import math
import os
import random
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForCausalLM,
    DynamicCache,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

transformers.utils.logging.disable_progress_bar()

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
CORPUS = FIXTURES / "corpus.txt"
OUT = FIXTURES / "models"
GENERATOR = "scripts/make_fixtures.py"

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
VOCAB_SIZE = 512
ATTN_IMPL = "eager"
GREEDY_STEPS = 32
SIG_DIGITS = 8

PROMPTS = [
    "The lighthouse keeper wrote in his ledger",
    "Notes from a café in 東京: naïve questions, 3 coffees and one 🙂",
    (
        "On the morning of the third of March, the wind came in from the northwest at "
        "roughly 40 knots, and the keeper wrote that the sea looked like a field of broken "
        "slate. A small green boat had appeared in the channel where no boat should have "
        "been, and the keeper went down the 143 steps of the spiral stair to help."
    ),
]
ALL_POSITIONS_PROMPT = "x = buf[i] + 3.14  # café 🙂"
# The greedy prompt is chosen (deterministically) from these candidates as the one whose
# 32-step argmax trajectories have the largest worst-case top1-top2 logit margin over all
# four models, so that tiny numerical differences in an engine cannot flip a greedy choice.
GREEDY_CANDIDATES = [
    "Once upon a time, in a small town by the sea,",
    "The orchard in winter",
    "Bread is older than writing.",
    "Why is the sky blue?",
    "Dear Ana, you asked",
    "Weather report: wind southwest 5 to 6",
    "def f(x):\n    return x + 1",
    "The café on the corner",
]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sig(x: float) -> float:
    """Round to SIG_DIGITS significant digits (keeps the JSON small)."""
    if not math.isfinite(x):
        raise ValueError(f"non-finite logit {x}")
    return float(f"{x:.{SIG_DIGITS}g}")


def sig_list(t: torch.Tensor) -> list:
    return [sig(v) for v in t.tolist()]


def write_json(path: Path, obj, compact: bool = False) -> None:
    if compact:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(obj, ensure_ascii=False, indent=2)
    path.write_text(text + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- tokenizer


def train_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    text = CORPUS.read_text(encoding="utf-8")
    tok.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS}:1 $B:1",
        special_tokens=[(BOS, tok.token_to_id(BOS))],
    )

    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    assert tok.token_to_id(BOS) == 0 and tok.token_to_id(EOS) == 1
    # Every byte must be encodable and the round trip lossless.
    every_byte = bytes(range(256)).decode("latin-1")
    for sample in (text, every_byte, "東京 🙂 café"):
        enc = tok.encode(sample)
        assert enc.ids[0] == 0, "post-processor must prepend BOS"
        assert tok.decode(enc.ids, skip_special_tokens=True) == sample
    return tok


def write_tokenizer_files(tok_json: str, model_dir: Path, max_pos: int) -> None:
    (model_dir / "tokenizer.json").write_text(tok_json, encoding="utf-8")
    write_json(
        model_dir / "tokenizer_config.json",
        {
            "bos_token": BOS,
            "eos_token": EOS,
            "model_max_length": max_pos,
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": False,
        },
    )
    write_json(model_dir / "generation_config.json", {"bos_token_id": 0, "eos_token_id": 1})


# --------------------------------------------------------------------------- models

COMMON = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    hidden_act="silu",
    rms_norm_eps=1e-5,
    attention_bias=False,
    mlp_bias=False,
    initializer_range=0.2,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=None,
)

LLAMA3_ROPE_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}


def build_model(config: LlamaConfig, seed: int) -> LlamaForCausalLM:
    seed_everything(seed)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
    return model


def rewrite_config_4x(model_dir: Path, dtype_name: str) -> None:
    """Rewrite a transformers-5 config.json into the transformers-4.x layout."""
    path = model_dir / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    rope = cfg.pop("rope_parameters")
    assert rope["rope_type"] == "llama3", rope
    cfg.pop("dtype", None)
    for k, v in LLAMA3_ROPE_SCALING.items():
        assert rope[k] == v, (k, rope[k], v)
    cfg["rope_theta"] = rope["rope_theta"]
    cfg["rope_scaling"] = dict(LLAMA3_ROPE_SCALING)
    cfg["torch_dtype"] = dtype_name
    out = cfg
    write_json(path, dict(sorted(out.items())))


def check_config_dtype(model_dir: Path, dtype_name: str) -> None:
    path = model_dir / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    assert cfg.get("dtype") == dtype_name, f"{model_dir.name}: config dtype {cfg.get('dtype')!r} != {dtype_name}"


def expected_llama3_inv_freq(theta: float, head_dim: int, s: dict) -> torch.Tensor:
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(torch.float32) / head_dim))
    old = s["original_max_position_embeddings"]
    low_wl = old / s["low_freq_factor"]
    high_wl = old / s["high_freq_factor"]
    wl = 2 * math.pi / inv
    out = torch.where(wl > low_wl, inv / s["factor"], inv)
    smooth = (old / wl - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
    smoothed = (1 - smooth) * out / s["factor"] + smooth * out
    medium = ~(wl < high_wl) & ~(wl > low_wl)
    return torch.where(medium, smoothed, out), inv


def load(model_dir: Path, dtype: torch.dtype) -> LlamaForCausalLM:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=ATTN_IMPL)
    model.eval()
    assert next(model.parameters()).device.type == "cpu"
    assert all(p.dtype == dtype for p in model.parameters())
    return model


def verify_llama3_rope(model_dir: Path) -> None:
    model = load(model_dir, torch.float32)
    cfg = model.config
    assert cfg.rope_parameters["rope_type"] == "llama3", cfg.rope_parameters
    assert cfg.head_dim == 24
    inv = model.model.rotary_emb.inv_freq.detach().float().cpu()
    expected, unscaled = expected_llama3_inv_freq(500000.0, 24, LLAMA3_ROPE_SCALING)
    assert inv.shape == unscaled.shape
    assert not torch.allclose(inv, unscaled), "llama3 rope scaling not in effect"
    assert torch.allclose(inv, expected, rtol=1e-6, atol=0), (inv, expected)
    n_scaled = int((~torch.isclose(inv, unscaled)).sum())
    print(f"  {model_dir.name}: llama3 rope scaling in effect ({n_scaled}/{inv.numel()} inv_freq entries changed)")


# --------------------------------------------------------------------------- references


@torch.no_grad()
def logits_for(model, ids: list) -> torch.Tensor:
    return model(torch.tensor([ids], dtype=torch.long), use_cache=False).logits[0].float()


@torch.no_grad()
def greedy(model, ids: list, steps: int):
    seq = list(ids)
    out, min_margin = [], float("inf")
    for _ in range(steps):
        last = logits_for(model, seq)[-1]
        top2 = torch.topk(last, 2).values
        min_margin = min(min_margin, float(top2[0] - top2[1]))
        nxt = int(torch.argmax(last))
        out.append(nxt)
        seq.append(nxt)
    return out, min_margin


def make_reference(name: str, model_dir: Path, checkpoint_dtype: str, greedy_prompt: str) -> dict:
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    model = load(model_dir, torch.float32)
    max_pos = model.config.max_position_embeddings

    prompts = []
    for text in PROMPTS:
        ids = tok.encode(text).ids
        assert ids[0] == 0 and len(ids) < max_pos
        prompts.append({"text": text, "ids": ids, "last_logits": sig_list(logits_for(model, ids)[-1])})
    lengths = [len(p["ids"]) for p in prompts]
    assert max(lengths) >= 48, f"need a prompt >= 48 tokens, got {lengths}"

    ap_ids = tok.encode(ALL_POSITIONS_PROMPT).ids
    assert 20 <= len(ap_ids) <= 30, f"all_positions prompt has {len(ap_ids)} tokens"
    ap_logits = logits_for(model, ap_ids)

    g_ids = tok.encode(greedy_prompt).ids
    g_tokens, margin = greedy(model, g_ids, GREEDY_STEPS)
    print(
        f"  {name}: prompt lengths {lengths}, all_positions {len(ap_ids)}, greedy prompt {len(g_ids)}, "
        f"greedy min top1-top2 margin {margin:.4f}"
    )
    print(f"    greedy text: {tok.decode(g_tokens, skip_special_tokens=False)!r}")

    return {
        "model": name,
        "checkpoint_dtype": checkpoint_dtype,
        "compute_dtype": "float32",
        "generator": GENERATOR,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "attn_implementation": ATTN_IMPL,
        "prompts": prompts,
        "all_positions": {
            "text": ALL_POSITIONS_PROMPT,
            "ids": ap_ids,
            "logits": [sig_list(row) for row in ap_logits],
        },
        "greedy": {"text": greedy_prompt, "ids": g_ids, "tokens": g_tokens},
    }


def choose_greedy_prompt(names: list) -> str:
    print("choosing greedy prompt (max over candidates of min top1-top2 margin over models) ...")
    tok = Tokenizer.from_file(str(OUT / names[0] / "tokenizer.json"))
    loaded = [load(OUT / n, torch.float32) for n in names]
    best, best_margin = None, -1.0
    for text in GREEDY_CANDIDATES:
        ids = tok.encode(text).ids
        margin = min(greedy(m, ids, GREEDY_STEPS)[1] for m in loaded)
        print(f"  {margin:.4f}  {text!r}")
        if margin > best_margin:
            best, best_margin = text, margin
    print(f"  -> {best!r} (min margin {best_margin:.4f})")
    return best


@torch.no_grad()
def half_precision_delta(model_dir: Path, dtype: torch.dtype) -> tuple:
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ref_model = load(model_dir, torch.float32)
    native = load(model_dir, dtype)
    worst_last, worst_all = 0.0, 0.0
    for text in PROMPTS + [ALL_POSITIONS_PROMPT] + GREEDY_CANDIDATES:
        ids = tok.encode(text).ids
        a = logits_for(ref_model, ids)
        b = logits_for(native, ids)
        d = (a - b).abs()
        worst_all = max(worst_all, float(d.max()))
        worst_last = max(worst_last, float(d[-1].max()))
    return worst_last, worst_all


# =========================================================================== architecture families
#
# One tiny random checkpoint per architecture family, for the spec-driven decoder. They are built
# after the four Llama fixtures above are complete, each from its own seeds, so adding, removing or
# changing a family never changes a byte of the Llama fixtures.

# all_positions / decode prompt of the families: 16 tokens (> every sliding window, 8), or 36 tokens
# for the families whose RoPE depends on the sequence length (> max_position_embeddings /
# original_max_position_embeddings = 32).
FAMILY_ALL_POSITIONS_PROMPT = "x = buf[i] + 3.14"
FAMILY_ALL_POSITIONS_PROMPT_LONG = "Tide tables, café hours and 12 bells: the keeper's list for the winter."
# Greedy prompts of the families are chosen per model from GREEDY_CANDIDATES + these; families with
# length-dependent RoPE only consider candidates of >= LONG_GREEDY_MIN_TOKENS tokens, so that at least
# 16 of the 32 greedy steps run past position 32.
FAMILY_GREEDY_EXTRA = [
    "The keeper's daughter rowed out at dawn to count the buoys.",
    "Notes on the north channel: sand bars shift every winter.",
    "She opened the logbook and read the first entry aloud:",
    "A list of things the sea returned last year:",
    "The recipe for harbour bread begins with",
    "Seven gulls, one kite and a very tired heron.",
    "If the tide turns at four, the boats leave at five.",
    "print(sum(range(10)))",
    "Chapter 3: The Lantern",
    "Q: What is 12 times 12? A:",
    "The wind was from the east, and",
    "Lists: apples; pears; 3 plums; figs",
    "Hello! How are you today?",
    "Il pleut sur la mer depuis trois jours.",
    "The harbour at night smells of tar and rope.",
]
LONG_GREEDY_MIN_TOKENS = 17
# llama-rope-dynamic: engines (vLLM, ours) take a dynamic-NTK model's context length to be
# max_position_embeddings * factor = 32 * 2 = 64, so its reference sequences must all fit in 64 tokens.
# Its third prompt replaces PROMPTS[2] (142 tokens) with one of 58 tokens (> 32, so the scaling matters).
DYNAMIC_CONTEXT_LENGTH = 64
DYNAMIC_PROMPTS = PROMPTS[:2] + [
    "On the third of March the wind came in from the northwest at 40 knots, and the keeper went down the 143 "
    "steps to help."
]
# A family's greedy prompt must give trajectories with at least this many distinct tokens (tiny random
# models, the tied Gemmas above all, like to repeat one token) and, where the family has ablations, whose
# tokens change when the sliding window / length-dependent RoPE is removed; among those, the largest
# worst-case top1-top2 margin wins.
MIN_GREEDY_DISTINCT = 3
LONG_CONTEXT_THRESHOLD = 32  # max_position_embeddings (dynamic) / original_max_position_embeddings (longrope)
SLIDING_WINDOW = 8
MIN_GREEDY_MARGIN = 5e-3  # asserted per family (worst top1-top2 over both greedy trajectories)
MIN_ROUTER_GAP = 1e-5  # asserted per MoE family: worst gap between the k-th and (k+1)-th router probability
MIN_ABLATION_DELTA = 1e-2  # sliding windows / length-dependent RoPE must move the logits at least this much

FAMILY_BASE = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    initializer_range=0.2,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=None,
)
# Family logits are rounded to 6 decimal places (|error| <= 5e-7, about one f32 ulp at |logit| ~ 4 and
# 200x below the engine tests' 1e-4 tolerance) rather than 8 significant digits, which keeps fixtures/
# within 6 MiB.
FAMILY_LOGIT_DECIMALS = 6

S, F = "sliding_attention", "full_attention"


@dataclass
class Family:
    name: str
    model_cls: type
    make_config: Callable  # () -> transformers config
    seed: int
    exercises: str
    to_4x: Callable | None = None  # rewrites config.json (dict, in place) to the transformers-4.x layout
    length_dependent_rope: bool = False
    gemma_norms: bool = False  # RMSNorm is x * (1 + w): perturb w around 0
    random_bias: bool = False
    tokenizer_max_length: int | None = None
    # the engine's context length for this model, where it is shorter than the config's
    # max_position_embeddings suggests: every reference sequence (prompts, all_positions, decode, greedy
    # prompt + GREEDY_STEPS) must fit in it
    context_length: int | None = None
    prompts: list = field(default_factory=lambda: list(PROMPTS))  # the last-position-logits prompts
    # (label, {config attribute: value}) that must change all_positions, decode and greedy logits
    ablations: list = field(default_factory=list)


def dec_list(t: torch.Tensor) -> list:
    out = []
    for v in t.tolist():
        if not math.isfinite(v):
            raise ValueError(f"non-finite logit {v}")
        out.append(float(f"{v:.{FAMILY_LOGIT_DECIMALS}f}") + 0.0)  # + 0.0: no "-0.0"
    return out


def longrope_factors(seed: int, n: int) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    short = sorted(round(1.0 + float(x), 4) for x in torch.rand(n, generator=gen, dtype=torch.float64))
    long = sorted(round(1.0 + 3.0 * float(x), 4) for x in torch.rand(n, generator=gen, dtype=torch.float64))
    assert len(set(short) | set(long)) == 2 * n, (short, long)
    return short, long


PHI3_SHORT_FACTOR, PHI3_LONG_FACTOR = longrope_factors(8080, 8)  # head_dim 16 -> 8 frequencies


def _4x_llama_linear(cfg: dict) -> None:
    rope = cfg.pop("rope_parameters")
    assert rope == {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}, rope
    cfg["rope_theta"] = rope["rope_theta"]
    cfg["rope_scaling"] = {"type": "linear", "factor": 4.0}  # old "type" spelling


def _4x_mixtral(cfg: dict) -> None:
    rope = cfg.pop("rope_parameters")
    assert rope == {"rope_type": "default", "rope_theta": 1000000.0}, rope
    assert cfg.pop("head_dim") is None
    cfg["rope_theta"] = rope["rope_theta"]  # no rope_scaling key at all, as in Mixtral's own configs


def _4x_qwen3(cfg: dict) -> None:
    rope = cfg.pop("rope_parameters")
    assert rope == {"rope_type": "default", "rope_theta": 1000000.0}, rope
    cfg["rope_theta"] = rope["rope_theta"]
    cfg["rope_scaling"] = None


def _4x_phi3(cfg: dict) -> None:
    rope = cfg.pop("rope_parameters")
    expected = {
        "rope_type": "longrope",
        "rope_theta": 10000.0,
        "short_factor": PHI3_SHORT_FACTOR,
        "long_factor": PHI3_LONG_FACTOR,
        "original_max_position_embeddings": 32,
        "partial_rotary_factor": 1.0,
    }
    assert rope == expected, rope
    assert cfg["original_max_position_embeddings"] == 32 and cfg["max_position_embeddings"] == 256
    cfg["rope_theta"] = rope["rope_theta"]
    cfg["rope_scaling"] = {"type": "longrope", "short_factor": PHI3_SHORT_FACTOR, "long_factor": PHI3_LONG_FACTOR}


def _4x_gemma3(cfg: dict) -> None:
    rope = cfg.pop("rope_parameters")
    expected = {
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
    }
    assert rope == expected, rope
    assert cfg.pop("layer_types") == [S, S, S, F]
    cfg.pop("_sliding_window_pattern")  # private attribute transformers 5 serializes (stale default 6)
    cfg["rope_theta"] = 1000000.0
    cfg["rope_scaling"] = {"rope_type": "linear", "factor": 8.0}  # global (full-attention) layers only
    cfg["rope_local_base_freq"] = 10000.0  # sliding layers
    cfg["sliding_window_pattern"] = 4  # layer i slides iff (i + 1) % 4 != 0


def family_specs() -> list:
    fb = FAMILY_BASE
    return [
        Family(
            name="llama-rope-linear",
            model_cls=LlamaForCausalLM,
            make_config=lambda: LlamaConfig(
                **{**fb, "num_attention_heads": 2, "num_key_value_heads": 1},
                rms_norm_eps=1e-5,
                tie_word_embeddings=True,
                max_position_embeddings=512,
                rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
            ),
            seed=1001,
            to_4x=_4x_llama_linear,
            exercises=(
                "Llama, linear RoPE scaling (inv_freq / 4, positions not length dependent), head_dim 16, "
                "2 heads / 1 kv head, tied embeddings; 4.x config with rope_scaling {'type': 'linear'}"
            ),
            ablations=[("no rope scaling", {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}})],
        ),
        Family(
            name="llama-rope-dynamic",
            model_cls=LlamaForCausalLM,
            make_config=lambda: LlamaConfig(
                **{**fb, "num_attention_heads": 2, "num_key_value_heads": 1},
                rms_norm_eps=1e-5,
                tie_word_embeddings=True,
                max_position_embeddings=32,
                rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
            ),
            seed=1002,
            length_dependent_rope=True,
            tokenizer_max_length=DYNAMIC_CONTEXT_LENGTH,
            context_length=DYNAMIC_CONTEXT_LENGTH,
            prompts=DYNAMIC_PROMPTS,
            exercises=(
                "Llama, dynamic NTK RoPE (factor 2, max_position_embeddings 32): inv_freq is recomputed "
                "from seq_len = (max position id in the forward) + 1 when that exceeds 32, so prefill "
                "logits depend on the prompt length and decode keeps each key rotated with the "
                "frequencies of the step that wrote it; all_positions prompt has 36 tokens; context length "
                "64 = max_position_embeddings * factor (every reference sequence, greedy prompt + 32 "
                "generated tokens included, fits in 64 tokens); transformers-5 config"
            ),
            ablations=[("no rope scaling", {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}})],
        ),
        Family(
            name="mistral-sliding",
            model_cls=MistralForCausalLM,
            make_config=lambda: MistralConfig(
                **fb,
                rms_norm_eps=1e-5,
                tie_word_embeddings=True,
                max_position_embeddings=4096,
                sliding_window=SLIDING_WINDOW,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            ),
            seed=1003,
            exercises=(
                "Mistral, sliding-window attention on every layer (window 8: query i sees keys i-7..i), "
                "GQA 4 heads / 2 kv heads, tied; transformers-5 config"
            ),
            ablations=[("no sliding window", {"sliding_window": None})],
        ),
        Family(
            name="mixtral-moe",
            model_cls=MixtralForCausalLM,
            make_config=lambda: MixtralConfig(
                **{**fb, "intermediate_size": 24},
                rms_norm_eps=1e-5,
                tie_word_embeddings=True,
                max_position_embeddings=4096,
                num_local_experts=4,
                num_experts_per_tok=2,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
            seed=1004,
            to_4x=_4x_mixtral,
            exercises=(
                "Mixtral sparse MoE: 4 experts (w1 gate, w3 up, w2 down; intermediate 24), router softmax "
                "-> top-2 -> renormalize, GQA, tied, rope_theta 1e6; 4.x config without rope_scaling/head_dim"
            ),
        ),
        Family(
            name="qwen2-bias-tied",
            model_cls=Qwen2ForCausalLM,
            make_config=lambda: Qwen2Config(
                **fb,
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
                max_position_embeddings=4096,
                use_sliding_window=False,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
            seed=1005,
            random_bias=True,
            exercises=(
                "Qwen2: random non-zero q/k/v biases (o_proj has none), tied embeddings, "
                "use_sliding_window false, GQA; transformers-5 config"
            ),
        ),
        Family(
            name="qwen3-qknorm",
            model_cls=Qwen3ForCausalLM,
            make_config=lambda: Qwen3Config(
                **fb,
                head_dim=16,
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
                max_position_embeddings=4096,
                use_sliding_window=False,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
            seed=1006,
            to_4x=_4x_qwen3,
            exercises=(
                "Qwen3: per-head RMSNorm q_norm/k_norm (weights perturbed) before RoPE, explicit "
                "head_dim 16 != hidden/heads 8, GQA, tied; 4.x config with rope_scaling null"
            ),
        ),
        Family(
            name="qwen3moe",
            model_cls=Qwen3MoeForCausalLM,
            make_config=lambda: Qwen3MoeConfig(
                **{**fb, "num_hidden_layers": 3},
                head_dim=12,
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
                max_position_embeddings=4096,
                num_experts=4,
                num_experts_per_tok=2,
                norm_topk_prob=True,
                decoder_sparse_step=1,
                mlp_only_layers=[1],
                moe_intermediate_size=16,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
            seed=1007,
            exercises=(
                "Qwen3-MoE: 3 layers, layers 0 and 2 sparse (4 experts, top-2, softmax then top-k then "
                "renormalize since norm_topk_prob, moe_intermediate_size 16), layer 1 dense "
                "(mlp_only_layers [1], intermediate_size 48), q_norm/k_norm, explicit head_dim 12, tied; "
                "transformers-5 config (expert count under num_local_experts)"
            ),
        ),
        Family(
            name="phi3-longrope",
            model_cls=Phi3ForCausalLM,
            make_config=lambda: Phi3Config(
                **{**fb, "num_attention_heads": 2, "num_key_value_heads": 1},
                rms_norm_eps=1e-5,
                tie_word_embeddings=True,
                max_position_embeddings=256,
                original_max_position_embeddings=32,
                sliding_window=None,
                rope_parameters={
                    "rope_type": "longrope",
                    "rope_theta": 10000.0,
                    "short_factor": list(PHI3_SHORT_FACTOR),
                    "long_factor": list(PHI3_LONG_FACTOR),
                },
            ),
            seed=1008,
            to_4x=_4x_phi3,
            length_dependent_rope=True,
            exercises=(
                "Phi-3: fused qkv_proj (q | k | v rows) and gate_up_proj (gate | up rows), LongRoPE: "
                "short_factor while seq_len = max position id + 1 <= 32, long_factor beyond, cos/sin "
                "always scaled by sqrt(1 + ln(256/32) / ln 32), 2 heads / 1 kv head, tied; all_positions "
                "prompt has 36 tokens; "
                "4.x config with rope_scaling {'type': 'longrope'} and top-level original_max_position_embeddings"
            ),
            ablations=[
                (
                    "long_factor := short_factor",
                    {
                        "rope_parameters": {
                            "rope_type": "longrope",
                            "rope_theta": 10000.0,
                            "short_factor": list(PHI3_SHORT_FACTOR),
                            "long_factor": list(PHI3_SHORT_FACTOR),
                            "original_max_position_embeddings": 32,
                            "partial_rotary_factor": 1.0,
                        }
                    },
                )
            ],
        ),
        Family(
            name="gemma2",
            model_cls=Gemma2ForCausalLM,
            make_config=lambda: Gemma2Config(
                **{**fb, "num_hidden_layers": 4, "intermediate_size": 24},
                head_dim=16,
                hidden_activation="gelu_pytorch_tanh",
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
                max_position_embeddings=4096,
                query_pre_attn_scalar=32,
                sliding_window=SLIDING_WINDOW,
                attn_logit_softcapping=GEMMA2_ATTN_SOFTCAP,
                final_logit_softcapping=GEMMA2_FINAL_SOFTCAP,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            ),
            seed=1009,
            gemma_norms=True,
            exercises=(
                "Gemma 2: embeddings * sqrt(hidden), (1 + w) RMSNorm incl. pre/post feed-forward and "
                "post-attention norms, gelu_pytorch_tanh, head_dim 16 != 32/4, attention scale "
                "query_pre_attn_scalar**-0.5 (32), attention and final logit soft-capping (tanh), "
                "layers sliding/full/sliding/full with window 8, tied; transformers-5 config"
            ),
            ablations=[("no sliding window", {"sliding_window": 1 << 20})],
        ),
        Family(
            name="gemma3",
            model_cls=Gemma3ForCausalLM,
            make_config=lambda: Gemma3TextConfig(
                **{**fb, "num_hidden_layers": 4, "intermediate_size": 24},
                head_dim=16,
                hidden_activation="gelu_pytorch_tanh",
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
                max_position_embeddings=4096,
                query_pre_attn_scalar=24,
                sliding_window=SLIDING_WINDOW,
                layer_types=[S, S, S, F],
                attn_logit_softcapping=None,
                final_logit_softcapping=GEMMA3_FINAL_SOFTCAP,
                rope_parameters={
                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                    "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                },
            ),
            seed=1010,
            to_4x=_4x_gemma3,
            gemma_norms=True,
            exercises=(
                "Gemma 3 text: (1 + w) q_norm/k_norm before RoPE, embeddings * sqrt(hidden), pre/post "
                "norms, layers sliding x3 + full (window 8), sliding layers RoPE theta 1e4 unscaled, full "
                "layers theta 1e6 with linear factor 8, query_pre_attn_scalar 24, final logit soft-capping, "
                "tied; 4.x config (rope_theta, rope_scaling, rope_local_base_freq, sliding_window_pattern 4, "
                "no layer_types)"
            ),
            ablations=[("no sliding window", {"sliding_window": 1 << 20})],
        ),
    ]


# Small enough to bite with initializer_range 0.2 (pre-cap maxima are printed).
GEMMA2_ATTN_SOFTCAP = 5.0
GEMMA2_FINAL_SOFTCAP = 4.0
GEMMA3_FINAL_SOFTCAP = 3.5


def build_family_model(fam: Family):
    seed_everything(fam.seed)
    model = fam.model_cls(fam.make_config()).to(torch.float32).eval()
    gen = torch.Generator().manual_seed(fam.seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_((0.0 if fam.gemma_norms else 1.0) + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                assert fam.random_bias, name
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            else:
                # every matrix must come from the random init (no uninitialised torch.empty storage)
                std = float(p.std())
                assert p.dim() >= 2 and 0.17 < std < 0.23, (name, tuple(p.shape), std)
            assert torch.isfinite(p).all(), name
    return model


def rewrite_family_config_4x(model_dir: Path, fam: Family) -> None:
    path = model_dir / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    assert cfg.pop("dtype") == "float32"
    fam.to_4x(cfg)
    cfg["torch_dtype"] = "float32"
    write_json(path, dict(sorted(cfg.items())))


def rotary_modules(model) -> list:
    return [m for m in model.modules() if "RotaryEmbedding" in type(m).__name__]


def reset_rope_state(model) -> None:
    """Forget dynamic-RoPE state left by previous forwards (transformers keeps the inv_freq of the longest
    sequence seen so far until a forward shorter than max_position_embeddings resets it), so that every
    reference sequence starts from the freshly loaded model's state."""
    for rot in rotary_modules(model):
        rope_type = rot.rope_type
        if isinstance(rope_type, str) and "dynamic" in rope_type:
            rot.register_buffer("inv_freq", rot.original_inv_freq.clone(), persistent=False)
            rot.max_seq_len_cached = rot.original_max_seq_len


@torch.no_grad()
def family_logits(model, ids: list) -> torch.Tensor:
    reset_rope_state(model)
    return logits_for(model, ids)


@torch.no_grad()
def family_decode(model, ids: list) -> torch.Tensor:
    """transformers' own cached decode path: one token per forward through a DynamicCache."""
    reset_rope_state(model)
    cache = DynamicCache(config=model.config)
    rows = []
    for t in ids:
        out = model(torch.tensor([[t]], dtype=torch.long), past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        rows.append(out.logits[0, -1].float())
    assert cache.get_seq_length() == len(ids)
    return torch.stack(rows)


@torch.no_grad()
def family_greedy(model, ids: list, steps: int):
    """Plain argmax over a full no-cache forward each step (the Llama fixtures' convention)."""
    seq = list(ids)
    out, min_margin, rows = [], float("inf"), []
    for _ in range(steps):
        last = family_logits(model, seq)[-1]
        rows.append(last)
        top2 = torch.topk(last, 2).values
        min_margin = min(min_margin, float(top2[0] - top2[1]))
        nxt = int(torch.argmax(last))
        out.append(nxt)
        seq.append(nxt)
    return out, min_margin, torch.stack(rows)


@torch.no_grad()
def family_greedy_cached(model, ids: list, steps: int):
    """Prompt prefilled in one forward with use_cache, then one token per forward (model.generate's path,
    except that Phi3's generate drops the cache once when the sequence first exceeds
    original_max_position_embeddings)."""
    reset_rope_state(model)
    cache = DynamicCache(config=model.config)
    out = model(torch.tensor([ids], dtype=torch.long), past_key_values=cache, use_cache=True)
    tokens, min_margin = [], float("inf")
    for step in range(steps):
        last = out.logits[0, -1].float()
        top2 = torch.topk(last, 2).values
        min_margin = min(min_margin, float(top2[0] - top2[1]))
        nxt = int(torch.argmax(last))
        tokens.append(nxt)
        if step + 1 < steps:
            out = model(torch.tensor([[nxt]], dtype=torch.long), past_key_values=out.past_key_values, use_cache=True)
    return tokens, min_margin


@torch.no_grad()
def family_generate(model, ids: list, steps: int):
    """What a transformers user gets from greedy model.generate(): the model's own generation_config
    (bos 0, eos 1) merged with transformers' defaults, do_sample=False, exactly `steps` new tokens. Only
    end-of-sequence is switched off (eos_token_id=None as a generate() kwarg, which overrides the
    generation_config.json value; it only decides when to stop, never changes a logit). Asserts that no
    logits processor touched the logits (processed scores == raw logits at every step)."""
    reset_rope_state(model)
    input_ids = torch.tensor([ids], dtype=torch.long)
    out = model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        do_sample=False,
        max_new_tokens=steps,
        eos_token_id=None,
        output_scores=True,
        output_logits=True,
        return_dict_in_generate=True,
    )
    seq = out.sequences[0].tolist()
    assert seq[: len(ids)] == list(ids) and len(seq) == len(ids) + steps, (len(seq), len(ids))
    tokens = seq[len(ids) :]
    assert len(out.logits) == len(out.scores) == steps
    min_margin = float("inf")
    for tok_id, raw, score in zip(tokens, out.logits, out.scores, strict=True):
        assert torch.equal(raw, score), "a logits processor changed the logits in generate()"
        last = raw[0].float()
        assert int(torch.argmax(last)) == tok_id
        top2 = torch.topk(last, 2).values
        min_margin = min(min_margin, float(top2[0] - top2[1]))
    return tokens, min_margin


class RouterWatch:
    """Records, for every MoE router call, the gap between the k-th and (k+1)-th routing probability
    (a near tie could flip an engine's expert choice) and how often each expert is picked."""

    def __init__(self, model):
        self.min_gap = float("inf")
        self.counts = None
        self.enabled = True
        self.handles = []
        for name, mod in model.named_modules():
            if type(mod).__name__.endswith("TopKRouter"):
                self.handles.append(mod.register_forward_hook(self._hook))

    def _hook(self, mod, args, output):
        if not self.enabled:
            return
        router_logits, _, indices = output
        probs = torch.softmax(router_logits.float(), dim=-1)
        top = torch.topk(probs, mod.top_k + 1, dim=-1).values
        self.min_gap = min(self.min_gap, float((top[:, mod.top_k - 1] - top[:, mod.top_k]).min()))
        c = torch.bincount(indices.flatten(), minlength=mod.num_experts)
        self.counts = c if self.counts is None else self.counts + c

    def close(self):
        for h in self.handles:
            h.remove()


@contextmanager
def softcap_watch(model, attn_cap, final_cap):
    """Max |attention score| and |final logit| BEFORE soft-capping, and the largest change the cap makes
    (informational). Attention scores are only watched where the module uses Gemma 2's eager kernel."""
    import transformers.models.gemma2.modeling_gemma2 as g2

    def capped(x, cap):
        return torch.tanh(x / cap) * cap

    stats = {"attn": 0.0, "attn_delta": 0.0, "final": 0.0, "final_delta": 0.0}
    orig = g2.eager_attention_forward

    def patched(module, query, key, value, attention_mask, scaling=None, softcap=None, **kw):
        k = g2.repeat_kv(key, module.num_key_value_groups)
        scores = torch.matmul(query, k.transpose(2, 3)) * scaling
        if attention_mask is not None:
            scores = scores.masked_fill(attention_mask < -1.0, 0.0)
        stats["attn"] = max(stats["attn"], float(scores.abs().max()))
        if softcap is not None:
            stats["attn_delta"] = max(stats["attn_delta"], float((capped(scores, softcap) - scores).abs().max()))
        return orig(module, query, key, value, attention_mask, scaling=scaling, softcap=softcap, **kw)

    def final_hook(mod, args, out):
        stats["final"] = max(stats["final"], float(out.abs().max()))
        stats["final_delta"] = max(stats["final_delta"], float((capped(out, final_cap) - out).abs().max()))

    h = model.lm_head.register_forward_hook(final_hook)
    if attn_cap is not None:
        g2.eager_attention_forward = patched
    try:
        yield stats
    finally:
        g2.eager_attention_forward = orig
        h.remove()


def load_with(model_dir: Path, overrides: dict):
    cfg = AutoConfig.from_pretrained(model_dir)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, config=cfg, dtype=torch.float32, attn_implementation=ATTN_IMPL
    ).eval()
    return model


def rope_fingerprint(model) -> dict:
    out = {}
    for rot in rotary_modules(model):
        for name, buf in rot.named_buffers():
            out[name] = buf.detach().clone()
        for attr in ("attention_scaling", "full_attention_attention_scaling", "sliding_attention_attention_scaling"):
            if hasattr(rot, attr):
                out[attr] = getattr(rot, attr)
    return out


def normalized_rope_parameters(rope: dict) -> dict:
    """transformers keeps the legacy key "type" next to "rope_type" when a 4.x config spells it that way."""
    if "rope_type" in rope:
        rope = dict(rope)
        if "type" in rope:
            assert rope.pop("type") == rope["rope_type"], rope
        return rope
    return {k: normalized_rope_parameters(v) for k, v in rope.items()}


@torch.no_grad()
def behaviour_probe(model, tok) -> dict:
    """Everything the 4.x rewrite must not change: config rope/layer fields, rope buffers, logits."""
    cfg = model.config
    probe = {
        "rope_parameters": json.dumps(normalized_rope_parameters(cfg.rope_parameters), sort_keys=True),
        "layer_types": getattr(cfg, "layer_types", None),
        "sliding_window": getattr(cfg, "sliding_window", None),
        "head_dim": getattr(cfg, "head_dim", None),
        "rope": rope_fingerprint(model),
    }
    tensors = []
    for text in PROMPTS + [FAMILY_ALL_POSITIONS_PROMPT_LONG]:
        tensors.append(family_logits(model, tok.encode(text).ids))
    tensors.append(family_decode(model, tok.encode(FAMILY_ALL_POSITIONS_PROMPT_LONG).ids))
    probe["logits"] = tensors
    probe["rope_after"] = rope_fingerprint(model)
    return probe


def assert_same_behaviour(name: str, a: dict, b: dict) -> None:
    for key in ("rope_parameters", "layer_types", "sliding_window", "head_dim"):
        assert a[key] == b[key], f"{name}: {key} changed by the 4.x rewrite: {a[key]!r} -> {b[key]!r}"
    for key in ("rope", "rope_after"):
        assert a[key].keys() == b[key].keys(), (name, key, a[key].keys(), b[key].keys())
        for k in a[key]:
            va, vb = a[key][k], b[key][k]
            same = torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb
            assert same, f"{name}: rope state {k} changed by the 4.x rewrite"
    for x, y in zip(a["logits"], b["logits"], strict=True):
        assert torch.equal(x, y), f"{name}: logits changed by the 4.x rewrite (max {float((x - y).abs().max())})"


def expected_inv_freq(theta: float, dim: int) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim))


@torch.no_grad()
def verify_family_rope(name: str, model, tok) -> None:
    """Closed-form checks of the RoPE variants that transformers applies (documented semantics)."""
    rots = rotary_modules(model)
    assert len(rots) == 1, rots
    rot = rots[0]
    cfg = model.config
    if name == "llama-rope-linear":
        assert torch.allclose(rot.inv_freq, expected_inv_freq(10000.0, 16) / 4.0, rtol=1e-6, atol=0)
        assert rot.attention_scaling == 1.0
        print(f"  {name}: inv_freq = default / 4 (all positions)")
    elif name == "llama-rope-dynamic":
        dim, base, factor, max_pos = 16, 10000.0, 2.0, cfg.max_position_embeddings
        assert max_pos == 32

        def dyn(seq_len):
            seq_len = max(seq_len, max_pos)
            b = base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
            return expected_inv_freq(b, dim)

        ids = tok.encode(FAMILY_ALL_POSITIONS_PROMPT_LONG).ids
        for n in (20, 32, 33, len(ids)):
            family_logits(model, ids[:n])
            assert torch.allclose(rot.inv_freq, dyn(n), rtol=1e-5, atol=0), (n, rot.inv_freq, dyn(n))
        # the state leak that reset_rope_state() guards against: after a longer forward, a shorter one
        # that is still > max_position_embeddings reuses the longer one's frequencies
        logits_for(model, ids)
        logits_for(model, ids[:40])
        assert torch.allclose(rot.inv_freq, dyn(len(ids)), rtol=1e-5, atol=0)
        reset_rope_state(model)
        assert torch.allclose(rot.inv_freq, dyn(1), rtol=1e-6, atol=0)
        print(
            f"  {name}: inv_freq = dynamic(max(seq_len, 32)) with seq_len = max position id + 1 of the forward "
            f"(checked at 20, 32, 33, {len(ids)}); transformers keeps the longest state across forwards"
        )
    elif name == "phi3-longrope":
        dim, base = 16, 10000.0
        shape = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
        short = 1.0 / (torch.tensor(PHI3_SHORT_FACTOR, dtype=torch.float32) * base**shape)
        long = 1.0 / (torch.tensor(PHI3_LONG_FACTOR, dtype=torch.float32) * base**shape)
        mscale = math.sqrt(1 + math.log(256 / 32) / math.log(32))
        assert abs(rot.attention_scaling - mscale) < 1e-12, rot.attention_scaling
        ids = tok.encode(FAMILY_ALL_POSITIONS_PROMPT_LONG).ids
        for n in (5, 32, 33, len(ids)):
            family_logits(model, ids[:n])
            expected = short if n <= 32 else long
            assert torch.allclose(rot.inv_freq, expected, rtol=1e-6, atol=0), (n, rot.inv_freq, expected)
        print(
            f"  {name}: short_factor iff max position id + 1 <= 32 else long_factor (checked at 5, 32, 33, "
            f"{len(ids)}); attention_scaling {rot.attention_scaling:.9f} = sqrt(1 + ln 8 / ln 32) on cos and sin"
        )
    elif name == "gemma3":
        assert cfg.layer_types == [S, S, S, F], cfg.layer_types
        assert torch.allclose(rot.sliding_attention_inv_freq, expected_inv_freq(10000.0, 16), rtol=1e-6, atol=0)
        assert torch.allclose(rot.full_attention_inv_freq, expected_inv_freq(1e6, 16) / 8.0, rtol=1e-6, atol=0)
        assert rot.sliding_attention_attention_scaling == 1.0 and rot.full_attention_attention_scaling == 1.0
        print(f"  {name}: layer_types {cfg.layer_types}; sliding inv_freq theta 1e4, full inv_freq theta 1e6 / 8")


def family_reference(fam: Family, model_dir: Path, tok: Tokenizer) -> dict:
    model = load(model_dir, torch.float32)
    router = RouterWatch(model)
    ap_text = FAMILY_ALL_POSITIONS_PROMPT_LONG if fam.length_dependent_rope else FAMILY_ALL_POSITIONS_PROMPT
    ap_ids = tok.encode(ap_text).ids
    assert len(ap_ids) > SLIDING_WINDOW
    if fam.length_dependent_rope:
        assert len(ap_ids) > LONG_CONTEXT_THRESHOLD

    prompts = []
    for text in fam.prompts:
        ids = tok.encode(text).ids
        assert ids[0] == 0
        prompts.append({"text": text, "ids": ids, "last_logits": dec_list(family_logits(model, ids)[-1])})
    assert max(len(p["ids"]) for p in prompts) >= 48
    if fam.context_length is not None:
        lengths = [len(p["ids"]) for p in prompts] + [len(ap_ids)]
        assert max(lengths) <= fam.context_length, (fam.name, lengths, fam.context_length)
        if fam.length_dependent_rope:
            assert max(len(p["ids"]) for p in prompts) > LONG_CONTEXT_THRESHOLD

    ap_logits = family_logits(model, ap_ids)
    dec_logits = family_decode(model, ap_ids)
    delta = float((ap_logits - dec_logits).abs().max())

    # greedy prompt: best worst-case top1-top2 margin over both trajectories (no-cache and KV-cache)
    router.enabled = False  # router near-ties only matter on what goes into reference.json
    ablated = [(label, load_with(model_dir, overrides)) for label, overrides in fam.ablations]
    best = None
    for text in GREEDY_CANDIDATES + FAMILY_GREEDY_EXTRA:
        g_ids = tok.encode(text).ids
        if fam.length_dependent_rope and len(g_ids) < LONG_GREEDY_MIN_TOKENS:
            continue
        if fam.context_length is not None and len(g_ids) + GREEDY_STEPS > fam.context_length:
            continue
        tokens, m1, rows = family_greedy(model, g_ids, GREEDY_STEPS)
        tokens_kv, m2 = family_greedy_cached(model, g_ids, GREEDY_STEPS)
        if min(len(set(tokens)), len(set(tokens_kv))) < MIN_GREEDY_DISTINCT:
            continue
        if any(
            family_greedy(ab, g_ids, GREEDY_STEPS)[0] == tokens
            or family_greedy_cached(ab, g_ids, GREEDY_STEPS)[0] == tokens_kv
            for _, ab in ablated
        ):
            continue
        margin = min(m1, m2)
        if best is None or margin > best[0]:
            best = (margin, text, g_ids, tokens, tokens_kv, m1, m2, rows)
    assert best is not None, f"{fam.name}: no usable greedy prompt"
    margin, g_text, g_ids, g_tokens, g_tokens_kv, m1, m2, g_rows = best
    router.enabled = True
    assert family_greedy(model, g_ids, GREEDY_STEPS)[0] == g_tokens
    assert family_greedy_cached(model, g_ids, GREEDY_STEPS)[0] == g_tokens_kv
    assert margin > MIN_GREEDY_MARGIN, f"{fam.name}: greedy margin {margin}"
    if not fam.length_dependent_rope:
        assert g_tokens == g_tokens_kv, f"{fam.name}: cached greedy differs from no-cache greedy"
    g_tokens_gen, m3 = family_generate(model, g_ids, GREEDY_STEPS)
    assert m3 > MIN_GREEDY_MARGIN, f"{fam.name}: generate() margin {m3}"

    print(
        f"  {fam.name}: all_positions {len(ap_ids)} tokens, max |prefill - decode| {delta:.3e}; greedy prompt "
        f"{len(g_ids)} tokens {g_text!r}: worst top1-top2 margin {margin:.4f} (no-cache {m1:.4f}, kv-cache {m2:.4f})"
        f"{'' if g_tokens == g_tokens_kv else ', kv-cache tokens DIFFER from no-cache tokens'}"
    )
    print(f"    greedy text: {tok.decode(g_tokens, skip_special_tokens=False)!r}")
    print(
        f"    generate(): tokens_generate {'==' if g_tokens_gen == g_tokens else '!='} tokens (no-cache), "
        f"{'==' if g_tokens_gen == g_tokens_kv else '!='} tokens_kv_cache; worst top1-top2 margin {m3:.4f}"
    )
    if router.handles:
        router.close()
        assert router.min_gap > MIN_ROUTER_GAP, f"{fam.name}: router near-tie {router.min_gap}"
        assert bool((router.counts > 0).all()), router.counts
        print(
            f"    MoE: worst k-th vs (k+1)-th router prob gap {router.min_gap:.2e}, "
            f"picks per expert {router.counts.tolist()}"
        )

    for label, ab in ablated:
        d_ap = float((family_logits(ab, ap_ids) - ap_logits).abs().max())
        d_dec = float((family_decode(ab, ap_ids) - dec_logits).abs().max())
        ab_rows = family_greedy_teacher(ab, g_ids, g_tokens)
        d_gr = float((ab_rows - g_rows).abs().max())
        first = [
            next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
            for a, b in (
                (family_greedy(ab, g_ids, GREEDY_STEPS)[0], g_tokens),
                (family_greedy_cached(ab, g_ids, GREEDY_STEPS)[0], g_tokens_kv),
            )
        ]
        print(
            f"    ablation '{label}': max |delta logit| all_positions {d_ap:.3f}, decode {d_dec:.3f}, greedy steps "
            f"{d_gr:.3f}; greedy tokens change from step {first[0]} (no-cache) / {first[1]} (kv-cache)"
        )
        assert min(d_ap, d_dec, d_gr) > MIN_ABLATION_DELTA, (fam.name, label, d_ap, d_dec, d_gr)

    if fam.model_cls in (Gemma2ForCausalLM, Gemma3ForCausalLM):
        attn_cap = model.config.attn_logit_softcapping
        final_cap = model.config.final_logit_softcapping
        with softcap_watch(model, attn_cap, final_cap) as st:
            for text in fam.prompts + [ap_text]:
                family_logits(model, tok.encode(text).ids)
        attn = "" if attn_cap is None else (
            f"max |attention score| before cap {st['attn']:.2f} (cap {attn_cap}, changes scores by up to "
            f"{st['attn_delta']:.2f}), "
        )
        print(
            f"    soft-capping: {attn}max |final logit| before cap {st['final']:.2f} (cap {final_cap}, "
            f"changes logits by up to {st['final_delta']:.2f})"
        )

    return {
        "model": fam.name,
        "checkpoint_dtype": "float32",
        "compute_dtype": "float32",
        "generator": GENERATOR,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "attn_implementation": ATTN_IMPL,
        "exercises": fam.exercises,
        "prompts": prompts,
        "all_positions": {"text": ap_text, "ids": ap_ids, "logits": [dec_list(row) for row in ap_logits]},
        "decode": {"ids": ap_ids, "logits": [dec_list(row) for row in dec_logits]},
        "greedy": {
            "text": g_text,
            "ids": g_ids,
            "tokens": g_tokens,
            "tokens_kv_cache": g_tokens_kv,
            "tokens_generate": g_tokens_gen,
        },
    }


@torch.no_grad()
def family_greedy_teacher(model, ids: list, tokens: list) -> torch.Tensor:
    """The greedy run's per-step no-cache logits along a given trajectory."""
    return torch.stack([family_logits(model, list(ids) + tokens[:s])[-1] for s in range(len(tokens))])


def build_families(tok_json: str) -> list:
    tok = Tokenizer.from_str(tok_json)
    built = []
    print("building architecture families ...")
    for fam in family_specs():
        d = OUT / fam.name
        model = build_family_model(fam)
        model.save_pretrained(d)
        del model
        check_config_dtype(d, "float32")
        assert (d / "model.safetensors").exists()
        max_len = fam.tokenizer_max_length or json.loads((d / "config.json").read_text())["max_position_embeddings"]
        write_tokenizer_files(tok_json, d, max_len)
        if fam.to_4x is not None:
            before = behaviour_probe(load(d, torch.float32), tok)
            rewrite_family_config_4x(d, fam)
            after = behaviour_probe(load(d, torch.float32), tok)
            assert_same_behaviour(fam.name, before, after)
            print(f"  {fam.name}: 4.x config layout loads with identical rope parameters, rope buffers and logits")
        verify_family_rope(fam.name, load(d, torch.float32), tok)
        built.append(fam)
    print(f"computing family references (CPU, float32, attn_implementation={ATTN_IMPL!r}) ...")
    for fam in built:
        ref = family_reference(fam, OUT / fam.name, tok)
        write_json(OUT / fam.name / "reference.json", ref, compact=True)
    return built


# --------------------------------------------------------------------------- main


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    if Path.cwd().resolve() != ROOT:
        print(f"note: run from the repo root ({ROOT}); paths are resolved from the script location")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    seed_everything(0)

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    print("training tokenizer ...")
    tok = train_tokenizer()
    tok_json = tok.to_str(pretty=True)
    print(f"  vocab size {tok.get_vocab_size()}")

    # ---- llama-gqa-tied (f32, tied, default rope, transformers-5 config)
    cfg_a = LlamaConfig(
        **COMMON,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    model_a = build_model(cfg_a, seed=1234)
    d = OUT / "llama-gqa-tied"
    model_a.save_pretrained(d)
    write_tokenizer_files(tok_json, d, 4096)
    check_config_dtype(d, "float32")

    # ---- llama-bf16 (same weights as llama-gqa-tied, bfloat16 on disk)
    d = OUT / "llama-bf16"
    model_a.to(torch.bfloat16).save_pretrained(d)
    write_tokenizer_files(tok_json, d, 4096)
    check_config_dtype(d, "bfloat16")
    del model_a

    # ---- llama3-rope-headdim (f32, head_dim 24, llama3 rope scaling, sharded, 4.x config)
    cfg_b = LlamaConfig(
        **COMMON,
        head_dim=24,
        tie_word_embeddings=False,
        max_position_embeddings=1024,
        rope_parameters={"rope_theta": 500000.0, **LLAMA3_ROPE_SCALING},
    )
    model_b = build_model(cfg_b, seed=5678)
    d = OUT / "llama3-rope-headdim"
    model_b.save_pretrained(d, max_shard_size="300KB")
    shards = sorted(p.name for p in d.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (d / "model.safetensors.index.json").exists(), shards
    assert not (d / "model.safetensors").exists()
    check_config_dtype(d, "float32")
    rewrite_config_4x(d, "float32")
    write_tokenizer_files(tok_json, d, 1024)

    # ---- llama-f16 (same weights as llama3-rope-headdim, float16 on disk, single file, 4.x config)
    d = OUT / "llama-f16"
    model_b.to(torch.float16).save_pretrained(d, max_shard_size="1GB")
    assert (d / "model.safetensors").exists() and not (d / "model.safetensors.index.json").exists()
    check_config_dtype(d, "float16")
    rewrite_config_4x(d, "float16")
    write_tokenizer_files(tok_json, d, 1024)
    del model_b

    print("verifying rope scaling ...")
    verify_llama3_rope(OUT / "llama3-rope-headdim")
    verify_llama3_rope(OUT / "llama-f16")

    all_models = [
        ("llama-gqa-tied", "float32"),
        ("llama3-rope-headdim", "float32"),
        ("llama-bf16", "bfloat16"),
        ("llama-f16", "float16"),
    ]
    greedy_prompt = choose_greedy_prompt([name for name, _ in all_models])

    print(f"computing references (CPU, float32, attn_implementation={ATTN_IMPL!r}) ...")
    for name, ck in all_models:
        ref = make_reference(name, OUT / name, ck, greedy_prompt)
        write_json(OUT / name / "reference.json", ref, compact=True)

    print("half-precision compute noise (informational): max |logit(native dtype) - logit(f32 upcast)|")
    for name, dt in [("llama-bf16", torch.bfloat16), ("llama-f16", torch.float16)]:
        last, allpos = half_precision_delta(OUT / name, dt)
        print(f"  {name}: last-position {last:.6f}, any position {allpos:.6f}")

    build_families(tok_json)

    print("files:")
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"  {p.relative_to(ROOT)}  {p.stat().st_size}")
    total = dir_size(FIXTURES)
    print(f"total size of fixtures/: {total} bytes ({total / 1024 / 1024:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
