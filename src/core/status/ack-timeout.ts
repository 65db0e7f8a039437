import { StatusAckTimeoutError } from '../../domain/errors.js'

/**
 * Waits for a request's flushed acks (one timer per request, not per report), never longer than
 * `timeoutMs`: then StatusAckTimeoutError, while the reports stay queued and are still written.
 * `translate` maps the writer's internal errors to the ones callers answer with.
 */
export function withinAckTimeout<T> (pending: Promise<T>, timeoutMs: number, translate: (error: unknown) => unknown = e => e): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new StatusAckTimeoutError()) }, timeoutMs)
    timer.unref()
    pending.then(resolve, (error: unknown) => { reject(translate(error)) }).finally(() => { clearTimeout(timer) })
  })
}
