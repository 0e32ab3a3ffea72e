// The JS thread never waits on compute: timers keep firing while the engine generates.
import test from 'ava'
import { loadModel } from '../src'
import { modelDir, reference } from './helpers'

test('the event loop keeps running during a long generation', async (t) => {
  const model = await loadModel(modelDir('llama-gqa-tied'))
  t.teardown(() => model.dispose())
  t.is(model.info.contextLength, 4096)
  const prompt = reference('llama-gqa-tied').greedy.ids

  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  const started = performance.now()
  try {
    const result = await model.generate(prompt, { maxTokens: 2000, ignoreEos: true, temperature: 0 })
    t.is(result.finishReason, 'length')
    t.is(result.usage.completionTokens, 2000)
  } finally {
    clearInterval(timer)
  }
  const elapsed = performance.now() - started
  t.log(`${ticks} ticks of a 1 ms interval in ${elapsed.toFixed(0)} ms (${(2000 / (elapsed / 1000)).toFixed(0)} tokens/s)`)
  // A JS thread blocked on compute would see at most a couple of ticks.
  t.true(ticks > 20, `only ${ticks} ticks in ${elapsed.toFixed(0)} ms`)
})
