/**
 * tallow: local LLM inference for Node.js.
 *
 * ```ts
 * import { loadModel } from 'tallow'
 *
 * const model = await loadModel('./models/my-llama')
 * for await (const chunk of model.stream('Once upon a time', { maxTokens: 64 })) {
 *   process.stdout.write(chunk.text)
 * }
 * await model.dispose()
 * ```
 *
 * @packageDocumentation
 */
export { availableDevices, type BackendOptions, type Device } from './backend'
export {
  ChatSession,
  type ApplyChatTemplateOptions,
  type AssistantMessage,
  type ChatMessage,
  type ChatOptions,
  type ChatResult,
  type ChatSessionOptions,
  type ChatTemplateOptions,
} from './chat'
export { TallowError, type ErrorCode } from './errors'
export { loadModel, Model, type EvaluateOptions, type LoadOptions, type ModelInfo } from './model'
export type { Prompt } from './prompt'
export type { QuantizationOptions, QuantizeType } from './quantization'
export {
  DEFAULT_SAMPLING,
  PRESETS,
  type GenerateOptions,
  type JsonSchema,
  type NamedJsonSchema,
  type PresetName,
  type ResponseFormat,
  type SamplingOptions,
} from './sampling'
export { parseJson } from './structured'
export {
  GenerationStream,
  type FinishCause,
  type FinishCauseType,
  type FinishReason,
  type GenerationChunk,
  type GenerationResult,
  type Logprobs,
  type Timings,
  type TokenLogprob,
  type TokenLogprobs,
  type Usage,
} from './stream'
export { loadTokenizer, Tokenizer, type DetokenizeOptions, type TokenizeOptions } from './tokenizer'
