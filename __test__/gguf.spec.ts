// GGUF files through the SDK: what a loaded file reports about itself, generation that agrees with
// llama.cpp on the same file (references recorded by scripts/make_gguf_fixtures.py), in-situ
// quantization of a safetensors checkpoint, and the typed errors of files tallow cannot run.
import test from 'ava'
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadModel, TallowError } from '../src'
import { maxAbsDiff, REPO_ROOT } from './helpers'

const GGUF_DIR = join(REPO_ROOT, 'fixtures', 'gguf', 'models')
const MALFORMED_DIR = join(REPO_ROOT, 'fixtures', 'gguf', 'malformed')

/** fixtures/gguf/models/<name>.json: llama.cpp's outputs on <name>.gguf. */
interface GgufReference {
  file: string
  type: string
  gguf: {
    size_bytes: number
    architecture: string
    'general.name': string
    'general.file_type': number
    tensor_type_counts: Record<string, number>
  }
  prompts?: { ids: number[]; last_logits: number[] }[]
  greedy: { ids: number[]; tokens: number[] }
}

const REFERENCES: readonly GgufReference[] = readdirSync(GGUF_DIR)
  .filter((name) => name.endsWith('.json'))
  .sort()
  .map((name) => JSON.parse(readFileSync(join(GGUF_DIR, name), 'utf8')) as GgufReference)

// As in crates/tallow-core/tests/gguf_reference.rs: F32 agrees to float noise; types that round
// activations (F16, BF16, Q8_0) occasionally land on the other side of a rounding boundary.
const TOLERANCE = { F32: 1e-4, rounded: 1e-1 }

for (const ref of REFERENCES.filter((r) => r.prompts !== undefined)) {
  test(`${ref.file}: info, logits and greedy tokens agree with llama.cpp`, async (t) => {
    const model = await loadModel(join(GGUF_DIR, ref.file))
    try {
      const { info } = model
      t.is(info.format, 'gguf')
      t.is(info.fileSize, ref.gguf.size_bytes)
      t.deepEqual({ ...info.tensorTypes }, ref.gguf.tensor_type_counts)
      t.is(info.metadata['general.architecture'], ref.gguf.architecture)
      t.is(info.metadata['general.name'], ref.gguf['general.name'])
      t.is(info.metadata['general.file_type'], ref.gguf['general.file_type'])
      t.is(info.quantization, ref.type)
      t.is(info.device, 'cpu')

      const tolerance = ref.type === 'F32' ? TOLERANCE.F32 : TOLERANCE.rounded
      for (const prompt of ref.prompts ?? []) {
        const logits = await model.evaluate(prompt.ids)
        t.true(maxAbsDiff(logits, prompt.last_logits) <= tolerance)
      }
      const result = await model.generate(ref.greedy.ids, { maxTokens: 32, temperature: 0, ignoreEos: true })
      t.deepEqual(result.tokens, ref.greedy.tokens)
    } finally {
      await model.dispose()
    }
  })
}

test('a GGUF file brings its own tokenizer: text in, text out', async (t) => {
  const model = await loadModel(join(GGUF_DIR, 'qwen2-bias-tied-Q8_0.gguf'))
  try {
    const text = 'The quick brown fox jumps over the lazy dog.'
    const ids = model.tokenize(text, { addSpecialTokens: false })
    t.true(ids.length > 0)
    t.is(model.detokenize(ids), text)
    const { text: out, usage } = await model.generate(text, { maxTokens: 8, temperature: 0, ignoreEos: true })
    t.is(typeof out, 'string')
    t.is(usage.completionTokens, 8)
  } finally {
    await model.dispose()
  }
})

test('logprobs and responseFormat are UNSUPPORTED_CONFIG on GGUF models (no token bytes yet)', async (t) => {
  const model = await loadModel(join(GGUF_DIR, 'qwen2-bias-tied-Q8_0.gguf'))
  try {
    for (const options of [{ logprobs: true }, { responseFormat: { type: 'json_object' as const } }]) {
      const error = await t.throwsAsync(model.generate('Hi', { maxTokens: 4, ...options }), {
        instanceOf: TallowError,
      })
      t.is(error?.code, 'UNSUPPORTED_CONFIG')
      t.regex(error?.message ?? '', /GGUF file do not support them yet/)
    }
  } finally {
    await model.dispose()
  }
})

test('quantize at load: a safetensors checkpoint runs in Q4_K and Q8_0', async (t) => {
  const dir = join(GGUF_DIR, 'llama-256-hf')
  for (const [quantize, type] of [
    ['q4_k', 'Q4_K'],
    ['q8_0', 'Q8_0'],
  ] as const) {
    const model = await loadModel(dir, { quantize })
    try {
      t.is(model.info.format, 'safetensors')
      t.is(model.info.quantization, type)
      // Every matrix is quantized; the norms stay f32.
      t.deepEqual(Object.keys(model.info.tensorTypes).sort(), ['F32', type])
      const { tokens } = await model.generate('Hello', { maxTokens: 4, temperature: 0, ignoreEos: true })
      t.is(tokens.length, 4)
    } finally {
      await model.dispose()
    }
  }
})

test('quantize: unknown types, non-strings and GGUF files are INVALID_OPTIONS', async (t) => {
  const dir = join(GGUF_DIR, 'llama-256-hf')
  const bad = async (path: string, options: object, pattern: RegExp) => {
    const error = await t.throwsAsync(loadModel(path, options as never), { instanceOf: TallowError })
    t.is(error?.code, 'INVALID_OPTIONS')
    t.regex(error?.message ?? '', pattern)
  }
  await bad(dir, { quantize: 'q9_k' }, /'q9_k' is not a supported type .*q4_k/)
  await bad(dir, { quantize: 8 }, /quantize must be a quantization type name, got 8/)
  await bad(join(GGUF_DIR, 'llama-gqa-tied-Q8_0.gguf'), { quantize: 'q4_0' }, /GGUF file, already in its own quantization/)
})

test('malformed GGUF files are INVALID_MODEL_FILE naming the file and the defect', async (t) => {
  const manifest = JSON.parse(readFileSync(join(MALFORMED_DIR, 'manifest.json'), 'utf8')) as {
    malformed: { file: string; message: string }[]
  }
  t.true(manifest.malformed.length >= 20)
  for (const { file, message } of manifest.malformed) {
    const path = join(MALFORMED_DIR, file)
    const error = await t.throwsAsync(loadModel(path), { instanceOf: TallowError })
    t.is(error?.code, 'INVALID_MODEL_FILE', file)
    t.true(error?.message.includes(message), `${file}: ${error?.message}`)
    t.true(error?.message.includes(file), `${file}: the message names the file`)
  }
})

test('a tensor type tallow cannot run is UNSUPPORTED_TENSOR_TYPE naming the type', async (t) => {
  // Re-label one f32 norm as I32 (same 4-byte elements, so the file stays well-formed): the
  // type id is the u32 after the tensor's name, n_dims (u32) and its dims (u64 each).
  const dir = mkdtempSync(join(tmpdir(), 'tallow-gguf-'))
  try {
    const path = join(dir, 'model.gguf')
    copyFileSync(join(GGUF_DIR, 'llama-gqa-tied-F32.gguf'), path)
    const bytes = readFileSync(path)
    const name = Buffer.from('blk.0.attn_norm.weight')
    const at = bytes.indexOf(name) + name.length
    const nDims = bytes.readUInt32LE(at)
    t.is(nDims, 1)
    const typeAt = at + 4 + 8 * nDims
    t.is(bytes.readUInt32LE(typeAt), 0) // F32
    bytes.writeUInt32LE(26, typeAt) // I32
    writeFileSync(path, bytes)
    const error = await t.throwsAsync(loadModel(path), { instanceOf: TallowError })
    t.is(error?.code, 'UNSUPPORTED_TENSOR_TYPE')
    t.regex(error?.message ?? '', /blk\.0\.attn_norm\.weight.*I32 is not supported/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
