/**
 * Worker reports → the store. With batching on (the default) reports go through the generic
 * batcher and are written by one bulk statement per flush; with batching off each report is its
 * own statement (the baseline the benchmark compares against).
 *
 * Acknowledgement (`ack`):
 * - `flushed`: a report is answered after the flush that wrote it committed (group commit: nothing
 *   acknowledged is lost on a crash). If that takes longer than `ackTimeoutMs` the caller gets 503;
 *   the report stays queued and is still written.
 * - `queued`: answered at enqueue, as upstream does; a crash can lose the queued reports (the
 *   tasks are then redone after their processing deadline).
 */
import type { Logger } from 'pino'
import { createBatcher, BatcherClosedError, BatcherFullError } from '../batcher/batcher.js'
import type { Config } from '../config.js'
import { ShuttingDownError, StatusAckTimeoutError, StatusQueueFullError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { isStoreUnavailable, type TaskStore } from '../store/task-store.js'
import type { StatusUpdate } from '../store/types.js'

export type StatusWriter = ReturnType<typeof createStatusWriter>

export interface ReportOutcome {
  /** Written to an existing task (flushed ack, or batching off). */
  applied: string[]
  /** Written, but no such task (never existed, or already finished). */
  notFound: string[]
  /** Accepted but not yet written (queued ack). */
  queued: string[]
}

export function createStatusWriter (deps: { store: TaskStore, config: Config['status'], metrics: Metrics, log: Logger }) {
  const { store, config, metrics, log } = deps

  async function writeAlone (update: StatusUpdate): Promise<boolean> {
    try {
      return (await store.setStatusMany([update])).has(update.id)
    } catch (error) {
      if (isStoreUnavailable(error)) throw error
      log.error({ err: error, id: update.id }, 'a status report cannot be written; answered as not applied')
      return false
    }
  }

  const batcher = createBatcher<StatusUpdate, string, boolean>({
    name: 'status',
    maxBatchSize: config.batchSize,
    flushIntervalMs: config.flushIntervalMs,
    maxQueued: config.maxQueued,
    keyOf: update => update.id,
    flush: async (updates) => {
      try {
        const applied = await store.setStatusMany(updates)
        return updates.map(u => applied.has(u.id))
      } catch (error) {
        // The store is down: the batcher retries the batch. Any other error means some report in
        // it cannot be written; one at a time the good ones still are, and a bad one is answered
        // as not applied instead of failing every flush it is part of.
        if (isStoreUnavailable(error)) throw error
        return Promise.all(updates.map(writeAlone))
      }
    },
    onFlush: ({ size, durationMs, error }) => {
      if (error !== undefined) return
      metrics.batchSize.observe({ batcher: 'status' }, size)
      metrics.flushDuration.observe({ batcher: 'status' }, durationMs / 1000)
    },
    onError: (error, attempt, size) => {
      metrics.flushFailures.inc({ batcher: 'status' })
      log.warn({ err: error, attempt, size }, 'status flush failed; retrying')
    }
  })
  metrics.trackQueueDepth('status', () => batcher.queued + batcher.inFlight)

  /** Waits for a flushed ack, but never longer than ackTimeoutMs. */
  function awaitAck (pending: Promise<boolean>): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new StatusAckTimeoutError()), config.ackTimeoutMs)
      timer.unref()
      pending.then(resolve, reject).finally(() => clearTimeout(timer))
    })
  }

  function enqueue (update: StatusUpdate): Promise<boolean> {
    try {
      const pending = batcher.add(update)
      // In queued mode nobody awaits this promise; a rejection (shutdown timeout) is only logged.
      pending.catch((error: unknown) => log.error({ err: error, id: update.id }, 'queued status report was not written'))
      return pending
    } catch (error) {
      throw translate(error)
    }
  }

  async function writeDirect (updates: StatusUpdate[]): Promise<Set<string>> {
    const results = await Promise.all(updates.map(u => store.setStatusMany([u])))
    const applied = new Set<string>()
    for (const set of results) for (const id of set) applied.add(id)
    return applied
  }

  return {
    /**
     * Records reports (ids unique; callers dedupe). Throws a 503 error when the queue cannot take
     * all of them, before any is queued, so a rejected request changes nothing.
     */
    async report (updates: StatusUpdate[]): Promise<ReportOutcome> {
      if (config.batching && batcher.closed) throw new ShuttingDownError()
      if (config.batching && batcher.queued + updates.length > config.maxQueued) throw new StatusQueueFullError()
      for (const u of updates) metrics.statusRequested.inc({ status: u.status })
      let applied: Set<string>
      if (!config.batching) {
        applied = await writeDirect(updates)
      } else {
        const pending = updates.map(enqueue)
        if (config.ack === 'queued') return { applied: [], notFound: [], queued: updates.map(u => u.id) }
        const found = await Promise.all(pending.map(awaitAck).map(p => p.catch((error: unknown) => { throw translate(error) })))
        applied = new Set(updates.filter((_, i) => found[i]).map(u => u.id))
      }
      const outcome: ReportOutcome = { applied: [], notFound: [], queued: [] }
      for (const u of updates) (applied.has(u.id) ? outcome.applied : outcome.notFound).push(u.id)
      metrics.statusApplied.inc(outcome.applied.length)
      metrics.statusNotFound.inc(outcome.notFound.length)
      return outcome
    },

    get depth () { return batcher.queued + batcher.inFlight },

    /** Stops taking reports and writes every queued one (retrying) within `timeoutMs`. */
    async close (timeoutMs: number): Promise<void> {
      const left = batcher.queued + batcher.inFlight
      if (left > 0) log.info({ queued: left }, 'flushing queued status reports before shutdown')
      const abandoned = await batcher.close({ timeoutMs })
      if (abandoned > 0) log.error({ abandoned, timeoutMs }, 'status reports could not be written before shutdown; their tasks will run again after their deadline')
    }
  }
}

function translate (error: unknown): unknown {
  if (error instanceof BatcherFullError) return new StatusQueueFullError()
  if (error instanceof BatcherClosedError) return new ShuttingDownError()
  return error
}
