/**
 * Leases: what a worker holding a task may do besides reporting it. Heartbeats go through the
 * generic batcher (one statement per flush, like status reports); release and cancel are one
 * statement each. Fencing: a call carrying a lease acts only while the task's lease is that one.
 */
import type { Logger } from 'pino'
import type { Config } from '../../config/config.js'
import {
  InvalidRequestError, LeaseStaleError, ShuttingDownError, StatusQueueFullError, TaskNotCancellableError,
  TaskNotFoundError, TaskNotProcessingError
} from '../../domain/errors.js'
import type { QueueRef } from '../../domain/types.js'
import { isStoreUnavailable, type CancelFilter, type Heartbeat, type HeartbeatResult, type LeaseStore } from '../../store/index.js'
import { BatcherClosedError, BatcherFullError, createBatcher } from '../batcher/batcher.js'
import type { Metrics } from '../metrics.js'

export type { CancelFilter, Heartbeat } from '../../store/index.js'

/** A heartbeat's answer: the new deadline, and whether a cancel was requested. */
export interface HeartbeatAnswer { processingDeadline: Date, cancelRequested: boolean }

/** A batch of heartbeats: each extended one, and the ids that were not. */
export interface HeartbeatBatchAnswer {
  extended: Array<HeartbeatAnswer & { id: string }>
  /** No such task, or not processing. */
  notProcessing: string[]
  /** Processing under another lease. */
  stale: string[]
}

export interface Leases {
  heartbeat (beat: Heartbeat): Promise<HeartbeatAnswer>
  heartbeatMany (beats: readonly Heartbeat[]): Promise<HeartbeatBatchAnswer>
  /** Back to pending; `cancelled` when the task ended instead (its cancel had been requested). */
  release (id: string, lease: string | undefined): Promise<{ cancelled: boolean }>
  cancel (id: string): Promise<{ removed: boolean, requested: boolean }>
  cancelMany (filter: CancelFilter): Promise<{ removed: number, requested: number }>
  readonly depth: number
  close (timeoutMs: number): Promise<void>
}

export interface LeasesDeps {
  store: LeaseStore
  /** The batcher's sizes are the status batcher's. */
  status: Config['status']
  leases: Config['leases']
  metrics: Metrics
  log: Logger
  /** Long-polls of the queue are woken when a release makes a task claimable. */
  wake: (queues: QueueRef[]) => void
}

export function createLeases (deps: LeasesDeps): Leases {
  const { store, status, leases: settings, metrics, log } = deps
  const batcher = createBatcher<Heartbeat, string, HeartbeatResult | undefined>({
    name: 'heartbeat',
    maxBatchSize: status.batchSize,
    flushIntervalMs: status.flushIntervalMs,
    maxConcurrentFlushes: status.concurrentFlushes,
    maxQueued: status.maxQueued,
    // As for reports: a stale holder's heartbeat never replaces the current holder's (each written, in order).
    keyOf: beat => beat.lease === undefined ? beat.id : `${beat.id}\u0000${beat.lease}`,
    groupOf: beat => beat.id,
    flush: async (beats) => {
      try {
        const results = await store.heartbeat(beats, settings.heartbeatMaxExtendSec)
        return beats.map(beat => results.get(beat.id))
      } catch (error) {
        // The store is down: the batcher retries. Anything else is some heartbeat the store
        // refuses: one at a time the others are still written, the bad one answered as not found.
        if (isStoreUnavailable(error)) throw error
        return await Promise.all(beats.map(async beat => {
          try {
            return (await store.heartbeat([beat], settings.heartbeatMaxExtendSec)).get(beat.id)
          } catch (alone) {
            if (isStoreUnavailable(alone)) throw alone
            log.error({ err: alone, id: beat.id }, 'a heartbeat cannot be written; answered as not found')
            return undefined
          }
        }))
      }
    },
    onFlush: ({ size, durationMs, error }) => {
      if (error !== undefined) return
      metrics.batchSize.observe({ batcher: 'heartbeat' }, size)
      metrics.flushDuration.observe({ batcher: 'heartbeat' }, durationMs / 1000)
    },
    onError: (error, attempt, size) => {
      metrics.flushFailures.inc({ batcher: 'heartbeat' })
      log.warn({ err: error, attempt, size }, 'heartbeat flush failed; retrying')
    }
  })
  metrics.trackQueueDepth('heartbeat', () => batcher.queued + batcher.inFlight)

  function checkProgress (beat: Heartbeat, field: string): void {
    if (beat.progress === undefined) return
    const bytes = Buffer.byteLength(JSON.stringify(beat.progress))
    if (bytes > settings.progressMaxBytes) {
      throw new InvalidRequestError(`${field} is ${bytes} bytes of JSON, more than TASKBROKER_HEARTBEAT_PROGRESS_MAX_BYTES (${settings.progressMaxBytes})`)
    }
  }

  /** Every heartbeat is checked, and room made for all, before any is queued. */
  async function beat (beats: readonly Heartbeat[], field: (i: number) => string): Promise<Array<HeartbeatResult | undefined>> {
    beats.forEach((b, i) => { checkProgress(b, field(i)) })
    if (batcher.closed) throw new ShuttingDownError()
    if (batcher.queued + beats.length > status.maxQueued) throw new StatusQueueFullError()
    let queued: Array<Promise<HeartbeatResult | undefined>>
    try {
      queued = beats.map(b => batcher.add(b))
    } catch (error) {
      if (error instanceof BatcherFullError) throw new StatusQueueFullError()
      if (error instanceof BatcherClosedError) throw new ShuttingDownError()
      throw error
    }
    const results = await Promise.all(queued)
    for (const result of results) metrics.heartbeats.inc({ result: result?.outcome ?? 'not_processing' })
    const stale = results.filter(r => r?.outcome === 'stale').length
    if (stale > 0) metrics.staleReports.inc({ kind: 'heartbeat' }, stale)
    return results
  }

  return {
    async heartbeat (one) {
      const [result] = await beat([one], () => 'body/progress')
      if (result === undefined) throw new TaskNotFoundError(one.id)
      if (result.outcome === 'stale') throw new LeaseStaleError(one.id)
      if (result.outcome === 'not_processing' || result.processingDeadline === null) throw new TaskNotProcessingError(one.id)
      return { processingDeadline: result.processingDeadline, cancelRequested: result.cancelRequested }
    },

    async heartbeatMany (beats) {
      // The same id twice: the last heartbeat counts (as the batcher would have it).
      const byId = new Map<string, Heartbeat>()
      for (const b of beats) { byId.delete(b.id); byId.set(b.id, b) }
      const unique = [...byId.values()]
      const results = await beat(unique, i => `body/heartbeats/${beats.indexOf(unique[i] as Heartbeat)}/progress`)
      const answer: HeartbeatBatchAnswer = { extended: [], notProcessing: [], stale: [] }
      unique.forEach((b, i) => {
        const result = results[i]
        if (result?.outcome === 'extended' && result.processingDeadline !== null) {
          answer.extended.push({ id: b.id, processingDeadline: result.processingDeadline, cancelRequested: result.cancelRequested })
        } else if (result?.outcome === 'stale') answer.stale.push(b.id)
        else answer.notProcessing.push(b.id)
      })
      return answer
    },

    async release (id, lease) {
      const result = await store.release(id, lease)
      switch (result.outcome) {
        case 'not_found': throw new TaskNotFoundError(id)
        case 'not_processing': throw new TaskNotProcessingError(id)
        case 'stale':
          metrics.staleReports.inc({ kind: 'release' })
          throw new LeaseStaleError(id)
        case 'cancelled':
          metrics.tasksCancelled.inc({ how: 'reported' })
          return { cancelled: true }
        case 'released':
          metrics.releases.inc()
          deps.wake([result.queue])
          return { cancelled: false }
      }
    },

    async cancel (id) {
      const result = await store.cancel(id)
      if (result.found === 0) throw new TaskNotFoundError(id)
      if (result.removed + result.requested === 0) throw new TaskNotCancellableError(id)
      countCancels(result)
      return { removed: result.removed > 0, requested: result.requested > 0 }
    },

    async cancelMany (filter) {
      const result = await store.cancelMany(filter)
      countCancels(result)
      return { removed: result.removed, requested: result.requested }
    },

    get depth () { return batcher.queued + batcher.inFlight },

    async close (timeoutMs) {
      const abandoned = await batcher.close({ timeoutMs })
      if (abandoned > 0) log.warn({ abandoned }, 'heartbeats could not be written before shutdown')
    }
  }

  function countCancels (result: { removed: number, requested: number }): void {
    if (result.removed > 0) metrics.tasksCancelled.inc({ how: 'removed' }, result.removed)
    if (result.requested > 0) metrics.tasksCancelled.inc({ how: 'requested' }, result.requested)
  }
}
