/**
 * The handler model shared by pull and push workers: a handler gets the task and an AbortSignal;
 * its return reports `complete`, a throw reports `failure`, and `retry({delaySec})` (returned or
 * thrown) reports `retry`.
 */
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
  /** Extend the deadline now and record progress (pull workers on brokers with heartbeats). */
  heartbeat: (progress?: unknown) => Promise<void>
}

/** A task as a handler gets it: pulled (with deadline and lease) or pushed (the activation). */
export type HandlerTask = ClaimedTask | Task

export type Handler = (task: HandlerTask, context: TaskContext) => unknown

/** Why a task's signal was aborted. */
export type AbortReason = 'cancelled' | 'deadline' | 'shutdown' | 'lost'

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

/** Runs the handler and turns what it did into a report; never throws. */
export async function runHandler (handler: Handler, task: HandlerTask, context: TaskContext): Promise<{ report: StatusRequest, error?: unknown }> {
  try {
    return { report: outcomeOf({ ok: true, value: await handler(task, context) }) }
  } catch (error) {
    return { report: outcomeOf({ ok: false, error }), error }
  }
}
