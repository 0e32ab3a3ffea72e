//! Sampling against its references (fixtures/sampling, written by
//! scripts/make_sampling_fixtures.py): every logits processor against transformers' own on the
//! same logits, the sampler's frequencies against the processed distribution (chi-square), and
//! beam search against transformers' `generate(num_beams=...)` on the fixture models.

mod common;

use common::{ids, run};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use tallow_core::sampling::Sampler;
use tallow_core::{
    BeamParams, EarlyStopping, Engine, FinishCause, GenerateRequest, LoadOptions, Prompt,
    SamplingParams,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn read(name: &str) -> Value {
    let path = fixtures().join("sampling").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (generate it with scripts/make_sampling_fixtures.py)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// JSON numbers as f32, `null` as -inf.
fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().map_or(f32::NEG_INFINITY, |f| f as f32))
        .collect()
}

/// The fixture's parameters (tallow's option names) over a sampler that changes nothing else.
fn params(p: &Value) -> SamplingParams {
    let f = |name: &str, default: f64| p.get(name).and_then(Value::as_f64).unwrap_or(default);
    SamplingParams {
        temperature: f("temperature", 1.0) as f32,
        top_k: f("topK", 0.0) as usize,
        top_p: f("topP", 1.0),
        min_p: f("minP", 0.0),
        typical_p: f("typicalP", 1.0),
        repetition_penalty: f("repetitionPenalty", 1.0) as f32,
        frequency_penalty: f("frequencyPenalty", 0.0) as f32,
        presence_penalty: f("presencePenalty", 0.0) as f32,
        penalty_window: f("penaltyWindow", 0.0) as usize,
        logit_bias: p
            .get("logitBias")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.parse().unwrap(), v.as_f64().unwrap() as f32))
                    .collect()
            })
            .unwrap_or_default(),
        seed: Some(1),
    }
}

#[test]
fn every_processor_agrees_with_transformers() {
    let fixture = read("processors.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut worst = (0.0f32, String::new());
    let mut tie_cases = vec![];
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let vocab = case["vocab"].as_u64().unwrap() as usize;
        let input = floats(&case["logits"]);
        let expected = floats(&case["expected"]);
        let mut sampler = Sampler::new(params(&case["params"]), &ids(&case["history"]));
        let got = sampler.distribution(&mut input.clone()).to_dense(vocab);
        let removed = |l: f32| l == f32::NEG_INFINITY;
        // Tokens one side kept and the other removed. transformers sorts with torch.sort, whose
        // order among equal values is unspecified: where tokens tied on their logit straddle a
        // top-p/typical boundary, which of them go is arbitrary. Only such ties may differ, and
        // as many tokens must be kept.
        let differ: Vec<usize> = (0..vocab)
            .filter(|&i| removed(got[i]) != removed(expected[i]))
            .collect();
        if !differ.is_empty() {
            let tied = differ.iter().all(|&i| input[i] == input[differ[0]]);
            let count = |v: &[f32]| v.iter().filter(|l| !removed(**l)).count();
            assert!(
                tied && count(&got) == count(&expected),
                "{name}: tokens {differ:?} kept/removed differently (logits {:?})",
                differ.iter().map(|&i| input[i]).collect::<Vec<_>>()
            );
            tie_cases.push(name.to_string());
        }
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            if removed(*g) || removed(*e) {
                continue;
            }
            let d = (g - e).abs();
            if d > worst.0 {
                worst = (d, format!("{name} token {i}"));
            }
        }
        assert!(got.iter().any(|l| !removed(*l)), "{name}: nothing kept");
    }
    println!("processors: ties resolved differently by torch.sort in {tie_cases:?}");
    println!(
        "processors: {} cases, max |Δlogit| vs transformers = {:e} ({})",
        cases.len(),
        worst.0,
        worst.1
    );
    assert!(worst.0 <= 1e-6, "max |Δ| {} at {}", worst.0, worst.1);
}

/// ln Γ(x) (Lanczos, g = 7, n = 9), accurate to ~1e-15 for x > 0.
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized upper incomplete gamma function Q(a, x): a series for x < a + 1, a continued
/// fraction (modified Lentz) otherwise.
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let front = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut sum, mut term, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        return 1.0 - sum * front;
    }
    let tiny = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / tiny;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..10_000 {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < tiny {
            d = tiny;
        }
        c = b + an / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    front * h
}

#[test]
fn the_p_value_function_agrees_with_torch() {
    let fixture = read("distributions.json");
    for row in fixture["gammaincc"].as_array().unwrap() {
        let (a, x, q) = (
            row[0].as_f64().unwrap(),
            row[1].as_f64().unwrap(),
            row[2].as_f64().unwrap(),
        );
        let got = gamma_q(a, x);
        assert!(
            (got - q).abs() < 1e-12 + 1e-9 * q,
            "Q({a}, {x}) = {got}, torch {q}"
        );
    }
}

#[test]
fn sampled_frequencies_follow_the_processed_distribution() {
    const DRAWS: usize = 40_000;
    let fixture = read("distributions.json");
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let logits = floats(&case["logits"]);
        let probs: Vec<f64> = case["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        let mut sampler = Sampler::new(params(&case["params"]), &ids(&case["history"]));
        let mut counts = vec![0usize; probs.len()];
        for _ in 0..DRAWS {
            counts[sampler.sample(&mut logits.clone()) as usize] += 1;
        }
        // Tokens the processors removed are never drawn.
        for (i, &p) in probs.iter().enumerate() {
            if p == 0.0 {
                assert_eq!(counts[i], 0, "{name}: removed token {i} was drawn");
            }
        }
        // Pearson's chi-square over the kept tokens, pooling cells expected < 5 times.
        let mut cells: Vec<(f64, f64)> = vec![];
        let mut pool = (0.0, 0.0);
        for (i, &p) in probs.iter().enumerate().filter(|(_, &p)| p > 0.0) {
            let expected = p * DRAWS as f64;
            if expected < 5.0 {
                pool.0 += counts[i] as f64;
                pool.1 += expected;
            } else {
                cells.push((counts[i] as f64, expected));
            }
        }
        if pool.1 > 0.0 {
            cells.push(pool);
        }
        let dof = cells.len() - 1;
        let chi2: f64 = cells.iter().map(|(o, e)| (o - e) * (o - e) / e).sum();
        let p_value = if dof == 0 {
            1.0
        } else {
            gamma_q(dof as f64 / 2.0, chi2 / 2.0)
        };
        println!("chi-square {name}: {DRAWS} draws, {dof} dof, χ² = {chi2:.2}, p = {p_value:.3}");
        assert!(
            p_value > 1e-3,
            "{name}: χ² = {chi2} with {dof} dof, p = {p_value}"
        );
    }
}

fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

#[test]
fn beam_search_matches_transformers() {
    let fixture = read("beam.json");
    let mut engines: HashMap<String, Engine> = HashMap::new();
    let cases = fixture["cases"].as_array().unwrap();
    let mut worst = 0.0f32;
    for case in cases {
        let model = case["model"].as_str().unwrap();
        let engine = engines
            .entry(model.to_string())
            .or_insert_with(|| Engine::load(model_dir(model), LoadOptions::default()).unwrap());
        let early_stopping = match &case["earlyStopping"] {
            Value::Bool(true) => EarlyStopping::Always,
            Value::Bool(false) => EarlyStopping::Heuristic,
            _ => EarlyStopping::Never,
        };
        let request = GenerateRequest {
            prompt: Prompt::Tokens(ids(&case["prompt"])),
            max_tokens: case["maxTokens"].as_u64().unwrap() as usize,
            stop_token_ids: ids(&case["stopTokenIds"]),
            beam: Some(BeamParams {
                num_beams: case["numBeams"].as_u64().unwrap() as usize,
                length_penalty: case["lengthPenalty"].as_f64().unwrap() as f32,
                early_stopping,
            }),
            ..Default::default()
        };
        let result = run(engine, request);
        let expected = ids(&case["tokens"]);
        assert_eq!(result.tokens, expected, "{model} {case}");
        let score = result.beam_score.unwrap();
        let want = case["score"].as_f64().unwrap() as f32;
        worst = worst.max((score - want).abs());
        assert!(
            (score - want).abs() < 1e-3,
            "{model}: score {score} vs {want}"
        );
        let last = *expected.last().unwrap();
        let stop_ids = ids(&case["stopTokenIds"]);
        let eos = ids(&case["eos"]);
        let cause = &result.finish_cause;
        if stop_ids.contains(&last) {
            assert_eq!(*cause, FinishCause::StopToken(last));
        } else if eos.contains(&last) {
            assert_eq!(*cause, FinishCause::Eos(last));
        } else {
            assert_eq!(*cause, FinishCause::MaxTokens);
        }
    }
    println!(
        "beam search: {} cases identical to transformers, max |Δscore| = {worst:e}",
        cases.len()
    );
}
