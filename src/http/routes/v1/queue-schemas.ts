/**
 * The HTTP contract of /v1/queues, written by hand like schemas.ts: queues (an application and a
 * namespace) with their counts and the settings that steer claims and pushes.
 */
import { Type } from 'typebox'
import type { Limits } from '../../../config/config.js'
import { TASK_STATUSES } from '../../../domain/types.js'

/** Longest rate a queue may be given, claims per second. */
export const RATE_MAX_PER_SEC = 1_000_000
/** Largest token bucket (burst) and max_processing. */
export const QUEUE_CAP_MAX = 1_000_000_000

const Timestamp = (description: string) => Type.String({ format: 'date-time', description })

const RateLimitSchema = Type.Object({
  per_sec: Type.Number({ exclusiveMinimum: 0, maximum: RATE_MAX_PER_SEC, description: 'claims per second (token bucket refill)' }),
  burst: Type.Integer({ minimum: 1, maximum: QUEUE_CAP_MAX, description: 'most claims at once after a quiet spell (bucket size)' })
})

const SettingsFields = {
  paused: Type.Boolean({ description: 'claims and pushes skip the queue; produce still accepts its tasks' }),
  max_processing: Type.Union([Type.Integer(), Type.Null()], { description: 'at most this many of its tasks processing (or claimed for a push) at once; null: no cap' }),
  rate_limit: Type.Union([RateLimitSchema, Type.Null()], { description: 'claims per second, a token bucket shared by every broker; null: none' }),
  updated_at: Timestamp('when the settings last changed')
}

export const QueueSettingsSchema = Type.Object(SettingsFields)

export const QueueListResponseSchema = Type.Object({
  queues: Type.Array(Type.Object({
    application: Type.String(),
    namespace: Type.String(),
    counts: Type.Record(Type.String(), Type.Integer(), { description: `tasks by status (${TASK_STATUSES.join(', ')})` }),
    oldest_pending_age_sec: Type.Number({ description: 'how long its oldest claimable task has waited (0: none)' }),
    settings: Type.Union([Type.Object({
      ...SettingsFields,
      source: Type.Enum(['namespace', 'application'], { description: 'the row that steers it: its own, or its application\'s' })
    }), Type.Null()], { description: 'the settings that steer it, or null' })
  }), { description: 'every queue with tasks or settings of its own, by application and namespace' }),
  applications: Type.Array(Type.Object({ application: Type.String(), ...SettingsFields }), {
    description: 'application-wide settings: they steer every namespace of the application without a row of its own'
  })
}, { description: 'The queues with their counts and settings' })

export const QueueChangeResponseSchema = Type.Object({
  application: Type.String(),
  namespace: Type.Union([Type.String(), Type.Null()], { description: 'null: the application-wide row' }),
  settings: Type.Union([QueueSettingsSchema, Type.Null()], { description: 'the row after the change; null when nothing is left set (the row is removed)' })
}, { description: 'The settings were stored' })

export function createQueueRequestSchemas (limits: Pick<Limits, 'nameMaxChars'>) {
  return {
    ChangeBody: Type.Object({
      application: Type.String({ maxLength: limits.nameMaxChars, description: 'the queue\'s application' }),
      namespace: Type.Optional(Type.String({
        minLength: 1,
        maxLength: limits.nameMaxChars,
        description: 'the queue\'s namespace; left out: the application-wide row, which steers every namespace without a row of its own'
      })),
      paused: Type.Optional(Type.Union([Type.Boolean(), Type.Null()], { description: 'pause (true) or resume (false or null)' })),
      max_processing: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: QUEUE_CAP_MAX }), Type.Null()], {
        description: 'cap on its tasks processing (or claimed for a push) at once; null clears it'
      })),
      rate_limit: Type.Optional(Type.Union([Type.Object({
        per_sec: Type.Number({ exclusiveMinimum: 0, maximum: RATE_MAX_PER_SEC, description: 'claims per second' }),
        burst: Type.Optional(Type.Integer({ minimum: 1, maximum: QUEUE_CAP_MAX, description: 'bucket size (default: per_sec rounded up, at least 1)' }))
      }, { additionalProperties: false }), Type.Null()], { description: 'token bucket on claims; null clears it' }))
    }, {
      additionalProperties: false,
      examples: [{ application: 'shop', namespace: 'emails', paused: false, max_processing: 20, rate_limit: { per_sec: 5, burst: 10 } }]
    })
  }
}
