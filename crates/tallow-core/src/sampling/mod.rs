//! Choosing the next token: logits processors, the seeded sampler, log-probabilities, beam
//! search and grammar constraints.
//!
//! One step of a sampled sequence, in this order (the order is part of the contract: each
//! processor sees what the previous one left):
//!
//! 1. the grammar constraint's mask, when the request has one (`constraint.rs`): disallowed
//!    tokens get -inf before anything else looks at the logits;
//! 2. logit bias (`bias.rs`), added as the OpenAI API and transformers'
//!    `SequenceBiasLogitsProcessor` (single tokens) do;
//! 3. repetition penalty (`penalties.rs`, transformers' `RepetitionPenaltyLogitsProcessor`);
//! 4. frequency and presence penalties (`penalties.rs`, the OpenAI formula), both over the same
//!    window of recent tokens;
//! 5. temperature; `0` stops here and takes the argmax (greedy);
//! 6. top-k, top-p, min-p, typical-p (`filters.rs`, transformers' warpers, in transformers'
//!    order), each shrinking the set of candidates;
//! 7. a draw from the softmax of what is left, with a seeded ChaCha8 generator.
//!
//! Log-probabilities (`logprobs.rs`) are those of the model's own distribution (the log-softmax
//! of the raw logits, before any processor), as vLLM reports by default: they describe the
//! model, whatever the sampling options. Beam search (`beam.rs`) is a separate decoding mode.

mod beam;
mod bias;
mod candidates;
mod constraint;
mod filters;
mod logprobs;
mod params;
mod penalties;
mod sampler;

pub use beam::{log_softmax, BeamParams, BeamSearch, BeamStep, EarlyStopping};
pub use candidates::Candidates;
pub use constraint::{Constraint, ConstraintCompiler, ResponseFormat, TokenBytes};
pub use logprobs::{log_softmax_top, TokenLogprob, TokenLogprobs};
pub use params::SamplingParams;
pub use penalties::PenaltyWindow;
pub use sampler::{argmax, Sampler};
