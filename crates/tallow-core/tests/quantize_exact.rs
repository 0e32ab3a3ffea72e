//! tallow-kernels' quantizers against llama.cpp's: every 2-D weight of a transformers checkpoint,
//! quantized with `tallow_kernels::quantize_rows`, must be byte for byte the tensor llama.cpp
//! wrote from the same weights (scripts/make_gguf_fixtures.py made the files).
//!
//! * `llama-256-{Q4_0,Q4_1,Q5_0,Q5_1,Q2_K,Q3_K,Q4_K,Q5_K,Q6_K}.gguf`: the f16 checkpoint
//!   `llama-256-hf`, converted to an F32 GGUF (an exact upcast) and quantized with
//!   `llama-quantize --pure`, so every 2-D tensor has the file's type.
//! * `llama-gqa-tied-Q8_0.gguf` (llama-quantize from the F32 conversion) and
//!   `llama-gqa-tied-{F16,BF16}.gguf` (written by the converter itself, whose numpy/gguf-py
//!   rounding is ggml's: nearest, ties to even), from the f32 checkpoint
//!   `fixtures/models/llama-gqa-tied`.
//!
//! llama.cpp's converter reorders the rows of `q_proj` and `k_proj` for its rope layout (see
//! [`permute_rope_rows`]); quantization is per row, so the rows are reordered the same way first.

use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use tallow_core::gguf::file::GgufFile;
use tallow_core::gguf::tensor_type::TensorType;
use tallow_kernels::{quantize_rows, QuantType};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A transformers weight name as llama.cpp's converter names it in GGUF.
fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let role = match rest {
        "self_attn.q_proj.weight" => "attn_q",
        "self_attn.k_proj.weight" => "attn_k",
        "self_attn.v_proj.weight" => "attn_v",
        "self_attn.o_proj.weight" => "attn_output",
        "mlp.gate_proj.weight" => "ffn_gate",
        "mlp.up_proj.weight" => "ffn_up",
        "mlp.down_proj.weight" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{role}.weight"))
}

/// The converter's `LlamaModel.permute`: within each head of `head_dim` rows, HF keeps the two
/// rotary halves apart (row `s · hd/2 + j`, s = 0 or 1) and GGUF interleaves them (row `2j + s`).
/// `w`: [rows, cols] row-major, rows = n_head · hd.
fn permute_rope_rows(w: &[f32], cols: usize, n_head: usize) -> Vec<f32> {
    let rows = w.len() / cols;
    let hd = rows / n_head;
    let mut out = vec![0.0; w.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for j in 0..hd / 2 {
                let from = h * hd + s * hd / 2 + j;
                let to = h * hd + 2 * j + s;
                out[to * cols..(to + 1) * cols].copy_from_slice(&w[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// One checkpoint's 2-D weights as the F32 GGUF holds them: (GGUF name, rows, cols, values).
fn checkpoint_weights(dir: &Path) -> Vec<(String, usize, usize, Vec<f32>)> {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let n_head = config["num_attention_heads"].as_u64().unwrap() as usize;
    let n_kv_head = config["num_key_value_heads"].as_u64().unwrap() as usize;
    let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut out = Vec::new();
    for hf in names {
        let t = &tensors[hf];
        let Ok((rows, cols)) = t.dims2() else {
            continue;
        };
        let name = gguf_name(hf).unwrap_or_else(|| panic!("no GGUF name for {hf}"));
        // f16 -> f32 is exact, as the converter's F32 output was.
        let mut w: Vec<f32> = t
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        if hf.ends_with("q_proj.weight") {
            w = permute_rope_rows(&w, cols, n_head);
        } else if hf.ends_with("k_proj.weight") {
            w = permute_rope_rows(&w, cols, n_kv_head);
        }
        out.push((name, rows, cols, w));
    }
    out
}

/// Quantizes every 2-D weight of `checkpoint` to `ty` and compares it with the same tensor of
/// `gguf`, printing a line per tensor and panicking unless all are identical.
fn check(checkpoint: &str, gguf: &str, ty: QuantType, ggml: TensorType) {
    let file = GgufFile::open(&repo().join("fixtures/gguf/models").join(gguf)).unwrap();
    let weights = checkpoint_weights(&repo().join(checkpoint));
    assert!(!weights.is_empty());
    let (mut tensors_equal, mut bytes_equal, mut bytes_total) = (0, 0, 0);
    let mut report = Vec::new();
    for (name, rows, cols, w) in &weights {
        let info = file
            .tensor(name)
            .unwrap_or_else(|| panic!("{gguf}: no tensor {name}"));
        assert_eq!(info.tensor_type, ggml, "{gguf}: {name} type");
        assert_eq!(info.dims, [*cols, *rows], "{gguf}: {name} dims");
        let expected = file.data(info);
        let mut ours = vec![0u8; rows * cols / ty.block_size() * ty.block_bytes()];
        quantize_rows(ty, w, *cols, &mut ours);
        assert_eq!(ours.len(), expected.len(), "{gguf}: {name} byte size");

        let same = ours.iter().zip(expected).filter(|(a, b)| a == b).count();
        bytes_equal += same;
        bytes_total += ours.len();
        let bb = ty.block_bytes();
        let blocks_differing = ours
            .chunks(bb)
            .zip(expected.chunks(bb))
            .filter(|(a, b)| a != b)
            .count();
        let mut line = format!(
            "{gguf} {name:28} [{rows}x{cols}] {same}/{} bytes equal",
            ours.len()
        );
        if blocks_differing == 0 {
            tensors_equal += 1;
        } else {
            // Which fields differ: byte offsets within the block, with a count of blocks.
            let mut offsets = vec![0usize; bb];
            for (a, b) in ours.chunks(bb).zip(expected.chunks(bb)) {
                for (k, (x, y)) in a.iter().zip(b).enumerate() {
                    offsets[k] += usize::from(x != y);
                }
            }
            let hist: Vec<String> = offsets
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(k, n)| format!("@{k}:{n}"))
                .collect();
            line += &format!(
                "; {blocks_differing}/{} blocks differ; differing byte offsets in block (count): {}",
                ours.len() / bb,
                hist.join(" ")
            );
        }
        report.push(line);
    }
    println!("{}", report.join("\n"));
    println!(
        "{gguf} {ty:?}: {tensors_equal}/{} tensors identical, {bytes_equal}/{bytes_total} bytes equal",
        weights.len()
    );
    assert_eq!(
        tensors_equal,
        weights.len(),
        "{gguf}: {} of {} tensors differ from llama.cpp's bytes",
        weights.len() - tensors_equal,
        weights.len()
    );
}

const LLAMA_256: &str = "fixtures/gguf/models/llama-256-hf";
const LLAMA_GQA_TIED: &str = "fixtures/models/llama-gqa-tied";

#[test]
fn q4_0() {
    check(
        LLAMA_256,
        "llama-256-Q4_0.gguf",
        QuantType::Q4_0,
        TensorType::Q4_0,
    );
}

#[test]
fn q4_1() {
    check(
        LLAMA_256,
        "llama-256-Q4_1.gguf",
        QuantType::Q4_1,
        TensorType::Q4_1,
    );
}

#[test]
fn q5_0() {
    check(
        LLAMA_256,
        "llama-256-Q5_0.gguf",
        QuantType::Q5_0,
        TensorType::Q5_0,
    );
}

#[test]
fn q5_1() {
    check(
        LLAMA_256,
        "llama-256-Q5_1.gguf",
        QuantType::Q5_1,
        TensorType::Q5_1,
    );
}

#[test]
fn q2_k() {
    check(
        LLAMA_256,
        "llama-256-Q2_K.gguf",
        QuantType::Q2K,
        TensorType::Q2K,
    );
}

#[test]
fn q3_k() {
    check(
        LLAMA_256,
        "llama-256-Q3_K.gguf",
        QuantType::Q3K,
        TensorType::Q3K,
    );
}

#[test]
fn q4_k() {
    check(
        LLAMA_256,
        "llama-256-Q4_K.gguf",
        QuantType::Q4K,
        TensorType::Q4K,
    );
}

#[test]
fn q5_k() {
    check(
        LLAMA_256,
        "llama-256-Q5_K.gguf",
        QuantType::Q5K,
        TensorType::Q5K,
    );
}

#[test]
fn q6_k() {
    check(
        LLAMA_256,
        "llama-256-Q6_K.gguf",
        QuantType::Q6K,
        TensorType::Q6K,
    );
}

#[test]
fn q8_0() {
    check(
        LLAMA_GQA_TIED,
        "llama-gqa-tied-Q8_0.gguf",
        QuantType::Q8_0,
        TensorType::Q8_0,
    );
}

#[test]
fn f16() {
    check(
        LLAMA_GQA_TIED,
        "llama-gqa-tied-F16.gguf",
        QuantType::F16,
        TensorType::F16,
    );
}

#[test]
fn bf16() {
    check(
        LLAMA_GQA_TIED,
        "llama-gqa-tied-BF16.gguf",
        QuantType::BF16,
        TensorType::BF16,
    );
}

#[test]
fn rope_permutation_interleaves_halves() {
    // One head of 4 rows [a0 a1 | b0 b1] -> [a0 b0 a1 b1], rows of 2 values.
    let w = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5];
    assert_eq!(
        permute_rope_rows(&w, 2, 1),
        [0.0, 0.5, 2.0, 2.5, 1.0, 1.5, 3.0, 3.5]
    );
}
