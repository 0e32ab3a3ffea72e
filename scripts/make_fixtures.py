#!/usr/bin/env python3
"""Generate tiny, random, deterministic Llama checkpoints plus reference outputs.

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
  (informational), and the total size of ``fixtures/``.

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
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM  # noqa: E402

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

    print("files:")
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"  {p.relative_to(ROOT)}  {p.stat().st_size}")
    total = dir_size(FIXTURES)
    print(f"total size of fixtures/: {total} bytes ({total / 1024 / 1024:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
