// Every kind of bad input gets a TallowError with its own code; panics never take the process down.
import test, { type ExecutionContext } from 'ava'
import { rmSync, truncateSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { availableDevices, loadModel, TallowError, type GenerateOptions, type Model } from '../src'
import { toTallowError } from '../src/errors'
import { callNativeAsync, native } from '../src/native'
import { brokenCopy, config, modelDir, reference } from './helpers'

const ref = reference('llama-gqa-tied')
let model: Model

test.before(async () => {
  model = await loadModel(modelDir('llama-gqa-tied'))
})

test.after.always(async () => {
  await model.dispose()
})

/** Asserts that loading a copy of llama-gqa-tied changed by `edit` fails with `code`. */
async function loadFails(
  t: ExecutionContext,
  edit: (dir: string) => void,
  code: string,
): Promise<TallowError> {
  const { dir, cleanup } = brokenCopy('llama-gqa-tied', edit)
  t.teardown(cleanup)
  const error = await t.throwsAsync(loadModel(dir), { instanceOf: TallowError, code })
  t.log(error?.message)
  if (error === undefined) throw new Error('loadModel did not fail')
  t.false(error.message.startsWith('['), 'the code prefix is stripped from the message')
  return error
}

function editConfig(change: (config: Record<string, unknown>) => void): (dir: string) => void {
  return (dir) => {
    const cfg: Record<string, unknown> = config(dir)
    change(cfg)
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg, null, 2))
  }
}

test('a missing model directory is MODEL_NOT_FOUND', async (t) => {
  await t.throwsAsync(loadModel(join(modelDir('llama-gqa-tied'), 'no-such-model')), {
    instanceOf: TallowError,
    code: 'MODEL_NOT_FOUND',
  })
})

test('a missing config.json is INVALID_CONFIG', async (t) => {
  await loadFails(t, (dir) => rmSync(join(dir, 'config.json')), 'INVALID_CONFIG')
})

test('a garbled config.json is INVALID_CONFIG', async (t) => {
  await loadFails(t, (dir) => writeFileSync(join(dir, 'config.json'), '{"architectures": ["Llama'), 'INVALID_CONFIG')
})

test('a missing tokenizer.json is TOKENIZER_NOT_FOUND', async (t) => {
  await loadFails(t, (dir) => rmSync(join(dir, 'tokenizer.json')), 'TOKENIZER_NOT_FOUND')
})

test('a garbled tokenizer.json is INVALID_TOKENIZER', async (t) => {
  await loadFails(t, (dir) => writeFileSync(join(dir, 'tokenizer.json'), '{"model": 42}'), 'INVALID_TOKENIZER')
})

test('an unknown architecture is UNSUPPORTED_ARCHITECTURE, listing the supported ones', async (t) => {
  const error = await loadFails(
    t,
    editConfig((cfg) => {
      cfg.architectures = ['FrobnicatorForCausalLM']
    }),
    'UNSUPPORTED_ARCHITECTURE',
  )
  t.true(error.message.includes('FrobnicatorForCausalLM'))
  t.true(error.message.includes('LlamaForCausalLM'))
})

test('an unsupported config value is UNSUPPORTED_CONFIG, naming the field and the value', async (t) => {
  const error = await loadFails(
    t,
    editConfig((cfg) => {
      cfg.rope_parameters = { rope_type: 'frobnicated', rope_theta: 10000 }
    }),
    'UNSUPPORTED_CONFIG',
  )
  t.true(error.message.includes("rope_parameters.rope_type = 'frobnicated'"), error.message)
})

test('a required field missing from config.json is INVALID_CONFIG naming it', async (t) => {
  const error = await loadFails(
    t,
    editConfig((cfg) => {
      delete cfg.num_attention_heads
    }),
    'INVALID_CONFIG',
  )
  t.true(error.message.includes('num_attention_heads'), error.message)
})

test('a layer the checkpoint lacks is TENSOR_MISSING', async (t) => {
  const layers = config(modelDir('llama-gqa-tied')).num_hidden_layers
  await loadFails(
    t,
    editConfig((cfg) => {
      cfg.num_hidden_layers = layers + 1
    }),
    'TENSOR_MISSING',
  )
})

test('a tensor whose shape disagrees with config.json is TENSOR_SHAPE_MISMATCH', async (t) => {
  const size = config(modelDir('llama-gqa-tied')).intermediate_size
  await loadFails(
    t,
    editConfig((cfg) => {
      cfg.intermediate_size = size + 32
    }),
    'TENSOR_SHAPE_MISMATCH',
  )
})

test('a truncated weights file is INVALID_MODEL_FILE', async (t) => {
  await loadFails(
    t,
    (dir) => {
      const file = join(dir, 'model.safetensors')
      truncateSync(file, Math.floor(statSync(file).size / 2))
    },
    'INVALID_MODEL_FILE',
  )
})

test('a prompt longer than the context is CONTEXT_OVERFLOW', async (t) => {
  const small = await loadModel(modelDir('llama3-rope-headdim'))
  t.teardown(() => small.dispose())
  t.is(small.info.contextLength, 1024)
  const prompt = Array.from({ length: 1100 }, (_, i) => 2 + (i % 500))
  await t.throwsAsync(small.generate(prompt, { maxTokens: 4 }), { instanceOf: TallowError, code: 'CONTEXT_OVERFLOW' })
  await t.throwsAsync(small.evaluate(prompt), { instanceOf: TallowError, code: 'CONTEXT_OVERFLOW' })
  // Found by the engine, so a stream reports it through both its iteration and its result.
  const stream = small.stream(prompt, { maxTokens: 4 })
  const thrown = await t.throwsAsync(
    async () => {
      for await (const _ of stream) t.fail('no token expected')
    },
    { instanceOf: TallowError, code: 'CONTEXT_OVERFLOW' },
  )
  t.is(await t.throwsAsync(stream.result), thrown)
})

test('generation stops when prompt and output fill the context', async (t) => {
  const small = await loadModel(modelDir('llama3-rope-headdim'))
  t.teardown(() => small.dispose())
  const context = small.info.contextLength
  const filler = (length: number): number[] => Array.from({ length }, (_, i) => 2 + (i % 500))
  const result = await small.generate(filler(context - 3), { maxTokens: 10, ignoreEos: true, temperature: 0 })
  t.is(result.finishReason, 'length')
  t.is(result.usage.promptTokens + result.usage.completionTokens, context)
  // A prompt that fills the context can be evaluated but leaves no room to generate.
  t.is((await small.evaluate(filler(context))).length, small.info.vocabSize)
  await t.throwsAsync(small.generate(filler(context), { maxTokens: 1 }), { instanceOf: TallowError, code: 'CONTEXT_OVERFLOW' })
})

const badOptions: [string, GenerateOptions][] = [
  ['maxTokens', { maxTokens: -1 }],
  ['maxTokens', { maxTokens: 2.5 }],
  ['temperature', { temperature: -1 }],
  ['temperature', { temperature: Number.NaN }],
  ['topK', { topK: -1 }],
  ['topK', { topK: 1.5 }],
  ['topP', { topP: 0 }],
  ['topP', { topP: 1.5 }],
  ['seed', { seed: 1.5 }],
  ['seed', { seed: -1 }],
  ['stop', { stop: [''] }],
  ['stop', { stop: 'end' as unknown as string[] }],
  ['ignoreEos', { ignoreEos: 'yes' as unknown as boolean }],
  ['signal', { signal: {} as AbortSignal }],
  ['max_tokens', { max_tokens: 5 } as GenerateOptions],
]

for (const [name, options] of badOptions) {
  test(`${inspect(options)} is INVALID_OPTIONS naming ${name}`, async (t) => {
    const error = await t.throwsAsync(model.generate(ref.greedy.ids, options), {
      instanceOf: TallowError,
      code: 'INVALID_OPTIONS',
    })
    t.true(error?.message.includes(name), error?.message)
    t.throws(() => model.stream(ref.greedy.ids, options), { instanceOf: TallowError, code: 'INVALID_OPTIONS' })
  })
}

test('bad token ids are INVALID_PROMPT', async (t) => {
  const vocab = model.info.vocabSize
  for (const prompt of [[2, vocab], [2, -1], [2, 1.5], []]) {
    await t.throwsAsync(model.generate(prompt, { maxTokens: 2 }), { instanceOf: TallowError, code: 'INVALID_PROMPT' })
  }
  await t.throwsAsync(model.evaluate([2, vocab]), { instanceOf: TallowError, code: 'INVALID_PROMPT' })
  await t.throwsAsync(model.evaluate([]), { instanceOf: TallowError, code: 'INVALID_PROMPT' })
  t.throws(() => model.detokenize([vocab + 1000]), { instanceOf: TallowError, code: 'INVALID_PROMPT' })
  t.throws(() => model.detokenize([-3]), { instanceOf: TallowError, code: 'INVALID_PROMPT' })
})

test('a device this build lacks is UNSUPPORTED_DEVICE, naming the available ones', async (t) => {
  const available = availableDevices()
  t.true(available.includes('cpu'))
  // No build has both CUDA and Metal, so one of them is always missing.
  const missing = (['cuda', 'metal'] as const).find((d) => !available.includes(d))
  if (missing === undefined) throw new Error(`both cuda and metal available: ${available.join(', ')}`)
  const error = await t.throwsAsync(loadModel(modelDir('llama-gqa-tied'), { device: missing }), {
    instanceOf: TallowError,
    code: 'UNSUPPORTED_DEVICE',
  })
  t.true(error?.message.includes('cpu'), error?.message)
})

test('bad load options are INVALID_OPTIONS', async (t) => {
  for (const threads of [0, -2, 1.5]) {
    await t.throwsAsync(loadModel(modelDir('llama-gqa-tied'), { threads }), {
      instanceOf: TallowError,
      code: 'INVALID_OPTIONS',
    })
  }
})

test('a disposed model is MODEL_DISPOSED everywhere, and dispose is idempotent', async (t) => {
  const own = await loadModel(modelDir('llama-gqa-tied'))
  t.false(own.disposed)
  await own.dispose()
  await own.dispose()
  t.true(own.disposed)
  const disposed = { instanceOf: TallowError, code: 'MODEL_DISPOSED' }
  await t.throwsAsync(own.generate(ref.greedy.ids), disposed)
  await t.throwsAsync(own.evaluate(ref.greedy.ids), disposed)
  t.throws(() => own.stream(ref.greedy.ids), disposed)
  t.throws(() => own.tokenize('hello'), disposed)
  t.throws(() => own.detokenize([2, 3]), disposed)
  t.is(own.info.architecture, 'LlamaForCausalLM')
})

test('native errors without a code become INTERNAL', (t) => {
  const error = toTallowError(new Error('something odd'))
  t.is(error.code, 'INTERNAL')
  t.true(error.cause instanceof Error)
  const coded = toTallowError(new Error('[IO_ERROR] disk on fire'))
  t.is(coded.code, 'IO_ERROR')
  t.is(coded.message, 'disk on fire')
})

for (const where of ['sync', 'thread']) {
  test(`a panic (${where}) is an INTERNAL error and the process lives on`, async (t) => {
    await t.throwsAsync(
      callNativeAsync(() => Promise.resolve(native().debugPanic(where))),
      { instanceOf: TallowError, code: 'INTERNAL' },
    )
    // Still alive, and the engine still works.
    const result = await model.generate(ref.greedy.ids, { maxTokens: 8, ignoreEos: true, temperature: 0 })
    t.deepEqual(result.tokens, ref.greedy.tokens.slice(0, 8))
  })
}
