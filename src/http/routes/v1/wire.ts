/** Broker results in the shapes API v1 answers with (schemas.ts and deadletter-schemas.ts describe them). */
import { stubActivation } from '../../../domain/activation.js'
import type { StoredTask } from '../../../domain/types.js'
import type { DeadLetter } from '../../../core/broker.js'

/** A claimed task as the worker receives it: the activation plus its deadline. */
export function toClaimedTask (task: StoredTask) {
  return {
    ...task.activation,
    processing_deadline: (task.processingDeadline ?? new Date(0)).toISOString(),
    processing_attempts: task.processingAttempts,
    lease: task.lease ?? '',
    priority: task.priority
  }
}

const iso = (date: Date | null) => date === null ? null : date.toISOString()

/** A task with its broker state, for GET /v1/tasks/{id}. */
export function toTaskState (task: StoredTask) {
  return {
    task: task.activation,
    status: task.status,
    added_at: task.addedAt.toISOString(),
    priority: task.priority,
    processing_attempts: task.processingAttempts,
    processing_deadline: iso(task.processingDeadline),
    expires_at: iso(task.expiresAt),
    delay_until: iso(task.delayUntil),
    claim_expires_at: iso(task.claimExpiresAt),
    progress: task.progress,
    cancel_requested: task.cancelRequested
  }
}

/** A dead letter; an undecodable activation is shown as stored beside a task rebuilt from the row's columns. */
export function toDeadletterBody (letter: DeadLetter) {
  return {
    task: letter.undecodable === null ? letter.activation : stubActivation(letter),
    ...(letter.undecodable === null ? {} : { stored_activation: letter.activation }),
    reason: letter.reason,
    processing_attempts: letter.processingAttempts,
    received_at: letter.receivedAt.toISOString(),
    deadlettered_at: letter.deadletteredAt.toISOString()
  }
}
