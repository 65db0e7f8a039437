import pino from 'pino'
import t from 'tap'
import { createMetrics } from '../../src/core/metrics.js'
import { createStatusWriter } from '../../src/core/status/status-writer.js'
import { createTaskStore, type TaskStore } from '../../src/store/task-store.js'
import type { StatusUpdate } from '../../src/domain/types.js'
import { toActivation } from '../../src/domain/activation.js'
import { testConfig } from '../helpers/app.js'
import { createTestDatabase, eachBackend, type BackendName } from '../helpers/database.js'

// The batcher's timers are unref()'d; keep the test process alive while they run.
const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => clearInterval(keepAlive))

t.test('a report the store refuses does not block the reports flushed with it', async (t) => {
  const statements: string[][] = []
  const store = {
    async writeReports (updates: readonly StatusUpdate[]) {
      statements.push(updates.map(u => u.id))
      if (updates.some(u => u.id === 'poison')) throw Object.assign(new Error('invalid byte sequence'), { code: '22021' })
      return { applied: new Set(updates.map(u => u.id)), stale: new Set(), cancelled: new Set() }
    }
  } as unknown as TaskStore
  const config = testConfig({ TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '20' }).status
  const writer = createStatusWriter({ store, config, metrics: createMetrics(), log: pino({ level: 'silent' }), claim: async () => [] })
  const outcome = await writer.report([{ id: 'a', status: 'complete' }, { id: 'poison', status: 'complete' }, { id: 'b', status: 'failure' }])
  t.same(outcome.applied, ['a', 'b'], 'the good reports were written')
  t.same(outcome.notFound, ['poison'], 'the bad one is answered as not applied')
  t.same(statements[0], ['a', 'poison', 'b'], 'first one bulk statement')
  t.equal(statements.length, 4, 'then one statement per report')
  t.same((await writer.report([{ id: 'c', status: 'complete' }])).applied, ['c'], 'later reports flow normally')
  await writer.close(1000)
})

t.test('a store outage is retried, not treated as a bad report', async (t) => {
  let down = true
  const store = {
    async writeReports (updates: readonly StatusUpdate[]) {
      if (down) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
      return { applied: new Set(updates.map(u => u.id)), stale: new Set(), cancelled: new Set() }
    }
  } as unknown as TaskStore
  const writer = createStatusWriter({ store, config: testConfig().status, metrics: createMetrics(), log: pino({ level: 'silent' }), claim: async () => [] })
  const pending = writer.report([{ id: 'x', status: 'complete' }])
  setTimeout(() => { down = false }, 150)
  t.same((await pending).applied, ['x'], 'written once the store is back')
  await writer.close(1000)
})

async function writerOn (t: Parameters<typeof createTestDatabase>[0], backend: BackendName, env: Record<string, string> = {}) {
  const { database } = await createTestDatabase(t, backend)
  const store = createTaskStore(database, { processingDeadlineGraceSec: 0, maxDelaySec: 3600 })
  let statements = 0
  const counted = {
    ...store,
    writeReports: async (...args: Parameters<TaskStore['writeReports']>) => { statements++; return store.writeReports(...args) },
    setStatusManyAndClaim: async (...args: Parameters<TaskStore['setStatusManyAndClaim']>) => { statements++; return store.setStatusManyAndClaim(...args) }
  } as TaskStore
  const claimsApart: string[] = []
  const writer = createStatusWriter({
    store: counted,
    config: testConfig(env).status,
    metrics: createMetrics(),
    log: pino({ level: 'silent' }),
    claim: async (filter, limit) => { claimsApart.push(`${filter.application ?? '*'}:${limit}`); return store.claim(filter, limit) }
  })
  t.teardown(() => writer.close(1000))
  return { store, writer, statements: () => statements, claimsApart }
}

const act = (id: string, application = 'app') => toActivation({ id, application, namespace: 'ns', taskname: 't' }, new Date())

eachBackend(t, 'fetch_next claims ride along with the flush that writes the reports', async (t, backend) => {
  const { store, writer, statements, claimsApart } = await writerOn(t, backend, { TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '20' })
  await store.produce(Array.from({ length: 20 }, (_, i) => act(`t${String(i).padStart(2, '0')}`)), new Date())
  const held = await store.claim({}, 8)
  const results = await Promise.all(held.map(h => writer.reportAndClaimNext({ id: h.activation.id, status: 'complete' }, {})))
  t.ok(results.every(r => r.outcome.applied.length === 1), 'every report applied')
  const next = results.map(r => r.task?.activation.id)
  t.equal(new Set(next).size, 8, 'every rider got its own task')
  t.same(next, ['t08', 't09', 't10', 't11', 't12', 't13', 't14', 't15'], 'oldest first, in arrival order')
  t.equal(statements(), 1, 'reports and claims: one statement')
  t.same(claimsApart, [], 'no claim of its own')
})

eachBackend(t, 'riders with another filter are claimed beside the flush, with their filter', async (t, backend) => {
  const { store, writer, claimsApart } = await writerOn(t, backend, { TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '20' })
  await store.produce([act('a1'), act('a2'), act('a3'), act('b1', 'other'), act('a4')], new Date())
  const held = await store.claim({ application: 'app' }, 3)
  const [x, y, z] = await Promise.all([
    writer.reportAndClaimNext({ id: held[0]!.activation.id, status: 'complete' }, { application: 'app' }),
    writer.reportAndClaimNext({ id: held[1]!.activation.id, status: 'complete' }, { application: 'other' }),
    writer.reportAndClaimNext({ id: held[2]!.activation.id, status: 'complete' }, { application: 'app' })
  ])
  t.equal(x.task?.activation.id, 'a4')
  t.equal(y.task?.activation.id, 'b1', 'the other application got its own task')
  t.equal(z.task, undefined, 'no pending task of app was left for the second rider')
  t.same(claimsApart, ['other:1'])
})

eachBackend(t, 'a report refused because the queue is full leaves no rider behind', async (t, backend) => {
  const { store, writer } = await writerOn(t, backend, { TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '200', TASKBROKER_STATUS_MAX_QUEUED: '1' })
  await store.produce([act('h1'), act('h2'), act('p1'), act('p2')], new Date())
  await store.claim({}, 2)
  const first = writer.reportAndClaimNext({ id: 'h1', status: 'complete' }, {})
  await t.rejects(writer.reportAndClaimNext({ id: 'h2', status: 'complete' }, {}), { code: 'TASKBROKER_STATUS_QUEUE_FULL' })
  t.equal((await first).task?.activation.id, 'p1')
  t.equal((await store.getById('p2'))?.status, 'pending', 'nothing was claimed for the refused request')
  t.equal((await store.getById('h2'))?.status, 'processing', 'and its report was not written')
})

eachBackend(t, 'with batching off a fetch_next is a claim after the report', async (t, backend) => {
  const { store, writer, claimsApart } = await writerOn(t, backend, { TASKBROKER_STATUS_BATCHING: 'false' })
  await store.produce([act('h1'), act('p1')], new Date())
  await store.claim({}, 1)
  const result = await writer.reportAndClaimNext({ id: 'h1', status: 'complete' }, {})
  t.same(result.outcome.applied, ['h1'])
  t.equal(result.task?.activation.id, 'p1')
  t.same(claimsApart, ['*:1'])
})

eachBackend(t, 'more riders than a batch holds (one task reported many times) all get an answer', async (t, backend) => {
  const { store, writer } = await writerOn(t, backend, { TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '20', TASKBROKER_STATUS_BATCH_SIZE: '2' })
  await store.produce([act('h1'), act('p1'), act('p2'), act('p3')], new Date())
  await store.claim({}, 1)
  // Five reports of one task merge into one queued write; five riders wait for it.
  const results = await Promise.all(Array.from({ length: 5 }, () => writer.reportAndClaimNext({ id: 'h1', status: 'complete' }, {})))
  const next = results.map(r => r.task?.activation.id).filter(id => id !== undefined)
  t.same(next.sort(), ['p1', 'p2', 'p3'], 'every pending task handed out once, the other riders got none')
  t.ok(results.every(r => r.outcome.applied.length === 1), 'the merged report applied for every caller')
})
