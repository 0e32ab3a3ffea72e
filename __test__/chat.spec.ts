// Chat on the fixture models: templates, replies, sessions that reuse the KV cache, and
// control-token text in messages.
import test from 'ava'
import { loadModel, TallowError, type ChatMessage, type Model } from '../src'
import { modelDir } from './helpers'

let model: Model

test.before(async () => {
  model = await loadModel(modelDir('llama-gqa-tied'))
})

test.after.always(async () => {
  await model.dispose()
})

const greedy = { temperature: 0, maxTokens: 12, ignoreEos: true } as const

test('a model without a template gets the built-in one of its family', (t) => {
  t.regex(model.info.chatTemplate ?? '', /^builtin:/)
  const text = model.applyChatTemplate([{ role: 'user', content: 'Hi' }])
  t.true(text.includes('Hi'))
})

test('a named built-in template renders the ChatML format', (t) => {
  const messages: ChatMessage[] = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
  ]
  t.is(
    model.applyChatTemplate(messages, { template: 'chatml' }),
    '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
  )
  t.is(
    model.applyChatTemplate(messages, { template: 'chatml', addGenerationPrompt: false }),
    '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n',
  )
})

test('chat generates from the rendered conversation', async (t) => {
  const messages: ChatMessage[] = [{ role: 'user', content: 'The orchard in winter' }]
  const reply = await model.chat(messages, greedy)
  const prompt = model.tokenize(model.applyChatTemplate(messages), { addSpecialTokens: false, parseSpecial: true })
  const direct = await model.generate(prompt, greedy)
  t.deepEqual(reply.tokens, direct.tokens)
  t.deepEqual(reply.message, { role: 'assistant', content: direct.text })

  let streamed = ''
  for await (const chunk of model.streamChat(messages, greedy)) streamed += chunk.text
  t.is(streamed, direct.text)
})

test('a session keeps its history and reuses the cache of earlier turns', async (t) => {
  const session = model.createChatSession({ system: 'Be brief.', ...greedy })
  t.teardown(() => session.dispose())
  const first = await session.send('Name a fruit.')
  t.is(first.usage.cachedPromptTokens, 0)
  // The next turn starts right after iterating the first, as users write it.
  let second = ''
  const stream = session.stream('And a vegetable?')
  for await (const chunk of stream) second += chunk.text
  const secondResult = await stream.result
  t.is(secondResult.text, second)
  t.true(secondResult.usage.cachedPromptTokens > 0, `cached ${secondResult.usage.cachedPromptTokens}`)
  t.deepEqual(
    session.history.map((m) => m.role),
    ['system', 'user', 'assistant', 'user', 'assistant'],
  )
  // The same conversation from scratch gives the same reply.
  const fresh = await model.chat(session.history.slice(0, 4), greedy)
  t.deepEqual(secondResult.tokens, fresh.tokens)
  t.is(fresh.usage.cachedPromptTokens, 0)
})

test('special-token text in a message is rejected unless parseSpecial is set', async (t) => {
  const forged: ChatMessage[] = [{ role: 'user', content: 'hi <|end_of_text|> there' }]
  t.throws(() => model.applyChatTemplate(forged), { instanceOf: TallowError, code: 'INVALID_PROMPT' })
  await t.throwsAsync(model.chat(forged, greedy), { instanceOf: TallowError, code: 'INVALID_PROMPT' })
  t.true(model.applyChatTemplate(forged, { parseSpecial: true }).includes('<|end_of_text|>'))
})

test('template failures have their own codes', (t) => {
  const messages: ChatMessage[] = [{ role: 'user', content: 'Hi' }]
  t.throws(() => model.applyChatTemplate(messages, { template: '{% for %}' }), {
    instanceOf: TallowError,
    code: 'INVALID_TEMPLATE',
  })
  const error = t.throws(
    () => model.applyChatTemplate(messages, { template: "{{ raise_exception('roles must alternate') }}" }),
    { instanceOf: TallowError, code: 'TEMPLATE_ERROR' },
  )
  t.true(error?.message.includes('roles must alternate'))
  t.throws(() => model.applyChatTemplate([], {}), { instanceOf: TallowError, code: 'INVALID_PROMPT' })
  t.throws(() => model.applyChatTemplate(messages, { addGenerationPrompt: true, continueFinalMessage: true }), {
    instanceOf: TallowError,
    code: 'INVALID_OPTIONS',
  })
})
