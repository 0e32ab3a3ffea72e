// Streaming, sampling, stop strings and cancellation, on llama-gqa-tied (context 4096).
import test from 'ava'
import { loadModel, type GenerationChunk, type Model } from '../src'
import { modelDir, reference } from './helpers'

const ref = reference('llama-gqa-tied')
const prompt = ref.greedy.ids
// Long enough that the generation is certainly still running when it is cancelled.
const LONG = { maxTokens: 2000, ignoreEos: true, temperature: 0 }

let model: Model

test.before(async () => {
  model = await loadModel(modelDir('llama-gqa-tied'))
})

test.after.always(async () => {
  await model.dispose()
})

test('the chunks of a stream add up to its result', async (t) => {
  const stream = model.stream(prompt, { maxTokens: 48, ignoreEos: true, seed: 7 })
  const chunks: GenerationChunk[] = []
  for await (const chunk of stream) chunks.push(chunk)
  const result = await stream.result
  t.is(result.finishReason, 'length')
  t.is(result.tokens.length, 48)
  t.deepEqual(
    chunks.map((c) => c.tokenId),
    result.tokens,
  )
  t.is(chunks.map((c) => c.text).join(''), result.text)
  t.is(model.detokenize(result.tokens), result.text)
  t.deepEqual(result.usage, { promptTokens: prompt.length, cachedPromptTokens: 0, completionTokens: 48 })
  for (const value of Object.values(result.timings)) t.true(Number.isFinite(value) && value >= 0)
  t.true(result.timings.tokensPerSecond > 0)
})

test('a stream makes progress when only its result is awaited', async (t) => {
  const result = await model.stream(prompt, { maxTokens: 16, ignoreEos: true, temperature: 0 }).result
  t.deepEqual(result.tokens, ref.greedy.tokens.slice(0, 16))
})

test('a stream can be iterated only once', async (t) => {
  const stream = model.stream(prompt, { maxTokens: 4, ignoreEos: true })
  for await (const _ of stream) {
    // drain
  }
  await t.throwsAsync(
    async () => {
      for await (const _ of stream) {
        // never reached
      }
    },
    { instanceOf: TypeError },
  )
})

test('the same seed gives the same tokens, another seed others', async (t) => {
  const options = { maxTokens: 32, ignoreEos: true, temperature: 1, topK: 0, topP: 1 }
  const a = await model.generate(prompt, { ...options, seed: 1 })
  const b = await model.generate(prompt, { ...options, seed: 1 })
  const c = await model.generate(prompt, { ...options, seed: 2 })
  t.deepEqual(a.tokens, b.tokens)
  t.is(a.text, b.text)
  t.notDeepEqual(a.tokens, c.tokens)
  // Sampling at temperature 1 over 32 tokens must leave the greedy path somewhere.
  t.notDeepEqual(a.tokens, ref.greedy.tokens)
})

test('the default sampling options are seeded too', async (t) => {
  const a = await model.generate(prompt, { maxTokens: 24, ignoreEos: true, seed: 123 })
  const b = await model.generate(prompt, { maxTokens: 24, ignoreEos: true, seed: 123 })
  t.deepEqual(a.tokens, b.tokens)
})

test('a stop string ends the text just before it', async (t) => {
  const greedy = { maxTokens: 32, ignoreEos: true, temperature: 0 }
  const full = await model.generate(prompt, greedy)
  // A stop string from past the start of the greedy text, which greedy decoding will produce
  // again: three letters, digits or spaces (not U+FFFD from a split byte sequence).
  const at = full.text.slice(4).search(/[\p{L}\p{N} ]{3}/u)
  t.true(at >= 0, `no stop string candidate in ${JSON.stringify(full.text)}`)
  const stop = full.text.slice(4 + at, 4 + at + 3)
  t.log(`stop string ${JSON.stringify(stop)} in ${JSON.stringify(full.text)}`)
  const expected = full.text.slice(0, full.text.indexOf(stop))

  const stream = model.stream(prompt, { ...greedy, stop: ['\u0000never', stop] })
  let streamed = ''
  for await (const chunk of stream) streamed += chunk.text
  const result = await stream.result
  t.is(result.finishReason, 'stop')
  t.is(result.text, expected)
  t.false(result.text.includes(stop))
  t.is(streamed, result.text, 'streamed text must not include the stop string either')
  t.true(result.tokens.length < 32)
  t.deepEqual(result.tokens, full.tokens.slice(0, result.tokens.length))

  const included = await model.generate(prompt, { ...greedy, stop: [stop], includeStop: true })
  t.is(included.finishReason, 'stop')
  t.is(included.text, expected + stop)
  t.deepEqual(included.tokens, result.tokens)
})

test('breaking out of for await cancels the generation', async (t) => {
  const stream = model.stream(prompt, LONG)
  let seen = 0
  for await (const _ of stream) {
    if (++seen === 3) break
  }
  const result = await stream.result
  t.is(result.finishReason, 'abort')
  t.true(result.usage.completionTokens >= 3)
  t.true(result.usage.completionTokens < LONG.maxTokens)
  t.is(result.tokens.length, result.usage.completionTokens)
  // What was generated before the cancel is the greedy continuation.
  const n = Math.min(result.tokens.length, ref.greedy.tokens.length)
  t.deepEqual(result.tokens.slice(0, n), ref.greedy.tokens.slice(0, n))
})

test('aborting the signal mid-stream ends it with finishReason abort', async (t) => {
  const controller = new AbortController()
  const stream = model.stream(prompt, { ...LONG, signal: controller.signal })
  let seen = 0
  for await (const _ of stream) {
    if (++seen === 3) controller.abort()
  }
  const result = await stream.result
  t.is(result.finishReason, 'abort')
  t.true(result.usage.completionTokens >= 3)
  t.true(result.usage.completionTokens < LONG.maxTokens)
})

test('cancel() ends a stream that is not being iterated', async (t) => {
  const stream = model.stream(prompt, LONG)
  setTimeout(() => stream.cancel(), 20)
  const result = await stream.result
  t.is(result.finishReason, 'abort')
  t.true(result.usage.completionTokens < LONG.maxTokens)
})

test('a signal aborted before the call gives an empty aborted result', async (t) => {
  const signal = AbortSignal.abort()
  const stream = model.stream(prompt, { ...LONG, signal })
  const chunks: GenerationChunk[] = []
  for await (const chunk of stream) chunks.push(chunk)
  t.deepEqual(chunks, [])
  const result = await stream.result
  t.is(result.finishReason, 'abort')
  t.deepEqual(result.tokens, [])
  t.is(result.text, '')
  t.is(result.usage.completionTokens, 0)
  const generated = await model.generate(prompt, { ...LONG, signal })
  t.is(generated.finishReason, 'abort')
  t.deepEqual(generated.tokens, [])
})

test('concurrent generations each get their own tokens', async (t) => {
  const greedy = { maxTokens: 32, ignoreEos: true, temperature: 0 }
  const [a, b] = await Promise.all([model.generate(prompt, greedy), model.generate(ref.greedy.text, greedy)])
  t.deepEqual(a?.tokens, ref.greedy.tokens)
  t.deepEqual(b?.tokens, ref.greedy.tokens)
})

test('dispose ends a running generation with finishReason abort', async (t) => {
  const own = await loadModel(modelDir('llama-gqa-tied'))
  const stream = own.stream(prompt, LONG)
  let seen = 0
  for await (const _ of stream) {
    if (++seen === 3) await own.dispose()
  }
  const result = await stream.result
  t.is(result.finishReason, 'abort')
  t.true(result.usage.completionTokens < LONG.maxTokens)
})
