/**
 * The HTTP contract of API v1, written by hand (not derived from the tables) so a new column never
 * changes the public API by accident. These schemas validate requests, serialise responses and
 * generate the OpenAPI document.
 *
 * Request schemas carry the configured limits (batch lengths, id and name lengths, a claim's
 * longest wait; settings declared in src/config/settings.ts): `createRequestSchemas(limits, claims)`
 * builds them when the routes are registered, so validation and the OpenAPI spec a broker serves
 * both state the limits it applies, and a value beyond one is refused with 400 naming the bound.
 * The committed openapi/openapi.json shows the defaults. Parameter size is checked by the broker
 * core after validation (JSON Schema cannot measure it): src/core/produce/parameters.ts.
 */
import { Type, type Static } from 'typebox'
import { SETTINGS, type Config, type Limits } from '../../../config/config.js'
import { BackoffSchema } from '../../../core/backoff-schema.js'
import { PRIORITY_MAX, PRIORITY_MIN } from '../../../domain/activation.js'
import { CONCLUSIONS, TASK_STATUSES } from '../../../domain/types.js'
import { EXAMPLE_TASK_ID, EXAMPLES } from './examples.js'
import { LeaseSchema } from './lease-schemas.js'

const Seconds = (description: string, minimum = 0) => Type.Integer({ minimum, maximum: 31_536_000, description })
const Timestamp = (description: string) => Type.String({ format: 'date-time', description })
const NullableTimestamp = (description: string) => Type.Union([Timestamp(description), Type.Null()])

export const ErrorResponseSchema = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String({ description: 'stable error code, e.g. TASKBROKER_INVALID_REQUEST' }),
  error: Type.String(),
  message: Type.String()
}, { $id: 'ErrorResponse' })

/** A produce's 503: an error, and for TASKBROKER_OUTCOME_UNKNOWN the ids to produce again. */
export const ProduceUnavailableResponseSchema = Type.Object({
  ...ErrorResponseSchema.properties,
  ids: Type.Optional(Type.Array(Type.String(), {
    description: 'TASKBROKER_OUTCOME_UNKNOWN: the id of every task in the request, in order; produce the tasks again with them'
  }))
})

const OnAttemptsExceeded = Type.Enum(['discard', 'deadletter'], { description: 'what happens after the last attempt fails' })

export const RetryStateInputSchema = Type.Object({
  attempts: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, description: 'attempts made so far (default 0)' })),
  max_attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'executions allowed in all (default 1: no retries)' })),
  on_attempts_exceeded: Type.Optional(OnAttemptsExceeded),
  at_most_once: Type.Optional(Type.Boolean({ description: 'never run twice: a missed deadline fails the task' })),
  delay_on_retry: Type.Optional(Seconds('delay before each retry')),
  backoff: Type.Optional(BackoffSchema('delay before each retry, growing with the attempts'))
}, { additionalProperties: false })

export const ProduceResponseSchema = Type.Object({
  ids: Type.Array(Type.String(), { description: 'the id of every task in the request, in order' }),
  inserted: Type.Integer({ description: 'tasks stored by this request' }),
  duplicates: Type.Array(Type.String(), { description: 'ids that already existed (or repeated in the request); ignored' }),
  killswitched: Type.Array(Type.String(), { description: 'ids dropped because their task name is killswitched (runtime config)' })
}, { description: 'The tasks were stored (ids already known are listed as duplicates and left as they were)' })

export const RetryStateSchema = Type.Object({
  attempts: Type.Integer(),
  max_attempts: Type.Integer(),
  on_attempts_exceeded: OnAttemptsExceeded,
  at_most_once: Type.Boolean(),
  delay_on_retry: Type.Optional(Type.Integer()),
  backoff: Type.Optional(Type.Object({
    strategy: Type.String(),
    base_sec: Type.Integer(),
    max_sec: Type.Integer(),
    jitter: Type.Boolean()
  }))
})

export const TaskSchema = Type.Object({
  id: Type.String(),
  application: Type.String(),
  namespace: Type.String(),
  taskname: Type.String(),
  parameters: Type.Unknown(),
  headers: Type.Record(Type.String(), Type.String()),
  received_at: Timestamp('when the producer made the task'),
  processing_deadline_duration: Type.Integer(),
  expires: Type.Optional(Type.Integer()),
  delay: Type.Optional(Type.Integer()),
  retry_state: RetryStateSchema
}, { $id: 'Task' })

export const ClaimedTaskSchema = Type.Object({
  ...TaskSchema.properties,
  processing_deadline: Timestamp('report before this, or the task is handed out again'),
  processing_attempts: Type.Integer({ description: 'times an earlier holder missed the deadline' }),
  lease: Type.String({ description: 'this claim\'s token: send it with heartbeats and reports, so that once the task was reset and claimed again they are refused as stale' }),
  priority: Type.Integer({ description: 'the priority it was produced with (claims take higher first)' })
}, { $id: 'ClaimedTask' })

export const ClaimResponseSchema = Type.Object({
  tasks: Type.Array(ClaimedTaskSchema, { description: 'highest priority first, oldest first within a priority; empty when none arrived in time' })
}, { description: 'The claimed tasks, now processing: report each before its processing_deadline' })

const Conclusion = Type.Enum([...CONCLUSIONS], { description: 'complete, failure or retry' })
const RetryFields = {
  max_attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'retry: replaces retry_state.max_attempts' })),
  delay_on_retry: Type.Optional(Seconds('retry: replaces retry_state.delay_on_retry')),
  backoff: Type.Optional(BackoffSchema('retry: replaces retry_state.backoff'))
}

/** The claim settings the request schemas carry; unset, the declared defaults. */
type ClaimBounds = Pick<Config['claims'], 'maxWaitMs'>
const DEFAULT_CLAIM_BOUNDS: ClaimBounds = { maxWaitMs: SETTINGS.claims.settings.maxWaitMs.kind.default }

/** The request schemas of API v1 with `limits` and the claim bounds in them (see the file comment). */
export function createRequestSchemas (limits: Limits, claims: ClaimBounds = DEFAULT_CLAIM_BOUNDS) {
  const Id = (description: string) => Type.String({ minLength: 1, maxLength: limits.idMaxChars, description })
  const Name = (description: string) => Type.String({ minLength: 1, maxLength: limits.nameMaxChars, description })
  const Filter = {
    application: Type.Optional(Type.String({ maxLength: limits.nameMaxChars, description: 'only tasks of this application' })),
    namespace: Type.Optional(Type.String({ maxLength: limits.nameMaxChars, description: 'only tasks of this namespace (needs application)' }))
  }

  const TaskInput = Type.Object({
    id: Type.Optional(Id('task id; a UUID is generated when missing. Producing an existing id again is ignored.')),
    application: Type.Optional(Type.String({ maxLength: limits.nameMaxChars, description: 'application (default "")' })),
    namespace: Name('task namespace'),
    taskname: Name('task name'),
    parameters: Type.Optional(Type.Unknown({
      description: `any JSON value, handed to the worker as is; at most ${limits.parametersMaxBytes} bytes as JSON (TASKBROKER_PARAMETERS_MAX_BYTES)`
    })),
    headers: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 8192 }))),
    received_at: Type.Optional(Timestamp('when the producer made the task (default: now)')),
    processing_deadline_duration: Type.Optional(Seconds('seconds a worker has once it holds the task (default 60)', 1)),
    expires: Type.Optional(Seconds('seconds after received_at when an unclaimed task is dropped', 1)),
    delay: Type.Optional(Seconds('seconds after received_at before the task may be claimed')),
    priority: Type.Optional(Type.Integer({
      minimum: PRIORITY_MIN,
      maximum: PRIORITY_MAX,
      description: 'claims take higher first, oldest first within a priority (default 0); a broker field beside the task, not part of it'
    })),
    retry_state: Type.Optional(RetryStateInputSchema)
  }, { additionalProperties: false })

  return {
    TaskInput,
    ProduceBody: Type.Object({
      tasks: Type.Array(TaskInput, { minItems: 1, maxItems: limits.produceMaxTasks })
    }, { additionalProperties: false, examples: [EXAMPLES.produce] }),
    ClaimBody: Type.Object({
      ...Filter,
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: limits.claimMaxTasks, default: 1, description: 'most tasks to claim' })),
      wait_ms: Type.Optional(Type.Integer({ minimum: 0, maximum: claims.maxWaitMs, default: 0, description: 'long-poll: wait this long for a task when none is ready' }))
    }, { additionalProperties: false, examples: [EXAMPLES.claim] }),
    TaskIdParams: Type.Object({ id: Type.String({ minLength: 1, maxLength: limits.idMaxChars, description: 'task id', examples: [EXAMPLE_TASK_ID] }) }),
    StatusBody: Type.Object({
      status: Conclusion,
      ...RetryFields,
      lease: Type.Optional(LeaseSchema),
      fetch_next: Type.Optional(Type.Object({
        ...Filter,
        wait_ms: Type.Optional(Type.Integer({ minimum: 0, maximum: claims.maxWaitMs, default: 0, description: 'long-poll: when no task is ready, wait this long for one (the report is written first)' }))
      }, { additionalProperties: false, description: 'claim the next task in the same request' }))
    }, { additionalProperties: false, examples: [EXAMPLES.status] }),
    BatchStatusBody: Type.Object({
      updates: Type.Array(Type.Object({
        id: Id('task id'),
        status: Conclusion,
        ...RetryFields,
        lease: Type.Optional(LeaseSchema)
      }, { additionalProperties: false }), { minItems: 1, maxItems: limits.statusMaxUpdates })
    }, { additionalProperties: false, examples: [EXAMPLES.batchStatus] })
  }
}

export type RequestSchemas = ReturnType<typeof createRequestSchemas>
export type TaskInput = Static<RequestSchemas['TaskInput']>

export const StatusResponseSchema = Type.Object({
  applied: Type.Boolean({ description: 'the report was written to the stored task with this id: without a lease, whatever its state (held by any worker, pending, delayed); false when no task has the id (never produced, or finished and removed)' }),
  queued: Type.Boolean({ description: 'the report was accepted but not yet written (ack mode "queued")' }),
  task: Type.Union([ClaimedTaskSchema, Type.Null()], { description: 'the next task when fetch_next was given and one was ready' }),
  cancelled: Type.Optional(Type.Literal(true, { description: 'present when the task\'s cancel had been requested: it ended, whatever was reported' }))
}, { description: 'The report was taken (see applied)' })

export const BatchStatusResponseSchema = Type.Object({
  applied: Type.Integer({ description: 'reports written to stored tasks (without a lease, whatever their state)' }),
  queued: Type.Integer({ description: 'reports accepted but not yet written (ack mode "queued")' }),
  not_found: Type.Array(Type.String(), { description: 'ids no stored task has (never produced, or finished and removed)' }),
  stale: Type.Optional(Type.Array(Type.String(), { description: 'present when some report\'s lease is not the task\'s any more (reset, claimed again): not applied' })),
  cancelled: Type.Optional(Type.Array(Type.String(), { description: 'present when some task\'s cancel had been requested: applied, and the task ended whatever was reported' }))
}, { description: 'The reports were taken; unknown ids are listed in not_found' })

const Status = Type.Enum([...TASK_STATUSES])

export const TaskStateResponseSchema = Type.Object({
  task: TaskSchema,
  status: Status,
  added_at: Timestamp('when the broker stored the task (FIFO order)'),
  priority: Type.Integer({ description: 'claims take higher first, oldest added_at first within a priority' }),
  processing_attempts: Type.Integer(),
  processing_deadline: NullableTimestamp('while processing: when the holder\'s time runs out'),
  expires_at: NullableTimestamp('when the task is dropped if still pending'),
  delay_until: NullableTimestamp('when a delayed task becomes claimable'),
  claim_expires_at: NullableTimestamp('push mode: when an undelivered claim lapses'),
  progress: Type.Unknown({ description: 'the holder\'s last heartbeat progress, or null' }),
  cancel_requested: Type.Boolean({ description: 'a cancel came while the task was held: its next report ends it' })
}, { description: 'The task with its broker state' })

export const StatsResponseSchema = Type.Object({
  by_status: Type.Record(Type.String(), Type.Integer(), { description: 'task count for every status' }),
  queues: Type.Array(Type.Object({
    application: Type.String(),
    namespace: Type.String(),
    status: Status,
    count: Type.Integer()
  })),
  deadletters: Type.Integer({ description: 'tasks in the dead-letter table' }),
  oldest_pending_age_sec: Type.Number({ description: 'how long the oldest claimable task has waited' }),
  status_queue_depth: Type.Integer({ description: 'status reports queued in this broker, not yet written' }),
  schedules: Type.Object({
    total: Type.Integer({ description: 'schedules in all' }),
    paused: Type.Integer({ description: 'paused schedules' }),
    from_file: Type.Integer({ description: 'schedules declared in the runtime config file' })
  })
}, { description: 'Task counts and queue ages' })
