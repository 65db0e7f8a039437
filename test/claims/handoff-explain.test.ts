/**
 * The hand-off insert decides once per row, and asks "does a claimable task come first?" by walking
 * the claim index of the waiter's filter (an Index Scan, which stops at the first task and marks
 * dead entries; a bitmap scan visits every pending row, dead ones too, and took 95 ms under load).
 */
import postgres from 'postgres'
import t from 'tap'
import { produceHandoffStatement } from '../../src/store/statements/produce.js'
import { backends, createTestDatabase } from '../helpers/database.js'
import { planOf, walk } from '../helpers/plans.js'

if (!backends().includes('postgres')) {
  t.comment('EXPLAIN checks need PostgreSQL (TASKBROKER_TEST_DATABASE_URL)')
} else {
  t.test('the hand-off insert walks each filter\'s own claim index, once per row', async (t) => {
    const { url } = await createTestDatabase(t, 'postgres')
    const client = postgres(url as string, { max: 1, onnotice: () => {} })
    t.teardown(() => client.end())
    await client.unsafe(`insert into inflight_tasks (id, activation, received_at, processing_deadline_duration, status, application, namespace, taskname, priority)
      select 't' || i, '{}'::jsonb, now(), 60, 'pending', 'app' || (i % 40), 'ns' || (i % 5), 'x', (i % 3) - 1
      from generate_series(1, 20000) i`)
    await client.unsafe('analyze inflight_tasks')
    await client.unsafe('set plan_cache_mode = force_generic_plan')
    await client.unsafe(`prepare handoff as ${produceHandoffStatement(3).text}`)
    const row = (values: string[]) => values.map(v => `'{${v}}'`).join(', ')
    // The activations as one JSON array, then a one-element array per column.
    const args = ['\'[{}]\'', row(['h1', '2026-01-01T00:00:00Z', 'NULL', 'NULL', '60', 'pending', 'false', 'app1', 'ns1', 'x', 'discard', '1', '0', 'true', 'app1', 'ns1'])].join(', ')
    const [result] = await client.unsafe(`explain (format json) execute handoff(${args})`)
    const plan = planOf(result)
    const scans = [...walk(plan)].filter(node => node['Relation Name'] === 'inflight_tasks' && node['Node Type'] !== 'ModifyTable')
    t.same(scans.map(node => [node['Node Type'], node['Index Name']]), [
      ['Index Scan', 'inflight_tasks_pending_order_idx'],
      ['Index Scan', 'inflight_tasks_pending_app_order_idx'],
      ['Index Scan', 'inflight_tasks_pending_app_ns_order_idx']
    ], 'one index walk per filter shape, once (not once per column that reads the decision)')
    t.same([...walk(plan)].filter(node => node['Node Type'].startsWith('Bitmap')), [], 'no bitmap scan')
  })
}
