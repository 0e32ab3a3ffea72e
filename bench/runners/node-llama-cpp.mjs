// node-llama-cpp: its prebuilt CPU binary (never a download or a build), mmap as its default, the
// context sized as llama-bench's (batch = the prompt, so pp512 is one decode), flash attention
// 'auto' as llama-bench's default. pp: evaluateWithoutGeneratingNewTokens of the prompt; tg:
// greedy tokens from a one-token prompt (128 single-token decodes and samplings, as llama-bench's
// 128 decodes). Each is measured after a warm-up of the same kind, as llama-bench does.
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { readJob, report, time, unavailable } from './child.mjs'

const job = readJob()
let nlc
try {
  nlc = await import(pathToFileURL(join(job.peers, 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href)
} catch (error) {
  unavailable(`node-llama-cpp is not installed in ${job.peers}: ${error.message}`)
}
const llama = await nlc.getLlama({
  gpu: false,
  build: 'never',
  usePrebuiltBinaries: true,
  skipDownload: true,
  progressLogs: false,
  logLevel: nlc.LlamaLogLevel.error,
  // 0: no pool shared between contexts, so the context's `threads` is the number it uses.
  maxThreads: 0,
})

const load = await time(async () => {
  const model = await llama.loadModel({ modelPath: job.model, gpuLayers: 0 })
  const context = await model.createContext({
    contextSize: job.contextSize,
    batchSize: job.batchSize,
    threads: job.threads,
    flashAttention: 'auto',
    sequences: 1,
  })
  return { model, context, sequence: context.getSequence() }
})
const { context, sequence } = load.value

async function prompt() {
  await sequence.clearHistory()
  return time(() => sequence.evaluateWithoutGeneratingNewTokens(job.prompt))
}

async function generate(n) {
  await sequence.clearHistory()
  return time(async () => {
    let count = 0
    for await (const token of sequence.evaluate([job.genStart], { temperature: 0 })) {
      void token
      if (++count === n) break
    }
    return count
  })
}

await prompt()
const pp = await prompt()
await generate(1)
const tg = await generate(job.nGen)
if (tg.value !== job.nGen) throw new Error(`generated ${tg.value} tokens, not ${job.nGen}`)

report({
  loadMs: load.ms,
  ppMs: pp.ms,
  tgMs: tg.ms,
  ppTps: (job.prompt.length * 1000) / pp.ms,
  tgTps: (job.nGen * 1000) / tg.ms,
  details: {
    buildType: llama.buildType,
    llamaCpp: llama.llamaCppRelease,
    systemInfo: llama.systemInfo,
    contextSize: context.contextSize,
    batchSize: context.batchSize,
    flashAttention: context.flashAttention,
    threads: context.idealThreads,
  },
})
