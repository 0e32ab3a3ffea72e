/**
 * Tokenizers: {@link loadTokenizer} for a tokenizer on its own, and the option handling that
 * {@link Model.tokenize} and {@link Model.detokenize} share with it.
 */
import { resolve } from 'node:path'
import { TallowError } from './errors'
import { callNative, callNativeAsync, native, type NativeTokenizer } from './native'
import { booleanOption, checkOptionNames } from './options'
import { toWellFormed, validateTokenIds } from './prompt'

/** Options of {@link Tokenizer.tokenize} and {@link Model.tokenize}. */
export interface TokenizeOptions {
  /** Add the special tokens the tokenizer adds around a text (such as BOS). Default `true`. */
  addSpecialTokens?: boolean
  /**
   * Turn special-token text inside `text` (such as `<|im_start|>` or `<start_of_turn>`) into
   * those special tokens. Default `false`: it is tokenized as the plain text it is, so that text
   * from users cannot pose as the control tokens of a chat template.
   */
  parseSpecial?: boolean
}

/** Options of {@link Tokenizer.detokenize} and {@link Model.detokenize}. */
export interface DetokenizeOptions {
  /** Leave special tokens (such as BOS and EOS) out of the text. Default `true`. */
  skipSpecialTokens?: boolean
}

/** What the native model and the native tokenizer both offer. */
interface NativeTokenizing {
  tokenize(text: string, addSpecialTokens: boolean, parseSpecial: boolean): number[]
  detokenize(ids: number[], skipSpecialTokens: boolean): string
}

/**
 * The checks and defaults of `tokenize`, for the model and the tokenizer alike.
 *
 * @throws TallowError INVALID_OPTIONS, INVALID_PROMPT if `text` is not a string
 * @internal
 */
export function tokenizeWith(inner: NativeTokenizing, text: string, options: TokenizeOptions): number[] {
  checkOptionNames(options, ['addSpecialTokens', 'parseSpecial'])
  const addSpecialTokens = booleanOption('addSpecialTokens', options.addSpecialTokens, true)
  const parseSpecial = booleanOption('parseSpecial', options.parseSpecial, false)
  if (typeof text !== 'string') {
    throw new TallowError('INVALID_PROMPT', 'the text to tokenize must be a string')
  }
  const wellFormed = toWellFormed(text)
  return callNative(() => inner.tokenize(wellFormed, addSpecialTokens, parseSpecial))
}

/**
 * The checks and defaults of `detokenize`, for the model and the tokenizer alike.
 *
 * @throws TallowError INVALID_OPTIONS, INVALID_PROMPT for an id that is not an integer in
 *   `[0, vocabSize)`
 * @internal
 */
export function detokenizeWith(
  inner: NativeTokenizing,
  ids: readonly number[],
  options: DetokenizeOptions,
): string {
  checkOptionNames(options, ['skipSpecialTokens'])
  const skipSpecialTokens = booleanOption('skipSpecialTokens', options.skipSpecialTokens, true)
  const checked = validateTokenIds(ids, 'ids')
  return callNative(() => inner.detokenize([...checked], skipSpecialTokens))
}

/**
 * Loads a tokenizer without a model: `path` is a Hugging Face `tokenizer.json`, or a directory
 * holding one. Loading runs off the event loop.
 *
 * @example
 * ```ts
 * const tokenizer = await loadTokenizer('./models/my-llama')
 * const ids = tokenizer.tokenize('Hello')
 * ```
 * @throws TallowError TOKENIZER_NOT_FOUND, INVALID_TOKENIZER, IO_ERROR
 */
export async function loadTokenizer(path: string): Promise<Tokenizer> {
  if (typeof path !== 'string' || path.length === 0) {
    throw new TallowError('TOKENIZER_NOT_FOUND', 'the tokenizer path must be a non-empty string')
  }
  const inner = await callNativeAsync(() => native().NativeTokenizer.load(resolve(path)))
  return new Tokenizer(inner)
}

/**
 * A tokenizer on its own; get one from {@link loadTokenizer}. It tokenizes exactly as the
 * model that ships it ({@link Model.tokenize}, {@link Model.detokenize}). Every method throws a
 * {@link TallowError}.
 */
export class Tokenizer {
  /** Number of token ids: ids are in `[0, vocabSize)`, added tokens included. */
  readonly vocabSize: number

  readonly #inner: NativeTokenizer

  /**
   * Wraps a native tokenizer handle; use {@link loadTokenizer}.
   *
   * @internal
   */
  constructor(inner: NativeTokenizer) {
    this.#inner = inner
    this.vocabSize = callNative(() => inner.vocabSize())
  }

  /**
   * Splits `text` into token ids.
   *
   * @throws TallowError INVALID_OPTIONS, INVALID_PROMPT if `text` is not a string
   */
  tokenize(text: string, options: TokenizeOptions = {}): number[] {
    return tokenizeWith(this.#inner, text, options)
  }

  /**
   * Turns token ids back into text.
   *
   * @throws TallowError INVALID_OPTIONS, INVALID_PROMPT for an id that is not an integer in
   *   `[0, vocabSize)`
   */
  detokenize(ids: readonly number[], options: DetokenizeOptions = {}): string {
    return detokenizeWith(this.#inner, ids, options)
  }
}
