//! Every type round-trips within its error bound: our bytes, decoded by candle's block types (an
//! implementation of ggml's layouts independent of this crate, and the one tallow runs on), are
//! close to the input on seeded random rows and on edge cases. Byte-exactness against llama.cpp
//! is pinned by tallow-core's `tests/quantize_exact.rs`.

use super::{quantize_rows, QuantType};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
use candle_core::Device;

const ALL: [QuantType; 12] = [
    QuantType::F16,
    QuantType::BF16,
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::Q2K,
    QuantType::Q3K,
    QuantType::Q4K,
    QuantType::Q5K,
    QuantType::Q6K,
];

fn candle_type(ty: QuantType) -> GgmlDType {
    match ty {
        QuantType::F16 => GgmlDType::F16,
        QuantType::BF16 => GgmlDType::BF16,
        QuantType::Q4_0 => GgmlDType::Q4_0,
        QuantType::Q4_1 => GgmlDType::Q4_1,
        QuantType::Q5_0 => GgmlDType::Q5_0,
        QuantType::Q5_1 => GgmlDType::Q5_1,
        QuantType::Q8_0 => GgmlDType::Q8_0,
        QuantType::Q2K => GgmlDType::Q2K,
        QuantType::Q3K => GgmlDType::Q3K,
        QuantType::Q4K => GgmlDType::Q4K,
        QuantType::Q5K => GgmlDType::Q5K,
        QuantType::Q6K => GgmlDType::Q6K,
    }
}

/// How far a decoded value may be from the input, per group of `group` consecutive values:
/// `rel · spread + scale_rel · amax + abs`. `spread` is what the format's grid covers (below);
/// `scale_rel · amax` covers the fp16 rounding of stored scales and mins (2^-11 each), and
/// `abs` one fp16 subnormal step (2^-24) times the largest multiplier of a stored scale (code ×
/// sub-block scale), which only matters for tiny inputs.
struct Bound {
    group: usize,
    spread: Spread,
    rel: f32,
    scale_rel: f32,
    abs: f32,
}

enum Spread {
    /// The largest magnitude (symmetric grids).
    Amax,
    /// max - min (Q4_1, Q5_1 offset from the block's minimum).
    Range,
    /// max - min over the values and 0 (the K-quants never offset from a positive minimum).
    RangeWithZero,
}

fn bound(ty: QuantType) -> Bound {
    let subnormal = 2f32.powi(-24);
    let scaled = |group, spread, rel, multiplier: f32| Bound {
        group,
        spread,
        rel,
        scale_rel: 2f32.powi(-10),
        abs: multiplier * subnormal,
    };
    match ty {
        // Half an ulp: 2^-11 (f16) or 2^-8 (bf16) of the value; below f16's normal range, up to
        // a subnormal step.
        QuantType::F16 => Bound {
            group: 1,
            spread: Spread::Amax,
            rel: 2f32.powi(-11),
            scale_rel: 0.0,
            abs: subnormal,
        },
        QuantType::BF16 => Bound {
            group: 1,
            spread: Spread::Amax,
            rel: 2f32.powi(-8),
            scale_rel: 0.0,
            abs: 0.0,
        },
        // The extreme sits on code -8 (-16); the opposite extreme clamps to +7 (+15): one step.
        QuantType::Q4_0 => scaled(32, Spread::Amax, 1.0 / 8.0, 8.0),
        QuantType::Q5_0 => scaled(32, Spread::Amax, 1.0 / 16.0, 16.0),
        // Min..max in 15 (31) steps: half a step.
        QuantType::Q4_1 => scaled(32, Spread::Range, 0.5 / 15.0, 15.0),
        QuantType::Q5_1 => scaled(32, Spread::Range, 0.5 / 31.0, 31.0),
        QuantType::Q8_0 => scaled(32, Spread::Amax, 0.5 / 127.0, 127.0),
        // The K-quants' fits trade the extremes against the bulk, and their scales are
        // quantized again, so there is no simple closed form: these are about 1.5 times the
        // worst seen on the cases below. An even grid over the spread would give half a step:
        // 1/6, 1/14, 1/30, 1/62 and 1/126.
        QuantType::Q2K => scaled(256, Spread::RangeWithZero, 0.4, 3.0 * 15.0 * 2.0),
        QuantType::Q3K => scaled(256, Spread::Amax, 0.25, 4.0 * 32.0),
        QuantType::Q4K => scaled(256, Spread::RangeWithZero, 0.07, 15.0 * 63.0 * 2.0),
        QuantType::Q5K => scaled(256, Spread::RangeWithZero, 0.045, 31.0 * 63.0 * 2.0),
        QuantType::Q6K => scaled(256, Spread::Amax, 0.025, 32.0 * 128.0),
    }
}

/// splitmix64: a small seeded generator, so the cases need no extra dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

const ROWS: usize = 4;
const COLS: usize = 512;

/// Named inputs of ROWS × COLS values.
fn cases() -> Vec<(&'static str, Vec<f32>)> {
    let mut rng = Rng(0x7a11_0c0d);
    let n = ROWS * COLS;
    let mut normal = |scale: f32| -> Vec<f32> { (0..n).map(|_| scale * rng.normal()).collect() };
    let weights = normal(0.05);
    let mut outlier = normal(0.05);
    outlier[300] = 40.0;
    outlier[1500] = -40.0;
    let negative = normal(1.0).iter().map(|v| -v.abs() - 0.1).collect();
    let tiny = normal(1e-6);
    let wide = normal(1.0).iter().map(|v| v * 1e3).collect();
    vec![
        ("normal", weights),
        ("zeros", vec![0.0; n]),
        ("constant", vec![0.3; n]),
        ("negative constant", vec![-0.7; n]),
        ("outlier", outlier),
        ("negative only", negative),
        ("tiny", tiny),
        ("wide", wide),
    ]
}

fn quantize(ty: QuantType, x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; x.len() / ty.block_size() * ty.block_bytes()];
    quantize_rows(ty, x, COLS, &mut out);
    out
}

fn decode(ty: QuantType, bytes: &[u8]) -> Vec<f32> {
    let cpu = Device::Cpu;
    qtensor_from_ggml(candle_type(ty), bytes, vec![ROWS, COLS], &cpu)
        .and_then(|q| q.dequantize(&cpu))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .unwrap()
}

/// The worst error of `y` against `x`, as a fraction of the allowed bound (≤ 1 passes).
fn worst_ratio(ty: QuantType, x: &[f32], y: &[f32]) -> f32 {
    let b = bound(ty);
    let mut worst = 0.0f32;
    for (xs, ys) in x.chunks(b.group).zip(y.chunks(b.group)) {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (lo, hi) = match b.spread {
            Spread::RangeWithZero => (0.0, 0.0),
            _ => (f32::MAX, f32::MIN),
        };
        let min = xs.iter().fold(lo, |m, &v| m.min(v));
        let max = xs.iter().fold(hi, |m, &v| m.max(v));
        let spread = match b.spread {
            Spread::Amax => amax,
            Spread::Range | Spread::RangeWithZero => max - min,
        };
        let allowed = b.rel * spread + b.scale_rel * amax + b.abs;
        for (&a, &d) in xs.iter().zip(ys) {
            assert!(d.is_finite(), "{ty:?}: decoded {d} for {a}");
            worst = worst.max((a - d).abs() / allowed);
        }
    }
    worst
}

#[test]
fn every_type_round_trips_within_its_bound() {
    let mut failures = Vec::new();
    for ty in ALL {
        for (name, x) in cases() {
            let y = decode(ty, &quantize(ty, &x));
            let ratio = worst_ratio(ty, &x, &y);
            println!("{ty:?} {name}: worst error {ratio:.3} of the bound");
            if ratio > 1.0 {
                failures.push(format!("{ty:?} {name}: {ratio:.3}"));
            }
            if name == "zeros" {
                assert!(y.iter().all(|&v| v == 0.0), "{ty:?}: zeros decode to zeros");
            }
        }
    }
    assert!(failures.is_empty(), "over the bound: {failures:?}");
}

/// The K-quants on weight-like data: root-mean-square error relative to the data's RMS, the
/// figure that tracks model quality. Limits are about 1.1 times what these quantizers reach
/// (0.298, 0.150, 0.072, 0.036, 0.018), so a search that goes wrong shows.
#[test]
fn k_quants_relative_rms_error() {
    let (_, x) = cases().remove(0);
    let rms = |v: &mut dyn Iterator<Item = f32>| {
        let (s, n) = v.fold((0.0f64, 0usize), |(s, n), e| {
            (s + (e as f64).powi(2), n + 1)
        });
        (s / n as f64).sqrt()
    };
    let signal = rms(&mut x.iter().copied());
    for (ty, limit) in [
        (QuantType::Q2K, 0.33),
        (QuantType::Q3K, 0.165),
        (QuantType::Q4K, 0.08),
        (QuantType::Q5K, 0.04),
        (QuantType::Q6K, 0.02),
    ] {
        let y = decode(ty, &quantize(ty, &x));
        let rel = rms(&mut x.iter().zip(&y).map(|(a, b)| a - b)) / signal;
        println!("{ty:?}: relative RMS error {rel:.4}");
        assert!(
            rel <= limit,
            "{ty:?}: relative RMS error {rel:.4} > {limit}"
        );
    }
}

/// All-zero rows, as ggml encodes them: d = 0 and the codes of value 0 — the zero point for
/// Q4_0 (8) and Q5_0 (16, fifth bits all set), whose d is -0 (0 / -8), and code 0 for the rest
/// (Q3_K's fit leaves an all-zero sub-block at code 0, not at its zero point 4).
#[test]
fn zeros_encode_as_ggml_does() {
    for ty in ALL {
        let block: Vec<u8> = match ty {
            QuantType::Q4_0 => [vec![0, 0x80], vec![0x88; 16]].concat(),
            QuantType::Q5_0 => [vec![0, 0x80], vec![0xff; 4], vec![0; 16]].concat(),
            _ => vec![0; ty.block_bytes()],
        };
        let bytes = quantize(ty, &vec![0.0; ROWS * COLS]);
        for (i, b) in bytes.chunks(ty.block_bytes()).enumerate() {
            assert_eq!(b, block, "{ty:?} block {i}");
        }
    }
}

/// Blocks are independent: a matrix quantized in one call (split across rayon tasks) equals its
/// rows quantized one by one.
#[test]
fn rows_are_quantized_independently() {
    let mut rng = Rng(7);
    let (rows, cols) = (64, 1024);
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.normal()).collect();
    for ty in ALL {
        let row_bytes = cols / ty.block_size() * ty.block_bytes();
        let mut whole = vec![0u8; rows * row_bytes];
        quantize_rows(ty, &x, cols, &mut whole);
        for (r, expected) in whole.chunks(row_bytes).enumerate() {
            let mut one = vec![0u8; row_bytes];
            quantize_rows(ty, &x[r * cols..(r + 1) * cols], cols, &mut one);
            assert_eq!(one, expected, "{ty:?} row {r}");
        }
    }
}

#[test]
fn block_sizes_are_ggml_type_sizes() {
    let sizes: Vec<(usize, usize)> = ALL
        .iter()
        .map(|t| (t.block_size(), t.block_bytes()))
        .collect();
    assert_eq!(
        sizes,
        [
            (1, 2),
            (1, 2),
            (32, 18),
            (32, 20),
            (32, 22),
            (32, 24),
            (32, 34),
            (256, 84),
            (256, 110),
            (256, 144),
            (256, 176),
            (256, 210),
        ]
    );
}

#[test]
#[should_panic(expected = "not a positive multiple of the block size")]
fn rows_must_hold_whole_blocks() {
    let mut out = vec![0u8; 18 * 3];
    quantize_rows(QuantType::Q4_0, &[0.0; 96], 48, &mut out);
}

#[test]
#[should_panic(expected = "destination size")]
fn destination_must_fit_exactly() {
    let mut out = vec![0u8; 84 + 1];
    quantize_rows(QuantType::Q2K, &[0.0; 256], 256, &mut out);
}
