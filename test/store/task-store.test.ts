import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { openDatabase } from '../../src/db/database.js'
import { StoreUnavailableError } from '../../src/domain/errors.js'
import { bucketOf } from '../../src/domain/schedule.js'
import { createTaskStore, type TaskStore } from '../../src/store/task-store.js'
import type { Activation } from '../../src/domain/types.js'
import { toActivation } from '../../src/domain/activation.js'
import { createTestDatabase, eachBackend } from '../helpers/database.js'

const GRACE = 3
const now = () => new Date()

function activation (overrides: Partial<Parameters<typeof toActivation>[0]> = {}): Activation {
  return toActivation({ namespace: 'ns', taskname: 'tests.noop', ...overrides }, now())
}

async function storeFor (t: Parameters<typeof createTestDatabase>[0], backend: 'pglite' | 'postgres', completedRows: 'delete' | 'mark' = 'delete') {
  const { database } = await createTestDatabase(t, backend)
  const store = createTaskStore(database, { processingDeadlineGraceSec: GRACE, maxDelaySec: 3600, completedRows })
  return { store, database }
}

async function produce (store: TaskStore, ...tasks: Activation[]) {
  return store.produce(tasks, now())
}

eachBackend(t, 'produce stores new tasks and lists repeated ids as duplicates', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  const a = activation({ id: 'a' })
  const first = await produce(store, a, activation({ id: 'b' }), activation({ id: 'a', taskname: 'other' }))
  t.same(first.inserted, ['a', 'b'])
  t.same(first.duplicates, ['a'])
  const again = await produce(store, activation({ id: 'a', taskname: 'changed' }), activation({ id: 'c' }))
  t.same(again.inserted, ['c'])
  t.same(again.duplicates, ['a'])
  t.equal((await store.getById('a'))?.activation.taskname, 'tests.noop', 'a duplicate never overwrites the stored task')
})

eachBackend(t, 'produce derives status, deadlines and bucket from the activation', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  const receivedAt = new Date(Date.now() - 1000)
  await produce(store,
    activation({ id: 'delayed', delay: 100, received_at: receivedAt.toISOString() }),
    activation({ id: 'capped', delay: 999_999 }),
    activation({ id: 'past-delay', delay: 1, received_at: new Date(Date.now() - 60_000).toISOString() }),
    activation({ id: 'expiring', expires: 30, received_at: receivedAt.toISOString() }),
    activation({ id: '8a0bd2e2-5d39-4bb6-9e3c-2f4c3a7d91ff' })
  )
  const delayed = await store.getById('delayed')
  t.equal(delayed?.status, 'delay')
  t.equal(delayed?.delayUntil?.getTime(), receivedAt.getTime() + 100_000)
  const capped = await store.getById('capped')
  t.ok(capped?.delayUntil !== null && capped!.delayUntil!.getTime() <= Date.now() + 3600_000 + 1000, 'delay capped at the maximum')
  t.equal((await store.getById('past-delay'))?.status, 'pending', 'a delay already over is pending at once')
  t.equal((await store.getById('expiring'))?.expiresAt?.getTime(), receivedAt.getTime() + 30_000)
  t.equal(bucketOf('8a0bd2e2-5d39-4bb6-9e3c-2f4c3a7d91ff'), 0xff)
  t.equal(bucketOf('8a0bd2e25d394bb69e3c2f4c3a7d9110'), 0x10)
  t.equal(bucketOf('not-a-uuid'), 0)
})

eachBackend(t, 'claim hands out the oldest pending tasks first, each once', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  for (const id of ['t1', 't2', 't3', 't4', 't5']) await produce(store, activation({ id }))
  const first = await store.claim({}, 2)
  t.same(first.map(task => task.activation.id), ['t1', 't2'])
  const rest = await store.claim({}, 10)
  t.same(rest.map(task => task.activation.id), ['t3', 't4', 't5'])
  t.same(await store.claim({}, 10), [], 'nothing left to claim')
  for (const task of [...first, ...rest]) t.equal(task.status, 'processing')
})

eachBackend(t, 'claim keeps FIFO order within one produce batch', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  const ids = Array.from({ length: 50 }, (_, i) => `batch-${String(i).padStart(2, '0')}`)
  await produce(store, ...ids.map(id => activation({ id })))
  const claimed = await store.claim({}, 50)
  t.same(claimed.map(c => c.activation.id), ids)
})

eachBackend(t, 'claim sets deadline = database now + duration + grace', async (t, backend) => {
  const { store, database } = await storeFor(t, backend)
  await produce(store, activation({ id: 'd', processing_deadline_duration: 30 }))
  const dbNow = async () => new Date((await database.rows(sql`select now() as now`))[0]!.now as string).getTime()
  const before = await dbNow()
  const [task] = await store.claim({}, 1)
  const after = await dbNow()
  // The claim's now() lies between the two reads, however slow the machine.
  const claimedAt = task!.processingDeadline!.getTime() - (30 + GRACE) * 1000
  t.ok(claimedAt >= before && claimedAt <= after, `deadline ${task!.processingDeadline?.toISOString()} = claim time + duration + grace`)
})

eachBackend(t, 'claim filters by application, and by application and namespace', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  await produce(store,
    activation({ id: 'a-x', application: 'a', namespace: 'x' }),
    activation({ id: 'a-y', application: 'a', namespace: 'y' }),
    activation({ id: 'b-x', application: 'b', namespace: 'x' }))
  t.same((await store.claim({ application: 'a', namespace: 'y' }, 10)).map(c => c.activation.id), ['a-y'])
  t.same((await store.claim({ application: 'b' }, 10)).map(c => c.activation.id), ['b-x'])
  t.same((await store.claim({}, 10)).map(c => c.activation.id), ['a-x'])
})

eachBackend(t, 'claim skips delayed and expired tasks', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  await produce(store,
    activation({ id: 'later', delay: 60 }),
    activation({ id: 'expired', expires: 1, received_at: new Date(Date.now() - 10_000).toISOString() }),
    activation({ id: 'ready' }))
  t.same((await store.claim({}, 10)).map(c => c.activation.id), ['ready'])
})

eachBackend(t, 'concurrent claims never hand out the same task twice', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  await produce(store, ...Array.from({ length: 60 }, (_, i) => activation({ id: `c${i}` })))
  const results = await Promise.all(Array.from({ length: 30 }, () => store.claim({}, 3)))
  const ids = results.flat().map(c => c.activation.id)
  t.equal(ids.length, 60)
  t.equal(new Set(ids).size, 60)
})

eachBackend(t, 'setStatusMany writes mixed statuses in one statement', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  await produce(store, ...['done', 'failed', 'again', 'again2'].map(id => activation({ id })))
  await store.claim({}, 10)
  const applied = await store.setStatusMany([
    { id: 'done', status: 'complete' },
    { id: 'failed', status: 'failure' },
    { id: 'again', status: 'retry', maxAttempts: 4, delayOnRetry: 30 },
    { id: 'again2', status: 'retry' },
    { id: 'missing', status: 'complete' }
  ])
  t.same([...applied].sort(), ['again', 'again2', 'done', 'failed'])
  t.equal(await store.getById('done'), null, 'complete removes the task')
  const failed = await store.getById('failed')
  t.equal(failed?.status, 'failure')
  t.equal(failed?.processingDeadline, null, 'a concluded task has no deadline')
  const again = await store.getById('again')
  t.equal(again?.status, 'retry')
  t.equal(again?.activation.retry_state.max_attempts, 4)
  t.equal(again?.activation.retry_state.delay_on_retry, 30)
  t.equal(again?.activation.retry_state.on_attempts_exceeded, 'discard', 'other retry_state fields are kept')
  t.same((await store.getById('again2'))?.activation.retry_state, activation().retry_state, 'no retry fields, no change')
})

eachBackend(t, 'setStatusMany with nothing to write runs no statement', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  t.same([...await store.setStatusMany([])], [])
})

eachBackend(t, 'in mark mode complete keeps the row with status complete', async (t, backend) => {
  const { store } = await storeFor(t, backend, 'mark')
  await produce(store, activation({ id: 'm' }))
  t.same([...await store.setStatusMany([{ id: 'm', status: 'complete' }])], ['m'])
  t.equal((await store.getById('m'))?.status, 'complete')
})

eachBackend(t, 'stats counts by status and queue and ages the oldest pending task', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  await produce(store,
    activation({ id: 's1', application: 'app', received_at: new Date(Date.now() - 600_000).toISOString() }),
    activation({ id: 's2', application: 'app' }),
    activation({ id: 's3', application: 'other', delay: 100 }))
  await store.claim({ application: 'app' }, 1)
  const stats = await store.stats(now())
  t.equal(stats.byStatus.pending, 1)
  t.equal(stats.byStatus.processing, 1)
  t.equal(stats.byStatus.delay, 1)
  t.equal(stats.byStatus.complete, 0)
  t.same(stats.byQueue.find(q => q.application === 'other'), { application: 'other', namespace: 'ns', status: 'delay', count: 1 })
  t.ok(stats.oldestPendingAgeSec >= 0 && stats.oldestPendingAgeSec < 300, 'the 10 min old task was claimed; the pending one is new')
})

t.test('an unreachable PostgreSQL is reported as StoreUnavailableError, quickly', async (t) => {
  const database = await openDatabase({ url: 'postgres://postgres@127.0.0.1:1/none', dataDir: '', poolSize: 1, log: pino({ level: 'silent' }) })
  t.teardown(() => database.close())
  const store = createTaskStore(database, { processingDeadlineGraceSec: GRACE, maxDelaySec: 3600 })
  const started = Date.now()
  await t.rejects(store.ping(), StoreUnavailableError)
  await t.rejects(store.claim({}, 1), { code: 'TASKBROKER_STORE_UNAVAILABLE', statusCode: 503 })
  t.ok(Date.now() - started < 15_000, 'fails instead of hanging')
})

eachBackend(t, 'text that needs quoting survives the array parameters of produce and status', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  const ids = ['q"uote', 'back\\slash', '{braces,comma}', 'NULL', ' spaced ', 'ünïcødé-😀', "it's"]
  const tasks = ids.map(id => activation({ id, application: 'app "x"', parameters: { text: 'a\\"b{c}', nul: null } }))
  t.same((await produce(store, ...tasks)).inserted, ids, 'every id inserted as given, in order')
  for (const id of ids) {
    const stored = await store.getById(id)
    t.equal(stored?.activation.id, id)
    t.same(stored?.activation.parameters, { text: 'a\\"b{c}', nul: null }, `parameters of ${id} kept exactly`)
    t.equal(stored?.activation.application, 'app "x"')
  }
  const claimed = await store.claim({}, ids.length)
  t.same(claimed.map(c => c.activation.id), ids, 'claimed in produce order')
  const applied = await store.setStatusMany(ids.map(id => ({ id, status: 'retry' as const, maxAttempts: 5 })))
  t.same([...applied].sort(), [...ids].sort(), 'every quoted id matched by the status statement')
  t.equal((await store.getById('NULL'))?.activation.retry_state.max_attempts, 5, 'the id "NULL" is a string, not a null')
})

eachBackend(t, 'setStatusManyAndClaim writes reports and claims the next tasks in one statement', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  await produce(store, activation({ id: 'r1' }), activation({ id: 'r2' }))
  await produce(store, activation({ id: 'n1' }), activation({ id: 'n2', application: 'other' }), activation({ id: 'n3' }))
  t.same((await store.claim({}, 2)).map(c => c.activation.id), ['r1', 'r2'])
  const result = await store.setStatusManyAndClaim(
    [{ id: 'r1', status: 'complete' }, { id: 'r2', status: 'retry' }, { id: 'gone', status: 'complete' }], {}, 2)
  t.same([...result.applied].sort(), ['r1', 'r2'], 'unknown ids are not applied')
  t.same(result.claimed.map(c => c.activation.id), ['n1', 'n2'], 'the oldest pending tasks, in order')
  t.ok(result.claimed.every(c => c.status === 'processing' && c.processingDeadline !== null), 'claimed as a claim does')
  t.equal(await store.getById('r1'), null, 'complete deletes')
  t.equal((await store.getById('r2'))?.status, 'retry')

  const filtered = await store.setStatusManyAndClaim([{ id: 'n2', status: 'complete' }], { application: 'other' }, 5)
  t.same(filtered.claimed, [], 'the filter applies: no other pending task of that application')
  const byNamespace = await store.setStatusManyAndClaim([{ id: 'n1', status: 'complete' }], { application: '', namespace: 'ns' }, 5)
  t.same(byNamespace.claimed.map(c => c.activation.id), ['n3'])
})

eachBackend(t, 'setStatusManyAndClaim never claims a task it reports on', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  // A pending task reported on (its deadline passed and upkeep reset it; the late worker reports).
  await produce(store, activation({ id: 'late' }), activation({ id: 'next' }))
  const result = await store.setStatusManyAndClaim([{ id: 'late', status: 'complete' }], {}, 2)
  t.same([...result.applied], ['late'])
  t.same(result.claimed.map(c => c.activation.id), ['next'], 'the reported task is written, not handed out again')
  t.equal(await store.getById('late'), null)
})
