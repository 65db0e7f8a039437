/**
 * Poison rows: a stored activation that cannot be decoded as a task (written by hand or by another
 * version: not an object, a required field missing or of the wrong type, another id). Upstream
 * panics on such a row in GetTask and reverts it forever in push mode; here a claim that picks one
 * moves it to the dead letters, with the reason, and serves the good tasks it claimed beside it;
 * so does a push-mode fetch (a task that cannot be decoded cannot be pushed either).
 */
import { sql } from 'drizzle-orm'
import type { Database, Row } from '../db/database.js'
import { deadletterTasks, inflightTasks } from '../db/schema.js'
import { pgArray } from './arrays.js'
import { guard } from './errors.js'
import { compile } from './statements/compiled.js'
import { deadletterMove } from './statements/deadletter-move.js'
import { columnsOf, namesOf } from './statements/schema-sql.js'

/** The FailureReason of a dead letter moved here; the detail follows after ": ". */
export const UNDECODABLE = 'undecodable_activation'

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value)
const isInt = (value: unknown): boolean => Number.isInteger(value)
const optionalInt = (value: unknown): boolean => value === undefined || Number.isInteger(value)
const kindOf = (value: unknown): string => value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`

/**
 * Why the stored activation of task `id` cannot be handed to a worker, or null when it can: the
 * shape of a task in the API (TaskSchema), checked by hand because this runs for every claimed
 * task (a compiled TypeBox check costs ~5 µs, this a fraction of one).
 */
export function undecodableReason (activation: unknown, id: string): string | null {
  if (!isObject(activation)) return `the activation is ${kindOf(activation)}, not an object`
  const a = activation
  if (a.id !== id) return typeof a.id === 'string' ? 'activation/id is not the id of the task' : 'activation/id is not a string'
  if (typeof a.application !== 'string') return 'activation/application is not a string'
  if (typeof a.namespace !== 'string') return 'activation/namespace is not a string'
  if (typeof a.taskname !== 'string') return 'activation/taskname is not a string'
  if (!('parameters' in a)) return 'activation/parameters is missing'
  if (!isObject(a.headers)) return 'activation/headers is not an object'
  for (const value of Object.values(a.headers)) if (typeof value !== 'string') return 'activation/headers has a value that is not a string'
  if (typeof a.received_at !== 'string' || Number.isNaN(Date.parse(a.received_at))) return 'activation/received_at is not a timestamp'
  if (!isInt(a.processing_deadline_duration)) return 'activation/processing_deadline_duration is not an integer'
  if (!optionalInt(a.expires)) return 'activation/expires is not an integer'
  if (!optionalInt(a.delay)) return 'activation/delay is not an integer'
  const retry = a.retry_state
  if (!isObject(retry)) return 'activation/retry_state is not an object'
  if (!isInt(retry.attempts)) return 'activation/retry_state/attempts is not an integer'
  if (!isInt(retry.max_attempts)) return 'activation/retry_state/max_attempts is not an integer'
  if (retry.on_attempts_exceeded !== 'discard' && retry.on_attempts_exceeded !== 'deadletter') {
    return 'activation/retry_state/on_attempts_exceeded is not discard or deadletter'
  }
  if (typeof retry.at_most_once !== 'boolean') return 'activation/retry_state/at_most_once is not a boolean'
  if (!optionalInt(retry.delay_on_retry)) return 'activation/retry_state/delay_on_retry is not an integer'
  return null
}

const c = columnsOf(inflightTasks)
const t = columnsOf(inflightTasks, 't')
const d = columnsOf(deadletterTasks)
const k = namesOf(inflightTasks)

/**
 * Moves the given processing (pull) or claimed (push) tasks to the dead letters in ONE statement
 * (the stored activation kept as it is), each with its reason.
 */
const MOVE = compile(sql`with bad(${c.id}, ${d.reason}) as (select * from unnest(${sql.placeholder('ids')}::text[], ${sql.placeholder('reasons')}::text[])),
  ${deadletterMove({ from: sql`bad`, where: sql`and ${t.status} in ('processing', 'claimed')`, reason: sql`f.${d.reason}` })}
  select ${d.id} from dead`)

/**
 * The claimed `rows` (with their `id` and `activation` columns) that can be handed out, in their
 * order; the others are moved to the dead letters. Should that fail (the store went away), they
 * stay processing (or claimed), come back after their deadline (or lease), and the good tasks are
 * still served.
 */
export async function setAsideUndecodable (database: Database, rows: Row[]): Promise<Row[]> {
  let bad: Array<{ id: string, reason: string }> | undefined
  let good: Row[] | undefined
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as Row
    const id = row[k.id] as string
    const reason = undecodableReason(row[k.activation], id)
    if (reason === null) {
      good?.push(row)
      continue
    }
    bad ??= []
    good ??= rows.slice(0, i)
    bad.push({ id, reason: `${UNDECODABLE}: ${reason}` })
  }
  if (bad === undefined || good === undefined) return rows
  const moving = bad
  await guard(() => MOVE.run(database, { ids: pgArray(moving.map(b => b.id)), reasons: pgArray(moving.map(b => b.reason)) })).catch(() => {})
  return good
}
