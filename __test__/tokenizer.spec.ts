// Tokenization against Hugging Face tokenizers: four real tokenizers (Llama 2, Llama 3, Qwen 3,
// Gemma 3) over the text corpus in fixtures/text, every id and every decoded string exact.
import test from 'ava'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadModel, loadTokenizer, TallowError, type Tokenizer } from '../src/index'
import { native } from '../src/native'
import { modelDir } from './helpers'
import { CORPUS, jsString, TOKENIZER_NAMES, textFixture, tokenizerDir } from './tokenizer-fixtures'

const tokenizers = new Map<string, Promise<Tokenizer>>()
function tokenizer(name: string): Promise<Tokenizer> {
  let loaded = tokenizers.get(name)
  if (loaded === undefined) {
    loaded = loadTokenizer(tokenizerDir(name as (typeof TOKENIZER_NAMES)[number]))
    tokenizers.set(name, loaded)
  }
  return loaded
}

/** At most `limit` differences, each naming the corpus entry, so a failure says where. */
function firstDifferences(differences: string[], limit = 5): string[] {
  return differences.length > limit
    ? [...differences.slice(0, limit), `... and ${differences.length - limit} more`]
    : differences
}

test('the corpus covers what it promises', (t) => {
  t.true(CORPUS.length >= 200)
  const categories = new Set(CORPUS.map((e) => e.name.replace(/-\d+$/, '')))
  for (const c of ['prose', 'script', 'emoji', 'combining', 'spaces', 'whitespace', 'code', 'number', 'special', 'long', 'surrogate']) {
    t.true(categories.has(c), c)
  }
  // Lone-surrogate entries really hold lone surrogates, which UTF-8 cannot carry.
  const lone = CORPUS.filter((e) => e.js_utf16 !== undefined)
  t.true(lone.length > 0)
  for (const e of lone) t.not(jsString(e), e.text)
})

for (const name of TOKENIZER_NAMES) {
  const fixture = textFixture(name)

  for (const [v, variant] of fixture.variants.entries()) {
    const { addSpecialTokens, parseSpecial } = variant
    test(`${name}: ids match HF tokenizers (addSpecialTokens ${addSpecialTokens}, parseSpecial ${parseSpecial})`, async (t) => {
      const tok = await tokenizer(name)
      const differences: string[] = []
      for (const [i, entry] of CORPUS.entries()) {
        const expected = fixture.cases[i]?.ids[v]
        const got = tok.tokenize(jsString(entry), { addSpecialTokens, parseSpecial })
        if (JSON.stringify(got) !== JSON.stringify(expected)) {
          differences.push(`${entry.name} ${JSON.stringify(entry.text.slice(0, 40))}: ${JSON.stringify(got.slice(0, 12))} != ${JSON.stringify(expected?.slice(0, 12))}`)
        }
      }
      t.deepEqual(firstDifferences(differences), [])
    })

    test(`${name}: decoded text matches HF tokenizers (ids of addSpecialTokens ${addSpecialTokens}, parseSpecial ${parseSpecial})`, async (t) => {
      const tok = await tokenizer(name)
      const differences: string[] = []
      for (const [i, entry] of CORPUS.entries()) {
        const c = fixture.cases[i]
        const ids = c?.ids[v] ?? []
        const [skipped, kept] = c?.decoded[v] ?? []
        const gotSkipped = tok.detokenize(ids, { skipSpecialTokens: true })
        const gotKept = tok.detokenize(ids, { skipSpecialTokens: false })
        if (gotSkipped !== skipped) differences.push(`${entry.name} (skip): ${JSON.stringify(gotSkipped.slice(0, 40))} != ${JSON.stringify(skipped?.slice(0, 40))}`)
        if (gotKept !== kept) differences.push(`${entry.name} (keep): ${JSON.stringify(gotKept.slice(0, 40))} != ${JSON.stringify(kept?.slice(0, 40))}`)
      }
      t.deepEqual(firstDifferences(differences), [])
    })
  }

  test(`${name}: special-token text stays plain text unless parseSpecial`, async (t) => {
    const tok = await tokenizer(name)
    // The corpus entries made of one special-token string of this tokenizer.
    const fixtureCases = fixture.cases
    let checked = 0
    for (const [i, entry] of CORPUS.entries()) {
      if (!/^special-\d+$/.test(entry.name)) continue
      const parsed = tok.tokenize(entry.text, { addSpecialTokens: false, parseSpecial: true })
      const plain = tok.tokenize(entry.text, { addSpecialTokens: false })
      t.deepEqual(plain, fixtureCases[i]?.ids[3], entry.name)
      if (parsed.length === 1 && plain.length > 1) {
        // A control token when parsed, and never one of the plain pieces.
        t.false(plain.includes(parsed[0] ?? -1), entry.name)
        checked++
      }
    }
    t.true(checked >= 3, `${checked} special tokens of ${name} in the corpus`)
  })
}

test('lone surrogates are tokenized as U+FFFD', async (t) => {
  const tok = await tokenizer('llama3')
  // Node's conversion of a JS string to UTF-8, which napi-rs uses, replaces each one too: the
  // SDK's own replacement changes nothing the engine sees.
  const bare = await native().NativeTokenizer.load(tokenizerDir('llama3'))
  t.deepEqual(bare.tokenize('a\uD800b\uDFFF', false, false), bare.tokenize('a\uFFFDb\uFFFD', false, false))
  t.deepEqual(tok.tokenize('a\uD800b'), tok.tokenize('a\uFFFDb'))
  t.deepEqual(tok.tokenize('\uDC00\uD800'), tok.tokenize('\uFFFD\uFFFD'))
  // A valid pair is the character it encodes.
  t.deepEqual(tok.tokenize('\uD83D\uDE00'), tok.tokenize('😀'))
  t.notDeepEqual(tok.tokenize('\uD83D\uDE00'), tok.tokenize('\uFFFD\uFFFD'))
})

test('tokenize and detokenize check their options', async (t) => {
  const tok = await tokenizer('qwen3')
  t.throws(() => tok.tokenize('x', { parse_special: true } as never), { instanceOf: TallowError, code: 'INVALID_OPTIONS' })
  t.throws(() => tok.tokenize('x', { parseSpecial: 'yes' } as never), { instanceOf: TallowError, code: 'INVALID_OPTIONS' })
  t.throws(() => tok.tokenize(42 as never), { instanceOf: TallowError, code: 'INVALID_PROMPT' })
  t.throws(() => tok.detokenize([tok.vocabSize]), { instanceOf: TallowError, code: 'INVALID_PROMPT' })
  t.throws(() => tok.detokenize([1.5]), { instanceOf: TallowError, code: 'INVALID_PROMPT' })
  t.is(tok.vocabSize, 151669)
})

test('loadTokenizer takes a directory or a tokenizer.json, and says what is wrong', async (t) => {
  const fromFile = await loadTokenizer(join(tokenizerDir('llama2'), 'tokenizer.json'))
  t.deepEqual(fromFile.tokenize('Hello world'), (await tokenizer('llama2')).tokenize('Hello world'))
  const dir = mkdtempSync(join(tmpdir(), 'tallow-tokenizer-'))
  try {
    await t.throwsAsync(loadTokenizer(dir), { instanceOf: TallowError, code: 'TOKENIZER_NOT_FOUND' })
    await t.throwsAsync(loadTokenizer(join(dir, 'nope.json')), { instanceOf: TallowError, code: 'TOKENIZER_NOT_FOUND' })
    writeFileSync(join(dir, 'tokenizer.json'), '{"model": 42}')
    await t.throwsAsync(loadTokenizer(dir), { instanceOf: TallowError, code: 'INVALID_TOKENIZER' })
    await t.throwsAsync(loadTokenizer(''), { instanceOf: TallowError, code: 'TOKENIZER_NOT_FOUND' })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test("a model tokenizes as its tokenizer does; prompts' special-token text is plain text unless parseSpecial", async (t) => {
  const dir = modelDir('llama-gqa-tied')
  const model = await loadModel(dir)
  const tok = await loadTokenizer(dir)
  try {
    for (const entry of CORPUS) {
      for (const parseSpecial of [false, true]) {
        t.deepEqual(model.tokenize(jsString(entry), { parseSpecial }), tok.tokenize(jsString(entry), { parseSpecial }), entry.name)
      }
    }
    const text = 'hi <|begin_of_text|><|end_of_text|> there'
    const plain = model.tokenize(text)
    const parsed = model.tokenize(text, { parseSpecial: true })
    t.true(parsed.length < plain.length)
    t.deepEqual(model.tokenize(text, { parseSpecial: false }), plain)
    // The prompt of a generation is tokenized the same way.
    const options = { maxTokens: 1, temperature: 0 }
    t.is((await model.generate(text, options)).usage.promptTokens, plain.length)
    t.is((await model.generate(text, { ...options, parseSpecial: true })).usage.promptTokens, parsed.length)
    t.is((await model.generate('a\uD800b', options)).usage.promptTokens, model.tokenize('a\uFFFDb').length)
    t.throws(() => model.stream(text, { parseSpecial: 1 } as never), { instanceOf: TallowError, code: 'INVALID_OPTIONS' })
  } finally {
    await model.dispose()
  }
})
