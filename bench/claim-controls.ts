/**
 * What the queue controls cost a claim (PostgreSQL): the store's prepared claim by application,
 * one task at a time: the plain claim the broker takes while no queue is paused or capped, the
 * claim with the queue-control steps and no settings rows, with 200 rows for other applications,
 * and with the claimed queue itself capped (its row locked, its allowance computed, its tokens
 * charged): max_processing counts the processing tasks (the bench leaves each claimed task
 * processing, so that count grows to ~5,000). Variants run interleaved, round by round, so load on
 * the machine hits them alike.
 *
 *   npx tsx bench/claim-controls.ts [--url postgres://postgres@127.0.0.1:5432/postgres] [--iterations 1000]
 */
import { sql } from 'drizzle-orm'
import { toActivation } from '../src/domain/activation.js'
import { createQueueRestrictions } from '../src/store/queue-restrictions.js'
import { createQueueStore } from '../src/store/queue-store.js'
import { createTaskStore } from '../src/store/task-store.js'
import { flag, withScratchDatabase } from './lib/scratch-db.js'
import { summarize } from './lib/stats.js'

const url = flag('url', process.env.TASKBROKER_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres')
const iterations = Number(flag('iterations', '1000'))
const WARMUP = 30

await withScratchDatabase(url, async (database) => {
  const rules = { processingDeadlineGraceSec: 3, maxDelaySec: 3600 }
  // One store takes the plain claim whenever it may (no queue restricted), one never does.
  const restrictions = createQueueRestrictions(database)
  const store = createTaskStore(database, rules, { none: false })
  const plainStore = createTaskStore(database, rules, restrictions)
  const queues = createQueueStore(database, restrictions)
  await restrictions.refresh()
  await database.rows(sql.raw(`insert into inflight_tasks (id, activation, received_at, processing_deadline_duration, status, application, namespace, taskname)
    select 'bg-' || i, '{}'::jsonb, now(), 60, 'pending', 'a' || (i % 10), 'ns', 'x' from generate_series(1, 10000) i`))
  await database.rows(sql`analyze inflight_tasks`)

  type Variant = 'plain (no queue restricted)' | 'controls, no settings' | 'controls, 200 rows of others' | 'this queue: max_processing' | 'this queue: rate_limit'
  const app: Record<Variant, string> = {
    'plain (no queue restricted)': 'p0',
    'controls, no settings': 'p1',
    'controls, 200 rows of others': 'p2',
    'this queue: max_processing': 'p3',
    'this queue: rate_limit': 'p4'
  }
  const samples = Object.fromEntries(Object.keys(app).map(v => [v, [] as number[]])) as Record<Variant, number[]>
  /** Produces one task of the variant's queue and claims it, timing the claim (recorded past the warm-up). */
  const timedClaim = async (variant: Variant, round: number) => {
    await store.produce([toActivation({ application: app[variant], namespace: 'ns', taskname: 'x' }, new Date())], new Date())
    const claimer = variant === 'plain (no queue restricted)' ? plainStore : store
    const started = performance.now()
    const rows = await claimer.claim({ application: app[variant] }, 1)
    const ms = performance.now() - started
    if (rows.length !== 1) throw new Error(`${variant}: claimed ${rows.length}`)
    if (round >= WARMUP) samples[variant].push(ms)
  }
  const order = Object.keys(app) as Variant[]
  const withoutSettings: Variant[] = ['plain (no queue restricted)', 'controls, no settings']
  for (let round = 0; round < WARMUP + iterations; round++) {
    if (round === WARMUP) {
      // Settings appear after the warm-up rounds (no settings at all before).
      for (let i = 0; i < 200; i++) await queues.change({ application: `other-${i}`, paused: i % 2 === 0, maxProcessing: i % 2 === 0 ? null : 5 })
      await queues.change({ application: app['this queue: max_processing'], maxProcessing: 1_000_000_000 })
      await queues.change({ application: app['this queue: rate_limit'], rateLimit: { perSec: 1_000_000, burst: 1_000_000 } })
    }
    for (const variant of order) if (round < WARMUP || !withoutSettings.includes(variant)) await timedClaim(variant, round)
  }
  // The variants without settings are measured in rounds of their own with the table empty again.
  await database.rows(sql`truncate table queue_settings`)
  await restrictions.refresh()
  for (let round = 0; round < WARMUP + iterations; round++) {
    for (const variant of withoutSettings) await timedClaim(variant, round)
  }
  console.log(`claim by application, 1 task, 10,000 pending tasks of other applications (ms per statement, ${iterations}+ claims each)`)
  for (const variant of order) console.log(`  ${variant.padEnd(30)} ${JSON.stringify(summarize(samples[variant]))}`)
})
