/**
 * Chat: conversations rendered with the model's chat template, generated from, and kept in
 * sessions that reuse the engine's KV cache from one turn to the next.
 */
import { TallowError } from './errors'
import type { NativeChatRequest } from './native'
import { booleanOption, invalidOption } from './options'
import type { GenerateOptions } from './sampling'
import type { GenerationResult, GenerationStream } from './stream'

/** One message of a conversation, as chat templates (and the OpenAI API) know it. */
export interface ChatMessage {
  /** `'system'`, `'user'`, `'assistant'`, `'tool'`, or whatever else the template accepts. */
  role: string
  /** The text, or a list of parts such as `{ type: 'text', text: '...' }` where the template reads them. */
  content: string | readonly Record<string, unknown>[]
  /** Tool calls an assistant message made, for templates that render them. */
  tool_calls?: readonly Record<string, unknown>[]
  /** The call a `tool` message answers. */
  tool_call_id?: string
  /** A name for the author (e.g. the tool's). */
  name?: string
  /** The assistant's reasoning, for templates that render it (Qwen 3). */
  reasoning_content?: string
  /** Further fields the template reads. */
  [field: string]: unknown
}

/** How a conversation is turned into prompt text. */
export interface ChatTemplateOptions {
  /**
   * Tool definitions (JSON schemas, OpenAI-style `{ type: 'function', function: {...} }`) for
   * templates that render them. Default: none.
   */
  tools?: readonly Record<string, unknown>[]
  /** Documents for retrieval-augmented templates. Default: none. */
  documents?: readonly Record<string, unknown>[]
  /** Further template variables, e.g. `{ enable_thinking: false }` for Qwen 3. Default `{}`. */
  variables?: Record<string, unknown>
  /**
   * A Jinja template source, or the name of a built-in one (`'chatml'`, `'llama3'`, `'llama2'`,
   * `'mistral'`, `'gemma'`, `'phi3'`), instead of the model's own. Default: the model's template
   * (or the built-in one for its family when it ships none; see `ModelInfo.chatTemplate`).
   */
  template?: string
  /**
   * Let special-token text inside messages (e.g. a user typing `<|im_start|>`) act as control
   * tokens. Default `false`: such a message is rejected with INVALID_PROMPT, so user content
   * cannot forge conversation structure.
   */
  parseSpecial?: boolean
}

/** Options of {@link Model.applyChatTemplate}. */
export interface ApplyChatTemplateOptions extends ChatTemplateOptions {
  /** Append the header that starts the assistant's reply. Default `true`. */
  addGenerationPrompt?: boolean
  /**
   * Leave the last (assistant) message open so the model continues it: assistant prefill.
   * Default `false`; it excludes `addGenerationPrompt`.
   */
  continueFinalMessage?: boolean
}

/** Options of {@link Model.chat}, {@link Model.streamChat} and a {@link ChatSession}'s turns. */
export interface ChatOptions extends GenerateOptions, Omit<ChatTemplateOptions, 'parseSpecial'> {
  /**
   * Continue the last (assistant) message instead of starting a new reply (assistant prefill).
   * Default `false`.
   */
  continueFinalMessage?: boolean
}

/** The assistant's reply as a message, ready to append to the conversation. */
export interface AssistantMessage {
  /** Always `'assistant'`. */
  readonly role: 'assistant'
  /** The generated text. */
  readonly content: string
}

/** The outcome of a chat turn: the generation's result and the reply as a message. */
export interface ChatResult extends GenerationResult {
  /** The assistant's reply. */
  readonly message: AssistantMessage
}

const TEMPLATE_OPTIONS = ['tools', 'documents', 'variables', 'template', 'parseSpecial'] as const

/** The names of the options that belong to the template rather than to generation. */
export const CHAT_TEMPLATE_OPTION_NAMES: readonly string[] = [
  ...TEMPLATE_OPTIONS,
  'addGenerationPrompt',
  'continueFinalMessage',
]

function listOption(name: string, value: unknown): Record<string, unknown>[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'object' || v === null || Array.isArray(v))) {
    throw invalidOption(name, 'an array of objects', value)
  }
  return value as Record<string, unknown>[]
}

function checkMessages(messages: unknown): ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new TallowError('INVALID_PROMPT', 'messages must be a non-empty array of { role, content }')
  }
  messages.forEach((m: unknown, i) => {
    const message = m as Partial<ChatMessage> | null
    if (typeof message !== 'object' || message === null || typeof message.role !== 'string') {
      throw new TallowError('INVALID_PROMPT', `messages[${i}] must be an object with a string role`)
    }
    const { content } = message
    if (content !== undefined && typeof content !== 'string' && !Array.isArray(content)) {
      throw new TallowError('INVALID_PROMPT', `messages[${i}].content must be a string or an array of parts`)
    }
  })
  return messages as ChatMessage[]
}

/** The texts of a message's content (the string, or its parts' `text`). */
export function messageTexts(message: ChatMessage): string[] {
  if (typeof message.content === 'string') return [message.content]
  return message.content.flatMap((part) => (typeof part.text === 'string' ? [part.text] : []))
}

/**
 * Checks `options` (template options only) and builds the native request.
 *
 * @internal
 */
export function toNativeChatRequest(
  messages: unknown,
  options: ApplyChatTemplateOptions,
): { request: NativeChatRequest; parseSpecial: boolean; messages: ChatMessage[] } {
  const checked = checkMessages(messages)
  const continueFinalMessage = booleanOption('continueFinalMessage', options.continueFinalMessage, false)
  const addGenerationPrompt = booleanOption('addGenerationPrompt', options.addGenerationPrompt, !continueFinalMessage)
  if (addGenerationPrompt && continueFinalMessage) {
    throw new TallowError('INVALID_OPTIONS', 'addGenerationPrompt and continueFinalMessage exclude each other')
  }
  const { variables, template } = options
  if (variables !== undefined && (typeof variables !== 'object' || variables === null || Array.isArray(variables))) {
    throw invalidOption('variables', 'an object', variables)
  }
  if (template !== undefined && (typeof template !== 'string' || template.length === 0)) {
    throw invalidOption('template', 'a non-empty string', template)
  }
  const tools = listOption('tools', options.tools)
  const documents = listOption('documents', options.documents)
  const request: NativeChatRequest = {
    messages: checked,
    addGenerationPrompt,
    continueFinalMessage,
    ...(tools === undefined ? {} : { tools }),
    ...(documents === undefined ? {} : { documents }),
    ...(variables === undefined ? {} : { variables }),
    ...(template === undefined ? {} : { template }),
  }
  return { request, parseSpecial: booleanOption('parseSpecial', options.parseSpecial, false), messages: checked }
}

/**
 * Splits chat options into the template's and the generation's.
 *
 * @internal
 */
export function splitChatOptions(options: ChatOptions): {
  template: ApplyChatTemplateOptions
  generation: GenerateOptions
} {
  if (typeof options !== 'object' || options === null) throw invalidOption('options', 'an object', options)
  const template: Record<string, unknown> = {}
  const generation: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(options)) {
    if (CHAT_TEMPLATE_OPTION_NAMES.includes(key)) template[key] = value
    else generation[key] = value
  }
  return { template, generation }
}

/** What a {@link ChatSession} needs from its model. @internal */
export interface ChatHost {
  streamChatTurn(
    messages: readonly ChatMessage[],
    options: ChatOptions,
    session: number,
    onEnd: (result: GenerationResult | undefined) => void,
  ): GenerationStream
  dropSession(session: number): void
}

/** Options of {@link Model.createChatSession}. */
export interface ChatSessionOptions extends ChatOptions {
  /** A system message that opens the conversation. */
  system?: string
}

/**
 * A conversation that remembers its history and keeps the model's KV cache between turns, so
 * each turn only computes the new messages instead of re-reading the whole conversation.
 * Options given at creation apply to every turn; a turn's own options override them.
 *
 * @example
 * ```ts
 * const session = model.createChatSession({ system: 'You are terse.', maxTokens: 64 })
 * const first = await session.send('Name a fruit.')
 * for await (const chunk of session.stream('And a vegetable?')) process.stdout.write(chunk.text)
 * session.dispose()
 * ```
 */
export class ChatSession {
  readonly #host: ChatHost
  readonly #id: number
  readonly #defaults: ChatOptions
  readonly #history: ChatMessage[] = []
  #busy = false
  #disposed = false

  /** @internal */
  constructor(host: ChatHost, id: number, options: ChatSessionOptions) {
    const { system, ...defaults } = options
    if (system !== undefined) {
      if (typeof system !== 'string') throw invalidOption('system', 'a string', system)
      this.#history.push({ role: 'system', content: system })
    }
    this.#host = host
    this.#id = id
    this.#defaults = defaults
  }

  /** The conversation so far (a copy). */
  get history(): ChatMessage[] {
    return this.#history.map((m) => ({ ...m }))
  }

  /**
   * Adds `content` as the user's message and streams the assistant's reply; the reply joins the
   * history when the generation ends (whatever its finishReason).
   *
   * @throws TallowError INVALID_OPTIONS when another turn is still running or the session was disposed
   */
  stream(content: string | ChatMessage, options: ChatOptions = {}): GenerationStream {
    if (this.#disposed) throw new TallowError('INVALID_OPTIONS', 'the chat session was disposed')
    if (this.#busy) throw new TallowError('INVALID_OPTIONS', 'a chat session runs one turn at a time')
    const message: ChatMessage = typeof content === 'string' ? { role: 'user', content } : content
    const conversation = [...this.#history, message]
    // The history is updated as the generation ends, before its iteration or result settles,
    // so the next turn can start right after a `for await` over this one.
    const onEnd = (result: GenerationResult | undefined): void => {
      if (result !== undefined) this.#history.push(message, { role: 'assistant', content: result.text })
      this.#busy = false
    }
    this.#busy = true
    try {
      return this.#host.streamChatTurn(conversation, { ...this.#defaults, ...options }, this.#id, onEnd)
    } catch (error) {
      this.#busy = false
      throw error
    }
  }

  /** Like {@link stream}, resolving with the whole reply. */
  async send(content: string | ChatMessage, options: ChatOptions = {}): Promise<ChatResult> {
    const result = await this.stream(content, options).result
    return { ...result, message: { role: 'assistant', content: result.text } }
  }

  /** Frees the session's KV cache in the engine. The history stays readable. Idempotent. */
  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    this.#host.dropSession(this.#id)
  }
}
