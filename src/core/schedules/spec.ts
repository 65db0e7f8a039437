/**
 * A schedule as an operator writes it, in a PUT /v1/schedules/{name} body or under `schedules:` in
 * the runtime config file: one schema for both (the HTTP routes validate with it, the file loader
 * checks the file against it), and one check of what a schema cannot say (the timing).
 */
import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'
import type { Limits } from '../../config/config.js'
import type { TaskInput } from '../../domain/activation.js'
import { BackoffSchema } from '../backoff-schema.js'
import { InvalidRequestError } from '../../domain/errors.js'
import { parseTiming, type Timing } from './timing.js'

export const OVERLAPS = ['allow', 'skip'] as const
export const CATCH_UPS = ['none', 'latest', 'all'] as const
export type Overlap = typeof OVERLAPS[number]
export type CatchUp = typeof CATCH_UPS[number]

/** A schedule name: letters, digits and `._-`, as it appears in task ids (`sched:<name>:<time>`) and URLs. */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]*$'
export const NAME_MAX_CHARS = 100

/** The longest name whose fire ids (`sched:` + name + `:` + 24 characters of time) fit TASKBROKER_ID_MAX_CHARS. */
export function nameMaxChars (idMaxChars: number): number {
  return Math.max(1, Math.min(NAME_MAX_CHARS, idMaxChars - 31))
}

/** A problem with a schedule name, or null. */
export function nameProblem (name: string, idMaxChars: number): string | null {
  const max = nameMaxChars(idMaxChars)
  if (name.length > max || !new RegExp(NAME_PATTERN).test(name)) {
    return `must be 1 to ${max} letters, digits, '.', '_' or '-', starting with a letter or digit (got ${JSON.stringify(name)})`
  }
  return null
}

const Seconds = (description: string, minimum = 0) => Type.Integer({ minimum, maximum: 31_536_000, description })

/** The schema of a schedule, with the configured name lengths. */
export function createScheduleSpecSchema (limits: Pick<Limits, 'nameMaxChars'>) {
  const Name = (description: string) => Type.String({ minLength: 1, maxLength: limits.nameMaxChars, description })
  const ScheduleTask = Type.Object({
    application: Type.Optional(Type.String({ maxLength: limits.nameMaxChars, description: 'application (default "")' })),
    namespace: Name('task namespace'),
    taskname: Name('task name'),
    parameters: Type.Optional(Type.Unknown({ description: 'any JSON value, handed to the worker as is (TASKBROKER_PARAMETERS_MAX_BYTES applies)' })),
    headers: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 8192 }))),
    processing_deadline_duration: Type.Optional(Seconds('seconds a worker has once it holds the task (default 60)', 1)),
    expires: Type.Optional(Seconds('seconds after the fire when an unclaimed task is dropped', 1)),
    priority: Type.Optional(Type.Integer({ minimum: -32768, maximum: 32767, description: 'claim priority of each fired task (higher first)' })),
    retry_state: Type.Optional(Type.Object({
      max_attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'executions allowed in all (default 1: no retries)' })),
      on_attempts_exceeded: Type.Optional(Type.Enum(['discard', 'deadletter'], { description: 'what happens after the last attempt fails' })),
      at_most_once: Type.Optional(Type.Boolean({ description: 'never run twice: a missed deadline fails the task' })),
      delay_on_retry: Type.Optional(Seconds('delay before each retry')),
      backoff: Type.Optional(BackoffSchema('delay before each retry, growing with the attempts'))
    }, { additionalProperties: false }))
  }, { additionalProperties: false, description: 'the task each fire produces (its id is sched:<name>:<fire time>)' })

  return Type.Object({
    cron: Type.Optional(Type.String({
      minLength: 1,
      maxLength: 200,
      description: 'five fields (minute hour day month weekday), six with seconds first, or @yearly, @monthly, @weekly, @daily, @hourly; ' +
        'give cron or every_sec'
    })),
    every_sec: Type.Optional(Type.Integer({
      minimum: 1,
      maximum: 31_536_000,
      description: 'fire every this many seconds, at whole multiples of it since 1970-01-01T00:00:00Z; give cron or every_sec'
    })),
    timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'IANA timezone the cron expression is read in (default UTC)' })),
    task: ScheduleTask,
    overlap: Type.Optional(Type.Enum([...OVERLAPS], { description: 'skip: no fire while the previous fire\'s task is still live (default allow)' })),
    catch_up: Type.Optional(Type.Enum([...CATCH_UPS], {
      description: 'windows missed (downtime, pause): none waits for the next window, latest fires once, all fires each up to ' +
        'TASKBROKER_SCHEDULE_CATCH_UP_MAX (default none)'
    })),
    paused: Type.Optional(Type.Boolean({ description: 'a paused schedule does not fire (default false)' }))
  }, { additionalProperties: false })
}

export type ScheduleSpec = Static<ReturnType<typeof createScheduleSpecSchema>>
export type ScheduleTask = ScheduleSpec['task']

/** A schedule spec with every default filled and its timing checked. */
export interface ScheduleDefinition {
  cron: string | null
  everySec: number | null
  timezone: string
  task: ScheduleTask
  overlap: Overlap
  catchUp: CatchUp
  paused: boolean
  timing: Timing
}

/** Fills the defaults and checks the timing (InvalidRequestError naming the field under `where`). */
export function toDefinition (spec: ScheduleSpec, where = 'body'): ScheduleDefinition {
  const timing = parseTiming(spec, where)
  return {
    cron: spec.cron?.trim() ?? null,
    everySec: spec.every_sec ?? null,
    timezone: timing.timezone,
    task: spec.task,
    overlap: spec.overlap ?? 'allow',
    catchUp: spec.catch_up ?? 'none',
    paused: spec.paused ?? false,
    timing
  }
}

/** Checks a value against the schema (for the runtime config file); InvalidRequestError naming the first bad field. */
export function checkSpec (schema: ReturnType<typeof createScheduleSpecSchema>, value: unknown, where: string): ScheduleSpec {
  const [error] = Value.Errors(schema, value)
  if (error !== undefined) throw new InvalidRequestError(`${where}${error.instancePath} ${error.message}`)
  return value as ScheduleSpec
}

/** The id of the task fired for `name`'s window at `at`: the same on every broker, so a window is produced once. */
export function fireId (name: string, at: Date): string {
  return `sched:${name}:${at.toISOString()}`
}

/** The produce input of one fire. */
export function fireInput (name: string, task: ScheduleTask, at: Date): TaskInput {
  return { ...task, id: fireId(name, at) }
}
