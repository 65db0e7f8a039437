/**
 * The workers of push mode: one HTTP client (undici, keep-alive connections per worker) that
 * POSTs a task to the worker of its application, and a backoff per worker.
 *
 * A worker whose push failed or was refused pauses (exponential, bounded; a Retry-After on a 429
 * or 503 is honoured up to the bound) and its applications are left out of the fetch loops'
 * claims until the pause ends, so its tasks stay pending instead of cycling claimed → pending.
 * A success ends the pause.
 */
import type { Logger } from 'pino'
import { Agent, request } from 'undici'
import { signRequest } from '../../auth/signing.js'
import type { PushConfig } from '../../config/config.js'
import type { WorkerRoute } from '../../config/worker-map.js'

/**
 * - delivered: the worker answered 2xx (it has the task).
 * - refused: 429 or 503 (busy). rejected: any other status. timeout: no answer in time.
 * - unreachable: no connection (refused, reset, DNS). shutdown: aborted because the broker stops.
 * - backoff: not sent, the worker is pausing after failures.
 */
export type PushResult = 'delivered' | 'refused' | 'rejected' | 'timeout' | 'unreachable' | 'shutdown' | 'backoff'

export interface PushRequest {
  application: string
  /** The JSON body (already serialised: it is also what gets signed). */
  body: string
  /** Aborts the push when the broker shuts down. */
  abort: AbortSignal
}

interface WorkerState {
  url: URL
  /** Path and query as signed. */
  path: string
  failures: number
  pausedUntil: number
}

export type PushWorkers = ReturnType<typeof createPushWorkers>

export function createPushWorkers (config: Pick<PushConfig, 'workers' | 'timeoutMs' | 'workerBackoffMs' | 'workerBackoffMaxMs'>, options: {
  /** Pushes are signed with the first secret when any is set (as the broker verifies requests). */
  secrets: readonly string[]
  now?: () => number
  /** A worker starting to fail, and coming back, are logged (once per streak, not per push). */
  log?: Pick<Logger, 'warn' | 'info'>
}) {
  const now = options.now ?? (() => Date.now())
  const secret = options.secrets[0]
  // One state per distinct URL: applications sharing a worker share its backoff.
  const byUrl = new Map<string, WorkerState>()
  const byApplication = new Map<string, WorkerState>()
  for (const route of config.workers as WorkerRoute[]) {
    let state = byUrl.get(route.url)
    if (state === undefined) {
      const url = new URL(route.url)
      state = { url, path: `${url.pathname}${url.search}`, failures: 0, pausedUntil: 0 }
      byUrl.set(route.url, state)
    }
    byApplication.set(route.application, state)
  }
  const agent = new Agent({
    keepAliveTimeout: 30_000,
    connect: { timeout: config.timeoutMs },
    headersTimeout: config.timeoutMs,
    bodyTimeout: config.timeoutMs
  })

  function pause (state: WorkerState, retryAfterMs: number | undefined): void {
    const t = now()
    // Pushes sent before the pause began fail together (64 at once when a worker goes down): one
    // pause per failure streak step, not one doubling per push; a longer Retry-After still counts.
    if (state.pausedUntil <= t) state.failures++
    const exponential = config.workerBackoffMs * 2 ** Math.min(state.failures - 1, 30)
    const wait = Math.min(Math.max(exponential, retryAfterMs ?? 0), config.workerBackoffMaxMs)
    state.pausedUntil = Math.max(state.pausedUntil, t + wait)
  }

  return {
    /** Applications whose worker is not pausing now: what fetch loops may claim. */
    availableApplications (): string[] {
      const t = now()
      const apps: string[] = []
      for (const [application, state] of byApplication) if (state.pausedUntil <= t) apps.push(application)
      return apps
    },

    /** Milliseconds until the first pausing worker may be tried again (undefined: none pausing). */
    nextResumeInMs (): number | undefined {
      const t = now()
      let next: number | undefined
      for (const state of byUrl.values()) {
        if (state.pausedUntil > t && (next === undefined || state.pausedUntil - t < next)) next = state.pausedUntil - t
      }
      return next
    },

    /** Workers pausing now. */
    pausing (): number {
      const t = now()
      let count = 0
      for (const state of byUrl.values()) if (state.pausedUntil > t) count++
      return count
    },

    /** POSTs one task to its application's worker. Never throws: every failure is a result. */
    async push (input: PushRequest): Promise<PushResult> {
      const state = byApplication.get(input.application)
      if (state === undefined) return 'rejected' // fetch loops only claim mapped applications
      if (state.pausedUntil > now()) return 'backoff'
      const timeout = new AbortController()
      const timer = setTimeout(() => timeout.abort(), config.timeoutMs)
      timer.unref()
      const onShutdown = () => timeout.abort()
      input.abort.addEventListener('abort', onShutdown, { once: true })
      const headers: Record<string, string> = { 'content-type': 'application/json' }
      if (secret !== undefined) Object.assign(headers, signRequest(secret, { method: 'POST', path: state.path, body: input.body, nonce: null }))
      let result: PushResult
      let retryAfterMs: number | undefined
      try {
        const response = await request(state.url, { dispatcher: agent, method: 'POST', headers, body: input.body, signal: timeout.signal })
        await response.body.dump()
        const code = response.statusCode
        if (code >= 200 && code < 300) result = 'delivered'
        else if (code === 429 || code === 503) {
          result = 'refused'
          retryAfterMs = retryAfter(response.headers['retry-after'])
        } else result = 'rejected'
      } catch {
        result = input.abort.aborted ? 'shutdown' : timeout.signal.aborted ? 'timeout' : 'unreachable'
      } finally {
        clearTimeout(timer)
        input.abort.removeEventListener('abort', onShutdown)
      }
      if (result === 'delivered') {
        if (state.failures > 0) options.log?.info({ worker: `${state.url.origin}${state.path}` }, 'push worker delivering again')
        state.failures = 0
        state.pausedUntil = 0
      } else if (result !== 'shutdown') {
        if (state.failures === 0) options.log?.warn({ worker: `${state.url.origin}${state.path}`, result }, 'push worker failing: its pushes pause (backing off) until it answers 2xx again; its tasks stay pending')
        pause(state, retryAfterMs)
      }
      return result
    },

    /** Closes the connections (pushes in flight are aborted). */
    async close (): Promise<void> {
      await agent.destroy().catch(() => {})
    }
  }
}

/** Retry-After in seconds (the HTTP-date form is not worth supporting from a worker). */
function retryAfter (value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value
  if (text === undefined || !/^\d{1,6}$/.test(text.trim())) return undefined
  return Number(text.trim()) * 1000
}
