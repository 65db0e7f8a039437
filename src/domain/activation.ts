/** Turning a producer's task into a stored activation. */
import { randomUUID } from 'node:crypto'
import type { Activation, OnAttemptsExceeded, RetryBackoff } from './types.js'
import { parseTimestamp } from './dates.js'

/**
 * A task as a producer hands it in, whatever the front end: every field but the names may be left
 * out and gets a default. Front ends validate the bounds (HTTP: the request schema, whose type must
 * stay assignable to this one).
 */
export interface TaskInput {
  id?: string
  application?: string
  namespace: string
  taskname: string
  parameters?: unknown
  headers?: Record<string, string>
  /** RFC 3339; checked by `receivedAtProblem` (dates.ts). */
  received_at?: string
  processing_deadline_duration?: number
  expires?: number
  delay?: number
  /** Claims take higher first (default 0; PostgreSQL smallint range). A broker field, not part of the activation. */
  priority?: number
  retry_state?: {
    attempts?: number
    max_attempts?: number
    on_attempts_exceeded?: OnAttemptsExceeded
    at_most_once?: boolean
    delay_on_retry?: number
    backoff?: RetryBackoff
  }
}

/** The priority range: the column is a PostgreSQL smallint. */
export const PRIORITY_MIN = -32_768
export const PRIORITY_MAX = 32_767

/** Upstream's proto has no default; a task that never says how long it may run gets a minute. */
export const DEFAULT_PROCESSING_DEADLINE_SEC = 60

/**
 * Fills every default so the stored activation is complete and explicit. `received_at` must have
 * passed `receivedAtProblem` (dates.ts); it is stored normalised to UTC.
 */
export function toActivation (input: TaskInput, now: Date): Activation {
  const retry = input.retry_state ?? {}
  const activation: Activation = {
    id: input.id ?? randomUUID(),
    application: input.application ?? '',
    namespace: input.namespace,
    taskname: input.taskname,
    parameters: input.parameters ?? null,
    headers: input.headers ?? {},
    received_at: new Date(input.received_at === undefined ? now.getTime() : parseTimestamp(input.received_at) as number).toISOString(),
    processing_deadline_duration: input.processing_deadline_duration ?? DEFAULT_PROCESSING_DEADLINE_SEC,
    retry_state: {
      attempts: retry.attempts ?? 0,
      max_attempts: retry.max_attempts ?? 1,
      on_attempts_exceeded: retry.on_attempts_exceeded ?? 'discard',
      at_most_once: retry.at_most_once ?? false
    }
  }
  if (retry.delay_on_retry !== undefined) activation.retry_state.delay_on_retry = retry.delay_on_retry
  if (retry.backoff !== undefined) activation.retry_state.backoff = retry.backoff
  if (input.expires !== undefined) activation.expires = input.expires
  if (input.delay !== undefined) activation.delay = input.delay
  return activation
}

/**
 * A task rebuilt from a row's columns, for a row whose stored activation cannot be decoded
 * (src/store/undecodable.ts): what the API can still show of it.
 */
export function stubActivation (row: { id: string, application: string, namespace: string, taskname: string, receivedAt: Date }): Activation {
  return {
    id: row.id,
    application: row.application,
    namespace: row.namespace,
    taskname: row.taskname,
    parameters: null,
    headers: {},
    received_at: row.receivedAt.toISOString(),
    processing_deadline_duration: 0,
    retry_state: { attempts: 0, max_attempts: 1, on_attempts_exceeded: 'deadletter', at_most_once: false }
  }
}
