/**
 * Batching off: each report is its own statement, and a `fetch_next` a claim of its own after it
 * (the baseline the benchmark compares the batched writer against). Nothing is queued.
 */
import { countRequested, resultsOf, writtenOutcome } from './outcome.js'
import type { StatusWriter, StatusWriterDeps } from './types.js'

export function createDirectWriter (deps: StatusWriterDeps): StatusWriter {
  const { store, metrics } = deps
  metrics.trackQueueDepth('status', () => 0)

  const writer: StatusWriter = {
    async report (updates) {
      countRequested(metrics, updates)
      const results = await Promise.all(updates.map(async u => resultsOf([u], await store.writeReports([u]))[0] ?? 'not_found'))
      return writtenOutcome(metrics, updates, results)
    },

    async reportAndClaimNext (update, filter) {
      const outcome = await writer.report([update])
      const [task] = await deps.claim(filter, 1)
      return { outcome, task }
    },

    depth: 0,

    async close () {}
  }
  return writer
}
