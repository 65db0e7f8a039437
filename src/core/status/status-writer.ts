/**
 * Worker reports → the store. The way they are written is chosen once, here, from the settings:
 * batched (the default: queued, one bulk statement per flush, `fetch_next` claims riding in it) or
 * direct (one statement per report, the benchmark's baseline). Nothing on the request path asks.
 */
import { createBatchedWriter } from './batched-writer.js'
import { createDirectWriter } from './direct-writer.js'
import type { StatusWriter, StatusWriterDeps } from './types.js'

export type { ReportOutcome } from './outcome.js'
export type { StatusWriter, StatusWriterDeps } from './types.js'

export function createStatusWriter (deps: StatusWriterDeps): StatusWriter {
  return deps.config.batching ? createBatchedWriter(deps) : createDirectWriter(deps)
}
