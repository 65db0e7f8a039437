/** How a failed call is described: timed out, possibly committed, and its innermost message. */

/**
 * A store call that got no answer in time (TASKBROKER_DB_CALL_TIMEOUT_MS): the statement was
 * cancelled; store guards answer it as "store unavailable" (503 + Retry-After).
 */
export class StoreTimeoutError extends Error {
  readonly code = 'TASKBROKER_STORE_TIMEOUT'
  override name = 'StoreTimeoutError'
}

const MAY_HAVE_RUN = Symbol('taskbroker.mayHaveRun')

/**
 * True when a failed call's statement had been sent before it failed without an answer from the
 * server (a timeout, a connection lost): it may have committed. Marked here, on the error or a
 * cause of it; a refusal by the server itself or a call never sent is a definite "nothing changed".
 */
export function mayHaveRun (error: unknown): boolean {
  for (let e = error as { cause?: unknown } | null, depth = 0; e !== null && typeof e === 'object' && depth < 10; e = e.cause as typeof e, depth++) {
    if ((e as Record<symbol, unknown>)[MAY_HAVE_RUN] === true) return true
  }
  return false
}

/** Marks `error` as mayHaveRun when its query was sent and no server error answered it. */
export function markIfSent<E> (error: E, query: unknown): E {
  const sent = (query as { state: unknown }).state !== null
  const fromServer = (error as { name?: unknown } | null)?.name === 'PostgresError'
  if (sent && !fromServer && error !== null && typeof error === 'object') Object.defineProperty(error, MAY_HAVE_RUN, { value: true })
  return error
}

/** The innermost message along an error's cause chain (drivers wrap theirs), at most 300 characters. */
export function rootMessage (error: unknown): string {
  let current = error as { cause?: unknown, message?: unknown }
  while (current.cause !== undefined && current.cause !== null && typeof current.cause === 'object') {
    current = current.cause as { cause?: unknown, message?: unknown }
  }
  return typeof current.message === 'string' ? current.message.slice(0, 300) : 'unknown error'
}
