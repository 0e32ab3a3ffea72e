//! Errors with a stable code. Every failure a caller can cause (a bad file, a bad option, a prompt
//! that does not fit) maps to one `ErrorCode`; the binding passes the code through unchanged so
//! users can branch on it.

use std::fmt;

/// The stable machine-readable reason of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The model path does not exist or holds no recognisable model.
    ModelNotFound,
    /// config.json is missing, not JSON, or a field has the wrong type.
    InvalidConfig,
    /// The model directory has no tokenizer.json.
    TokenizerNotFound,
    /// tokenizer.json could not be parsed, or encoding/decoding failed.
    InvalidTokenizer,
    /// The architecture named by config.json is not one tallow implements.
    UnsupportedArchitecture,
    /// A config value (e.g. a rope scaling type) is not supported.
    UnsupportedConfig,
    /// A weights file stores a tensor in a quantization type tallow cannot run (e.g. IQ2_XXS);
    /// the message names the type and the tensor.
    UnsupportedTensorType,
    /// A tensor the architecture needs is absent from the weights.
    TensorMissing,
    /// A tensor exists but its shape disagrees with config.json.
    TensorShapeMismatch,
    /// A weights file is malformed (bad header, bad offsets, unsupported dtype...).
    InvalidModelFile,
    /// The prompt (plus at least one generated token) does not fit the context.
    ContextOverflow,
    /// The prompt is empty or holds token ids outside the vocabulary.
    InvalidPrompt,
    /// A generation or load option is out of range.
    InvalidOptions,
    /// The requested device is not compiled in or not present.
    UnsupportedDevice,
    /// The model was disposed; it cannot run anything any more.
    ModelDisposed,
    /// A chat template does not parse, fails while rendering (an error in the template's own
    /// code), or exceeds a rendering budget (fuel, recursion, output size).
    InvalidTemplate,
    /// The chat template refused the conversation (`raise_exception(...)` in the template, e.g.
    /// "Conversation roles must alternate"); the message is the template's own.
    TemplateError,
    /// Reading a file failed for a reason other than its content.
    Io,
    /// A bug: an unexpected failure or a caught panic.
    Internal,
}

impl ErrorCode {
    /// The code as the SDK exposes it (`TallowError.code`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ModelNotFound => "MODEL_NOT_FOUND",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::TokenizerNotFound => "TOKENIZER_NOT_FOUND",
            ErrorCode::InvalidTokenizer => "INVALID_TOKENIZER",
            ErrorCode::UnsupportedArchitecture => "UNSUPPORTED_ARCHITECTURE",
            ErrorCode::UnsupportedConfig => "UNSUPPORTED_CONFIG",
            ErrorCode::UnsupportedTensorType => "UNSUPPORTED_TENSOR_TYPE",
            ErrorCode::TensorMissing => "TENSOR_MISSING",
            ErrorCode::TensorShapeMismatch => "TENSOR_SHAPE_MISMATCH",
            ErrorCode::InvalidModelFile => "INVALID_MODEL_FILE",
            ErrorCode::ContextOverflow => "CONTEXT_OVERFLOW",
            ErrorCode::InvalidPrompt => "INVALID_PROMPT",
            ErrorCode::InvalidOptions => "INVALID_OPTIONS",
            ErrorCode::UnsupportedDevice => "UNSUPPORTED_DEVICE",
            ErrorCode::ModelDisposed => "MODEL_DISPOSED",
            ErrorCode::InvalidTemplate => "INVALID_TEMPLATE",
            ErrorCode::TemplateError => "TEMPLATE_ERROR",
            ErrorCode::Io => "IO_ERROR",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// An error with a stable [`ErrorCode`] and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

/// Candle errors that reach a caller without more specific context are bugs on our side
/// (shapes are validated at load), so they surface as `INTERNAL`.
impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::new(ErrorCode::Internal, e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
