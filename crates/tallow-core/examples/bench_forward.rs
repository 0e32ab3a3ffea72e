//! Times the decoder alone on a model file, for profiling kernels without Node: one forward pass
//! over a prompt (pp) and single-token passes (tg), no sampling.
//! `cargo run --release -p tallow-core --example bench_forward -- MODEL [threads] [prompt] [gen]`

use std::time::Instant;
use tallow_core::allocator::ReusingAllocator;
use tallow_core::decoder::Logits;
use tallow_core::device::DeviceKind;
use tallow_core::kv_cache::SequenceCache;
use tallow_core::model::Model;

/// The addon's allocator, so that the decoder is timed as the SDK runs it.
#[global_allocator]
static ALLOCATOR: ReusingAllocator = ReusingAllocator::new();

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // As the SDK sets it (src/native.ts): candle's pool worker sleeps after each op rather
    // than spinning against the decoder's threads. Still one thread here, so setting is safe.
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or("usage: bench_forward MODEL [threads] [prompt] [gen]")?;
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (threads, prompt, gen) = (arg(1, 2), arg(2, 512), arg(3, 64));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    pool.install(|| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let start = Instant::now();
        let model = Model::load(path.as_ref(), DeviceKind::Cpu, None)?;
        println!("load {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
        let decoder = &model.decoder;
        let layers = decoder.spec().num_layers();
        let ids: Vec<u32> = (0..prompt as u32).map(|i| 1000 + i * 7).collect();
        for round in 0..2 {
            let mut cache = SequenceCache::new(layers);
            let start = Instant::now();
            decoder.forward(&ids, &mut cache, Logits::Last)?;
            let pp = start.elapsed().as_secs_f64();
            let mut cache = SequenceCache::new(layers);
            let start = Instant::now();
            for i in 0..gen {
                decoder.forward(&[1000 + i as u32], &mut cache, Logits::Last)?;
            }
            let tg = start.elapsed().as_secs_f64();
            println!(
                "round {round}: pp{prompt} {:.1} t/s, tg{gen} {:.2} t/s",
                prompt as f64 / pp,
                gen as f64 / tg
            );
        }
        Ok(())
    })
}
