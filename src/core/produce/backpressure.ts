/**
 * Produce backpressure, after upstream's writer rules but answered over HTTP: when a produce
 * request would push the pending or delayed counts past their limits, or workers already hold the
 * processing limit, the request gets 503 + Retry-After and nothing of it is stored.
 *
 * A limit of 0 means no limit, and is the default: PostgreSQL holds the backlog here (upstream's
 * limits exist because Kafka holds its backlog), so a large queue is normal, not overload. With
 * every limit off nothing is counted at all.
 *
 * The counts come from one grouped query, reused for `cacheMs` (not a scan per request). Tasks
 * accepted since the last count are added to the cached figures, so a burst of requests inside the
 * cache window cannot overshoot the limits by more than the tasks workers finished meanwhile.
 */
import type { Config } from '../../config/config.js'
import type { LiveCounts, TaskStore } from '../../store/task-store.js'

export type Backpressure = ReturnType<typeof createBackpressure>

export function createBackpressure (store: TaskStore, limits: Config['backpressure'], nowMs: () => number = Date.now) {
  let cached: { counts: LiveCounts, at: number } | undefined
  let counting: Promise<LiveCounts> | undefined

  async function counts (): Promise<LiveCounts> {
    if (cached !== undefined && nowMs() - cached.at < limits.cacheMs) return cached.counts
    // Concurrent requests share one count query.
    counting ??= store.countLive().then(fresh => {
      cached = { counts: fresh, at: nowMs() }
      return fresh
    }).finally(() => { counting = undefined })
    return counting
  }

  const limited = (limit: number) => limit > 0
  const anyLimit = limited(limits.maxPending) || limited(limits.maxDelay) || limited(limits.maxProcessing)

  return {
    /** Why a batch of new tasks must be refused, or null when it may be stored. */
    async refusal (batch: { pending: number, delay: number }): Promise<string | null> {
      if (!anyLimit) return null
      const live = await counts()
      if (limited(limits.maxProcessing) && live.processing + live.claimed >= limits.maxProcessing) {
        return `${live.processing + live.claimed} tasks are being processed (limit ${limits.maxProcessing})`
      }
      if (limited(limits.maxDelay) && batch.delay > 0 && live.delay + batch.delay > limits.maxDelay) {
        return `${live.delay} delayed tasks + ${batch.delay} would pass the limit of ${limits.maxDelay}`
      }
      if (limited(limits.maxPending) && batch.pending > 0 && live.pending + batch.pending > limits.maxPending) {
        return `${live.pending} pending tasks + ${batch.pending} would pass the limit of ${limits.maxPending}`
      }
      return null
    },
    /** Counts tasks just stored into the cached figures. */
    record (stored: { pending: number, delay: number }): void {
      if (cached === undefined) return
      cached.counts.pending += stored.pending
      cached.counts.delay += stored.delay
    }
  }
}
