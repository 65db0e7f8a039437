/**
 * A retry's backoff as requests and the runtime config file write it: one schema for produce, a
 * report's retry and a schedule's task, so each takes the same fields with the same bounds.
 */
import { Type } from 'typebox'

const Seconds = (description: string) => Type.Integer({ minimum: 0, maximum: 31_536_000, description })

/** A retry's delay growing with the attempts (see README "Retries"). */
export const BackoffSchema = (description: string) => Type.Object({
  strategy: Type.Enum(['fixed', 'exponential'], { description: 'fixed: base_sec each time; exponential: base_sec × 2^attempts' }),
  base_sec: Seconds('the first retry\'s delay'),
  max_sec: Seconds('the longest delay (also capped by TASKBROKER_MAX_DELAY_SEC)'),
  jitter: Type.Boolean({ description: 'wait a random time between 0 and the computed delay (full jitter)' })
}, { additionalProperties: false, description: `${description}; takes precedence over delay_on_retry` })
