/**
 * Every error tallow raises on purpose is a {@link TallowError} with a stable {@link ErrorCode}.
 *
 * The native binding reports failures as plain `Error`s whose message is `[CODE] human message`;
 * {@link toTallowError} turns those into `TallowError`s. Anything without a known prefix (a bug,
 * not a user mistake) becomes `INTERNAL`.
 */

/**
 * The stable code of a {@link TallowError}; branch on this, not on the message.
 *
 * - `MODEL_NOT_FOUND`: the model path does not exist or is not a directory.
 * - `INVALID_CONFIG`: `config.json` is missing, is not valid JSON, or holds a value out of range.
 * - `TOKENIZER_NOT_FOUND`: the model directory has no `tokenizer.json`.
 * - `INVALID_TOKENIZER`: `tokenizer.json` could not be parsed.
 * - `UNSUPPORTED_ARCHITECTURE`: `config.json` names an architecture tallow cannot run; the
 *   message lists the ones it can.
 * - `UNSUPPORTED_CONFIG`: the architecture is known but a setting in `config.json` (or in a
 *   GGUF file's metadata) is not supported (for example an unknown rope scaling type).
 * - `UNSUPPORTED_TENSOR_TYPE`: a GGUF file stores a tensor in a quantization tallow cannot run
 *   (for example `IQ2_XXS`); the message names the type and the supported ones.
 * - `TENSOR_MISSING`: the checkpoint lacks a tensor the config calls for.
 * - `TENSOR_SHAPE_MISMATCH`: a tensor's shape disagrees with `config.json` (or the GGUF
 *   metadata).
 * - `INVALID_MODEL_FILE`: a weights file is truncated, corrupt or of an unsupported dtype; for a
 *   GGUF file the message says what is malformed and where (header, key, tensor, byte offset).
 * - `CONTEXT_OVERFLOW`: the prompt (plus what is being generated) does not fit the context.
 * - `INVALID_PROMPT`: the prompt is empty, or holds a token id that is not an integer in
 *   `[0, vocabSize)`.
 * - `INVALID_OPTIONS`: an option is of the wrong type or out of range; the message names it.
 * - `UNSUPPORTED_DEVICE`: the device asked for is not available in this build; the message
 *   lists the ones that are.
 * - `MODEL_DISPOSED`: the model was used after {@link Model.dispose}.
 * - `INVALID_TEMPLATE`: the chat template does not parse, fails while rendering, runs over its
 *   limits (time, recursion, output size), or the model has none for chat.
 * - `TEMPLATE_ERROR`: the chat template rejected the conversation (its `raise_exception`
 *   message, e.g. roles that must alternate).
 * - `INVALID_OUTPUT`: generated text is not what was asked for, e.g. {@link parseJson} on output
 *   that was cut short by `maxTokens`.
 * - `IO_ERROR`: reading a model file failed.
 * - `INTERNAL`: a bug in tallow (including a panic in the native code). Please report it.
 */
export type ErrorCode =
  | 'MODEL_NOT_FOUND'
  | 'INVALID_CONFIG'
  | 'TOKENIZER_NOT_FOUND'
  | 'INVALID_TOKENIZER'
  | 'UNSUPPORTED_ARCHITECTURE'
  | 'UNSUPPORTED_CONFIG'
  | 'UNSUPPORTED_TENSOR_TYPE'
  | 'TENSOR_MISSING'
  | 'TENSOR_SHAPE_MISMATCH'
  | 'INVALID_MODEL_FILE'
  | 'CONTEXT_OVERFLOW'
  | 'INVALID_PROMPT'
  | 'INVALID_OPTIONS'
  | 'UNSUPPORTED_DEVICE'
  | 'MODEL_DISPOSED'
  | 'INVALID_TEMPLATE'
  | 'TEMPLATE_ERROR'
  | 'INVALID_OUTPUT'
  | 'IO_ERROR'
  | 'INTERNAL'

const ERROR_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'MODEL_NOT_FOUND',
  'INVALID_CONFIG',
  'TOKENIZER_NOT_FOUND',
  'INVALID_TOKENIZER',
  'UNSUPPORTED_ARCHITECTURE',
  'UNSUPPORTED_CONFIG',
  'UNSUPPORTED_TENSOR_TYPE',
  'TENSOR_MISSING',
  'TENSOR_SHAPE_MISMATCH',
  'INVALID_MODEL_FILE',
  'CONTEXT_OVERFLOW',
  'INVALID_PROMPT',
  'INVALID_OPTIONS',
  'UNSUPPORTED_DEVICE',
  'MODEL_DISPOSED',
  'INVALID_TEMPLATE',
  'TEMPLATE_ERROR',
  'INVALID_OUTPUT',
  'IO_ERROR',
  'INTERNAL',
])

function isErrorCode(code: string): code is ErrorCode {
  return ERROR_CODES.has(code)
}

/** An error raised by tallow, carrying a stable {@link ErrorCode}. */
export class TallowError extends Error {
  /** What went wrong, as a stable code. */
  readonly code: ErrorCode

  /**
   * @param code - the stable error code
   * @param message - what went wrong and, where it helps, what to do about it
   * @param options - `cause`: the underlying error, if any
   */
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TallowError'
    this.code = code
  }
}

// `[CODE] message`; the message may span lines.
const NATIVE_MESSAGE = /^\[([A-Z_]+)\] ?([\s\S]*)$/

/**
 * Converts anything thrown by the native binding into a {@link TallowError}: a message of the
 * form `[CODE] text` becomes code `CODE` and message `text`; anything else is `INTERNAL`.
 * The original error is kept as `cause`.
 *
 * @internal
 */
export function toTallowError(error: unknown): TallowError {
  if (error instanceof TallowError) return error
  const message = error instanceof Error ? error.message : String(error)
  const match = NATIVE_MESSAGE.exec(message)
  if (match !== null) {
    const [, code = '', text = ''] = match
    if (isErrorCode(code)) return new TallowError(code, text, { cause: error })
  }
  return new TallowError('INTERNAL', `unexpected native error: ${message}`, { cause: error })
}
