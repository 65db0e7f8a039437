/**
 * The one dead-letter move: tasks deleted from inflight_tasks and inserted into deadletter_tasks,
 * with their reason, by ONE statement, so a task is never in neither table. Upkeep's failure step
 * and the set-aside of undecodable tasks both use it. A dead letter with the same id is replaced.
 */
import { sql, type SQL } from 'drizzle-orm'
import { deadletterTasks, inflightTasks } from '../../db/schema.js'
import { columnsOf, list } from './schema-sql.js'

const c = columnsOf(inflightTasks)
const t = columnsOf(inflightTasks, 't')
const d = columnsOf(deadletterTasks)

/** The columns a dead letter copies from its task. */
const COPIED = ['id', 'activation', 'application', 'namespace', 'taskname', 'processingAttempts', 'receivedAt'] as const satisfies
  ReadonlyArray<keyof typeof inflightTasks._.columns & keyof typeof deadletterTasks._.columns>

/** Replaced when a dead letter with the id exists (application, namespace and taskname are kept). */
const REPLACED = ['activation', 'reason', 'processingAttempts', 'receivedAt'] as const satisfies ReadonlyArray<keyof typeof deadletterTasks._.columns>

export interface DeadletterMove {
  /** A CTE with an `id` column: the tasks to move. Its rows are `f` in `where` and `reason`. */
  from: SQL
  /** More conditions on the task `t`, each starting with `and` (e.g. on its status). */
  where?: SQL
  /** The reason recorded, over `t` and `f`. */
  reason: SQL
  /** A WHERE clause over the moved rows choosing those kept as dead letters; the others are only deleted. */
  keep?: SQL
}

/**
 * Two CTEs: `moved` (the tasks deleted, every column and their `reason`) and `dead` (the ids
 * inserted into deadletter_tasks).
 */
export function deadletterMove (move: DeadletterMove): SQL {
  return sql`moved as (
      delete from ${inflightTasks} t using ${move.from} f
      where ${t.id} = f.${c.id} ${move.where ?? sql``}
      returning t.*, ${move.reason} as ${d.reason}),
    dead as (
      insert into ${deadletterTasks} (${list([...COPIED.map(key => d[key]), d.reason])})
      select ${list([...COPIED.map(key => c[key]), d.reason])} from moved ${move.keep ?? sql``}
      on conflict (${d.id}) do update set
        ${list(REPLACED.map(key => sql`${d[key]} = excluded.${d[key]}`))}, ${d.deadletteredAt} = clock_timestamp()
      returning ${d.id})`
}
