/**
 * Worker reports → the store. With batching on (the default) reports go through the generic
 * batcher and are written by one bulk statement per flush; with batching off each report is its
 * own statement (the baseline the benchmark compares against).
 *
 * Acknowledgement (`ack`):
 * - `flushed`: a report is answered after the flush that wrote it committed (group commit: nothing
 *   acknowledged is lost on a crash). If that takes longer than `ackTimeoutMs` the caller gets 503;
 *   the report stays queued and is still written.
 * - `queued`: answered at enqueue, as upstream does; a crash can lose the queued reports (the
 *   tasks are then redone after their processing deadline).
 */
import type { Logger } from 'pino'
import { createBatcher, BatcherClosedError, BatcherFullError } from '../batcher/batcher.js'
import type { Config } from '../../config/config.js'
import { ShuttingDownError, StatusAckTimeoutError, StatusQueueFullError, StoreUnavailableError } from '../../domain/errors.js'
import type { Metrics } from '../metrics.js'
import { isStoreUnavailable } from '../../store/errors.js'
import type { TaskStore } from '../../store/task-store.js'
import type { ClaimFilter, StatusUpdate, StoredTask } from '../../domain/types.js'

export type StatusWriter = ReturnType<typeof createStatusWriter>

export interface ReportOutcome {
  /** Written to an existing task (flushed ack, or batching off). */
  applied: string[]
  /** Written, but no such task (never existed, or already finished). */
  notFound: string[]
  /** Accepted but not yet written (queued ack). */
  queued: string[]
}

export interface StatusWriterDeps {
  store: TaskStore
  config: Config['status']
  metrics: Metrics
  log: Logger
  /** Claims outside a flush: for `fetch_next` riders the flush statement does not serve. */
  claim: (filter: ClaimFilter, limit: number) => Promise<StoredTask[]>
}

/**
 * A `fetch_next` waiting for the next flush. The flush statement that writes reports also claims
 * one task per rider (for the most common filter; other filters are claimed beside it), so a
 * report-and-fetch costs one statement and one commit instead of two.
 */
interface Rider { filter: ClaimFilter, key: string, resolve: (task: StoredTask | undefined) => void, reject: (error: unknown) => void }

const filterKey = (f: ClaimFilter) => f.application === undefined ? '' : f.namespace === undefined ? `a:${f.application}` : `n:${f.application}\u0000${f.namespace}`

/**
 * With the store down this long (every status flush since failed to reach it), a report awaiting a
 * flushed ack is answered 503 at once instead of after the ack timeout: the outage is no blip (a
 * killed connection is back within ~50 ms, the first retry), so waiting would only hold the
 * worker for seconds to tell it the same. Queued-ack reports are still queued (bounded).
 */
const KNOWN_DOWN_AFTER_MS = 500

export function createStatusWriter (deps: StatusWriterDeps) {
  const { store, config, metrics, log } = deps
  let riders: Rider[] = []
  /** When status flushes began failing to reach the store; undefined after one succeeded. */
  let downSince: number | undefined
  function refuseFlushedAckWhileDown (): void {
    if (config.ack !== 'flushed' || downSince === undefined || Date.now() - downSince < KNOWN_DOWN_AFTER_MS) return
    throw new StoreUnavailableError(`unreachable since ${new Date(downSince).toISOString()}; status reports are not being written`)
  }

  /** Hands `tasks` (oldest first) to `group` in arrival order; riders left over get none. */
  function distribute (group: Rider[], tasks: StoredTask[]): void {
    metrics.tasksClaimed.inc(tasks.length)
    group.forEach((rider, i) => rider.resolve(tasks[i]))
  }

  /** Claims for riders outside the flush statement (other filters, or a flush that fell back). */
  function claimApart (group: Rider[]): void {
    const first = group[0]
    if (first === undefined) return
    deps.claim(first.filter, group.length).then(
      tasks => group.forEach((rider, i) => rider.resolve(tasks[i])),
      (error: unknown) => {
        // Shutting down: the reports were written; the worker simply gets no next task.
        if (error instanceof BatcherClosedError || error instanceof ShuttingDownError) group.forEach(r => r.resolve(undefined))
        else group.forEach(r => r.reject(error))
      })
  }

  /**
   * Takes EVERY waiting rider for this flush and splits them: the largest filter group rides
   * along in the statement. All, not a batch's worth: a rider is queued right after its report, so
   * taking them all when a flush starts means none can outlive the last flush (their number is
   * bounded by the requests in flight).
   */
  function takeRiders (): { main: Rider[], rest: Rider[][] } {
    if (riders.length === 0) return { main: [], rest: [] }
    const taken = riders
    riders = []
    const groups = new Map<string, Rider[]>()
    for (const rider of taken) {
      const group = groups.get(rider.key)
      if (group === undefined) groups.set(rider.key, [rider])
      else group.push(rider)
    }
    let main: Rider[] = []
    for (const group of groups.values()) if (group.length > main.length) main = group
    return { main, rest: [...groups.values()].filter(g => g !== main) }
  }

  async function writeAlone (update: StatusUpdate): Promise<boolean> {
    try {
      return (await store.setStatusMany([update])).has(update.id)
    } catch (error) {
      if (isStoreUnavailable(error)) throw error
      log.error({ err: error, id: update.id }, 'a status report cannot be written; answered as not applied')
      return false
    }
  }

  const batcher = createBatcher<StatusUpdate, string, boolean>({
    name: 'status',
    maxBatchSize: config.batchSize,
    flushIntervalMs: config.flushIntervalMs,
    maxConcurrentFlushes: config.concurrentFlushes,
    maxQueued: config.maxQueued,
    keyOf: update => update.id,
    flush: async (updates) => {
      const { main, rest } = takeRiders()
      rest.forEach(claimApart)
      try {
        let applied: Set<string>
        const first = main[0]
        if (first === undefined) {
          applied = await store.setStatusMany(updates)
        } else {
          const result = await store.setStatusManyAndClaim(updates, first.filter, main.length)
          applied = result.applied
          distribute(main, result.claimed)
        }
        return updates.map(u => applied.has(u.id))
      } catch (error) {
        // The store is down: the batcher retries the batch, its riders fail now (503). Any other
        // error means some report in it cannot be written; one at a time the good ones still are,
        // a bad one is answered as not applied instead of failing every flush it is part of.
        if (isStoreUnavailable(error)) {
          for (const rider of main) rider.reject(error)
          throw error
        }
        claimApart(main)
        return Promise.all(updates.map(writeAlone))
      }
    },
    onFlush: ({ size, durationMs, error }) => {
      if (error !== undefined) {
        if (isStoreUnavailable(error)) downSince ??= Date.now()
        return
      }
      downSince = undefined
      metrics.batchSize.observe({ batcher: 'status' }, size)
      metrics.flushDuration.observe({ batcher: 'status' }, durationMs / 1000)
    },
    onError: (error, attempt, size) => {
      metrics.flushFailures.inc({ batcher: 'status' })
      log.warn({ err: error, attempt, size }, 'status flush failed; retrying')
    }
  })
  metrics.trackQueueDepth('status', () => batcher.queued + batcher.inFlight)

  /** Waits for a request's flushed acks (one timer per request, not per report), never longer than ackTimeoutMs. */
  function awaitAck<T> (pending: Promise<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new StatusAckTimeoutError()), config.ackTimeoutMs)
      timer.unref()
      pending.then(resolve, (error: unknown) => reject(translate(error))).finally(() => clearTimeout(timer))
    })
  }

  /** Counts reports by status: one metric update per status per request, not one per report. */
  function countRequested (updates: StatusUpdate[]): void {
    let complete = 0; let failure = 0; let retry = 0
    for (const u of updates) {
      if (u.status === 'complete') complete++
      else if (u.status === 'failure') failure++
      else retry++
    }
    if (complete > 0) metrics.statusRequested.inc({ status: 'complete' }, complete)
    if (failure > 0) metrics.statusRequested.inc({ status: 'failure' }, failure)
    if (retry > 0) metrics.statusRequested.inc({ status: 'retry' }, retry)
  }

  function enqueue (update: StatusUpdate): Promise<boolean> {
    try {
      const pending = batcher.add(update)
      // In queued mode nobody awaits this promise; a rejection (shutdown timeout) is only logged.
      pending.catch((error: unknown) => log.error({ err: error, id: update.id }, 'queued status report was not written'))
      return pending
    } catch (error) {
      throw translate(error)
    }
  }

  async function writeDirect (updates: StatusUpdate[]): Promise<Set<string>> {
    const results = await Promise.all(updates.map(u => store.setStatusMany([u])))
    const applied = new Set<string>()
    for (const set of results) for (const id of set) applied.add(id)
    return applied
  }

  return {
    /**
     * Records reports (ids unique; callers dedupe). Throws a 503 error when the queue cannot take
     * all of them, before any is queued, so a rejected request changes nothing.
     */
    async report (updates: StatusUpdate[]): Promise<ReportOutcome> {
      if (config.batching && batcher.closed) throw new ShuttingDownError()
      if (config.batching && batcher.queued + updates.length > config.maxQueued) throw new StatusQueueFullError()
      if (config.batching) refuseFlushedAckWhileDown()
      countRequested(updates)
      let applied: Set<string>
      if (!config.batching) {
        applied = await writeDirect(updates)
      } else {
        const pending = updates.map(enqueue)
        if (config.ack === 'queued') return { applied: [], notFound: [], queued: updates.map(u => u.id) }
        const found = await awaitAck(Promise.all(pending))
        applied = new Set(updates.filter((_, i) => found[i]).map(u => u.id))
      }
      const outcome: ReportOutcome = { applied: [], notFound: [], queued: [] }
      for (const u of updates) (applied.has(u.id) ? outcome.applied : outcome.notFound).push(u.id)
      metrics.statusApplied.inc(outcome.applied.length)
      metrics.statusNotFound.inc(outcome.notFound.length)
      return outcome
    },

    /**
     * One report that also asks for the next task (`fetch_next`). With batching on, the claim
     * rides along with the flush that writes reports; otherwise it is a claim of its own after the
     * report. Resolves when both are done (in `queued` ack mode the claim still waits for a flush).
     */
    async reportAndClaimNext (update: StatusUpdate, filter: ClaimFilter): Promise<{ outcome: ReportOutcome, task: StoredTask | undefined }> {
      if (!config.batching) {
        const outcome = await this.report([update])
        const [task] = await deps.claim(filter, 1)
        return { outcome, task }
      }
      // Checked here, synchronously, so that a rider is only ever queued with its report: a rider
      // whose report was refused would claim a task for nobody.
      if (batcher.closed) throw new ShuttingDownError()
      if (batcher.queued + 1 > config.maxQueued) throw new StatusQueueFullError()
      refuseFlushedAckWhileDown()
      const reported = this.report([update])
      const rider = new Promise<StoredTask | undefined>((resolve, reject) => {
        riders.push({ filter, key: filterKey(filter), resolve, reject })
      })
      rider.catch(() => {}) // awaited below; a rejection while the report fails must not go unhandled
      const outcome = await reported
      const task = await rider
      return { outcome, task }
    },

    get depth () { return batcher.queued + batcher.inFlight },

    /** Stops taking reports and writes every queued one (retrying) within `timeoutMs`. */
    async close (timeoutMs: number): Promise<void> {
      const left = batcher.queued + batcher.inFlight
      if (left > 0) log.info({ queued: left }, 'flushing queued status reports before shutdown')
      const abandoned = await batcher.close({ timeoutMs })
      // Reports abandoned at the timeout leave their riders waiting: they get no next task.
      for (const rider of riders.splice(0)) rider.resolve(undefined)
      if (abandoned > 0) log.error({ abandoned, timeoutMs }, 'status reports could not be written before shutdown; their tasks will run again after their deadline')
    }
  }
}

function translate (error: unknown): unknown {
  if (error instanceof BatcherFullError) return new StatusQueueFullError()
  if (error instanceof BatcherClosedError) return new ShuttingDownError()
  return error
}
