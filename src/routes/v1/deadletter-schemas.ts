/**
 * The HTTP contract of /v1/deadletters, written by hand like schemas.ts: tasks that failed for
 * good with on_attempts_exceeded = deadletter, listed page by page, requeued or purged.
 */
import { Type } from 'typebox'
import { TaskSchema } from './schemas.js'

const Filter = (description: string) => Type.Optional(Type.String({ maxLength: 255, description }))

export const DeadletterListQuerySchema = Type.Object({
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
}, { additionalProperties: false })

export const DeadletterIdParamsSchema = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 255, description: 'task id of the dead letter' })
})

export const DeadletterSchema = Type.Object({
  task: TaskSchema,
  reason: Type.String({
    description: 'why it failed: reported_failure, retries_exhausted, processing_attempts_exceeded or deadline_missed_at_most_once'
  }),
  processing_attempts: Type.Integer({ description: 'times a holder missed the processing deadline' }),
  received_at: Type.String({ format: 'date-time', description: 'when the producer made the task' }),
  deadlettered_at: Type.String({ format: 'date-time', description: 'when the task became a dead letter' })
})

export const DeadletterListResponseSchema = Type.Object({
  deadletters: Type.Array(DeadletterSchema, { description: 'oldest dead letter first' }),
  next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'pass as cursor for the next page; null on the last page' })
})

export const RequeueResponseSchema = Type.Object({
  id: Type.String(),
  status: Type.Literal('pending', { description: 'the task is claimable again, with no attempts counted' })
})

export const NoContentSchema = Type.Null({ description: 'the dead letter was removed' })
