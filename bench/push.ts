/**
 * `npm run bench -- push [--flag value …]`: push mode. The broker runs in its own process in push
 * mode (`node dist/src/server.js`, TASKBROKER_DELIVERY_MODE=push); N worker HTTP servers (the
 * reference push worker, examples/push-worker.ts) run in another process (bench/push-worker.ts)
 * and complete every push through the status endpoint. This process produces and keeps the clock.
 *
 * A run: emptied tables, a fresh broker and worker process, `--warmup-tasks` untimed, then N tasks
 * produced in batches of 1000 while the broker is already pushing. From the first produce request:
 * "delivered" = the workers accepted all N pushes, "completed" = all N reports were acknowledged
 * (and inflight_tasks is empty). Push update batching on and off (TASKBROKER_PUSH_UPDATE_BATCHING)
 * are interleaved rep by rep; medians are reported. Results go to bench/results/push-<time>.{json,md}.
 */
import { randomUUID } from 'node:crypto'
import { fork, type ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { connectPostgres } from './lib/pg.js'
import { NO_BACKPRESSURE, ROOT, ensureBuilt, killBrokers, prepareDatabase, startBroker } from './lib/broker.js'
import { Api } from './lib/http.js'
import { fmt, median, sleep } from './lib/stats.js'
import type { PushWorkerCommand, PushWorkerCounts, PushWorkerMessage } from './push-worker.js'

const log = (line: string) => { process.stderr.write(`${line}\n`) }

const argv = process.argv.slice(2).filter(a => a !== 'push')
const { values } = parseArgs({
  args: argv,
  options: {
    tasks: { type: 'string', default: '20000' },
    reps: { type: 'string', default: '3' },
    batching: { type: 'string', default: 'on,off' },
    'worker-servers': { type: 'string', default: '2' },
    'worker-concurrency': { type: 'string', default: '256' },
    'warmup-tasks': { type: 'string', default: '2000' },
    'produce-concurrency': { type: 'string', default: '4' },
    payload: { type: 'string', default: '100' },
    'max-run-seconds': { type: 'string', default: '120' },
    'broker-env': { type: 'string', multiple: true, default: [] },
    'from-source': { type: 'boolean', default: false },
    build: { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    'db-url': { type: 'string' },
    database: { type: 'string', default: 'taskbroker_bench' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false }
  }
})

if (values.help) {
  process.stdout.write(`usage: npm run bench -- push [--flag value …]

Push mode: tasks/s delivered (pushes accepted by the workers) and completed (reports acknowledged),
TASKBROKER_PUSH_UPDATE_BATCHING on and off.

flags (default):
  --tasks N (20000)              tasks per run             --reps R (3) runs per variant; medians reported
  --batching on,off              push update batching variants (interleaved rep by rep)
  --worker-servers S (2)         worker HTTP servers; tasks spread over S applications, one per server
  --worker-concurrency C (256)   tasks a worker server runs at once (4 × C more queue; beyond: 503)
  --warmup-tasks N (2000)        untimed tasks through every fresh broker first
  --produce-concurrency P (4)    concurrent produce requests (1000 tasks each)   --payload B (100) bytes of padding
  --max-run-seconds S (120)      give up on a run after S s
  --broker-env KEY=VALUE         extra broker setting (repeatable), e.g. TASKBROKER_PUSH_CONCURRENCY=128
  --build / --no-build / --from-source, --cpu-prof DIR, --db-url URL, --database NAME (taskbroker_bench), --out DIR: as for the other scenarios
`)
  process.exit(0)
}

function int (name: string, value: string | undefined, min: number): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`--${name} must be an integer ≥ ${min} (got ${String(value)})\n`)
    process.exit(2)
  }
  return n
}

type Batching = 'on' | 'off'
const options = {
  tasks: int('tasks', values.tasks, 1),
  reps: int('reps', values.reps, 1),
  batching: values.batching.split(',').map(s => s.trim()).filter(s => s !== '') as Batching[],
  workerServers: int('worker-servers', values['worker-servers'], 1),
  workerConcurrency: int('worker-concurrency', values['worker-concurrency'], 1),
  warmupTasks: int('warmup-tasks', values['warmup-tasks'], 0),
  produceConcurrency: int('produce-concurrency', values['produce-concurrency'], 1),
  payload: int('payload', values.payload, 0),
  maxRunSeconds: int('max-run-seconds', values['max-run-seconds'], 1),
  fromSource: values['from-source']
}
if (options.batching.length === 0 || options.batching.some(b => b !== 'on' && b !== 'off')) {
  process.stderr.write(`--batching takes on, off or on,off (got ${values.batching})\n`)
  process.exit(2)
}
const brokerEnvFlags: Record<string, string> = {}
for (const pair of values['broker-env']) {
  const eq = pair.indexOf('=')
  if (eq < 1) {
    process.stderr.write(`--broker-env takes KEY=VALUE (got ${pair})\n`)
    process.exit(2)
  }
  brokerEnvFlags[pair.slice(0, eq)] = pair.slice(eq + 1)
}

/** The worker process: N reference push workers behind one IPC channel. */
class PushWorkerProcess {
  counts: PushWorkerCounts = { received: 0, reported: 0, refused: 0, reportFailures: 0 }
  private constructor (private readonly child: ChildProcess, readonly urls: string[]) {
    child.on('message', (message: PushWorkerMessage) => {
      if (message.type === 'progress') this.counts = { received: message.received, reported: message.reported, refused: message.refused, reportFailures: message.reportFailures }
    })
  }

  static async start (servers: number, concurrency: number, secrets: string[]): Promise<PushWorkerProcess> {
    const child = fork(join(ROOT, 'bench', 'push-worker.ts'), [], { cwd: ROOT, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const urls = await new Promise<string[]>((resolve, reject) => {
      child.on('message', (message: PushWorkerMessage) => {
        if (message.type === 'ready') resolve(message.urls)
        else if (message.type === 'failed') reject(new Error(`push worker process: ${message.message}`))
      })
      child.once('exit', code => reject(new Error(`the push worker process exited (${String(code)})`)))
      child.send({ type: 'start', servers, concurrency, secrets } satisfies PushWorkerCommand)
    })
    return new PushWorkerProcess(child, urls)
  }

  async close (): Promise<void> {
    if (this.child.exitCode !== null) return
    const exited = new Promise(resolve => this.child.once('exit', resolve))
    this.child.send({ type: 'exit' } satisfies PushWorkerCommand)
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
}

export interface PushRun {
  batching: Batching
  rep: number
  tasks: number
  produce_seconds: number
  delivered_seconds: number
  completed_seconds: number
  delivered_per_sec: number
  completed_per_sec: number
  /** pushes by result, from the broker's /metrics (warm-up included) */
  pushes: Record<string, number>
  /** push update flushes and their mean size (batching on), warm-up included */
  update_flushes: number
  update_mean_batch: number
  worker_refused: number
  report_failures: number
  remaining: number
  rss_start_mb: number | undefined
  rss_end_mb: number | undefined
  broker_exit: string
}

const applications = Array.from({ length: options.workerServers }, (_, i) => `bench${i}`)
const pad = 'x'.repeat(options.payload)
const bodies = (n: number) => {
  const out: string[] = []
  for (let i = 0; i < n; i += 1000) {
    const count = Math.min(1000, n - i)
    out.push(JSON.stringify({ tasks: Array.from({ length: count }, (_, j) => ({ id: randomUUID(), application: applications[(i + j) % applications.length], namespace: 'bench', taskname: 'bench.noop', parameters: { pad } })) }))
  }
  return out
}

async function produce (api: Api, chunks: string[]): Promise<number> {
  let next = 0
  const started = performance.now()
  const lane = async () => {
    while (next < chunks.length) {
      const body = chunks[next++] as string
      for (let attempt = 1; ; attempt++) {
        const reply = await api.post<{ inserted: number }>('/v1/tasks', body)
        if (reply.status === 201) break
        if (attempt >= 20) throw new Error(`produce failed: HTTP ${reply.status} ${JSON.stringify(reply.body).slice(0, 300)}`)
        await sleep(50 * attempt)
      }
    }
  }
  await Promise.all(Array.from({ length: options.produceConcurrency }, lane))
  return (performance.now() - started) / 1000
}

/** Waits until `done()` holds (every 5 ms), or throws after the run's time limit. */
async function until (what: string, done: () => boolean, deadline: number, died: () => string | undefined): Promise<void> {
  while (!done()) {
    const exit = died()
    if (exit !== undefined) throw new Error(`the broker exited (${exit}) while waiting until ${what}`)
    if (performance.now() > deadline) throw new Error(`gave up after --max-run-seconds ${options.maxRunSeconds} waiting until ${what}`)
    await sleep(5)
  }
}

async function scrape (url: string): Promise<{ pushes: Record<string, number>, flushes: number, flushed: number }> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const pushes: Record<string, number> = {}
  let flushes = 0
  let flushed = 0
  for (const line of text.split('\n')) {
    const push = /^taskbroker_push_total\{result="(\w+)"\} (\S+)$/.exec(line)
    if (push !== null) pushes[push[1] as string] = Number(push[2])
    if (line.startsWith('taskbroker_batcher_flush_size_count{batcher="push_update"} ')) flushes = Number(line.split(' ')[1])
    if (line.startsWith('taskbroker_batcher_flush_size_sum{batcher="push_update"} ')) flushed = Number(line.split(' ')[1])
  }
  return { pushes, flushes, flushed }
}

async function run (url: string, batching: Batching, rep: number): Promise<PushRun> {
  const sql = connectPostgres(url, { max: 1, onnotice: () => {} })
  const tables = await sql`select count(*)::int as n from pg_tables where schemaname = 'public' and tablename in ('inflight_tasks', 'deadletter_tasks')`
  if (tables[0]?.n === 2) await sql`truncate inflight_tasks, deadletter_tasks`
  const secrets = (brokerEnvFlags.TASKBROKER_AUTH_SECRETS ?? '').split(',').filter(s => s !== '')
  const workers = await PushWorkerProcess.start(options.workerServers, options.workerConcurrency, secrets)
  let exit: string | undefined
  try {
    const broker = await startBroker({
      TASKBROKER_DATABASE_URL: url,
      TASKBROKER_RUN_MIGRATIONS: 'true',
      ...NO_BACKPRESSURE,
      TASKBROKER_DELIVERY_MODE: 'push',
      TASKBROKER_WORKER_MAP: applications.map((app, i) => `${app}=${workers.urls[i] as string}`).join(','),
      ...brokerEnvFlags,
      TASKBROKER_PUSH_UPDATE_BATCHING: batching === 'on' ? 'true' : 'false'
    }, log, options.fromSource, values['cpu-prof'] === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${resolve(values['cpu-prof'])}`])
    broker.exited.then(code => { exit = code }, () => {})
    const api = new Api(broker.url, options.produceConcurrency + 1)
    const rssStart = broker.rss()
    let result: Omit<PushRun, 'rss_start_mb' | 'rss_end_mb' | 'broker_exit'>
    let rssEnd: number | undefined
    try {
      const died = () => exit
      const deadline = () => performance.now() + options.maxRunSeconds * 1000
      if (options.warmupTasks > 0) {
        await produce(api, bodies(options.warmupTasks))
        await until('the warm-up tasks are completed', () => workers.counts.reported >= options.warmupTasks, deadline(), died)
      }
      const base = { ...workers.counts }
      const chunks = bodies(options.tasks)
      const label = `push batching ${batching} rep ${rep}/${options.reps}`
      const started = performance.now()
      const end = started + options.maxRunSeconds * 1000
      const progress = setInterval(() => log(`  ${label}: delivered ${fmt(workers.counts.received - base.received)}, completed ${fmt(workers.counts.reported - base.reported)} of ${fmt(options.tasks)}`), 1000)
      let produceSeconds: number
      let deliveredSeconds = 0
      try {
        const delivered = until('every task is delivered', () => workers.counts.received - base.received >= options.tasks, end, died)
          .then(() => { deliveredSeconds = (performance.now() - started) / 1000 })
        delivered.catch(() => {}) // awaited below; it must not go unhandled while produce runs
        produceSeconds = await produce(api, chunks)
        await delivered
        await until('every task is completed', () => workers.counts.reported - base.reported >= options.tasks, end, died)
      } finally {
        clearInterval(progress)
      }
      const completedSeconds = (performance.now() - started) / 1000
      rssEnd = broker.rss()
      const metrics = await scrape(broker.url)
      const [left] = await sql`select count(*)::int as n from inflight_tasks`
      result = {
        batching,
        rep,
        tasks: options.tasks,
        produce_seconds: produceSeconds,
        delivered_seconds: deliveredSeconds,
        completed_seconds: completedSeconds,
        delivered_per_sec: options.tasks / deliveredSeconds,
        completed_per_sec: options.tasks / completedSeconds,
        pushes: metrics.pushes,
        update_flushes: metrics.flushes,
        update_mean_batch: metrics.flushes === 0 ? 0 : metrics.flushed / metrics.flushes,
        worker_refused: workers.counts.refused,
        report_failures: workers.counts.reportFailures,
        remaining: left?.n as number
      }
      log(`  ${label}: ${fmt(result.delivered_per_sec)} delivered/s, ${fmt(result.completed_per_sec)} completed/s (produce ${result.produce_seconds.toFixed(2)} s)`)
    } finally {
      await api.close()
    }
    const brokerExit = await broker.stop()
    return { ...result, rss_start_mb: rssStart, rss_end_mb: rssEnd, broker_exit: brokerExit }
  } finally {
    await workers.close()
    await sql.end()
  }
}

function markdown (runs: PushRun[], header: Record<string, unknown>): string {
  const lines = [
    '# Push mode benchmark',
    '',
    `\`${String(header.command)}\` — ${String(header.started_at)}; ${String(header.cores)} cores, load average at start ${String(header.load_average_at_start)}`,
    '',
    '| push update batching | delivered tasks/s (median) | completed tasks/s (median) | runs (completed/s) | update flushes, mean size | pushes not delivered | incomplete |',
    '|---|---|---|---|---|---|---|'
  ]
  for (const batching of ['on', 'off'] as const) {
    const mine = runs.filter(r => r.batching === batching)
    if (mine.length === 0) continue
    const failed = mine.reduce((n, r) => n + Object.entries(r.pushes).filter(([k]) => k !== 'delivered').reduce((m, [, v]) => m + v, 0), 0)
    const last = mine[mine.length - 1] as PushRun
    lines.push(`| ${batching} | ${fmt(median(mine.map(r => r.delivered_per_sec)))} | ${fmt(median(mine.map(r => r.completed_per_sec)))} | ${mine.map(r => fmt(r.completed_per_sec)).join(', ')} | ${last.update_flushes === 0 ? '— (one statement per push)' : `${fmt(last.update_flushes)}, ${last.update_mean_batch.toFixed(1)}`} | ${failed} | ${mine.reduce((n, r) => n + r.remaining, 0)} |`)
  }
  const on = runs.filter(r => r.batching === 'on')
  const off = runs.filter(r => r.batching === 'off')
  if (on.length > 0 && off.length > 0) lines.push('', `Batching on/off (completed/s): ${(median(on.map(r => r.completed_per_sec)) / median(off.map(r => r.completed_per_sec))).toFixed(2)}×`)
  lines.push('', 'Delivered and completed are timed from the first produce request (the broker pushes while tasks are still being produced).')
  return lines.join('\n') + '\n'
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`\n${signal}: stopping ${killBrokers()} broker(s)`)
    setTimeout(() => process.exit(130), 500)
  })
}
process.once('exit', () => { killBrokers('SIGKILL') })

const adminUrl = values['db-url'] ?? process.env.TASKBROKER_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
if (!options.fromSource) ensureBuilt(values['no-build'] ? 'never' : values.build ? 'always' : 'auto', log)
const url = await prepareDatabase(adminUrl, values.database)
const startedAt = new Date()
const header = {
  scenario: 'push',
  command: `npm run bench -- push ${argv.join(' ')}`.trim(),
  started_at: startedAt.toISOString(),
  options: { ...options, broker_env: brokerEnvFlags },
  cores: cpus().length,
  available_parallelism: availableParallelism(),
  cpu: cpus()[0]?.model,
  node: process.version,
  load_average_at_start: loadavg().map(l => Math.round(l * 100) / 100)
}
process.stdout.write(`scenario push: tasks/s delivered and completed, push update batching ${options.batching.join(' vs ')}\noptions ${JSON.stringify(header.options)}\n`)
const runs: PushRun[] = []
let error: string | undefined
try {
  for (let rep = 1; rep <= options.reps; rep++) {
    for (const batching of options.batching) runs.push(await run(url, batching, rep))
  }
} catch (failure) {
  error = String((failure as Error).stack ?? failure)
  log(`FAILED: ${error}`)
}
const md = markdown(runs, header) + (error === undefined ? '' : `\nFAILED: ${error.split('\n')[0] ?? ''}\n`)
process.stdout.write(`\n${md}`)
const outDir = values.out === undefined ? join(ROOT, 'bench', 'results') : resolve(values.out)
mkdirSync(outDir, { recursive: true })
const base = join(outDir, `push-${startedAt.toISOString().replace(/[:.]/g, '-')}${error === undefined ? '' : '-failed'}`)
writeFileSync(`${base}.json`, JSON.stringify({ ...header, finished_at: new Date().toISOString(), load_average_at_end: loadavg(), runs, error }, null, 2) + '\n')
writeFileSync(`${base}.md`, md)
process.stdout.write(`\nwrote ${base}.json and .md\n`)
process.exit(error === undefined ? 0 : 1)
