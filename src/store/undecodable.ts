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
import { UNDECODABLE, undecodableReason } from '../domain/undecodable.js'
import { pgArray } from './arrays.js'
import { guard } from './errors.js'
import { compile } from './statements/compiled.js'
import { deadletterMove } from './statements/deadletter-move.js'
import { columnsOf, namesOf } from './statements/schema-sql.js'

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
