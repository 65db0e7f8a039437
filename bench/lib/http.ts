import { randomUUID } from 'node:crypto'

/** A minimal JSON client for the broker's API on an undici Pool (keep-alive, one request per connection at a time). */
import { Pool } from 'undici'

export interface Reply<T> { status: number, body: T }

export class Api {
  readonly pool: Pool
  constructor (readonly base: string, connections: number) {
    this.pool = new Pool(base, { connections, pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 600_000 })
  }

  /** POST a JSON body (a string is sent as is: pre-serialised). */
  async post<T> (path: string, body: unknown): Promise<Reply<T>> {
    const response = await this.pool.request({
      method: 'POST',
      path,
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body)
    })
    return { status: response.statusCode, body: await response.body.json() as T }
  }

  async patch<T> (path: string, body: unknown): Promise<Reply<T>> {
    const response = await this.pool.request({ method: 'PATCH', path, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return { status: response.statusCode, body: await response.body.json() as T }
  }

  async get<T> (path: string): Promise<Reply<T>> {
    const response = await this.pool.request({ method: 'GET', path })
    return { status: response.statusCode, body: await response.body.json() as T }
  }

  close (): Promise<void> {
    return this.pool.close()
  }
}

/** The parts of a claimed task the benchmark looks at. */
export interface ClaimedTask { id: string, parameters: { t?: number } | null, lease?: string }
export interface ClaimReply { tasks: ClaimedTask[] }
export interface StatusReply { applied: boolean, queued: boolean, task: ClaimedTask | null }
export interface BatchStatusReply { applied: number, queued: number, not_found: string[], stale?: string[] }
export interface BatchHeartbeatReply { extended: Array<{ id: string }>, not_processing: string[], stale: string[] }
export interface ProduceReply { ids: string[], inserted: number, duplicates: string[] }

/**
 * A no-op task as a producer would send it; `t` is the send time (wall ms) for latency runs. The id
 * is made here, so a produce request retried after a lost answer cannot store a task twice.
 */
export function benchTask (pad: string, t?: number, application = BENCH_APPLICATION, priority?: number): Record<string, unknown> {
  const task: Record<string, unknown> = { id: randomUUID(), application, namespace: BENCH_NAMESPACE, taskname: 'bench.noop', parameters: t === undefined ? { pad } : { pad, t } }
  if (priority !== undefined) task.priority = priority
  return task
}

/** The queue of the measured tasks; the noisy neighbour's tasks are of another application. */
export const BENCH_APPLICATION = 'bench'
export const BENCH_NAMESPACE = 'bench'
export const NOISY_APPLICATION = 'noisy'

/** The claim filter shapes workers use (each has an index of its own that starts with it). */
export type FilterShape = 'none' | 'application' | 'application+namespace'
export const FILTER_SHAPES: readonly FilterShape[] = ['none', 'application', 'application+namespace']

export function filterOf (shape: FilterShape): { application?: string, namespace?: string } {
  if (shape === 'none') return {}
  if (shape === 'application') return { application: BENCH_APPLICATION }
  return { application: BENCH_APPLICATION, namespace: BENCH_NAMESPACE }
}

/** Thrown for an answer that is not 2xx; the benchmark counts these as errors. */
export class HttpError extends Error {
  constructor (readonly status: number, readonly body: unknown) {
    super(`HTTP ${status}: ${JSON.stringify(body).slice(0, 300)}`)
  }
}

export function ok<T> (reply: Reply<T>): T {
  if (reply.status < 200 || reply.status > 299) throw new HttpError(reply.status, reply.body)
  return reply.body
}
