//! Rope settings from either config.json layout: transformers 5 keeps them in `rope_parameters`
//! (keyed by layer type when layer types differ, as in Gemma 3); 4.x has `rope_theta` at the top,
//! the scaling in `rope_scaling` (`rope_type`, or the older `type`), and Gemma 3's sliding layers
//! in `rope_local_base_freq`.

use super::fields::{invalid, unsupported, Fields};
use crate::error::Result;
use crate::spec::{RopeScaling, RopeSpec};

/// Which layers a rope serves, for configs that give each layer type its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeFor {
    AllLayers,
    /// Gemma 3's global (full-attention) layers.
    FullAttention,
    /// Gemma 3's sliding-window layers.
    SlidingAttention,
}

pub fn rope(cfg: Fields, which: RopeFor, head_dim: usize) -> Result<RopeSpec> {
    let layer_key = match which {
        RopeFor::AllLayers => None,
        RopeFor::FullAttention => Some("full_attention"),
        RopeFor::SlidingAttention => Some("sliding_attention"),
    };
    // transformers 5: rope_parameters, per layer type or shared.
    if let Some(params) = cfg.object("rope_parameters")? {
        let shared = Fields::new(params, "rope_parameters.");
        let params = match layer_key {
            Some(key) if shared.has(key) => match shared.object(key)? {
                Some(p) => p,
                None => params,
            },
            _ => params,
        };
        let path = match layer_key {
            Some(key) if shared.has(key) => format!("rope_parameters.{key}."),
            _ => "rope_parameters.".to_string(),
        };
        let p = Fields::new(params, &path);
        let theta = p.opt_positive("rope_theta")?.unwrap_or(10_000.0);
        return build(cfg, Some(p), theta, head_dim);
    }
    // transformers 4.x.
    if which == RopeFor::SlidingAttention {
        let theta = cfg
            .opt_positive("rope_local_base_freq")?
            .unwrap_or(10_000.0);
        return build(cfg, None, theta, head_dim);
    }
    let theta = cfg.opt_positive("rope_theta")?.unwrap_or(10_000.0);
    let scaling = cfg.object("rope_scaling")?;
    build(
        cfg,
        scaling
            .map(|s| Fields::new(s, "rope_scaling."))
            .as_ref()
            .copied(),
        theta,
        head_dim,
    )
}

fn build(cfg: Fields, params: Option<Fields>, theta: f64, head_dim: usize) -> Result<RopeSpec> {
    let partial = match params
        .map(|p| p.opt_positive("partial_rotary_factor"))
        .transpose()?
        .flatten()
    {
        Some(f) => Some(f),
        None => cfg.opt_positive("partial_rotary_factor")?,
    };
    let rotary_dim = match partial {
        Some(f) if f <= 1.0 => ((head_dim as f64 * f) as usize) & !1,
        Some(f) => {
            return Err(invalid(format!(
                "partial_rotary_factor must be in (0, 1], got {f}"
            )))
        }
        None => head_dim,
    };
    if rotary_dim == 0 {
        return Err(invalid(
            "partial_rotary_factor leaves no dimension to rotate".into(),
        ));
    }
    let scaling = match params {
        None => RopeScaling::None,
        Some(p) => scaling(cfg, p, rotary_dim)?,
    };
    Ok(RopeSpec {
        theta,
        rotary_dim,
        scaling,
        interleaved: false,
    })
}

fn scaling(cfg: Fields, p: Fields, rotary_dim: usize) -> Result<RopeScaling> {
    let kind = match p.opt_str("rope_type")? {
        Some(k) => k,
        None => p.opt_str("type")?.unwrap_or("default"),
    };
    // original_max_position_embeddings sits in the rope parameters or, for Phi-3, at the top.
    let original_max = || -> Result<usize> {
        match p.opt_dim("original_max_position_embeddings")? {
            Some(n) => Ok(n),
            None => cfg.dim("original_max_position_embeddings"),
        }
    };
    Ok(match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: p.positive("factor")?,
        },
        "dynamic" => RopeScaling::Dynamic {
            factor: p.positive("factor")?,
            // transformers scales relative to max_position_embeddings.
            original_max_position_embeddings: cfg.dim("max_position_embeddings")?,
        },
        "llama3" => {
            let low = p.positive("low_freq_factor")?;
            let high = p.positive("high_freq_factor")?;
            if high <= low {
                return Err(invalid(format!(
                    "{}: high_freq_factor ({high}) must exceed low_freq_factor ({low})",
                    p.name("")
                )));
            }
            RopeScaling::Llama3 {
                factor: p.positive("factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: original_max()?,
            }
        }
        "longrope" => {
            let original = original_max()?;
            let short_factor = p.positive_list("short_factor")?;
            let long_factor = p.positive_list("long_factor")?;
            for (name, list) in [
                ("short_factor", &short_factor),
                ("long_factor", &long_factor),
            ] {
                if list.len() != rotary_dim / 2 {
                    return Err(invalid(format!(
                        "{} has {} entries but the rotary dimension {rotary_dim} needs {}",
                        p.name(name),
                        list.len(),
                        rotary_dim / 2
                    )));
                }
            }
            let factor = match p.opt_positive("factor")? {
                Some(f) => f,
                None => cfg.dim("max_position_embeddings")? as f64 / original as f64,
            };
            let attention_factor = match p.opt_positive("attention_factor")? {
                Some(a) => a,
                None if factor <= 1.0 => 1.0,
                None => (1.0 + factor.ln() / (original as f64).ln()).sqrt(),
            };
            RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings: original,
                attention_factor,
            }
        }
        other => return Err(unsupported(&p.name("rope_type"), other)),
    })
}
