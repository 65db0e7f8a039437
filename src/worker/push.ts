/**
 * The push side of the SDK: a receiver that verifies signed pushes (`{task, callback_url}`, see
 * README "A push worker"), answers 202 while it has room (503 + Retry-After when full), runs the
 * same handler model as the pull worker and reports each outcome to `callback_url`, retrying until
 * written. `createPushHandler` serves it on Node's `http`; push-fastify.ts on Fastify.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import pino, { type Logger } from 'pino'
import { NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verifySignature } from '../auth/signing.js'
import { createClient } from '../client/client.js'
import { isRouteNotFound } from '../client/errors.js'
import type { StatusRequest, Task } from '../client/types.js'
import { dropReport, heartbeatEveryMs, isGone, MAX_TIMER_MS, runHandler, TaskAbortedError, type AbortReason, type Handler } from './run-task.js'

export interface PushReceiverOptions {
  handler: Handler
  /** TASKBROKER_AUTH_SECRETS of the broker: pushes must be signed with one; reports are signed with the first. */
  secrets?: readonly string[]
  /** Tasks run at once (default 16); up to `maxQueued` (default 4 × concurrency) more wait; beyond, pushes get 503. */
  concurrency?: number
  maxQueued?: number
  /** Longest a handler may run (default: no limit): then its signal aborts with `timeout` and heartbeats stop. */
  taskTimeoutMs?: number
  /** Signed timestamps further than this from now are refused (default 300 s). */
  maxSkewSec?: number
  logger?: Logger
}

export interface PushAnswer { statusCode: number, body: Record<string, unknown>, headers?: Record<string, string> }

export interface PushReceiver {
  /** Judges one push request and, when accepted, queues its task. */
  receive: (request: { method: string, path: string, body: string | Uint8Array, header: (name: string) => string | undefined }) => PushAnswer
  readonly stats: { received: number, refused: number, unauthorized: number, reported: number, reportFailures: number }
  /** Refuses further pushes, waits until every accepted task has run and been reported. */
  close: () => Promise<void>
}

export const PUSH_MAX_BODY_BYTES = 5 * 1024 * 1024

/** A push taken: its task, where to report, and the claim's lease (sent back so a stale report is refused). */
interface Accepted { task: Task, callbackUrl: string, lease: string | undefined, receivedAt: number }

export function createPushReceiver (options: PushReceiverOptions): PushReceiver {
  const secrets = options.secrets ?? []
  const concurrency = Math.max(1, options.concurrency ?? 16)
  const maxQueued = options.maxQueued ?? concurrency * 4
  const log = options.logger ?? pino({ name: 'taskbroker-push', level: process.env.LOG_LEVEL ?? 'info' })
  // One client for every broker that pushes here: it signs reports and keeps connections alive.
  const client = createClient({ url: 'http://localhost', ...(secrets.length > 0 ? { secrets } : {}) })
  const stats = { received: 0, refused: 0, unauthorized: 0, reported: 0, reportFailures: 0 }
  const queue: Accepted[] = []
  let running = 0
  let closing = false
  let idle: (() => void) | undefined
  let heartbeats: boolean | undefined

  function pump () {
    while (running < concurrency && queue.length > 0) {
      const next = queue.shift() as Accepted
      running++
      run(next).catch((error: unknown) => log.error({ err: error }, 'push task failed unexpectedly')).finally(() => {
        running--
        pump()
        if (running === 0 && queue.length === 0) idle?.()
      })
    }
  }

  async function run ({ task, callbackUrl, lease, receivedAt }: Accepted) {
    const controller = new AbortController()
    const beats = new AbortController() // aborted when the handler ends: a heartbeat in flight is dropped
    const abort = (reason: AbortReason) => { if (!controller.signal.aborted) controller.abort(new TaskAbortedError(reason)) }
    let deadline: NodeJS.Timeout | undefined
    const armDeadline = (ms: number) => {
      clearTimeout(deadline)
      if (!Number.isFinite(ms)) return
      if (ms <= 0) abort('deadline') // already passed: the handler sees it from its first moment
      else deadline = setTimeout(() => abort('deadline'), Math.min(ms, MAX_TIMER_MS))
    }
    // A pushed task's deadline started when it was delivered (it may have waited in the queue
    // since). Each heartbeat moves it.
    armDeadline(task.processing_deadline_duration * 1000 - (Date.now() - receivedAt))
    const heartbeat = async (progress?: unknown) => {
      if (heartbeats === false || controller.signal.aborted) return
      try {
        const answer = await client.heartbeatAt(callbackUrl, { ...(progress === undefined ? {} : { progress }), ...(lease === undefined ? {} : { lease }) }, { signal: beats.signal })
        if (beats.signal.aborted) return
        heartbeats = true
        armDeadline(Date.parse(answer.processing_deadline) - Date.now())
        if (answer.cancel_requested) abort('cancelled')
      } catch (error) {
        if (beats.signal.aborted) return
        if (isRouteNotFound(error)) heartbeats = false
        else if (isGone(error)) abort('lost')
        else log.warn({ taskId: task.id, err: error }, 'heartbeat failed')
      }
    }
    // Kept alive as the pull worker keeps its tasks: a heartbeat every third of the deadline.
    const beating = heartbeats === false ? undefined : setInterval(() => { heartbeat().catch(() => {}) }, heartbeatEveryMs(task.processing_deadline_duration))
    const timeout = options.taskTimeoutMs === undefined
      ? undefined
      : setTimeout(() => { abort('timeout'); clearInterval(beating) }, Math.min(options.taskTimeoutMs, MAX_TIMER_MS))
    const { report, error } = await runHandler(options.handler, task, { signal: controller.signal, heartbeat })
    clearInterval(beating)
    clearTimeout(deadline)
    clearTimeout(timeout)
    beats.abort()
    if (error !== undefined) log.debug({ taskId: task.id, err: error }, 'task failed')
    if (dropReport(controller.signal, report)) {
      log.warn({ taskId: task.id, reason: (controller.signal.reason as TaskAbortedError).reason }, 'task failed after it was aborted: not reported; the broker runs it again after its deadline')
      return
    }
    await send(task, callbackUrl, lease === undefined ? report : { ...report, lease })
  }

  async function send (task: Task, callbackUrl: string, report: StatusRequest) {
    try {
      await client.reportTo(callbackUrl, report, { retry: { attempts: 20, maxMs: 5_000 } })
      stats.reported++
    } catch (error) {
      stats.reportFailures++
      log.warn({ taskId: task.id, err: error }, 'report not written; the broker runs the task again after its deadline')
    }
  }

  function receive (request: Parameters<PushReceiver['receive']>[0]): PushAnswer {
    if (secrets.length > 0 && !verifySignature(secrets, {
      method: request.method,
      path: request.path,
      body: request.body,
      signature: request.header(SIGNATURE_HEADER),
      timestamp: request.header(TIMESTAMP_HEADER),
      nonce: request.header(NONCE_HEADER),
      maxSkewSec: options.maxSkewSec ?? 300
    })) {
      stats.unauthorized++
      log.warn('push with a missing or wrong signature refused')
      return { statusCode: 401, body: { error: 'unauthorized' } }
    }
    let push: { task?: Task, callback_url?: unknown, lease?: unknown }
    try {
      push = JSON.parse(typeof request.body === 'string' ? request.body : Buffer.from(request.body).toString('utf8')) as typeof push
    } catch {
      return { statusCode: 400, body: { error: 'invalid JSON' } }
    }
    if (typeof push !== 'object' || push === null || typeof push.task?.id !== 'string' || typeof push.callback_url !== 'string') {
      return { statusCode: 400, body: { error: 'expected {task, callback_url}' } }
    }
    if (closing || running + queue.length >= concurrency + maxQueued) {
      stats.refused++
      return { statusCode: 503, body: { error: closing ? 'closing' : 'busy' }, headers: { 'retry-after': '1' } }
    }
    stats.received++
    queue.push({ task: push.task, callbackUrl: push.callback_url, lease: typeof push.lease === 'string' ? push.lease : undefined, receivedAt: Date.now() })
    pump()
    return { statusCode: 202, body: { accepted: true } }
  }

  return {
    receive,
    stats,
    async close () {
      closing = true
      if (running > 0 || queue.length > 0) await new Promise<void>(resolve => { idle = resolve })
      await client.close()
    }
  }
}

/** A `(req, res)` listener for Node's http server: POSTs to any path are pushes (route them yourself). */
export function createPushHandler (options: PushReceiverOptions): ((req: IncomingMessage, res: ServerResponse) => void) & { receiver: PushReceiver } {
  const receiver = createPushReceiver(options)
  const reply = (res: ServerResponse, answer: PushAnswer) => {
    res.writeHead(answer.statusCode, { 'content-type': 'application/json', ...answer.headers }).end(JSON.stringify(answer.body))
  }
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'POST') return reply(res, { statusCode: 405, body: { error: 'POST only' } })
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= PUSH_MAX_BODY_BYTES) chunks.push(chunk)
    })
    req.on('end', () => {
      if (size > PUSH_MAX_BODY_BYTES) return reply(res, { statusCode: 413, body: { error: 'body too large' } })
      const header = (name: string) => { const v = req.headers[name]; return typeof v === 'string' ? v : undefined }
      reply(res, receiver.receive({ method: 'POST', path: req.url ?? '/', body: Buffer.concat(chunks), header }))
    })
    req.on('error', () => res.destroy())
  }
  return Object.assign(listener, { receiver })
}
