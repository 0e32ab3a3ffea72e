//! Sessions keep a sequence's KV cache between generations: a follow-up prompt that extends the
//! conversation reuses the common prefix and must produce exactly what a fresh run produces.

use std::path::PathBuf;
use std::sync::mpsc::channel;
use tallow_core::{
    Engine, Event, GenerateRequest, GenerationResult, LoadOptions, Prompt, SamplingParams,
};

fn engine(name: &str) -> Engine {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name);
    Engine::load(dir, LoadOptions::default()).unwrap()
}

fn generate(engine: &Engine, prompt: Vec<u32>, session: Option<u64>) -> GenerationResult {
    let request = GenerateRequest {
        prompt: Prompt::Tokens(prompt),
        max_tokens: 12,
        sampling: SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
        stop: vec![],
        include_stop: false,
        ignore_eos: true,
        session,
        ..Default::default()
    };
    let (tx, rx) = channel();
    engine
        .generate(request, Box::new(move |e| tx.send(e).unwrap()))
        .unwrap();
    loop {
        match rx.recv().unwrap() {
            Event::Done(result) => return result,
            Event::Error(e) => panic!("{e}"),
            Event::Token { .. } => {}
        }
    }
}

#[test]
fn a_follow_up_reuses_the_cached_prefix_and_matches_a_fresh_run() {
    // A sliding-window model, so reuse must also respect the window.
    for name in ["llama-gqa-tied", "mistral-sliding", "gemma3"] {
        let engine = engine(name);
        let first_prompt: Vec<u32> = vec![0, 300, 301, 302, 57, 58, 59, 60, 61, 62];
        let first = generate(&engine, first_prompt.clone(), Some(1));
        assert_eq!(first.cached_prompt_tokens, 0);

        // The next turn: the whole conversation so far plus new text.
        let mut follow_up = first_prompt.clone();
        follow_up.extend(&first.tokens);
        follow_up.extend([70, 71, 72]);
        let reused = generate(&engine, follow_up.clone(), Some(1));
        let fresh = generate(&engine, follow_up.clone(), None);
        // Everything but the last generated token of the first turn was cached.
        assert_eq!(
            reused.cached_prompt_tokens,
            first_prompt.len() + first.tokens.len() - 1,
            "{name}"
        );
        assert_eq!(fresh.cached_prompt_tokens, 0);
        assert_eq!(reused.tokens, fresh.tokens, "{name}");

        // A prompt that diverges early reuses only the common prefix.
        let mut diverged = first_prompt[..3].to_vec();
        diverged.extend([90, 91, 92, 93]);
        let partial = generate(&engine, diverged.clone(), Some(1));
        assert_eq!(partial.cached_prompt_tokens, 3, "{name}");
        assert_eq!(
            partial.tokens,
            generate(&engine, diverged, None).tokens,
            "{name}"
        );

        // Dropping the session frees its cache: nothing is reused afterwards.
        engine.drop_session(1).unwrap();
        assert_eq!(
            generate(&engine, follow_up, Some(1)).cached_prompt_tokens,
            0
        );
    }
}
