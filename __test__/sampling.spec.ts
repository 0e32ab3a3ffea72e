// Sampling options through the SDK: validation, presets, seeds, what ends a generation,
// log-probabilities against the model's own logits, and beam search against transformers.
// (Each processor against transformers and the chi-square tests are Rust tests:
// crates/tallow-core/tests/sampling.rs.)
import test from 'ava'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadModel, PRESETS, TallowError, type GenerateOptions, type Model } from '../src'
import { brokenCopy, modelDir, reference, REPO_ROOT } from './helpers'

const ref = reference('llama-gqa-tied')
const prompt = ref.greedy.ids
const EOS = 1 // <|end_of_text|> in the fixture tokenizer

let model: Model

test.before(async () => {
  model = await loadModel(modelDir('llama-gqa-tied'))
})

test.after.always(async () => {
  await model.dispose()
})

test('every option outside its range is rejected, naming it', (t) => {
  const cases: [GenerateOptions, string][] = [
    [{ minP: 1.5 }, 'minP'],
    [{ minP: -0.1 }, 'minP'],
    [{ typicalP: 0 }, 'typicalP'],
    [{ repetitionPenalty: 0 }, 'repetitionPenalty'],
    [{ repetitionPenalty: Number.POSITIVE_INFINITY }, 'repetitionPenalty'],
    [{ frequencyPenalty: 2.5 }, 'frequencyPenalty'],
    [{ presencePenalty: -3 }, 'presencePenalty'],
    [{ penaltyWindow: -1 }, 'penaltyWindow'],
    [{ penaltyWindow: 1.5 }, 'penaltyWindow'],
    [{ logitBias: { 5: 101 } }, 'logitBias[5]'],
    [{ logitBias: { x: 1 } as unknown as Record<number, number> }, 'logitBias keys'],
    [{ stopTokenIds: [-1] }, 'stopTokenIds'],
    [{ logprobs: 'yes' as unknown as boolean }, 'logprobs'],
    [{ logprobs: true, topLogprobs: 21 }, 'topLogprobs'],
    [{ numBeams: 0 }, 'numBeams'],
    [{ numBeams: 2, lengthPenalty: Number.NaN }, 'lengthPenalty'],
    [{ numBeams: 2, earlyStopping: 'sometimes' as unknown as boolean }, 'earlyStopping'],
    [{ responseFormat: { type: 'yaml' } as unknown as GenerateOptions['responseFormat'] }, 'responseFormat.type'],
    [{ responseFormat: { type: 'regex', pattern: '' } }, 'responseFormat.pattern'],
    [{ temperature: -1 }, 'temperature'],
    [{ topP: 0 }, 'topP'],
  ]
  for (const [options, name] of cases) {
    const error = t.throws(() => model.stream(prompt, options), { instanceOf: TallowError, code: 'INVALID_OPTIONS' })
    t.true(error?.message.startsWith(name), `${JSON.stringify(options)}: ${error?.message}`)
  }
})

test('contradictory combinations are rejected, naming both options', (t) => {
  const cases: [GenerateOptions, RegExp][] = [
    [{ numBeams: 3, temperature: 0.7 }, /temperature .*beam search/],
    [{ numBeams: 3, topP: 0.9 }, /topP .*beam search/],
    [{ numBeams: 3, seed: 1 }, /seed .*beam search/],
    [{ numBeams: 3, stop: ['x'] }, /stop .*beam search.*stopTokenIds/],
    [{ numBeams: 3, logprobs: true }, /logprobs .*beam search/],
    [{ numBeams: 3, responseFormat: { type: 'json_object' } }, /responseFormat .*beam search/],
    [{ ...PRESETS.balanced, numBeams: 2 }, /beam search/],
    [{ lengthPenalty: 2 }, /lengthPenalty .*beam search/],
    [{ earlyStopping: true }, /earlyStopping .*beam search/],
    [{ topLogprobs: 3 }, /topLogprobs needs logprobs/],
    [{ ignoreEos: true, responseFormat: { type: 'json_object' } }, /ignoreEos .*responseFormat/],
  ]
  for (const [options, message] of cases) {
    const error = t.throws(() => model.stream(prompt, options), { instanceOf: TallowError, code: 'INVALID_OPTIONS' })
    t.regex(error?.message ?? '', message)
  }
  // Greedy beam search with the option it allows is fine.
  t.notThrows(() => model.stream(prompt, { numBeams: 2, temperature: 0, maxTokens: 1 }).cancel())
})

test('a token id past the vocabulary in logitBias or stopTokenIds is INVALID_OPTIONS', async (t) => {
  await t.throwsAsync(model.generate(prompt, { logitBias: { 512: 1 }, maxTokens: 2 }), {
    code: 'INVALID_OPTIONS',
    message: /logitBias names token 512/,
  })
  await t.throwsAsync(model.generate(prompt, { stopTokenIds: [9999], maxTokens: 2 }), {
    code: 'INVALID_OPTIONS',
    message: /stopTokenIds holds 9999/,
  })
})

test('presets are frozen plain objects that can be spread', async (t) => {
  for (const preset of Object.values(PRESETS)) {
    t.true(Object.isFrozen(preset))
    t.is(Object.getPrototypeOf(preset), Object.prototype)
  }
  const greedy = await model.generate(prompt, { ...PRESETS.greedy, maxTokens: 12, ignoreEos: true })
  t.deepEqual(greedy.tokens, ref.greedy.tokens.slice(0, 12))
  for (const preset of [PRESETS.balanced, PRESETS.creative]) {
    const a = await model.generate(prompt, { ...preset, maxTokens: 16, ignoreEos: true, seed: 5 })
    const b = await model.generate(prompt, { ...preset, maxTokens: 16, ignoreEos: true, seed: 5 })
    t.deepEqual(a.tokens, b.tokens)
  }
})

test('the same seed gives the same tokens with every processor on', async (t) => {
  const options: GenerateOptions = {
    maxTokens: 40,
    ignoreEos: true,
    temperature: 1.2,
    topK: 50,
    topP: 0.9,
    minP: 0.02,
    typicalP: 0.95,
    repetitionPenalty: 1.3,
    frequencyPenalty: 0.4,
    presencePenalty: 0.2,
    penaltyWindow: 16,
    logitBias: { 7: 2 },
  }
  const a = await model.generate(prompt, { ...options, seed: 11 })
  const b = await model.generate(prompt, { ...options, seed: 11 })
  const c = await model.generate(prompt, { ...options, seed: 12 })
  t.deepEqual(a.tokens, b.tokens)
  t.notDeepEqual(a.tokens, c.tokens)
})

test('logit bias and penalties change greedy decoding', async (t) => {
  const forced = await model.generate(prompt, { temperature: 0, maxTokens: 5, ignoreEos: true, logitBias: { 42: 100 } })
  t.deepEqual(forced.tokens, [42, 42, 42, 42, 42])
  const first = ref.greedy.tokens[0] ?? -1
  const banned = await model.generate(prompt, { temperature: 0, maxTokens: 1, logitBias: { [first]: -100 } })
  t.not(banned.tokens[0], first)
  // A strong presence penalty forbids repeating any prompt or generated token under greedy decoding.
  const fresh = await model.generate(prompt, { temperature: 0, maxTokens: 24, ignoreEos: true, presencePenalty: 2, repetitionPenalty: 100 })
  const seen = new Set(prompt)
  for (const id of fresh.tokens) {
    t.false(seen.has(id), `token ${id} repeated`)
    seen.add(id)
  }
})

test('finishCause says what ended the generation', async (t) => {
  const long = await model.generate(prompt, { temperature: 0, maxTokens: 6, ignoreEos: true })
  t.is(long.finishReason, 'length')
  t.deepEqual(long.finishCause, { type: 'max_tokens' })

  const eos = await model.generate(prompt, { temperature: 0, maxTokens: 6, logitBias: { [EOS]: 100 } })
  t.is(eos.finishReason, 'stop')
  t.deepEqual(eos.finishCause, { type: 'eos', tokenId: EOS })
  t.deepEqual(eos.tokens, [EOS])

  const ignored = await model.generate(prompt, { temperature: 0, maxTokens: 4, ignoreEos: true, logitBias: { [EOS]: 100 } })
  t.deepEqual(ignored.tokens, [EOS, EOS, EOS, EOS])
  t.deepEqual(ignored.finishCause, { type: 'max_tokens' })

  // A stop token ends generation even with ignoreEos; its text is not in the output.
  const third = ref.greedy.tokens[2] ?? -1
  const stopped = await model.generate(prompt, { temperature: 0, maxTokens: 16, ignoreEos: true, stopTokenIds: [third] })
  t.deepEqual(stopped.tokens, ref.greedy.tokens.slice(0, 3))
  t.deepEqual(stopped.finishCause, { type: 'stop_token', tokenId: third })
  t.is(stopped.text, model.detokenize(ref.greedy.tokens.slice(0, 2)))

  const full = model.detokenize(ref.greedy.tokens.slice(0, 12))
  const stop = full.slice(6, 9)
  const byString = await model.generate(prompt, { temperature: 0, maxTokens: 12, ignoreEos: true, stop: [stop] })
  t.deepEqual(byString.finishCause, { type: 'stop_string', stop })
  t.is(byString.text, full.slice(0, full.indexOf(stop)))
})

test('end-of-sequence ids come from generation_config.json and the tokenizer', async (t) => {
  const { dir, cleanup } = brokenCopy('llama-gqa-tied', (d) => {
    const file = join(d, 'generation_config.json')
    const cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
    writeFileSync(file, JSON.stringify({ ...cfg, eos_token_id: [7, 9] }))
  })
  t.teardown(cleanup)
  const copy = await loadModel(dir)
  t.teardown(() => copy.dispose())
  // generation_config.json's ids first, then the tokenizer's eos_token.
  t.deepEqual(copy.info.eosTokenIds, [7, 9, EOS])
  for (const id of [7, 9, EOS]) {
    const r = await copy.generate(prompt, { temperature: 0, maxTokens: 4, logitBias: { [id]: 100 } })
    t.deepEqual(r.finishCause, { type: 'eos', tokenId: id })
  }
})

/** log-softmax in float64. */
function logSoftmax(logits: Float32Array): number[] {
  let max = Number.NEGATIVE_INFINITY
  for (const l of logits) max = Math.max(max, l)
  let sum = 0
  for (const l of logits) sum += Math.exp(l - max)
  const logZ = max + Math.log(sum)
  return Array.from(logits, (l) => l - logZ)
}

test('logprobs are the model’s log-softmax, in the OpenAI shape', async (t) => {
  const n = 5
  const stream = model.stream(prompt, { temperature: 0.9, seed: 3, maxTokens: 8, ignoreEos: true, logprobs: true, topLogprobs: n })
  const chunks = []
  for await (const chunk of stream) chunks.push(chunk)
  const result = await stream.result
  t.is(result.logprobs?.content.length, result.tokens.length)
  t.deepEqual(
    result.logprobs?.content,
    chunks.map((c) => c.logprobs),
  )
  let worst = 0
  for (const [i, chunk] of chunks.entries()) {
    const lp = chunk.logprobs
    if (lp === undefined) throw new Error('no logprobs on a chunk')
    // The reference: the model's logits for the sequence so far, from a fresh forward pass.
    const expected = logSoftmax(await model.evaluate([...prompt, ...result.tokens.slice(0, i)]))
    worst = Math.max(worst, Math.abs(lp.logprob - (expected[chunk.tokenId] ?? Number.NaN)))
    const top = [...expected].sort((a, b) => b - a).slice(0, n)
    t.is(lp.top_logprobs.length, n)
    lp.top_logprobs.forEach((alt, k) => {
      worst = Math.max(worst, Math.abs(alt.logprob - (top[k] ?? Number.NaN)))
      t.is(Buffer.from(alt.bytes).toString('latin1').length, alt.bytes.length)
    })
    t.deepEqual(Object.keys(lp).sort(), ['bytes', 'logprob', 'token', 'top_logprobs'])
  }
  t.log(`max |Δlogprob| vs evaluate(): ${worst.toExponential(2)}`)
  t.true(worst < 1e-4, `max |Δ| ${worst}`)
  // The chosen tokens' bytes add up to the text (no special tokens among them here).
  const bytes = result.logprobs?.content.flatMap((c) => c.bytes) ?? []
  t.is(Buffer.from(bytes).toString('utf8'), result.text)
  // Not asked for: not there.
  const plain = await model.generate(prompt, { maxTokens: 2 })
  t.is(plain.logprobs, undefined)
})

interface BeamCase {
  model: string
  prompt: number[]
  numBeams: number
  lengthPenalty: number
  earlyStopping: boolean | 'never'
  maxTokens: number
  stopTokenIds: number[]
  tokens: number[]
  score: number
}

test('beam search returns transformers’ sequences', async (t) => {
  const fixture = JSON.parse(readFileSync(join(REPO_ROOT, 'fixtures', 'sampling', 'beam.json'), 'utf8')) as {
    cases: BeamCase[]
  }
  const models = new Map<string, Model>()
  t.teardown(async () => {
    for (const m of models.values()) await m.dispose()
  })
  for (const c of fixture.cases) {
    let m = models.get(c.model)
    if (m === undefined) {
      m = await loadModel(modelDir(c.model))
      models.set(c.model, m)
    }
    const result = await m.generate(c.prompt, {
      numBeams: c.numBeams,
      lengthPenalty: c.lengthPenalty,
      earlyStopping: c.earlyStopping,
      maxTokens: c.maxTokens,
      stopTokenIds: c.stopTokenIds,
    })
    t.deepEqual(result.tokens, c.tokens, `${c.model} ${JSON.stringify(c)}`)
    t.true(Math.abs((result.beamScore ?? Number.NaN) - c.score) < 1e-3)
  }
  t.log(`${fixture.cases.length} beam searches identical to transformers`)
})
