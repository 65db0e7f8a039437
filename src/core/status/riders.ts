/**
 * `fetch_next` riders: reports that also ask for the next task. A rider waits for the flush that
 * writes its report; that flush statement also claims one task per rider of the largest filter
 * group, so a report-and-fetch costs one statement and one commit instead of two. Riders of other
 * filters are claimed beside the flush, with their own filter.
 */
import { BatcherClosedError } from '../batcher/batcher.js'
import { ShuttingDownError } from '../../domain/errors.js'
import type { ClaimFilter, StoredTask } from '../../domain/types.js'

type Claim = (filter: ClaimFilter, limit: number) => Promise<StoredTask[]>

/** Riders with one filter, taken for one flush. */
export interface RiderGroup {
  readonly filter: ClaimFilter
  readonly size: number
  /** Hands tasks claimed in the flush (oldest first) in arrival order; riders left over get none. */
  hand (tasks: readonly StoredTask[]): void
  /** Claims for these riders outside the flush statement. */
  claimApart (): void
  fail (error: unknown): void
}

export interface Riders {
  /** Queues a rider; resolves with its next task, or undefined (none pending, or shutting down). */
  wait (filter: ClaimFilter): Promise<StoredTask | undefined>
  /**
   * Takes EVERY waiting rider, grouped by filter: `main` (the largest group, the first to arrive on
   * a tie) rides in the flush statement, `rest` must be claimed apart. All, not a batch's worth: a
   * rider is queued right after its report, so taking them all when a flush starts means none can
   * outlive the last flush (their number is bounded by the requests in flight).
   */
  take (): { main: RiderGroup | undefined, rest: RiderGroup[] }
  /** Shutdown: riders still waiting (their reports were abandoned) get no next task. */
  releaseAll (): void
  readonly waiting: number
}

interface Rider { filter: ClaimFilter, resolve: (task: StoredTask | undefined) => void, reject: (error: unknown) => void }

export function filterKey (f: ClaimFilter): string {
  return f.application === undefined ? '' : f.namespace === undefined ? `a:${f.application}` : `n:${f.application}\u0000${f.namespace}`
}

/** `countClaimed` counts the tasks claimed in flush statements (a claim apart counts its own). */
export function createRiders (deps: { claim: Claim, countClaimed: (count: number) => void }): Riders {
  let waiting: Rider[] = []

  function group (riders: Rider[]): RiderGroup {
    const filter = (riders[0] as Rider).filter
    return {
      filter,
      size: riders.length,
      hand (tasks) {
        deps.countClaimed(tasks.length)
        riders.forEach((rider, i) => { rider.resolve(tasks[i]) })
      },
      claimApart () {
        deps.claim(filter, riders.length).then(
          tasks => { riders.forEach((rider, i) => { rider.resolve(tasks[i]) }) },
          (error: unknown) => {
            // Shutting down: the reports were written; the worker simply gets no next task.
            if (error instanceof BatcherClosedError || error instanceof ShuttingDownError) riders.forEach(r => { r.resolve(undefined) })
            else riders.forEach(r => { r.reject(error) })
          })
      },
      fail (error) { riders.forEach(r => { r.reject(error) }) }
    }
  }

  return {
    wait (filter) {
      const task = new Promise<StoredTask | undefined>((resolve, reject) => { waiting.push({ filter, resolve, reject }) })
      task.catch(() => {}) // its caller may be awaiting its report first; a rejection meanwhile is not unhandled
      return task
    },
    take () {
      if (waiting.length === 0) return { main: undefined, rest: [] }
      const taken = waiting
      waiting = []
      const byFilter = new Map<string, Rider[]>()
      for (const rider of taken) {
        const key = filterKey(rider.filter)
        const riders = byFilter.get(key)
        if (riders === undefined) byFilter.set(key, [rider])
        else riders.push(rider)
      }
      let largest: Rider[] = []
      for (const riders of byFilter.values()) if (riders.length > largest.length) largest = riders
      return { main: group(largest), rest: [...byFilter.values()].filter(r => r !== largest).map(group) }
    },
    releaseAll () {
      for (const rider of waiting.splice(0)) rider.resolve(undefined)
    },
    get waiting () { return waiting.length }
  }
}
