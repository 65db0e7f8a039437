/**
 * Reports go through the generic batcher and are written by one bulk statement per flush, which
 * also claims the next tasks of waiting `fetch_next` riders. How a report is answered (its ack
 * mode) is chosen once, here.
 */
import { createBatcher, BatcherClosedError, BatcherFullError } from '../batcher/batcher.js'
import { ShuttingDownError, StatusQueueFullError } from '../../domain/errors.js'
import type { StatusUpdate } from '../../domain/types.js'
import { createAckMode } from './ack-modes.js'
import { countRequested, type ReportResult } from './outcome.js'
import { createRiders } from './riders.js'
import { createStatusFlush } from './status-flush.js'
import { createStoreDownBreaker } from './store-down-breaker.js'
import type { StatusWriter, StatusWriterDeps } from './types.js'

export function createBatchedWriter (deps: StatusWriterDeps): StatusWriter {
  const { store, config, metrics, log } = deps
  const riders = createRiders({ claim: deps.claim, countClaimed: count => { metrics.tasksClaimed.inc(count) } })
  const breaker = createStoreDownBreaker()
  const batcher = createBatcher<StatusUpdate, string, ReportResult>({
    name: 'status',
    maxBatchSize: config.batchSize,
    flushIntervalMs: config.flushIntervalMs,
    maxConcurrentFlushes: config.concurrentFlushes,
    maxQueued: config.maxQueued,
    // One task's reports under one lease: the last wins. Under different leases (a worker whose
    // claim was reset, and the task's current holder) each is written, in order of arrival, so
    // the stale one can never replace the current holder's report.
    keyOf: update => update.lease === undefined ? update.id : `${update.id}\u0000${update.lease}`,
    groupOf: update => update.id,
    flush: createStatusFlush({ store, riders, log }),
    onFlush: ({ size, durationMs, error }) => {
      breaker.recordFlush(error)
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
  const ack = createAckMode(config.ack, { timeoutMs: config.ackTimeoutMs, breaker, metrics, translate })

  /** Refuses before anything is queued, so a refused request changes nothing. */
  function admit (count: number): void {
    if (batcher.closed) throw new ShuttingDownError()
    if (batcher.queued + count > config.maxQueued) throw new StatusQueueFullError()
    ack.admit()
  }

  function enqueue (update: StatusUpdate): Promise<ReportResult> {
    try {
      const written = batcher.add(update)
      // In queued mode nobody awaits this promise; a rejection (shutdown timeout) is only logged.
      written.catch((error: unknown) => { log.error({ err: error, id: update.id }, 'queued status report was not written') })
      return written
    } catch (error) {
      throw translate(error)
    }
  }

  async function report (updates: StatusUpdate[]) {
    admit(updates.length)
    countRequested(metrics, updates)
    return await ack.answer(updates, updates.map(enqueue))
  }

  return {
    report,

    /** The claim rides along with the flush that writes the report (in queued ack mode too). */
    async reportAndClaimNext (update, filter) {
      // Checked here, synchronously, so that a rider is only ever queued with its report: a rider
      // whose report was refused would claim a task for nobody.
      admit(1)
      const reported = report([update])
      const next = riders.wait(filter)
      const outcome = await reported
      const task = await next
      return { outcome, task }
    },

    get depth () { return batcher.queued + batcher.inFlight },

    async close (timeoutMs) {
      const left = batcher.queued + batcher.inFlight
      if (left > 0) log.info({ queued: left }, 'flushing queued status reports before shutdown')
      const abandoned = await batcher.close({ timeoutMs })
      riders.releaseAll()
      if (abandoned > 0) log.error({ abandoned, timeoutMs }, 'status reports could not be written before shutdown; their tasks will run again after their deadline')
    }
  }
}

function translate (error: unknown): unknown {
  if (error instanceof BatcherFullError) return new StatusQueueFullError()
  if (error instanceof BatcherClosedError) return new ShuttingDownError()
  return error
}
