/** The HTTP contract of heartbeats, release and cancel (API v1), by hand like schemas.ts. */
import { Type } from 'typebox'
import type { Limits } from '../../../config/config.js'

export const LeaseSchema = Type.String({
  format: 'uuid',
  description: 'the claim\'s lease (from the claimed task): acts only while the task is still held under it; without it, unfenced'
})

const Timestamp = (description: string) => Type.String({ format: 'date-time', description })

export function createLeaseSchemas (limits: Limits, maxExtendSec: number) {
  const Id = Type.String({ minLength: 1, maxLength: limits.idMaxChars, description: 'task id' })
  const Beat = {
    extend_sec: Type.Optional(Type.Integer({
      minimum: 1,
      maximum: 31_536_000,
      description: `the deadline becomes now + this (+ the grace); default: the task's processing_deadline_duration; at most ${maxExtendSec} (TASKBROKER_HEARTBEAT_MAX_EXTEND_SEC, larger values are capped)`
    })),
    progress: Type.Optional(Type.Unknown({ description: 'any JSON, stored and shown by GET /v1/tasks/{id} (TASKBROKER_HEARTBEAT_PROGRESS_MAX_BYTES)' })),
    lease: Type.Optional(LeaseSchema)
  }
  return {
    HeartbeatBody: Type.Object(Beat, { additionalProperties: false, examples: [{ extend_sec: 60, progress: { done: 40, of: 100 } }] }),
    BatchHeartbeatBody: Type.Object({
      heartbeats: Type.Array(Type.Object({ id: Id, ...Beat }, { additionalProperties: false }), { minItems: 1, maxItems: limits.statusMaxUpdates })
    }, { additionalProperties: false }),
    ReleaseBody: Type.Object({ lease: Type.Optional(LeaseSchema) }, { additionalProperties: false }),
    CancelManyBody: Type.Object({
      application: Type.String({ maxLength: limits.nameMaxChars, description: 'cancel the tasks of this application' }),
      namespace: Type.Optional(Type.String({ maxLength: limits.nameMaxChars, description: 'only of this namespace' })),
      taskname: Type.Optional(Type.String({ maxLength: limits.nameMaxChars, description: 'only of this task name' }))
    }, { additionalProperties: false })
  }
}

const Deadline = Timestamp('the new processing deadline: report (or heartbeat) before it')
const CancelRequested = Type.Boolean({ description: 'a cancel was requested: stop work and report; whatever is reported, the task ends' })

export const HeartbeatResponseSchema = Type.Object({
  processing_deadline: Deadline,
  cancel_requested: CancelRequested
}, { description: 'The deadline was moved' })

export const BatchHeartbeatResponseSchema = Type.Object({
  extended: Type.Array(Type.Object({ id: Type.String(), processing_deadline: Deadline, cancel_requested: CancelRequested })),
  not_processing: Type.Array(Type.String(), { description: 'ids with no processing task (unknown, finished, reset or released)' }),
  stale: Type.Array(Type.String(), { description: 'ids processing under another lease: this worker no longer holds them' })
}, { description: 'One entry per extended task, and the ids that were not' })

export const ReleaseResponseSchema = Type.Object({
  released: Type.Boolean({ description: 'true: pending again, claimable at once, no attempt counted' }),
  cancelled: Type.Boolean({ description: 'true: its cancel had been requested, so it ended instead' })
}, { description: 'The task was given back' })

export const CancelResponseSchema = Type.Object({
  removed: Type.Boolean({ description: 'it was not held by a worker and is gone' }),
  requested: Type.Boolean({ description: 'it is held: heartbeats and reports answer cancel_requested, the next report ends it' })
}, { description: 'The task was cancelled, or its cancel requested' })

export const CancelManyResponseSchema = Type.Object({
  removed: Type.Integer({ description: 'tasks not held by a worker, now gone' }),
  requested: Type.Integer({ description: 'held tasks whose next report ends them' })
}, { description: 'Counts of the matching tasks' })
