/**
 * Wakes long-polling claim requests as soon as a matching task may be claimable.
 *
 * Produce (and, across brokers, a PostgreSQL NOTIFY) calls `notify(queue, count)`; at most
 * `count` matching waiters wake, oldest first, so one task does not stampede every waiter. A woken
 * waiter that loses the race simply claims nothing and waits again. Watchers (the claim service's
 * waiting rooms, one per filter) hear of every matching notify and of the close.
 */
import type { ClaimFilter, QueueRef } from '../../domain/types.js'

interface Waiter {
  filter: ClaimFilter
  wake: () => void
}

export interface Watcher {
  /** Tasks of a matching queue became claimable. */
  tasks: () => void
  closed: () => void
}

export type TaskSignal = ReturnType<typeof createTaskSignal>

function matches (filter: ClaimFilter, queue: QueueRef): boolean {
  if (filter.application !== undefined && filter.application !== queue.application) return false
  if (filter.namespace !== undefined && filter.namespace !== queue.namespace) return false
  return true
}

export function createTaskSignal () {
  const waiters = new Set<Waiter>()
  const watchers = new Map<Watcher, ClaimFilter>()
  let closed = false
  let sequence = 0
  return {
    get waiting () { return waiters.size },
    /** Bumped on every notify: a claimer reads it before claiming, so a task produced between its
     * empty claim and its wait is not missed. */
    get sequence () { return sequence },
    get closed () { return closed },

    /** Resolves when a matching task arrives, the timeout passes, `abort` fires or the signal closes. */
    wait (filter: ClaimFilter, timeoutMs: number, abort?: AbortSignal): Promise<void> {
      if (closed || abort?.aborted === true || timeoutMs <= 0) return Promise.resolve()
      return new Promise(resolve => {
        const waiter: Waiter = { filter, wake: done }
        const timer = setTimeout(done, timeoutMs)
        timer.unref()
        abort?.addEventListener('abort', done, { once: true })
        waiters.add(waiter)
        function done () {
          clearTimeout(timer)
          abort?.removeEventListener('abort', done)
          waiters.delete(waiter)
          resolve()
        }
      })
    },

    /** Calls `watcher` on every matching notify and on close, until the returned function is called. */
    watch (filter: ClaimFilter, watcher: Watcher): () => void {
      watchers.set(watcher, filter)
      return () => { watchers.delete(watcher) }
    },

    /** `count` tasks for `queue` became claimable. */
    notify (queue: QueueRef, count: number): void {
      sequence++
      for (const [watcher, filter] of watchers) if (matches(filter, queue)) watcher.tasks()
      let left = count
      for (const waiter of waiters) {
        if (left <= 0) break
        if (matches(waiter.filter, queue)) {
          waiter.wake()
          left--
        }
      }
    },

    /** Wakes everyone and makes later waits return at once (shutdown). */
    close (): void {
      closed = true
      for (const waiter of [...waiters]) waiter.wake()
      for (const watcher of [...watchers.keys()]) watcher.closed()
    }
  }
}
