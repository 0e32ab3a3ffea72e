/**
 * Generation options: what a caller may set, their defaults and ranges, and the one function
 * that checks them and turns them into what the engine takes.
 */
import { booleanOption, checkOptionNames, invalidOption } from './options'
import type { NativeGenerateOptions } from './native'

/** How the next token is chosen. Every option is optional; the default is given with each. */
export interface SamplingOptions {
  /**
   * The most tokens to generate: an integer in [1, 2^32 - 1]. Default `256`. Generation also
   * ends at the model's context length (finishReason `'length'` either way).
   */
  maxTokens?: number
  /**
   * Softmax temperature: a finite number ≥ 0. Default `0.8`. `0` means greedy decoding (always
   * the most likely token; `topK`, `topP` and `seed` then have no effect). Higher is more random.
   */
  temperature?: number
  /**
   * Sample only among the `topK` most likely tokens: an integer in [0, 2^32 - 1]. Default `40`.
   * `0` disables the filter.
   */
  topK?: number
  /**
   * Nucleus sampling: sample only among the most likely tokens whose probabilities add up to
   * `topP`: a number in (0, 1]. Default `0.95`. `1` disables the filter.
   */
  topP?: number
  /**
   * Seed of the sampler's random generator: an integer in [0, 2^53 - 1]. The same seed, prompt,
   * model and options give the same tokens. Default: a random seed per generation.
   */
  seed?: number
  /**
   * Generation stops as soon as the text contains one of these strings (each non-empty); the
   * returned text ends just before it (see `includeStop`) and finishReason is `'stop'`. Text that
   * could still become a stop string is held back from the stream until it cannot. Default `[]`.
   */
  stop?: readonly string[]
  /** End the text with the stop string that matched instead of just before it. Default `false`. */
  includeStop?: boolean
  /**
   * Keep generating past the model's end-of-sequence tokens (until `maxTokens` or the context
   * is full). Default `false`.
   */
  ignoreEos?: boolean
}

/** Options of {@link Model.generate} and {@link Model.stream}. */
export interface GenerateOptions extends SamplingOptions {
  /**
   * Aborting it stops the generation before its next token; the result then has finishReason
   * `'abort'` and holds what was generated so far (nothing is thrown). A signal already aborted
   * when the call is made gives a result with no tokens, without running the model.
   */
  signal?: AbortSignal
  /**
   * For a string prompt: turn special-token text in it (such as `<|im_start|>`) into those
   * special tokens. Default `false`: it is tokenized as plain text, as {@link Model.tokenize}
   * does by default. Token-id prompts are used as they are.
   */
  parseSpecial?: boolean
}

/** The defaults of {@link SamplingOptions} (`seed` has none: it is random per generation). */
export const DEFAULT_SAMPLING: Readonly<Required<Omit<SamplingOptions, 'seed'>>> = Object.freeze({
  maxTokens: 256,
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  stop: Object.freeze([]),
  includeStop: false,
  ignoreEos: false,
})

const KNOWN_OPTIONS: readonly string[] = [
  'maxTokens',
  'temperature',
  'topK',
  'topP',
  'seed',
  'stop',
  'includeStop',
  'ignoreEos',
  'signal',
  'parseSpecial',
]

// The largest value a native u32 holds.
const MAX_U32 = 0xffff_ffff

function isInteger(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
}

/**
 * Checks generation options and fills in defaults: the one place they are validated.
 *
 * @throws TallowError INVALID_OPTIONS naming the first option that is wrong (an unknown option
 *   name included, so that a typo such as `max_tokens` is not silently ignored).
 * @internal
 */
export function validateGenerateOptions(options: GenerateOptions = {}): NativeGenerateOptions {
  checkOptionNames(options, KNOWN_OPTIONS)
  const {
    maxTokens = DEFAULT_SAMPLING.maxTokens,
    temperature = DEFAULT_SAMPLING.temperature,
    topK = DEFAULT_SAMPLING.topK,
    topP = DEFAULT_SAMPLING.topP,
    seed,
    stop = DEFAULT_SAMPLING.stop,
    includeStop,
    ignoreEos,
    signal,
    parseSpecial,
  } = options

  if (!isInteger(maxTokens, 1, MAX_U32)) {
    throw invalidOption('maxTokens', `an integer in [1, ${MAX_U32}]`, maxTokens)
  }
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw invalidOption('temperature', 'a finite number ≥ 0', temperature)
  }
  if (!isInteger(topK, 0, MAX_U32)) {
    throw invalidOption('topK', `an integer in [0, ${MAX_U32}] (0 disables it)`, topK)
  }
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) {
    throw invalidOption('topP', 'a number in (0, 1]', topP)
  }
  if (seed !== undefined && !isInteger(seed, 0, Number.MAX_SAFE_INTEGER)) {
    throw invalidOption('seed', `an integer in [0, ${Number.MAX_SAFE_INTEGER}]`, seed)
  }
  if (!Array.isArray(stop) || !stop.every((s): s is string => typeof s === 'string' && s.length > 0)) {
    throw invalidOption('stop', 'an array of non-empty strings', stop)
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw invalidOption('signal', 'an AbortSignal', signal)
  }

  const validated: NativeGenerateOptions = {
    maxTokens,
    temperature,
    topK,
    topP,
    stop: [...stop],
    includeStop: booleanOption('includeStop', includeStop, DEFAULT_SAMPLING.includeStop),
    ignoreEos: booleanOption('ignoreEos', ignoreEos, DEFAULT_SAMPLING.ignoreEos),
    parseSpecial: booleanOption('parseSpecial', parseSpecial, false),
  }
  if (seed !== undefined) validated.seed = seed
  return validated
}
