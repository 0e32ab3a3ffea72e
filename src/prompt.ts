/**
 * Prompts: text, or token ids the caller tokenized already.
 */
import { TallowError } from './errors'
import type { NativePrompt } from './native'

/**
 * What to continue: a string (tokenized with the model's tokenizer, special tokens such as BOS
 * added), or token ids used as they are. Ids must be integers in `[0, vocabSize)`.
 */
export type Prompt = string | readonly number[]

// The largest value a native u32 holds; ids past the vocabulary are rejected by the engine.
const MAX_U32 = 0xffff_ffff

/**
 * Checks that `ids` is an array of non-negative integers.
 *
 * @param what - how the ids are named in the error message
 * @throws TallowError INVALID_PROMPT naming the first bad id
 * @internal
 */
export function validateTokenIds(ids: unknown, what: string): number[] {
  if (!Array.isArray(ids)) {
    throw new TallowError('INVALID_PROMPT', `${what} must be an array of token ids`)
  }
  for (let i = 0; i < ids.length; i++) {
    const id: unknown = ids[i]
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > MAX_U32) {
      throw new TallowError(
        'INVALID_PROMPT',
        `${what}[${i}] is ${String(id)}: token ids must be non-negative integers`,
      )
    }
  }
  return ids as number[]
}

// A UTF-16 surrogate without its other half (matched code unit by code unit: no `u` flag).
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/**
 * `text` with every lone surrogate replaced by U+FFFD: a JavaScript string may hold one, UTF-8
 * (what the engine reads) cannot. Node's own conversion to UTF-8 does the same; doing it here
 * makes it the SDK's rule rather than a detail of the binding.
 *
 * @internal
 */
export function toWellFormed(text: string): string {
  return text.replace(LONE_SURROGATE, '\uFFFD')
}

/**
 * Turns a {@link Prompt} into the engine's form.
 *
 * @throws TallowError INVALID_PROMPT for anything but a string or an array of token ids
 * @internal
 */
export function toNativePrompt(prompt: Prompt): NativePrompt {
  if (typeof prompt === 'string') return { text: toWellFormed(prompt) }
  if (Array.isArray(prompt)) {
    if (prompt.length === 0) throw new TallowError('INVALID_PROMPT', 'the prompt is empty')
    return { tokens: [...validateTokenIds(prompt, 'prompt')] }
  }
  throw new TallowError('INVALID_PROMPT', 'the prompt must be a string or an array of token ids')
}
