// Loading the native addon: the environment candle reads once, set before it loads.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { REPO_ROOT } from './helpers'

/** CANDLE_BARRIER_POOL_SPIN_LIMIT as a fresh process sees it after loading the addon. */
function spinLimitAfterLoad(env: NodeJS.ProcessEnv): string {
  const script = [
    `const { native } = require(${JSON.stringify(join(REPO_ROOT, 'src', 'native.ts'))})`,
    'native()',
    'process.stdout.write(String(process.env.CANDLE_BARRIER_POOL_SPIN_LIMIT))',
  ].join('\n')
  const run = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env,
    timeout: 60_000,
  })
  if (run.status !== 0) throw new Error(run.stderr)
  return run.stdout
}

test("candle's pool worker is told to sleep between ops rather than spin", (t) => {
  const { CANDLE_BARRIER_POOL_SPIN_LIMIT: _, ...env } = process.env
  t.is(spinLimitAfterLoad(env), '0')
})

test("a spin limit the user set is kept", (t) => {
  t.is(spinLimitAfterLoad({ ...process.env, CANDLE_BARRIER_POOL_SPIN_LIMIT: '500' }), '500')
})
