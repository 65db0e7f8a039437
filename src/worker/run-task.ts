/**
 * The handler model shared by pull and push workers: a handler gets the task and an AbortSignal;
 * its return reports `complete`, a throw reports `failure`, and `retry({delaySec})` (returned or
 * thrown) reports `retry`.
 */
import { TaskbrokerError } from '../client/errors.js'
import type { ClaimedTask, StatusRequest, Task } from '../client/types.js'

const RETRY = Symbol('taskbroker.retry')

/** What `retry()` makes: the task is reported for retry, after `delaySec` when given. */
export interface RetryRequest {
  readonly [RETRY]: true
  readonly delaySec?: number | undefined
  readonly maxAttempts?: number | undefined
}

/** Report this task for retry (return it or throw it from a handler). */
export function retry (options: { delaySec?: number, maxAttempts?: number } = {}): RetryRequest {
  return { [RETRY]: true, delaySec: options.delaySec, maxAttempts: options.maxAttempts }
}

export function isRetryRequest (value: unknown): value is RetryRequest {
  return typeof value === 'object' && value !== null && (value as Partial<RetryRequest>)[RETRY] === true
}

export interface TaskContext {
  /** Aborted when the task is cancelled, its deadline passes or the worker stops for good; `reason` says which. */
  signal: AbortSignal
  /** Extend the deadline now and record progress (on brokers with heartbeats; a failure is logged, never thrown). */
  heartbeat: (progress?: unknown) => Promise<void>
}

/** A task as a handler gets it: pulled (with deadline and lease) or pushed (the activation). */
export type HandlerTask = ClaimedTask | Task

export type Handler = (task: HandlerTask, context: TaskContext) => unknown

/** Why a task's signal was aborted. */
export type AbortReason = 'cancelled' | 'deadline' | 'shutdown' | 'lost' | 'timeout'

export class TaskAbortedError extends Error {
  override readonly name = 'TaskAbortedError'
  constructor (readonly reason: AbortReason) {
    super(`task aborted: ${reason}`)
  }
}

/** The report a handler's result (or throw) becomes. */
export function outcomeOf (result: { ok: true, value: unknown } | { ok: false, error: unknown }): StatusRequest {
  const value = result.ok ? result.value : result.error
  if (isRetryRequest(value)) {
    return {
      status: 'retry',
      ...(value.delaySec === undefined ? {} : { delay_on_retry: value.delaySec }),
      ...(value.maxAttempts === undefined ? {} : { max_attempts: value.maxAttempts })
    }
  }
  return { status: result.ok ? 'complete' : 'failure' }
}

/**
 * Whether a finished task's report is better not sent: its handler failed after the task stopped
 * being surely this worker's — its deadline passed with no heartbeat getting through (the broker
 * was out of reach, say), or the broker said it is gone (`lost`). A `failure` report would end a
 * task that did nothing wrong; unreported, the broker's deadline reset runs it again (an attempt
 * counted, `at_most_once` honoured). A handler that finished anyway is reported (fenced by its lease).
 */
export function dropReport (signal: AbortSignal, report: StatusRequest): boolean {
  const reason = (signal.reason as TaskAbortedError | undefined)?.reason
  return signal.aborted && (reason === 'deadline' || reason === 'lost') && report.status === 'failure'
}

/** The longest delay setTimeout takes (about 24.8 days); longer ones would fire at once. */
export const MAX_TIMER_MS = 2_147_483_647

/** How often a held task is heartbeated: every third of its deadline, at least every second. */
export function heartbeatEveryMs (processingDeadlineSec: number): number {
  return Math.min(Math.max(1_000, processingDeadlineSec * 1000 / 3), MAX_TIMER_MS)
}

/** The broker no longer has the task for this worker (finished elsewhere, reset, cancelled): 404 or 409. */
export function isGone (error: unknown): boolean {
  return error instanceof TaskbrokerError && (error.statusCode === 404 || error.statusCode === 409)
}

/** Runs the handler and turns what it did into a report; never throws. */
export async function runHandler (handler: Handler, task: HandlerTask, context: TaskContext): Promise<{ report: StatusRequest, error?: unknown }> {
  try {
    return { report: outcomeOf({ ok: true, value: await handler(task, context) }) }
  } catch (error) {
    return { report: outcomeOf({ ok: false, error }), error }
  }
}
