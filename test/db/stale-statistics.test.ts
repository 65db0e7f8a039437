/**
 * A queue table's statistics go stale by nature: analysed while every task was processing, they
 * say pending tasks are all but absent. A burst of tasks later, a prepared claim planned with those
 * statistics must still walk its claim index in order and stop at LIMIT, not fetch and sort every
 * pending task of the queue on every claim (src/db/planner.ts). Checked on the generic plans, as
 * the broker's prepared statements run them, with the broker's session settings and without them.
 */
import { sql } from 'drizzle-orm'
import { PgDialect } from 'drizzle-orm/pg-core'
import postgres from 'postgres'
import t from 'tap'
import { PLANNER_SETTINGS } from '../../src/db/planner.js'
import { claimSteps, pullClaim, type FilterVariant } from '../../src/store/statements/claim.js'
import { produceHandoffStatement } from '../../src/store/statements/produce.js'
import { statusQuery } from '../../src/store/statements/status.js'
import { taskColumns } from '../../src/store/rows.js'
import { backends, createTestDatabase } from '../helpers/database.js'
import { planOf, walk, type PlanNode } from '../helpers/plans.js'

/** Sort nodes with a scan of the tasks table under them. */
const sortsOverTasks = (plan: PlanNode): PlanNode[] =>
  [...walk(plan)].filter(node => node['Node Type'] === 'Sort' && [...walk(node)].some(n => n['Relation Name'] === 'inflight_tasks'))

const dialect = new PgDialect()
const claimText = (variant: FilterVariant) => {
  const { next, update } = claimSteps({ ...pullClaim(variant), as: { status: 'processing', graceSec: 3 }, returning: taskColumns('t') })
  return dialect.sqlToQuery(sql`with ${next} ${update}`).sql
}
const STATEMENTS: Record<string, string> = {
  'claim {}': claimText('any'),
  'claim {application}': claimText('application'),
  'claim {application, namespace}': claimText('namespace'),
  'report + claim {application}': dialect.sqlToQuery(statusQuery(true, 'application', 3)).sql,
  'report + claim {application, namespace}': dialect.sqlToQuery(statusQuery(true, 'namespace', 3)).sql,
  'produce with hand-off': produceHandoffStatement(3).text
}

/** Every statement's generic plan on a client with `settings`: name → sorts over the tasks. */
async function planSorts (url: string, settings: Record<string, string>): Promise<Record<string, number>> {
  const client = postgres(url, { max: 1, onnotice: () => {}, connection: settings })
  try {
    await client.unsafe('set plan_cache_mode = force_generic_plan')
    const sorts: Record<string, number> = {}
    for (const [i, [name, text]] of Object.entries(STATEMENTS).entries()) {
      const params = (text.match(/\$\d+/g) ?? []).map(p => Number(p.slice(1)))
      await client.unsafe(`prepare s${i} as ${text}`)
      const [row] = await client.unsafe(`explain (format json) execute s${i}(${Array.from({ length: Math.max(0, ...params) }, () => 'null').join(', ')})`)
      sorts[name] = sortsOverTasks(planOf(row)).length
    }
    return sorts
  } finally {
    await client.end()
  }
}

if (!backends().includes('postgres')) {
  t.comment('EXPLAIN checks need PostgreSQL (TASKBROKER_TEST_DATABASE_URL)')
} else {
  t.test('claims planned on stale statistics still walk their index in order', async (t) => {
    const { url } = await createTestDatabase(t, 'postgres')
    const client = postgres(url as string, { max: 1, onnotice: () => {} })
    t.teardown(() => client.end())
    // Analysed with every task processing; then they are all pending again, and a burst arrives.
    await client.unsafe(`insert into inflight_tasks (id, activation, received_at, processing_deadline_duration, status, application, namespace, taskname, priority)
      select 't' || i, '{}'::jsonb, now(), 60, 'processing', 'bench', 'bench', 'x', 0 from generate_series(1, 5000) i`)
    await client.unsafe('analyze inflight_tasks')
    await client.unsafe('update inflight_tasks set status = \'pending\'')
    await client.unsafe(`insert into inflight_tasks (id, activation, received_at, processing_deadline_duration, status, application, namespace, taskname, priority)
      select 'b' || i, '{}'::jsonb, now(), 60, 'pending', 'bench', 'bench', 'x', 0 from generate_series(1, 20000) i`)

    const withSettings = await planSorts(url as string, PLANNER_SETTINGS)
    for (const [name, sorts] of Object.entries(withSettings)) t.equal(sorts, 0, `${name}: no Sort over the tasks`)

    // Without the broker's settings the planner sorts: the case the settings are there for.
    const without = await planSorts(url as string, {})
    t.ok(Object.values(without).some(sorts => sorts > 0), `without them some plan sorts the pending tasks (${JSON.stringify(without)})`)
  })
}
