/**
 * Claims scale with the number of queues: on PostgreSQL, each pull claim variant walks the index
 * that starts with its filter (the generic plan, as the prepared statement runs it), in claim
 * order, with no Sort over the tasks. Another Sort orders the claim's own few candidates (free
 * and capped queues merged, at most twice its limit). The plain claim (no queue restricted) walks
 * the same index and reads queue_settings once, for its guard.
 */
import { sql } from 'drizzle-orm'
import { PgDialect } from 'drizzle-orm/pg-core'
import postgres from 'postgres'
import t from 'tap'
import { claimSteps, pullClaim, type FilterVariant } from '../../src/store/statements/claim.js'
import { taskColumns } from '../../src/store/rows.js'
import { backends, createTestDatabase } from '../helpers/database.js'
import { planOf, walk, type PlanNode } from '../helpers/plans.js'

const INDEX: Record<FilterVariant, string> = {
  any: 'inflight_tasks_pending_order_idx',
  application: 'inflight_tasks_pending_app_order_idx',
  namespace: 'inflight_tasks_pending_app_ns_order_idx'
}

if (!backends().includes('postgres')) {
  t.comment('EXPLAIN checks need PostgreSQL (TASKBROKER_TEST_DATABASE_URL)')
} else {
  t.test('each pull claim variant walks its own index, with no Sort over the tasks', async (t) => {
    const { url } = await createTestDatabase(t, 'postgres')
    const client = postgres(url as string, { max: 1, onnotice: () => {} })
    t.teardown(() => client.end())
    // 40 applications × 5 namespaces × 100 pending tasks, a few processing, priorities mixed.
    await client.unsafe(`insert into inflight_tasks (id, activation, received_at, processing_deadline_duration, status, application, namespace, taskname, priority)
      select 't' || i, '{}'::jsonb, now(), 60, case when i % 50 = 0 then 'processing' else 'pending' end,
        'app' || (i % 40), 'ns' || (i % 5), 'x', (i % 3) - 1
      from generate_series(1, 20000) i`)
    await client.unsafe('analyze inflight_tasks')
    await client.unsafe('set plan_cache_mode = force_generic_plan')
    const dialect = new PgDialect()
    for (const variant of ['any', 'application', 'namespace'] as const) {
      const { next, update } = claimSteps({ ...pullClaim(variant), as: { status: 'processing', graceSec: 3 }, returning: taskColumns('t') })
      const text = dialect.sqlToQuery(sql`with ${next} ${update}`).sql
      await client.unsafe(`prepare claim_${variant} as ${text}`)
      const values = ['5', '\'app7\'', '\'ns2\''].slice(0, variant === 'any' ? 1 : variant === 'application' ? 2 : 3)
      const [row] = await client.unsafe(`explain (format json) execute claim_${variant}(${values.join(', ')})`)
      const plan = planOf(row)
      const free = [...walk(plan)].find(node => node['Subplan Name'] === 'CTE free')
      t.ok(free !== undefined, `${variant}: the free path is a CTE of its own`)
      const scans = [...walk(free as PlanNode)].filter(node => node['Relation Name'] === 'inflight_tasks')
      t.same(scans.map(node => [node['Node Type'], node['Index Name']]), [['Index Scan', INDEX[variant]]], `${variant}: one walk of ${INDEX[variant]}`)
      t.same([...walk(free as PlanNode)].filter(node => node['Node Type'] === 'Sort'), [], `${variant}: no Sort in the walk`)
      // Capped queues' walks (run only when a queue has a cap) start with the queue: an index led
      // by the application. (For a small queue the planner may sort that queue's rows instead.)
      const metered = [...walk(plan)].find(node => node['Subplan Name'] === 'CTE metered') as PlanNode
      const meteredIndexes = [...walk(metered)].filter(node => node['Index Name']?.startsWith('inflight_tasks_') === true).map(node => node['Index Name'])
      t.ok(meteredIndexes.length > 0 && meteredIndexes.every(name => name === INDEX.application || name === INDEX.namespace),
        `${variant}: capped queues are read through an index led by their application (${meteredIndexes.join(', ')})`)
      // Any Sort outside those walks orders the claim's own candidates (CTE rows), never a scan of the tasks.
      for (const sort of [...walk(plan)].filter(node => node['Node Type'] === 'Sort' && !([...walk(metered)].includes(node)))) {
        const under = [...walk(sort)].filter(node => node['Relation Name'] === 'inflight_tasks')
        t.same(under, [], `${variant}: a Sort over the claim's candidates only`)
      }

      // The plain claim (no queue restricted): the same single walk, no queue-control steps.
      const plain = claimSteps({ ...pullClaim(variant), as: { status: 'processing', graceSec: 3 }, controls: false, returning: taskColumns('t') })
      await client.unsafe(`prepare plain_${variant} as ${dialect.sqlToQuery(sql`with ${plain.next} ${plain.update}`).sql}`)
      const [plainRow] = await client.unsafe(`explain (format json) execute plain_${variant}(${values.join(', ')})`)
      const plainPlan = planOf(plainRow)
      const plainScans = [...walk(plainPlan)].filter(node => node['Relation Name'] === 'inflight_tasks' && node['Node Type'] !== 'ModifyTable')
      t.same(plainScans.map(node => [node['Node Type'], node['Index Name']]), [['Index Scan', INDEX[variant]], ['Index Scan', 'inflight_tasks_pkey']],
        `plain ${variant}: one walk of ${INDEX[variant]}, then the claimed rows by primary key`)
      t.same([...walk(plainPlan)].filter(node => node['Node Type'] === 'Sort'), [], `plain ${variant}: no Sort`)
      const settingsReads = [...walk(plainPlan)].filter(node => node['Relation Name'] === 'queue_settings')
      t.same(settingsReads.map(node => node['Parent Relationship']), ['InitPlan'], `plain ${variant}: queue_settings read once per statement, by the guard (an InitPlan)`)
    }
  })

  t.test('a claim whose queue is capped does not walk its backlog for uncapped tasks', async (t) => {
    const { url } = await createTestDatabase(t, 'postgres')
    const client = postgres(url as string, { max: 1, onnotice: () => {} })
    t.teardown(() => client.end())
    await client.unsafe(`insert into inflight_tasks (id, activation, received_at, processing_deadline_duration, status, application, namespace, taskname)
      select 't' || i, '{}'::jsonb, now(), 60, 'pending', 'app', 'ns', 'x' from generate_series(1, 5000) i`)
    await client.unsafe("insert into queue_settings (application, namespace, max_processing) values ('app', 'ns', 1000)")
    await client.unsafe('analyze inflight_tasks')
    const dialect = new PgDialect()
    for (const variant of ['application', 'namespace'] as const) {
      if (variant === 'application') await client.unsafe("update queue_settings set namespace = '' where application = 'app'")
      const { next, update } = claimSteps({ ...pullClaim(variant), as: { status: 'processing', graceSec: 3 }, returning: taskColumns('t') })
      await client.unsafe(`prepare capped_${variant} as ${dialect.sqlToQuery(sql`with ${next} ${update}`).sql}`)
      const values = variant === 'application' ? "5, 'app'" : "5, 'app', 'ns'"
      const [row] = await client.unsafe(`explain (analyze, format json) execute capped_${variant}(${values})`)
      const plan = planOf(row)
      const free = [...walk(plan)].find(node => node['Subplan Name'] === 'CTE free') as PlanNode
      const walks = [...walk(free)].filter(node => node['Relation Name'] === 'inflight_tasks')
      t.ok(walks.length > 0 && walks.every(node => node['Actual Loops'] === 0), `${variant}: the free walk never ran`)
      const [claimed] = await client.unsafe("select count(*)::int as n from inflight_tasks where status = 'processing'")
      t.equal(claimed?.n, variant === 'application' ? 5 : 10, `${variant}: the capped walk took its 5 tasks`)
    }
  })
}
