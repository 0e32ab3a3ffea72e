// Every fixture model against the transformers reference: tokenization, last-position and
// all-position logits, greedy decoding, and what the model reports about itself.
import test from 'ava'
import { resolve } from 'node:path'
import { loadModel, type Model } from '../src'
import {
  config,
  expectedContextLength,
  maxAbsDiff,
  MODEL_NAMES,
  modelDir,
  reference,
  safetensorsParameterCount,
  type ModelName,
} from './helpers'

// Compute is f32 on both sides (half-precision checkpoints are upcast by both), so only
// summation order differs.
const LOGITS_TOLERANCE = 1e-4

const DTYPES = { float32: 'f32', float16: 'f16', bfloat16: 'bf16' } as const

const models = new Map<ModelName, Model>()

test.before(async () => {
  for (const name of MODEL_NAMES) models.set(name, await loadModel(modelDir(name), { device: 'cpu' }))
})

test.after.always(async () => {
  for (const model of models.values()) await model.dispose()
})

function model(name: ModelName): Model {
  const loaded = models.get(name)
  if (loaded === undefined) throw new Error(`${name} was not loaded`)
  return loaded
}

for (const name of MODEL_NAMES) {
  const ref = reference(name)

  test(`${name}: tokenize matches the reference ids`, (t) => {
    for (const { text, ids } of [...ref.prompts, ref.all_positions, ref.greedy]) {
      t.deepEqual(model(name).tokenize(text), ids, text)
    }
  })

  test(`${name}: last-position logits match the reference`, async (t) => {
    for (const { text, ids, last_logits } of ref.prompts) {
      const logits = await model(name).evaluate(ids)
      t.is(logits.length, last_logits.length)
      const delta = maxAbsDiff(logits, last_logits)
      t.log(`${ids.length} tokens: max |Δ| = ${delta.toExponential(2)}`)
      t.true(delta <= LOGITS_TOLERANCE, `${JSON.stringify(text)}: max |Δ| ${delta}`)
    }
  })

  test(`${name}: all-position logits match the reference`, async (t) => {
    const { ids, logits: rows } = ref.all_positions
    const vocab = rows[0]?.length ?? 0
    const logits = await model(name).evaluate(ids, { allPositions: true })
    t.is(logits.length, ids.length * vocab)
    let worst = 0
    rows.forEach((row, position) => {
      worst = Math.max(worst, maxAbsDiff(logits, row, position * vocab))
    })
    t.log(`${ids.length} positions: max |Δ| = ${worst.toExponential(2)}`)
    t.true(worst <= LOGITS_TOLERANCE, `max |Δ| ${worst}`)
  })

  test(`${name}: greedy decoding reproduces the reference tokens`, async (t) => {
    const { text, ids } = ref.greedy
    const tokens = ref.greedy.tokens_generate ?? ref.greedy.tokens
    const options = { temperature: 0, ignoreEos: true, maxTokens: tokens.length }
    for (const prompt of [ids, text]) {
      const result = await model(name).generate(prompt, options)
      t.deepEqual(result.tokens, tokens, `prompt as ${typeof prompt === 'string' ? 'text' : 'ids'}`)
      t.is(result.finishReason, 'length')
      t.deepEqual(result.usage, { promptTokens: ids.length, cachedPromptTokens: 0, completionTokens: tokens.length })
      t.is(result.text, model(name).detokenize(tokens))
    }
  })

  test(`${name}: info describes the checkpoint`, (t) => {
    const dir = modelDir(name)
    const cfg = config(dir)
    const { info } = model(name)
    t.true(Object.isFrozen(info))
    t.true(Object.isFrozen(info.eosTokenIds))
    t.deepEqual(cfg.architectures, [info.architecture])
    t.is(info.format, 'safetensors')
    t.is(info.path, resolve(dir))
    t.is(info.dtype, DTYPES[ref.checkpoint_dtype])
    t.is(info.computeDtype, 'f32')
    t.is(info.vocabSize, cfg.vocab_size)
    t.is(info.vocabSize, ref.prompts[0]?.last_logits.length ?? Number.NaN)
    t.is(info.contextLength, expectedContextLength(cfg))
    t.is(info.bosTokenId, cfg.bos_token_id)
    t.deepEqual(info.eosTokenIds, [cfg.eos_token_id].flat())
    t.is(info.parameterCount, safetensorsParameterCount(dir))
    t.is(info.device, 'cpu')
    t.true(Number.isInteger(info.threads) && info.threads >= 1)
  })
}

test('threads and device auto are honoured', async (t) => {
  const model = await loadModel(modelDir('llama-gqa-tied'), { device: 'auto', threads: 1 })
  t.teardown(() => model.dispose())
  t.is(model.info.threads, 1)
  t.is(model.info.device, 'cpu')
  const ref = reference('llama-gqa-tied')
  const first = ref.prompts[0]
  if (first === undefined) throw new Error('reference has no prompts')
  const delta = maxAbsDiff(await model.evaluate(first.ids), first.last_logits)
  t.true(delta <= LOGITS_TOLERANCE, `max |Δ| ${delta} with one thread`)
})
