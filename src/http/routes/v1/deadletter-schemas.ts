/**
 * The HTTP contract of /v1/deadletters, written by hand like schemas.ts: tasks that failed for
 * good with on_attempts_exceeded = deadletter, listed page by page, requeued or purged.
 */
import { Type } from 'typebox'
import type { Limits } from '../../../config/config.js'
import { TaskSchema } from './schemas.js'

/** The request schemas, with the configured id and name lengths (see schemas.ts). */
export function createDeadletterRequestSchemas (limits: Pick<Limits, 'idMaxChars' | 'nameMaxChars'>) {
  const Filter = (description: string) => Type.Optional(Type.String({ maxLength: limits.nameMaxChars, description }))
  return {
    ListQuery: Type.Object({
      application: Filter('only dead letters of this application'),
      namespace: Filter('only dead letters of this namespace'),
      taskname: Filter('only dead letters of this task name'),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'most dead letters in the page' })),
      cursor: Type.Optional(Type.String({
        minLength: 1,
        maxLength: 2048,
        pattern: '^[A-Za-z0-9_-]+$',
        description: 'next_cursor of the previous page (opaque); omit for the first page'
      }))
    }, { additionalProperties: false }),
    IdParams: Type.Object({
      id: Type.String({ minLength: 1, maxLength: limits.idMaxChars, description: 'task id of the dead letter' })
    })
  }
}

export const DeadletterSchema = Type.Object({
  task: TaskSchema,
  reason: Type.String({
    description: 'why it failed: reported_failure, retries_exhausted, processing_attempts_exceeded, deadline_missed_at_most_once, ' +
      'or "undecodable_activation: <why>" (its stored activation could not be decoded: see stored_activation)'
  }),
  stored_activation: Type.Optional(Type.Unknown({
    description: 'only when the stored activation cannot be decoded as a task: the value as stored (task is then rebuilt from the ' +
      'dead letter\'s id, names and received_at, with no parameters); such a dead letter cannot be requeued, only purged'
  })),
  processing_attempts: Type.Integer({ description: 'times a holder missed the processing deadline' }),
  received_at: Type.String({ format: 'date-time', description: 'when the producer made the task' }),
  deadlettered_at: Type.String({ format: 'date-time', description: 'when the task became a dead letter' })
})

export const DeadletterListResponseSchema = Type.Object({
  deadletters: Type.Array(DeadletterSchema, { description: 'oldest dead letter first' }),
  next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'pass as cursor for the next page; null on the last page' })
}, { description: 'One page of dead letters' })

export const RequeueResponseSchema = Type.Object({
  id: Type.String(),
  status: Type.Literal('pending', { description: 'the task is claimable again, with no attempts counted' })
}, { description: 'The dead letter is a pending task again' })

export const NoContentSchema = Type.Null({ description: 'the dead letter was removed' })
