// The `tallow` command, run as a user would run it.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { loadModel } from '../src'
import { modelDir, reference, REPO_ROOT } from './helpers'

function tallow(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts'), ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

test('generate streams the greedy continuation and prints stats', async (t) => {
  const dir = modelDir('llama-gqa-tied')
  const { text, tokens } = reference('llama-gqa-tied').greedy
  const run = tallow('generate', dir, text, '--max-tokens', '32', '--temperature', '0', '--ignore-eos', '--threads', '1')
  t.is(run.status, 0, run.stderr)
  const model = await loadModel(dir)
  t.teardown(() => model.dispose())
  t.is(run.stdout, `${model.detokenize(tokens)}\n`)
  t.regex(run.stderr, /32 tokens in [\d.]+ ms \([\d.]+ tokens\/s\), finish: length/)
})

test('--help prints the usage', (t) => {
  const run = tallow('--help')
  t.is(run.status, 0)
  t.regex(run.stdout, /tallow generate|generate <modelDir> <prompt>/)
  t.regex(run.stdout, /--max-tokens/)
})

test('a bad command line exits 2 and a failed load exits 1 with its code', (t) => {
  t.is(tallow('generate', 'only-one-argument').status, 2)
  t.is(tallow('generate', 'a', 'b', '--no-such-flag').status, 2)
  t.is(tallow('frobnicate').status, 2)
  const missing = tallow('generate', join(REPO_ROOT, 'no-such-model'), 'hi')
  t.is(missing.status, 1)
  t.regex(missing.stderr, /\[MODEL_NOT_FOUND\]/)
  const badOption = tallow('generate', modelDir('llama-gqa-tied'), 'hi', '--top-p', '2')
  t.is(badOption.status, 1)
  t.regex(badOption.stderr, /\[INVALID_OPTIONS\] topP/)
})
