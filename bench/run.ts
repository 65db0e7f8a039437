/**
 * `npm run bench [-- scenario] [--flag value …]`: benchmarks against a real PostgreSQL. Without a
 * scenario it runs the HTTP suite (`all`). Prints the configuration, progress while it runs and
 * the results as tables; writes them as JSON and Markdown under bench/results/. `--help` lists
 * the scenarios and flags.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { connectPostgres } from './lib/pg.js'
import { completeMode } from './complete-mode.js'
import { roundtrip } from './roundtrip.js'
import { HttpBench, log, variantLabel, type Ack, type Batching, type HttpOptions, type ThroughputVariant } from './http.js'
import { FILTER_SHAPES, type FilterShape } from './lib/http.js'
import { FEATURES, type Features } from './lib/protocol.js'
import { ROOT, ensureBuilt, killBrokers, prepareDatabase } from './lib/broker.js'
import { peerVersion } from './lib/peers.js'
import { markdown, summarize, type Results } from './lib/report.js'
import { median, sleep } from './lib/stats.js'

const SCENARIOS: Record<string, string> = {
  all: 'the HTTP suite (default): throughput (single, batch × status batching on/off), latency at half of peak (ack flushed, queued), sustained (with --sustained S), peers (unless --no-peers)',
  throughput: 'single and batch for every claim filter shape (with the features unused, all used and/or one used at a time: --features), with 1 and 2 broker processes, the noisy neighbour, the baseline checkout when given: interleaved rep by rep (+ the produce figure; each rep starts with the HTTP ceiling: the same workers against a trivial Fastify route, no database)',
  produce: 'POST /v1/tasks in batches of 1000: tasks/s',
  single: 'claim one, then status complete + fetch_next until none comes back: tasks/s, every filter shape',
  batch: 'claim --limit, one POST /v1/tasks/status for them: tasks/s, every filter shape',
  noisy: 'noisy neighbour: single with the application filter behind --noisy-tasks older pending tasks of another application, and without them (same rep)',
  latency: 'open-loop load at --rate (default half the single peak, measured first): produce→claim and status ack latency, ack flushed and queued',
  sustained: 'single for --sustained S seconds (default 60) with a closed-loop producer: broker RSS over time',
  peers: 'graphile-worker 0.17.3 and pg-boss 10.4.2 on the same PostgreSQL (bench/peers, installed on first use)',
  'complete-mode': 'store level: delete a completed row in the flush statement vs mark it and delete in upkeep',
  roundtrip: 'store level, one client, one statement at a time: round trip of select 1, produce 3, claim 3, report 3 + claim 3 (the floor under every latency figure; --iterations N, 500)',
  push: 'push mode: tasks/s delivered to worker servers and completed through the status endpoint, push update batching on/off (own flags: push --help)'
}

// `push` has a driver of its own, with its own flags (bench/push.ts); it exits when done.
if (process.argv.slice(2).includes('push')) await import('./push.js')

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    tasks: { type: 'string', default: '20000' },
    workers: { type: 'string', default: '128' },
    'batch-workers': { type: 'string', default: '16' },
    'latency-workers': { type: 'string' },
    limit: { type: 'string', default: '100' },
    filters: { type: 'string', default: FILTER_SHAPES.join(',') },
    'latency-filter': { type: 'string', default: 'application' },
    processes: { type: 'string', default: '1,2' },
    'noisy-tasks': { type: 'string', default: '100000' },
    features: { type: 'string', default: 'unused' },
    checkout: { type: 'string' },
    baseline: { type: 'string' },
    reps: { type: 'string', default: '3' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    'warmup-tasks': { type: 'string', default: '2000' },
    rate: { type: 'string' },
    sustained: { type: 'string', default: '0' },
    window: { type: 'string', default: '10000' },
    'produce-concurrency': { type: 'string', default: '4' },
    'produce-batch': { type: 'string', default: '1000' },
    payload: { type: 'string', default: '100' },
    'wait-ms': { type: 'string', default: '1000' },
    'tick-ms': { type: 'string', default: '5' },
    batching: { type: 'string', default: 'on' },
    ack: { type: 'string', default: 'flushed,queued' },
    'no-fetch-next': { type: 'boolean', default: false },
    'fetch-next-wait': { type: 'boolean', default: false },
    'broker-env': { type: 'string', multiple: true, default: [] },
    'from-source': { type: 'boolean', default: false },
    build: { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    'no-peers': { type: 'boolean', default: false },
    'peer-jobs': { type: 'string' },
    'peer-reps': { type: 'string', default: '1' },
    'max-run-seconds': { type: 'string', default: '15' },
    'ceiling-seconds': { type: 'string', default: '5' },
    iterations: { type: 'string', default: '500' },
    'db-url': { type: 'string' },
    database: { type: 'string', default: 'taskbroker_bench' },
    out: { type: 'string' },
    batch: { type: 'string', default: '256' },
    'cpu-prof': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false }
  }
})

if (values.help) {
  process.stdout.write(`usage: npm run bench [-- <scenario>] [--flag value …]

scenarios:
${Object.entries(SCENARIOS).map(([k, v]) => `  ${k.padEnd(14)} ${v}`).join('\n')}

flags (default):
  --tasks N (20000)          tasks per throughput run (and peer jobs unless --peer-jobs)
  --workers K (128)          concurrent workers for single, the HTTP ceiling, sustained (and latency unless set)
  --batch-workers K (16)     workers for batch
  --latency-workers K        workers for latency (default --workers)
  --limit L (100)            tasks per claim in batch
  --filters LIST (none,application,application+namespace)  claim filter shapes of single and batch
  --latency-filter F (application)  filter of latency, sustained, the ceiling's fetch_next, the extra processes and the baseline runs
  --processes LIST (1,2)     TASKBROKER_PROCESSES of the runs; N > 1: single and batch with the latency filter
  --noisy-tasks N (100000)   noisy neighbour: older pending tasks of another application (0 = no noisy run)
  --features LIST (unused)   single and batch with every filter shape (batching on, 1 process) with leases, heartbeats,
                             priorities and queue controls: unused, used (all of them), or one alone, the rest unused:
                             leases, heartbeats, priorities, queues (e.g. unused,leases,heartbeats,priorities,queues,used:
                             interleaved rep by rep, a "<variant> vs unused" ratio per loop). Used = active, never binding:
                             priorities: priority i % 4; queues: on the measured queue max_processing 100000 and rate_limit
                             1000000/s (burst 1000000), 50 other applications' queues paused, and workers claim again after
                             an empty claim while tasks are pending; heartbeats: one per task (batch: per claimed batch)
                             under the task's lease, reports without it; leases: the lease with every report. Every run
                             checks it has exactly its own (queue_settings rows, priority spread, heartbeat and leased
                             report counts). Heartbeat requests, and claims made again after one came back empty, are
                             counted apart; tasks/s is still tasks completed per second
  --checkout DIR|COMMIT      run the broker of another checkout (built there when stale); a commit gets a worktree in the temp directory
  --baseline DIR|COMMIT      also run that broker, rep by rep (single and batch, latency filter): ratios to it (the cost of a change)
  --reps R (3)               repetitions of throughput runs; medians reported
  --max-run-seconds S (15)   single/batch: stop a run after S s and report tasks/s over that time (0 = drain all)
  --ceiling-seconds S (5)    single: measure the HTTP ceiling (same workers, trivial route, no database) for S s first (0 = skip)
  --duration S (10)          latency: measured seconds     --warmup S (3) seconds before measuring
  --warmup-tasks N (2000)    untimed tasks through every fresh broker first (JIT warm-up)
  --rate R                   latency: offered tasks/s (default half the measured single peak)
  --sustained S (0)          also run sustained for S seconds (scenario sustained: default 60)
  --window N (10000)         sustained: most tasks queued ahead of the workers
  --produce-concurrency P (4) concurrent produce requests      --payload B (100) bytes of padding per task
  --produce-batch N (1000)   tasks per produce request (1–1000): the produce figure's and the pre-produced tasks' requests
  --wait-ms W (1000)         long-poll wait_ms for latency and sustained claims
  --tick-ms T (5)            latency: the producer sends what is due every T ms
  --batching on[,off] (on)   status batching variants (off: with the first filter only)   --ack flushed,queued  latency ack modes
  --no-fetch-next            latency: report without fetch_next (claim every task by long-poll)
  --fetch-next-wait          latency: fetch_next long-polls too (fetch_next.wait_ms = --wait-ms): one request per task when
                             caught up; the status ack is then not measured (the answer includes the wait)
  --broker-env KEY=VALUE     extra broker setting (repeatable), e.g. TASKBROKER_DB_POOL_SIZE=20
  --build / --no-build       always / never run npm run build (default: when dist is older than src)
  --from-source              run src/server.ts through tsx instead of dist (smoke tests; not for numbers)
  --cpu-prof DIR             run every broker with node --cpu-prof, profiles in DIR (open in Chrome DevTools)
  --no-peers                 all: skip the peers               --peer-jobs N, --peer-reps R (1)
  --db-url URL               server to use (default TASKBROKER_DATABASE_URL, DATABASE_URL, postgres://postgres@127.0.0.1:5432/postgres)
  --database NAME (taskbroker_bench)  database the bench creates and empties on that server
  --out DIR (bench/results)  where results go; --batch N (256) complete-mode batch size; --iterations N (500) roundtrip rounds
`)
  process.exit(0)
}

const scenario = positionals[0] ?? 'all'
if (SCENARIOS[scenario] === undefined || positionals.length > 1) {
  process.stderr.write(`unknown scenario ${positionals.join(' ')}; known: ${Object.keys(SCENARIOS).join(', ')} (--help)\n`)
  process.exit(2)
}

/** `n`, or exit 2 naming the flag when it is above `max` (the broker would refuse it). */
function atMost (max: number, name: string, n: number): number {
  if (n > max) {
    process.stderr.write(`--${name} must be at most ${max} (got ${n})\n`)
    process.exit(2)
  }
  return n
}

function int (name: string, value: string | undefined, min = 0): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n < min) {
    process.stderr.write(`--${name} must be a number ≥ ${min} (got ${String(value)})\n`)
    process.exit(2)
  }
  return n
}
function list<T extends string> (name: string, value: string, allowed: readonly T[]): T[] {
  const items = value.split(',').map(s => s.trim()).filter(s => s !== '')
  for (const item of items) {
    if (!allowed.includes(item as T)) {
      process.stderr.write(`--${name}: ${item} is not one of ${allowed.join(', ')}\n`)
      process.exit(2)
    }
  }
  return items as T[]
}

/** TASKBROKER_PROCESSES values the bench accepts. */
const PROCESS_COUNTS = ['1', '2', '3', '4', '6', '8'] as const

/**
 * A checkout given by path (it must hold a broker: src/server.ts), or a commit of this repository:
 * then a worktree of it is made (once) under the system's temporary directory, with this
 * checkout's node_modules linked into it, and left there for the next run (`git worktree remove`
 * it when done).
 */
function checkoutDir (name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  let dir = resolve(value)
  if (!existsSync(dir)) {
    let commit: string
    try {
      commit = execFileSync('git', ['rev-parse', '--verify', '--quiet', `${value}^{commit}`], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    } catch {
      process.stderr.write(`--${name} ${value} is neither a directory nor a commit of this repository\n`)
      process.exit(2)
    }
    dir = join(tmpdir(), `taskbroker-bench-${commit.slice(0, 12)}`)
    if (!existsSync(join(dir, 'src', 'server.ts'))) {
      log(`--${name} ${value}: git worktree add --detach ${dir} ${commit.slice(0, 12)}`)
      execFileSync('git', ['worktree', 'add', '--detach', dir, commit], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
    }
    if (!existsSync(join(dir, 'node_modules'))) symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  }
  if (!existsSync(join(dir, 'src', 'server.ts'))) {
    process.stderr.write(`--${name} ${dir} is not a checkout of the broker (no src/server.ts there); give a commit, or make one with git worktree add ${dir} <commit> and link node_modules into it\n`)
    process.exit(2)
  }
  return dir
}

const adminUrl = values['db-url'] ?? process.env.TASKBROKER_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const mask = (url: string) => url.replace(/:[^:@/]*@/, ':***@')
const brokerEnv: Record<string, string> = {}
for (const pair of values['broker-env']) {
  const eq = pair.indexOf('=')
  if (eq < 1) {
    process.stderr.write(`--broker-env takes KEY=VALUE (got ${pair})\n`)
    process.exit(2)
  }
  brokerEnv[pair.slice(0, eq)] = pair.slice(eq + 1)
}
const tasks = int('tasks', values.tasks, 1)
const workers = int('workers', values.workers, 1)
const sustainedSec = scenario === 'sustained' && values.sustained === '0' ? 60 : int('sustained', values.sustained)
const outDir = values.out === undefined ? join(ROOT, 'bench', 'results') : resolve(values.out)

let url = ''
const options: Omit<HttpOptions, 'url'> = {
  tasks,
  workers,
  batchWorkers: int('batch-workers', values['batch-workers'], 1),
  latencyWorkers: int('latency-workers', values['latency-workers'] ?? String(workers), 1),
  limit: int('limit', values.limit, 1),
  reps: int('reps', values.reps, 1),
  duration: int('duration', values.duration, 1),
  warmup: int('warmup', values.warmup),
  warmupTasks: int('warmup-tasks', values['warmup-tasks']),
  rate: values.rate === undefined ? undefined : int('rate', values.rate, 1),
  sustained: sustainedSec,
  window: int('window', values.window, 100),
  produceConcurrency: int('produce-concurrency', values['produce-concurrency'], 1),
  produceBatch: atMost(1000, 'produce-batch', int('produce-batch', values['produce-batch'], 1)),
  payload: int('payload', values.payload),
  waitMs: int('wait-ms', values['wait-ms']),
  tickMs: int('tick-ms', values['tick-ms'], 1),
  batching: list<Batching>('batching', values.batching, ['on', 'off']),
  acks: list<Ack>('ack', values.ack, ['flushed', 'queued']),
  fetchNext: !values['no-fetch-next'],
  fetchNextWait: values['fetch-next-wait'],
  brokerEnv,
  fromSource: values['from-source'],
  brokerNodeArgs: values['cpu-prof'] === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${resolve(values['cpu-prof'])}`],
  peerJobs: int('peer-jobs', values['peer-jobs'] ?? String(tasks), 1),
  peerReps: int('peer-reps', values['peer-reps'], 1),
  maxRunSeconds: int('max-run-seconds', values['max-run-seconds']),
  ceilingSeconds: int('ceiling-seconds', values['ceiling-seconds']),
  filters: list<FilterShape>('filters', values.filters, FILTER_SHAPES),
  latencyFilter: list<FilterShape>('latency-filter', values['latency-filter'], FILTER_SHAPES)[0] ?? 'application',
  processes: list('processes', values.processes, PROCESS_COUNTS).map(Number),
  features: list<Features>('features', values.features, FEATURES),
  noisyTasks: int('noisy-tasks', values['noisy-tasks']),
  brokerRoot: checkoutDir('checkout', values.checkout) ?? ROOT,
  baselineRoot: checkoutDir('baseline', values.baseline)
}
if (options.filters.length === 0 || options.processes.length === 0 || options.features.length === 0) {
  process.stderr.write('--filters, --processes and --features need at least one value\n')
  process.exit(2)
}

// Never leave a broker behind: on a signal, stop the brokers we started (worker processes exit when their IPC channel closes).
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`\n${signal}: stopping ${killBrokers()} broker(s)`)
    setTimeout(() => process.exit(130), 500)
  })
}
process.once('exit', () => { killBrokers('SIGKILL') })

const gitIn = (cwd: string, ...args: string[]) => {
  try { return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() } catch { return undefined }
}
/** The commit a checkout is at, its subject, and whether its src/ has changes not committed. */
const commitOf = (dir: string) => ({
  dir,
  commit: gitIn(dir, 'rev-parse', '--short', 'HEAD'),
  subject: gitIn(dir, 'log', '-1', '--format=%s')?.slice(0, 120),
  src_uncommitted_changes: (gitIn(dir, 'status', '--porcelain', '--', 'src') ?? '') !== ''
})

async function machine (databaseUrl: string): Promise<Record<string, unknown>> {
  const sql = connectPostgres(databaseUrl, { max: 1, onnotice: () => {} })
  try {
    const [v] = await sql`select version() as version, current_setting('shared_buffers') as shared_buffers, current_setting('synchronous_commit') as synchronous_commit, current_setting('max_connections') as max_connections`
    return {
      cores: cpus().length,
      available_parallelism: availableParallelism(),
      cpu: cpus()[0]?.model,
      memory_gb: Math.round(totalmem() / 2 ** 30),
      kernel: release(),
      node: process.version,
      postgres: v?.version,
      postgres_settings: { shared_buffers: v?.shared_buffers, synchronous_commit: v?.synchronous_commit, max_connections: v?.max_connections },
      git_commit: gitIn(ROOT, 'rev-parse', '--short', 'HEAD'),
      src_uncommitted_changes: (gitIn(ROOT, 'status', '--porcelain', '--', 'src') ?? '') !== '',
      // The broker measured (another checkout with --checkout), and the baseline's.
      broker_checkout: commitOf(options.brokerRoot),
      ...(options.baselineRoot === undefined ? {} : { baseline_checkout: commitOf(options.baselineRoot) }),
      load_average_at_start: loadavg().map(l => Math.round(l * 100) / 100)
    }
  } finally {
    await sql.end()
  }
}

/** A run that fails (the database restarted under it, the broker died) is retried once; the failure is recorded. */
const retries: Array<{ run: string, error: string }> = []
async function attempt<T> (label: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (error) {
    const message = String((error as Error).message ?? error)
    log(`  ${label} failed: ${message.split('\n')[0] ?? ''} — retrying once in 3 s`)
    retries.push({ run: label, error: message.slice(0, 2000) })
    await sleep(3000)
    return await fn()
  }
}

/**
 * The single/batch/noisy runs of one rep, in order: every filter shape (status batching off with
 * the first only; each with the features unused, used, or one used, in the order --features gives:
 * the runs using them beside their twin), the other process counts and the baseline with the latency filter, then the
 * noisy neighbour (its quiet twin is the single run with the application filter).
 */
function throughputVariants (scenario: string): ThroughputVariant[] {
  const modes = ({ all: ['single', 'batch'], throughput: ['single', 'batch'], single: ['single'], batch: ['batch'], noisy: [] } as Record<string, Array<'single' | 'batch'>>)[scenario]
  if (modes === undefined) return []
  const o = options
  const out: ThroughputVariant[] = []
  for (const mode of modes) {
    for (const filter of o.filters) {
      for (const batching of o.batching) {
        if (batching === 'off' && filter !== o.filters[0]) continue
        for (const features of o.features) {
          if (features !== 'unused' && batching === 'off') continue
          if (o.processes.includes(1)) out.push({ scenario: mode, batching, filter, processes: 1, build: 'current', features })
        }
      }
    }
    for (const processes of o.processes) {
      if (processes !== 1) out.push({ scenario: mode, batching: 'on', filter: o.latencyFilter, processes, build: 'current', features: 'unused' })
    }
    if (o.baselineRoot !== undefined) out.push({ scenario: mode, batching: 'on', filter: o.latencyFilter, processes: 1, build: 'baseline', features: 'unused' })
  }
  if (o.noisyTasks > 0 && ['all', 'throughput', 'noisy'].includes(scenario)) {
    if (scenario === 'noisy') out.push({ scenario: 'single', batching: 'on', filter: 'application', processes: 1, build: 'current', features: 'unused' })
    out.push({ scenario: 'noisy', batching: 'on', filter: 'application', processes: 1, build: 'current', features: 'unused' })
  }
  return out
}

const started = new Date()
const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim()
let results: Results
let exitCode = 0

if (scenario === 'complete-mode') {
  url = adminUrl
  const m = await machine(adminUrl)
  const config = { url: mask(adminUrl), tasks, batch: int('batch', values.batch, 1), reps: options.reps, database: values.database }
  process.stdout.write(`scenario complete-mode\nconfig ${JSON.stringify(config)}\nmachine ${JSON.stringify(m)}\n`)
  const result = await completeMode({ ...config, url: adminUrl })
  results = { scenario, command, started_at: started.toISOString(), options: config, broker_env: {}, machine: m, complete_mode: result }
} else if (scenario === 'roundtrip') {
  url = await prepareDatabase(adminUrl, values.database)
  const m = await machine(url)
  const config = { url: mask(url), iterations: int('iterations', values.iterations, 1) }
  process.stdout.write(`scenario roundtrip: ${SCENARIOS.roundtrip}\nconfig ${JSON.stringify(config)}\nmachine ${JSON.stringify(m)}\n`)
  const load = m.load_average_at_start as number[]
  if ((load[0] ?? 0) > 0.5) log(`note: load average ${load.join(' ')} at start — round trips are only a floor on a quiet machine`)
  results = { scenario, command, started_at: started.toISOString(), options: config, broker_env: {}, machine: m, roundtrip: await roundtrip({ ...config, url }) }
} else {
  const needsBroker = scenario !== 'peers'
  if (needsBroker && !options.fromSource) {
    const mode = values['no-build'] ? 'never' : values.build ? 'always' : 'auto'
    ensureBuilt(mode, log, options.brokerRoot)
    if (options.baselineRoot !== undefined) ensureBuilt(mode, log, options.baselineRoot)
  }
  url = await prepareDatabase(adminUrl, values.database)
  const fullOptions: HttpOptions = { ...options, url }
  const bench = new HttpBench(fullOptions)
  const shownEnv = Object.fromEntries(Object.entries(bench.brokerEnv()).map(([k, v]) => [k, k.endsWith('DATABASE_URL') ? mask(v) : v]))
  results = {
    scenario,
    command,
    started_at: started.toISOString(),
    options: { ...options, url: mask(url), out: outDir },
    broker_env: { ...shownEnv, '(per run)': 'TASKBROKER_STATUS_BATCHING / TASKBROKER_STATUS_ACK as the table says; HOST 127.0.0.1, PORT a free port' },
    machine: await machine(url)
  }
  process.stdout.write(`scenario ${scenario}: ${SCENARIOS[scenario]}\n`)
  process.stdout.write(`options ${JSON.stringify(results.options)}\n`)
  process.stdout.write(`broker  node ${options.fromSource ? '--import tsx src/server.ts' : 'dist/src/server.js'} with ${JSON.stringify(shownEnv)}\n`)
  process.stdout.write(`machine ${JSON.stringify(results.machine)}\n`)
  const load = results.machine.load_average_at_start as number[]
  if ((load[0] ?? 0) > 1) log(`note: load average ${load.join(' ')} at start — something else is using the CPU; numbers will be lower and noisier`)
  try {
    const variants = throughputVariants(scenario)
    if (variants.length > 0) {
      results.throughput = []
      for (let rep = 1; rep <= options.reps; rep++) {
        if (variants.some(v => v.scenario !== 'batch') && options.ceilingSeconds > 0) (results.ceiling ??= []).push(await attempt(`ceiling rep ${rep}`, () => bench.ceiling(rep)))
        for (const v of variants) results.throughput.push(await attempt(`${variantLabel(v)} rep ${rep}`, () => bench.throughput(v, rep)))
      }
    }
    if (scenario === 'produce') {
      results.produce = []
      for (let rep = 1; rep <= options.reps; rep++) results.produce.push(await attempt(`produce rep ${rep}`, () => bench.produceOnly(rep)))
    }
    if (scenario === 'all' || scenario === 'latency') {
      let rate = options.rate
      if (rate === undefined) {
        const peak: ThroughputVariant = { scenario: 'single', batching: 'on', filter: options.latencyFilter, processes: 1, build: 'current', features: 'unused' }
        let peaks = (results.throughput ?? []).filter(t => t.scenario === 'single' && t.batching === 'on' && t.filter === peak.filter && t.processes === 1 && t.build === 'current' && t.features === 'unused').map(t => t.tasks_per_sec)
        if (peaks.length === 0) {
          log(`latency: measuring the single peak first (filter ${peak.filter}, 1 run; --rate R skips this)`)
          const run = await attempt(`${variantLabel(peak)} (peak for latency)`, () => bench.throughput(peak, 1))
          results.throughput = [...(results.throughput ?? []), run]
          peaks = [run.tasks_per_sec]
        }
        results.latency_peak_per_sec = Math.round(median(peaks))
        rate = results.latency_peak_per_sec / 2
      }
      results.latency = []
      for (const ack of options.acks) results.latency.push(await attempt(`latency ack=${ack}`, () => bench.latency(ack, rate)))
      // The full run also measures workers whose fetch_next long-polls (one request per task).
      if (scenario === 'all' && options.fetchNext && !options.fetchNextWait) results.latency.push(await attempt('latency ack=flushed, fetch_next waits', () => bench.latency('flushed', rate, true)))
    }
    if (scenario === 'sustained' || (scenario === 'all' && sustainedSec > 0)) results.sustained = await attempt('sustained', () => bench.sustained(sustainedSec))
    if (scenario === 'peers' || (scenario === 'all' && !values['no-peers'])) {
      results.peers = await bench.peers()
      results.peer_versions = { 'graphile-worker': peerVersion('graphile-worker'), 'pg-boss': peerVersion('pg-boss') }
    }
  } catch (error) {
    log(`FAILED: ${String((error as Error).stack ?? error)}`)
    results.error = String((error as Error).message ?? error).slice(0, 4000)
    exitCode = 1
  } finally {
    await bench.close()
    if (retries.length > 0) results.retries = retries
  }
}

const finished = new Date()
results.finished_at = finished.toISOString()
results.duration_sec = Math.round((finished.getTime() - started.getTime()) / 100) / 10
results.machine.load_average_at_end = loadavg().map(l => Math.round(l * 100) / 100)
if (scenario !== 'complete-mode' && scenario !== 'roundtrip') results.summary = summarize(results)
const md = markdown(results)
process.stdout.write('\n' + md)

mkdirSync(outDir, { recursive: true })
const stamp = started.toISOString().replace(/[:.]/g, '-')
const json = JSON.stringify(results, null, 2) + '\n'
const base = join(outDir, `${scenario}-${stamp}${exitCode === 0 ? '' : '-failed'}`)
if (scenario === 'complete-mode') {
  // The format complete-mode always had (the README's numbers come from it).
  writeFileSync(`${base}.json`, JSON.stringify({ ...results.complete_mode, machine: results.machine, at: results.started_at }, null, 2) + '\n')
} else {
  writeFileSync(`${base}.json`, json)
  writeFileSync(`${base}.md`, md)
  // `latest` is the last run of the HTTP suite (the README points there).
  if (exitCode === 0 && scenario !== 'roundtrip') {
    writeFileSync(join(outDir, 'latest.json'), json)
    writeFileSync(join(outDir, 'latest.md'), md)
  }
}
process.stdout.write(`\nwrote ${base}.json${scenario === 'complete-mode' ? '' : ` and .md${exitCode === 0 && scenario !== 'roundtrip' ? ` (and ${join(outDir, 'latest.{json,md}')})` : ''}`}\n`)
process.exit(exitCode)
