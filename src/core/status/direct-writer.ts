/**
 * Batching off: each report is its own statement, and a `fetch_next` a claim of its own after it
 * (the baseline the benchmark compares the batched writer against). Nothing is queued.
 */
import { countRequested, writtenOutcome } from './outcome.js'
import type { StatusWriter, StatusWriterDeps } from './types.js'

export function createDirectWriter (deps: StatusWriterDeps): StatusWriter {
  const { store, metrics } = deps
  metrics.trackQueueDepth('status', () => 0)

  const writer: StatusWriter = {
    async report (updates) {
      countRequested(metrics, updates)
      const applied = new Set<string>()
      for (const written of await Promise.all(updates.map(u => store.setStatusMany([u])))) for (const id of written) applied.add(id)
      return writtenOutcome(metrics, updates, applied)
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
