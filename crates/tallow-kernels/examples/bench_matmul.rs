//! Times [`tallow_kernels::matmul`] per weight type and instruction set tier on decoder shapes:
//! `cargo run --release -p tallow-kernels --example bench_matmul [-- TYPE[,TYPE] [threads]]`.
//! Prints microseconds per product and the weight bytes streamed per second; for tuning kernels
//! (the model-level comparison with llama.cpp is `npm run bench`).

use std::time::Instant;
use tallow_kernels::matmul::{kernel, matmul_on, Isa, Layout, Weights};
use tallow_kernels::{quantize_rows, QuantType};

const TYPES: [(&str, QuantType); 6] = [
    ("f16", QuantType::F16),
    ("q4_0", QuantType::Q4_0),
    ("q5_0", QuantType::Q5_0),
    ("q8_0", QuantType::Q8_0),
    ("q4_k", QuantType::Q4K),
    ("q6_k", QuantType::Q6K),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wanted = args.first().map(String::as_str).unwrap_or("all");
    let threads: usize = args.get(1).and_then(|t| t.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    // Llama-3.2-1B's up projection [8192, 2048] and Qwen2.5-0.5B's [4864, 896]: generation
    // (m = 1) and a 512-token prompt.
    for (name, ty) in TYPES {
        if wanted != "all" && !wanted.split(',').any(|w| w == name) {
            continue;
        }
        // (896 is not a multiple of the K-quants' 256-value blocks: llama-quantize falls back
        // to Q5_0/Q8_0 for those rows, and so does this bench.)
        for (n, k) in [(8192, 2048), (4864, 896)] {
            if k % ty.block_size() == 0 {
                bench(&pool, name, ty, n, k);
            }
        }
    }
}

fn bench(pool: &rayon::ThreadPool, name: &str, ty: QuantType, n: usize, k: usize) {
    let values: Vec<f32> = (0..n * k)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0)
        .collect();
    let mut plain = vec![0u8; n * k / ty.block_size() * ty.block_bytes()];
    quantize_rows(ty, &values, k, &mut plain);
    for &layout in Layout::all_for(ty) {
        let mut bytes = plain.clone();
        let w = Weights {
            ty,
            layout: Layout::Rows,
            bytes: &plain,
            rows: n,
            cols: k,
        };
        if layout == Layout::Interleaved {
            pool.install(|| w.interleave_into(&mut bytes));
        }
        let w = Weights {
            layout,
            bytes: &bytes,
            ..w
        };
        let case = |what: &str| format!("{name:5} {layout:?} [{n}x{k}] {what}");
        for &isa in Isa::available() {
            if kernel(ty, isa).is_none() {
                continue;
            }
            for m in [1usize, 512] {
                let a: Vec<f32> = values[..m * k].to_vec();
                let mut dst = vec![0f32; m * n];
                let reps = if m == 1 { 50 } else { 2 };
                pool.install(|| matmul_on(isa, &w, &a, &mut dst));
                let start = Instant::now();
                for _ in 0..reps {
                    pool.install(|| matmul_on(isa, &w, &a, &mut dst));
                }
                let secs = start.elapsed().as_secs_f64() / reps as f64;
                report(&case(&format!("m={m}")), isa, &w, m, secs);
            }
            // Generation streams every matrix from memory once per token: the same product
            // over copies of the weights that together overflow the last-level cache.
            let copies = (COLD_BYTES / bytes.len()).max(2);
            let cold: Vec<u8> = bytes
                .iter()
                .copied()
                .cycle()
                .take(copies * bytes.len())
                .collect();
            let a: Vec<f32> = values[..k].to_vec();
            let mut dst = vec![0f32; n];
            // The best of a few passes: the others share the machine's memory bus.
            let secs = (0..COLD_PASSES)
                .map(|_| {
                    let start = Instant::now();
                    for copy in cold.chunks_exact(bytes.len()) {
                        let w = Weights { bytes: copy, ..w };
                        pool.install(|| matmul_on(isa, &w, &a, &mut dst));
                    }
                    start.elapsed().as_secs_f64() / copies as f64
                })
                .fold(f64::INFINITY, f64::min);
            report(&case("m=1 cold"), isa, &w, 1, secs);
        }
    }
}

/// Weight bytes the cold runs cycle through: several times any last-level cache.
const COLD_BYTES: usize = 512 << 20;
const COLD_PASSES: usize = 5;

fn report(case: &str, isa: Isa, w: &Weights<'_>, m: usize, secs: f64) {
    println!(
        "{case:36} {:10}: {:9.1} µs  {:6.2} GB/s weights  {:7.1} GMAC/s",
        isa.name(),
        secs * 1e6,
        w.bytes.len() as f64 / secs / 1e9,
        (m * w.rows * w.cols) as f64 / secs / 1e9
    );
}
