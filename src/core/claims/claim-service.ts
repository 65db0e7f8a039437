/**
 * Claims for pull workers, with long-polling: a claim that finds nothing waits (up to `wait_ms`)
 * in the waiting room of its filter (waiting-room.ts), which re-checks for all its waiters with one
 * statement at a time: when a matching task is announced, and every `recheckMs` otherwise (a task
 * released by another broker's upkeep announces nothing here). At most `maxWaiters` claims wait at
 * once; one more is answered 503 + Retry-After.
 */
import { TooManyWaitersError } from '../../domain/errors.js'
import type { Metrics } from '../metrics.js'
import type { TaskStore } from '../../store/task-store.js'
import type { ClaimFilter, StoredTask } from '../../domain/types.js'
import { createClaimCoalescer } from './claim-coalescer.js'
import type { TaskSignal } from './task-signal.js'
import { createWaitingRoom, type WaitingRoom } from './waiting-room.js'

export type ClaimService = ReturnType<typeof createClaimService>

export function createClaimService (deps: {
  store: TaskStore
  signal: TaskSignal
  metrics: Metrics
  maxWaitMs: number
  coalesce: boolean
  /** Claims long-polling at once, all filters together (TASKBROKER_CLAIM_MAX_WAITERS). */
  maxWaiters: number
  /** Even without a wake-up, a waiting room looks again this often (TASKBROKER_CLAIM_RECHECK_MS). */
  recheckMs: number
}) {
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
  const rooms = new Map<string, WaitingRoom>()
  let waiting = 0

  function roomFor (filter: ClaimFilter): WaitingRoom {
    const key = `${filter.application ?? '\u0000'}\u0001${filter.namespace ?? '\u0000'}`
    let room = rooms.get(key)
    if (room === undefined) {
      const unwatch = signal.watch(filter, { tasks: () => created.kick(), closed: () => created.close() })
      const created = createWaitingRoom({
        claim: (limit) => timedStore.claim(filter, limit),
        recheckMs: deps.recheckMs,
        onEmpty: () => {
          if (rooms.get(key) !== created) return
          rooms.delete(key)
          unwatch()
        }
      })
      rooms.set(key, created)
      room = created
    }
    return room
  }

  async function claimOnce (filter: ClaimFilter, limit: number): Promise<StoredTask[]> {
    return await (coalescer?.claim(filter, limit) ?? timedStore.claim(filter, limit))
  }

  return {
    close: async () => { await coalescer?.close() },
    /** Claims waiting right now, all filters together. */
    get waiting () { return waiting },
    /** Claims up to `limit` tasks, waiting up to `waitMs` for one to arrive. `abort` ends the wait early. */
    async claim (filter: ClaimFilter, limit: number, waitMs = 0, abort?: AbortSignal): Promise<StoredTask[]> {
      const deadline = Date.now() + Math.min(waitMs, deps.maxWaitMs)
      const seen = signal.sequence
      let tasks = await claimOnce(filter, limit)
      const remaining = deadline - Date.now()
      if (tasks.length === 0 && remaining > 0 && !signal.closed && abort?.aborted !== true) {
        if (waiting >= deps.maxWaiters) throw new TooManyWaitersError(String(deps.maxWaiters))
        const room = roomFor(filter)
        waiting++
        metrics.claimWaiters.inc()
        try {
          const waited = room.wait(limit, remaining, abort)
          // A task announced while the claim above ran: look again at once rather than in a second.
          if (signal.sequence !== seen) room.kick()
          tasks = await waited
        } finally {
          waiting--
          metrics.claimWaiters.dec()
        }
      }
      metrics.tasksClaimed.inc(tasks.length)
      return tasks
    }
  }
}
