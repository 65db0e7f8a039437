/**
 * What the queue controls cost a claim (PostgreSQL): the store's prepared claim by application,
 * one task at a time, against the same claim without the controls (the walk and the update, no
 * queue_settings at all), with no settings rows, with 200 rows for other applications, and with
 * the claimed queue itself capped (its row locked, its allowance computed, its tokens charged):
 * max_processing counts the processing tasks (every one in the table is read through the status
 * index: the bench leaves each claimed task processing, so that count grows to ~5,000).
 * Variants run interleaved, round by round, so load on the machine hits them alike.
 *
 *   npx tsx bench/claim-controls.ts [--url postgres://postgres@127.0.0.1:5432/postgres] [--iterations 1000]
 */
import { sql } from 'drizzle-orm'
import { inflightTasks } from '../src/db/schema.js'
import { toActivation } from '../src/domain/activation.js'
import { createQueueStore } from '../src/store/queue-store.js'
import { taskColumns } from '../src/store/rows.js'
import { processingDeadline } from '../src/store/statements/claim.js'
import { columnsOf } from '../src/store/statements/schema-sql.js'
import { createTaskStore } from '../src/store/task-store.js'
import { flag, withScratchDatabase } from './lib/scratch-db.js'
import { summarize } from './lib/stats.js'

const url = flag('url', process.env.TASKBROKER_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres')
const iterations = Number(flag('iterations', '1000'))
const WARMUP = 30

const n = columnsOf(inflightTasks, 'n')
const t = columnsOf(inflightTasks, 't')
const c = columnsOf(inflightTasks)

await withScratchDatabase(url, async (database) => {
  const store = createTaskStore(database, { processingDeadlineGraceSec: 3, maxDelaySec: 3600 })
  const queues = createQueueStore(database)
  // The claim without queue controls: the same walk of the same index, the same update.
  const plain = database.prepare('bench_plain_claim', sql`with next as (
      select ${n.id} from ${inflightTasks} n
      where ${n.status} = 'pending' and (${n.expiresAt} is null or ${n.expiresAt} > now()) and ${n.application} = ${sql.placeholder('application')}
      order by ${n.priority} desc nulls last, ${n.addedAt} limit ${sql.placeholder('limit')} for update skip locked)
    update ${inflightTasks} t set ${c.status} = 'processing', ${c.processingDeadline} = ${processingDeadline(3)}, ${c.claimExpiresAt} = null
    where ${t.id} = any(array(select ${c.id} from next)) returning ${taskColumns('t')}`)
  await database.rows(sql.raw(`insert into inflight_tasks (id, activation, received_at, processing_deadline_duration, status, application, namespace, taskname)
    select 'bg-' || i, '{}'::jsonb, now(), 60, 'pending', 'a' || (i % 10), 'ns', 'x' from generate_series(1, 10000) i`))
  await database.rows(sql`analyze inflight_tasks`)

  type Variant = 'without controls' | 'controls, no settings' | 'controls, 200 rows of others' | 'this queue: max_processing' | 'this queue: rate_limit'
  const app: Record<Variant, string> = {
    'without controls': 'p0',
    'controls, no settings': 'p1',
    'controls, 200 rows of others': 'p2',
    'this queue: max_processing': 'p3',
    'this queue: rate_limit': 'p4'
  }
  const samples = Object.fromEntries(Object.keys(app).map(v => [v, [] as number[]])) as Record<Variant, number[]>
  const claimOf = (variant: Variant) => variant === 'without controls'
    ? () => plain.run({ application: app[variant], limit: 1 })
    : () => store.claim({ application: app[variant] }, 1)
  const order = Object.keys(app) as Variant[]
  for (let round = 0; round < WARMUP + iterations; round++) {
    if (round === WARMUP) {
      // Settings appear after the warm-up rounds (no settings at all before).
      for (let i = 0; i < 200; i++) await queues.change({ application: `other-${i}`, paused: i % 2 === 0, maxProcessing: i % 2 === 0 ? null : 5 })
      await queues.change({ application: app['this queue: max_processing'], maxProcessing: 1_000_000_000 })
      await queues.change({ application: app['this queue: rate_limit'], rateLimit: { perSec: 1_000_000, burst: 1_000_000 } })
    }
    for (const variant of order) {
      if (round >= WARMUP && variant === 'controls, no settings') continue
      await store.produce([toActivation({ application: app[variant], namespace: 'ns', taskname: 'x' }, new Date())], new Date())
      const started = performance.now()
      const rows = await claimOf(variant)()
      const ms = performance.now() - started
      if (rows.length !== 1) throw new Error(`${variant}: claimed ${rows.length}`)
      if (round >= WARMUP) samples[variant].push(ms)
    }
  }
  // "No settings" is measured in rounds of its own with the table empty again.
  await database.rows(sql`truncate table queue_settings`)
  for (let round = 0; round < WARMUP + iterations; round++) {
    for (const variant of ['without controls', 'controls, no settings'] as const) {
      await store.produce([toActivation({ application: app[variant], namespace: 'ns', taskname: 'x' }, new Date())], new Date())
      const started = performance.now()
      const rows = await claimOf(variant)()
      const ms = performance.now() - started
      if (rows.length !== 1) throw new Error(`${variant}: claimed ${rows.length}`)
      if (round >= WARMUP) samples[variant === 'without controls' ? 'without controls' : variant].push(ms)
    }
  }
  console.log(`claim by application, 1 task, 10,000 pending tasks of other applications (ms per statement, ${iterations}+ claims each)`)
  for (const variant of order) console.log(`  ${variant.padEnd(30)} ${JSON.stringify(summarize(samples[variant]))}`)
})
