/**
 * The HTTP contract of /v1/schedules: a schedule as PUT takes it (the schema src/core/schedules/spec.ts
 * also checks the runtime config file with), and as the reads show it, with its next windows and
 * its last fire.
 */
import { Type } from 'typebox'
import type { Limits } from '../../../config/config.js'
import { CATCH_UPS, createScheduleSpecSchema, NAME_PATTERN, nameMaxChars, OVERLAPS } from '../../../core/schedules/spec.js'
import { UPCOMING } from '../../../core/schedules/schedules.js'

const Timestamp = (description: string) => Type.String({ format: 'date-time', description })
const NullableTimestamp = (description: string) => Type.Union([Timestamp(description), Type.Null()])

export const EXAMPLE_SCHEDULE = {
  cron: '0 3 * * *',
  timezone: 'Europe/Berlin',
  task: { application: 'shop', namespace: 'reports', taskname: 'nightly_summary', parameters: { days: 1 } },
  overlap: 'skip',
  catch_up: 'latest'
}

export function createScheduleSchemas (limits: Pick<Limits, 'nameMaxChars' | 'idMaxChars'>) {
  const Spec = createScheduleSpecSchema(limits)
  const Name = Type.String({
    minLength: 1,
    maxLength: nameMaxChars(limits.idMaxChars),
    pattern: NAME_PATTERN,
    description: 'schedule name: letters, digits, ".", "_", "-" (part of every fired task\'s id)'
  })
  const Schedule = Type.Object({
    name: Name,
    source: Type.Enum(['api', 'file'], { description: 'file: declared in the runtime config file; the API cannot change or remove it' }),
    cron: Type.Union([Type.String(), Type.Null()]),
    every_sec: Type.Union([Type.Integer(), Type.Null()]),
    timezone: Type.String(),
    task: Spec.properties.task,
    overlap: Type.Enum([...OVERLAPS]),
    catch_up: Type.Enum([...CATCH_UPS]),
    paused: Type.Boolean(),
    next_fire_at: NullableTimestamp('the next window to fire (null: the expression fires no more)'),
    upcoming: Type.Array(Timestamp('a window'), { description: `the next ${UPCOMING} windows from next_fire_at on; empty while paused` }),
    last_fire_at: NullableTimestamp('the window (or trigger time) of the last fire'),
    last_task: Type.Union([Type.Object({
      id: Type.String({ description: 'sched:<name>:<fire time>' }),
      status: Type.String({
        description: 'its status while stored (pending, delay, processing, claimed, retry, failure, complete), deadletter, ' +
          'or gone: no longer stored (completed, discarded or expired)'
      })
    }), Type.Null()], { description: 'the task of the last fire; null before the first' }),
    created_at: Timestamp('when the schedule was created'),
    updated_at: Timestamp('when it was last replaced')
  }, { description: 'A schedule with its next windows and last fire' })

  return {
    Spec: Type.Object(Spec.properties, { additionalProperties: false, examples: [EXAMPLE_SCHEDULE] }),
    NameParams: Type.Object({ name: Name }),
    Schedule,
    ScheduleList: Type.Object({ schedules: Type.Array(Schedule, { description: 'every schedule, by name' }) }, { description: 'The schedules' }),
    Trigger: Type.Object({
      id: Type.String({ description: 'the fired task\'s id, sched:<name>:<now>' }),
      inserted: Type.Boolean({ description: 'the task was stored (false: killswitched, or the id was already stored)' }),
      killswitched: Type.Boolean({ description: 'dropped: its task name is killswitched (runtime config)' })
    }, { description: 'The schedule fired now' }),
    NoContent: Type.Null({ description: 'the schedule was removed' })
  }
}
