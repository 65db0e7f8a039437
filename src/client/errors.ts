/**
 * What a call to the broker can throw: the broker's own error (`TaskbrokerError`, carrying its
 * stable `TASKBROKER_*` code) or a failure to get an answer at all (`TaskbrokerUnreachableError`).
 */

/** The broker answered with an error: `code` is its stable `TASKBROKER_*` code. */
export class TaskbrokerError extends Error {
  override readonly name = 'TaskbrokerError'
  constructor (
    readonly statusCode: number,
    readonly code: string,
    message: string,
    /** Seconds from the answer's `Retry-After`, when it had one. */
    readonly retryAfterSec: number | undefined,
    /** The whole error body (e.g. `ids` of a produce's TASKBROKER_OUTCOME_UNKNOWN). */
    readonly body: Record<string, unknown>
  ) {
    super(`${code}: ${message}`)
  }

  /** A 503 or 429: the broker asks to come back later. */
  get temporary (): boolean {
    return this.statusCode === 503 || this.statusCode === 429
  }
}

/**
 * No answer: the connection was refused, broken or timed out. `sent` is false only when the
 * request surely never reached the broker (connection refused), so even an unsafe call may be
 * sent again.
 */
export class TaskbrokerUnreachableError extends Error {
  override readonly name = 'TaskbrokerUnreachableError'
  readonly code = 'TASKBROKER_CLIENT_UNREACHABLE'
  constructor (message: string, readonly sent: boolean, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/**
 * 503 codes meaning the broker refused the request before doing any of it, so even a call that is
 * not safe to repeat (a claim, a report with fetch_next) may be sent again. Every other 503
 * (TASKBROKER_OUTCOME_UNKNOWN, TASKBROKER_STATUS_ACK_TIMEOUT) may have changed something.
 */
export const NOTHING_DONE_CODES: ReadonlySet<string> = new Set([
  'TASKBROKER_STORE_UNAVAILABLE',
  'TASKBROKER_BODY_BUDGET_FULL',
  'TASKBROKER_BACKPRESSURE',
  'TASKBROKER_STATUS_QUEUE_FULL',
  'TASKBROKER_SHUTTING_DOWN',
  'TASKBROKER_REPLAY_CACHE_FULL',
  'TASKBROKER_UNAVAILABLE',
  'TASKBROKER_TOO_MANY_WAITERS'
])

/** The broker does not have this route (an older broker): callers use it to detect features. */
export function isRouteNotFound (error: unknown): boolean {
  return error instanceof TaskbrokerError && error.code === 'TASKBROKER_ROUTE_NOT_FOUND'
}
