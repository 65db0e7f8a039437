/** What a report request answers and counts, whichever way its reports are written. */
import type { StatusUpdate } from '../../domain/types.js'
import type { ReportsWritten } from '../../store/index.js'
import type { Metrics } from '../metrics.js'

/** What became of one written report. `cancelled`: applied, and the task ended (its cancel was requested). */
export type ReportResult = 'applied' | 'cancelled' | 'stale' | 'not_found'

/** Each report's result, in the order of `updates`. */
export function resultsOf (updates: readonly StatusUpdate[], written: ReportsWritten): ReportResult[] {
  return updates.map(u => written.stale.has(u.id)
    ? 'stale'
    : written.cancelled.has(u.id) ? 'cancelled' : written.applied.has(u.id) ? 'applied' : 'not_found')
}

export interface ReportOutcome {
  /** Written to an existing task (flushed ack, or batching off). */
  applied: string[]
  /** Written, but no such task (never existed, or already finished). */
  notFound: string[]
  /** Accepted but not yet written (queued ack). */
  queued: string[]
  /** Not applied: the report's lease is not the task's any more (it was reset or claimed again). */
  stale: string[]
  /** Applied to a task whose cancel was requested: it ended, whatever the report said (also in `applied`). */
  cancelled: string[]
}

/** Counts reports by status: one metric update per status per request, not one per report. */
export function countRequested (metrics: Metrics, updates: readonly StatusUpdate[]): void {
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

/** The outcome of written reports, in request order, counted as applied, not found or stale. */
export function writtenOutcome (metrics: Metrics, updates: readonly StatusUpdate[], results: readonly ReportResult[]): ReportOutcome {
  const outcome: ReportOutcome = { applied: [], notFound: [], queued: [], stale: [], cancelled: [] }
  for (let i = 0; i < updates.length; i++) {
    const id = (updates[i] as StatusUpdate).id
    const result = results[i]
    if (result === 'applied') outcome.applied.push(id)
    else if (result === 'cancelled') { outcome.applied.push(id); outcome.cancelled.push(id) } else if (result === 'stale') outcome.stale.push(id)
    else outcome.notFound.push(id)
  }
  metrics.statusApplied.inc(outcome.applied.length)
  metrics.statusNotFound.inc(outcome.notFound.length)
  if (outcome.stale.length > 0) metrics.staleReports.inc({ kind: 'status' }, outcome.stale.length)
  if (outcome.cancelled.length > 0) metrics.tasksCancelled.inc({ how: 'reported' }, outcome.cancelled.length)
  return outcome
}

export function queuedOutcome (updates: readonly StatusUpdate[]): ReportOutcome {
  return { applied: [], notFound: [], queued: updates.map(u => u.id), stale: [], cancelled: [] }
}
