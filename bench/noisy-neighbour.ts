/**
 * A claim for one application with 100,000 older pending tasks of another application ahead of
 * it: each claim shape walks an index that starts with its filter, so the backlog of another
 * queue is never read. Times the store's own prepared claim (one task at a time, produced just
 * before), by application and by application + namespace, on PostgreSQL.
 *
 *   npx tsx bench/noisy-neighbour.ts [--url postgres://postgres@127.0.0.1:5432/postgres] [--backlog 100000] [--iterations 500]
 */
import { sql } from 'drizzle-orm'
import { toActivation } from '../src/domain/activation.js'
import { createTaskStore } from '../src/store/task-store.js'
import { flag, withScratchDatabase } from './lib/scratch-db.js'
import { summarize } from './lib/stats.js'

const url = flag('url', process.env.TASKBROKER_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres')
const backlog = Number(flag('backlog', '100000'))
const iterations = Number(flag('iterations', '500'))

await withScratchDatabase(url, async (database) => {
  const store = createTaskStore(database, { processingDeadlineGraceSec: 3, maxDelaySec: 3600 })
  // The neighbour's backlog, older than anything the quiet application produces.
  await database.rows(sql.raw(`insert into inflight_tasks (id, activation, received_at, added_at, processing_deadline_duration, status, application, namespace, taskname)
    select 'noisy-' || i, '{}'::jsonb, now(), now() - interval '1 hour' + i * interval '1 microsecond', 60, 'pending', 'noisy', 'ns', 'x'
    from generate_series(1, ${backlog}) i`))
  await database.rows(sql`analyze inflight_tasks`)
  const samples: Record<string, number[]> = { application: [], 'application+namespace': [] }
  for (let i = 0; i < iterations + 20; i++) {
    for (const [shape, filter] of [['application', { application: 'quiet' }], ['application+namespace', { application: 'quiet', namespace: 'ns' }]] as const) {
      await store.produce([toActivation({ application: 'quiet', namespace: 'ns', taskname: 'x' }, new Date())], new Date())
      const started = performance.now()
      const claimed = await store.claim(filter, 1)
      const ms = performance.now() - started
      if (claimed.length !== 1 || claimed[0]?.activation.application !== 'quiet') throw new Error(`the ${shape} claim took ${claimed.length} tasks, not the quiet one`)
      if (i >= 20) samples[shape]?.push(ms)
    }
  }
  console.log(`noisy neighbour: ${backlog} older pending tasks of another application, ${iterations} claims per shape (ms)`)
  for (const [shape, values] of Object.entries(samples)) console.log(`  ${shape.padEnd(24)} ${JSON.stringify(summarize(values))}`)
})
