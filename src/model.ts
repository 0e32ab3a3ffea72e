/**
 * A loaded model: the TypeScript class that holds the native handle and owns the ergonomics
 * (option checking, typed errors, streaming, disposal).
 */
import { resolve } from 'node:path'
import { resolveBackend, type BackendOptions } from './backend'
import { TallowError } from './errors'
import { callNative, callNativeAsync, native, type NativeModel, type NativeModelInfo } from './native'
import {
  CHAT_TEMPLATE_OPTION_NAMES,
  ChatSession,
  messageTexts,
  splitChatOptions,
  toNativeChatRequest,
  type ApplyChatTemplateOptions,
  type ChatHost,
  type ChatMessage,
  type ChatOptions,
  type ChatResult,
  type ChatSessionOptions,
} from './chat'
import { booleanOption, checkOptionNames } from './options'
import { toNativePrompt, validateTokenIds, type Prompt } from './prompt'
import { quantizeOption, runsQuantized, type QuantizationOptions } from './quantization'
import { validateGenerateOptions, type GenerateOptions } from './sampling'
import { GenerationStream, type GenerationResult } from './stream'
import { detokenizeWith, tokenizeWith, type DetokenizeOptions, type TokenizeOptions } from './tokenizer'

/** Ids of chat sessions, unique per process (the engine keys session caches by them). */
let nextSession = 0

/** Options of {@link loadModel}. */
export type LoadOptions = BackendOptions & QuantizationOptions

/** Options of {@link Model.evaluate}. */
export interface EvaluateOptions {
  /**
   * Return the logits of every position (`[tokens.length, vocabSize]`, row-major) instead of
   * those of the last position only (`[vocabSize]`). Default `false`.
   */
  allPositions?: boolean
}

/** What a loaded model is and how it runs. A frozen plain object. */
export interface ModelInfo {
  /** The architecture named in `config.json`, e.g. `'LlamaForCausalLM'`. */
  readonly architecture: string
  /** The weights' file format: `'safetensors'` or `'gguf'`. */
  readonly format: 'safetensors' | 'gguf'
  /** Bytes of the weight files (the GGUF file, or the safetensors shards). */
  readonly fileSize: number
  /**
   * The quantization the weights run in: a GGUF file's type as llama.cpp names it (`'Q4_K_M'`,
   * `'Q8_0'`, `'F16'`, ...), or the `quantize` type asked for at load (`'Q4_K'`); absent for
   * unquantized safetensors.
   */
  readonly quantization?: string
  /**
   * How many tensors of each storage type the model runs with, e.g. `{ Q4_K: 96, Q6_K: 17,
   * F32: 65 }`.
   */
  readonly tensorTypes: Readonly<Record<string, number>>
  /**
   * A GGUF file's `general.*` metadata (`general.name`, `general.license`, `general.file_type`,
   * ...) as JSON values; arrays longer than 64 items appear as `{ array_length }`. Empty for
   * safetensors.
   */
  readonly metadata: Readonly<Record<string, unknown>>
  /** The absolute path the model was loaded from. */
  readonly path: string
  /** Number of parameters in the checkpoint (tied embeddings counted once). */
  readonly parameterCount: number
  /** The most tokens (prompt and generated) a sequence may hold. */
  readonly contextLength: number
  /**
   * The type most weights are stored in: `'f32'`, `'f16'`, `'bf16'`, or for GGUF files the
   * predominant tensor type in lower case (`'q4_k'`).
   */
  readonly dtype: string
  /** The dtype the engine computes in (`'f32'` on CPU). */
  readonly computeDtype: string
  /** Number of rows of the output layer: token ids are in `[0, vocabSize)`. */
  readonly vocabSize: number
  /** The beginning-of-sequence token, if the model has one. */
  readonly bosTokenId?: number
  /** The tokens that end a generation (unless `ignoreEos`). */
  readonly eosTokenIds: readonly number[]
  /** The device the model runs on, e.g. `'cpu'`. */
  readonly device: string
  /** The number of CPU threads the engine uses. */
  readonly threads: number
  /**
   * Where the chat template comes from: `'model'` (the model ships one), `'builtin:<name>'` (ours
   * for its family), or absent (chat needs the `template` option).
   */
  readonly chatTemplate?: string
}

function toModelInfo(info: NativeModelInfo): ModelInfo {
  const result: ModelInfo = {
    architecture: info.architecture,
    format: info.format as ModelInfo['format'],
    fileSize: info.fileSize,
    ...(typeof info.quantization === 'string' ? { quantization: info.quantization } : {}),
    tensorTypes: Object.freeze({ ...info.tensorTypes }),
    metadata: Object.freeze({ ...(info.metadata as Record<string, unknown>) }),
    path: info.path,
    parameterCount: info.parameterCount,
    contextLength: info.contextLength,
    dtype: info.dtype,
    computeDtype: info.computeDtype,
    vocabSize: info.vocabSize,
    ...(typeof info.bosTokenId === 'number' ? { bosTokenId: info.bosTokenId } : {}),
    eosTokenIds: Object.freeze([...info.eosTokenIds]),
    device: info.device,
    threads: info.threads,
    ...(typeof info.chatTemplate === 'string' ? { chatTemplate: info.chatTemplate } : {}),
  }
  return Object.freeze(result)
}

/**
 * Loads a model: a directory in the Hugging Face layout (`config.json`, `tokenizer.json`,
 * `*.safetensors`, sharded or not), or a GGUF file (llama.cpp's format, any of the common
 * quantizations; its tokenizer and chat template come from the file). GGUF weights are
 * memory-mapped and used in place, so resident memory stays about the file's size. Loading runs
 * on a thread of the engine; the event loop is free meanwhile.
 *
 * @example
 * ```ts
 * const model = await loadModel('./models/my-llama', { device: 'auto' })
 * const { text } = await model.generate('Once upon a time', { maxTokens: 32 })
 * await model.dispose()
 *
 * const gguf = await loadModel('./models/llama-3.2-1b-q4_k_m.gguf')
 * console.log(gguf.info.quantization) // 'Q4_K_M'
 *
 * const q8 = await loadModel('./models/my-llama', { quantize: 'q8_0' })
 * ```
 * @throws TallowError MODEL_NOT_FOUND, INVALID_CONFIG, TOKENIZER_NOT_FOUND, INVALID_TOKENIZER,
 *   UNSUPPORTED_ARCHITECTURE, UNSUPPORTED_CONFIG, TENSOR_MISSING, TENSOR_SHAPE_MISMATCH,
 *   INVALID_MODEL_FILE, IO_ERROR for a model that cannot be loaded (the message says which file
 *   and why, e.g. what is malformed in a GGUF file or which tensor type is unsupported);
 *   UNSUPPORTED_DEVICE or INVALID_OPTIONS for bad options (an unknown `quantize` type, or
 *   `quantize` with a GGUF file).
 */
export async function loadModel(path: string, options: LoadOptions = {}): Promise<Model> {
  if (typeof path !== 'string' || path.length === 0) {
    throw new TallowError('MODEL_NOT_FOUND', 'the model path must be a non-empty string')
  }
  checkOptionNames(options, ['device', 'threads', 'quantize'])
  const quantize = quantizeOption(options.quantize)
  // Quantized weights run on the CPU kernels: 'auto' means the CPU for them.
  const backend =
    options.device === undefined && runsQuantized(path, options) ? { ...options, device: 'cpu' as const } : options
  const loadOptions = { ...resolveBackend(backend), ...(quantize === undefined ? {} : { quantize }) }
  const inner = await callNativeAsync(() => native().NativeModel.load(resolve(path), loadOptions))
  return new Model(inner)
}

/**
 * A loaded model. Get one from {@link loadModel}; release it with {@link Model.dispose}.
 *
 * Every method throws (or rejects with) a {@link TallowError}; after `dispose()` they fail with
 * `MODEL_DISPOSED`. {@link Model.info} stays readable.
 */
export class Model {
  /** What the model is and how it runs. */
  readonly info: ModelInfo

  readonly #inner: NativeModel
  #disposed = false

  /**
   * Wraps a native model handle; use {@link loadModel}.
   *
   * @internal
   */
  constructor(inner: NativeModel) {
    this.#inner = inner
    this.info = toModelInfo(callNative(() => inner.info()))
  }

  /** Whether {@link Model.dispose} was called. */
  get disposed(): boolean {
    return this.#disposed
  }

  /**
   * Splits `text` into token ids with the model's tokenizer. Special-token text inside `text`
   * stays plain text unless `parseSpecial` is set.
   *
   * @throws TallowError INVALID_OPTIONS, INVALID_PROMPT if `text` is not a string; MODEL_DISPOSED
   */
  tokenize(text: string, options: TokenizeOptions = {}): number[] {
    this.#checkAlive()
    return tokenizeWith(this.#inner, text, options)
  }

  /**
   * Turns token ids back into text.
   *
   * @throws TallowError INVALID_PROMPT for an id that is not an integer in `[0, vocabSize)`;
   *   MODEL_DISPOSED
   */
  detokenize(ids: readonly number[], options: DetokenizeOptions = {}): string {
    this.#checkAlive()
    return detokenizeWith(this.#inner, ids, options)
  }

  /**
   * Starts generating a continuation of `prompt` and returns at once; see
   * {@link GenerationStream} for how to read it and how to stop it.
   *
   * @example
   * ```ts
   * for await (const chunk of model.stream('Once upon a time', { maxTokens: 64 })) {
   *   process.stdout.write(chunk.text)
   * }
   * ```
   * @throws TallowError INVALID_OPTIONS, INVALID_PROMPT (a malformed prompt), MODEL_DISPOSED at
   *   once; what the engine finds (CONTEXT_OVERFLOW, a token id past the vocabulary) comes through
   *   the iteration and `result`.
   */
  stream(prompt: Prompt, options: GenerateOptions = {}): GenerationStream {
    return this.#start(prompt, options, true)
  }

  /**
   * Generates a continuation of `prompt` and resolves with all of it. The same as awaiting
   * `stream(prompt, options).result`.
   *
   * @example
   * ```ts
   * const { text, finishReason } = await model.generate('Once upon a time', {
   *   maxTokens: 64,
   *   temperature: 0.7,
   *   seed: 1,
   * })
   * ```
   * @throws TallowError INVALID_OPTIONS, INVALID_PROMPT, CONTEXT_OVERFLOW, MODEL_DISPOSED
   */
  async generate(prompt: Prompt, options: GenerateOptions = {}): Promise<GenerationResult> {
    return this.#start(prompt, options, false).result
  }

  /**
   * Renders a conversation into prompt text with the model's chat template, exactly as
   * transformers' `apply_chat_template(..., tokenize=False)` does.
   *
   * @example
   * ```ts
   * const text = model.applyChatTemplate([{ role: 'user', content: 'Hi!' }])
   * ```
   * @throws TallowError INVALID_PROMPT (bad messages, or special-token text in them without
   *   `parseSpecial`), INVALID_OPTIONS, INVALID_TEMPLATE (no template, or one that fails or runs
   *   over its limits), TEMPLATE_ERROR (the template rejected the conversation), MODEL_DISPOSED
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ApplyChatTemplateOptions = {}): string {
    this.#checkAlive()
    checkOptionNames(options, CHAT_TEMPLATE_OPTION_NAMES)
    const { request, parseSpecial, messages: checked } = toNativeChatRequest(messages, options)
    if (!parseSpecial) this.#rejectControlText(checked)
    return callNative(() => this.#inner.applyChatTemplate(request))
  }

  /**
   * Streams the assistant's reply to a conversation (see {@link GenerationStream}).
   *
   * @throws TallowError as {@link applyChatTemplate} and {@link stream}
   */
  streamChat(messages: readonly ChatMessage[], options: ChatOptions = {}): GenerationStream {
    return this.#chatTurn(messages, options, true)
  }

  /**
   * Generates the assistant's reply to a conversation.
   *
   * @example
   * ```ts
   * const { message } = await model.chat([{ role: 'user', content: 'Name a fruit.' }], { maxTokens: 32 })
   * ```
   * @throws TallowError as {@link applyChatTemplate} and {@link generate}
   */
  async chat(messages: readonly ChatMessage[], options: ChatOptions = {}): Promise<ChatResult> {
    const result = await this.#chatTurn(messages, options, false).result
    return { ...result, message: { role: 'assistant', content: result.text } }
  }

  /**
   * Starts a conversation that keeps its history and the engine's KV cache between turns.
   *
   * @throws TallowError INVALID_OPTIONS, MODEL_DISPOSED
   */
  createChatSession(options: ChatSessionOptions = {}): ChatSession {
    this.#checkAlive()
    const host: ChatHost = {
      streamChatTurn: (messages, turnOptions, session, onEnd) =>
        this.#chatTurn(messages, turnOptions, true, session, onEnd),
      dropSession: (session) => {
        if (!this.#disposed) callNative(() => this.#inner.dropSession(session))
      },
    }
    nextSession = (nextSession % 0xffff_ffff) + 1
    return new ChatSession(host, nextSession, options)
  }

  /**
   * Runs the model over `tokens` and returns the logits (unnormalized log-probabilities of the
   * next token): `[vocabSize]` for the last position, or `[tokens.length, vocabSize]` row-major
   * with `allPositions`. The model's state is not changed; each call starts afresh.
   *
   * @throws TallowError INVALID_PROMPT, CONTEXT_OVERFLOW, MODEL_DISPOSED
   */
  async evaluate(tokens: readonly number[], options: EvaluateOptions = {}): Promise<Float32Array> {
    this.#checkAlive()
    checkOptionNames(options, ['allPositions'])
    const allPositions = booleanOption('allPositions', options.allPositions, false)
    if (Array.isArray(tokens) && tokens.length === 0) {
      throw new TallowError('INVALID_PROMPT', 'the tokens to evaluate are empty')
    }
    const checked = validateTokenIds(tokens, 'tokens')
    return callNativeAsync(() => this.#inner.evaluate([...checked], allPositions))
  }

  /**
   * Stops the model's engine and releases its memory. Generations still running end with
   * finishReason `'abort'`. Calling it again does nothing.
   */
  async dispose(): Promise<void> {
    if (this.#disposed) return
    this.#disposed = true
    // The native call returns at once (the engine thread is told to stop); the promise lets
    // releasing device memory become asynchronous without changing the API.
    await Promise.resolve(callNative(() => this.#inner.dispose()))
  }

  #checkAlive(): void {
    if (this.#disposed) {
      throw new TallowError('MODEL_DISPOSED', 'the model was disposed; load it again to use it')
    }
  }

  #start(
    prompt: Prompt,
    options: GenerateOptions,
    bufferChunks: boolean,
    session?: number,
    onEnd?: (result: GenerationResult | undefined) => void,
  ): GenerationStream {
    this.#checkAlive()
    const nativeOptions = { ...validateGenerateOptions(options), ...(session === undefined ? {} : { session }) }
    const nativePrompt = toNativePrompt(prompt)
    const { signal } = options
    if (signal?.aborted === true) return new GenerationStream(undefined, signal, bufferChunks, onEnd)
    const source = callNative(() => this.#inner.generate(nativePrompt, nativeOptions))
    return new GenerationStream(source, signal, bufferChunks, onEnd)
  }

  #chatTurn(
    messages: readonly ChatMessage[],
    options: ChatOptions,
    bufferChunks: boolean,
    session?: number,
    onEnd?: (result: GenerationResult | undefined) => void,
  ): GenerationStream {
    const { template, generation } = splitChatOptions(options)
    const text = this.applyChatTemplate(messages, template)
    // The rendered text holds the template's control tokens, so they are parsed as such (message
    // contents were checked for control text above); the template writes BOS itself.
    const ids = this.tokenize(text, { addSpecialTokens: false, parseSpecial: true })
    return this.#start(ids, generation, bufferChunks, session, onEnd)
  }

  /** Special-token text in a message would forge conversation structure: reject it. */
  #rejectControlText(messages: readonly ChatMessage[]): void {
    messages.forEach((message, i) => {
      for (const text of messageTexts(message)) {
        const plain = this.tokenize(text, { addSpecialTokens: false, parseSpecial: false })
        const parsed = this.tokenize(text, { addSpecialTokens: false, parseSpecial: true })
        if (plain.length !== parsed.length || plain.some((id, k) => id !== parsed[k])) {
          throw new TallowError(
            'INVALID_PROMPT',
            `messages[${i}] contains special-token text; pass parseSpecial: true to let messages hold control tokens`,
          )
        }
      }
    })
  }
}
