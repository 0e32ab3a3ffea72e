//! Logit bias: a fixed amount added to chosen tokens' logits before any other processor, as the
//! OpenAI API's `logit_bias` and transformers' `SequenceBiasLogitsProcessor` (for single-token
//! sequences) do. A bias of -100 in effect bans a token; +100 in effect forces it.

/// Adds each `(token, bias)` to `logits` [vocab]. Token ids are checked against the vocabulary
/// when the request is admitted; any beyond `logits` are ignored here.
pub fn apply_logit_bias(logits: &mut [f32], bias: &[(u32, f32)]) {
    for &(id, b) in bias {
        if let Some(l) = logits.get_mut(id as usize) {
            *l += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_to_the_named_tokens_only() {
        let mut logits = [1.0, 2.0, 3.0];
        apply_logit_bias(&mut logits, &[(0, 0.5), (2, -100.0)]);
        assert_eq!(logits, [1.5, 2.0, -97.0]);
    }
}
