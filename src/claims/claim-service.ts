/**
 * Claims for pull workers, with long-polling: an empty claim waits (up to `wait_ms`) until the
 * task signal says a matching task arrived, then claims again.
 */
import type { Metrics } from '../metrics.js'
import type { TaskStore } from '../store/task-store.js'
import type { ClaimFilter, StoredTask } from '../store/types.js'
import { createClaimCoalescer } from './claim-coalescer.js'
import type { TaskSignal } from './task-signal.js'

/** Even without a notification (a task released by another broker's upkeep), look again this often. */
const REPOLL_MS = 1000

export type ClaimService = ReturnType<typeof createClaimService>

export function createClaimService (deps: { store: TaskStore, signal: TaskSignal, metrics: Metrics, maxWaitMs: number, coalesce: boolean }) {
  const { signal, metrics } = deps
  const timedStore = {
    ...deps.store,
    async claim (filter: ClaimFilter, limit: number) {
      const end = metrics.claimDuration.startTimer()
      try {
        return await deps.store.claim(filter, limit)
      } finally {
        end()
      }
    }
  }
  const coalescer = deps.coalesce ? createClaimCoalescer(timedStore) : undefined

  async function claimOnce (filter: ClaimFilter, limit: number): Promise<StoredTask[]> {
    const tasks = await (coalescer?.claim(filter, limit) ?? timedStore.claim(filter, limit))
    metrics.tasksClaimed.inc(tasks.length)
    return tasks
  }

  return {
    close: async () => { await coalescer?.close() },
    /** Claims up to `limit` tasks, waiting up to `waitMs` for one to arrive. `abort` ends the wait early. */
    async claim (filter: ClaimFilter, limit: number, waitMs = 0, abort?: AbortSignal): Promise<StoredTask[]> {
      const deadline = Date.now() + Math.min(waitMs, deps.maxWaitMs)
      for (;;) {
        const seen = signal.sequence
        const tasks = await claimOnce(filter, limit)
        if (tasks.length > 0) return tasks
        const remaining = deadline - Date.now()
        if (remaining <= 0 || signal.closed || abort?.aborted === true) return tasks
        if (signal.sequence !== seen) continue
        metrics.claimWaiters.inc()
        try {
          await signal.wait(filter, Math.min(remaining, REPOLL_MS), abort)
        } finally {
          metrics.claimWaiters.dec()
        }
      }
    }
  }
}
