/**
 * Produce: ONE insert of unnested column arrays, whatever the batch size (its text never changes,
 * so it is compiled and prepared once; drizzle's insert builder, 13 bind parameters per row, spent
 * 200–300 ms of CPU on a 1000-task batch). A task column is added to PRODUCED and nowhere else here.
 * The activations travel as one JSON array beside them: as elements of a text array each would be
 * escaped once more (every quote in its JSON doubled up), the largest string work produce did.
 */
import { sql, type SQL } from 'drizzle-orm'
import { inflightTasks, queueSettings } from '../../db/schema.js'
import { bucketOf, delayUntilOf, initialStatus, scheduleStart } from '../../domain/schedule.js'
import type { Activation } from '../../domain/types.js'
import { intText, pgArray } from '../arrays.js'
import { processingDeadline } from './claim.js'
import { compile, type CompiledStatement } from './compiled.js'
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

/** The columns produce writes from arrays, each with its value as array-element text. */
const PRODUCED = {
  id: t => t.id,
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

/** An array placeholder unnested: `name` holds the array, `type` its elements' SQL type. */
const unnested = (name: string, type: string): SQL => sql`unnest(${sql.placeholder(name)}::${sql.raw(type)}[])`

/** The produced rows: one per task, the activations zipped with the column arrays (typed as the
 * columns) and with `extra` arrays of the same length, each a column of its own name. */
function producedRows (extra: Array<{ name: string, type: string }> = []): SQL {
  const arrays = [...KEYS.map(key => unnested(key, inflightTasks[key].getSQLType())), ...extra.map(e => unnested(e.name, e.type))]
  return sql`rows from (jsonb_array_elements(${sql.placeholder('activations')}::jsonb), ${list(arrays)})
    with ordinality as r(${list([c.activation, ...KEYS.map(key => c[key]), ...extra.map(e => sql.raw(e.name))])}, ord)`
}

/** Rows get added_at (clock_timestamp()) as they are inserted, in batch order (`order by ord`): FIFO holds. */
export const PRODUCE = compile(sql`insert into ${inflightTasks} (${list([c.activation, ...KEYS.map(key => c[key])])})
  select ${list([r.activation, ...KEYS.map(key => r[key])])}
  from ${producedRows()}
  order by ord
  on conflict (${c.id}) do nothing
  returning ${c.id}`)

/** A waiting claim's filter a task is handed to (`application` null: any; `namespace` null: any). */
export interface HandoffTarget { application: string | null, namespace: string | null }

const n = columnsOf(inflightTasks, 'n')
const s = columnsOf(queueSettings, 's')

/** Whether row `r` goes straight to the waiting claim it is offered to: it is pending now, its queue
 * is not paused or capped (those claims take the claim statement's way: conservative, an
 * application-wide row counts), and no claimable task the waiter's filter matches comes before it
 * (same or higher priority: older). Rows of the same statement are not seen, so the broker offers
 * a batch's tasks in claim order. */
const HANDED_OFF: SQL = sql`r.handoff and r.${c.status} = 'pending'
  and not exists (select 1 from ${queueSettings} s where ${s.application} = r.${c.application} and ${s.namespace} in (r.${c.namespace}, '')
    and (${s.paused} or ${s.maxProcessing} is not null or ${s.ratePerSec} is not null))
  and not case when r.to_app is null then ${ahead(sql``, sql``)}
    when r.to_ns is null then ${ahead(sql`and ${n.application} = r.to_app`, sql`${n.application}, `)}
    else ${ahead(sql`and ${n.application} = r.to_app and ${n.namespace} = r.to_ns`, sql`${n.application}, ${n.namespace}, `)} end`

/** A claimable task the filter matches comes before row `r`. Walked in the order of the filter's
 * own claim index, which stops at the first such task: a scalar subquery, since EXISTS drops the
 * ORDER BY and LIMIT and was planned as a bitmap or sequential scan of the table (dead rows and
 * all: 95 ms under load). */
function ahead (filter: SQL, orderPrefix: SQL): SQL {
  return sql`(select true from ${inflightTasks} n where ${n.status} = 'pending' ${filter} and ${n.priority} >= r.${c.priority}
      and (${n.expiresAt} is null or ${n.expiresAt} > now())
    order by ${orderPrefix}${n.priority} desc nulls last, ${n.addedAt} limit 1) is not null`
}

const handoffStatements = new Map<number, CompiledStatement>()

/**
 * PRODUCE for a batch some of whose tasks are offered to waiting claims (`to_app`/`to_ns` per
 * row): an offered task that may be handed off is inserted as processing under a new lease, as a
 * claim would leave it, so it reaches its waiter without a claim statement. Returns every inserted
 * row's id and, for those handed off, what the claim would have returned.
 */
export function produceHandoffStatement (graceSec: number): CompiledStatement {
  let statement = handoffStatements.get(graceSec)
  if (statement === undefined) {
    const written = [c.activation, ...KEYS.map(key => c[key]), c.processingDeadline, c.lease]
    const deadline = processingDeadline(graceSec, sql`r.${c.processingDeadlineDuration}`)
    statement = compile(sql`insert into ${inflightTasks} (${list(written)})
      select ${list([r.activation, ...KEYS.map(key => key === 'status' ? sql`case when x.h then 'processing' else r.${c.status} end` : sql`r.${c[key]}`)])},
        case when x.h then ${deadline} end, case when x.h then gen_random_uuid() end
      from ${producedRows([{ name: 'handoff', type: 'boolean' }, { name: 'to_app', type: 'text' }, { name: 'to_ns', type: 'text' }])}
      -- offset 0: decided once per row (pulled up, it was copied into each of the three columns that read it)
      cross join lateral (select ${HANDED_OFF} as h offset 0) x
      order by ord
      on conflict (${c.id}) do nothing
      returning ${c.id}, ${c.status}, ${c.addedAt}, ${c.processingDeadline}, ${c.lease}`)
    handoffStatements.set(graceSec, statement)
  }
  return statement
}

/** The values of produceHandoffStatement's placeholders: `targets[i]` is where `tasks[i]` is offered. */
export function produceHandoffValues (tasks: readonly ProducedTask[], targets: ReadonlyArray<HandoffTarget | undefined>): Record<string, string> {
  const values = produceValues(tasks)
  values.handoff = pgArray(targets.map(t => t === undefined ? 'false' : 'true'))
  values.to_app = pgArray(targets.map(t => t?.application ?? null))
  values.to_ns = pgArray(targets.map(t => t?.namespace ?? null))
  return values
}

/** The values of PRODUCE's placeholders for `tasks`. */
export function produceValues (tasks: readonly ProducedTask[]): Record<string, string> {
  const values: Record<string, string> = { activations: JSON.stringify(tasks.map(t => t.activation)) }
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
