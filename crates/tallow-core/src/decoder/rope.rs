//! Rotary position embedding: per-dimension-pair frequencies (with the architecture's scaling),
//! and the cos/sin of `position × frequency` for the positions of one forward pass. Computed per
//! call rather than tabled for the whole context: a 128k-token table would cost tens of MB.

use crate::spec::{RopeScaling, RopeSpec};
use candle_core::{Device, Result, Tensor};

pub struct Rope {
    /// [rotary_dim / 2] inverse frequencies after scaling.
    inv_freq: Vec<f32>,
}

impl Rope {
    pub fn new(spec: &RopeSpec) -> Self {
        let d = spec.rotary_dim;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / spec.theta.powf((2 * i) as f64 / d as f64))
            .collect();
        let inv_freq = base
            .into_iter()
            .map(|f| scale(f, &spec.scaling) as f32)
            .collect();
        Rope { inv_freq }
    }

    /// cos and sin, each [len, rotary_dim / 2], for positions `start..start + len`.
    pub fn cos_sin(&self, start: usize, len: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for pos in start..start + len {
            for &f in &self.inv_freq {
                // f32 product as transformers computes it, then cos/sin.
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok((
            Tensor::from_vec(cos, (len, half), device)?,
            Tensor::from_vec(sin, (len, half), device)?,
        ))
    }
}

/// One inverse frequency under a scaling rule (transformers' `_compute_*_parameters`).
fn scale(freq: f64, scaling: &RopeScaling) -> f64 {
    match *scaling {
        RopeScaling::None => freq,
        RopeScaling::Linear { factor } => freq / factor,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let old_len = original_max_position_embeddings as f64;
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < old_len / high_freq_factor {
                freq
            } else if wavelen > old_len / low_freq_factor {
                freq / factor
            } else {
                let smooth =
                    (old_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                (1.0 - smooth) * freq / factor + smooth * freq
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let spec = RopeSpec {
            theta: 500_000.0,
            rotary_dim: 64,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            },
        };
        let plain = Rope::new(&RopeSpec {
            scaling: RopeScaling::None,
            ..spec.clone()
        });
        let scaled = Rope::new(&spec);
        assert_eq!(scaled.inv_freq[0], plain.inv_freq[0]);
        let last = plain.inv_freq.len() - 1;
        assert!((scaled.inv_freq[last] * 8.0 - plain.inv_freq[last]).abs() < 1e-12);
    }
}
