import type { Logger } from 'pino'
import type { Config } from '../../config/config.js'
import type { ClaimFilter, StatusUpdate, StoredTask } from '../../domain/types.js'
import type { TaskStore } from '../../store/task-store.js'
import type { Metrics } from '../metrics.js'
import type { ReportOutcome } from './outcome.js'

export interface StatusWriterDeps {
  store: TaskStore
  config: Config['status']
  metrics: Metrics
  log: Logger
  /** Claims outside a flush: for `fetch_next` riders the flush statement does not serve. */
  claim: (filter: ClaimFilter, limit: number) => Promise<StoredTask[]>
}

/** Worker reports → the store; the batched and the direct writer both are one. */
export interface StatusWriter {
  /**
   * Records reports (ids unique; callers dedupe). Throws a 503 error when they cannot all be
   * taken, before any is queued, so a refused request changes nothing.
   */
  report (updates: StatusUpdate[]): Promise<ReportOutcome>
  /** One report that also asks for the next task (`fetch_next`); resolves when both are done. */
  reportAndClaimNext (update: StatusUpdate, filter: ClaimFilter): Promise<{ outcome: ReportOutcome, task: StoredTask | undefined }>
  /** Reports queued or being written. */
  readonly depth: number
  /** Stops taking reports and writes every queued one (retrying) within `timeoutMs`. */
  close (timeoutMs: number): Promise<void>
}
