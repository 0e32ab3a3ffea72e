/**
 * A generation in progress: the engine's events, pulled from the native stream as fast as it
 * produces them, queued for the caller's `for await`, and summed up in `result`.
 */
import { TallowError, toTallowError } from './errors'
import {
  callNative,
  callNativeAsync,
  type NativeFinishCause,
  type NativeResult,
  type NativeStream,
  type NativeTokenLogprobs,
} from './native'

/** Why a generation ended. */
export type FinishReason =
  /** The model produced an end-of-sequence token, or the text reached a `stop` string. */
  | 'stop'
  /** `maxTokens` were generated, or the context is full. */
  | 'length'
  /** Cancelled: `cancel()`, an aborted `signal`, `break` out of `for await`, or `dispose()`. */
  | 'abort'

/**
 * The kinds of {@link FinishCause}:
 *
 * - `eos`: the model's end-of-sequence token `tokenId` (finishReason `'stop'`);
 * - `stop_token`: `tokenId` from the `stopTokenIds` option (`'stop'`);
 * - `stop_string`: the `stop` string `stop` (`'stop'`);
 * - `constraint`: the `responseFormat` admits nothing more, the output is complete (`'stop'`);
 * - `max_tokens`: `maxTokens` tokens were generated (`'length'`);
 * - `context_length`: the sequence filled the model's context (`'length'`);
 * - `abort`: cancelled (`'abort'`).
 */
export type FinishCauseType =
  | 'eos'
  | 'stop_token'
  | 'stop_string'
  | 'constraint'
  | 'max_tokens'
  | 'context_length'
  | 'abort'

/** Exactly what ended a generation ({@link FinishReason} is its OpenAI-style summary). */
export interface FinishCause {
  /** Which of the ends it was. */
  readonly type: FinishCauseType
  /** For `eos` and `stop_token`: the token that ended it. */
  readonly tokenId?: number
  /** For `stop_string`: the stop string that matched. */
  readonly stop?: string
}

/** A token and its log-probability, as the OpenAI API reports them. */
export interface TokenLogprob {
  /** The token's text (U+FFFD where it holds only part of a UTF-8 character). */
  readonly token: string
  /** The natural log of the token's probability under the model (before any sampling option). */
  readonly logprob: number
  /** The token's exact UTF-8 bytes: the bytes of a character split across tokens add up. */
  readonly bytes: readonly number[]
}

/** The log-probabilities of a whole generation, as the OpenAI API reports them. */
export interface Logprobs {
  /** One entry per generated token. */
  readonly content: readonly TokenLogprobs[]
}

/** One generated position's log-probabilities, as the OpenAI API reports them. */
export interface TokenLogprobs extends TokenLogprob {
  /** The `topLogprobs` most likely tokens at this position, most likely first. */
  readonly top_logprobs: readonly TokenLogprob[]
}

/** One generated token, as {@link GenerationStream} yields it. */
export interface GenerationChunk {
  /**
   * The text this token adds. It may be `''` when the token ends inside a multi-byte character
   * or might start a `stop` string; that text comes with a later chunk (or never, when it turns
   * out to be the stop string). The chunks' texts add up to the result's text.
   */
  readonly text: string
  /** The token's id. */
  readonly tokenId: number
  /** Its log-probability and the most likely alternatives, with the `logprobs` option. */
  readonly logprobs?: TokenLogprobs
}

/** How many tokens a generation read and wrote. */
export interface Usage {
  /** Tokens in the prompt (special tokens such as BOS included). */
  readonly promptTokens: number
  /**
   * Of the prompt tokens, those whose keys and values came from a chat session's cache instead
   * of being computed again (0 outside sessions).
   */
  readonly cachedPromptTokens: number
  /** Tokens generated. */
  readonly completionTokens: number
}

/** How long a generation took. Wall-clock time measured by the engine. */
export interface Timings {
  /** Milliseconds spent reading the prompt (up to the first generated token's logits). */
  readonly prefillMs: number
  /** Milliseconds spent generating tokens after the prompt. */
  readonly decodeMs: number
  /** Generated tokens per second of decode time. */
  readonly tokensPerSecond: number
}

/** The outcome of a generation. */
export interface GenerationResult {
  /** The generated text (without the prompt, and without a `stop` string that ended it). */
  readonly text: string
  /** The generated token ids (without the prompt). */
  readonly tokens: readonly number[]
  /** Why the generation ended. */
  readonly finishReason: FinishReason
  /** Exactly what ended it. */
  readonly finishCause: FinishCause
  /** With the `logprobs` option: each generated token's, in the OpenAI shape. */
  readonly logprobs?: Logprobs
  /** Beam search: the returned beam's score (sum of log-probabilities / length ^ lengthPenalty). */
  readonly beamScore?: number
  /** Token counts. */
  readonly usage: Usage
  /** Timings. */
  readonly timings: Timings
}

const FINISH_REASONS: readonly string[] = ['stop', 'length', 'abort']

function toLogprobs(native: NativeTokenLogprobs): TokenLogprobs {
  const one = (t: NativeTokenLogprobs['chosen']): TokenLogprob => ({
    token: t.token,
    logprob: t.logprob,
    bytes: t.bytes,
  })
  return { ...one(native.chosen), top_logprobs: native.top.map(one) }
}

function toFinishCause(cause: NativeFinishCause): FinishCause {
  switch (cause.kind) {
    case 'eos':
    case 'stop_token':
      return { type: cause.kind, tokenId: cause.tokenId ?? -1 }
    case 'stop_string':
      return { type: 'stop_string', stop: cause.stopString ?? '' }
    case 'constraint':
    case 'max_tokens':
    case 'context_length':
    case 'abort':
      return { type: cause.kind }
    default:
      throw new TallowError('INTERNAL', `the engine reported an unknown finish cause '${cause.kind}'`)
  }
}

function toResult(result: NativeResult): GenerationResult {
  const { finishReason } = result
  if (!FINISH_REASONS.includes(finishReason)) {
    throw new TallowError('INTERNAL', `the engine reported an unknown finishReason '${finishReason}'`)
  }
  return {
    text: result.text,
    tokens: result.tokens,
    finishReason: finishReason as FinishReason,
    finishCause: toFinishCause(result.finishCause),
    ...(result.logprobs === undefined ? {} : { logprobs: { content: result.logprobs.map(toLogprobs) } }),
    ...(result.beamScore === undefined ? {} : { beamScore: result.beamScore }),
    usage: {
      promptTokens: result.promptTokens,
      cachedPromptTokens: result.cachedPromptTokens,
      completionTokens: result.completionTokens,
    },
    timings: {
      prefillMs: result.prefillMs,
      decodeMs: result.decodeMs,
      tokensPerSecond: result.tokensPerSecond,
    },
  }
}

/** The result of a generation that was aborted before it started. */
function abortedBeforeStart(): GenerationResult {
  return {
    text: '',
    tokens: [],
    finishReason: 'abort',
    finishCause: { type: 'abort' },
    usage: { promptTokens: 0, cachedPromptTokens: 0, completionTokens: 0 },
    timings: { prefillMs: 0, decodeMs: 0, tokensPerSecond: 0 },
  }
}

/**
 * A generation in progress, from {@link Model.stream}.
 *
 * Iterate it with `for await` to get the tokens as they come, and/or await {@link result} for
 * the whole outcome; the generation runs to its end either way, whether or not anyone iterates.
 * Leaving the `for await` early (`break`, `return`, a thrown error) cancels the generation, as
 * do {@link cancel} and the `signal` option; {@link result} then has finishReason `'abort'`.
 *
 * A stream can be iterated once. If the generation fails, the iteration throws and
 * {@link result} rejects with the same {@link TallowError}.
 *
 * @example
 * ```ts
 * const stream = model.stream('Once upon a time', { maxTokens: 64 })
 * for await (const chunk of stream) process.stdout.write(chunk.text)
 * const { usage, timings } = await stream.result
 * ```
 */
export class GenerationStream implements AsyncIterable<GenerationChunk> {
  /** The outcome, once the generation has ended. */
  readonly result: Promise<GenerationResult>

  readonly #native: NativeStream | undefined
  readonly #signal: AbortSignal | undefined
  readonly #bufferChunks: boolean
  readonly #onEnd: ((result: GenerationResult | undefined) => void) | undefined
  // Chunks pulled from the engine that the iteration has not taken yet.
  readonly #queue: GenerationChunk[] = []
  // Wakes the iteration when a chunk is queued or the generation ends.
  #wake: (() => void) | undefined
  #ended = false
  #error: TallowError | undefined
  #cancelled = false
  #iterated = false

  /**
   * Starts pulling events from `source`; `undefined` means the generation was aborted before it
   * started.
   *
   * @param bufferChunks - queue chunks for iteration; `false` when only the result is wanted
   * @param onEnd - called with the result (`undefined` if the generation failed or never
   *   started) as the generation ends, before the iteration ends and `result` settles
   * @internal
   */
  constructor(
    source: NativeStream | undefined,
    signal?: AbortSignal,
    bufferChunks = true,
    onEnd?: (result: GenerationResult | undefined) => void,
  ) {
    this.#native = source
    this.#signal = signal
    this.#bufferChunks = bufferChunks
    this.#onEnd = onEnd
    if (source === undefined) {
      this.#ended = true
      onEnd?.(undefined)
      this.result = Promise.resolve(abortedBeforeStart())
    } else {
      this.result = this.#pump(source)
      // The failure is delivered to whoever awaits `result` or iterates; a caller who does only
      // one of the two must not get an unhandled rejection from the other.
      this.result.catch(() => undefined)
    }
  }

  /**
   * Asks the engine to stop before its next token. The iteration then ends and {@link result}
   * has finishReason `'abort'` with what was generated so far. Does nothing once the generation
   * has ended.
   */
  cancel(): void {
    if (this.#ended || this.#cancelled || this.#native === undefined) return
    this.#cancelled = true
    const source = this.#native
    // Cancelling races with the generation's own end; the engine ignores a late cancel, and an
    // error here (the model was disposed meanwhile, which also ends the stream) changes nothing.
    try {
      callNative(() => source.cancel())
    } catch {
      // See above.
    }
  }

  /** The generated tokens, in order, as they come. */
  async *[Symbol.asyncIterator](): AsyncGenerator<GenerationChunk, void, undefined> {
    if (this.#iterated) throw new TypeError('a GenerationStream can be iterated only once')
    if (!this.#bufferChunks) throw new TypeError('this GenerationStream does not keep its chunks')
    this.#iterated = true
    let finished = false
    try {
      for (;;) {
        const chunk = this.#queue.shift()
        if (chunk !== undefined) {
          yield chunk
        } else if (this.#ended) {
          if (this.#error !== undefined) throw this.#error
          finished = true
          return
        } else {
          await new Promise<void>((resolve) => (this.#wake = resolve))
        }
      }
    } finally {
      // Left early: nobody wants the rest.
      if (!finished) this.cancel()
    }
  }

  #notify(): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }

  // Pulls events until 'done', whether or not anyone iterates.
  async #pump(source: NativeStream): Promise<GenerationResult> {
    const onAbort = (): void => this.cancel()
    this.#signal?.addEventListener('abort', onAbort, { once: true })
    try {
      for (;;) {
        const event = await callNativeAsync(() => source.next())
        if (event === null) {
          throw new TallowError('INTERNAL', 'the engine ended a generation without a result')
        }
        if (event.kind === 'token') {
          if (event.tokenId === undefined) {
            throw new TallowError('INTERNAL', 'the engine sent a token event without a token')
          }
          if (this.#bufferChunks) {
            const chunk: GenerationChunk = {
              text: event.text ?? '',
              tokenId: event.tokenId,
              ...(event.logprobs === undefined ? {} : { logprobs: toLogprobs(event.logprobs) }),
            }
            this.#queue.push(chunk)
            this.#notify()
          }
        } else if (event.kind === 'done') {
          if (event.result === undefined) {
            throw new TallowError('INTERNAL', 'the engine sent a done event without a result')
          }
          const result = toResult(event.result)
          this.#onEnd?.(result)
          return result
        } else {
          throw new TallowError('INTERNAL', `the engine sent an unknown event '${event.kind}'`)
        }
      }
    } catch (error) {
      this.#error = toTallowError(error)
      this.#onEnd?.(undefined)
      throw this.#error
    } finally {
      this.#ended = true
      this.#signal?.removeEventListener('abort', onAbort)
      this.#notify()
    }
  }
}
