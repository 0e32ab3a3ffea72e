//! The instruction sets a kernel can be compiled for, and which one this CPU runs.
//!
//! Kernels are chosen at run time, never at compile time: the prebuilt addon is compiled for
//! baseline x86-64 (or aarch64), and each SIMD variant is a `#[target_feature]` function that is
//! only called after [`Isa::detect`] found its features, so a CPU without AVX2 runs the portable
//! code instead of faulting on an illegal instruction.

use std::sync::OnceLock;

/// An instruction set tier, in increasing order of capability on its architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust: every CPU.
    Scalar,
    /// aarch64 Advanced SIMD (every aarch64 CPU has it).
    Neon,
    /// x86-64 with AVX2, FMA and F16C (Haswell, Zen 1 and later).
    Avx2,
    /// x86-64 with AVX-512 F/BW/VL and VNNI (Ice Lake, Zen 4 and later), on top of AVX2.
    Avx512Vnni,
}

impl Isa {
    /// The best tier this CPU supports, detected once. `TALLOW_ISA=scalar|avx2|neon` lowers it
    /// (a tier the CPU lacks is ignored), to measure or test the slower paths.
    pub fn detect() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let best = *Isa::available().last().unwrap_or(&Isa::Scalar);
            let requested = std::env::var("TALLOW_ISA").ok().and_then(|name| {
                Isa::available()
                    .iter()
                    .copied()
                    .find(|isa| isa.name() == name.trim().to_ascii_lowercase())
            });
            requested.unwrap_or(best)
        })
    }

    /// Every tier this CPU can run, lowest first (tests run each kernel on all of them).
    pub fn available() -> &'static [Isa] {
        static AVAILABLE: OnceLock<Vec<Isa>> = OnceLock::new();
        AVAILABLE.get_or_init(Isa::probe)
    }

    fn probe() -> Vec<Isa> {
        let mut isas = vec![Isa::Scalar];
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            isas.push(Isa::Neon);
        }
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            if avx2 {
                isas.push(Isa::Avx2);
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
                {
                    isas.push(Isa::Avx512Vnni);
                }
            }
        }
        isas
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Neon => "neon",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }
}
