/**
 * Poison rows: a stored activation that cannot be decoded as a task (written by hand or by another
 * version). What counts as one is a rule of the task; what the store does with one is in
 * src/store/undecodable.ts.
 */

/** The FailureReason of a dead letter moved here; the detail follows after ": ". */
export const UNDECODABLE = 'undecodable_activation'

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value)
const isInt = (value: unknown): boolean => Number.isInteger(value)
const optionalInt = (value: unknown): boolean => value === undefined || Number.isInteger(value)
const kindOf = (value: unknown): string => value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`

/**
 * Why the stored activation of task `id` cannot be handed to a worker, or null when it can: the
 * shape of a task in the API (TaskSchema), checked by hand because this runs for every claimed
 * task (a compiled TypeBox check costs ~5 µs, this a fraction of one).
 */
export function undecodableReason (activation: unknown, id: string): string | null {
  if (!isObject(activation)) return `the activation is ${kindOf(activation)}, not an object`
  const a = activation
  if (a.id !== id) return typeof a.id === 'string' ? 'activation/id is not the id of the task' : 'activation/id is not a string'
  if (typeof a.application !== 'string') return 'activation/application is not a string'
  if (typeof a.namespace !== 'string') return 'activation/namespace is not a string'
  if (typeof a.taskname !== 'string') return 'activation/taskname is not a string'
  if (!('parameters' in a)) return 'activation/parameters is missing'
  if (!isObject(a.headers)) return 'activation/headers is not an object'
  for (const value of Object.values(a.headers)) if (typeof value !== 'string') return 'activation/headers has a value that is not a string'
  if (typeof a.received_at !== 'string' || Number.isNaN(Date.parse(a.received_at))) return 'activation/received_at is not a timestamp'
  if (!isInt(a.processing_deadline_duration)) return 'activation/processing_deadline_duration is not an integer'
  if (!optionalInt(a.expires)) return 'activation/expires is not an integer'
  if (!optionalInt(a.delay)) return 'activation/delay is not an integer'
  const retry = a.retry_state
  if (!isObject(retry)) return 'activation/retry_state is not an object'
  if (!isInt(retry.attempts)) return 'activation/retry_state/attempts is not an integer'
  if (!isInt(retry.max_attempts)) return 'activation/retry_state/max_attempts is not an integer'
  if (retry.on_attempts_exceeded !== 'discard' && retry.on_attempts_exceeded !== 'deadletter') {
    return 'activation/retry_state/on_attempts_exceeded is not discard or deadletter'
  }
  if (typeof retry.at_most_once !== 'boolean') return 'activation/retry_state/at_most_once is not a boolean'
  if (!optionalInt(retry.delay_on_retry)) return 'activation/retry_state/delay_on_retry is not an integer'
  return null
}
