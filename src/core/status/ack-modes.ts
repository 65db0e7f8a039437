/**
 * When a batched report is answered, chosen once from `config.ack`:
 * - `flushed`: after the flush that wrote it committed (group commit: nothing acknowledged is lost
 *   on a crash). Past the ack timeout the caller gets 503; the report stays queued and is still
 *   written. With the store known down, refused at once.
 * - `queued`: at enqueue, as upstream does; a crash can lose the queued reports (the tasks are then
 *   redone after their processing deadline).
 */
import type { Config } from '../../config/config.js'
import type { StatusUpdate } from '../../domain/types.js'
import type { Metrics } from '../metrics.js'
import { withinAckTimeout } from './ack-timeout.js'
import { queuedOutcome, writtenOutcome, type ReportOutcome, type ReportResult } from './outcome.js'
import type { StoreDownBreaker } from './store-down-breaker.js'

export interface AckMode {
  /** Throws when a report must be refused before it is queued. */
  admit (): void
  /** The answer to reports just queued; `written` settle when their flush did. */
  answer (updates: readonly StatusUpdate[], written: Array<Promise<ReportResult>>): Promise<ReportOutcome>
}

export interface AckModeDeps {
  timeoutMs: number
  breaker: StoreDownBreaker
  metrics: Metrics
  translate: (error: unknown) => unknown
}

export function createAckMode (ack: Config['status']['ack'], deps: AckModeDeps): AckMode {
  return ack === 'flushed' ? flushedAck(deps) : queuedAck
}

function flushedAck ({ timeoutMs, breaker, metrics, translate }: AckModeDeps): AckMode {
  return {
    admit: () => { breaker.throwIfKnownDown() },
    async answer (updates, written) {
      const results = await withinAckTimeout(Promise.all(written), timeoutMs, translate)
      return writtenOutcome(metrics, updates, results)
    }
  }
}

const queuedAck: AckMode = {
  admit: () => {},
  answer: async updates => queuedOutcome(updates)
}
