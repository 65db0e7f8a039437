/**
 * Every statement the store sends names its tables and columns through the Drizzle schema
 * (src/store/statements/schema-sql.ts), so renaming a column in src/db/schema.ts breaks the
 * compilation of every statement that uses it: no statement text may spell a table or column name
 * by hand. Drizzle renders the names it is given as quoted identifiers ("status"); a name written
 * into the SQL text is bare (status). The store is driven through every method on a recording
 * database, and each statement it prepared or sent is searched for bare names.
 */
import { getTableColumns, getTableName, sql } from 'drizzle-orm'
import t from 'tap'
import type { Database } from '../../src/db/database.js'
import { deadletterTasks, inflightTasks, queueSettings } from '../../src/db/schema.js'
import { toActivation } from '../../src/domain/activation.js'
import { createStore } from '../../src/store/index.js'
import { createTaskStore } from '../../src/store/task-store.js'
import { createTestDatabase } from '../helpers/database.js'
import { recording } from './contract/recording.js'

const NAMES = [inflightTasks, deadletterTasks, queueSettings].flatMap(table => [getTableName(table), ...Object.values(getTableColumns(table)).map(c => c.name)])

/** The schema names a statement spells by hand: bare, outside string literals and quoted identifiers. */
function handWritten (text: string): string[] {
  const bare = text.replace(/'(?:[^']|'')*'/g, "''").replace(/"(?:[^"]|"")*"/g, '""')
  return [...new Set(NAMES.filter(name => new RegExp(`(?<![\\w$])${name}(?![\\w$])`).test(bare)))]
}

t.test('the check finds a hand-written name, and only outside literals and quoted identifiers', async (t) => {
  t.same(handWritten('select id from inflight_tasks where status = \'pending\'').sort(), ['id', 'inflight_tasks', 'status'])
  t.same(handWritten('select "id" from "inflight_tasks" t where t."status" = \'status\' and a ->> \'processing_deadline\' is null'), [])
  t.same(handWritten('update "inflight_tasks" t set "activation" = excluded.activation'), ['activation'])
  t.same(handWritten('select x.taskname_count, v.max_attempts, $1::text[]'), [], 'longer words and other names are not columns')
})

t.test('no statement of the store spells a table or column name by hand', async (t) => {
  const { database } = await createTestDatabase(t, 'pglite')
  const sent = new Map<string, string>()
  const spy: Database = recording(database, (text) => { sent.set(text, text) })
  const store = createStore(spy, { processingDeadlineGraceSec: 3, maxDelaySec: 3600, upkeepCallTimeoutMs: 0 })
  const marking = createTaskStore(spy, { processingDeadlineGraceSec: 3, maxDelaySec: 3600, completedRows: 'mark' })
  const now = new Date()
  const tasks = Array.from({ length: 6 }, (_, i) => toActivation({ id: `s${i}`, application: 'app', namespace: 'ns', taskname: 'x', retry_state: { on_attempts_exceeded: 'deadletter' } }, now))

  // Tasks
  await store.tasks.produce(tasks, now)
  // A poison row (inserted beside the spy) makes the claim run the dead-letter move.
  await database.rows(sql`update inflight_tasks set activation = '5'::jsonb where id = 's0'`)
  const [first] = await store.tasks.claim({}, 2)
  await store.tasks.claim({ application: 'app' }, 1)
  await store.tasks.claim({ application: 'app', namespace: 'ns' }, 1)
  await store.tasks.setStatusMany([{ id: first?.activation.id ?? 's1', status: 'failure' }])
  await marking.setStatusMany([{ id: 's2', status: 'complete' }])
  for (const filter of [{}, { application: 'app' }, { application: 'app', namespace: 'ns' }]) {
    await store.tasks.setStatusManyAndClaim([{ id: 's3', status: 'retry', maxAttempts: 4 }], filter, 1)
    await marking.setStatusManyAndClaim([{ id: 's3', status: 'retry' }], filter, 1)
  }
  await store.tasks.getById('s1')
  await store.tasks.stats(now)
  await store.tasks.countLive()
  await store.tasks.ping()
  // Upkeep
  const later = new Date(now.getTime() + 3600_000)
  await store.upkeep.resetMissedDeadlines(later, 5, 10)
  await store.upkeep.expireClaims(later, 10)
  await store.upkeep.failExhaustedProcessingAttempts(5, 10)
  await store.upkeep.removeExpired(later, 10)
  await store.upkeep.releaseDelayed(later, 10)
  await store.upkeep.requeueRetries(later, 3600, 10)
  await store.upkeep.settleFailures(10)
  await store.upkeep.removeCompleted(10)
  await store.upkeep.removeKillswitched(['x'], 10)
  // Dead letters
  const page = await store.deadletters.list({ limit: 1 })
  await store.deadletters.list({ limit: 1, application: 'app', namespace: 'ns', taskname: 'x', after: page.nextCursor ?? undefined })
  await store.deadletters.requeue('s1', now)
  await store.deadletters.remove('s0')
  await store.deadletters.count()
  // Push
  await store.tasks.produce([toActivation({ id: 'p1', application: 'app', namespace: 'ns', taskname: 'x' }, now)], now)
  const pushed = await store.push.claim({ buckets: [0, 255], applications: ['app'], limit: 1, leaseMs: 60_000 })
  await store.push.settle(pushed.map(p => ({ id: p.activation.id, token: p.token, delivered: true })))
  // Leases
  await store.leases.heartbeat([{ id: 'p1', lease: pushed[0]?.lease, extendSec: 10, progress: { a: 1 } }, { id: 's4' }], 3600)
  await store.leases.release('p1', pushed[0]?.lease)
  await store.leases.cancel('p1')
  await store.leases.cancelMany({ application: 'app', namespace: 'ns', taskname: 'x' })

  t.ok(sent.size >= 30, `${sent.size} distinct statements prepared or sent`)
  for (const text of sent.keys()) {
    t.same(handWritten(text), [], text.replace(/\s+/g, ' ').slice(0, 90))
  }
})
