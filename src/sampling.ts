/**
 * Generation options: what a caller may set, their defaults and ranges, the named presets, and
 * the one function that checks them and turns them into what the engine takes.
 *
 * The engine applies the processors in this order, each to what the previous one left:
 * `responseFormat`'s mask, `logitBias`, `repetitionPenalty`, `frequencyPenalty` and
 * `presencePenalty` (over `penaltyWindow`), `temperature` (`0` = greedy: the most likely token is
 * taken here), `topK`, `topP`, `minP`, `typicalP`, then a draw seeded by `seed`.
 */
import { TallowError } from './errors'
import { booleanOption, checkOptionNames, invalidOption } from './options'
import type { NativeGenerateOptions, NativeResponseFormat } from './native'

/** A JSON Schema (draft 2020-12 keywords as llguidance supports them), as a plain object. */
export type JsonSchema = Record<string, unknown>

/** The OpenAI API's `json_schema` member of a response format. */
export interface NamedJsonSchema {
  /** A name for the schema (informational). */
  name?: string
  /** The JSON Schema the output must satisfy. */
  schema: JsonSchema
  /** Accepted for compatibility; the constraint is always strict. */
  strict?: boolean
}

/**
 * What the output must look like. The constraint is enforced token by token, so the output
 * always matches (unless `maxTokens` cuts it short: finishReason `'length'`).
 *
 * - `{ type: 'text' }`: no constraint (the default).
 * - `{ type: 'json_object' }`: any JSON object.
 * - `{ type: 'json_schema', schema }`: JSON valid under `schema`; the OpenAI form
 *   `{ type: 'json_schema', json_schema: { name, schema } }` is accepted too.
 * - `{ type: 'regex', pattern }`: text matching the regular expression (Rust `regex` syntax) whole.
 * - `{ type: 'lark', grammar }`: text in the language of a Lark grammar (llguidance's dialect).
 *
 * JSON is generated compact (no whitespace between tokens), unless the schema carries its own
 * llguidance options under `x-guidance`.
 */
export interface ResponseFormat {
  /** Which kind of constraint. */
  type: 'text' | 'json_object' | 'json_schema' | 'regex' | 'lark'
  /** With `json_schema`: the JSON Schema. */
  schema?: JsonSchema
  /** With `json_schema`, the OpenAI API's form: the schema and its name. */
  json_schema?: NamedJsonSchema
  /** With `regex`: the regular expression the whole output must match. */
  pattern?: string
  /** With `lark`: the grammar (its `start` rule is the output). */
  grammar?: string
}

/** How the next token is chosen and when generation ends. Every option is optional. */
export interface SamplingOptions {
  /**
   * The most tokens to generate: an integer in [1, 2^32 - 1]. Default `256`. Generation also
   * ends at the model's context length (finishReason `'length'` either way).
   */
  maxTokens?: number
  /**
   * Softmax temperature: a finite number ≥ 0. Default `0.8`. `0` means greedy decoding (always
   * the most likely token after `logitBias` and the penalties; `topK`, `topP`, `minP`,
   * `typicalP` and `seed` then have no effect). Higher is more random.
   */
  temperature?: number
  /**
   * Sample only among the `topK` most likely tokens (tokens tied with the k-th stay too): an
   * integer in [0, 2^32 - 1]. Default `40`. `0` disables the filter.
   */
  topK?: number
  /**
   * Nucleus sampling: sample only among the most likely tokens whose probabilities add up to
   * `topP`: a number in (0, 1]. Default `0.95`. `1` disables the filter.
   */
  topP?: number
  /**
   * Drop tokens whose probability is below `minP` times the most likely token's: a number in
   * [0, 1]. Default `0` (off).
   */
  minP?: number
  /**
   * Locally typical sampling: keep the tokens whose surprise is closest to the distribution's
   * entropy, up to this much probability: a number in (0, 1]. Default `1` (off).
   */
  typicalP?: number
  /**
   * transformers' repetition penalty: a token already in the window has its logit divided by
   * this when positive and multiplied by it when negative: a finite number > 0. Default `1`
   * (off); `1.1` to `1.3` is typical, below `1` encourages repetition.
   */
  repetitionPenalty?: number
  /**
   * The OpenAI API's frequency penalty: subtracted from a token's logit once per time it occurs
   * in the window: a number in [-2, 2]. Default `0` (off).
   */
  frequencyPenalty?: number
  /**
   * The OpenAI API's presence penalty: subtracted once from the logit of every token present in
   * the window: a number in [-2, 2]. Default `0` (off).
   */
  presencePenalty?: number
  /**
   * How many of the latest tokens (prompt and generated) the three penalties look at: an integer
   * in [0, 2^32 - 1]. Default `0`: the whole sequence, as transformers does.
   */
  penaltyWindow?: number
  /**
   * Added to the named tokens' logits before anything else, as the OpenAI API's `logit_bias`:
   * token id → a number in [-100, 100]. `-100` in effect bans a token, `100` forces it.
   * Default `{}`.
   */
  logitBias?: Readonly<Record<number, number>>
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
   * Token ids that end generation as the model's end-of-sequence tokens do (even with
   * `ignoreEos`); the token is in `tokens` but its text is not in the output. Integers in
   * `[0, vocabSize)`. Default `[]`.
   */
  stopTokenIds?: readonly number[]
  /**
   * Keep generating past the model's end-of-sequence tokens (from `generation_config.json`,
   * `config.json` and the tokenizer) until `maxTokens`, a stop string or a stop token.
   * Default `false`.
   */
  ignoreEos?: boolean
  /**
   * Report each generated token's log-probability (the model's own distribution, before any
   * processor) in the OpenAI shape: on every chunk and as the result's `logprobs.content`.
   * Default `false`.
   */
  logprobs?: boolean
  /**
   * With `logprobs`: how many of the most likely alternatives to report per position, an
   * integer in [0, 20]. Default `0`.
   */
  topLogprobs?: number
  /**
   * Constrain the output to a JSON Schema, a regular expression or a Lark grammar (see
   * {@link ResponseFormat}). Default `{ type: 'text' }` (none). Excludes `ignoreEos`.
   */
  responseFormat?: ResponseFormat
  /**
   * Beam search with this many beams when > 1, instead of sampling: an integer in [1, 64].
   * Default `1` (off). The result is the best beam (its score in `beamScore`), sent when the
   * search is over. Excludes the sampling options (`temperature` > 0, `topK`, `topP`, `minP`,
   * `typicalP`, `seed`, penalties, `logitBias`), `stop` strings, `logprobs` and `responseFormat`.
   */
  numBeams?: number
  /**
   * Beam search: finished beams are scored `sum of logprobs / length ^ lengthPenalty`; > 0
   * favours longer outputs, < 0 shorter ones. A finite number. Default `1` (as transformers).
   */
  lengthPenalty?: number
  /**
   * Beam search, as transformers' `early_stopping`: `true` stops once `numBeams` beams have
   * finished; `false` (the default) once no running beam can do better at its current length;
   * `'never'` once none could at any length (the canonical beam search).
   */
  earlyStopping?: boolean | 'never'
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

/** The defaults of the {@link SamplingOptions} that have one (`seed` is random when unset). */
export const DEFAULT_SAMPLING: Readonly<Required<Omit<SamplingOptions, 'seed'>>> = Object.freeze({
  maxTokens: 256,
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0,
  typicalP: 1,
  repetitionPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
  penaltyWindow: 0,
  logitBias: Object.freeze({}),
  stop: Object.freeze([]),
  includeStop: false,
  stopTokenIds: Object.freeze([]),
  ignoreEos: false,
  logprobs: false,
  topLogprobs: 0,
  responseFormat: Object.freeze({ type: 'text' as const }),
  numBeams: 1,
  lengthPenalty: 1,
  earlyStopping: false,
})

/**
 * Named sampling settings: plain frozen objects to use as they are or spread and adjust, e.g.
 * `model.generate(prompt, { ...PRESETS.creative, maxTokens: 200, seed: 7 })`.
 *
 * - `greedy`: always the most likely token (deterministic, no seed needed).
 * - `balanced`: mildly random, for chat and general text.
 * - `creative`: more varied, for stories and brainstorming; min-p keeps it coherent.
 */
export const PRESETS: Readonly<Record<PresetName, Readonly<SamplingOptions>>> = Object.freeze({
  greedy: Object.freeze({ temperature: 0 }),
  balanced: Object.freeze({ temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05, repetitionPenalty: 1.1 }),
  creative: Object.freeze({ temperature: 1.1, topK: 0, topP: 0.98, minP: 0.05, presencePenalty: 0.3 }),
})

/** The name of a preset in {@link PRESETS}. */
export type PresetName = 'greedy' | 'balanced' | 'creative'

const KNOWN_OPTIONS: readonly string[] = [
  'maxTokens',
  'temperature',
  'topK',
  'topP',
  'minP',
  'typicalP',
  'repetitionPenalty',
  'frequencyPenalty',
  'presencePenalty',
  'penaltyWindow',
  'logitBias',
  'seed',
  'stop',
  'includeStop',
  'stopTokenIds',
  'ignoreEos',
  'logprobs',
  'topLogprobs',
  'responseFormat',
  'numBeams',
  'lengthPenalty',
  'earlyStopping',
  'signal',
  'parseSpecial',
]

// The largest value a native u32 holds.
const MAX_U32 = 0xffff_ffff
const MAX_BEAMS = 64
const MAX_TOP_LOGPROBS = 20

function isInteger(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
}

function isIn(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && value >= min && value <= max
}

function conflict(message: string): TallowError {
  return new TallowError('INVALID_OPTIONS', message)
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The engine's form of a response format; `undefined` for none. */
function toNativeResponseFormat(format: unknown): NativeResponseFormat | undefined {
  const expected = "{ type: 'text' | 'json_object' | 'json_schema' | 'regex' | 'lark', ... }"
  if (!isObject(format) || typeof format.type !== 'string') {
    throw invalidOption('responseFormat', expected, format)
  }
  switch (format.type) {
    case 'text':
      return undefined
    case 'json_object':
      return { kind: 'json_object' }
    case 'json_schema': {
      const nested = format.json_schema
      const schema: unknown = isObject(nested) ? nested.schema : format.schema
      if (!isObject(schema) && typeof schema !== 'boolean') {
        throw invalidOption('responseFormat.schema', 'a JSON Schema object', schema)
      }
      return { kind: 'json_schema', schema }
    }
    case 'regex':
      if (typeof format.pattern !== 'string' || format.pattern.length === 0) {
        throw invalidOption('responseFormat.pattern', 'a non-empty string', format.pattern)
      }
      return { kind: 'regex', pattern: format.pattern }
    case 'lark':
      if (typeof format.grammar !== 'string' || format.grammar.length === 0) {
        throw invalidOption('responseFormat.grammar', 'a non-empty string', format.grammar)
      }
      return { kind: 'lark', grammar: format.grammar }
    default:
      throw invalidOption('responseFormat.type', "'text', 'json_object', 'json_schema', 'regex' or 'lark'", format.type)
  }
}

function logitBiasList(value: unknown): { tokenId: number; bias: number }[] {
  if (!isObject(value)) throw invalidOption('logitBias', 'an object of token id → bias', value)
  return Object.entries(value).map(([key, bias]) => {
    const tokenId = Number(key)
    if (!/^\d+$/.test(key) || !isInteger(tokenId, 0, MAX_U32)) {
      throw invalidOption('logitBias keys', 'token ids (integers ≥ 0)', key)
    }
    if (!isIn(bias, -100, 100)) throw invalidOption(`logitBias[${key}]`, 'a number in [-100, 100]', bias)
    return { tokenId, bias }
  })
}

/**
 * Checks generation options and fills in defaults: the one place they are validated.
 *
 * @throws TallowError INVALID_OPTIONS naming the first option that is wrong (an unknown option
 *   name included, so that a typo such as `max_tokens` is not silently ignored), or the two
 *   options that contradict each other.
 * @internal
 */
export function validateGenerateOptions(options: GenerateOptions = {}): NativeGenerateOptions {
  checkOptionNames(options, KNOWN_OPTIONS)
  const d = DEFAULT_SAMPLING
  const {
    maxTokens = d.maxTokens,
    temperature = d.temperature,
    topK = d.topK,
    topP = d.topP,
    minP = d.minP,
    typicalP = d.typicalP,
    repetitionPenalty = d.repetitionPenalty,
    frequencyPenalty = d.frequencyPenalty,
    presencePenalty = d.presencePenalty,
    penaltyWindow = d.penaltyWindow,
    logitBias = d.logitBias,
    seed,
    stop = d.stop,
    stopTokenIds = d.stopTokenIds,
    topLogprobs,
    responseFormat = d.responseFormat,
    numBeams = d.numBeams,
    lengthPenalty,
    earlyStopping,
    signal,
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
  if (!isIn(minP, 0, 1)) throw invalidOption('minP', 'a number in [0, 1]', minP)
  if (typeof typicalP !== 'number' || !(typicalP > 0 && typicalP <= 1)) {
    throw invalidOption('typicalP', 'a number in (0, 1]', typicalP)
  }
  if (typeof repetitionPenalty !== 'number' || !Number.isFinite(repetitionPenalty) || repetitionPenalty <= 0) {
    throw invalidOption('repetitionPenalty', 'a finite number > 0', repetitionPenalty)
  }
  if (!isIn(frequencyPenalty, -2, 2)) throw invalidOption('frequencyPenalty', 'a number in [-2, 2]', frequencyPenalty)
  if (!isIn(presencePenalty, -2, 2)) throw invalidOption('presencePenalty', 'a number in [-2, 2]', presencePenalty)
  if (!isInteger(penaltyWindow, 0, MAX_U32)) {
    throw invalidOption('penaltyWindow', `an integer in [0, ${MAX_U32}] (0 = the whole sequence)`, penaltyWindow)
  }
  const bias = logitBiasList(logitBias)
  if (seed !== undefined && !isInteger(seed, 0, Number.MAX_SAFE_INTEGER)) {
    throw invalidOption('seed', `an integer in [0, ${Number.MAX_SAFE_INTEGER}]`, seed)
  }
  if (!Array.isArray(stop) || !stop.every((s): s is string => typeof s === 'string' && s.length > 0)) {
    throw invalidOption('stop', 'an array of non-empty strings', stop)
  }
  if (!Array.isArray(stopTokenIds) || !stopTokenIds.every((id) => isInteger(id, 0, MAX_U32))) {
    throw invalidOption('stopTokenIds', 'an array of token ids (integers ≥ 0)', stopTokenIds)
  }
  const logprobs = booleanOption('logprobs', options.logprobs, d.logprobs)
  if (topLogprobs !== undefined) {
    if (!isInteger(topLogprobs, 0, MAX_TOP_LOGPROBS)) {
      throw invalidOption('topLogprobs', `an integer in [0, ${MAX_TOP_LOGPROBS}]`, topLogprobs)
    }
    if (!logprobs) throw conflict('topLogprobs needs logprobs: true')
  }
  const format = toNativeResponseFormat(responseFormat)
  if (!isInteger(numBeams, 1, MAX_BEAMS)) throw invalidOption('numBeams', `an integer in [1, ${MAX_BEAMS}]`, numBeams)
  if (lengthPenalty !== undefined && (typeof lengthPenalty !== 'number' || !Number.isFinite(lengthPenalty))) {
    throw invalidOption('lengthPenalty', 'a finite number', lengthPenalty)
  }
  if (earlyStopping !== undefined && typeof earlyStopping !== 'boolean' && earlyStopping !== 'never') {
    throw invalidOption('earlyStopping', "true, false or 'never'", earlyStopping)
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw invalidOption('signal', 'an AbortSignal', signal)
  }
  const ignoreEos = booleanOption('ignoreEos', options.ignoreEos, d.ignoreEos)

  // Combinations that contradict each other.
  if (numBeams > 1) {
    const sampling: [keyof SamplingOptions, boolean][] = [
      ['temperature', options.temperature !== undefined && temperature > 0],
      ['topK', options.topK !== undefined],
      ['topP', options.topP !== undefined],
      ['minP', options.minP !== undefined],
      ['typicalP', options.typicalP !== undefined],
      ['seed', seed !== undefined],
      ['repetitionPenalty', options.repetitionPenalty !== undefined],
      ['frequencyPenalty', options.frequencyPenalty !== undefined],
      ['presencePenalty', options.presencePenalty !== undefined],
      ['logitBias', bias.length > 0],
      ['stop', stop.length > 0],
      ['logprobs', logprobs],
      ['responseFormat', format !== undefined],
    ]
    const clash = sampling.find(([, set]) => set)
    if (clash !== undefined) {
      throw conflict(
        `${clash[0]} cannot be combined with beam search (numBeams ${numBeams}): beam search is deterministic` +
          (clash[0] === 'stop' ? '; use stopTokenIds' : ''),
      )
    }
  } else {
    if (lengthPenalty !== undefined) throw conflict('lengthPenalty applies only to beam search (numBeams > 1)')
    if (earlyStopping !== undefined) throw conflict('earlyStopping applies only to beam search (numBeams > 1)')
  }
  if (format !== undefined && ignoreEos) {
    throw conflict('ignoreEos cannot be combined with responseFormat: the output ends where the constraint allows it to')
  }

  const validated: NativeGenerateOptions = {
    maxTokens,
    temperature: numBeams > 1 ? 0 : temperature,
    topK,
    topP,
    minP,
    typicalP,
    repetitionPenalty,
    frequencyPenalty,
    presencePenalty,
    penaltyWindow,
    logitBias: bias,
    stop: [...stop],
    stopTokenIds: [...stopTokenIds],
    includeStop: booleanOption('includeStop', options.includeStop, d.includeStop),
    ignoreEos,
    parseSpecial: booleanOption('parseSpecial', options.parseSpecial, false),
    numBeams,
  }
  if (seed !== undefined) validated.seed = seed
  if (logprobs) validated.topLogprobs = topLogprobs ?? d.topLogprobs
  if (format !== undefined) validated.responseFormat = format
  if (numBeams > 1) {
    validated.lengthPenalty = lengthPenalty ?? d.lengthPenalty
    validated.earlyStopping = String(earlyStopping ?? d.earlyStopping)
  }
  return validated
}
