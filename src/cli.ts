#!/usr/bin/env node
/**
 * The `tallow` command line.
 *
 * ```
 * tallow generate <modelDir> <prompt> [options]
 * ```
 *
 * Generated text goes to stdout as it comes; a line of statistics goes to stderr. Ctrl-C stops
 * the generation (its statistics are still printed).
 *
 * @module
 */
import { parseArgs } from 'node:util'
import { TallowError } from './errors'
import { loadModel, type LoadOptions } from './model'
import type { GenerateOptions } from './sampling'

const HELP = `Usage: tallow <command> [options]

Commands:
  generate <modelDir> <prompt>   Continue <prompt> with the model in <modelDir>, streaming the
                                 text to stdout and a stats line (tokens/s) to stderr.

Options of generate:
  --max-tokens N      most tokens to generate (default 256)
  --temperature T     0 = greedy (default 0.8)
  --top-k K           0 = off (default 40)
  --top-p P           in (0, 1] (default 0.95)
  --seed S            seed of the sampler (default: random)
  --stop TEXT         stop before TEXT (repeatable)
  --ignore-eos        keep going past end-of-sequence tokens
  --device D          auto | cpu | cuda | metal (default auto)
  --threads N         CPU threads for the engine (default: all cores)

  -h, --help          show this help
`

/** A mistake on the command line: reported with a pointer to --help, exit status 2. */
class UsageError extends Error {}

function numberOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const parsed = Number(value)
  if (value.trim() === '' || Number.isNaN(parsed)) {
    throw new UsageError(`--${name} expects a number, got '${value}'`)
  }
  return parsed
}

async function generate(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
      stop: { type: 'string', multiple: true },
      'ignore-eos': { type: 'boolean' },
      device: { type: 'string' },
      threads: { type: 'string' },
    },
  })
  const [modelDir, prompt, ...extra] = positionals
  if (modelDir === undefined || prompt === undefined || extra.length > 0) {
    throw new UsageError('generate takes exactly two arguments: <modelDir> <prompt>')
  }

  const loadOptions: LoadOptions = {}
  if (values.device !== undefined) loadOptions.device = values.device as LoadOptions['device']
  const threads = numberOption('threads', values.threads)
  if (threads !== undefined) loadOptions.threads = threads

  const controller = new AbortController()
  const options: GenerateOptions = { signal: controller.signal }
  const maxTokens = numberOption('max-tokens', values['max-tokens'])
  if (maxTokens !== undefined) options.maxTokens = maxTokens
  const temperature = numberOption('temperature', values.temperature)
  if (temperature !== undefined) options.temperature = temperature
  const topK = numberOption('top-k', values['top-k'])
  if (topK !== undefined) options.topK = topK
  const topP = numberOption('top-p', values['top-p'])
  if (topP !== undefined) options.topP = topP
  const seed = numberOption('seed', values.seed)
  if (seed !== undefined) options.seed = seed
  if (values.stop !== undefined) options.stop = values.stop
  if (values['ignore-eos'] === true) options.ignoreEos = true

  const model = await loadModel(modelDir, loadOptions)
  const onSigint = (): void => controller.abort()
  process.once('SIGINT', onSigint)
  try {
    const stream = model.stream(prompt, options)
    for await (const chunk of stream) process.stdout.write(chunk.text)
    const { usage, timings, finishReason } = await stream.result
    process.stdout.write('\n')
    process.stderr.write(
      `${usage.promptTokens} prompt tokens in ${timings.prefillMs.toFixed(1)} ms, ` +
        `${usage.completionTokens} tokens in ${timings.decodeMs.toFixed(1)} ms ` +
        `(${timings.tokensPerSecond.toFixed(1)} tokens/s), finish: ${finishReason}\n`,
    )
  } finally {
    process.removeListener('SIGINT', onSigint)
    await model.dispose()
  }
}

/** Runs the command line `args` (without `node` and the script); resolves to the exit status. */
async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args
  try {
    if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
      process.stdout.write(HELP)
      return command === undefined ? 2 : 0
    }
    if (command === 'generate') {
      if (rest.includes('-h') || rest.includes('--help')) {
        process.stdout.write(HELP)
        return 0
      }
      await generate(rest)
      return 0
    }
    throw new UsageError(`unknown command '${command}'`)
  } catch (error) {
    if (error instanceof UsageError || isParseArgsError(error)) {
      process.stderr.write(`tallow: ${(error as Error).message}\nRun 'tallow --help' for usage.\n`)
      return 2
    }
    if (error instanceof TallowError) {
      process.stderr.write(`tallow: [${error.code}] ${error.message}\n`)
      return 1
    }
    throw error
  }
}

// parseArgs reports an unknown or malformed option with a TypeError carrying an ERR_PARSE_ARGS_* code.
function isParseArgsError(error: unknown): boolean {
  if (!(error instanceof TypeError)) return false
  const { code } = error as TypeError & { code?: unknown }
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status
  },
  (error: unknown) => {
    process.stderr.write(`tallow: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
    process.exitCode = 1
  },
)
