/**
 * The HTTP benchmark: the broker in its own process (`node dist/src/server.js`), simulated workers
 * in another (bench/worker.ts, undici), the producer and the clock in this one. Every scenario
 * run gets an emptied database and a fresh broker, stopped with SIGTERM when it ends.
 */
import type postgres from 'postgres'
import { connectPostgres } from './lib/pg.js'
import { NO_BACKPRESSURE, startBroker, startCeilingServer, type Broker } from './lib/broker.js'
import { cpuPerTask, cpuSnapshot, type CpuPerTask } from './lib/cpu.js'
import { Api, benchTask, BENCH_APPLICATION, BENCH_NAMESPACE, filterOf, NOISY_APPLICATION, ok, type FilterShape, type ProduceReply } from './lib/http.js'
import { PEER_CONFIGS, ensurePeersInstalled, runPeer, type PeerRun } from './lib/peers.js'
import { featuresLabel, featuresOf, type Features, type WorkerMode } from './lib/protocol.js'
import { fmt, median, sleep, slope, summarize, wallMs, type LatencySummary } from './lib/stats.js'
import { WorkerProcess } from './lib/workers.js'

export type Batching = 'on' | 'off'
export type Ack = 'flushed' | 'queued'

export interface HttpOptions {
  /** URL of the bench database (created by the caller) */
  url: string
  tasks: number
  workers: number
  batchWorkers: number
  latencyWorkers: number
  limit: number
  reps: number
  duration: number
  warmup: number
  warmupTasks: number
  rate: number | undefined
  sustained: number
  window: number
  produceConcurrency: number
  /** Tasks per produce request. */
  produceBatch: number
  payload: number
  waitMs: number
  tickMs: number
  batching: Batching[]
  acks: Ack[]
  fetchNext: boolean
  /** latency: fetch_next carries wait_ms (waitMs) */
  fetchNextWait: boolean
  brokerEnv: Record<string, string>
  fromSource: boolean
  /** extra node flags for the broker process (e.g. --cpu-prof) */
  brokerNodeArgs: string[]
  peerJobs: number
  peerReps: number
  /** single/batch runs stop after this many seconds (0 = drain every task) */
  maxRunSeconds: number
  /** length of the HTTP ceiling measurement before each rep's single runs (0 = none) */
  ceilingSeconds: number
  /** claim filter shapes of the single and batch runs */
  filters: FilterShape[]
  /** the filter of the latency and sustained workers */
  latencyFilter: FilterShape
  /** broker processes (TASKBROKER_PROCESSES) of the runs; beyond the first, single and batch with the latency filter only */
  processes: number[]
  /** noisy neighbour: pending tasks of another application produced ahead of the measured ones (0 = no noisy run) */
  noisyTasks: number
  /** the checkout whose broker runs (default: this one) */
  brokerRoot: string
  /** another checkout run side by side, rep by rep (single and batch with the latency filter): the before of a change */
  baselineRoot: string | undefined
  /** the single and batch runs of every filter shape: with the optional features unused, all used, or one used at a time (interleaved rep by rep); see FEATURES_USED */
  features: Features[]
}

/**
 * What a `features used` run does, all of it active and none of it binding, so the runs measure
 * what the features cost and not how they throttle: tasks produced with priority i % 4 (priorities);
 * on the measured queue a max_processing and a rate limit far above what the workers can hold or
 * take, and settings on `otherQueues` other applications' queues, so the claims read a table with
 * rows in it (queues); workers heartbeat each task once (batch: one request per claimed batch)
 * under its lease (heartbeats) and send its lease with the report (leases). A run with one feature
 * used does that part only.
 */
export const FEATURES_USED = {
  priorities: 4,
  maxProcessing: 100_000,
  rateLimit: { per_sec: 1_000_000, burst: 1_000_000 },
  otherQueues: 50
} as const

/** One single/batch/noisy run's configuration. */
export interface ThroughputVariant {
  scenario: 'single' | 'batch' | 'noisy'
  batching: Batching
  filter: FilterShape
  processes: number
  build: BrokerBuild
  features: Features
}

export function variantLabel (v: ThroughputVariant): string {
  return `${v.scenario} filter ${v.filter}${v.batching === 'off' ? ' batching off' : ''}${v.processes > 1 ? ` ${v.processes} processes` : ''}${v.features === 'unused' ? '' : ` ${featuresLabel(v.features)}`}${v.build === 'baseline' ? ' (baseline)' : ''}`
}

/** Which checkout's broker ran: the one under test, or the baseline given with --baseline. */
export type BrokerBuild = 'current' | 'baseline'

export interface ThroughputRun {
  /** noisy = single with `noisy_tasks` older pending tasks of another application ahead */
  scenario: 'single' | 'batch' | 'noisy'
  batching: Batching
  filter: FilterShape
  processes: number
  build: BrokerBuild
  /** used: priorities, queue settings, leases and heartbeats (FEATURES_USED); leases etc.: that one alone */
  features: Features
  noisy_tasks?: number
  rep: number
  tasks: number
  workers: number
  limit: number
  seconds: number
  tasks_per_sec: number
  produce_seconds: number
  produce_per_sec: number
  completed: number
  /** stopped by --max-run-seconds before every task was done (tasks/s is over that time) */
  capped: boolean
  remaining: number
  /** every request the workers sent, heartbeats included */
  requests: number
  /** heartbeat requests answered (heartbeats used; single: one per task, batch: one per claimed batch; checked) */
  heartbeats: number
  /** tasks reported with their lease (leases used: all of them, else none; checked) */
  leased_reports: number
  /** queue controls used: claims that came back empty while tasks were pending, made again (see bench/worker.ts) */
  empty_claims: number
  /** queue_settings rows before the workers ran (checked: 1 + FEATURES_USED.otherQueues with queues used, else none) */
  queue_settings_rows: number
  /** distinct priorities of the produced tasks (checked: FEATURES_USED.priorities with priorities used, else 1) */
  priorities: number
  errors: number
  error_samples: string[]
  rss_start_mb: number | undefined
  rss_end_mb: number | undefined
  broker_exit: string
  /** CPU per task while the workers ran, by process (Linux) */
  cpu_us_per_task?: CpuPerTask
}

/** The machine's HTTP ceiling: status-shaped requests to a trivial Fastify route, no database. */
export interface CeilingRun {
  rep: number
  workers: number
  seconds: number
  requests_per_sec: number
  errors: number
  /** CPU per request: `broker` is the trivial server */
  cpu_us_per_request?: CpuPerTask
}

export interface ProduceRun {
  rep: number
  tasks: number
  concurrency: number
  seconds: number
  tasks_per_sec: number
  errors: number
  error_samples: string[]
  rss_start_mb: number | undefined
  rss_end_mb: number | undefined
  broker_exit: string
  /** While the produce requests ran (`workers`: none run). */
  cpu_us_per_task?: CpuPerTask
}

export interface LatencyRun {
  ack: Ack
  filter: FilterShape
  offered_per_sec: number
  duration_sec: number
  warmup_sec: number
  workers: number
  wait_ms: number
  fetch_next: boolean
  /** fetch_next long-polled this long (0: answered at once); no status ack samples then */
  fetch_next_wait_ms?: number
  produced: number
  completed: number
  /** tasks claimed per second inside the measuring window */
  achieved_per_sec: number
  produce_to_claim_ms: LatencySummary
  status_ack_ms: LatencySummary
  produce_request_ms: LatencySummary
  /** ticks when the producer had MAX_INFLIGHT requests unanswered and sent nothing (the broker fell behind) */
  producer_skipped_ticks: number
  /** CPU per task claimed inside the measuring window (the producer runs in the bench process: not counted) */
  cpu_us_per_task?: CpuPerTask
  /** The broker's counters over the measuring window: how tasks reached their workers, what it took */
  broker_counts?: LatencyCounts
  errors: number
  error_samples: string[]
  remaining: number
  rss_start_mb: number | undefined
  rss_end_mb: number | undefined
  broker_exit: string
}

/** Deltas of broker metrics over a latency run's measuring window. */
export interface LatencyCounts {
  produced: number
  /** handed by produce straight to a waiting claim */
  handed_off: number
  /** claim statements of the claim service (long-polls, coalesced claims); flushes' fetch_next claims are not among them */
  claim_statements: number
  /** status flushes (one statement each) */
  status_flushes: number
}

/** The value of a metric in Prometheus text, all its series summed (labels ignored). */
function metricSum (text: string, name: string): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const rest = line.slice(name.length)
    if (rest[0] !== ' ' && rest[0] !== '{') continue
    sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

async function latencyCountsAt (brokerUrl: string): Promise<LatencyCounts | undefined> {
  try {
    const text = await (await fetch(`${brokerUrl}/metrics`)).text()
    return {
      produced: metricSum(text, 'taskbroker_tasks_produced_total'),
      handed_off: metricSum(text, 'taskbroker_tasks_handed_off_total'),
      claim_statements: metricSum(text, 'taskbroker_claim_statement_duration_seconds_count'),
      status_flushes: metricSum(text, 'taskbroker_batcher_flush_duration_seconds_count')
    }
  } catch {
    return undefined
  }
}

export interface SustainedRun {
  seconds: number
  workers: number
  window: number
  completed: number
  tasks_per_sec: number
  errors: number
  rss_start_mb: number | undefined
  rss_end_mb: number | undefined
  rss_min_mb: number
  rss_max_mb: number
  /** least-squares slope of RSS over the second half of the run */
  rss_slope_mb_per_min: number
  flat: boolean
  samples: Array<{ t: number, rss_mb: number | undefined, done: number }>
  broker_exit: string
}

/** Logging and progress, on stderr (stdout carries the configuration and the tables). */
export const log = (line: string) => { process.stderr.write(`${line}\n`) }

class Progress {
  private readonly started = performance.now()
  private last = { t: this.started, done: 0 }
  private done = 0
  private errors = 0
  private readonly timer: NodeJS.Timeout
  constructor (private readonly label: string, private readonly total?: number, private readonly extra?: () => string) {
    this.timer = setInterval(() => this.print(false), 1000)
  }

  update (done: number, errors = 0): void { this.done = done; this.errors = errors }

  private print (final: boolean): void {
    const now = performance.now()
    const rate = (this.done - this.last.done) / ((now - this.last.t) / 1000)
    const avg = this.done / ((now - this.started) / 1000)
    this.last = { t: now, done: this.done }
    const total = this.total === undefined ? '' : `/${fmt(this.total)}`
    const line = `  ${this.label}: ${fmt(this.done)}${total} in ${((now - this.started) / 1000).toFixed(1)} s, ` +
      `${final ? '' : `${fmt(rate)}/s now, `}${fmt(avg)}/s avg${this.errors > 0 ? `, ${this.errors} errors` : ''}${this.extra?.() ?? ''}`
    if (process.stderr.isTTY === true && !final) process.stderr.write(`\r\x1b[2K${line}`)
    else process.stderr.write(`${process.stderr.isTTY === true ? '\r\x1b[2K' : ''}${line}\n`)
  }

  stop (): void {
    clearInterval(this.timer)
    this.print(true)
  }
}

/** `signal` aborts when the broker dies, so a run's loops stop instead of retrying into the void. */
interface Session { broker: Broker, workers: WorkerProcess, api: Api, signal: AbortSignal }

export class HttpBench {
  private readonly sql: postgres.Sql
  private readonly pad: string
  constructor (readonly options: HttpOptions) {
    this.sql = connectPostgres(options.url, { max: 1, onnotice: () => {} })
    this.pad = 'x'.repeat(options.payload)
  }

  async close (): Promise<void> { await this.sql.end() }

  /** The broker's environment for one run: no backpressure, the user's --broker-env, then the variant's settings. */
  brokerEnv (variant: Record<string, string> = {}): Record<string, string> {
    return {
      TASKBROKER_DATABASE_URL: this.options.url,
      TASKBROKER_RUN_MIGRATIONS: 'true',
      LOG_LEVEL: 'warn',
      ...NO_BACKPRESSURE,
      ...this.options.brokerEnv,
      ...variant
    }
  }

  private async truncate (): Promise<void> {
    // Before the broker runs migrations on a fresh database the tables may not exist yet.
    const tables = await this.sql`select count(*)::int as n from pg_tables where schemaname = 'public' and tablename in ('inflight_tasks', 'deadletter_tasks')`
    if (tables[0]?.n === 2) await this.sql`truncate inflight_tasks, deadletter_tasks`
    // A run with queue controls leaves queue settings behind; the next run must not inherit them.
    if (await this.hasQueueSettings()) await this.sql`truncate queue_settings`
  }

  /** Whether the schema has queue settings at all (an older checkout's has not). */
  private async hasQueueSettings (): Promise<boolean> {
    const [row] = await this.sql`select to_regclass('public.queue_settings') is not null as present`
    return row?.present === true
  }

  /** Whether tasks have a priority at all (an older checkout's have not). */
  private async hasPriorities (): Promise<boolean> {
    const [row] = await this.sql`select count(*)::int as n from information_schema.columns where table_schema = 'public' and table_name = 'inflight_tasks' and column_name = 'priority'`
    return row?.n === 1
  }

  private async queueSettingsRows (): Promise<number> {
    if (!(await this.hasQueueSettings())) return 0
    const [row] = await this.sql`select count(*)::int as n from queue_settings`
    return row?.n as number
  }

  /**
   * The queue settings of a run with queue controls (FEATURES_USED), through the API as an operator sets
   * them; `holdable` is the most tasks the workers can hold at once, which max_processing stays far above.
   */
  private async setQueueSettings (api: Api, holdable: number): Promise<void> {
    const changes: Array<Record<string, unknown>> = [{
      application: BENCH_APPLICATION,
      namespace: BENCH_NAMESPACE,
      max_processing: Math.max(FEATURES_USED.maxProcessing, 10 * holdable),
      rate_limit: FEATURES_USED.rateLimit
    }]
    // Half application-wide rows, half a namespace's: claims look both up.
    for (let i = 0; i < FEATURES_USED.otherQueues; i++) {
      changes.push(i % 2 === 0 ? { application: `idle-${i}`, paused: true } : { application: `idle-${i}`, namespace: 'jobs', paused: true, max_processing: 10 })
    }
    for (const change of changes) ok(await api.patch('/v1/queues', change))
  }

  /** Rows of the measured application left (the noisy neighbour's stay). */
  private async count (): Promise<number> {
    const rows = await this.sql`select count(*)::int as n from inflight_tasks where application = ${BENCH_APPLICATION}`
    return rows[0]?.n as number
  }

  /** Rows left in inflight_tasks; with ack=queued the last flush may still be under way, so wait a little for zero. */
  private async remaining (): Promise<number> {
    const deadline = Date.now() + 3000
    for (;;) {
      const n = await this.count()
      if (n === 0 || Date.now() > deadline) return n
      await sleep(100)
    }
  }

  /** Which checkout's migrations the database holds: a broker refuses a database migrated by
   * another version, and the database may come from an earlier bench of another checkout. */
  private schemaOf: string | undefined

  /** An empty schema when the checkout changes (or on the first run), which its broker migrates at
   * start (TASKBROKER_RUN_MIGRATIONS). */
  private async schemaFor (root: string): Promise<void> {
    if (this.schemaOf === root) return
    await this.sql.unsafe('drop schema if exists drizzle cascade; drop schema if exists public cascade; create schema public')
    this.schemaOf = root
  }

  /** A fresh broker and worker process around `fn`: emptied tables before, SIGTERM and wait after. */
  private async session<T> (variant: Record<string, string>, fn: (s: Session) => Promise<T>, build: BrokerBuild = 'current'): Promise<T & { rss_start_mb: number | undefined, rss_end_mb: number | undefined, broker_exit: string }> {
    const root = build === 'baseline' ? this.options.baselineRoot ?? this.options.brokerRoot : this.options.brokerRoot
    await this.schemaFor(root)
    await this.truncate()
    const [b, w] = await Promise.allSettled([startBroker(this.brokerEnv(variant), log, this.options.fromSource, this.options.brokerNodeArgs, root), WorkerProcess.start()])
    if (b.status === 'rejected' || w.status === 'rejected') {
      if (b.status === 'fulfilled') await b.value.stop()
      if (w.status === 'fulfilled') await w.value.close()
      throw b.status === 'rejected' ? b.reason : (w as PromiseRejectedResult).reason
    }
    const broker = b.value
    const workers = w.value
    const api = new Api(broker.url, this.options.produceConcurrency + 1)
    const rssStart = broker.rss()
    const abort = new AbortController()
    let result: T
    let rssEnd: number | undefined
    let exit: string
    try {
      // A broker that exits in the middle of a run ends the run at once, with its last words.
      const died = broker.exited.then((code) => {
        abort.abort()
        throw new Error(`the broker exited (${code}) during the run; its last output: ${broker.tail() === '' ? '(none)' : `\n${broker.tail()}`}`)
      })
      died.catch(() => {}) // also rejects when we stop the broker below, after the race is over
      result = await Promise.race([fn({ broker, workers, api, signal: abort.signal }), died])
      rssEnd = broker.rss()
    } finally {
      await workers.close()
      await api.close()
      exit = await broker.stop()
      if (exit !== '0') log(`  broker exited with ${exit}`)
    }
    return { ...result, rss_start_mb: rssStart, rss_end_mb: rssEnd, broker_exit: exit }
  }

  /** POST /v1/tasks in batches of `produceBatch` on `concurrency` connections; the bodies are serialised before the clock starts. */
  private async produce (api: Api, n: number, signal: AbortSignal, onProgress?: (done: number, errors: number) => void, application = BENCH_APPLICATION, features: Features = 'unused'): Promise<{ seconds: number, errors: number, errorSamples: string[] }> {
    const bodies: Array<{ body: string, count: number }> = []
    const batch = this.options.produceBatch
    for (let i = 0; i < n; i += batch) {
      const count = Math.min(batch, n - i)
      const priority = (j: number) => featuresOf(features).priorities ? (i + j) % FEATURES_USED.priorities : undefined
      bodies.push({ body: JSON.stringify({ tasks: Array.from({ length: count }, (_, j) => benchTask(this.pad, undefined, application, priority(j))) }), count })
    }
    let next = 0
    let inserted = 0
    let errors = 0
    const errorSamples: string[] = []
    const sample = (message: string) => { if (errorSamples.length < 5) errorSamples.push(`produce: ${message.slice(0, 300)}`) }
    const started = performance.now()
    const lane = async () => {
      while (next < bodies.length) {
        const chunk = bodies[next++]!
        for (let attempt = 1; ; attempt++) {
          signal.throwIfAborted()
          try {
            const reply = await api.post<ProduceReply>('/v1/tasks', chunk.body)
            // A retried chunk whose first attempt was stored after all comes back as duplicates.
            if (reply.status === 201) { inserted += reply.body.inserted + (attempt > 1 ? reply.body.duplicates.length : 0); break }
            errors++
            sample(`HTTP ${reply.status} ${JSON.stringify(reply.body)}`)
            if (attempt >= 20) throw new Error(`produce failed: HTTP ${reply.status} ${JSON.stringify(reply.body).slice(0, 300)}`)
          } catch (error) {
            if (attempt >= 20) throw error
            errors++
            sample(String((error as Error).message ?? error))
          }
          await sleep(50 * attempt)
        }
        onProgress?.(inserted, errors)
      }
    }
    await Promise.all(Array.from({ length: this.options.produceConcurrency }, lane))
    const seconds = (performance.now() - started) / 1000
    if (inserted !== n) throw new Error(`produce stored ${inserted} of ${n} tasks`)
    return { seconds, errors, errorSamples }
  }

  /** Untimed: the first few thousand requests of a fresh process run before the JIT has warmed up. */
  private async warmUp ({ broker, workers, api, signal }: Session, mode: WorkerMode, filter: FilterShape, features: Features = 'unused'): Promise<void> {
    if (this.options.warmupTasks <= 0) return
    await this.produce(api, this.options.warmupTasks, signal, undefined, BENCH_APPLICATION, features)
    const drainMode = mode === 'stream' ? 'single' : mode
    await workers.run({ mode: drainMode, baseUrl: broker.url, workers: drainMode === 'batch' ? this.options.batchWorkers : this.options.workers, limit: this.options.limit, filter: filterOf(filter), waitMs: 0, fetchNext: true, measureFrom: 0, measureUntil: 0, capMs: 0, features, total: this.options.warmupTasks })
  }

  /**
   * Pre-produce N (timed: the produce figure), then K workers drain them (timed: tasks/s). `noisy`:
   * `noisyTasks` pending tasks of another application are produced first (untimed), so the
   * measured application's tasks are all younger than the neighbour's.
   */
  async throughput (v: ThroughputVariant, rep: number): Promise<ThroughputRun> {
    const o = this.options
    const mode = v.scenario === 'batch' ? 'batch' : 'single'
    const noisyTasks = v.scenario === 'noisy' ? o.noisyTasks : 0
    const label = `${variantLabel(v)} rep ${rep}/${o.reps}`
    const workerCount = mode === 'batch' ? o.batchWorkers : o.workers
    const env: Record<string, string> = { TASKBROKER_STATUS_BATCHING: v.batching === 'on' ? 'true' : 'false' }
    if (v.processes > 1) env.TASKBROKER_PROCESSES = String(v.processes)
    const uses = featuresOf(v.features)
    return await this.session(env, async (session) => {
      // The tables were emptied before the broker started; the settings go in before any worker runs.
      if (uses.queues) await this.setQueueSettings(session.api, workerCount * (mode === 'batch' ? o.limit : 1))
      const queueSettingsRows = await this.queueSettingsRows()
      const expectedRows = uses.queues ? 1 + FEATURES_USED.otherQueues : 0
      if (queueSettingsRows !== expectedRows) throw new Error(`${label}: ${queueSettingsRows} queue_settings rows before the workers start, expected ${expectedRows}`)
      await this.warmUp(session, mode, v.filter, v.features)
      if (noisyTasks > 0) {
        const p0 = new Progress(`${label} noisy neighbour (${NOISY_APPLICATION}) produce`, noisyTasks)
        try { await this.produce(session.api, noisyTasks, session.signal, (d, e) => p0.update(d, e), NOISY_APPLICATION) } finally { p0.stop() }
        // As autovacuum would by now: the planner sees the neighbour's rows.
        await this.sql`analyze inflight_tasks`
      }
      const p1 = new Progress(`${label} produce`, o.tasks)
      let produced: { seconds: number, errors: number, errorSamples: string[] }
      try { produced = await this.produce(session.api, o.tasks, session.signal, (d, e) => p1.update(d, e), BENCH_APPLICATION, v.features) } finally { p1.stop() }
      // Without priorities every task has the default one (an older checkout's schema has no other).
      const priorities = await this.hasPriorities()
        ? (await this.sql`select count(distinct priority)::int as n from inflight_tasks where application = ${BENCH_APPLICATION}`)[0]?.n as number
        : Math.min(1, o.tasks)
      const expectedPriorities = Math.min(uses.priorities ? FEATURES_USED.priorities : 1, o.tasks)
      if (priorities !== expectedPriorities) throw new Error(`${label}: the produced tasks have ${priorities} distinct priorities, expected ${expectedPriorities}`)
      const p2 = new Progress(`${label} ${mode === 'single' ? 'claim + status/fetch_next' : `claim ${o.limit} + batch status`}`, o.tasks)
      let result
      const cpuBefore = cpuSnapshot({ broker: session.broker.pid, workers: session.workers.pid })
      try {
        result = await session.workers.run({ mode, baseUrl: session.broker.url, workers: workerCount, limit: o.limit, filter: filterOf(v.filter), waitMs: 0, fetchNext: true, measureFrom: 0, measureUntil: 0, capMs: o.maxRunSeconds * 1000, features: v.features, total: o.tasks }, (d, e) => p2.update(d, e))
      } finally { p2.stop() }
      const cpu = cpuPerTask(cpuBefore, cpuSnapshot({ broker: session.broker.pid, workers: session.workers.pid }), result.done)
      const remaining = result.capped ? await this.count() : await this.remaining()
      if (result.capped) log(`  capped at --max-run-seconds ${o.maxRunSeconds}: ${fmt(result.done)} of ${fmt(o.tasks)} completed`)
      else if (result.done !== o.tasks || remaining !== 0) log(`  WARNING: completed ${result.done} of ${o.tasks}, ${remaining} rows left in inflight_tasks`)
      // Each feature exactly where it was asked for: a run that silently dropped one (or used one it should not) measures something else.
      const heartbeatsExpected = !uses.heartbeats ? [0, 0] : mode === 'single' ? [result.done, result.done] : [Math.ceil(result.done / o.limit), result.done]
      if (result.heartbeats < (heartbeatsExpected[0] ?? 0) || result.heartbeats > (heartbeatsExpected[1] ?? 0)) {
        throw new Error(`${label}: ${result.heartbeats} heartbeat requests for ${result.done} tasks, expected ${heartbeatsExpected.join(' to ')}`)
      }
      const leasedExpected = uses.leases ? result.done : 0
      if (result.leasedReports !== leasedExpected) throw new Error(`${label}: ${result.leasedReports} of ${result.done} tasks reported with their lease, expected ${leasedExpected}`)
      if (!uses.queues && result.emptyClaims !== 0) throw new Error(`${label}: ${result.emptyClaims} empty claims made again without queue controls`)
      return {
        scenario: v.scenario,
        batching: v.batching,
        filter: v.filter,
        processes: v.processes,
        build: v.build,
        features: v.features,
        ...(noisyTasks > 0 ? { noisy_tasks: noisyTasks } : {}),
        rep,
        tasks: o.tasks,
        workers: workerCount,
        limit: mode === 'batch' ? o.limit : 1,
        seconds: result.wallMs / 1000,
        tasks_per_sec: result.done / (result.wallMs / 1000),
        produce_seconds: produced.seconds,
        produce_per_sec: o.tasks / produced.seconds,
        completed: result.done,
        capped: result.capped,
        remaining,
        requests: result.requests,
        heartbeats: result.heartbeats,
        leased_reports: result.leasedReports,
        empty_claims: result.emptyClaims,
        queue_settings_rows: queueSettingsRows,
        priorities,
        errors: result.errors + produced.errors,
        error_samples: [...produced.errorSamples, ...result.errorSamples],
        ...(cpu === undefined ? {} : { cpu_us_per_task: cpu })
      }
    }, v.build)
  }

  /**
   * The HTTP ceiling: the single scenario's workers (same process, same client, same concurrency)
   * send status-shaped requests to a trivial Fastify route with no database for --ceiling-seconds
   * (after a 1 s warm-up). One request per task can never go faster than this on the machine.
   */
  async ceiling (rep: number): Promise<CeilingRun> {
    const o = this.options
    const [s, w] = await Promise.allSettled([startCeilingServer(), WorkerProcess.start()])
    try {
      if (s.status === 'rejected' || w.status === 'rejected') throw s.status === 'rejected' ? s.reason : (w as PromiseRejectedResult).reason
      const server = s.value
      const workers = w.value
      const command = { mode: 'ceiling' as const, baseUrl: server.url, workers: o.workers, limit: 1, filter: filterOf(o.latencyFilter), waitMs: 0, fetchNext: true, measureFrom: 0, measureUntil: 0 }
      await workers.run({ ...command, capMs: 1000 })
      const progress = new Progress(`ceiling rep ${rep}/${o.reps} trivial route`)
      const before = cpuSnapshot({ broker: server.pid, workers: workers.pid })
      let result
      try { result = await workers.run({ ...command, capMs: o.ceilingSeconds * 1000 }, (d, e) => progress.update(d, e)) } finally { progress.stop() }
      const cpu = cpuPerTask(before, cpuSnapshot({ broker: server.pid, workers: workers.pid }), result.done)
      return {
        rep,
        workers: o.workers,
        seconds: result.wallMs / 1000,
        requests_per_sec: result.done / (result.wallMs / 1000),
        errors: result.errors,
        ...(cpu === undefined ? {} : { cpu_us_per_request: cpu })
      }
    } finally {
      if (w.status === 'fulfilled') await w.value.close()
      if (s.status === 'fulfilled') await s.value.stop()
    }
  }

  /** Produce only (the `produce` scenario): N tasks in batches of 1000. */
  async produceOnly (rep: number): Promise<ProduceRun> {
    const o = this.options
    return await this.session({}, async (session) => {
      await this.warmUp(session, 'batch', 'none')
      const p = new Progress(`produce rep ${rep}/${o.reps}`, o.tasks)
      let produced: { seconds: number, errors: number, errorSamples: string[] }
      const pids = { broker: session.broker.pid, workers: undefined }
      const cpuBefore = cpuSnapshot(pids)
      try { produced = await this.produce(session.api, o.tasks, session.signal, (d, e) => p.update(d, e)) } finally { p.stop() }
      const cpu = cpuPerTask(cpuBefore, cpuSnapshot(pids), o.tasks)
      return { rep, tasks: o.tasks, concurrency: o.produceConcurrency, seconds: produced.seconds, tasks_per_sec: o.tasks / produced.seconds, errors: produced.errors, error_samples: produced.errorSamples, ...(cpu === undefined ? {} : { cpu_us_per_task: cpu }) }
    })
  }

  /**
   * Open-loop offered load: the producer sends what is due every `tickMs` (one request, the send
   * time in each task's parameters), workers long-poll claim and report with fetch_next.
   */
  async latency (ack: Ack, rate: number, nextWait = this.options.fetchNextWait): Promise<LatencyRun> {
    const o = this.options
    return await this.session({ TASKBROKER_STATUS_ACK: ack }, async (session) => {
      await this.warmUp(session, 'stream', o.latencyFilter)
      const measureFrom = wallMs() + o.warmup * 1000
      const measureUntil = measureFrom + o.duration * 1000
      let done = 0
      const p = new Progress(`latency ack=${ack} at ${fmt(rate)}/s offered`, undefined)
      const running = session.workers.run({ mode: 'stream', baseUrl: session.broker.url, workers: o.latencyWorkers, limit: 1, filter: filterOf(o.latencyFilter), waitMs: o.waitMs, fetchNext: o.fetchNext, fetchNextWaitMs: o.fetchNext && nextWait ? o.waitMs : 0, measureFrom, measureUntil, capMs: 0 }, (d, e) => { done = d; p.update(d, e) })
      let produced
      // CPU over the measuring window only, per task claimed in it.
      const pids = { broker: session.broker.pid, workers: session.workers.pid }
      let cpuBefore: ReturnType<typeof cpuSnapshot> | undefined
      let cpuAfter: ReturnType<typeof cpuSnapshot> | undefined
      let countsBefore: Promise<LatencyCounts | undefined> | undefined
      let countsAfter: Promise<LatencyCounts | undefined> | undefined
      const cpuTimers = [
        setTimeout(() => { cpuBefore = cpuSnapshot(pids); countsBefore = latencyCountsAt(session.broker.url) }, measureFrom - wallMs()),
        setTimeout(() => { cpuAfter = cpuSnapshot(pids); countsAfter = latencyCountsAt(session.broker.url) }, measureUntil - wallMs())
      ]
      try {
        produced = await this.openLoop(session.broker.url, rate, (o.warmup + o.duration) * 1000, measureFrom, measureUntil, session.signal)
        const stored = produced.stored
        const caughtUp = () => done >= stored
        const deadline = Date.now() + 10_000
        while (!caughtUp() && Date.now() < deadline && !session.signal.aborted) await sleep(50)
      } finally {
        for (const timer of cpuTimers) clearTimeout(timer)
        session.workers.stop()
        p.stop()
      }
      const result = await running
      const remaining = await this.remaining()
      const claimed = result.claimLatency?.count ?? 0
      const cpu = cpuBefore !== undefined && cpuAfter !== undefined ? cpuPerTask(cpuBefore, cpuAfter, claimed) : undefined
      const [before, after] = await Promise.all([countsBefore, countsAfter])
      const counts = before === undefined || after === undefined
        ? undefined
        : { produced: after.produced - before.produced, handed_off: after.handed_off - before.handed_off, claim_statements: after.claim_statements - before.claim_statements, status_flushes: after.status_flushes - before.status_flushes }
      return {
        ack,
        filter: o.latencyFilter,
        offered_per_sec: Math.round(rate),
        duration_sec: o.duration,
        warmup_sec: o.warmup,
        workers: o.latencyWorkers,
        wait_ms: o.waitMs,
        fetch_next: o.fetchNext,
        fetch_next_wait_ms: o.fetchNext && nextWait ? o.waitMs : 0,
        produced: produced.stored,
        completed: result.done,
        achieved_per_sec: (result.claimLatency?.count ?? 0) / o.duration,
        produce_to_claim_ms: result.claimLatency ?? summarize([]),
        status_ack_ms: result.ackLatency ?? summarize([]),
        produce_request_ms: produced.rtt,
        producer_skipped_ticks: produced.skippedTicks,
        ...(cpu === undefined ? {} : { cpu_us_per_task: cpu }),
        ...(counts === undefined ? {} : { broker_counts: counts }),
        errors: result.errors + produced.errors,
        error_samples: result.errorSamples,
        remaining
      }
    })
  }

  /**
   * Sends what is due every tick as one request, never waiting for answers: up to MAX_INFLIGHT
   * requests at once, each on a connection of its own (a queue in the client would count as
   * produce→claim latency).
   */
  private async openLoop (baseUrl: string, rate: number, totalMs: number, measureFrom: number, measureUntil: number, signal: AbortSignal): Promise<{ stored: number, errors: number, rtt: LatencySummary, skippedTicks: number }> {
    const MAX_INFLIGHT = 64
    const api = new Api(baseUrl, MAX_INFLIGHT)
    try {
      return await this.openLoopOn(api, MAX_INFLIGHT, rate, totalMs, measureFrom, measureUntil, signal)
    } finally {
      await api.close()
    }
  }

  private async openLoopOn (api: Api, maxInflight: number, rate: number, totalMs: number, measureFrom: number, measureUntil: number, signal: AbortSignal): Promise<{ stored: number, errors: number, rtt: LatencySummary, skippedTicks: number }> {
    const inflight = new Set<Promise<void>>()
    let skippedTicks = 0
    const rtt: number[] = []
    let sent = 0
    let stored = 0
    let errors = 0
    const started = performance.now()
    for (;;) {
      signal.throwIfAborted()
      const elapsed = performance.now() - started
      if (elapsed >= totalMs) break
      const due = Math.floor(rate * elapsed / 1000) - sent
      if (due > 0 && inflight.size >= maxInflight) skippedTicks++
      if (due > 0 && inflight.size < maxInflight) {
        const n = Math.min(due, 1000)
        const t = wallMs()
        const body = JSON.stringify({ tasks: Array.from({ length: n }, () => benchTask(this.pad, t)) })
        sent += n
        const request = api.post<ProduceReply>('/v1/tasks', body).then((reply) => {
          const ended = wallMs()
          if (reply.status === 201) stored += reply.body.inserted
          else errors++
          if (t >= measureFrom && t < measureUntil) rtt.push(ended - t)
        }, () => { errors++ }).finally(() => inflight.delete(request))
        inflight.add(request)
      }
      await sleep(this.options.tickMs)
    }
    await Promise.all(inflight)
    return { stored, errors, rtt: summarize(rtt), skippedTicks }
  }

  /** `single` with a closed-loop producer for `seconds`, sampling the broker's RSS every second. */
  async sustained (seconds: number): Promise<SustainedRun> {
    const o = this.options
    return await this.session({}, async (session) => {
      await this.warmUp(session, 'stream', o.latencyFilter)
      let done = 0
      const samples: SustainedRun['samples'] = []
      const p = new Progress(`sustained ${seconds} s`, undefined, () => `, broker RSS ${session.broker.rss() ?? '?'} MB`)
      const running = session.workers.run({ mode: 'stream', baseUrl: session.broker.url, workers: o.workers, limit: 1, filter: filterOf(o.latencyFilter), waitMs: o.waitMs, fetchNext: true, measureFrom: 0, measureUntil: 0, capMs: 0 }, (d, e) => { done = d; p.update(d, e) })
      const started = performance.now()
      const sampler = setInterval(() => samples.push({ t: Math.round((performance.now() - started) / 100) / 10, rss_mb: session.broker.rss(), done }), 1000)
      samples.push({ t: 0, rss_mb: session.broker.rss(), done: 0 })
      let produced = 0
      let doneAtEnd = 0
      try {
        while (performance.now() - started < seconds * 1000) {
          session.signal.throwIfAborted()
          const room = o.window - (produced - done)
          if (room >= 100) {
            const n = Math.min(1000 * o.produceConcurrency, room)
            await this.produce(session.api, n, session.signal)
            produced += n
          } else {
            await sleep(10)
          }
        }
        doneAtEnd = done
        const caughtUp = () => done >= produced
        const deadline = Date.now() + 10_000
        while (!caughtUp() && Date.now() < deadline && !session.signal.aborted) await sleep(50)
      } finally {
        clearInterval(sampler)
        session.workers.stop()
        p.stop()
      }
      const elapsed = (performance.now() - started) / 1000
      const result = await running
      log(`  sustained: ${fmt(doneAtEnd)} completed in the ${seconds} s of load, ${fmt(result.done)} after draining (${elapsed.toFixed(1)} s)`)
      const rss = samples.map(s => s.rss_mb).filter((v): v is number => v !== undefined)
      const secondHalf = samples.filter(s => s.t >= seconds / 2 && s.rss_mb !== undefined).map(s => [s.t / 60, s.rss_mb as number] as [number, number])
      const slopePerMin = slope(secondHalf)
      const third = Math.max(1, Math.floor(rss.length / 3))
      const early = median(rss.slice(0, third))
      const late = median(rss.slice(-third))
      return {
        seconds,
        workers: o.workers,
        window: o.window,
        completed: result.done,
        tasks_per_sec: doneAtEnd / seconds,
        errors: result.errors,
        rss_min_mb: Math.min(...rss),
        rss_max_mb: Math.max(...rss),
        rss_slope_mb_per_min: Math.round(slopePerMin * 10) / 10,
        // "flat": the last third sits within 10 % (or 10 MB) of the first third.
        flat: late - early <= Math.max(10, early * 0.1),
        samples
      }
    })
  }

  /** Each peer configuration `peerReps` times, configurations interleaved rep by rep. */
  async peers (): Promise<PeerRun[]> {
    ensurePeersInstalled(log)
    const runs: PeerRun[] = []
    for (let rep = 1; rep <= this.options.peerReps; rep++) {
      for (const config of PEER_CONFIGS) {
        log(`  peer ${config.key} rep ${rep}/${this.options.peerReps}: ${fmt(this.options.peerJobs)} jobs …`)
        const run = await runPeer(config, this.options.url, this.options.peerJobs, rep)
        log(`  peer ${config.key} rep ${rep}: ${fmt(run.jobs_per_sec)} jobs/s (enqueue ${fmt(run.enqueue_per_sec)}/s)`)
        runs.push(run)
      }
    }
    return runs
  }
}
