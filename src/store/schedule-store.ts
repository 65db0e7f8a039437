/**
 * Schedules: the table behind /v1/schedules and the upkeep job that fires them. Every method is
 * one statement, wrapped in `guard()` (503 when the store cannot be reached), except syncFile
 * (one per declared schedule). Firing is produce (the task store) followed by `advance`, which
 * moves next_fire_at only from the value the fire read (compare and set), so two brokers never
 * both move one schedule on.
 */
import { sql, type SQL } from 'drizzle-orm'
import type { Database, Row } from '../db/database.js'
import { deadletterTasks, inflightTasks, schedules } from '../db/schema.js'
import { pgArray } from './arrays.js'
import { guard } from './errors.js'
import { toDate } from './rows.js'
import { columnsOf, list, namesOf } from './statements/schema-sql.js'

export type ScheduleSource = 'api' | 'file'

/** What a PUT or the runtime config file writes. */
export interface ScheduleWrite {
  name: string
  cron: string | null
  everySec: number | null
  timezone: string
  task: unknown
  overlap: string
  catchUp: string
  paused: boolean
  /** Used for a new schedule, or when cron, every_sec or timezone change; otherwise the stored one is kept. */
  nextFireAt: Date | null
}

export interface ScheduleRecord extends Omit<ScheduleWrite, 'nextFireAt'> {
  source: ScheduleSource
  nextFireAt: Date | null
  lastFireAt: Date | null
  lastTaskId: string | null
  /** The last fired task's status while it is stored (`deadletter` in the dead letters); null once gone or never fired. */
  lastTaskStatus: string | null
  createdAt: Date
  updatedAt: Date
}

export interface ScheduleCounts { total: number, paused: number, fromFile: number }

export interface ScheduleStore {
  /** Creates or replaces; an `api` write never replaces a `file` schedule (then null). */
  put (schedule: ScheduleWrite, source: ScheduleSource): Promise<ScheduleRecord | null>
  get (name: string): Promise<ScheduleRecord | null>
  /** Every schedule, by name. */
  list (): Promise<ScheduleRecord[]>
  /** Removes an `api` schedule: what was there (`file` ones stay). */
  remove (name: string): Promise<'removed' | 'not_found' | 'file'>
  /** Unpaused schedules whose next_fire_at has come, oldest window first. */
  due (now: Date, limit: number): Promise<ScheduleRecord[]>
  /**
   * Moves next_fire_at from `from` to `next` and records the last fire (when given), only if
   * next_fire_at is still `from`. False when another fire (or a replace) moved it first.
   */
  advance (name: string, from: Date, next: Date | null, fired: { at: Date, taskId: string } | null): Promise<boolean>
  /** Records a fire outside the windows (trigger); next_fire_at stays. False when there is no such schedule. */
  recordFire (name: string, at: Date, taskId: string): Promise<boolean>
  /** Makes the `file` schedules exactly these: others of source `file` are removed. */
  syncFile (writes: readonly ScheduleWrite[]): Promise<void>
  counts (): Promise<ScheduleCounts>
}

const c = columnsOf(schedules)
const s = columnsOf(schedules, 's')
const excluded = columnsOf(schedules, 'excluded')
const t = columnsOf(inflightTasks, 't')
const d = columnsOf(deadletterTasks, 'd')
const k = namesOf(schedules)

/** The listed columns, with the last task's status: live, `deadletter`, or null once gone. */
const SELECTED = sql`${list([s.name, s.source, s.cron, s.everySec, s.timezone, s.task, s.overlap, s.catchUp, s.paused,
  s.nextFireAt, s.lastFireAt, s.lastTaskId, s.createdAt, s.updatedAt])},
  coalesce((select ${t.status} from ${inflightTasks} t where ${t.id} = ${s.lastTaskId}),
    (select 'deadletter' from ${deadletterTasks} d where ${d.id} = ${s.lastTaskId})) as last_task_status`

const iso = (date: Date | null) => date === null ? null : date.toISOString()

function toRecord (row: Row): ScheduleRecord {
  return {
    name: row[k.name] as string,
    source: row[k.source] as ScheduleSource,
    cron: row[k.cron] as string | null,
    everySec: row[k.everySec] as number | null,
    timezone: row[k.timezone] as string,
    task: row[k.task],
    overlap: row[k.overlap] as string,
    catchUp: row[k.catchUp] as string,
    paused: row[k.paused] as boolean,
    nextFireAt: toDate(row[k.nextFireAt]),
    lastFireAt: toDate(row[k.lastFireAt]),
    lastTaskId: row[k.lastTaskId] as string | null,
    lastTaskStatus: (row.last_task_status ?? null) as string | null,
    createdAt: toDate(row[k.createdAt]) as Date,
    updatedAt: toDate(row[k.updatedAt]) as Date
  }
}

/**
 * The upsert. A replace keeps next_fire_at when the timing is unchanged (a due window is not lost
 * by editing the task), and keeps the last fire. `api` never overwrites `file`; `file` overwrites
 * anything (the file is the source of truth for its names).
 */
function upsert (w: ScheduleWrite, source: ScheduleSource): SQL {
  const sameTiming = sql`${s.cron} is not distinct from ${excluded.cron} and ${s.everySec} is not distinct from ${excluded.everySec}
    and ${s.timezone} = ${excluded.timezone}`
  return sql`
    insert into ${schedules} as s (${list([c.name, c.source, c.cron, c.everySec, c.timezone, c.task, c.overlap, c.catchUp, c.paused, c.nextFireAt])})
    values (${w.name}, ${source}, ${w.cron}, ${w.everySec}::int, ${w.timezone}, ${JSON.stringify(w.task)}::jsonb, ${w.overlap},
      ${w.catchUp}, ${w.paused}::boolean, ${iso(w.nextFireAt)}::timestamptz)
    on conflict (${c.name}) do update set
      ${list([
        sql`${c.source} = ${excluded.source}`, sql`${c.cron} = ${excluded.cron}`, sql`${c.everySec} = ${excluded.everySec}`,
        sql`${c.timezone} = ${excluded.timezone}`, sql`${c.task} = ${excluded.task}`, sql`${c.overlap} = ${excluded.overlap}`,
        sql`${c.catchUp} = ${excluded.catchUp}`, sql`${c.paused} = ${excluded.paused}`,
        sql`${c.nextFireAt} = case when ${sameTiming} then ${s.nextFireAt} else ${excluded.nextFireAt} end`,
        sql`${c.updatedAt} = clock_timestamp()`
      ])}
    where ${s.source} = 'api' or ${excluded.source} = 'file'
    returning ${c.name}`
}

export function createScheduleStore (database: Database): ScheduleStore {
  const one = async (name: string) => {
    const rows = await guard(() => database.rows(sql`select ${SELECTED} from ${schedules} s where ${s.name} = ${name}`))
    return rows[0] === undefined ? null : toRecord(rows[0])
  }
  const put = async (w: ScheduleWrite, source: ScheduleSource) => {
    const rows = await guard(() => database.rows(upsert(w, source)))
    return rows.length === 0 ? null : await one(w.name)
  }

  return {
    put,
    get: one,

    async list () {
      const rows = await guard(() => database.rows(sql`select ${SELECTED} from ${schedules} s order by ${s.name}`))
      return rows.map(toRecord)
    },

    async remove (name) {
      const rows = await guard(() => database.rows(sql`
        with found as (select ${c.source} from ${schedules} where ${c.name} = ${name}),
        removed as (delete from ${schedules} s where ${s.name} = ${name} and ${s.source} = 'api' returning ${s.name})
        select (select ${c.source} from found) as source, (select count(*) from removed)::int as removed`))
      const row = rows[0]
      if (row === undefined || row.source === null || row.source === undefined) return 'not_found'
      return Number(row.removed) > 0 ? 'removed' : 'file'
    },

    async due (now, limit) {
      const rows = await guard(() => database.rows(sql`
        select ${SELECTED} from ${schedules} s
        where not ${s.paused} and ${s.nextFireAt} <= ${now.toISOString()}::timestamptz
        order by ${s.nextFireAt} limit ${limit}::int`))
      return rows.map(toRecord)
    },

    async advance (name, from, next, fired) {
      const rows = await guard(() => database.rows(sql`
        update ${schedules} s set
          ${list([
            sql`${c.nextFireAt} = ${iso(next)}::timestamptz`,
            sql`${c.lastFireAt} = coalesce(${iso(fired?.at ?? null)}::timestamptz, ${s.lastFireAt})`,
            sql`${c.lastTaskId} = coalesce(${fired?.taskId ?? null}::text, ${s.lastTaskId})`
          ])}
        where ${s.name} = ${name} and ${s.nextFireAt} = ${from.toISOString()}::timestamptz
        returning ${s.name}`))
      return rows.length > 0
    },

    async recordFire (name, at, taskId) {
      const rows = await guard(() => database.rows(sql`
        update ${schedules} s set ${c.lastFireAt} = ${at.toISOString()}::timestamptz, ${c.lastTaskId} = ${taskId}
        where ${s.name} = ${name} returning ${s.name}`))
      return rows.length > 0
    },

    async syncFile (writes) {
      // No empty array parameter is ever sent: with no schedules declared every file schedule goes.
      const kept = writes.length === 0 ? sql`` : sql`and not (${s.name} = any(${pgArray(writes.map(w => w.name))}::text[]))`
      await guard(() => database.rows(sql`delete from ${schedules} s where ${s.source} = 'file' ${kept}`))
      for (const w of writes) await put(w, 'file')
    },

    async counts () {
      const rows = await guard(() => database.rows(sql`
        select count(*)::int as total, (count(*) filter (where ${c.paused}))::int as paused,
          (count(*) filter (where ${c.source} = 'file'))::int as from_file
        from ${schedules}`))
      const row = rows[0] ?? {}
      return { total: Number(row.total ?? 0), paused: Number(row.paused ?? 0), fromFile: Number(row.from_file ?? 0) }
    }
  }
}
