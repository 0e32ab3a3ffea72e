#!/usr/bin/env python3
"""Reference outputs for tallow's sampling: logits processors, sampled distributions, beam search.

What it writes (fixtures/sampling/, replaced each run)
------------------------------------------------------
``processors.json``
    Cases of ``{name, params, vocab, history, logits, expected}``: random float32 logits (fixed
    seeds; some rounded to one decimal so that top-k/top-p/min-p/typical meet ties), a token
    history with repeats, tallow's option names in ``params``, and ``expected`` = the logits after
    transformers' own processors (``SequenceBiasLogitsProcessor`` for logit bias,
    ``RepetitionPenaltyLogitsProcessor``, ``TemperatureLogitsWarper``, ``TopKLogitsWarper``,
    ``TopPLogitsWarper``, ``MinPLogitsWarper``, ``TypicalLogitsWarper``), with removed tokens as
    ``null`` (-inf). Frequency and presence penalties have no transformers processor: their
    reference is the OpenAI API's documented formula
    ``logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty``, written here
    in torch. A penalty window of N means the processors see ``history[-N:]``. Chained cases apply
    tallow's documented order: logit bias, repetition penalty, frequency/presence, temperature,
    top-k, top-p, min-p, typical-p.
``distributions.json``
    For the chi-square tests: small vocabularies whose processed logits (as above) define the
    distribution the sampler must draw from, with ``probs`` = torch.softmax of them in float64.
    Also ``gammaincc``: (a, x, Q(a, x)) triples from ``torch.special.gammaincc``, which the Rust
    test uses to check its own chi-square p-value function.
``beam.json``
    transformers' ``model.generate(num_beams=..., do_sample=False, length_penalty=...,
    early_stopping=..., max_new_tokens=..., eos_token_id=[...], return_dict_in_generate=True,
    output_scores=True)`` on fixture models (fixtures/models, loaded in float32 with eager
    attention), asserted to run no logits processor: the generated ids of the best beam and its
    score. ``eos_token_id`` adds, besides the model's EOS, a token that the greedy continuation
    produces often (``extra_eos``), so that beams finish early and the early-stopping rules are
    exercised; tallow receives it as a stop token id.

How to run
----------
From the repository root, with the pinned packages of scripts/requirements-fixtures.txt::

    .venv/bin/python scripts/make_sampling_fixtures.py

No network access is needed. Output is reproducible with the pinned versions.
"""

import json
import os
import shutil
from collections import Counter
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from transformers.generation.logits_process import (  # noqa: E402
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "sampling"
MODELS = ROOT / "fixtures" / "models"

torch.set_num_threads(1)


def f32_list(t: torch.Tensor) -> list:
    """float32 values as JSON numbers (exact: a float32 is a float64), -inf as null."""
    return [None if v == float("-inf") else float(v) for v in t.to(torch.float32).tolist()]


def openai_penalties(ids: torch.Tensor, scores: torch.Tensor, frequency: float, presence: float):
    """The OpenAI API's frequency/presence penalty formula over the token ids `ids`."""
    counts = torch.bincount(ids, minlength=scores.shape[-1]).to(scores.dtype)
    return scores - counts * frequency - (counts > 0).to(scores.dtype) * presence


def apply(params: dict, history: list, logits: torch.Tensor) -> torch.Tensor:
    """transformers' processors for `params` (tallow's option names), in tallow's order."""
    scores = logits.clone().unsqueeze(0)  # [1, vocab]
    window = params.get("penaltyWindow", 0)
    seen = history[-window:] if window else history
    ids = torch.tensor([seen], dtype=torch.long)
    if "logitBias" in params:
        bias = [[[int(k)], float(v)] for k, v in params["logitBias"].items()]
        scores = SequenceBiasLogitsProcessor(sequence_bias=bias)(ids, scores)
    if params.get("repetitionPenalty", 1.0) != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(penalty=params["repetitionPenalty"])(ids, scores)
    if params.get("frequencyPenalty", 0.0) != 0.0 or params.get("presencePenalty", 0.0) != 0.0:
        scores = openai_penalties(
            ids[0], scores, params.get("frequencyPenalty", 0.0), params.get("presencePenalty", 0.0)
        )
    if "temperature" in params:
        scores = TemperatureLogitsWarper(params["temperature"])(ids, scores)
    if params.get("topK", 0) > 0:
        scores = TopKLogitsWarper(top_k=params["topK"])(ids, scores)
    if params.get("topP", 1.0) < 1.0:
        scores = TopPLogitsWarper(top_p=params["topP"])(ids, scores)
    if params.get("minP", 0.0) > 0.0:
        scores = MinPLogitsWarper(min_p=params["minP"])(ids, scores)
    if params.get("typicalP", 1.0) < 1.0:
        scores = TypicalLogitsWarper(mass=params["typicalP"])(ids, scores)
    return scores[0]


def random_logits(gen: torch.Generator, vocab: int, scale: float, ties: bool) -> torch.Tensor:
    logits = torch.randn(vocab, generator=gen, dtype=torch.float32) * scale
    if ties:
        logits = torch.round(logits * 2) / 2  # many exact ties
    return logits


def random_history(gen: torch.Generator, vocab: int, n: int) -> list:
    # Draw from a small part of the vocabulary so that tokens repeat.
    pool = torch.randperm(vocab, generator=gen)[: max(4, n // 3)]
    picks = torch.randint(0, len(pool), (n,), generator=gen)
    return [int(pool[i]) for i in picks]


PROCESSOR_CASES = [
    ("logit-bias", {"logitBias": {"3": 5.0, "17": -100.0, "40": 2.5, "0": -1.25}}),
    ("repetition-1.3", {"repetitionPenalty": 1.3}),
    ("repetition-0.7", {"repetitionPenalty": 0.7}),
    ("repetition-window-8", {"repetitionPenalty": 1.5, "penaltyWindow": 8}),
    ("frequency", {"frequencyPenalty": 0.8}),
    ("presence", {"presencePenalty": -0.6}),
    ("frequency-presence-window", {"frequencyPenalty": 1.1, "presencePenalty": 0.4, "penaltyWindow": 10}),
    ("temperature-0.7", {"temperature": 0.7}),
    ("temperature-1.9", {"temperature": 1.9}),
    ("top-k-1", {"topK": 1}),
    ("top-k-7", {"topK": 7}),
    ("top-p-0.9", {"topP": 0.9}),
    ("top-p-0.3", {"topP": 0.3}),
    ("top-p-0.999", {"topP": 0.999}),
    ("min-p-0.05", {"minP": 0.05}),
    ("min-p-0.4", {"minP": 0.4}),
    ("typical-0.9", {"typicalP": 0.9}),
    ("typical-0.3", {"typicalP": 0.3}),
    (
        "chain-all",
        {
            "logitBias": {"5": 3.0, "9": -2.0},
            "repetitionPenalty": 1.2,
            "frequencyPenalty": 0.5,
            "presencePenalty": 0.3,
            "penaltyWindow": 16,
            "temperature": 0.8,
            "topK": 40,
            "topP": 0.9,
            "minP": 0.02,
            "typicalP": 0.95,
        },
    ),
    ("chain-k-p", {"temperature": 1.3, "topK": 20, "topP": 0.8}),
    ("chain-p-minp-typical", {"temperature": 0.6, "topP": 0.95, "minP": 0.1, "typicalP": 0.7}),
]


def processor_cases() -> list:
    cases = []
    gen = torch.Generator().manual_seed(20240601)
    for vocab, scale, ties in [(64, 2.0, False), (300, 3.0, False), (48, 1.5, True)]:
        for name, params in PROCESSOR_CASES:
            logits = random_logits(gen, vocab, scale, ties)
            history = random_history(gen, vocab, 24)
            expected = apply(params, history, logits)
            cases.append(
                {
                    "name": f"{name}/v{vocab}{'-ties' if ties else ''}",
                    "params": params,
                    "vocab": vocab,
                    "history": history,
                    "logits": f32_list(logits),
                    "expected": f32_list(expected),
                }
            )
    return cases


DISTRIBUTION_CASES = [
    ("plain", {"temperature": 1.0}),
    ("temperature", {"temperature": 0.5}),
    ("top-k", {"temperature": 1.0, "topK": 6}),
    ("top-p", {"temperature": 1.0, "topP": 0.7}),
    ("min-p", {"temperature": 1.0, "minP": 0.15}),
    ("typical", {"temperature": 1.0, "typicalP": 0.6}),
    (
        "penalties-chain",
        {
            "logitBias": {"2": 1.5},
            "repetitionPenalty": 1.4,
            "frequencyPenalty": 0.3,
            "presencePenalty": 0.2,
            "temperature": 0.9,
            "topK": 12,
            "topP": 0.95,
        },
    ),
]


def distribution_cases() -> list:
    out = []
    gen = torch.Generator().manual_seed(777)
    for name, params in DISTRIBUTION_CASES:
        vocab = 16
        logits = random_logits(gen, vocab, 1.2, False)
        history = random_history(gen, vocab, 10)
        processed = apply(params, history, logits)
        probs = torch.softmax(processed.to(torch.float64), dim=-1)
        out.append(
            {
                "name": name,
                "params": params,
                "vocab": vocab,
                "history": history,
                "logits": f32_list(logits),
                "probs": [float(p) for p in probs.tolist()],
            }
        )
    return out


def gammaincc_table() -> list:
    rows = []
    for a in [0.5, 1.0, 2.5, 3.0, 7.5, 15.0]:
        for x in [0.1, 1.0, 3.0, 8.0, 20.0, 40.0]:
            q = torch.special.gammaincc(torch.tensor(a, dtype=torch.float64), torch.tensor(x, dtype=torch.float64))
            rows.append([a, x, float(q)])
    return rows


BEAM_MODELS = ["llama-gqa-tied", "qwen2-bias-tied", "mistral-sliding"]
BEAM_PROMPTS = ["The orchard in winter", "A small boat", "Numbers: 1, 2, 3"]
BEAM_CONFIGS = [
    {"numBeams": 3, "lengthPenalty": 1.0, "earlyStopping": False, "maxTokens": 12},
    {"numBeams": 4, "lengthPenalty": 0.0, "earlyStopping": True, "maxTokens": 10},
    {"numBeams": 2, "lengthPenalty": 2.0, "earlyStopping": "never", "maxTokens": 9},
    {"numBeams": 5, "lengthPenalty": -0.5, "earlyStopping": False, "maxTokens": 8},
]


def beam_cases() -> list:
    from tokenizers import Tokenizer

    out = []
    for name in BEAM_MODELS:
        d = MODELS / name
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos)
        for p, text in enumerate(BEAM_PROMPTS):
            ids = tok.encode(text).ids
            with torch.no_grad():
                greedy = model.generate(
                    torch.tensor([ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    do_sample=False,
                    max_new_tokens=16,
                    eos_token_id=None,
                )[0, len(ids):].tolist()
            # The most frequent greedy token (first seen on ties) ends beams too.
            extra = Counter(greedy).most_common(1)[0][0]
            for c, cfg in enumerate(BEAM_CONFIGS):
                if (p + c) % 2 == 1:
                    continue  # half the grid keeps the fixture small
                processors = model._get_logits_processor(
                    generation_config=transformers.GenerationConfig(
                        num_beams=cfg["numBeams"], do_sample=False, eos_token_id=eos + [extra]
                    ),
                    input_ids_seq_length=len(ids),
                    encoder_input_ids=torch.tensor([ids]),
                    prefix_allowed_tokens_fn=None,
                    logits_processor=None,
                    device="cpu",
                )
                assert len(processors) == 0, f"unexpected logits processors: {processors}"
                with torch.no_grad():
                    res = model.generate(
                        torch.tensor([ids]),
                        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                        do_sample=False,
                        num_beams=cfg["numBeams"],
                        num_return_sequences=1,
                        length_penalty=cfg["lengthPenalty"],
                        early_stopping=cfg["earlyStopping"],
                        max_new_tokens=cfg["maxTokens"],
                        eos_token_id=eos + [extra],
                        return_dict_in_generate=True,
                        output_scores=True,
                    )
                tokens = res.sequences[0, len(ids):].tolist()
                # generate() pads a beam shorter than the longest returned one; with one returned
                # sequence there is no padding, but cut at the first end token to be sure.
                for i, t in enumerate(tokens):
                    if t in eos + [extra]:
                        tokens = tokens[: i + 1]
                        break
                out.append(
                    {
                        "model": name,
                        "prompt": ids,
                        **cfg,
                        "stopTokenIds": [extra],
                        "eos": eos,
                        "tokens": tokens,
                        "score": float(res.sequences_scores[0]),
                    }
                )
                print(f"  {name} p{p} {cfg}: {len(tokens)} tokens, ends with {tokens[-1]} (extra eos {extra})")
    return out


def write(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n")


def main() -> None:
    torch.manual_seed(0)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__}
    write(OUT / "processors.json", {**meta, "cases": processor_cases()})
    write(
        OUT / "distributions.json",
        {**meta, "cases": distribution_cases(), "gammaincc": gammaincc_table()},
    )
    write(OUT / "beam.json", {**meta, "cases": beam_cases()})
    for f in sorted(OUT.iterdir()):
        print(f"{f.relative_to(ROOT)}: {f.stat().st_size} bytes")


if __name__ == "__main__":
    main()
