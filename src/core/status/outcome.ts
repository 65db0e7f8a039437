/** What a report request answers and counts, whichever way its reports are written. */
import type { StatusUpdate } from '../../domain/types.js'
import type { Metrics } from '../metrics.js'

export interface ReportOutcome {
  /** Written to an existing task (flushed ack, or batching off). */
  applied: string[]
  /** Written, but no such task (never existed, or already finished). */
  notFound: string[]
  /** Accepted but not yet written (queued ack). */
  queued: string[]
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

/** The outcome of written reports, in request order, counted as applied or not found. */
export function writtenOutcome (metrics: Metrics, updates: readonly StatusUpdate[], applied: ReadonlySet<string>): ReportOutcome {
  const outcome: ReportOutcome = { applied: [], notFound: [], queued: [] }
  for (const u of updates) (applied.has(u.id) ? outcome.applied : outcome.notFound).push(u.id)
  metrics.statusApplied.inc(outcome.applied.length)
  metrics.statusNotFound.inc(outcome.notFound.length)
  return outcome
}

export function queuedOutcome (updates: readonly StatusUpdate[]): ReportOutcome {
  return { applied: [], notFound: [], queued: updates.map(u => u.id) }
}
