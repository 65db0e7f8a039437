/**
 * A reference push worker: an HTTP server that receives tasks from a broker in push mode, runs a
 * handler for each and reports the outcome to the broker's status endpoint (the task's
 * `callback_url`).
 *
 *   TASKBROKER_SECRET=s3cret PORT=9000 npx tsx examples/push-worker.ts
 *   # broker: TASKBROKER_DELIVERY_MODE=push TASKBROKER_WORKER_MAP=shop=http://127.0.0.1:9000/push
 *
 * The protocol, for workers written in other languages:
 * - The broker POSTs `{"task": <TaskActivation>, "callback_url": "http://broker/v1/tasks/<id>/status"}`
 *   as JSON. With secrets configured it signs it like any request to the broker
 *   (`taskbroker-signature`, `taskbroker-timestamp`; see src/auth/signing.ts).
 * - Answer 2xx once the task is yours (queued or running): the broker marks it `processing` and
 *   its processing deadline starts. Answer 429 or 503 (optionally with Retry-After) when busy: the
 *   task goes back to pending at once and the broker pauses pushes to this worker for a while.
 *   Any other answer, or none within the broker's push timeout, counts as a failed push too.
 * - Report the outcome with `POST callback_url {"status": "complete"|"failure"|"retry"}`, signed the
 *   same way. A task whose report never arrives runs again after its processing deadline.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import { Agent, request } from 'undici'
import { signRequest, verifySignature, SIGNATURE_HEADER, TIMESTAMP_HEADER } from '../src/auth/signing.js'

/** A task as pushed: the activation the producer sent, with the broker's defaults filled in. */
export interface PushedTask {
  id: string
  application: string
  namespace: string
  taskname: string
  parameters: unknown
  headers: Record<string, string>
  received_at: string
  processing_deadline_duration: number
  retry_state: { attempts: number, max_attempts: number, [field: string]: unknown }
  [field: string]: unknown
}

export type Outcome = 'complete' | 'failure' | 'retry' | { status: 'retry', delay_on_retry?: number, max_attempts?: number }

export interface PushWorkerOptions {
  /** Runs one task. Its result is reported (void = complete); a throw is reported as failure. */
  handler: (task: PushedTask) => Promise<Outcome | undefined> | Outcome | undefined
  host?: string // default 127.0.0.1
  port?: number // default 0: any free port
  path?: string // default /push
  /** Shared secrets: pushes must be signed with one of them; reports are signed with the first. */
  secrets?: readonly string[]
  /** Tasks run at once (default 16); up to `maxQueued` (default 4 × concurrency) more wait; beyond, pushes get 503. */
  concurrency?: number
  maxQueued?: number
  /** Signed timestamps further than this from now are refused (default 300 s). */
  maxSkewSec?: number
  /** Errors and refused pushes (default: nothing). */
  onError?: (message: string, error?: unknown) => void
}

export interface PushWorker {
  /** The URL to put in the broker's worker map. */
  readonly url: string
  readonly stats: { received: number, refused: number, unauthorized: number, reported: number, reportFailures: number }
  /** Stops accepting pushes and waits until every accepted task has run and been reported. */
  close (): Promise<void>
}

const MAX_BODY_BYTES = 5 * 1024 * 1024
const REPORT_ATTEMPTS = 8

export async function startPushWorker (options: PushWorkerOptions): Promise<PushWorker> {
  const path = options.path ?? '/push'
  const secrets = options.secrets ?? []
  const concurrency = options.concurrency ?? 16
  const maxQueued = options.maxQueued ?? concurrency * 4
  const onError = options.onError ?? (() => {})
  const agent = new Agent({ keepAliveTimeout: 30_000 })
  const stats = { received: 0, refused: 0, unauthorized: 0, reported: 0, reportFailures: 0 }
  const queue: Array<{ task: PushedTask, callbackUrl: string }> = []
  let running = 0
  let idle: (() => void) | undefined

  function pump (): void {
    while (running < concurrency && queue.length > 0) {
      const next = queue.shift() as { task: PushedTask, callbackUrl: string }
      running++
      run(next.task, next.callbackUrl).finally(() => {
        running--
        pump()
        if (running === 0 && queue.length === 0) idle?.()
      })
    }
  }

  async function run (task: PushedTask, callbackUrl: string): Promise<void> {
    let body: Record<string, unknown>
    try {
      const outcome = (await options.handler(task)) ?? 'complete'
      body = typeof outcome === 'string' ? { status: outcome } : { ...outcome }
    } catch (error) {
      onError(`task ${task.id} failed`, error)
      body = { status: 'failure' }
    }
    await report(callbackUrl, JSON.stringify(body))
  }

  /** Reports an outcome, retrying while the broker is busy, restarting or briefly unreachable. */
  async function report (callbackUrl: string, body: string): Promise<void> {
    const url = new URL(callbackUrl)
    for (let attempt = 1; attempt <= REPORT_ATTEMPTS; attempt++) {
      const headers: Record<string, string> = { 'content-type': 'application/json' }
      if (secrets[0] !== undefined) Object.assign(headers, signRequest(secrets[0], { method: 'POST', path: `${url.pathname}${url.search}`, body }))
      try {
        const response = await request(url, { dispatcher: agent, method: 'POST', headers, body })
        await response.body.dump()
        if (response.statusCode === 200) {
          stats.reported++
          return
        }
        if (response.statusCode !== 503 && response.statusCode !== 429) {
          stats.reportFailures++
          onError(`report to ${callbackUrl} answered ${response.statusCode}; not retried`)
          return
        }
      } catch (error) {
        if (attempt === REPORT_ATTEMPTS) onError(`report to ${callbackUrl} failed`, error)
      }
      await new Promise(resolve => setTimeout(resolve, Math.min(100 * 2 ** (attempt - 1), 5_000)))
    }
    stats.reportFailures++
  }

  function answer (res: ServerResponse, statusCode: number, body: Record<string, unknown>, headers: Record<string, string> = {}): void {
    res.writeHead(statusCode, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body))
  }

  async function onPush (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req) {
      size += (chunk as Buffer).length
      if (size > MAX_BODY_BYTES) return answer(res, 413, { error: 'body too large' })
      chunks.push(chunk as Buffer)
    }
    const raw = Buffer.concat(chunks)
    if (secrets.length > 0) {
      const header = (name: string) => typeof req.headers[name] === 'string' ? req.headers[name] : undefined
      const ok = verifySignature(secrets, {
        method: req.method ?? 'POST',
        path: req.url ?? '',
        body: raw,
        signature: header(SIGNATURE_HEADER),
        timestamp: header(TIMESTAMP_HEADER),
        maxSkewSec: options.maxSkewSec ?? 300
      })
      if (!ok) {
        stats.unauthorized++
        onError('push with a missing or wrong signature refused')
        return answer(res, 401, { error: 'unauthorized' })
      }
    }
    let push: { task?: PushedTask, callback_url?: string }
    try {
      push = JSON.parse(raw.toString('utf8'))
    } catch {
      return answer(res, 400, { error: 'invalid JSON' })
    }
    if (typeof push.task?.id !== 'string' || typeof push.callback_url !== 'string') return answer(res, 400, { error: 'expected {task, callback_url}' })
    if (running + queue.length >= concurrency + maxQueued) {
      stats.refused++
      return answer(res, 503, { error: 'busy' }, { 'retry-after': '1' })
    }
    stats.received++
    queue.push({ task: push.task, callbackUrl: push.callback_url })
    pump()
    answer(res, 202, { accepted: true })
  }

  const server: Server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url?.split('?')[0] !== path) return answer(res, 404, { error: 'not found' })
    onPush(req, res).catch((error: unknown) => {
      onError('push handling failed', error)
      if (!res.headersSent) answer(res, 500, { error: 'internal error' })
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve())
  })
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address

  return {
    url: `http://${host}:${address.port}${path}`,
    stats,
    async close () {
      await new Promise<void>(resolve => {
        server.close(() => resolve())
        server.closeIdleConnections()
      })
      if (running > 0 || queue.length > 0) await new Promise<void>(resolve => { idle = resolve })
      await agent.close()
    }
  }
}

// Run directly: a worker that logs each task and completes it.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // Pushes are verified with every secret given (rotation): those of TASKBROKER_AUTH_SECRETS and TASKBROKER_SECRET.
  const secrets = [...new Set([...(process.env.TASKBROKER_AUTH_SECRETS ?? '').split(','), process.env.TASKBROKER_SECRET ?? ''].map(s => s.trim()).filter(s => s !== ''))]
  const worker = await startPushWorker({
    port: Number(process.env.PORT ?? 9000),
    host: process.env.HOST ?? '127.0.0.1',
    secrets,
    handler: (task) => {
      console.log(`${new Date().toISOString()} ${task.application}/${task.namespace} ${task.taskname} ${task.id} ${JSON.stringify(task.parameters)}`)
      return 'complete'
    },
    onError: (message, error) => console.error(message, error ?? '')
  })
  console.log(`push worker listening: ${worker.url}${secrets.length > 0 ? ' (signed pushes only)' : ''}`)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => { worker.close().then(() => process.exit(0), () => process.exit(1)) })
}
