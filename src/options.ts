/**
 * Checking the option bags that every public function takes: one message shape for all of them.
 */
import { TallowError } from './errors'

/** How a rejected value is shown in an error message. */
function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value)
  if (Array.isArray(value)) return 'an array'
  return `a ${typeof value}`
}

/**
 * The `INVALID_OPTIONS` error for option `name`, e.g.
 * `topP must be a number in (0, 1], got 1.5`.
 *
 * @internal
 */
export function invalidOption(name: string, expected: string, value: unknown): TallowError {
  return new TallowError('INVALID_OPTIONS', `${name} must be ${expected}, got ${show(value)}`)
}

/**
 * Checks that `options` is an object whose keys are all in `known`, so that a typo such as
 * `max_tokens` fails loudly instead of being ignored.
 *
 * @throws TallowError INVALID_OPTIONS naming the unknown key
 * @internal
 */
export function checkOptionNames(options: unknown, known: readonly string[]): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw invalidOption('options', 'an object', options)
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TallowError(
        'INVALID_OPTIONS',
        `unknown option '${key}'; the options are ${known.join(', ')}`,
      )
    }
  }
}

/**
 * `value` if it is a boolean, `fallback` if it is undefined.
 *
 * @throws TallowError INVALID_OPTIONS otherwise
 * @internal
 */
export function booleanOption(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw invalidOption(name, 'a boolean', value)
  return value
}
