/**
 * Push outcomes → the store: `claimed → processing` for delivered tasks, `claimed → pending` for
 * the others. The seed's "we may want to treat claimed → processing updates the same way": with
 * batching on (TASKBROKER_PUSH_UPDATE_BATCHING, the default) outcomes go through the generic
 * batcher and a flush writes them all with one statement; off, every outcome is its own statement.
 *
 * Both ways the statement is fenced (status still `claimed`, same claim token), so a task that
 * moved on meanwhile (already reported by its worker, or reset by upkeep) is left alone.
 */
import type { Logger } from 'pino'
import { createBatcher } from '../batcher/batcher.js'
import type { PushConfig } from '../../config/config.js'
import type { Metrics } from '../metrics.js'
import type { PushOutcome, PushStore } from '../../store/push-store.js'

export type PushUpdater = ReturnType<typeof createPushUpdater>

export function createPushUpdater (deps: {
  store: PushStore
  config: Pick<PushConfig, 'updateBatching' | 'updateBatchSize' | 'updateFlushIntervalMs'>
  /** Bound on outcomes queued; the delivery never has more outstanding than this. */
  maxQueued: number
  metrics: Metrics
  log: Logger
}) {
  const { store, config, metrics, log } = deps

  function count (outcome: PushOutcome, applied: boolean): void {
    metrics.pushUpdates.inc({ to: outcome.delivered ? 'processing' : 'pending', result: applied ? 'applied' : 'skipped' })
  }

  const batcher = config.updateBatching
    ? createBatcher<PushOutcome, string, boolean>({
      name: 'push_update',
      maxBatchSize: config.updateBatchSize,
      flushIntervalMs: config.updateFlushIntervalMs,
      maxQueued: deps.maxQueued,
      keyOf: outcome => outcome.id,
      flush: async (outcomes) => {
        const applied = await store.settle(outcomes)
        return outcomes.map(o => applied.has(o.id))
      },
      onFlush: ({ size, durationMs, error }) => {
        if (error !== undefined) return
        metrics.batchSize.observe({ batcher: 'push_update' }, size)
        metrics.flushDuration.observe({ batcher: 'push_update' }, durationMs / 1000)
      },
      onError: (error, attempt, size) => {
        metrics.flushFailures.inc({ batcher: 'push_update' })
        log.warn({ err: error, attempt, size }, 'push update flush failed; retrying')
      }
    })
    : undefined
  if (batcher !== undefined) metrics.trackQueueDepth('push_update', () => batcher.queued + batcher.inFlight)

  return {
    /**
     * Writes one outcome. Resolves with whether the task changed; never rejects: a failure is
     * logged and the task stays `claimed` until its lease passes (upkeep then makes it pending).
     */
    async settle (outcome: PushOutcome): Promise<boolean> {
      let applied = false
      try {
        applied = batcher !== undefined
          ? await batcher.add(outcome)
          : (await store.settle([outcome])).has(outcome.id)
      } catch (error) {
        log.error({ err: error, id: outcome.id, delivered: outcome.delivered }, 'push outcome not written; the task stays claimed until its lease passes')
        return false
      }
      count(outcome, applied)
      return applied
    },

    /** Writes everything queued (final flush) within `timeoutMs`. */
    async close (timeoutMs: number): Promise<void> {
      if (batcher === undefined) return
      const abandoned = await batcher.close({ timeoutMs })
      if (abandoned > 0) log.error({ abandoned, timeoutMs }, 'push outcomes not written before shutdown; those tasks stay claimed until their lease passes')
    }
  }
}
