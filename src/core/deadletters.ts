/** Dead letters: listed a page at a time, requeued as fresh pending tasks (waking claims), purged. */
import { DeadletterNotFoundError, DeadletterUndecodableError, InvalidRequestError, TaskAlreadyLiveError } from '../domain/errors.js'
import type { DeadletterFilter, DeadletterPage, DeadletterStore } from '../store/deadletter-store.js'
import { decodeCursor } from '../store/index.js'
import type { Wake } from './wake.js'

export type { DeadLetter, DeadletterPage } from '../store/deadletter-store.js'

export interface DeadletterQuery extends DeadletterFilter {
  /** Most dead letters in the page (default 100; front ends bound it). */
  limit?: number | undefined
  /** `nextCursor` of the previous page; omitted for the first page. */
  cursor?: string | undefined
}

export interface Deadletters {
  list (query: DeadletterQuery): Promise<DeadletterPage>
  /** Puts the dead letter back as a pending task, no attempts counted. */
  requeue (id: string): Promise<void>
  /** Purges the dead letter. */
  remove (id: string): Promise<void>
}

export function createDeadletters (deps: { store: DeadletterStore, wake: Wake, now: () => Date }): Deadletters {
  const { store } = deps
  return {
    async list ({ application, namespace, taskname, limit = 100, cursor }) {
      if (cursor !== undefined && decodeCursor(cursor) === null) {
        throw new InvalidRequestError('querystring/cursor is not a cursor this API handed out: pass next_cursor of a previous page as is')
      }
      return await store.list({ application, namespace, taskname, limit, after: cursor })
    },

    async requeue (id) {
      const result = await store.requeue(id, deps.now())
      if (result.outcome === 'not_found') throw new DeadletterNotFoundError(id)
      if (result.outcome === 'live') throw new TaskAlreadyLiveError(id)
      if (result.outcome === 'undecodable') throw new DeadletterUndecodableError(id, result.reason)
      deps.wake([{ ...result.queue, count: 1 }])
    },

    async remove (id) {
      if (!await store.remove(id)) throw new DeadletterNotFoundError(id)
    }
  }
}
