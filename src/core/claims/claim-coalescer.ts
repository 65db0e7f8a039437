/**
 * Coalesces concurrent claims into one statement. A claim statement costs about the same whether it
 * takes one row or a few dozen (one round trip, one transaction), so claim requests for the same
 * filter that arrive while a claim statement is running wait for it to finish and are then served
 * together by ONE `SKIP LOCKED` claim for the sum of their limits. The tasks are handed out in
 * order: the earliest request gets the oldest tasks.
 *
 * It is the generic batcher with interval 0 (a statement starts as soon as none is in flight, so a
 * lone request waits for nothing) and no retries (a failed claim fails its requests at once: 503).
 */
import { createBatcher, type Batcher } from '../batcher/batcher.js'
import type { TaskStore } from '../../store/task-store.js'
import type { ClaimFilter, StoredTask } from '../../domain/types.js'

interface ClaimRequest { seq: number, limit: number }

/** Requests served by one statement; with limit 100 each that is up to 6,400 rows. */
const MAX_REQUESTS_PER_CLAIM = 64
/** Distinct filters coalesced at once; beyond that claims go straight to the store. */
const MAX_FILTERS = 1000

export type ClaimCoalescer = ReturnType<typeof createClaimCoalescer>

export function createClaimCoalescer (store: TaskStore) {
  const byFilter = new Map<string, Batcher<ClaimRequest, StoredTask[]>>()
  let seq = 0

  function batcherFor (filter: ClaimFilter): Batcher<ClaimRequest, StoredTask[]> | undefined {
    const key = `${filter.application ?? '\u0000'}\u0001${filter.namespace ?? '\u0000'}`
    let batcher = byFilter.get(key)
    if (batcher === undefined && byFilter.size < MAX_FILTERS) {
      batcher = createBatcher<ClaimRequest, number, StoredTask[]>({
        name: 'claims',
        maxBatchSize: MAX_REQUESTS_PER_CLAIM,
        flushIntervalMs: 0,
        maxQueued: 100_000,
        keyOf: request => request.seq,
        retryFailedFlushes: false,
        flush: async (requests) => {
          const total = requests.reduce((sum, r) => sum + r.limit, 0)
          const tasks = await store.claim(filter, total)
          let next = 0
          return requests.map(r => {
            const share = tasks.slice(next, next + r.limit)
            next += share.length
            return share
          })
        }
      })
      byFilter.set(key, batcher)
    }
    return batcher
  }

  return {
    claim (filter: ClaimFilter, limit: number): Promise<StoredTask[]> {
      const batcher = batcherFor(filter)
      return batcher === undefined ? store.claim(filter, limit) : batcher.add({ seq: seq++, limit })
    },
    async close (): Promise<void> {
      await Promise.all([...byFilter.values()].map(b => b.close()))
    }
  }
}
