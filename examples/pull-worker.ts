/**
 * A reference pull worker: claims tasks from the broker (long-polling), runs a handler for each
 * and reports the outcome, asking for the next task in the same request (`fetch_next`).
 *
 *   TASKBROKER_URL=http://127.0.0.1:8080 TASKBROKER_SECRET=s3cret npx tsx examples/pull-worker.ts
 *
 * What it does, for workers written in other languages:
 * - `POST /v1/tasks/claim {application?, namespace?, limit: 1, wait_ms}`: the broker answers at
 *   once when a task is ready, else when one arrives or wait_ms has passed (`{tasks: []}`).
 * - `POST /v1/tasks/<id>/status {status, fetch_next: {application?, namespace?}}` reports the
 *   outcome and hands back the next task (`task`, or null: then claim again).
 * - A 503 means "not now": wait `Retry-After` seconds and send the same request again (a report
 *   sent twice is harmless). A connection error: wait a second and try again.
 * - On SIGTERM: claim nothing more, finish the task in hand and report it without fetch_next,
 *   then exit, so no task is left held until its deadline. A long-poll in flight is left to
 *   answer (at most wait_ms), because a claim cut off may already have taken a task.
 * - With secrets, every attempt is signed afresh with the first one (`taskbroker-signature`,
 *   `taskbroker-timestamp`, and a `taskbroker-nonce`: two claims with one body in one second
 *   would otherwise carry the same signature, and the second be refused as a replay; see
 *   src/auth/signing.ts).
 */
import { pathToFileURL } from 'node:url'
import { signRequest } from '../src/auth/signing.js'

/** A claimed task: the activation the producer sent, with the broker's fields. */
export interface ClaimedTask {
  id: string
  application: string
  namespace: string
  taskname: string
  parameters: unknown
  processing_deadline: string
  retry_state: { attempts: number, max_attempts: number, [field: string]: unknown }
  [field: string]: unknown
}

export type Outcome = 'complete' | 'failure' | 'retry' | { status: 'retry', delay_on_retry?: number, max_attempts?: number }

export interface PullWorkerOptions {
  /** The broker's base URL, e.g. http://127.0.0.1:8080. */
  brokerUrl: string
  /** Runs one task. Its result is reported (void = complete); a throw is reported as failure. */
  handler: (task: ClaimedTask) => Promise<Outcome | undefined> | Outcome | undefined
  /** Only tasks of this application (and namespace, which needs an application). */
  application?: string
  namespace?: string
  /** Shared secrets (of the broker's TASKBROKER_AUTH_SECRETS); requests are signed with the first. */
  secrets?: readonly string[]
  /** Long-poll length of a claim (default 5000 ms); also the longest stop() waits for an idle worker. */
  waitMs?: number
  /** Errors and retries (default: nothing). */
  onError?: (message: string, error?: unknown) => void
}

export interface PullWorker {
  /** Tasks reported so far. */
  readonly reported: number
  /** Claims nothing more, finishes and reports the task in hand; resolves when the loop has ended. */
  stop: () => Promise<void>
  /** Resolves when the loop ends: with undefined after stop(), with the error on one it cannot retry. */
  readonly done: Promise<unknown>
}

class Refused extends Error {}

const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms))

export function startPullWorker (options: PullWorkerOptions): PullWorker {
  const base = options.brokerUrl.replace(/\/+$/, '')
  const waitMs = options.waitMs ?? 5_000
  const filter = { application: options.application, namespace: options.namespace }
  const onError = options.onError ?? (() => {})
  const secret = options.secrets?.[0]
  let stopping = false
  const isStopping = () => stopping
  let reported = 0

  /** POSTs JSON; retries 503 (after Retry-After) and connection errors unless `giveUp()` says so. */
  async function post (path: string, payload: unknown, giveUp: () => boolean): Promise<Record<string, unknown> | undefined> {
    const body = JSON.stringify(payload)
    for (;;) {
      let retryInMs = 1_000
      try {
        const headers = { 'content-type': 'application/json', ...(secret === undefined ? {} : signRequest(secret, { method: 'POST', path, body })) }
        const response = await fetch(base + path, { method: 'POST', headers, body, signal: AbortSignal.timeout(waitMs + 30_000) })
        const text = await response.text()
        if (response.ok) return JSON.parse(text) as Record<string, unknown>
        if (response.status !== 503) throw new Refused(`${path} answered ${response.status}: ${text.slice(0, 300)}`)
        const retryAfter = Number(response.headers.get('retry-after'))
        if (Number.isFinite(retryAfter) && retryAfter > 0) retryInMs = retryAfter * 1000
        onError(`${path} answered 503; again in ${retryInMs} ms`)
      } catch (error) {
        if (error instanceof Refused) throw error
        onError(`${path} failed; again in ${retryInMs} ms`, error)
      }
      if (giveUp()) return undefined
      await sleep(retryInMs)
    }
  }

  async function run (task: ClaimedTask): Promise<Exclude<Outcome, string> | { status: 'complete' | 'failure' | 'retry' }> {
    try {
      const outcome = (await options.handler(task)) ?? 'complete'
      return typeof outcome === 'string' ? { status: outcome } : outcome
    } catch (error) {
      onError(`task ${task.id} failed`, error)
      return { status: 'failure' }
    }
  }

  async function loop (): Promise<void> {
    let task: ClaimedTask | undefined
    while (task !== undefined || !isStopping()) {
      if (task === undefined) {
        const answer = await post('/v1/tasks/claim', { ...filter, limit: 1, wait_ms: waitMs }, () => stopping)
        task = (answer?.tasks as ClaimedTask[] | undefined)?.[0]
        continue
      }
      const outcome = await run(task)
      // A report is retried until it is written, stopping or not: the task is ours until then.
      const answer = await post(`/v1/tasks/${encodeURIComponent(task.id)}/status`, stopping ? outcome : { ...outcome, fetch_next: filter }, () => false)
      reported++
      task = (answer?.task as ClaimedTask | null | undefined) ?? undefined
    }
  }

  const done = loop().then(() => undefined, (error: unknown) => {
    onError('the worker stopped', error)
    return error
  })
  return {
    get reported () { return reported },
    stop: async () => {
      stopping = true
      await done
    },
    done
  }
}

/** The secret to sign with, as the CLI finds it: TASKBROKER_SECRET, else the first of TASKBROKER_AUTH_SECRETS. */
function secretsFromEnv (env: Record<string, string | undefined> = process.env): string[] {
  const secret = env.TASKBROKER_SECRET?.trim()
  if (secret !== undefined && secret !== '') return [secret]
  return (env.TASKBROKER_AUTH_SECRETS ?? '').split(',').map(s => s.trim()).filter(s => s !== '')
}

// Run as a program: log each task and complete it (WORK_MS: pretend each task takes that long).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const workMs = Number(process.env.WORK_MS ?? 0)
  const worker = startPullWorker({
    brokerUrl: process.env.TASKBROKER_URL ?? 'http://127.0.0.1:8080',
    application: process.env.TASKBROKER_APPLICATION,
    namespace: process.env.TASKBROKER_NAMESPACE,
    secrets: secretsFromEnv(),
    waitMs: process.env.WAIT_MS === undefined ? undefined : Number(process.env.WAIT_MS),
    onError: (message, error) => process.stderr.write(`${message}${error === undefined ? '' : `: ${String(error)}`}\n`),
    handler: async (task): Promise<Outcome> => {
      if (workMs > 0) await sleep(workMs)
      process.stdout.write(`${task.id} ${task.namespace}.${task.taskname}: complete\n`)
      return 'complete'
    }
  })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stdout.write(`${signal}: finishing the task in hand\n`)
      worker.stop().then(() => process.exit(0), () => process.exit(1))
    })
  }
  // A worker that died on an error it cannot retry (a 401, say) exits 1: a supervisor restarts it.
  if (await worker.done !== undefined) process.exitCode = 1
}
