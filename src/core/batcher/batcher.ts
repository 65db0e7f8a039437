/**
 * Generic in-memory batcher: items are queued and written by one `flush(items)` call per batch
 * (the status-report path writes one bulk statement per flush).
 *
 * Rules:
 * - Queue: FIFO by first arrival. Items are deduplicated by `keyOf(item)`: a later item with the
 *   key of a *queued* item replaces its value in place ("last report wins", position of the first
 *   arrival kept), and every caller for that key settles with the result of the flush that writes it.
 *   An item whose key is currently *in flight* is queued separately and written after that flush.
 *   Items of one `groupOf` with different keys (one task's reports under different leases) are all
 *   written, one at a time in order of arrival: never two of a group in one flush or in flight at once.
 * - When it flushes (never more than `maxBatchSize` items per `flush()` call; a backlog drains in
 *   consecutive flushes): as soon as `maxBatchSize` distinct keys are queued, or when the oldest
 *   queued item has waited `flushIntervalMs` (0 = as soon as no flush is in flight), or at once on
 *   close. Flushes start on a microtask/timer, never synchronously inside `add()`, so items added in
 *   the same tick share a batch.
 * - Concurrency: at most `maxConcurrentFlushes` (default 1) flushes in flight. Items added meanwhile
 *   queue up; when one ends the next flush starts right away if a trigger already holds, otherwise
 *   the timer is armed for the rest. A key is never in two flushes at once: an item whose key is in
 *   flight waits for that flush to end, so two writes of one key keep their order. With interval 0
 *   and 2+ flushes, one batch fills while another is written (pipelining: the latency of a report
 *   is about one statement, not a statement plus the wait for the one before).
 * - add() returns a promise that resolves with the item's result once the flush that wrote it has
 *   resolved (committed). It throws synchronously (never rejects) with BatcherClosedError after
 *   close() and with BatcherFullError when `maxQueued` distinct keys are queued (replacing the value
 *   of an already queued key is still accepted). In-flight items do not count towards `maxQueued`.
 *   The returned promise can later reject (close timeout, bad flush result): callers that don't
 *   await it ("queued ack" mode) MUST attach a `.catch()`, or Node reports an unhandled rejection.
 * - Failure: a flush that throws/rejects wrote nothing. With `retryFailedFlushes: false` its callers
 *   are rejected with the error at once (for reads such as claims, where failing fast beats waiting).
 *   Otherwise its items go back to the front of the queue
 *   (in order, ahead of newer items; a newer queued value for the same key wins and inherits the
 *   callers) and are retried after an exponential backoff (`retryBackoffMs`, doubling up to `max`,
 *   reset after a success). Nothing is dropped; callers stay pending; with the store down the queue
 *   fills up and add() throws BatcherFullError, so memory stays bounded. If flush resolves with the
 *   wrong number of results the batch's callers are rejected with an Error and it is NOT retried
 *   (the write may have happened).
 * - close({ timeoutMs }) stops accepting, flushes everything left at once (ignoring the interval,
 *   still honouring a running backoff), waits for an in-flight flush, and keeps retrying until the
 *   queue is empty. It resolves with the number of abandoned items: 0 when all were written; after
 *   `timeoutMs` the queued and in-flight items are abandoned, their callers rejected with
 *   BatcherClosedError (for in-flight ones the write outcome is unknown), and it resolves with their
 *   count. Without timeoutMs it waits until everything is written. Idempotent (same promise).
 * - Timers are unref()'d and cleared on close. onFlush/onError exceptions are swallowed.
 */

export type FlushReason = 'size' | 'interval' | 'close' | 'retry'

export interface FlushInfo { size: number, durationMs: number, error?: unknown, reason: FlushReason }

export interface BatcherOptions<T, K, R> {
  name: string // for logs/metrics
  maxBatchSize: number // flush at once when this many distinct keys are queued; also max items per flush() call
  flushIntervalMs: number // flush when the oldest queued item has waited this long (0 = when no flush is in flight)
  maxQueued: number // bound on queued (not in-flight) keys; add() of a new key beyond it throws BatcherFullError
  maxConcurrentFlushes?: number // default 1; flushes in flight at once (each with distinct keys)
  keyOf: (item: T) => K // dedupe key: a later item replaces a queued one with the same key (last report wins)
  groupOf?: (item: T) => unknown // default the key; items of one group are never flushed together or concurrently
  flush: (items: T[]) => Promise<R[]> // writes one batch; one result per item, same order; throwing = nothing written
  retryBackoffMs?: { initial: number, max: number } // default { initial: 50, max: 1000 }, doubling, reset on success
  retryFailedFlushes?: boolean // default true; false: a failed flush rejects its callers with the error (reads, e.g. claims, that must fail fast)
  onFlush?: (info: FlushInfo) => void // after each flush attempt (error set when it failed)
  onError?: (error: unknown, attempt: number, size: number) => void // each failure; attempt = consecutive failures (1 = first)
  now?: () => number // clock in ms; default performance.now
}

export interface Batcher<T, R> {
  /** Resolves with the item's result once written; throws BatcherClosedError/BatcherFullError synchronously. */
  add(item: T): Promise<R>
  /** Resolves with the number of abandoned items (0 = everything was written). Idempotent. */
  close(opts?: { timeoutMs?: number }): Promise<number>
  readonly queued: number // items waiting (not in flight)
  readonly inFlight: number // items in the flushes in flight
  readonly closed: boolean
}

export class BatcherFullError extends Error {
  readonly code = 'TASKBROKER_BATCHER_FULL'
  override name = 'BatcherFullError'
}

export class BatcherClosedError extends Error {
  readonly code = 'TASKBROKER_BATCHER_CLOSED'
  override name = 'BatcherClosedError'
}

interface Waiter<R> { resolve: (result: R) => void, reject: (error: unknown) => void }
interface Entry<T, K, R> { key: K, group: unknown, item: T, since: number, waiters: Waiter<R>[] }
type Timer = ReturnType<typeof setTimeout>

/** Calls an optional user callback; its exceptions must not break the batcher. */
function safeCall<A extends unknown[]> (fn: ((...args: A) => void) | undefined, ...args: A): void {
  try { fn?.(...args) } catch { /* a broken metrics/log hook must not affect writes */ }
}

export function createBatcher<T, K, R> (opts: BatcherOptions<T, K, R>): Batcher<T, R> {
  const { name, maxBatchSize, flushIntervalMs, maxQueued, keyOf } = opts
  if (!Number.isInteger(maxBatchSize) || maxBatchSize < 1) throw new RangeError(`batcher ${name}: maxBatchSize must be an integer >= 1`)
  if (!Number.isInteger(maxQueued) || maxQueued < 1) throw new RangeError(`batcher ${name}: maxQueued must be an integer >= 1`)
  if (!(flushIntervalMs >= 0)) throw new RangeError(`batcher ${name}: flushIntervalMs must be >= 0`)
  // At most a second between retries: a flush that failed because the store was down is written
  // within a second of it coming back (a retry against a down store fails fast, so costs little).
  const backoff = opts.retryBackoffMs ?? { initial: 50, max: 1000 }
  const now = opts.now ?? (() => performance.now())

  let queue = new Map<K, Entry<T, K, R>>() // insertion order = FIFO of first arrival
  const maxConcurrent = opts.maxConcurrentFlushes ?? 1
  if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) throw new RangeError(`batcher ${name}: maxConcurrentFlushes must be an integer >= 1`)
  const inFlight = new Set<Entry<T, K, R>[]>() // the batches being flushed
  /** Groups in the flushes in flight (keys, without groupOf). */
  const inFlightGroups = new Set<unknown>()
  const groupOf = opts.groupOf ?? keyOf
  let inFlightCount = 0
  let timer: Timer | undefined // interval or backoff timer
  let kicked = false // a flush is scheduled on a microtask
  let failures = 0 // consecutive failed flushes
  let retryAt = 0 // no flush before this time (backoff)
  let closing = false
  let abandoned = false // close() timed out: everything left was rejected
  let closePromise: Promise<number> | undefined
  let resolveClose: ((abandonedCount: number) => void) | undefined
  let closeTimer: Timer | undefined

  function clearTimer (): void {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
  }

  /** Decides when the next flush starts: now (microtask), later (timer), or after the in-flight one. */
  function schedule (): void {
    if (inFlight.size >= maxConcurrent || kicked || abandoned || queue.size === 0) return
    const t = now()
    const oldest = queue.values().next().value as Entry<T, K, R>
    let delay: number
    if (retryAt > t) delay = retryAt - t
    else if (closing || queue.size >= maxBatchSize) delay = 0
    else delay = flushIntervalMs - (t - oldest.since)
    if (delay <= 0) { // runFlush() clears a pending timer
      kicked = true
      queueMicrotask(() => { kicked = false; runFlush() })
    } else if (timer === undefined) { // an armed timer already targets the same oldest item / backoff
      timer = setTimeout(() => { timer = undefined; runFlush() }, delay)
      timer.unref()
    }
  }

  /** Puts a failed batch back at the front; a newer queued value for the same key wins. */
  function requeue (batch: Entry<T, K, R>[]): void {
    const rest = queue
    queue = new Map()
    for (const entry of batch) {
      const newer = rest.get(entry.key)
      if (newer) {
        rest.delete(entry.key)
        entry.item = newer.item
        entry.waiters.push(...newer.waiters)
      }
      queue.set(entry.key, entry)
    }
    for (const [key, entry] of rest) queue.set(key, entry)
  }

  /** Flushes the next batch. Never rejects: every error is caught and handled below. */
  async function runFlush (): Promise<void> {
    if (inFlight.size >= maxConcurrent || abandoned || queue.size === 0) return
    const reason: FlushReason = failures > 0 ? 'retry' : closing ? 'close' : queue.size >= maxBatchSize ? 'size' : 'interval'
    const batch: Entry<T, K, R>[] = []
    for (const entry of queue.values()) {
      if (batch.length >= maxBatchSize) break
      if (inFlightGroups.has(entry.group)) continue // its group's earlier write is in flight, or in this batch
      inFlightGroups.add(entry.group)
      batch.push(entry)
    }
    if (batch.length === 0) return // everything queued waits for a flush in flight; its end reschedules
    clearTimer()
    for (const entry of batch) queue.delete(entry.key)
    inFlight.add(batch)
    inFlightCount += batch.length
    schedule() // another flush may start beside this one
    const started = now()
    let results: R[] | undefined
    let error: unknown
    let failed = false
    try {
      results = await opts.flush(batch.map(e => e.item))
    } catch (err) {
      failed = true
      error = err
    }
    inFlight.delete(batch)
    inFlightCount -= batch.length
    for (const entry of batch) inFlightGroups.delete(entry.group)
    if (abandoned) { // close() timed out meanwhile; callers were already rejected
      safeCall(opts.onFlush, { size: batch.length, durationMs: now() - started, error, reason })
      return
    }
    if (failed && opts.retryFailedFlushes === false) {
      for (const entry of batch) for (const w of entry.waiters) w.reject(error)
      safeCall(opts.onError, error, 1, batch.length)
    } else if (failed) {
      failures++
      retryAt = now() + Math.min(backoff.initial * 2 ** (failures - 1), backoff.max)
      requeue(batch)
      safeCall(opts.onError, error, failures, batch.length)
    } else {
      failures = 0
      retryAt = 0
      if (!Array.isArray(results) || results.length !== batch.length) {
        error = new Error(`batcher ${name}: flush returned ${Array.isArray(results) ? results.length : typeof results} results for ${batch.length} items`)
        for (const entry of batch) for (const w of entry.waiters) w.reject(error)
        safeCall(opts.onError, error, 1, batch.length)
      } else {
        batch.forEach((entry, i) => { for (const w of entry.waiters) w.resolve(results[i] as R) })
      }
    }
    safeCall(opts.onFlush, { size: batch.length, durationMs: now() - started, error, reason })
    schedule()
    settleCloseIfDrained()
  }

  function settleCloseIfDrained (): void {
    if (!resolveClose || inFlight.size > 0 || queue.size > 0) return
    if (closeTimer !== undefined) clearTimeout(closeTimer)
    resolveClose(0)
    resolveClose = undefined
  }

  /** close() timeout: reject everything still queued or in flight and resolve close() with the count. */
  function abandon (): void {
    if (!resolveClose) return
    abandoned = true
    clearTimer()
    const error = new BatcherClosedError(`batcher ${name} closed: timed out before these items were confirmed written`)
    let count = 0
    for (const entry of [...[...inFlight].flat(), ...queue.values()]) {
      count++
      for (const w of entry.waiters) w.reject(error)
    }
    queue.clear()
    resolveClose(count)
    resolveClose = undefined
  }

  return {
    add (item: T): Promise<R> {
      if (closing) throw new BatcherClosedError(`batcher ${name} is closed`)
      const key = keyOf(item)
      const existing = queue.get(key)
      if (!existing && queue.size >= maxQueued) throw new BatcherFullError(`batcher ${name} is full (${maxQueued} items queued)`)
      return new Promise<R>((resolve, reject) => {
        if (existing) {
          existing.item = item // last report wins, first position kept
          existing.waiters.push({ resolve, reject })
        } else {
          queue.set(key, { key, group: groupOf(item), item, since: now(), waiters: [{ resolve, reject }] })
        }
        schedule()
      })
    },
    close (closeOpts?: { timeoutMs?: number }): Promise<number> {
      if (closePromise) return closePromise
      closing = true
      closePromise = new Promise<number>(resolve => { resolveClose = resolve })
      const timeoutMs = closeOpts?.timeoutMs
      if (timeoutMs !== undefined) {
        closeTimer = setTimeout(abandon, timeoutMs)
        closeTimer.unref()
      }
      clearTimer() // re-plan without the interval (a running backoff is kept)
      schedule()
      settleCloseIfDrained()
      return closePromise
    },
    get queued () { return queue.size },
    get inFlight () { return inFlightCount },
    get closed () { return closing }
  }
}
