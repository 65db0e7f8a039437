/**
 * Audit of every statement the broker sends, through a spy on the Database seam, with the batch
 * limits at their largest allowed values (10,000 tasks per produce, 10,000 updates per batch
 * status, claims of 1,000, 1,000 reports per flush):
 * - no statement has more than a handful of bind parameters, whatever the batch size (batches
 *   travel as array parameters), so PostgreSQL's 65,535 limit is out of reach;
 * - no array parameter is ever empty (upstream sends `IN ()` for an empty list, a syntax error):
 *   store methods given nothing send nothing;
 * - at the store level, batches beyond 65,535 rows go through in one statement each.
 */
import { fillPlaceholders, sql } from 'drizzle-orm'
import { PgDialect } from 'drizzle-orm/pg-core'
import pino from 'pino'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import type { Database } from '../../src/db/database.js'
import { createTaskStore } from '../../src/store/task-store.js'
import { createUpkeepStore } from '../../src/store/upkeep-store.js'
import { toActivation } from '../../src/domain/activation.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { testConfig, testStore } from '../helpers/app.js'
import { createTestDatabase, eachBackend } from '../helpers/database.js'

keepAlive(t)

interface Sent { text: string, params: unknown[] }

/** The database, recording the text and bind parameters of every statement sent through it. */
function spy (database: Database, sent: Sent[]): Database {
  const dialect = new PgDialect()
  return {
    kind: database.kind,
    get db () { return database.db },
    rows (query, options) {
      const built = dialect.sqlToQuery(query)
      sent.push({ text: built.sql, params: built.params })
      return database.rows(query, options)
    },
    prepare (name, query, options) {
      const built = dialect.sqlToQuery(query)
      const prepared = database.prepare(name, query, options)
      return {
        run (values) {
          sent.push({ text: built.sql, params: fillPlaceholders(built.params, values ?? {}) })
          return prepared.run(values)
        }
      }
    },
    run (text, params, options) {
      sent.push({ text, params })
      return database.run(text, params, options)
    },
    migrate: () => database.migrate(),
    listen: (channel, onPayload) => database.listen(channel, onPayload),
    notify: (channel, payload) => database.notify(channel, payload),
    leaderLock: (key) => database.leaderLock(key),
    close: () => database.close()
  }
}

/** An empty list as a bind parameter: a JS array, or PostgreSQL array text. */
const isEmptyList = (param: unknown): boolean => (Array.isArray(param) && param.length === 0) || param === '{}'

const MAX = {
  TASKBROKER_PRODUCE_MAX_TASKS: '10000',
  TASKBROKER_STATUS_MAX_UPDATES: '10000',
  TASKBROKER_CLAIM_MAX_TASKS: '1000',
  TASKBROKER_STATUS_BATCH_SIZE: '1000',
  TASKBROKER_BODY_LIMIT_BYTES: String(64 * 1024 * 1024),
  TASKBROKER_UPKEEP_ENABLED: 'false',
  TASKBROKER_UPKEEP_BATCH_LIMIT: '1000000',
  TASKBROKER_MAX_PENDING_COUNT: '1000000',
  TASKBROKER_MAX_PROCESSING_COUNT: '1000000',
  TASKBROKER_STATUS_ACK_TIMEOUT_MS: '60000'
}

eachBackend(t, 'every statement of a whole lifecycle at the largest batch limits: few bind parameters, no empty list', { timeout: 300_000 }, async (t, backend) => {
  const { database } = await createTestDatabase(t, backend)
  const sent: Sent[] = []
  const config = testConfig(MAX)
  const app = await buildApp(config, { store: testStore(spy(database, sent), config), logger: pino({ level: 'silent' }) })
  t.teardown(() => app.close())
  const post = async (url: string, payload: unknown, status = 200) => {
    const res = await app.inject({ method: 'POST', url, payload: payload as object })
    t.equal(res.statusCode, status, `POST ${url} → ${status}`)
    return res.json()
  }

  const tasks = Array.from({ length: 10_000 }, (_, i) => ({
    id: `audit-${i}`, namespace: 'ns', taskname: 'audit', parameters: { i }, retry_state: { on_attempts_exceeded: 'deadletter', max_attempts: 2 }
  }))
  t.equal((await post('/v1/tasks', { tasks }, 201)).inserted, 10_000, 'one produce of 10,000 tasks')
  t.equal((await post('/v1/tasks', { tasks }, 201)).duplicates.length, 10_000, 'the same 10,000 again: all duplicates')
  let claimed: string[] = []
  for (let i = 0; i < 10; i++) claimed = claimed.concat((await post('/v1/tasks/claim', { limit: 1000 })).tasks.map((x: { id: string }) => x.id))
  t.equal(claimed.length, 10_000, 'claimed in ten claims of 1,000')
  const statuses = ['complete', 'failure', 'retry'] as const
  const reported = await post('/v1/tasks/status', { updates: claimed.map((id, i) => ({ id, status: statuses[i % 3], max_attempts: 3 })) })
  t.equal(reported.applied, 10_000, 'one batch status request of 10,000 updates')
  const unknown = await post('/v1/tasks/status', { updates: Array.from({ length: 10_000 }, (_, i) => ({ id: `nobody-${i}`, status: 'complete' })) })
  t.equal(unknown.not_found.length, 10_000, '10,000 unknown ids are listed as not found')
  await app.broker.upkeep.runOnce(new Date())
  await app.broker.upkeep.runOnce(new Date())
  const next = await post('/v1/tasks/claim', { limit: 1 })
  const id = next.tasks[0].id as string
  t.equal((await post(`/v1/tasks/${id}/status`, { status: 'failure', fetch_next: {} })).applied, true, 'a report with fetch_next')
  await app.broker.upkeep.runOnce(new Date())
  const letters = await app.inject('/v1/deadletters?limit=1000')
  t.equal(letters.json().deadletters.length, 1000, 'a page of 1,000 dead letters')
  t.equal((await app.inject({ method: 'POST', url: `/v1/deadletters/${id}/requeue` })).statusCode, 200, 'a requeue')
  t.equal((await app.inject('/v1/stats')).statusCode, 200, 'stats')

  // Store methods given nothing send nothing.
  const store = createTaskStore(spy(database, sent), { processingDeadlineGraceSec: 3, maxDelaySec: 3600 })
  const before = sent.length
  t.same(await store.produce([], new Date()), { inserted: [], duplicates: [], handedOff: new Map() })
  t.same(await store.setStatusMany([]), new Set())
  t.same((await store.setStatusManyAndClaim([], {}, 0)).claimed, [])
  t.same(await createUpkeepStore(spy(database, sent)).removeKillswitched([], 100), { removed: 0 })
  t.equal(sent.length, before, 'empty lists never reached SQL')

  const most = sent.reduce((max, s) => s.params.length > max.params.length ? s : max)
  t.ok(sent.length > 20, `${sent.length} statements sent`)
  t.ok(most.params.length <= 16, `the most bind parameters in one statement: ${most.params.length} (${most.text.replace(/\s+/g, ' ').slice(0, 80)}…)`)
  const empty = sent.filter(s => s.params.some(isEmptyList))
  t.same(empty.map(s => s.text.replace(/\s+/g, ' ').slice(0, 100)), [], 'no statement got an empty list')
})

eachBackend(t, 'batches beyond the bind-parameter limit go through in one statement each', { timeout: 300_000 }, async (t, backend) => {
  const { database } = await createTestDatabase(t, backend)
  const store = createTaskStore(database, { processingDeadlineGraceSec: 3, maxDelaySec: 3600 })
  const now = new Date()
  const n = 66_000
  const activations = Array.from({ length: n }, (_, i) => toActivation({ id: `big-${i}`, namespace: 'ns', taskname: 'big' }, now))
  const produced = await store.produce(activations, now)
  t.equal(produced.inserted.length, n, `${n} tasks produced by one statement (13 × ${n} values)`)
  const applied = await store.setStatusMany(activations.map(a => ({ id: a.id, status: 'complete' as const })))
  t.equal(applied.size, n, `${n} status updates written by one statement`)
  t.same(await database.rows(sql`select count(*)::int as n from inflight_tasks`), [{ n: 0 }], 'every row completed')
})
