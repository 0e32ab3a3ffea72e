// Streaming detokenization (the engine's incremental Detokenizer, fed one id at a time) against
// the full decode, on four real tokenizers: random id sequences (seeded) and sequences from the
// text corpus.
import test from 'ava'
import { TallowError } from '../src/index'
import { callNative, callNativeAsync, native, type NativeTokenizer } from '../src/native'
import {
  CORPUS,
  seededRandom,
  TOKENIZER_NAMES,
  tokenizerDir,
  vocabulary,
  type TokenizerName,
  type Vocabulary,
} from './tokenizer-fixtures'

const SEQUENCES = 200
const LENGTH = 64
// The check that nothing is held back decodes every prefix of a sequence: quadratic, so it
// looks at the first ids of the long corpus sequences only.
const PROMPTNESS_CHECKED = 200

const loaded = new Map<TokenizerName, Promise<NativeTokenizer>>()
function tokenizer(name: TokenizerName): Promise<NativeTokenizer> {
  let t = loaded.get(name)
  if (t === undefined) {
    t = callNativeAsync(() => native().NativeTokenizer.load(tokenizerDir(name)))
    loaded.set(name, t)
  }
  return t
}

const vocabularies = new Map<TokenizerName, Vocabulary>()
function vocabOf(name: TokenizerName): Vocabulary {
  let v = vocabularies.get(name)
  if (v === undefined) {
    v = vocabulary(name)
    vocabularies.set(name, v)
  }
  return v
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * What is wrong with the chunks of `ids` (an empty list if nothing):
 * - one chunk per id, then the flush;
 * - every chunk is well-formed text whose U+FFFDs are where the full decode has them;
 * - the chunks add up to the full decode;
 * - nothing is held back longer than needed: after each id (of the first PROMPTNESS_CHECKED),
 *   unless the text so far ends in an incomplete character (U+FFFD) or in a byte-fallback token
 *   (whose run the decoder turns into text as one group), the chunks so far are the decode of
 *   the ids so far.
 */
function streamProblems(tok: NativeTokenizer, vocab: Vocabulary, ids: number[], skip: boolean): string[] {
  const chunks = tok.decodeStream(ids, skip)
  const full = tok.detokenize(ids, skip)
  const problems: string[] = []
  if (chunks.length !== ids.length + 1) problems.push(`${chunks.length} chunks for ${ids.length} ids`)
  let offset = 0
  for (const [i, chunk] of chunks.entries()) {
    if (LONE_SURROGATE.test(chunk)) problems.push(`chunk ${i} is not well-formed: ${JSON.stringify(chunk)}`)
    for (let j = chunk.indexOf('\uFFFD'); j !== -1; j = chunk.indexOf('\uFFFD', j + 1)) {
      if (full[offset + j] !== '\uFFFD') problems.push(`chunk ${i} has a U+FFFD the full decode has not`)
    }
    offset += chunk.length
  }
  const streamed = chunks.join('')
  if (streamed !== full) problems.push(`streamed ${JSON.stringify(streamed)} != decoded ${JSON.stringify(full)}`)
  let sofar = ''
  let lastVisible: number | undefined
  for (const [i, id] of ids.slice(0, PROMPTNESS_CHECKED).entries()) {
    sofar += chunks[i] ?? ''
    if (!(skip && vocab.special.has(id))) lastVisible = id
    if (lastVisible !== undefined && vocab.byteFallback.has(lastVisible)) continue
    const decoded = tok.detokenize(ids.slice(0, i + 1), skip)
    if (decoded.endsWith('\uFFFD')) continue
    if (sofar !== decoded) {
      problems.push(`after id ${i} (${id}) streamed ${JSON.stringify(sofar)} but the ids so far decode to ${JSON.stringify(decoded)}`)
      break
    }
  }
  return problems.length > 0 ? [`ids ${JSON.stringify(ids)} (skipSpecialTokens ${skip}):`, ...problems] : []
}

/**
 * Random ids that stress the detokenizer: uniform over the vocabulary, and drawn more often
 * from special tokens, byte-fallback tokens and one-character tokens (single bytes of a
 * byte-level vocabulary), which make characters span tokens and byte runs invalid.
 */
function randomIds(vocab: Vocabulary, size: number, random: () => number, length: number): number[] {
  const pick = (pool: readonly number[]): number => pool[Math.floor(random() * pool.length)] ?? 0
  const special = [...vocab.special]
  const bytes = [...vocab.byteFallback]
  const ids: number[] = []
  for (let i = 0; i < length; i++) {
    const r = random()
    if (r < 0.35) ids.push(Math.floor(random() * size))
    else if (r < 0.45 && special.length > 0) ids.push(pick(special))
    else if (r < 0.75 && bytes.length > 0) ids.push(pick(bytes))
    else ids.push(pick(vocab.singleChar))
  }
  return ids
}

for (const [n, name] of TOKENIZER_NAMES.entries()) {
  test(`${name}: random id sequences stream as they decode`, async (t) => {
    const tok = await tokenizer(name)
    const vocab = vocabOf(name)
    const size = tok.vocabSize()
    t.is(size, Math.max(vocab.size, size))
    const random = seededRandom(1000 + n)
    const problems: string[] = []
    for (let s = 0; s < SEQUENCES && problems.length === 0; s++) {
      const ids = randomIds(vocab, size, random, LENGTH)
      for (const skip of [true, false]) problems.push(...streamProblems(tok, vocab, ids, skip))
    }
    t.deepEqual(problems, [])
  })

  test(`${name}: corpus text streams as it decodes`, async (t) => {
    const tok = await tokenizer(name)
    const vocab = vocabOf(name)
    const problems: string[] = []
    const encoded = CORPUS.map((e) => tok.tokenize(e.text, true, true))
    for (const [i, ids] of encoded.entries()) {
      // Each text, and each text followed by the next one (special tokens mid-stream).
      const next = encoded[(i + 1) % encoded.length] ?? []
      for (const sequence of [ids, [...ids, ...next]]) {
        for (const skip of [true, false]) problems.push(...streamProblems(tok, vocab, sequence, skip))
      }
      if (problems.length > 0) break
    }
    t.deepEqual(problems, [])
  })
}

test('llama2 (SentencePiece, legacy): the space of the first word is dropped, later ones are kept', async (t) => {
  const tok = await tokenizer('llama2')
  const ids = tok.tokenize('Hello world', true, false)
  t.deepEqual(tok.decodeStream(ids, true), ['', 'Hello', ' world', ''])
  t.deepEqual(tok.decodeStream(ids, false), ['<s>', ' Hello', ' world', ''])
  // After a special token, a word keeps its space, as in the full decode.
  const eos = tok.tokenize('</s>', false, true)
  t.is(eos.length, 1)
  const twice = [...tok.tokenize('a', false, false), ...eos, ...tok.tokenize('b', false, false)]
  t.is(tok.detokenize(twice, true), 'a b')
  t.deepEqual(tok.decodeStream(twice, true), ['a', '', ' b', ''])
  // A word that is only a space at the start of the stream.
  const spaced = tok.tokenize('  x', false, false)
  t.is(tok.decodeStream(spaced, true).join(''), tok.detokenize(spaced, true))
})

test('llama2: a character spelled in byte-fallback tokens comes out whole once its run ends', async (t) => {
  const tok = await tokenizer('llama2')
  const vocab = vocabOf('llama2')
  // A rare CJK character outside the vocabulary is spelled as three byte tokens.
  const ids = tok.tokenize('𠀀!', false, false)
  const bytes = ids.filter((id) => vocab.byteFallback.has(id))
  t.true(bytes.length >= 3, JSON.stringify(ids))
  const chunks = tok.decodeStream(ids, true)
  t.is(chunks.join(''), tok.detokenize(ids, true))
  t.false(chunks.some((c) => c.includes('\uFFFD')))
  t.true(chunks.some((c) => c.includes('𠀀')))
})

test('gemma3 (SentencePiece, no prefix space): every space is kept, the first included', async (t) => {
  const tok = await tokenizer('gemma3')
  const ids = tok.tokenize(' Hello world', false, false)
  t.deepEqual(tok.decodeStream(ids, true), [' Hello', ' world', ''])
  const bos = tok.tokenize('Hello', true, false)
  t.deepEqual(tok.decodeStream(bos, false), ['<bos>', 'Hello', ''])
})

test('decodeStream rejects ids outside the vocabulary', async (t) => {
  const tok = await tokenizer('qwen3')
  const error = t.throws(() => callNative(() => tok.decodeStream([1, tok.vocabSize()], true)))
  t.true(error instanceof TallowError && error.code === 'INVALID_PROMPT')
})
