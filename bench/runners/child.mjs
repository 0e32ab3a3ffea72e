// What the runner processes share: each is a child of bench/run.mjs, measures one model file
// once, and prints one JSON line on stdout. Peak RSS is the child's own (the kernel's high-water
// mark for this process), so every runner's figure covers its load, prompt and generation.
import { readFileSync, writeSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

/**
 * The job bench/run.mjs wrote: { model, threads, prompt: number[], genStart: number, nGen,
 * contextSize, batchSize, root, peers }.
 */
export function readJob() {
  return JSON.parse(readFileSync(process.argv[2], 'utf8'))
}

/** Milliseconds that `fn` takes. */
export async function time(fn) {
  const start = performance.now()
  const value = await fn()
  return { ms: performance.now() - start, value }
}

/** Prints the measurement and ends the process (engines may hold threads open). */
export function report(fields) {
  const maxRssKiB = process.resourceUsage().maxRSS
  writeSync(1, `${JSON.stringify({ available: true, maxRssKiB, ...fields })}\n`)
  process.exit(0)
}

/** The runner cannot run this file (not a failure of the benchmark): says why and ends. */
export function unavailable(reason) {
  writeSync(1, `${JSON.stringify({ available: false, reason })}\n`)
  process.exit(0)
}
