//! Our own templates for models that carry none (older checkpoints, GGUF files converted without
//! `tokenizer.chat_template`). Each `.jinja` file says which official format it writes and where
//! that format is documented; the user can always pass a template of their own instead.

/// `(name, source)` of every built-in template.
const BUILTINS: [(&str, &str); 6] = [
    ("chatml", include_str!("builtin/chatml.jinja")),
    ("llama3", include_str!("builtin/llama3.jinja")),
    ("llama2", include_str!("builtin/llama2.jinja")),
    ("mistral", include_str!("builtin/mistral.jinja")),
    ("gemma", include_str!("builtin/gemma.jinja")),
    ("phi3", include_str!("builtin/phi3.jinja")),
];

/// The names [`builtin`] knows.
pub const BUILTIN_NAMES: [&str; 6] = ["chatml", "llama3", "llama2", "mistral", "gemma", "phi3"];

/// The source of the built-in template `name` (one of [`BUILTIN_NAMES`]).
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, source)| *source)
}

/// The built-in template for an architecture, by its config.json name (`LlamaForCausalLM`) or
/// its GGUF `general.architecture` (`llama`). Llama checkpoints get Llama 3's format; use
/// [`builtin_name_for`] with the vocabulary to tell Llama 2 (and ChatML fine-tunes) apart.
pub fn builtin_for(architecture: &str) -> Option<&'static str> {
    builtin_name_for(architecture, |_| false).and_then(builtin)
}

/// The name of the built-in template for a model, from its architecture and its vocabulary
/// (`has_token(t)`: is `t` one token of the tokenizer). The control tokens decide first, since a
/// fine-tune keeps its base architecture but may be trained on another format (e.g. ChatML on
/// Llama or Mistral); then the architecture. `None`: no built-in format for this model.
pub fn builtin_name_for(
    architecture: &str,
    has_token: impl Fn(&str) -> bool,
) -> Option<&'static str> {
    if has_token("<|im_start|>") && has_token("<|im_end|>") {
        return Some("chatml");
    }
    if has_token("<|start_header_id|>") && has_token("<|eot_id|>") {
        return Some("llama3");
    }
    if has_token("<start_of_turn>") && has_token("<end_of_turn>") {
        return Some("gemma");
    }
    if has_token("<|user|>") && has_token("<|end|>") {
        return Some("phi3");
    }
    let arch = architecture.to_ascii_lowercase();
    let family = arch
        .strip_suffix("forcausallm")
        .or_else(|| arch.strip_suffix("forconditionalgeneration"))
        .unwrap_or(&arch);
    Some(match family {
        // Llama 2's vocabulary has no Llama 3 control tokens (checked above), so a Llama model
        // whose vocabulary is known and lacks them is Llama 2; without a vocabulary: Llama 3.
        "llama" if has_token("<s>") => "llama2",
        "llama" => "llama3",
        "mistral" | "mixtral" => "mistral",
        "qwen2" | "qwen2moe" | "qwen2_moe" | "qwen3" | "qwen3moe" | "qwen3_moe" => "chatml",
        "gemma" | "gemma2" | "gemma3" | "gemma3_text" => "gemma",
        "phi3" | "phimoe" => "phi3",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sources_agree() {
        assert_eq!(BUILTINS.map(|(n, _)| n), BUILTIN_NAMES);
        assert!(builtin("nope").is_none());
    }

    #[test]
    fn picks_by_architecture_then_vocabulary() {
        let none = |_: &str| false;
        assert_eq!(builtin_name_for("LlamaForCausalLM", none), Some("llama3"));
        assert_eq!(builtin_name_for("llama", |t| t == "<s>"), Some("llama2"));
        assert_eq!(
            builtin_name_for("MixtralForCausalLM", none),
            Some("mistral")
        );
        assert_eq!(
            builtin_name_for("Qwen3MoeForCausalLM", none),
            Some("chatml")
        );
        assert_eq!(builtin_name_for("qwen2", none), Some("chatml"));
        assert_eq!(
            builtin_name_for("Gemma3ForConditionalGeneration", none),
            Some("gemma")
        );
        assert_eq!(builtin_name_for("Phi3ForCausalLM", none), Some("phi3"));
        assert_eq!(builtin_name_for("GPT2LMHeadModel", none), None);
        let chatml_vocab = |t: &str| matches!(t, "<|im_start|>" | "<|im_end|>" | "<s>");
        assert_eq!(
            builtin_name_for("MistralForCausalLM", chatml_vocab),
            Some("chatml")
        );
        assert_eq!(builtin_for("gemma2"), builtin("gemma"));
    }
}
