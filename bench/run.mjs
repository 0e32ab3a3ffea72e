#!/usr/bin/env node
// `npm run bench`: tallow against llama.cpp (llama-bench) and node-llama-cpp, side by side, on
// the same GGUF files, the same machine and the same thread count.
//
// What it measures, per model file and runner:
//   pp512  prompt processing: tokens/s over one forward pass of a 512-token prompt
//   tg128  generation: tokens/s over 128 single-token forward passes from an empty context
//   load   ms from "load this file" to "ready to evaluate" (model + context), file in page cache
//   RSS    peak resident memory of the process that did all of the above
// and the ratios tallow / llama-bench and tallow / node-llama-cpp (above 1: tallow is faster for
// pp and tg, uses more time or memory for load and RSS), each as median (min–max) over the runs.
// Runs are interleaved (llama-bench, node-llama-cpp, tallow, llama-bench, ...) so that a change
// in the machine's state hits all runners alike; a ratio pairs the runners' runs of the same round.
//
// The runners:
//   llama-bench     the native build of scripts/llama_cpp.sh (GGML_NATIVE), `-p 512 -n 128 -t N
//                   -r 1 -o json` with its defaults otherwise (mmap, flash attention auto, warm-up);
//                   peak RSS from /usr/bin/time around it, load time from bench/llama_load.cpp
//                   (libllama's load + context for the same file), since llama-bench reports neither.
//   node-llama-cpp  3.22.1 with its prebuilt CPU binary, installed into the cache by this script
//                   (bench/runners/node-llama-cpp.mjs, one child process per run).
//   tallow          the SDK in dist/ (bench/runners/tallow.mjs, one child process per run); built
//                   first when dist/ or the addon is missing or older than src/ and crates/.
// The Node runners get the same 512 seeded random token ids (ordinary vocabulary, no special
// tokens); llama-bench draws its own random ids. Generation is greedy and includes sampling
// (llama-bench's tg does not sample). Every measurement follows a warm-up of the same kind, as in
// llama-bench.
//
// Models: bench/make_models.py makes random-weight GGUFs in the exact shapes of Llama-3.2-1B and
// Qwen2.5-0.5B (F16, Q8_0, Q4_0, Q4_K_M), once, under ${TALLOW_CACHE:-~/.cache/tallow}/bench/.
//
// Usage:
//   npm run bench                                   # everything, 3 runs, writes BENCHMARKS.md
//   npm run bench -- --models qwen2.5-0.5b --types q4_0 --runs 1 --runners llama-bench,node-llama-cpp
// Options (also as env TALLOW_BENCH_<NAME>, e.g. TALLOW_BENCH_RUNS=5):
//   --models a,b     llama-3.2-1b, qwen2.5-0.5b (default: both)
//   --types a,b      f16, q8_0, q4_0, q4_k_m (default: all)
//   --runners a,b    llama-bench, node-llama-cpp, tallow (default: all)
//   --runs N         runs of each runner per file (default 3)
//   --threads N      threads for every runner (default: physical cores)
//   --timeout S      seconds one run of one runner may take (default 1800)
//   --write          write BENCHMARKS.md (default: only for a full run: all models, types and
//                    runners, at least 3 runs); --no-write never
//   --build          rebuild tallow first (npm run build); --no-build never (default: when stale)
// Raw results (every run, the prompts, the machine) go to <cache>/bench/results/.
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism, homedir, loadavg, release, totalmem } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)))
const CACHE = process.env.TALLOW_CACHE || join(homedir(), '.cache', 'tallow')
const BENCH = join(CACHE, 'bench')
const PEERS = join(BENCH, 'peers')
const NODE_LLAMA_CPP_VERSION = '3.22.1'
// Must match bench/make_models.py, which is where they are defined.
const MODELS = ['llama-3.2-1b', 'qwen2.5-0.5b']
const TYPES = ['f16', 'q8_0', 'q4_0', 'q4_k_m']
const RUNNERS = ['llama-bench', 'node-llama-cpp', 'tallow']
const N_PROMPT = 512
const N_GEN = 128
const PROMPT_SEED = 20250107
const SECTION = '## CPU speed vs llama.cpp'

// --- options --------------------------------------------------------------------------------

function parseOptions(argv) {
  const flags = new Set(['write', 'no-write', 'build', 'no-build', 'help'])
  const values = new Set(['models', 'types', 'runners', 'runs', 'threads', 'timeout'])
  const raw = {}
  for (const name of [...values, ...flags]) {
    const env = process.env[`TALLOW_BENCH_${name.toUpperCase().replace('-', '_')}`]
    if (env !== undefined && env !== '') raw[name] = flags.has(name) ? env !== '0' && env !== 'false' : env
  }
  for (let i = 0; i < argv.length; i++) {
    const [key, inline] = argv[i].replace(/^--/, '').split(/=(.*)/s)
    if (!argv[i].startsWith('--') || !(flags.has(key) || values.has(key))) die(`unknown argument ${argv[i]} (--help)`)
    if (flags.has(key)) raw[key] = true
    else if (inline !== undefined) raw[key] = inline
    else if (i + 1 < argv.length) raw[key] = argv[++i]
    else die(`${argv[i]} needs a value`)
  }
  if (raw.help) {
    const doc = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\nimport ')[0]
    process.stdout.write(doc.replace(/^#!.*\n/, '').replace(/^\/\/ ?/gm, ''))
    process.exit(0)
  }
  const list = (name, known) => {
    if (raw[name] === undefined) return known
    const items = String(raw[name]).split(',').map((s) => s.trim()).filter(Boolean)
    for (const item of items) if (!known.includes(item)) die(`--${name}: unknown ${item}; known: ${known.join(', ')}`)
    if (items.length === 0) die(`--${name} is empty`)
    return known.filter((k) => items.includes(k)) // in the canonical order
  }
  const int = (name, fallback) => {
    if (raw[name] === undefined) return fallback
    const n = Number(raw[name])
    if (!Number.isInteger(n) || n < 1) die(`--${name} must be a positive integer, not ${raw[name]}`)
    return n
  }
  const options = {
    models: list('models', MODELS),
    types: list('types', TYPES),
    runners: list('runners', RUNNERS),
    runs: int('runs', 3),
    threads: int('threads', physicalCores()),
    timeoutS: int('timeout', 1800),
    build: raw['no-build'] ? 'never' : raw.build ? 'always' : 'stale',
  }
  const full =
    options.models.length === MODELS.length &&
    options.types.length === TYPES.length &&
    options.runners.length === RUNNERS.length &&
    options.runs >= 3
  options.write = raw['no-write'] ? false : raw.write ? true : full
  return options
}

function die(message) {
  process.stderr.write(`bench: ${message}\n`)
  process.exit(2)
}

function say(message) {
  process.stderr.write(`[bench] ${message}\n`)
}

// --- the machine ----------------------------------------------------------------------------

function cpuinfo() {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8')
  } catch {
    return ''
  }
}

function physicalCores() {
  const cores = new Set()
  for (const block of cpuinfo().split('\n\n')) {
    const phys = /^physical id\s*:\s*(\d+)/m.exec(block)
    const core = /^core id\s*:\s*(\d+)/m.exec(block)
    if (phys && core) cores.add(`${phys[1]}:${core[1]}`)
  }
  return cores.size || availableParallelism()
}

const INTERESTING_FLAGS = [
  'sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx_vnni', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni',
  'avx512_bf16', 'avx512_fp16', 'amx_tile', 'amx_int8', 'amx_bf16', 'hypervisor',
]

function machine() {
  const info = cpuinfo()
  const field = (name) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(info)?.[1]?.trim()
  const flags = new Set((field('flags') ?? '').split(/\s+/))
  let os = process.platform
  try {
    os = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os
  } catch {
    // not Linux: the platform name will do
  }
  return {
    cpu: field('model name') ?? 'unknown CPU',
    cpuFamilyModel: field('cpu family') ? `family ${field('cpu family')}, model ${field('model')}` : undefined,
    physicalCores: physicalCores(),
    logicalCpus: availableParallelism(),
    flags: INTERESTING_FLAGS.filter((f) => flags.has(f)),
    ramGiB: totalmem() / 2 ** 30,
    os: `${os}, kernel ${release()}`,
    node: process.version,
  }
}

function git(...args) {
  const run = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' })
  return run.status === 0 ? run.stdout.trim() : undefined
}

// --- setup ----------------------------------------------------------------------------------

function sh(command, args, options = {}) {
  const run = spawnSync(command, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], ...options })
  if (run.status !== 0) die(`${command} ${args.join(' ')} failed (${run.error?.message ?? `exit ${run.status}`})`)
  return run.stdout ?? ''
}

function llamaCppDir() {
  say('llama.cpp: scripts/llama_cpp.sh (builds it once if missing)')
  return sh('bash', [join(ROOT, 'scripts', 'llama_cpp.sh')]).trim().split('\n').pop()
}

function python() {
  if (process.env.TALLOW_PYTHON) return process.env.TALLOW_PYTHON
  const venv = join(ROOT, '.venv', 'bin', 'python')
  return existsSync(venv) ? venv : 'python3'
}

function manifest(model) {
  const path = join(BENCH, 'models', model, 'manifest.json')
  return existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : undefined
}

/** Makes the GGUF files that are missing; returns { model: manifest }. */
function ensureModels(options, llamaCpp) {
  const missing = (model) =>
    options.types.filter((t) => {
      const file = manifest(model)?.files?.[t]?.file
      return !file || !existsSync(join(BENCH, 'models', model, file))
    })
  for (const model of options.models) {
    const types = missing(model)
    if (types.length === 0) continue
    say(`${model}: making ${types.join(', ')} (bench/make_models.py)`)
    sh(python(), [join(ROOT, 'bench', 'make_models.py'), '--models', model, '--types', types.join(','),
      '--llama-cpp', llamaCpp, '--threads', String(options.threads), '--cache', CACHE], { stdio: 'inherit' })
  }
  return Object.fromEntries(options.models.map((m) => [m, manifest(m)]))
}

function platformPackage() {
  const names = {
    'linux-x64': 'linux-x64', 'linux-arm64': 'linux-arm64', 'darwin-arm64': 'mac-arm64-metal',
    'darwin-x64': 'mac-x64', 'win32-x64': 'win-x64', 'win32-arm64': 'win-arm64',
  }
  const name = names[`${process.platform}-${process.arch}`]
  if (!name) die(`node-llama-cpp has no prebuilt binary for ${process.platform}-${process.arch}`)
  return `@node-llama-cpp/${name}`
}

/**
 * node-llama-cpp and its prebuilt binary for this platform only, into <cache>/bench/peers: no
 * install scripts (its postinstall may download or build llama.cpp) and no other optional
 * packages (the CUDA and Vulkan builds).
 */
function ensureNodeLlamaCpp() {
  const installed = join(PEERS, 'node_modules', 'node-llama-cpp', 'package.json')
  const binary = join(PEERS, 'node_modules', ...platformPackage().split('/'), 'package.json')
  const version = (path) => (existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')).version : undefined)
  if (version(installed) === NODE_LLAMA_CPP_VERSION && version(binary) === NODE_LLAMA_CPP_VERSION) return
  say(`installing node-llama-cpp ${NODE_LLAMA_CPP_VERSION} into ${PEERS}`)
  mkdirSync(PEERS, { recursive: true })
  const pkg = {
    private: true,
    dependencies: { 'node-llama-cpp': NODE_LLAMA_CPP_VERSION, [platformPackage()]: NODE_LLAMA_CPP_VERSION },
  }
  writeFileSync(join(PEERS, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`)
  sh('npm', ['install', '--prefix', PEERS, '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund'], {
    env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' },
  })
}

function newestMtime(dir, keep) {
  let newest = 0
  if (!existsSync(dir)) return newest
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path, keep))
    else if (keep(path)) newest = Math.max(newest, statSync(path).mtimeMs)
  }
  return newest
}

/** Builds tallow if asked or stale; returns undefined when ready, else why it is not. */
function ensureTallow(build) {
  const addons = readdirSync(ROOT).filter((f) => /^tallow\..*\.node$/.test(f))
  const outputs = [join(ROOT, 'dist', 'index.js'), ...addons.map((f) => join(ROOT, f))]
  const present = existsSync(outputs[0]) && addons.length > 0
  const built = present ? Math.min(...outputs.map((f) => statSync(f).mtimeMs)) : 0
  const sources = Math.max(
    newestMtime(join(ROOT, 'src'), () => true),
    newestMtime(join(ROOT, 'crates'), (p) => /\.(rs|toml)$/.test(p) && !p.includes('/tests/')),
    existsSync(join(ROOT, 'Cargo.lock')) ? statSync(join(ROOT, 'Cargo.lock')).mtimeMs : 0,
  )
  const stale = !present || sources > built
  if (build === 'never' || (build === 'stale' && !stale)) {
    if (!present) return 'not built (dist/ or the native addon is missing; run without --no-build)'
    if (stale) say('tallow: dist/ or the addon is older than the sources (--no-build: measured as it is)')
    return undefined
  }
  say(`tallow: npm run build (${present ? 'sources changed' : 'not built yet'})`)
  const run = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] })
  return run.status === 0 ? undefined : `npm run build failed (exit ${run.status}); see the log above`
}

/** bench/llama_load.cpp compiled against the libllama of the llama-bench build. */
function ensureLoadHelper(llamaCpp) {
  const source = join(ROOT, 'bench', 'llama_load.cpp')
  const out = join(BENCH, 'bin', 'llama_load')
  const lib = join(llamaCpp, 'build', 'bin')
  const libllama = readdirSync(lib).find((f) => /^libllama\.(so|dylib)$/.test(f))
  const newest = Math.max(statSync(source).mtimeMs, libllama ? statSync(join(lib, libllama)).mtimeMs : 0)
  if (existsSync(out) && statSync(out).mtimeMs >= newest) return out
  mkdirSync(dirname(out), { recursive: true })
  say('compiling bench/llama_load.cpp')
  sh('c++', ['-std=c++17', '-O2', `-I${join(llamaCpp, 'src', 'include')}`, `-I${join(llamaCpp, 'src', 'ggml', 'include')}`,
    source, `-L${lib}`, '-lllama', '-lggml', '-lggml-base', `-Wl,-rpath,${lib}`, '-o', out])
  return out
}

// --- running --------------------------------------------------------------------------------

// Each measured process leads its own process group, so that a timeout (or Ctrl-C here) ends
// what it started too: /usr/bin/time's llama-bench would otherwise run on, orphaned.
const running = new Set()
const killGroup = (child) => {
  try {
    process.kill(-child.pid, 'SIGKILL')
  } catch {
    // already gone
  }
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const child of running) killGroup(child)
    process.exit(130)
  })
}

/** Runs a process to its end (or the timeout); resolves with its status and output. */
function runProcess(command, args, { timeoutS, env, logFile }) {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    running.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      killGroup(child)
    }, timeoutS * 1000)
    child.on('error', (error) => {
      clearTimeout(timer)
      running.delete(child)
      resolve({ status: -1, stdout, stderr: `${stderr}${error.message}`, timedOut })
    })
    child.on('close', (status, signal) => {
      clearTimeout(timer)
      running.delete(child)
      if (logFile) writeFileSync(logFile, `$ ${command} ${args.join(' ')}\n${stdout}\n--- stderr ---\n${stderr}`)
      resolve({ status: status ?? -1, signal, stdout, stderr, timedOut })
    })
  })
}

function failure(what, run) {
  const tail = run.stderr.trim().split('\n').slice(-3).join(' | ')
  const why = run.timedOut ? 'timed out' : `exit ${run.signal ?? run.status}`
  return { available: false, failed: true, reason: `${what} ${why}${tail ? `: ${tail}` : ''}` }
}

async function runLlamaBench(ctx, file) {
  const bin = join(ctx.llamaCpp, 'build', 'bin', 'llama-bench')
  const rssFile = join(BENCH, 'tmp', 'llama-bench.rss')
  const args = ['-m', file, '-p', String(N_PROMPT), '-n', String(N_GEN), '-t', String(ctx.threads), '-r', '1', '-o', 'json']
  const timed = existsSync('/usr/bin/time')
  const run = await runProcess(timed ? '/usr/bin/time' : bin, timed ? ['-f', '%M', '-o', rssFile, bin, ...args] : args, {
    timeoutS: ctx.timeoutS,
    logFile: join(BENCH, 'logs', 'llama-bench.log'),
  })
  if (run.status !== 0) return failure('llama-bench', run)
  const tests = JSON.parse(run.stdout)
  const pp = tests.find((t) => t.n_prompt === N_PROMPT && t.n_gen === 0)
  const tg = tests.find((t) => t.n_prompt === 0 && t.n_gen === N_GEN)
  const load = await runProcess(ctx.loadHelper, [file, String(ctx.threads), String(N_PROMPT + N_GEN), String(N_PROMPT)], {
    timeoutS: ctx.timeoutS,
  })
  if (load.status !== 0) return failure('llama_load', load)
  return {
    available: true,
    ppTps: pp.avg_ts,
    tgTps: tg.avg_ts,
    loadMs: JSON.parse(load.stdout).loadMs,
    maxRssKiB: timed ? Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()) : undefined,
    details: {
      build: `${pp.build_commit} (build ${pp.build_number})`,
      cpuInfo: pp.cpu_info,
      modelType: pp.model_type,
      flashAttn: pp.flash_attn,
      nBatch: pp.n_batch,
      nUbatch: pp.n_ubatch,
      threads: pp.n_threads,
      loadMode: pp.load_mode,
    },
  }
}

async function runNodeChild(ctx, runner, job) {
  const run = await runProcess(process.execPath, [join(ROOT, 'bench', 'runners', `${runner}.mjs`), job], {
    timeoutS: ctx.timeoutS,
    env: { NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' },
    logFile: join(BENCH, 'logs', `${runner}.log`),
  })
  const line = run.stdout.trim().split('\n').pop()
  if (run.status === 0 && line?.startsWith('{')) return JSON.parse(line)
  return failure(runner, run)
}

/** `n` ids in [0, vocab) from a seeded generator (mulberry32), seeded per model. */
function promptIds(model, n, vocab) {
  let state = (PROMPT_SEED ^ createHash('sha256').update(model).digest().readUInt32LE(0)) >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
  return Array.from({ length: n }, () => Math.floor(next() * vocab))
}

// --- statistics and the report --------------------------------------------------------------

const METRICS = [
  { key: 'ppTps', head: `pp${N_PROMPT} t/s`, of: (r) => r.ppTps, digits: 1 },
  { key: 'tgTps', head: `tg${N_GEN} t/s`, of: (r) => r.tgTps, digits: 2 },
  { key: 'loadMs', head: 'load ms', of: (r) => r.loadMs, digits: 0 },
  { key: 'rss', head: 'peak RSS MiB', of: (r) => (r.maxRssKiB === undefined ? undefined : r.maxRssKiB / 1024), digits: 0 },
]

function stats(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return undefined
  const mid = Math.floor(v.length / 2)
  return { n: v.length, min: v[0], max: v[v.length - 1], median: v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2 }
}

function cell(s, digits) {
  if (!s) return '—'
  const f = (x) => x.toFixed(digits)
  return s.n === 1 ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`
}

/** The markdown for one file: a row per runner, then the ratios of paired runs. */
function fileTable(entry) {
  const lines = [`| | ${METRICS.map((m) => m.head).join(' | ')} |`, `|---|${METRICS.map(() => '---:').join('|')}|`]
  const notes = []
  for (const runner of entry.runners) {
    const runs = entry.results[runner]
    const ok = runs.filter((r) => r.available)
    if (ok.length === 0) {
      const reason = runs[0]?.reason ?? 'not run'
      lines.push(`| ${runner} | ${METRICS.map(() => '—').join(' | ')} |`)
      notes.push(`${runner}: ${runs[0]?.failed ? 'failed' : 'not available'}: ${reason.replace(/\|/g, '/')}`)
      continue
    }
    lines.push(`| ${runner} | ${METRICS.map((m) => cell(stats(ok.map(m.of)), m.digits)).join(' | ')} |`)
  }
  const pairs = [['tallow', 'llama-bench'], ['tallow', 'node-llama-cpp'], ['node-llama-cpp', 'llama-bench']]
  for (const [a, b] of pairs) {
    if (!entry.runners.includes(a) || !entry.runners.includes(b)) continue
    const ra = entry.results[a]
    const rb = entry.results[b]
    const ratios = METRICS.map((m) =>
      stats(ra.map((x, i) => (x.available && rb[i]?.available ? m.of(x) / m.of(rb[i]) : undefined))),
    )
    lines.push(`| ${a} / ${b} | ${ratios.map((s) => cell(s, 2)).join(' | ')} |`)
  }
  return { table: lines.join('\n'), notes }
}

function render(report) {
  const { machine: m, settings: s } = report
  const out = [SECTION, '']
  out.push(
    'Random-weight GGUF files in the exact shapes of Llama-3.2-1B and Qwen2.5-0.5B ' +
      '(bench/make_models.py), run by llama.cpp\'s `llama-bench`, node-llama-cpp and tallow on the same ' +
      `file with the same thread count. pp${N_PROMPT}: tokens/s over one forward pass of a ${N_PROMPT}-token ` +
      `prompt; tg${N_GEN}: tokens/s over ${N_GEN} single-token steps from an empty context (the Node ` +
      'runners sample greedily, llama-bench does not sample); load: file to ready-to-evaluate, file in ' +
      'page cache; peak RSS of the process. Each cell is the median (min–max) over the runs; a ratio ' +
      'pairs runs of the same round (runners interleaved), above 1 means faster for t/s and slower or ' +
      'bigger for load and RSS. How it works: bench/README.md.',
    '',
  )
  const flags = m.flags.filter((f) => f !== 'hypervisor').join(' ')
  out.push(
    `- Machine: ${m.cpu}${m.cpuFamilyModel ? ` (${m.cpuFamilyModel})` : ''}${m.flags.includes('hypervisor') ? ', virtual machine' : ''}; ` +
      `${m.physicalCores} physical cores, ${m.logicalCpus} logical CPUs; ${flags}; ${m.ramGiB.toFixed(1)} GiB RAM; ${m.os}`,
    `- Load average (1 min) at start ${report.loadavg.start.toFixed(2)}, at end ${report.loadavg.end.toFixed(2)}` +
      (report.loadavg.start > 0.5 * m.physicalCores ? ' — the machine was busy: treat these numbers as rough' : ''),
    `- Versions: node ${m.node}; llama.cpp ${report.versions.llamaCpp ?? '—'} (node-llama-cpp ${NODE_LLAMA_CPP_VERSION}'s ` +
      `bundled source, built with GGML_NATIVE by scripts/llama_cpp.sh); node-llama-cpp ${report.versions.nodeLlamaCpp ?? '—'}; ` +
      `tallow ${report.commit}`,
    `- Date: ${report.date}`,
    `- Command: \`${report.command}\` (${s.threads} threads, ${s.runs} run${s.runs === 1 ? '' : 's'} per runner and file)`,
    '',
  )
  for (const entry of report.files) {
    const mib = (entry.bytes / 2 ** 20).toFixed(0)
    out.push(`### ${entry.model} ${entry.type.toUpperCase()} (${mib} MiB)`, '')
    const { table, notes } = fileTable(entry)
    out.push(table, '')
    for (const note of notes) out.push(`- ${note}`)
    if (notes.length) out.push('')
  }
  return out.join('\n')
}

/** Replaces this report's section of BENCHMARKS.md (up to the next `## ` heading), or adds it. */
function writeBenchmarks(section) {
  const path = join(ROOT, 'BENCHMARKS.md')
  const body = section.trimEnd() + '\n'
  if (!existsSync(path)) {
    writeFileSync(path, `# Benchmarks\n\n${body}`)
    return path
  }
  const text = readFileSync(path, 'utf8')
  const start = text.indexOf(`${SECTION}\n`)
  if (start < 0) {
    writeFileSync(path, `${text.trimEnd()}\n\n${body}`)
    return path
  }
  const next = text.slice(start + SECTION.length).search(/^## /m)
  const end = next < 0 ? text.length : start + SECTION.length + next
  writeFileSync(path, `${text.slice(0, start)}${body}${end < text.length ? '\n' : ''}${text.slice(end)}`)
  return path
}

// --- main -----------------------------------------------------------------------------------

async function main() {
  const options = parseOptions(process.argv.slice(2))
  const started = new Date()
  const loadStart = loadavg()[0]
  for (const dir of ['tmp', 'logs', 'results']) mkdirSync(join(BENCH, dir), { recursive: true })

  const llamaCpp = llamaCppDir()
  const manifests = ensureModels(options, llamaCpp)
  // Runners that cannot run at all, as the result each of their runs gets.
  const unavailable = {}
  if (options.runners.includes('node-llama-cpp')) ensureNodeLlamaCpp()
  const tallowProblem = options.runners.includes('tallow') ? ensureTallow(options.build) : undefined
  if (tallowProblem) unavailable.tallow = { available: false, reason: tallowProblem }
  const ctx = {
    llamaCpp,
    threads: options.threads,
    timeoutS: options.timeoutS,
    loadHelper: options.runners.includes('llama-bench') ? ensureLoadHelper(llamaCpp) : undefined,
  }

  const dirty = git('status', '--porcelain')
  const report = {
    date: started.toISOString(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    commit: `${git('rev-parse', '--short', 'HEAD') ?? 'unknown'}${dirty ? ' with uncommitted changes' : ''}`,
    machine: machine(),
    settings: { ...options, nPrompt: N_PROMPT, nGen: N_GEN, promptSeed: PROMPT_SEED },
    versions: {},
    loadavg: { start: loadStart, end: loadStart },
    files: [],
  }
  const resultsPath = join(BENCH, 'results', `${started.toISOString().replace(/[:.]/g, '-')}.json`)
  const save = () => writeFileSync(resultsPath, `${JSON.stringify(report, null, 2)}\n`)

  for (const model of options.models) {
    const man = manifests[model]
    const prompt = promptIds(model, N_PROMPT, man.ordinaryTokens)
    for (const type of options.types) {
      const file = join(BENCH, 'models', model, man.files[type].file)
      const entry = { model, type, file, bytes: statSync(file).size, runners: options.runners, prompt, results: {} }
      for (const r of options.runners) entry.results[r] = []
      report.files.push(entry)
      const job = join(BENCH, 'tmp', `job-${model}-${type}.json`)
      const jobSpec = { model: file, threads: options.threads, prompt, genStart: prompt[0], nGen: N_GEN,
        contextSize: N_PROMPT + N_GEN, batchSize: N_PROMPT, root: ROOT, peers: PEERS }
      writeFileSync(job, JSON.stringify(jobSpec))
      // A runner that cannot run this file (or failed on it) is not asked again for it.
      const skip = { ...unavailable }
      for (let run = 1; run <= options.runs; run++) {
        for (const runner of options.runners) {
          let result
          if (skip[runner]) result = { ...skip[runner], details: undefined }
          else if (runner === 'llama-bench') result = await runLlamaBench(ctx, file)
          else result = await runNodeChild(ctx, runner, job)
          if (!result.available && !skip[runner]) skip[runner] = result
          result.loadavg1 = loadavg()[0] // in the raw results: which runs a busy machine hit
          entry.results[runner].push(result)
          if (result.available && runner === 'llama-bench') report.versions.llamaCpp ??= result.details.build
          if (result.available && runner === 'node-llama-cpp') {
            report.versions.nodeLlamaCpp ??= `${NODE_LLAMA_CPP_VERSION} (${result.details.buildType} binary, llama.cpp ${result.details.llamaCpp?.release})`
          }
          say(`${model} ${type} run ${run}/${options.runs} ${runner}: ${describe(result)}`)
          save()
        }
      }
    }
  }
  report.loadavg.end = loadavg()[0]
  save()

  const section = render(report)
  process.stdout.write(`\n${section}\n`)
  say(`raw results: ${resultsPath}`)
  if (options.write) say(`wrote ${relative(process.cwd(), writeBenchmarks(section)) || 'BENCHMARKS.md'}`)
  else say('BENCHMARKS.md not written (a subset or fewer than 3 runs; --write writes it anyway)')
}

function describe(r) {
  if (!r.available) return `${r.failed ? 'FAILED' : 'not available'}: ${r.reason}`
  const rss = r.maxRssKiB === undefined ? '—' : `${(r.maxRssKiB / 1024).toFixed(0)} MiB`
  return `pp${N_PROMPT} ${r.ppTps.toFixed(1)} t/s, tg${N_GEN} ${r.tgTps.toFixed(2)} t/s, load ${r.loadMs.toFixed(0)} ms, peak RSS ${rss}`
}

await main()
