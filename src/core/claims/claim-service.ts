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
import type { ClaimFilter, QueueRef, StoredTask } from '../../domain/types.js'
import { createClaimCoalescer } from './claim-coalescer.js'
import type { TaskSignal } from './task-signal.js'
import { createWaitingRoom, type Reservation, type WaitingRoom } from './waiting-room.js'

/** Waiting claims of one filter held for a produce's tasks of one queue (see `reserve`). */
export interface HeldClaims extends Reservation {
  readonly filter: ClaimFilter
}

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
  /** Puts a task claimed for a client that went away back to pending (no attempt counted). */
  release: (task: StoredTask) => Promise<void>
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

  const keyOf = (filter: ClaimFilter) => `${filter.application ?? '\u0000'}\u0001${filter.namespace ?? '\u0000'}`

  function roomFor (filter: ClaimFilter): WaitingRoom {
    const key = keyOf(filter)
    let room = rooms.get(key)
    if (room === undefined) {
      const unwatch = signal.watch(filter, { tasks: () => created.kick(), closed: () => created.close() })
      const created = createWaitingRoom({
        claim: (limit) => timedStore.claim(filter, limit),
        unclaimed: (tasks) => { for (const task of tasks) deps.release(task).catch(() => {}) },
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

  async function waitFrom (filter: ClaimFilter, limit: number, deadline: number, abort: AbortSignal | undefined, seen: number): Promise<StoredTask[]> {
    let tasks: StoredTask[] = []
    const remaining = deadline - Date.now()
    if (remaining > 0 && !signal.closed && abort?.aborted !== true) {
      if (waiting >= deps.maxWaiters) throw new TooManyWaitersError(String(deps.maxWaiters))
      const room = roomFor(filter)
      waiting++
      metrics.claimWaiters.inc()
      try {
        const waited = room.wait(limit, remaining, abort)
        // A task announced while the claim before the wait ran: look again at once rather than in a second.
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

  return {
    close: async () => { await coalescer?.close() },
    /** Claims waiting right now, all filters together. */
    get waiting () { return waiting },
    /**
     * Holds waiting claims for up to `tasks` tasks of `queue` that a produce is about to store:
     * those of the queue's own filter first, then of its application's, then of no filter. The
     * produce hands each held group the tasks stored as its own (`deliver`), which frees them.
     */
    reserve (queue: QueueRef, tasks: number): HeldClaims[] {
      const held: HeldClaims[] = []
      let left = tasks
      for (const filter of [{ application: queue.application, namespace: queue.namespace }, { application: queue.application }, {}]) {
        if (left <= 0) break
        const reservation = rooms.get(keyOf(filter))?.reserve(left)
        if (reservation === undefined) continue
        left -= reservation.capacity
        held.push({
          filter,
          capacity: reservation.capacity,
          deliver: (given) => {
            const unclaimed = reservation.deliver(given)
            metrics.tasksHandedOff.inc(given.length - unclaimed.length)
            return unclaimed
          }
        })
      }
      return held
    },
    /** Claims up to `limit` tasks, waiting up to `waitMs` for one to arrive. `abort` ends the wait early. */
    async claim (filter: ClaimFilter, limit: number, waitMs = 0, abort?: AbortSignal): Promise<StoredTask[]> {
      const deadline = Date.now() + Math.min(waitMs, deps.maxWaitMs)
      const seen = signal.sequence
      const tasks = await claimOnce(filter, limit)
      if (tasks.length > 0) {
        metrics.tasksClaimed.inc(tasks.length)
        return tasks
      }
      return await waitFrom(filter, limit, deadline, abort, seen)
    },
    /** Read before a claim statement of the caller's own (a report's `fetch_next`), for `waitAfter`. */
    sequence: () => signal.sequence,
    /**
     * Long-polls like `claim` for a caller whose own statement claimed nothing: `seen` is
     * `sequence()` from before that statement, so a task announced since is looked for at once.
     */
    async waitAfter (filter: ClaimFilter, limit: number, waitMs: number, abort: AbortSignal | undefined, seen: number): Promise<StoredTask[]> {
      return await waitFrom(filter, limit, Date.now() + Math.min(waitMs, deps.maxWaitMs), abort, seen)
    }
  }
}
