/**
 * Sizing of push mode: the claim lease and the bucket range of each fetch loop.
 */
import type { PushConfig } from '../../config/config.js'

/** Allowance for one settle statement (upstream allows a second per query as well). */
const STATEMENT_ALLOWANCE_MS = 1000

/**
 * How long a claim lasts before upkeep may put the task back to pending: the worst case from the
 * claim to the settle statement that marks it processing, as upstream computes it.
 *
 * A fetch loop only claims what the push queue has room for, so a claimed task never waits to be
 * queued (upstream's `batch_length × queue.timeout` term is 0 here). It may wait behind every
 * queued task: ceil(queue / concurrency) rounds of pushes that each time out, plus its own push;
 * then its outcome waits for the update flush (its interval, when batched) and the statement.
 * With the defaults: (ceil(64 / 64) + 1) × 10 s + 5 ms + 2 × 1 s = 22 005 ms.
 *
 * Too short, and a slow push can be reverted and delivered twice; too long, and tasks claimed by
 * a broker that crashed wait longer to be delivered.
 */
export function pushClaimLeaseMs (config: Pick<PushConfig, 'queueSize' | 'concurrency' | 'timeoutMs' | 'updateBatching' | 'updateFlushIntervalMs'>): number {
  const rounds = Math.ceil(config.queueSize / config.concurrency) + 1
  const pushes = rounds * config.timeoutMs
  const update = config.updateBatching ? config.updateFlushIntervalMs + 2 * STATEMENT_ALLOWANCE_MS : STATEMENT_ALLOWANCE_MS
  return pushes + update
}

/** The inclusive bucket range (of 0–255) fetch loop `index` of `loops` claims from; together they cover all. */
export function bucketRange (index: number, loops: number): [number, number] {
  return [Math.floor(index * 256 / loops), Math.floor((index + 1) * 256 / loops) - 1]
}
