/**
 * The long-polls of one claim filter wait together in one room, so what they cost the database
 * does not grow with their number: the room runs ONE claim statement at a time for the waiters at
 * its head (up to MAX_WAITERS_PER_CLAIM of them, for the sum of their limits), when a matching task
 * is announced (`kick`) and otherwise once per re-check interval, and hands the tasks out oldest
 * waiter first. When a statement got all it asked for, more may be ready: the next waiters get the
 * next statement at once. (Each waiter re-running its own claim every second cost a statement per
 * waiter per second: 782 in 3 s for 500 waiters in test/claims/waiters.test.ts.)
 *
 * A waiter whose time runs out while a statement for it is in flight is answered when the statement
 * returns, with what it claimed for it: a task claimed and never handed out would be stuck until
 * its processing deadline. A waiter whose client went away gets nothing; its share goes to the next
 * waiters in the room, and what no waiter is left to take is released (`unclaimed`).
 *
 * Produce may hand its tasks straight to waiters (`reserve`): the waiters it reserves are held out
 * of the room's own statements, as if one were in flight for them, until the produce statement
 * has answered and `deliver` gives them the tasks it inserted as theirs.
 */
import type { StoredTask } from '../../domain/types.js'

/** Waiters served by one statement: with a limit of 100 each, up to 6,400 rows. */
export const MAX_WAITERS_PER_CLAIM = 64

interface Waiter {
  limit: number
  /** A statement for this waiter is running; its answer waits for that statement. */
  inFlight: boolean
  /** A produce is handing it tasks; its answer waits for that produce. */
  reserved: boolean
  /** Its time ran out while in flight. */
  expired: boolean
  /** The client went away. */
  aborted: boolean
  finish: (result: StoredTask[] | { error: unknown }) => void
}

export interface WaitingRoom {
  readonly size: number
  /** Waits up to `timeoutMs` for tasks (at most `limit`); [] when none came in time. */
  wait (limit: number, timeoutMs: number, abort?: AbortSignal): Promise<StoredTask[]>
  /** Matching tasks may be claimable: re-check now (or right after the statement in flight). */
  kick (): void
  /** Holds waiters (oldest first, none a statement is running for) for up to `tasks` tasks that a
   * produce will hand them; undefined when no waiter is free. */
  reserve (tasks: number): Reservation | undefined
  /** Answers every waiter not in flight with [] (shutdown); later waits return [] at once. */
  close (): void
}

/** Waiters held for a produce's hand-off. */
export interface Reservation {
  /** How many tasks the held waiters take at most (the sum of their limits, up to what was asked). */
  readonly capacity: number
  /** Gives `tasks` to the held waiters (oldest first), then to other free waiters of the room, and
   * frees the rest of them. Returns the tasks nobody took (their clients went away). */
  deliver (tasks: StoredTask[]): StoredTask[]
}

export function createWaitingRoom (options: {
  claim: (limit: number) => Promise<StoredTask[]>
  /** Tasks claimed for waiters whose clients all went away before the answer came. */
  unclaimed: (tasks: StoredTask[]) => void
  recheckMs: number
  /** Called when the room has emptied (its owner may drop it). */
  onEmpty: () => void
}): WaitingRoom {
  const waiters = new Set<Waiter>() // insertion order: oldest first
  let running = false
  let again = false
  let closed = false
  let timer: ReturnType<typeof setTimeout> | undefined

  function schedule (): void {
    if (waiters.size === 0) {
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      if (!running) options.onEmpty()
      return
    }
    if (timer !== undefined || closed) return
    timer = setTimeout(() => {
      timer = undefined
      kick()
    }, options.recheckMs)
    timer.unref()
  }

  function kick (): void {
    if (closed) return
    if (running) {
      again = true
      return
    }
    run().catch(() => {}) // it handles its own errors
  }

  async function run (): Promise<void> {
    running = true
    try {
      do {
        again = false
        if (closed) break
        const batch: Waiter[] = []
        for (const waiter of waiters) {
          if (batch.length === MAX_WAITERS_PER_CLAIM) break
          if (!waiter.reserved) batch.push(waiter)
        }
        if (batch.length === 0) break
        const total = batch.reduce((sum, w) => sum + w.limit, 0)
        for (const waiter of batch) waiter.inFlight = true
        let tasks: StoredTask[]
        try {
          tasks = await options.claim(total)
        } catch (error) {
          // As a claim of its own would have: the waiters it was for get the error (503).
          for (const waiter of batch) waiter.finish({ error })
          continue
        }
        for (const waiter of batch) waiter.inFlight = false
        let next = 0
        // Oldest first; the share of a waiter whose client left goes to the ones after it.
        for (const waiter of [...waiters]) {
          if (next >= tasks.length) break
          if (waiter.aborted || waiter.reserved) continue
          const share = tasks.slice(next, next + waiter.limit)
          next += share.length
          waiter.finish(share)
        }
        if (next < tasks.length) options.unclaimed(tasks.slice(next))
        for (const waiter of batch) if (waiter.expired || waiter.aborted) waiter.finish([])
        // It got all it asked for: more may be ready for the waiters after these.
        if (tasks.length === total) again = true
      } while (again)
    } finally {
      running = false
      schedule()
    }
  }

  function reserve (tasks: number): Reservation | undefined {
    if (closed) return undefined
    const held: Waiter[] = []
    let capacity = 0
    for (const waiter of waiters) {
      if (capacity >= tasks) break
      if (waiter.inFlight || waiter.reserved || waiter.aborted) continue
      waiter.reserved = true
      held.push(waiter)
      capacity += waiter.limit
    }
    if (held.length === 0) return undefined
    return {
      capacity: Math.min(capacity, tasks),
      deliver (given) {
        let next = 0
        const share = (waiter: Waiter) => {
          const part = given.slice(next, next + waiter.limit)
          next += part.length
          waiter.finish(part)
        }
        for (const waiter of held) {
          waiter.reserved = false
          if (next < given.length && !waiter.aborted) share(waiter)
          else if (waiter.expired || waiter.aborted) waiter.finish([])
        }
        for (const waiter of [...waiters]) {
          if (next >= given.length) break
          if (!waiter.inFlight && !waiter.reserved && !waiter.aborted) share(waiter)
        }
        schedule()
        return given.slice(next)
      }
    }
  }

  return {
    get size () { return waiters.size },
    kick,
    reserve,

    wait (limit, timeoutMs, abort) {
      if (closed || abort?.aborted === true || timeoutMs <= 0) return Promise.resolve([])
      return new Promise<StoredTask[]>((resolve, reject) => {
        let done = false
        const waiter: Waiter = {
          limit,
          inFlight: false,
          reserved: false,
          expired: false,
          aborted: false,
          finish (result) {
            if (done) return
            done = true
            clearTimeout(deadline)
            abort?.removeEventListener('abort', onAbort)
            waiters.delete(waiter)
            if (Array.isArray(result)) resolve(result)
            else reject(result.error)
            schedule()
          }
        }
        const deadline = setTimeout(() => {
          if (waiter.inFlight || waiter.reserved) waiter.expired = true
          else waiter.finish([])
        }, timeoutMs)
        deadline.unref()
        const onAbort = () => {
          waiter.aborted = true
          if (!waiter.inFlight && !waiter.reserved) waiter.finish([])
        }
        abort?.addEventListener('abort', onAbort, { once: true })
        waiters.add(waiter)
        schedule()
      })
    },

    close () {
      closed = true
      for (const waiter of [...waiters]) {
        if (waiter.inFlight || waiter.reserved) waiter.expired = true
        else waiter.finish([])
      }
    }
  }
}
