/**
 * Fault-test kit: the broker as a real child process on a PostgreSQL database of its own,
 * simulated producers and workers over HTTP, a ledger of every id they produced, claimed and got
 * acknowledged, and the checks that compare the ledger with the database afterwards.
 *
 * Used by test/faults/*.fault.ts only (run with `npm run test:faults`, never by `npm test`).
 *
 * - The broker runs as a child process (test/helpers/broker-process.ts): `node --import tsx
 *   src/server.ts`, or `node dist/src/server.js` with TASKBROKER_FAULT_BROKER=dist, and SIGKILLs
 *   itself if the test process dies.
 * - Each test gets a database `tb_fault_<random>` on TASKBROKER_FAULT_ADMIN_URL
 *   (default postgres://postgres@127.0.0.1:5432/postgres), dropped `with (force)` at the end.
 * - Every HTTP request has a 10 s client timeout; outcomes are counted by class (2xx, 503,
 *   other status, timeout, network error), so a test can assert "503 or success, never a hang".
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'
import postgres from 'postgres'
import type { Test } from 'tap'
import { EXTRA_BROKER_ENV, sleep, type Defer } from '../helpers/broker-process.js'

// The broker as a child process, cleanup and RSS sampling live in test/helpers/broker-process.ts.
export {
  cleanupStack, EXTRA_BROKER_ENV, freePort, prepareBroker, ROOT, RssSampler, startBroker,
  type Broker, type Defer, type Exit
} from '../helpers/broker-process.js'

export const ADMIN_URL = process.env.TASKBROKER_FAULT_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const PG_HOST = new URL(ADMIN_URL).hostname
const PG_PORT = Number(new URL(ADMIN_URL).port || '5432')
export const REQUEST_TIMEOUT_MS = 10_000

export { sleep }

/** `promise`, or undefined after `ms` (the timer is cleared either way). */
export async function within<T> (promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([promise, new Promise<undefined>(resolve => { timer = setTimeout(() => resolve(undefined), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: databases, backends, the server itself.

export type Sql = postgres.Sql

export function connectTo (url: string): Sql {
  return postgres(url, { max: 2, onnotice: () => {}, connect_timeout: 10, idle_timeout: 5 })
}

export function databaseUrl (name: string, port = PG_PORT): string {
  const url = new URL(ADMIN_URL)
  url.pathname = `/${name}`
  url.port = String(port)
  return url.toString()
}

/** Creates `tb_fault_<random>`; dropped `with (force)` when the test ends (PostgreSQL brought up first if needed). */
export async function createFaultDatabase (defer: Defer): Promise<{ name: string, url: string }> {
  const name = `tb_fault_${randomBytes(5).toString('hex')}`
  const admin = connectTo(ADMIN_URL)
  try {
    await admin.unsafe(`create database ${name}`)
  } finally {
    await admin.end({ timeout: 5 })
  }
  defer(async () => {
    await ensurePostgresUp()
    for (let attempt = 1; ; attempt++) {
      const sql = connectTo(ADMIN_URL)
      try {
        await sql.unsafe(`drop database if exists ${name} with (force)`)
        return
      } catch (error) {
        if (attempt >= 10) throw error
        await sleep(1000)
      } finally {
        await sql.end({ timeout: 5 })
      }
    }
  })
  return { name, url: databaseUrl(name) }
}

/** pg_terminate_backend on every session of `database` (the broker's pool, its LISTEN and upkeep connections). */
export async function terminateBackends (database: string): Promise<number> {
  const admin = connectTo(ADMIN_URL)
  try {
    const rows = await admin`select count(*) filter (where pg_terminate_backend(pid))::int as n
      from pg_stat_activity where datname = ${database} and pid <> pg_backend_pid()`
    return Number(rows[0]?.n ?? 0)
  } finally {
    await admin.end({ timeout: 5 })
  }
}

function run (command: string, args: string[], timeoutMs: number): Promise<{ code: number, output: string }> {
  return new Promise(resolve => {
    execFile(command, args, { timeout: timeoutMs, encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1
      resolve({ code, output: `${stdout}${stderr}`.trim() })
    })
  })
}

export async function pgIsReady (): Promise<boolean> {
  return (await run('pg_isready', ['-h', PG_HOST, '-p', String(PG_PORT), '-q'], 5_000)).code === 0
}

export async function waitForPostgres (timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await pgIsReady()) return true
    await sleep(200)
  }
  return false
}

/** `pg_ctlcluster 15 main restart` (fast mode), asynchronously so the load keeps running meanwhile. */
export async function restartPostgres (): Promise<{ code: number, output: string, ms: number }> {
  const started = Date.now()
  const result = await run('pg_ctlcluster', ['15', 'main', 'restart'], 120_000)
  return { ...result, ms: Date.now() - started }
}

/** Starts the local cluster when it is down (teardown of the restart test). */
export async function ensurePostgresUp (): Promise<void> {
  if (await pgIsReady()) return
  if (await waitForPostgres(10_000)) return
  await run('pg_ctlcluster', ['15', 'main', 'start'], 120_000)
  if (!await waitForPostgres(60_000)) throw new Error('PostgreSQL did not come back up')
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy in front of PostgreSQL that can cut every connection (RST) and refuse new ones.

export class PgProxy {
  private readonly pairs = new Set<{ client: Socket, upstream: Socket }>()
  private open = true
  accepted = 0
  refused = 0

  private readonly server: Server = createServer(client => this.accept(client))
  port = 0

  static async start (): Promise<PgProxy> {
    const proxy = new PgProxy()
    proxy.port = await new Promise<number>((resolve, reject) => {
      proxy.server.once('error', reject)
      proxy.server.listen(0, '127.0.0.1', () => {
        const address = proxy.server.address()
        resolve(typeof address === 'object' && address !== null ? address.port : 0)
      })
    })
    return proxy
  }

  private accept (client: Socket): void {
    client.on('error', () => {})
    if (!this.open) {
      this.refused++
      client.resetAndDestroy()
      return
    }
    this.accepted++
    const upstream = connect(PG_PORT, PG_HOST)
    upstream.on('error', () => {})
    const pair = { client, upstream }
    this.pairs.add(pair)
    const close = () => {
      this.pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('close', close)
    upstream.on('close', close)
    client.pipe(upstream)
    upstream.pipe(client)
  }

  get connections (): number { return this.pairs.size }

  /** Resets every proxied connection and every new one until restore(). */
  cut (): void {
    this.open = false
    for (const { client, upstream } of [...this.pairs]) {
      client.resetAndDestroy()
      upstream.destroy()
    }
  }

  restore (): void { this.open = true }

  async close (): Promise<void> {
    this.cut()
    await new Promise<void>(resolve => this.server.close(() => resolve()))
  }
}

// ---------------------------------------------------------------------------------------------
// The broker process.

/** Broker settings every fault test starts from (produce backpressure out of the way). */
export function brokerEnv (dbUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    TASKBROKER_DATABASE_URL: dbUrl,
    TASKBROKER_RUN_MIGRATIONS: 'true',
    LOG_LEVEL: 'warn',
    TASKBROKER_MAX_PENDING_COUNT: '10000000',
    TASKBROKER_MAX_DELAY_COUNT: '10000000',
    TASKBROKER_MAX_PROCESSING_COUNT: '10000000',
    ...extra,
    ...EXTRA_BROKER_ENV
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP: every request classified and counted.

export type Kind = 'produce' | 'claim' | 'report' | 'ghost' | 'probe'

export type Outcome =
  | { kind: 'response', status: number, body: Record<string, unknown>, retryAfter: string | null, ms: number }
  | { kind: 'timeout', ms: number }
  | { kind: 'network', error: string, ms: number }

export class Traffic {
  sent = 0
  ok = 0
  unavailable = 0
  unavailableWithoutRetryAfter = 0
  other = 0
  timeouts = 0
  network = 0
  maxLatencyMs = 0
  /** "503 TASKBROKER_…", "500 …", "network ECONNREFUSED" → count. */
  readonly codes = new Map<string, number>()
  readonly otherSamples: string[] = []
  /** Times (ms since epoch) of 2xx answers by kind: recovery is measured from these. */
  readonly okAt: Record<Kind, number[]> = { produce: [], claim: [], report: [], ghost: [], probe: [] }
  /** When the requests answered 2xx were sent. */
  readonly okSentAt: number[] = []
  /** Every request: [sent at, latency ms, status (-1 timeout, -2 network error)]. */
  readonly records: Array<[number, number, number]> = []

  private count (key: string): void { this.codes.set(key, (this.codes.get(key) ?? 0) + 1) }

  async request (base: string, method: 'GET' | 'POST', path: string, kind: Kind, body?: unknown): Promise<Outcome> {
    this.sent++
    const started = Date.now()
    let outcome: Outcome
    try {
      const response = await fetch(base + path, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)
      })
      const text = await response.text()
      let parsed: Record<string, unknown> = {}
      try { parsed = JSON.parse(text) as Record<string, unknown> } catch { parsed = { text } }
      outcome = { kind: 'response', status: response.status, body: parsed, retryAfter: response.headers.get('retry-after'), ms: Date.now() - started }
    } catch (error) {
      const err = error as { name?: string, cause?: { code?: string, message?: string }, message?: string }
      if (err.name === 'TimeoutError' || err.name === 'AbortError') outcome = { kind: 'timeout', ms: Date.now() - started }
      else outcome = { kind: 'network', error: err.cause?.code ?? err.cause?.message ?? err.message ?? String(error), ms: Date.now() - started }
    }
    this.maxLatencyMs = Math.max(this.maxLatencyMs, outcome.ms)
    this.records.push([started, outcome.ms, outcome.kind === 'response' ? outcome.status : outcome.kind === 'timeout' ? -1 : -2])
    if (outcome.kind === 'timeout') {
      this.timeouts++
      this.count(`timeout ${kind}`)
    } else if (outcome.kind === 'network') {
      this.network++
      this.count(`network ${outcome.error}`)
    } else if (outcome.status >= 200 && outcome.status < 300) {
      this.ok++
      this.okAt[kind].push(Date.now())
      this.okSentAt.push(started)
    } else if (outcome.status === 503) {
      this.unavailable++
      if (outcome.retryAfter === null) {
        this.unavailableWithoutRetryAfter++
        if (this.otherSamples.length < 10) this.otherSamples.push(`${method} ${path} → 503 without Retry-After: ${JSON.stringify(outcome.body).slice(0, 300)}`)
      }
      this.count(`503 ${String(outcome.body.code)}`)
    } else {
      this.other++
      this.count(`${outcome.status} ${String(outcome.body.code)}`)
      if (this.otherSamples.length < 10) this.otherSamples.push(`${method} ${path} → ${outcome.status} ${JSON.stringify(outcome.body).slice(0, 300)}`)
    }
    return outcome
  }

  /** The first 2xx of `kind` at or after `since`, as a delay from `since` (undefined: none). */
  recoveryMs (kind: Kind, since: number): number | undefined {
    const first = this.okAt[kind].find(at => at >= since)
    return first === undefined ? undefined : first - since
  }

  /** Requests sent in [from, to): count, answers by class, median and largest latency. */
  window (from: number, to: number): { sent: number, ok: number, unavailable: number, timeouts: number, p50Ms: number, maxMs: number } {
    const rows = this.records.filter(([at]) => at >= from && at < to)
    const latencies = rows.map(([, ms]) => ms).sort((a, b) => a - b)
    return {
      sent: rows.length,
      ok: rows.filter(([, , s]) => s >= 200 && s < 300).length,
      unavailable: rows.filter(([, , s]) => s === 503).length,
      timeouts: rows.filter(([, , s]) => s === -1).length,
      p50Ms: latencies[Math.floor(latencies.length / 2)] ?? 0,
      maxMs: latencies[latencies.length - 1] ?? 0
    }
  }

  codesText (): string {
    return [...this.codes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'
  }
}

export async function getJson (base: string, path: string): Promise<Record<string, unknown> | undefined> {
  try {
    const response = await fetch(base + path, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
    if (response.status !== 200) return undefined
    return await response.json() as Record<string, unknown>
  } catch {
    return undefined
  }
}

/** Waits until the broker's status queue is empty (every queued report written), up to `timeoutMs`. */
export async function waitForDrainedQueue (base: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const stats = await getJson(base, '/v1/stats')
    if (stats !== undefined && stats.status_queue_depth === 0) return true
    await sleep(200)
  }
  return false
}

// ---------------------------------------------------------------------------------------------
// The ledger: what the simulated clients did and what the broker acknowledged.

export type ReportStatus = 'complete' | 'failure'

/** Producers decide each task's outcome in its id: every fifth task (with failures on) fails. */
export const statusOf = (id: string): ReportStatus => id.endsWith('-f') ? 'failure' : 'complete'

export class Ledger {
  /** Ids in produce requests answered 201. */
  readonly produced = new Set<string>()
  /** Ids in produce requests whose outcome is unknown (network error or timeout). */
  readonly maybeProduced = new Set<string>()
  /** How often each id was handed out by a claim. */
  readonly claims = new Map<string, number>()
  /** First acknowledged (2xx) report per id; applied is null for a queued ack. */
  readonly acked = new Map<string, { status: ReportStatus, applied: boolean | null }>()
  /** Completions answered applied: true, per id (more than one = completed twice). */
  readonly appliedCompletes = new Map<string, number>()
  /** Ids with a report attempt of unknown outcome (network error, timeout). */
  readonly uncertain = new Set<string>()
  /** Ids answered 503 TASKBROKER_STATUS_ACK_TIMEOUT: queued, promised to be written. */
  readonly promised = new Set<string>()
  /** applied:false for a task this client claimed and had not reported before: the broker lost the row. */
  readonly unexpectedNotFound: string[] = []
  /** Ghost reports (ids never produced) acknowledged, and any that claimed to be applied. */
  ghostsAcked = 0
  ghostsApplied = 0
  /** Claimed tasks still unreported when the load stopped. */
  unreported = 0

  ack (id: string, applied: boolean | null): void {
    const status = statusOf(id)
    if (!this.acked.has(id)) this.acked.set(id, { status, applied })
    if (applied === true && status === 'complete') this.appliedCompletes.set(id, (this.appliedCompletes.get(id) ?? 0) + 1)
    if (applied === false && !this.uncertain.has(id) && !this.promised.has(id)) this.unexpectedNotFound.push(id)
  }
}

// ---------------------------------------------------------------------------------------------
// Simulated clients.

export interface LoadOptions {
  base: string
  traffic: Traffic
  ledger: Ledger
  /** Prefix of produced ids (unique per test). */
  prefix: string
  producers: number
  workers: number
  /** Every fifth task is reported `failure` (and dead-lettered by upkeep). */
  failures?: boolean
  produceBatch?: number
  /** Producers wait while more than this many produced tasks are unclaimed. */
  maxBacklog?: number
  claimLimit?: number
  /** Pause between a producer's requests. */
  producerPauseMs?: number
  /** Clients sleep for Retry-After on a 503 (false: producers retry after producerPauseMs). */
  honourRetryAfter?: boolean
  /** Loops that report batches of ids that were never produced (fill the status queue). */
  ghostReporters?: number
  ghostBatch?: number
}

export interface Load {
  /** Stops producing and claiming; workers keep retrying the reports they hold until `drainMs` passed. */
  stop (drainMs: number): Promise<void>
}

/** ECONNREFUSED: no broker listened, so the request certainly had no effect. */
const refusedConnection = (outcome: Outcome): boolean => outcome.kind === 'network' && outcome.error === 'ECONNREFUSED'

const retryDelayMs = (outcome: Outcome, honour: boolean): number => {
  if (outcome.kind !== 'response') return 200
  const seconds = Number(outcome.retryAfter)
  return honour && Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 5) * 1000 : 100
}

export function startLoad (options: LoadOptions): Load {
  const { base, traffic, ledger, prefix } = options
  const honour = options.honourRetryAfter ?? true
  const batch = options.produceBatch ?? 50
  const maxBacklog = options.maxBacklog ?? 2000
  const claimLimit = options.claimLimit ?? 20
  const pauseMs = options.producerPauseMs ?? 10
  // An object, so loops that await see the change made by stop().
  const state = { stopping: false, drainDeadline: Infinity }

  async function producer (p: number): Promise<void> {
    let seq = 0
    while (!state.stopping) {
      if (ledger.produced.size - ledger.claims.size > maxBacklog) {
        await sleep(50)
        continue
      }
      const ids = Array.from({ length: batch }, () => {
        seq++
        return `${prefix}-${p}-${seq}-${options.failures === true && seq % 5 === 0 ? 'f' : 'c'}`
      })
      const tasks = ids.map((id, i) => ({
        id,
        application: 'fault',
        namespace: 'load',
        taskname: 'fault.noop',
        parameters: { n: i },
        retry_state: { max_attempts: 1, on_attempts_exceeded: 'deadletter' }
      }))
      const outcome = await traffic.request(base, 'POST', '/v1/tasks', 'produce', { tasks })
      if (outcome.kind === 'response' && outcome.status === 201) {
        for (const id of ids) ledger.produced.add(id)
        await sleep(pauseMs)
      } else if (outcome.kind === 'response') {
        // The store failed mid-statement (the connection broke after the insert was sent): the
        // insert may have committed. A real producer retries with the same ids (produce is
        // idempotent on id); these ones are simply of unknown outcome.
        if (outcome.status === 503 && (outcome.body.code === 'TASKBROKER_STORE_UNAVAILABLE' || outcome.body.code === 'TASKBROKER_OUTCOME_UNKNOWN')) for (const id of ids) ledger.maybeProduced.add(id)
        await sleep(outcome.status === 503 ? (honour ? retryDelayMs(outcome, true) : pauseMs) : 200)
      } else {
        // Refused: the request never reached a broker. Reset or timed out: it may have been stored.
        if (!refusedConnection(outcome)) for (const id of ids) ledger.maybeProduced.add(id)
        await sleep(200)
      }
    }
  }

  /** Reports `ids` (batch endpoint, or one by one) until acknowledged or the drain deadline. */
  async function report (ids: string[], single: boolean): Promise<void> {
    let held = ids
    while (held.length > 0) {
      if (state.stopping && Date.now() > state.drainDeadline) {
        ledger.unreported += held.length
        return
      }
      const now = held
      const outcome = single
        ? await traffic.request(base, 'POST', `/v1/tasks/${encodeURIComponent(now[0] as string)}/status`, 'report', { status: statusOf(now[0] as string) })
        : await traffic.request(base, 'POST', '/v1/tasks/status', 'report', { updates: now.map(id => ({ id, status: statusOf(id) })) })
      if (outcome.kind === 'response' && outcome.status === 200) {
        if (single) {
          const id = now[0] as string
          ledger.ack(id, outcome.body.queued === true ? null : outcome.body.applied === true)
          held = held.slice(1)
        } else {
          const notFound = new Set((outcome.body.not_found as string[] | undefined) ?? [])
          const queued = Number(outcome.body.queued ?? 0) > 0
          for (const id of now) ledger.ack(id, queued ? null : !notFound.has(id))
          held = []
        }
        continue
      }
      if (outcome.kind === 'response' && outcome.status === 503) {
        if (outcome.body.code === 'TASKBROKER_STATUS_ACK_TIMEOUT') for (const id of now) ledger.promised.add(id)
      } else if (outcome.kind !== 'response' && !refusedConnection(outcome)) {
        for (const id of now) ledger.uncertain.add(id)
      }
      await sleep(retryDelayMs(outcome, honour))
    }
  }

  async function worker (w: number): Promise<void> {
    const single = w % 2 === 1
    while (!state.stopping) {
      const outcome = await traffic.request(base, 'POST', '/v1/tasks/claim', 'claim',
        { application: 'fault', namespace: 'load', limit: single ? 5 : claimLimit, wait_ms: 200 })
      if (outcome.kind === 'response' && outcome.status === 200) {
        const ids = ((outcome.body.tasks as Array<{ id: string }> | undefined) ?? []).map(task => task.id)
        for (const id of ids) ledger.claims.set(id, (ledger.claims.get(id) ?? 0) + 1)
        if (ids.length > 0) await report(ids, single)
      } else {
        await sleep(retryDelayMs(outcome, honour))
      }
    }
  }

  async function ghostReporter (g: number): Promise<void> {
    let seq = 0
    const size = options.ghostBatch ?? 200
    while (!state.stopping) {
      const ids = Array.from({ length: size }, () => `ghost-${prefix}-${g}-${++seq}`)
      const outcome = await traffic.request(base, 'POST', '/v1/tasks/status', 'ghost', { updates: ids.map(id => ({ id, status: 'complete' })) })
      if (outcome.kind === 'response' && outcome.status === 200) {
        ledger.ghostsAcked += ids.length
        ledger.ghostsApplied += Number(outcome.body.applied ?? 0)
        await sleep(pauseMs)
      } else {
        await sleep(honour ? retryDelayMs(outcome, true) : pauseMs)
      }
    }
  }

  const loops = [
    ...Array.from({ length: options.producers }, (_, i) => producer(i)),
    ...Array.from({ length: options.workers }, (_, i) => worker(i)),
    ...Array.from({ length: options.ghostReporters ?? 0 }, (_, i) => ghostReporter(i))
  ]
  const done = Promise.all(loops)
  return {
    async stop (drainMs: number) {
      state.stopping = true
      state.drainDeadline = Date.now() + drainMs
      await done
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Verification against the database.

export interface Verification {
  /** Reports acknowledged with a 2xx (first answer per id). */
  acked: number
  /** …of which the database shows the reported outcome. */
  verified: number
  /** Acknowledged reports whose outcome is not in the database. */
  lost: string[]
  /** 503 ACK_TIMEOUT reports never acknowledged afterwards, and those of them written / not written. */
  promised: number
  promisedVerified: number
  promisedLost: string[]
  /** Produced tasks neither in the database, nor acknowledged, nor of uncertain outcome. */
  vanished: string[]
  /** Rows of this test's ids in inflight_tasks + deadletter_tasks, that nobody produced. */
  phantom: string[]
  rows: number
  deadletters: number
  completed: number
  /** Ids of produce requests with an unknown outcome that turned out stored (in a table, or reported). */
  maybeFound: number
  /** Tasks whose only reports had an unknown outcome and whose row is gone (the report was applied). */
  uncertainGone: number
  doubleClaims: string[]
  doubleCompletes: string[]
}

export async function verify (url: string, ledger: Ledger): Promise<Verification> {
  const sql = connectTo(url)
  let inflight: Map<string, string>
  let dead: Set<string>
  try {
    inflight = new Map((await sql`select id, status from inflight_tasks`).map(r => [r.id as string, r.status as string]))
    dead = new Set((await sql`select id from deadletter_tasks`).map(r => r.id as string))
  } finally {
    await sql.end({ timeout: 5 })
  }
  const outcomeIn = (id: string, status: ReportStatus): boolean => status === 'complete'
    ? !inflight.has(id) && !dead.has(id)
    : inflight.get(id) === 'failure' || dead.has(id)

  const lost: string[] = []
  let verified = 0
  let completed = 0
  for (const [id, { status }] of ledger.acked) {
    if (status === 'complete') completed++
    if (outcomeIn(id, status)) verified++
    else lost.push(`${id} (${status}, now ${inflight.get(id) ?? (dead.has(id) ? 'deadletter' : 'absent')})`)
  }
  const promisedOnly = [...ledger.promised].filter(id => !ledger.acked.has(id))
  const promisedLost = promisedOnly.filter(id => !outcomeIn(id, statusOf(id)))
  const vanished = [...ledger.produced].filter(id =>
    !inflight.has(id) && !dead.has(id) && !ledger.acked.has(id) && !ledger.uncertain.has(id) && !ledger.promised.has(id))
  const known = (id: string) => ledger.produced.has(id) || ledger.maybeProduced.has(id)
  const phantom = [...inflight.keys(), ...dead].filter(id => !known(id))
  const inTables = (id: string) => inflight.has(id) || dead.has(id)
  const maybeFound = [...ledger.maybeProduced].filter(id => !ledger.produced.has(id) && (inTables(id) || ledger.acked.has(id))).length
  const uncertainGone = [...ledger.uncertain].filter(id => !ledger.acked.has(id) && !inTables(id)).length
  return {
    acked: ledger.acked.size,
    verified,
    lost,
    promised: promisedOnly.length,
    promisedVerified: promisedOnly.length - promisedLost.length,
    promisedLost,
    vanished,
    phantom,
    rows: inflight.size,
    deadletters: dead.size,
    completed,
    maybeFound,
    uncertainGone,
    doubleClaims: [...ledger.claims].filter(([, n]) => n > 1).map(([id]) => id),
    doubleCompletes: [...ledger.appliedCompletes].filter(([, n]) => n > 1).map(([id]) => id)
  }
}

/** The standard assertions on traffic and verification, shared by every fault test. */
export function assertNoLoss (t: Test, v: Verification, ledger: Ledger): void {
  t.ok(v.acked > 0, 'reports were acknowledged')
  t.same(v.lost.slice(0, 20), [], `every acknowledged report is in the database (${v.verified}/${v.acked})`)
  t.same(v.promisedLost.slice(0, 20), [], `every report answered 503 ACK_TIMEOUT was still written (${v.promisedVerified}/${v.promised})`)
  t.same(v.vanished.slice(0, 20), [], 'no produced task vanished (each is in the database, or acknowledged, or of uncertain outcome)')
  t.same(v.phantom.slice(0, 20), [], 'no row that nobody produced')
  t.same(v.doubleCompletes.slice(0, 20), [], 'no task completed twice')
  t.same(v.doubleClaims.slice(0, 20), [], 'no task handed out twice')
  t.same(ledger.unexpectedNotFound.slice(0, 20), [], 'no claimed task was missing when its first report was written')
  t.equal(ledger.ghostsApplied, 0, 'reports for never-produced ids are never "applied"')
}

export function assertTrafficClean (t: Test, traffic: Traffic, options: { allowNetworkErrors?: boolean } = {}): void {
  t.equal(traffic.timeouts, 0, `no request timed out (client timeout ${REQUEST_TIMEOUT_MS / 1000} s)`)
  t.equal(traffic.other, 0, 'every answer was 2xx or 503')
  t.equal(traffic.unavailableWithoutRetryAfter, 0, 'every 503 carried Retry-After')
  if (traffic.otherSamples.length > 0) t.comment(`unexpected answers: ${traffic.otherSamples.join(' | ')}`)
  if (options.allowNetworkErrors !== true) t.equal(traffic.network, 0, 'no connection to the broker failed')
}

/** The one-line summary the README quotes. */
export function summary (name: string, traffic: Traffic, v: Verification | undefined, extra: Record<string, string | number>): string {
  const parts = [
    `${name}: requests ${traffic.sent} (2xx ${traffic.ok}, 503 ${traffic.unavailable}, other ${traffic.other}, timeouts ${traffic.timeouts}, network errors ${traffic.network})`
  ]
  if (v !== undefined) {
    parts.push(`reports acknowledged ${v.acked}, verified in DB ${v.verified}, lost ${v.lost.length + v.promisedLost.length + v.vanished.length}`)
  }
  for (const [key, value] of Object.entries(extra)) parts.push(`${key} ${value}`)
  return parts.join('; ')
}
