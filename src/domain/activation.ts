/** Turning a producer's task into a stored activation, and a stored task into what workers get. */
import { randomUUID } from 'node:crypto'
import type { TaskInput } from '../http/routes/v1/schemas.js'
import type { Activation, StoredTask } from './types.js'
import { parseTimestamp } from './dates.js'

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

/** A claimed task as the worker receives it: the activation plus its deadline. */
export function toClaimedTask (task: StoredTask) {
  return {
    ...task.activation,
    processing_deadline: (task.processingDeadline ?? new Date(0)).toISOString(),
    processing_attempts: task.processingAttempts
  }
}

const iso = (date: Date | null) => date === null ? null : date.toISOString()

/** A task with its broker state, for GET /v1/tasks/{id}. */
export function toTaskState (task: StoredTask) {
  return {
    task: task.activation,
    status: task.status,
    added_at: task.addedAt.toISOString(),
    processing_attempts: task.processingAttempts,
    processing_deadline: iso(task.processingDeadline),
    expires_at: iso(task.expiresAt),
    delay_until: iso(task.delayUntil),
    claim_expires_at: iso(task.claimExpiresAt)
  }
}
