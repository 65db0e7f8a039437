/** Broker results in the shapes API v1 answers with (schemas.ts and deadletter-schemas.ts describe them). */
import type { ServerResponse } from 'node:http'
import type { FastifyReply } from 'fastify'
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

/**
 * `toClaimedTask` as JSON text, the activation's stored text passed on as it is rather than parsed
 * into objects and serialised again (most of a claim answer's bytes). The same document as the
 * schema serialiser writes for ClaimedTaskSchema, keys in another order; an activation stored with
 * keys the schema does not name (by hand, by another version) keeps them. A task with no stored
 * text (handed off by the produce that stored it) is serialised from its object.
 */
export function claimedTaskJson (task: StoredTask): string {
  const stored = task.activationJson
  if (stored === undefined) return JSON.stringify(toClaimedTask(task))
  // A stored activation is an object with its fields (an undecodable one never gets this far).
  const open = stored.slice(0, stored.lastIndexOf('}'))
  return `${open},"processing_deadline":"${(task.processingDeadline ?? new Date(0)).toISOString()}","processing_attempts":${String(task.processingAttempts)},"lease":${JSON.stringify(task.lease ?? '')},"priority":${String(task.priority)}}`
}

/**
 * Sends JSON text as the answer: Fastify passes a string with a JSON content type on as it is,
 * where the route's response schema would serialise an object. Typed as a plain reply because the
 * schema's type provider expects the object.
 */
export async function sendJsonText (reply: FastifyReply, text: string): Promise<FastifyReply> {
  return await reply.type('application/json; charset=utf-8').send(text)
}

/** Runs a long-poll with a signal that aborts when the client goes away (the response closes unsent). */
export async function untilClientGone<T> (response: ServerResponse, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController()
  const onClose = () => abort.abort()
  response.once('close', onClose)
  try {
    return await run(abort.signal)
  } finally {
    response.off('close', onClose)
  }
}

/** A claim's answer ({tasks}) as JSON text (see claimedTaskJson). */
export function claimAnswerJson (tasks: readonly StoredTask[]): string {
  return `{"tasks":[${tasks.map(claimedTaskJson).join(',')}]}`
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
