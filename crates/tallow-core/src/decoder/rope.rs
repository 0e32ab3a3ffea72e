//! Rotary position embedding: per-dimension-pair frequencies (with the architecture's scaling),
//! and the cos/sin of `position × frequency` for the positions of one forward pass. Computed per
//! call rather than tabled for the whole context: a 128k-token table would cost tens of MB, and
//! dynamic NTK and LongRoPE change the frequencies with the sequence length anyway.

use crate::spec::{RopeScaling, RopeSpec};
use candle_core::{Device, Result, Tensor, D};

pub struct Rope {
    spec: RopeSpec,
}

/// cos and sin for the positions of one pass, each [seq, rotary_dim / 2], already multiplied by
/// the scaling's attention factor.
pub struct RopeTables {
    cos: Tensor,
    sin: Tensor,
    rotary_dim: usize,
    interleaved: bool,
}

impl Rope {
    pub fn new(spec: &RopeSpec) -> Self {
        Rope { spec: spec.clone() }
    }

    /// Tables for positions `start..start + len`, computed by a pass after which the sequence
    /// holds `pass_end` positions (what dynamic NTK and LongRoPE key on, as in transformers: a
    /// prompt run in micro-batches keys every batch on the whole prompt's end).
    pub fn tables(
        &self,
        start: usize,
        len: usize,
        pass_end: usize,
        device: &Device,
    ) -> Result<RopeTables> {
        let (inv_freq, attention_factor) = self.frequencies(pass_end);
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for pos in start..start + len {
            for &f in &inv_freq {
                // f32 product as transformers computes it, then cos/sin.
                let angle = pos as f32 * f;
                cos.push(angle.cos() * attention_factor);
                sin.push(angle.sin() * attention_factor);
            }
        }
        Ok(RopeTables {
            cos: Tensor::from_vec(cos, (len, half), device)?,
            sin: Tensor::from_vec(sin, (len, half), device)?,
            rotary_dim: self.spec.rotary_dim,
            interleaved: self.spec.interleaved,
        })
    }

    /// Whether keys cached for the first `cached` positions were rotated with frequencies this
    /// rope no longer uses at `seq_len`. Only LongRoPE switches that way (short → long factors);
    /// transformers then recomputes the cache once, and so do we. Dynamic NTK also changes its
    /// frequencies, but transformers keeps the old keys, and so do we.
    pub fn invalidates_cache(&self, cached: usize, seq_len: usize) -> bool {
        match self.spec.scaling {
            RopeScaling::LongRope {
                original_max_position_embeddings: original,
                ..
            } => cached <= original && seq_len > original,
            _ => false,
        }
    }

    /// [rotary_dim / 2] inverse frequencies and the cos/sin factor for a sequence of `seq_len`.
    fn frequencies(&self, seq_len: usize) -> (Vec<f32>, f32) {
        let d = self.spec.rotary_dim;
        let exponent = |i: usize| (2 * i) as f64 / d as f64;
        let plain = |theta: f64| -> Vec<f64> {
            (0..d / 2).map(|i| 1.0 / theta.powf(exponent(i))).collect()
        };
        let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let theta = self.spec.theta;
        match &self.spec.scaling {
            RopeScaling::None => (to_f32(plain(theta)), 1.0),
            RopeScaling::Linear { factor } => (
                to_f32(plain(theta).into_iter().map(|f| f / factor).collect()),
                1.0,
            ),
            RopeScaling::Dynamic {
                factor,
                original_max_position_embeddings,
            } => {
                let original = *original_max_position_embeddings as f64;
                let len = (seq_len as f64).max(original);
                let d = d as f64;
                let theta =
                    theta * ((factor * len / original) - (factor - 1.0)).powf(d / (d - 2.0));
                (to_f32(plain(theta)), 1.0)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old_len = *original_max_position_embeddings as f64;
                let scaled = plain(theta).into_iter().map(|freq| {
                    let wavelen = 2.0 * std::f64::consts::PI / freq;
                    if wavelen < old_len / high_freq_factor {
                        freq
                    } else if wavelen > old_len / low_freq_factor {
                        freq / factor
                    } else {
                        let smooth = (old_len / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * freq / factor + smooth * freq
                    }
                });
                (to_f32(scaled.collect()), 1.0)
            }
            RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings,
                attention_factor,
            } => {
                let factors = if seq_len > *original_max_position_embeddings {
                    long_factor
                } else {
                    short_factor
                };
                let freqs = plain(theta)
                    .into_iter()
                    .zip(factors)
                    .map(|(f, s)| f / s)
                    .collect();
                (to_f32(freqs), *attention_factor as f32)
            }
            RopeScaling::Factors {
                divisors,
                attention_factor,
            } => {
                let freqs = plain(theta)
                    .into_iter()
                    .zip(divisors)
                    .map(|(f, s)| f / s)
                    .collect();
                (to_f32(freqs), *attention_factor as f32)
            }
        }
    }
}

impl RopeTables {
    /// Rotates x: [batch, heads, seq, head_dim] (contiguous). With partial rotary embeddings only
    /// the first `rotary_dim` dimensions of each head turn; the rest pass through.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let head_dim = x.dim(D::Minus1)?;
        let rotate = |x: &Tensor| {
            if self.interleaved {
                candle_nn::rotary_emb::rope_i(x, &self.cos, &self.sin)
            } else {
                candle_nn::rotary_emb::rope(x, &self.cos, &self.sin)
            }
        };
        if self.rotary_dim == head_dim {
            return rotate(x);
        }
        let rotated = rotate(&x.narrow(D::Minus1, 0, self.rotary_dim)?.contiguous()?)?;
        let passed = x.narrow(D::Minus1, self.rotary_dim, head_dim - self.rotary_dim)?;
        Tensor::cat(&[&rotated, &passed], D::Minus1)?.contiguous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scaling: RopeScaling) -> RopeSpec {
        RopeSpec {
            theta: 500_000.0,
            rotary_dim: 64,
            scaling,
            interleaved: false,
        }
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let llama3 = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        let (plain, _) = Rope::new(&spec(RopeScaling::None)).frequencies(1);
        let (scaled, _) = Rope::new(&spec(llama3)).frequencies(1);
        assert_eq!(scaled[0], plain[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] * 8.0 - plain[last]).abs() < 1e-9);
    }

    #[test]
    fn dynamic_ntk_changes_only_past_the_original_length() {
        let rope = Rope::new(&spec(RopeScaling::Dynamic {
            factor: 2.0,
            original_max_position_embeddings: 32,
        }));
        let (plain, _) = Rope::new(&spec(RopeScaling::None)).frequencies(1);
        assert_eq!(rope.frequencies(32).0, plain);
        assert!(rope.frequencies(64).0[1] < plain[1]);
    }

    #[test]
    fn longrope_switches_factors_after_the_original_length() {
        let rope = Rope::new(&RopeSpec {
            theta: 10_000.0,
            rotary_dim: 4,
            scaling: RopeScaling::LongRope {
                short_factor: vec![1.0, 2.0],
                long_factor: vec![4.0, 8.0],
                original_max_position_embeddings: 16,
                attention_factor: 1.5,
            },
            interleaved: false,
        });
        let (short, factor) = rope.frequencies(16);
        let (long, _) = rope.frequencies(17);
        assert_eq!(factor, 1.5);
        assert_eq!((short[0], short[1]), (long[0] * 4.0, long[1] * 4.0));
    }
}
