// tallow through its SDK (dist/index.js), as an application calls it: loadModel(file,
// { threads }); pp: evaluate() of the prompt ids (one forward pass over 512 tokens); tg: greedy
// generate() of 128 tokens from a one-token prompt with ignoreEos (128 single-token forward passes
// and samplings). Each is measured after a warm-up of the same kind, as llama-bench does.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { readJob, report, time, unavailable } from './child.mjs'

const job = readJob()
const entry = join(job.root, 'dist', 'index.js')
if (!existsSync(entry)) unavailable(`${entry} is missing (npm run build)`)
const tallow = await import(pathToFileURL(entry).href)
const { loadModel } = tallow.default ?? tallow

let load
try {
  load = await time(() => loadModel(job.model, { threads: job.threads }))
} catch (error) {
  // Until the SDK reads GGUF files (or reads this file's type), this is where it says so.
  unavailable(`loadModel failed: ${error.code ?? error.name}: ${error.message}`)
}
const model = load.value

const greedy = { temperature: 0, ignoreEos: true }
await model.evaluate(job.prompt)
const pp = await time(() => model.evaluate(job.prompt))
await model.generate([job.genStart], { ...greedy, maxTokens: 1 })
const tg = await time(() => model.generate([job.genStart], { ...greedy, maxTokens: job.nGen }))
if (tg.value.usage.completionTokens !== job.nGen) {
  throw new Error(`generated ${tg.value.usage.completionTokens} tokens, not ${job.nGen}`)
}

report({
  loadMs: load.ms,
  ppMs: pp.ms,
  tgMs: tg.ms,
  ppTps: (job.prompt.length * 1000) / pp.ms,
  tgTps: (job.nGen * 1000) / tg.ms,
  details: {
    info: { ...model.info, metadata: undefined },
    engineTimings: tg.value.timings,
  },
})
