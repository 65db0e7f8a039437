/**
 * Produce: ONE insert of unnested column arrays, whatever the batch size (its text never changes,
 * so it is compiled and prepared once; drizzle's insert builder, 13 bind parameters per row, spent
 * 200–300 ms of CPU on a 1000-task batch). A task column is added to PRODUCED and nowhere else here.
 */
import { sql } from 'drizzle-orm'
import { inflightTasks } from '../../db/schema.js'
import { bucketOf, delayUntilOf, initialStatus, scheduleStart } from '../../domain/schedule.js'
import type { Activation } from '../../domain/types.js'
import { intText, pgArray } from '../arrays.js'
import { compile } from './compiled.js'
import { columnsOf, list } from './schema-sql.js'

/** A task as produce stores it. */
export interface ProducedTask {
  id: string
  activation: Activation
  receivedAt: Date
  expiresAt: Date | null
  delayUntil: Date | null
  processingDeadlineDuration: number
  status: string
  atMostOnce: boolean
  application: string
  namespace: string
  taskname: string
  onAttemptsExceeded: string
  bucket: number
  /** Claims take higher first; kept beside the activation, which stays as upstream's. */
  priority: number
}

type InflightColumn = keyof typeof inflightTasks._.columns

/** The columns produce writes, each with its value as array-element text. */
const PRODUCED = {
  id: t => t.id,
  activation: t => JSON.stringify(t.activation),
  receivedAt: t => t.receivedAt.toISOString(),
  expiresAt: t => t.expiresAt?.toISOString() ?? null,
  delayUntil: t => t.delayUntil?.toISOString() ?? null,
  processingDeadlineDuration: t => intText(t.processingDeadlineDuration),
  status: t => t.status,
  atMostOnce: t => t.atMostOnce ? 'true' : 'false',
  application: t => t.application,
  namespace: t => t.namespace,
  taskname: t => t.taskname,
  onAttemptsExceeded: t => t.onAttemptsExceeded,
  bucket: t => intText(t.bucket),
  priority: t => intText(t.priority)
} satisfies Partial<Record<InflightColumn, (task: ProducedTask) => string | null>>

const KEYS = Object.keys(PRODUCED) as Array<keyof typeof PRODUCED>
const c = columnsOf(inflightTasks)
const r = columnsOf(inflightTasks, 'r')

/** An array parameter per column, typed as the column (jsonb travels as text, cast afterwards). */
function arrayOf (key: keyof typeof PRODUCED) {
  const type = inflightTasks[key].getSQLType()
  return sql`${sql.placeholder(key)}::${sql.raw(type === 'jsonb' ? 'text' : type)}[]`
}

/** Rows get added_at (clock_timestamp()) as they are inserted, in batch order (`order by ord`): FIFO holds. */
export const PRODUCE = compile(sql`insert into ${inflightTasks} (${list(KEYS.map(key => c[key]))})
  select ${list(KEYS.map(key => key === 'activation' ? sql`${r[key]}::jsonb` : r[key]))}
  from unnest(${list(KEYS.map(arrayOf))}) with ordinality as r(${list(KEYS.map(key => c[key]))}, ord)
  order by ord
  on conflict (${c.id}) do nothing
  returning ${c.id}`)

/** The values of PRODUCE's placeholders for `tasks`. */
export function produceValues (tasks: readonly ProducedTask[]): Record<string, string> {
  const values: Record<string, string> = {}
  for (const key of KEYS) {
    const text = PRODUCED[key]
    const column = new Array<string | null>(tasks.length)
    for (let i = 0; i < tasks.length; i++) column[i] = text(tasks[i] as ProducedTask)
    values[key] = pgArray(column)
  }
  return values
}

/** What produce stores for an activation produced at `now`. */
export function producedTask (activation: Activation, now: Date, maxDelaySec: number, priority = 0): ProducedTask {
  const expiresAt = activation.expires === undefined ? null : new Date(scheduleStart(activation.received_at, now) + activation.expires * 1000)
  return {
    id: activation.id,
    activation,
    receivedAt: new Date(activation.received_at),
    expiresAt,
    delayUntil: delayUntilOf(activation, now, maxDelaySec),
    processingDeadlineDuration: activation.processing_deadline_duration,
    status: initialStatus(activation, now, maxDelaySec),
    atMostOnce: activation.retry_state.at_most_once,
    application: activation.application,
    namespace: activation.namespace,
    taskname: activation.taskname,
    onAttemptsExceeded: activation.retry_state.on_attempts_exceeded,
    bucket: bucketOf(activation.id),
    priority
  }
}
