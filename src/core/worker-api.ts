/**
 * What workers call: claim (with long-polling), report, and report-and-claim-next. The rules
 * every front end obeys live here: in push mode the broker hands out tasks itself, so claims and
 * `fetch_next` are refused; a namespace filter needs an application; of two reports for one id in
 * a batch the last one counts.
 */
import { InvalidRequestError, WrongDeliveryModeError } from '../domain/errors.js'
import type { ClaimFilter, StatusUpdate, StoredTask } from '../domain/types.js'
import type { DeliveryMode } from '../config/config.js'
import type { ClaimService } from './claims/claim-service.js'
import type { ReportOutcome, StatusWriter } from './status/status-writer.js'

export interface ClaimRequest extends ClaimFilter {
  /** Most tasks to claim (default 1). */
  limit?: number | undefined
  /** Long-poll: wait this long for a task when none is ready (default 0). */
  waitMs?: number | undefined
  /** Ends the wait early (the client went away). */
  abort?: AbortSignal | undefined
}

/** The filter of a report's `fetch_next`, and how long to wait when no task is ready (default 0). */
export interface NextRequest extends ClaimFilter {
  waitMs?: number | undefined
  /** Ends the wait early (the client went away). */
  abort?: AbortSignal | undefined
}

export interface WorkerApi {
  claim (request: ClaimRequest): Promise<StoredTask[]>
  report (updates: readonly StatusUpdate[]): Promise<ReportOutcome>
  reportAndClaimNext (update: StatusUpdate, next: NextRequest): Promise<{ outcome: ReportOutcome, task: StoredTask | undefined }>
}

export function createWorkerApi (deps: {
  deliveryMode: DeliveryMode
  claims: Pick<ClaimService, 'claim' | 'sequence' | 'waitAfter'>
  statusWriter: Pick<StatusWriter, 'report' | 'reportAndClaimNext'>
}): WorkerApi {
  const { claims, statusWriter } = deps
  const push = deps.deliveryMode === 'push'

  return {
    async claim ({ application, namespace, limit = 1, waitMs = 0, abort }) {
      if (push) throw new WrongDeliveryModeError('The broker delivers tasks itself (push mode); claims are not allowed')
      if (namespace !== undefined && application === undefined) {
        throw new InvalidRequestError('body/namespace needs body/application: a namespace filter without an application is not allowed')
      }
      return await claims.claim({ application, namespace }, limit, waitMs, abort)
    },

    async report (updates) {
      return await statusWriter.report(updates.length < 2 ? [...updates] : lastPerId(updates))
    },

    async reportAndClaimNext (update, next) {
      // Refused before anything is written: a worker asking for tasks is misconfigured for push mode.
      if (push) throw new WrongDeliveryModeError('The broker delivers tasks itself (push mode); fetch_next is not allowed')
      if (next.namespace !== undefined && next.application === undefined) {
        throw new InvalidRequestError('body/fetch_next/namespace needs body/fetch_next/application')
      }
      const filter = { application: next.application, namespace: next.namespace }
      const seen = claims.sequence()
      const answer = await statusWriter.reportAndClaimNext(update, filter)
      const waitMs = next.waitMs ?? 0
      // A stale report is answered at once (409); otherwise no task ready yet: long-poll as a claim
      // would. The report is written by now, so a failed wait costs only the next task.
      if (answer.task !== undefined || waitMs <= 0 || answer.outcome.stale.length > 0) return answer
      try {
        const [task] = await claims.waitAfter(filter, 1, waitMs, next.abort, seen)
        return { outcome: answer.outcome, task }
      } catch {
        return answer
      }
    }
  }
}

/** The same id twice in one batch: the last report wins, as in the status batcher. */
function lastPerId (updates: readonly StatusUpdate[]): StatusUpdate[] {
  const byId = new Map<string, StatusUpdate>()
  for (const update of updates) {
    byId.delete(update.id)
    byId.set(update.id, update)
  }
  return [...byId.values()]
}
