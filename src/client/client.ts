/**
 * `createClient({url, secrets?})`: every call of API v1 over keep-alive connections (an undici
 * Agent), signed when secrets are given (afresh for every attempt, with a nonce), errors thrown
 * as `TaskbrokerError` with the broker's code. 503/429 and lost connections are retried after
 * `Retry-After` (or a backoff) with jitter, but only where repeating the call is harmless (see
 * retry.ts): a claim is retried only when the broker surely claimed nothing.
 */
import { randomUUID } from 'node:crypto'
import { Agent, request, type Dispatcher } from 'undici'
import { signRequest } from '../auth/signing.js'
import { TaskbrokerError, TaskbrokerUnreachableError } from './errors.js'
import { DEFAULT_RETRY, withRetry, type RetryOptions } from './retry.js'
import type {
  BatchHeartbeat, BatchHeartbeatResult, BatchStatusResult, BatchStatusUpdate, CancelFilter, CancelManyResult, CancelResult, ClaimRequest,
  ClaimResult, DeadletterPage, DeadletterQuery, HeartbeatRequest, HeartbeatResult, ProduceResult, QueueChangeResult, QueueList,
  QueueSettingsPatch, ReleaseRequest, ReleaseResult, RequeueResult, Schedule, ScheduleInput, ScheduleList, Stats, StatusRequest,
  StatusResult, TaskInput, TaskState, TriggerResult
} from './types.js'

export interface ClientOptions {
  /** The broker's base URL, e.g. http://127.0.0.1:8080. */
  url: string
  /** TASKBROKER_AUTH_SECRETS of the broker; requests are signed with the first. */
  secrets?: readonly string[]
  retry?: RetryOptions
  /** Longest wait for an answer beyond a claim's own wait_ms (default 30 s). */
  timeoutMs?: number
  /** Keep-alive connections per origin (default 16). */
  connections?: number
  /** Called before each retry (logging, metrics). */
  onRetry?: (info: { method: string, path: string, error: unknown, attempt: number, waitMs: number }) => void
}

export interface CallOptions {
  signal?: AbortSignal
  /** Per-call retry settings (e.g. `{attempts: Infinity}` for a report that must be written). */
  retry?: RetryOptions
}

interface Call {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  path: string
  body?: unknown
  safe: boolean
  /** Extra time to allow for an answer (a claim's long-poll). */
  waitMs?: number
  options?: CallOptions | undefined
}

function query (params: object): string {
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(params)) if (value !== undefined) search.set(key, String(value))
  const text = search.toString()
  return text === '' ? '' : `?${text}`
}

const id = (value: string) => encodeURIComponent(value)

export function createClient (options: ClientOptions) {
  const base = new URL(options.url)
  const basePath = base.pathname.replace(/\/+$/, '')
  const secret = options.secrets?.[0]
  const retryDefaults = { ...DEFAULT_RETRY, ...options.retry }
  const timeoutMs = options.timeoutMs ?? 30_000
  const agent: Dispatcher = new Agent({ connections: options.connections ?? 16, keepAliveTimeout: 30_000, pipelining: 1 })

  /** One attempt of a call against `target` (an absolute URL: push callbacks give their own). */
  async function attempt (method: string, target: URL, body: string | undefined, waitMs: number, signal?: AbortSignal): Promise<unknown> {
    const path = `${target.pathname}${target.search}`
    const headers: Record<string, string> = { accept: 'application/json' }
    if (body !== undefined) headers['content-type'] = 'application/json'
    if (secret !== undefined) Object.assign(headers, signRequest(secret, { method, path, body: body ?? '' }))
    const timeout = AbortSignal.timeout(timeoutMs + waitMs)
    let answer: Dispatcher.ResponseData
    try {
      answer = await request(target, {
        method: method as Dispatcher.HttpMethod,
        headers,
        body,
        dispatcher: agent,
        signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout])
      })
    } catch (error) {
      if (signal?.aborted === true) throw error
      const code = (error as { code?: string }).code
      throw new TaskbrokerUnreachableError(`${method} ${path}: ${(error as Error).message}`, code !== 'ECONNREFUSED', { cause: error })
    }
    const text = await answer.body.text()
    const parsed: unknown = text === '' ? null : safeParse(text)
    if (answer.statusCode >= 200 && answer.statusCode < 300) return parsed
    const error = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>
    const retryAfter = Number(answer.headers['retry-after'])
    throw new TaskbrokerError(
      answer.statusCode,
      typeof error.code === 'string' ? error.code : `HTTP_${answer.statusCode}`,
      typeof error.message === 'string' ? error.message : text.slice(0, 200),
      Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : undefined,
      error
    )
  }

  async function call<T> (c: Call, target: URL = new URL(`${basePath}${c.path}`, base)): Promise<T> {
    const body = c.body === undefined ? undefined : JSON.stringify(c.body)
    const retry = { ...retryDefaults, ...c.options?.retry }
    return await withRetry(() => attempt(c.method, target, body, c.waitMs ?? 0, c.options?.signal), c.safe, retry, {
      signal: c.options?.signal,
      onRetry: (error, attemptNo, waitMs) => options.onRetry?.({ method: c.method, path: target.pathname, error, attempt: attemptNo, waitMs })
    }) as T
  }

  return {
    url: base.toString(),

    /** Produces tasks; ids are given here first, so a retry never makes a task twice. */
    async produce (tasks: TaskInput[], o?: CallOptions): Promise<ProduceResult> {
      const withIds = tasks.map(t => t.id === undefined ? { ...t, id: randomUUID() } : t)
      return await call({ method: 'POST', path: '/v1/tasks', body: { tasks: withIds }, safe: true, options: o })
    },
    /** Claims tasks (long-polls `wait_ms`); retried only when the broker claimed nothing. */
    async claim (body: ClaimRequest = {}, o?: CallOptions): Promise<ClaimResult> {
      return await call({ method: 'POST', path: '/v1/tasks/claim', body, safe: false, waitMs: body.wait_ms ?? 0, options: o })
    },
    /** Reports one outcome; with `fetch_next` it also claims, so it is retried only when nothing was done. */
    async report (taskId: string, body: StatusRequest, o?: CallOptions): Promise<StatusResult> {
      return await call({ method: 'POST', path: `/v1/tasks/${id(taskId)}/status`, body, safe: body.fetch_next === undefined, waitMs: body.fetch_next?.wait_ms ?? 0, options: o })
    },
    /** Reports many outcomes in one request (POST /v1/tasks/status). */
    async reportMany (updates: BatchStatusUpdate[], o?: CallOptions): Promise<BatchStatusResult> {
      return await call({ method: 'POST', path: '/v1/tasks/status', body: { updates }, safe: true, options: o })
    },
    /** Reports to a push's `callback_url` (an absolute URL the broker gave). */
    async reportTo (callbackUrl: string, body: StatusRequest, o?: CallOptions): Promise<StatusResult> {
      return await call({ method: 'POST', path: '', body, safe: body.fetch_next === undefined, options: o }, new URL(callbackUrl))
    },
    /** A heartbeat for a pushed task, to the broker its `callback_url` names. */
    async heartbeatAt (callbackUrl: string, body: HeartbeatRequest = {}, o?: CallOptions): Promise<HeartbeatResult> {
      const target = new URL(callbackUrl)
      target.pathname = target.pathname.replace(/\/status$/, '/heartbeat')
      return await call({ method: 'POST', path: '', body, safe: true, options: o }, target)
    },
    async getTask (taskId: string, o?: CallOptions): Promise<TaskState> {
      return await call({ method: 'GET', path: `/v1/tasks/${id(taskId)}`, safe: true, options: o })
    },
    async heartbeat (taskId: string, body: HeartbeatRequest = {}, o?: CallOptions): Promise<HeartbeatResult> {
      return await call({ method: 'POST', path: `/v1/tasks/${id(taskId)}/heartbeat`, body, safe: true, options: o })
    },
    /** Heartbeats of many tasks; ids not processing or held under another lease are listed, not thrown. */
    async heartbeatMany (heartbeats: BatchHeartbeat[], o?: CallOptions): Promise<BatchHeartbeatResult> {
      return await call({ method: 'POST', path: '/v1/tasks/heartbeat', body: { heartbeats }, safe: true, options: o })
    },
    /** Gives a claimed task back (pending again, no attempt counted). */
    async release (taskId: string, body: ReleaseRequest = {}, o?: CallOptions): Promise<ReleaseResult> {
      return await call({ method: 'POST', path: `/v1/tasks/${id(taskId)}/release`, body, safe: true, options: o })
    },
    /** Cancels a task: removed when waiting, asked to stop (`requested`) when held by a worker. */
    async cancel (taskId: string, o?: CallOptions): Promise<CancelResult> {
      return await call({ method: 'POST', path: `/v1/tasks/${id(taskId)}/cancel`, body: {}, safe: true, options: o })
    },
    async cancelMatching (filter: CancelFilter, o?: CallOptions): Promise<CancelManyResult> {
      return await call({ method: 'POST', path: '/v1/tasks/cancel', body: filter, safe: true, options: o })
    },
    async stats (o?: CallOptions): Promise<Stats> {
      return await call({ method: 'GET', path: '/v1/stats', safe: true, options: o })
    },
    async listDeadletters (q: DeadletterQuery = {}, o?: CallOptions): Promise<DeadletterPage> {
      return await call({ method: 'GET', path: `/v1/deadletters${query(q)}`, safe: true, options: o })
    },
    /** Requeues a dead letter; a retry after a lost answer would find it gone (404), so only "nothing done" is retried. */
    async requeueDeadletter (taskId: string, o?: CallOptions): Promise<RequeueResult> {
      return await call({ method: 'POST', path: `/v1/deadletters/${id(taskId)}/requeue`, body: {}, safe: false, options: o })
    },
    async purgeDeadletter (taskId: string, o?: CallOptions): Promise<void> {
      await call({ method: 'DELETE', path: `/v1/deadletters/${id(taskId)}`, safe: false, options: o })
    },
    async listQueues (o?: CallOptions): Promise<QueueList> {
      return await call({ method: 'GET', path: '/v1/queues', safe: true, options: o })
    },
    async updateQueue (patch: QueueSettingsPatch, o?: CallOptions): Promise<QueueChangeResult> {
      return await call({ method: 'PATCH', path: '/v1/queues', body: patch, safe: true, options: o })
    },
    async listSchedules (o?: CallOptions): Promise<ScheduleList> {
      return await call({ method: 'GET', path: '/v1/schedules', safe: true, options: o })
    },
    async getSchedule (name: string, o?: CallOptions): Promise<Schedule> {
      return await call({ method: 'GET', path: `/v1/schedules/${id(name)}`, safe: true, options: o })
    },
    async putSchedule (name: string, schedule: ScheduleInput, o?: CallOptions): Promise<Schedule> {
      return await call({ method: 'PUT', path: `/v1/schedules/${id(name)}`, body: schedule, safe: true, options: o })
    },
    async deleteSchedule (name: string, o?: CallOptions): Promise<void> {
      await call({ method: 'DELETE', path: `/v1/schedules/${id(name)}`, safe: true, options: o })
    },
    /** Runs a schedule now; each trigger makes a task, so only "nothing done" is retried. */
    async triggerSchedule (name: string, o?: CallOptions): Promise<TriggerResult> {
      return await call({ method: 'POST', path: `/v1/schedules/${id(name)}/trigger`, body: {}, safe: false, options: o })
    },
    /** True when /readyz answers 200. */
    async ready (o?: CallOptions): Promise<boolean> {
      try {
        await call({ method: 'GET', path: '/readyz', safe: false, options: { ...o, retry: { attempts: 1 } } })
        return true
      } catch (error) {
        if (error instanceof TaskbrokerError) return false
        throw error
      }
    },
    /** Closes the keep-alive connections. */
    async close (): Promise<void> {
      await agent.close()
    }
  }
}

export type TaskbrokerClient = ReturnType<typeof createClient>

function safeParse (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return { message: text.slice(0, 200) }
  }
}
