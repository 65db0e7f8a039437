/**
 * One flush of the batched writer: the queued reports in one bulk statement, which also claims the
 * next tasks of the largest `fetch_next` rider group.
 */
import type { Logger } from 'pino'
import type { StatusUpdate } from '../../domain/types.js'
import { isStoreUnavailable } from '../../store/index.js'
import type { TaskStore } from '../../store/task-store.js'
import { resultsOf, type ReportResult } from './outcome.js'
import type { Riders } from './riders.js'

export type StatusStore = Pick<TaskStore, 'writeReports' | 'setStatusManyAndClaim'>

/** Returns the batcher's flush: one result per update (applied, cancelled, stale or not found). */
export function createStatusFlush (deps: { store: StatusStore, riders: Riders, log: Logger }): (updates: StatusUpdate[]) => Promise<ReportResult[]> {
  const { store, riders, log } = deps

  async function writeAlone (update: StatusUpdate): Promise<ReportResult> {
    try {
      return resultsOf([update], await store.writeReports([update]))[0] ?? 'not_found'
    } catch (error) {
      if (isStoreUnavailable(error)) throw error
      log.error({ err: error, id: update.id }, 'a status report cannot be written; answered as not applied')
      return 'not_found'
    }
  }

  return async (updates) => {
    const { main, rest } = riders.take()
    for (const group of rest) group.claimApart()
    try {
      if (main === undefined) {
        return resultsOf(updates, await store.writeReports(updates))
      }
      const written = await store.setStatusManyAndClaim(updates, main.filter, main.size)
      main.hand(written.claimed)
      return resultsOf(updates, written)
    } catch (error) {
      // The store is down: the batcher retries the batch, its riders fail now (503). Any other
      // error means some report in it cannot be written; one at a time the good ones still are,
      // a bad one is answered as not applied instead of failing every flush it is part of.
      if (isStoreUnavailable(error)) {
        main?.fail(error)
        throw error
      }
      main?.claimApart()
      return await Promise.all(updates.map(writeAlone))
    }
  }
}
