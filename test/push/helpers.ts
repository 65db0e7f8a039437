/**
 * Push-mode test kit: a broker in push mode listening on a real loopback port, fake workers whose
 * behaviour a test switches at will, and small waits and store reads.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import { signRequest } from '../../src/auth/signing.js'
import type { Database } from '../../src/db/database.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import type { BackendName } from '../helpers/database.js'

/** Push settings that keep tests fast: short waits, short backoffs, no upkeep on its own timer. */
export const PUSH_ENV: Record<string, string> = {
  TASKBROKER_DELIVERY_MODE: 'push',
  TASKBROKER_UPKEEP_ENABLED: 'false',
  TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: '0',
  TASKBROKER_PUSH_FETCH_BACKOFF_MS: '20',
  TASKBROKER_PUSH_WORKER_BACKOFF_MS: '20',
  TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS: '200',
  // Generous: a push that times out is delivered twice, which tests that count deliveries would
  // see. Here the broker, its workers and PGlite share one event loop, so on a loaded machine a
  // push can wait seconds behind PGlite statements (15 of 100 pushes passed 10 s in one run);
  // tests of timeouts set a short one, and a push that really hangs still fails the test's wait.
  TASKBROKER_PUSH_TIMEOUT_MS: '60000'
}

export interface PushApp extends TestApp {
  /** http://127.0.0.1:<port> the broker listens on. */
  baseUrl: string
}

/** A push-mode broker listening on 127.0.0.1 (any free port); closed when the test ends. */
export async function startPushApp (t: Test, backend: BackendName, env: Record<string, string>): Promise<PushApp> {
  const built = await buildTestApp(t, backend, { ...PUSH_ENV, ...env })
  await built.app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = built.app.server.address() as AddressInfo
  return { ...built, baseUrl: `http://127.0.0.1:${port}` }
}

/** A port nothing listens on (yet): for a worker that is down. */
export { freePort } from '../../bench/lib/process.js'

export type FakeMode =
  | 'accept' // 202
  | 'refuse' // 503 + Retry-After: 0
  | 'reject' // 500
  | 'hang' // no answer until the mode changes or the worker closes

export interface Push { task: { id: string, application: string, [field: string]: unknown }, callback_url: string, lease: string, priority: number, headers: IncomingMessage['headers'] }

export interface FakeWorker {
  url: string
  port: number
  mode: FakeMode
  /** Milliseconds to wait before answering (whatever the mode). */
  delayMs: number
  /** Report `complete` to the callback URL after accepting. */
  complete: boolean
  /** Every push received, whatever was answered. */
  readonly received: Push[]
  /** Ids answered 2xx (the broker was told the worker has them). */
  readonly accepted: string[]
  /** Completions reported (answered 200). */
  readonly completed: string[]
  close (): Promise<void>
}

/** A worker whose answers the test controls; closed when the test ends. */
export async function fakeWorker (t: Test, options: { port?: number, mode?: FakeMode, delayMs?: number, complete?: boolean } = {}): Promise<FakeWorker> {
  const hanging = new Set<ServerResponse>()
  const worker: FakeWorker = {
    url: '',
    port: 0,
    mode: options.mode ?? 'accept',
    delayMs: options.delayMs ?? 0,
    complete: options.complete ?? false,
    received: [],
    accepted: [],
    completed: [],
    close: async () => {
      for (const res of hanging) res.destroy()
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
    }
  }
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const push = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Push
      push.headers = req.headers
      worker.received.push(push)
      const respond = async () => {
        if (worker.delayMs > 0) await sleep(worker.delayMs)
        while (worker.mode === 'hang' && !res.destroyed) {
          hanging.add(res)
          await sleep(10)
        }
        hanging.delete(res)
        if (res.destroyed) return
        if (worker.mode === 'refuse') return res.writeHead(503, { 'retry-after': '0' }).end('busy')
        if (worker.mode === 'reject') return res.writeHead(500).end('broken')
        res.writeHead(202).end()
        worker.accepted.push(push.task.id)
        if (worker.complete) {
          const answer = await fetch(push.callback_url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"status":"complete"}' })
          if (answer.status === 200) worker.completed.push(push.task.id)
        }
      }
      respond().catch(() => {})
    })
  })
  await new Promise<void>(resolve => server.listen(options.port ?? 0, '127.0.0.1', resolve))
  worker.port = (server.address() as AddressInfo).port
  worker.url = `http://127.0.0.1:${worker.port}/push`
  t.teardown(() => worker.close())
  return worker
}

/** Produces tasks (signed when `secret` is given); returns their ids. */
export async function produce (t: Test, app: FastifyInstance, tasks: Array<Record<string, unknown>>, secret?: string): Promise<string[]> {
  const payload = JSON.stringify({ tasks })
  const headers = { 'content-type': 'application/json', ...(secret === undefined ? {} : signRequest(secret, { method: 'POST', path: '/v1/tasks', body: payload })) }
  const res = await app.inject({ method: 'POST', url: '/v1/tasks', headers, payload })
  t.equal(res.statusCode, 201, 'produced')
  return res.json().ids
}

/**
 * Polls `check` every 10 ms until it holds; fails the test (and returns false) after `timeoutMs`,
 * a bound for a bug, not a speed target: generous, so a loaded machine is only slower.
 */
export async function until (t: Test, what: string, check: () => boolean | Promise<boolean>, timeoutMs = 90_000): Promise<boolean> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await check()) return true
    await sleep(10)
  }
  t.fail(`timed out waiting until ${what}`)
  return false
}

export interface TaskRow { id: string, status: string, processing_attempts: number, claim_expires_at: unknown, processing_deadline: unknown }

export async function taskRows (database: Database): Promise<TaskRow[]> {
  return await database.rows(sql`select id, status, processing_attempts, claim_expires_at, processing_deadline from inflight_tasks order by id`) as unknown as TaskRow[]
}

export async function statusCounts (database: Database): Promise<Record<string, number>> {
  const counts: Record<string, number> = {}
  for (const row of await taskRows(database)) counts[row.status] = (counts[row.status] ?? 0) + 1
  return counts
}

/** The value of a metric line from /metrics, e.g. `taskbroker_push_total{result="delivered"}`; 0 when absent. */
export async function metric (app: FastifyInstance, line: string): Promise<number> {
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
  const found = text.split('\n').find(l => l.startsWith(`${line} `))
  return found === undefined ? 0 : Number(found.slice(line.length + 1))
}

export const unique = <T>(items: readonly T[]) => [...new Set(items)]
