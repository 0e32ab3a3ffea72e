//! Helpers shared by the reference tests: reading fixture JSON, running the engine, comparing.
#![allow(dead_code)] // each test file uses its own subset

use serde_json::Value;
use std::sync::mpsc::channel;
use tallow_core::{
    Engine, Event, GenerateRequest, GenerationResult, Logits, Prompt, SamplingParams,
};

pub fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn evaluate(engine: &Engine, tokens: Vec<u32>, logits: Logits) -> Vec<f32> {
    let (tx, rx) = channel();
    engine
        .evaluate(tokens, logits, Box::new(move |r| tx.send(r).unwrap()))
        .unwrap();
    rx.recv().unwrap().unwrap()
}

/// The largest |Δlogit| over every position of `all` (`{ids, logits: [[...]]}`, a reference's
/// `all_positions`), evaluated in one pass.
pub fn all_positions_max_diff(engine: &Engine, all: &Value) -> f32 {
    let expected: Vec<f32> = all["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    max_abs_diff(&evaluate(engine, ids(&all["ids"]), Logits::All), &expected)
}

/// `max_tokens` greedy tokens after `prompt`, EOS ignored, in `session` if given.
pub fn greedy_in(
    engine: &Engine,
    prompt: Vec<u32>,
    max_tokens: usize,
    session: Option<u64>,
) -> GenerationResult {
    let request = GenerateRequest {
        prompt: Prompt::Tokens(prompt),
        max_tokens,
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
    run(engine, request)
}

/// Runs `request` to the end and returns its result.
pub fn run(engine: &Engine, request: GenerateRequest) -> GenerationResult {
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

/// `max_tokens` greedy tokens after `prompt`, EOS ignored.
pub fn greedy(engine: &Engine, prompt: Vec<u32>, max_tokens: usize) -> GenerationResult {
    greedy_in(engine, prompt, max_tokens, None)
}
