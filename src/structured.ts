/**
 * Structured output: turning a generation constrained by `responseFormat` into a value.
 */
import { TallowError } from './errors'
import type { FinishReason } from './stream'

/**
 * Parses the text of a generation made with `responseFormat: { type: 'json_schema', schema }`
 * (or `json_object`) into a value of the type you expect. The constraint guarantees the text is
 * valid under the schema whenever the generation ended by itself; `T` is yours to choose to match
 * the schema (no runtime check beyond the engine's).
 *
 * @example
 * ```ts
 * const schema = { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] }
 * const result = await model.generate(prompt, { responseFormat: { type: 'json_schema', schema } })
 * const { name } = parseJson<{ name: string }>(result)
 * ```
 * @throws TallowError INVALID_OUTPUT when the text is not JSON: typically finishReason
 *   `'length'` (raise `maxTokens`) or `'abort'`, or a generation made without a JSON format.
 */
export function parseJson<T = unknown>(result: { readonly text: string; readonly finishReason: FinishReason }): T {
  try {
    return JSON.parse(result.text) as T
  } catch (error) {
    const why =
      result.finishReason === 'length'
        ? 'the generation was cut short by maxTokens or the context length; raise maxTokens'
        : result.finishReason === 'abort'
          ? 'the generation was aborted'
          : 'was it generated with responseFormat json_schema or json_object?'
    throw new TallowError('INVALID_OUTPUT', `the output is not JSON: ${why}`, { cause: error })
  }
}
