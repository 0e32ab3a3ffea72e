// Structured output: generation constrained to a JSON Schema, a regex or a Lark grammar on the
// fixture models, whose unconstrained output is noise, so the constraint is what makes it valid.
// Every output is checked with an independent validator (ajv, with ajv-formats for `format`).
import test from 'ava'
import Ajv from 'ajv'
import addFormats from 'ajv-formats'
import { loadModel, parseJson, TallowError, type JsonSchema, type Model } from '../src'
import { modelDir } from './helpers'

const ajv = new Ajv({ strict: false })
addFormats(ajv)

const MODELS = ['llama-gqa-tied', 'qwen3-qknorm'] as const
const models = new Map<string, Model>()

test.before(async () => {
  for (const name of MODELS) models.set(name, await loadModel(modelDir(name)))
})

test.after.always(async () => {
  for (const m of models.values()) await m.dispose()
})

function get(name: string): Model {
  const m = models.get(name)
  if (m === undefined) throw new Error(`${name} is not loaded`)
  return m
}

const shortString = { type: 'string', maxLength: 12 }

const SCHEMAS: Record<string, JsonSchema> = {
  'flat object, required fields': {
    type: 'object',
    properties: { name: shortString, age: { type: 'integer', minimum: 0, maximum: 150 } },
    required: ['name', 'age'],
    additionalProperties: false,
  },
  'enum and const': {
    type: 'object',
    properties: {
      color: { enum: ['red', 'green', 'blue'] },
      kind: { const: 'paint' },
      size: { enum: [1, 2, 3, null] },
    },
    required: ['color', 'kind', 'size'],
    additionalProperties: false,
  },
  'nested objects': {
    type: 'object',
    properties: {
      user: {
        type: 'object',
        properties: {
          id: { type: 'integer', minimum: 1, maximum: 9999 },
          address: {
            type: 'object',
            properties: { city: shortString, zip: { type: 'string', pattern: '^[0-9]{5}$' } },
            required: ['city', 'zip'],
            additionalProperties: false,
          },
        },
        required: ['id', 'address'],
        additionalProperties: false,
      },
    },
    required: ['user'],
    additionalProperties: false,
  },
  'array with bounds': {
    type: 'object',
    properties: {
      scores: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 100 }, minItems: 2, maxItems: 4 },
    },
    required: ['scores'],
    additionalProperties: false,
  },
  'top-level array of objects': {
    type: 'array',
    items: {
      type: 'object',
      properties: { k: { enum: ['a', 'b'] }, v: { type: 'boolean' } },
      required: ['k', 'v'],
      additionalProperties: false,
    },
    minItems: 1,
    maxItems: 3,
  },
  'optional fields': {
    type: 'object',
    properties: {
      title: shortString,
      subtitle: shortString,
      pages: { type: 'integer', minimum: 1, maximum: 999 },
    },
    required: ['title'],
    additionalProperties: false,
  },
  'string formats': {
    type: 'object',
    properties: {
      day: { type: 'string', format: 'date' },
      id: { type: 'string', format: 'uuid' },
      ip: { type: 'string', format: 'ipv4' },
    },
    required: ['day', 'id', 'ip'],
    additionalProperties: false,
  },
  // (Not 'email': llguidance accepts single-label domains, valid under RFC 5321, that ajv rejects.)
  'date-time and time': {
    type: 'object',
    properties: {
      at: { type: 'string', format: 'date-time' },
      alarm: { type: 'string', format: 'time' },
    },
    required: ['at', 'alarm'],
    additionalProperties: false,
  },
  'numbers with ranges': {
    type: 'object',
    properties: {
      ratio: { type: 'number', minimum: 0, maximum: 1 },
      temperature: { type: 'number', minimum: -50, maximum: 60 },
      count: { type: 'integer', minimum: 10, maximum: 20 },
    },
    required: ['ratio', 'temperature', 'count'],
    additionalProperties: false,
  },
  'anyOf and nullable': {
    type: 'object',
    properties: {
      value: { anyOf: [{ type: 'integer', minimum: 0, maximum: 9 }, { type: 'string', maxLength: 4 }] },
      note: { type: ['string', 'null'], maxLength: 8 },
    },
    required: ['value', 'note'],
    additionalProperties: false,
  },
  'pattern and string lengths': {
    type: 'object',
    properties: {
      code: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{2}$' },
      tag: { type: 'string', minLength: 2, maxLength: 5 },
    },
    required: ['code', 'tag'],
    additionalProperties: false,
  },
  'definitions and $ref': {
    $defs: {
      point: {
        type: 'object',
        properties: { x: { type: 'integer', minimum: -9, maximum: 9 }, y: { type: 'integer', minimum: -9, maximum: 9 } },
        required: ['x', 'y'],
        additionalProperties: false,
      },
    },
    type: 'object',
    properties: { from: { $ref: '#/$defs/point' }, to: { $ref: '#/$defs/point' } },
    required: ['from', 'to'],
    additionalProperties: false,
  },
}

const PROMPT = 'Answer in JSON:'

for (const [title, schema] of Object.entries(SCHEMAS)) {
  test(`json_schema: ${title}`, async (t) => {
    const validate = ajv.compile(schema)
    for (const name of MODELS) {
      const model = get(name)
      // Unconstrained, the fixture models write noise that is not valid here.
      const free = await model.generate(PROMPT, { temperature: 0, maxTokens: 40 })
      let freeValid = false
      try {
        freeValid = validate(JSON.parse(free.text))
      } catch {
        freeValid = false
      }
      t.false(freeValid, `${name}: the unconstrained output already fits`)
      // Constrained, greedy and sampled with several seeds: always valid. (Greedy decoding gets a
      // repetition penalty: a random model's argmax would otherwise repeat one digit forever
      // where a number's precision is unbounded.)
      for (const sampling of [
        { temperature: 0, repetitionPenalty: 1.5 },
        { temperature: 1, seed: 1 },
        { temperature: 1.3, seed: 2 },
      ]) {
        const result = await model.generate(PROMPT, {
          ...sampling,
          maxTokens: 400,
          responseFormat: { type: 'json_schema', schema },
        })
        t.is(result.finishReason, 'stop', `${name} ${JSON.stringify(sampling)}: ${result.text}`)
        const value = parseJson(result)
        t.true(validate(value), `${name} ${JSON.stringify(sampling)}: ${result.text} ${ajv.errorsText(validate.errors)}`)
      }
    }
  })
}

test('the OpenAI form of json_schema and json_object', async (t) => {
  const model = get('llama-gqa-tied')
  const schema = SCHEMAS['enum and const'] ?? {}
  const nested = await model.generate(PROMPT, {
    temperature: 0.8,
    seed: 4,
    maxTokens: 200,
    responseFormat: { type: 'json_schema', json_schema: { name: 'paint', schema, strict: true } },
  })
  t.true(ajv.validate(schema, parseJson(nested)), nested.text)
  const object = await model.generate(PROMPT, { temperature: 0.8, seed: 4, maxTokens: 300, responseFormat: { type: 'json_object' } })
  if (object.finishReason === 'stop') {
    const value = parseJson(object)
    t.true(typeof value === 'object' && value !== null && !Array.isArray(value), object.text)
  } else {
    // An unbounded object may run past maxTokens; what there is is still a JSON prefix.
    t.is(object.finishReason, 'length')
    t.true(object.text.startsWith('{'))
  }
})

test('parseJson gives a typed value, and INVALID_OUTPUT for text cut short', async (t) => {
  const model = get('llama-gqa-tied')
  const schema = SCHEMAS['flat object, required fields'] ?? {}
  const result = await model.generate(PROMPT, { temperature: 0, maxTokens: 200, responseFormat: { type: 'json_schema', schema } })
  const person = parseJson<{ name: string; age: number }>(result)
  t.is(typeof person.name, 'string')
  t.true(Number.isInteger(person.age))
  const short = await model.generate(PROMPT, { temperature: 0, maxTokens: 3, responseFormat: { type: 'json_schema', schema } })
  t.is(short.finishReason, 'length')
  const error = t.throws(() => parseJson<unknown>(short), { instanceOf: TallowError, code: 'INVALID_OUTPUT' })
  t.regex(error?.message ?? '', /maxTokens/)
})

test('regex: the output matches the whole pattern', async (t) => {
  const pattern = '(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) (yes|no)'
  for (const name of MODELS) {
    for (const seed of [1, 2, 3]) {
      const r = await get(name).generate('Date:', { temperature: 1, seed, maxTokens: 60, responseFormat: { type: 'regex', pattern } })
      t.regex(r.text, new RegExp(`^(?:${pattern})$`), `${name}: ${r.text}`)
      t.true(r.finishCause.type === 'constraint' || r.finishCause.type === 'eos', r.finishCause.type)
    }
  }
})

test('lark: the output is in the grammar’s language', async (t) => {
  const grammar = String.raw`
start: expr
expr: term (("+" | "-") term)*
term: NUMBER | "(" expr ")"
NUMBER: /[1-9][0-9]?/
`
  // An independent recognizer of the grammar's language (recursive descent).
  const inLanguage = (s: string): boolean => {
    let i = 0
    const term = (): boolean => {
      if (s[i] === '(') {
        i += 1
        if (!expr() || s[i] !== ')') return false
        i += 1
        return true
      }
      const number = /^[1-9][0-9]?/.exec(s.slice(i))
      if (number === null) return false
      i += number[0].length
      return true
    }
    const expr = (): boolean => {
      if (!term()) return false
      while (s[i] === '+' || s[i] === '-') {
        i += 1
        if (!term()) return false
      }
      return true
    }
    return expr() && i === s.length
  }
  let complete = 0
  for (const name of MODELS) {
    for (const seed of [1, 2, 3]) {
      const r = await get(name).generate('Sum:', { temperature: 1, seed, maxTokens: 80, responseFormat: { type: 'lark', grammar } })
      if (r.finishReason !== 'stop') continue // a long expression may run past maxTokens
      complete += 1
      t.true(inLanguage(r.text), r.text)
    }
  }
  t.true(complete >= 3, `only ${complete} of 6 expressions ended within maxTokens`)
})

test('a schema or grammar llguidance rejects is INVALID_OPTIONS', async (t) => {
  const model = get('llama-gqa-tied')
  await t.throwsAsync(model.generate(PROMPT, { maxTokens: 4, responseFormat: { type: 'lark', grammar: 'start: (' } }), {
    instanceOf: TallowError,
    code: 'INVALID_OPTIONS',
    message: /responseFormat \(lark\)/,
  })
  await t.throwsAsync(
    model.generate(PROMPT, { maxTokens: 4, responseFormat: { type: 'json_schema', schema: { type: 'integer', minimum: 5, maximum: 1 } } }),
    { instanceOf: TallowError, code: 'INVALID_OPTIONS', message: /responseFormat \(json_schema\)/ },
  )
  await t.throwsAsync(model.generate(PROMPT, { maxTokens: 4, responseFormat: { type: 'regex', pattern: '(' } }), {
    instanceOf: TallowError,
    code: 'INVALID_OPTIONS',
  })
})

test('chat takes responseFormat too', async (t) => {
  const model = get('qwen3-qknorm')
  const schema = SCHEMAS['array with bounds'] ?? {}
  const reply = await model.chat([{ role: 'user', content: 'Scores?' }], {
    temperature: 0.7,
    seed: 9,
    maxTokens: 200,
    responseFormat: { type: 'json_schema', schema },
  })
  t.true(ajv.validate(schema, JSON.parse(reply.message.content)), reply.message.content)
})
