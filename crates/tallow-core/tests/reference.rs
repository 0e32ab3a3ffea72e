//! The engine against transformers on the fixture checkpoints (scripts/make_fixtures.py):
//! last-position and all-position logits, token-by-token decode through the KV cache, and 32
//! greedy tokens. References are transformers in f32 (half checkpoints upcast, as on our CPU).

mod common;

use common::{all_positions_max_diff, evaluate, floats, greedy, ids, max_abs_diff, read_json};
use serde_json::Value;
use std::path::PathBuf;
use tallow_core::kv_cache::SequenceCache;
use tallow_core::model::Model;
use tallow_core::{DeviceKind, Engine, FinishReason, LoadOptions, Logits};

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

/// Every fixture model (a directory with a reference.json).
fn models() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| fixtures().join(name).join("reference.json").is_file())
        .collect();
    names.sort();
    assert!(
        names.len() >= 4,
        "fixture models missing: run scripts/make_fixtures.py"
    );
    names
}

fn model_dir(name: &str) -> PathBuf {
    fixtures().join(name)
}

fn reference(name: &str) -> Value {
    read_json(&model_dir(name).join("reference.json"))
}

#[test]
fn prefill_logits_match_transformers() {
    for name in &models() {
        let engine = Engine::load(model_dir(name), LoadOptions::default()).unwrap();
        let reference = reference(name);
        let mut worst = 0.0f32;
        for prompt in reference["prompts"].as_array().unwrap() {
            let expected_ids = ids(&prompt["ids"]);
            let encoded = engine
                .tokenizer()
                .unwrap()
                .encode(prompt["text"].as_str().unwrap(), true, false)
                .unwrap();
            assert_eq!(encoded, expected_ids, "{name}: tokenization");
            let got = evaluate(&engine, expected_ids, Logits::Last);
            worst = worst.max(max_abs_diff(&got, &floats(&prompt["last_logits"])));
        }
        worst = worst.max(all_positions_max_diff(&engine, &reference["all_positions"]));
        println!("{name}: prefill max |Δlogit| = {worst:.3e}");
        assert!(
            worst <= TOLERANCE,
            "{name}: max |Δlogit| {worst} > {TOLERANCE}"
        );
    }
}

#[test]
fn token_by_token_decode_matches_transformers() {
    for name in &models() {
        let model = Model::load(&model_dir(name), DeviceKind::Cpu, None).unwrap();
        let reference = reference(name);
        // transformers' own token-by-token run where recorded (it differs from prefill for rope
        // variants keyed on the sequence length), else the prefill logits.
        let all = if reference.get("decode").is_some() {
            &reference["decode"]
        } else {
            &reference["all_positions"]
        };
        let mut cache = SequenceCache::new(model.decoder.spec().num_layers());
        let mut worst = 0.0f32;
        for (id, expected) in ids(&all["ids"])
            .into_iter()
            .zip(all["logits"].as_array().unwrap())
        {
            let got = model
                .decoder
                .forward(&[id], &mut cache, Logits::Last)
                .unwrap();
            worst = worst.max(max_abs_diff(
                &got.flatten_all().unwrap().to_vec1().unwrap(),
                &floats(expected),
            ));
        }
        println!("{name}: decode max |Δlogit| = {worst:.3e}");
        assert!(
            worst <= TOLERANCE,
            "{name}: max |Δlogit| {worst} > {TOLERANCE}"
        );
    }
}

/// A prompt longer than a micro-batch runs in several passes through the layers, each attending
/// to the positions cached before it: the logits are those of one pass, for every family
/// (sliding windows, MoE, rope scalings keyed on the sequence length).
#[test]
fn micro_batches_give_the_logits_of_one_pass() {
    for name in &models() {
        let model = Model::load(&model_dir(name), DeviceKind::Cpu, None).unwrap();
        let decoder = &model.decoder;
        let vocab = decoder.spec().vocab_size as u32;
        let tokens: Vec<u32> = (0..600u32).map(|i| (i * 7919 + 13) % vocab).collect();
        let run = |batch: usize| -> Vec<f32> {
            let mut cache = SequenceCache::new(decoder.spec().num_layers());
            let logits = decoder.forward_in_batches(&tokens, &mut cache, Logits::All, batch);
            logits.unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        // 250 + 250 + 100 tokens against all 600 at once.
        let worst = max_abs_diff(&run(tokens.len()), &run(250));
        println!("{name}: micro-batches max |Δlogit| = {worst:.3e}");
        assert!(
            worst <= TOLERANCE,
            "{name}: max |Δlogit| {worst} > {TOLERANCE}"
        );
    }
}

/// What transformers' `generate()` returns where recorded (it differs from a no-cache argmax loop
/// for rope variants keyed on the sequence length), else the argmax loop.
fn expected_greedy(greedy: &Value) -> Vec<u32> {
    match greedy.get("tokens_generate") {
        Some(tokens) => ids(tokens),
        None => ids(&greedy["tokens"]),
    }
}

#[test]
fn greedy_tokens_match_transformers() {
    for name in &models() {
        let engine = Engine::load(model_dir(name), LoadOptions::default()).unwrap();
        let expected = &reference(name)["greedy"];
        let result = greedy(&engine, ids(&expected["ids"]), 32);
        assert_eq!(
            result.tokens,
            expected_greedy(expected),
            "{name}: greedy tokens"
        );
        assert_eq!(result.finish_reason, FinishReason::Length);
        assert_eq!(result.prompt_tokens, ids(&expected["ids"]).len());
    }
}
