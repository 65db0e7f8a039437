/**
 * TaskStore contracts: produce, claims, worker reports (with and without the claim riding in the
 * same statement), reads and counts, on every backend.
 */
import { sql } from 'drizzle-orm'
import pino from 'pino'
import postgres from 'postgres'
import t from 'tap'
import { openDatabase } from '../../../src/db/database.js'
import { StoreUnavailableError } from '../../../src/domain/errors.js'
import { bucketOf } from '../../../src/domain/schedule.js'
import { createTaskStore, type TaskStore } from '../../../src/store/task-store.js'
import type { Activation } from '../../../src/domain/types.js'
import { toActivation } from '../../../src/domain/activation.js'
import { createTestDatabase } from '../../helpers/database.js'
import { contracts, stubDatabase } from './contract.js'

const GRACE = 3
const contract = contracts<TaskStore>(t, 'TaskStore', createTaskStore(stubDatabase, { processingDeadlineGraceSec: GRACE, maxDelaySec: 3600 }))
const now = () => new Date()

function activation (overrides: Partial<Parameters<typeof toActivation>[0]> = {}): Activation {
  return toActivation({ namespace: 'ns', taskname: 'tests.noop', ...overrides }, now())
}

async function storeFor (t: Parameters<typeof createTestDatabase>[0], backend: 'pglite' | 'postgres', completedRows: 'delete' | 'mark' = 'delete') {
  const { database, url } = await createTestDatabase(t, backend)
  const store = createTaskStore(database, { processingDeadlineGraceSec: GRACE, maxDelaySec: 3600, completedRows })
  return { store, database, url }
}

async function produce (store: TaskStore, ...tasks: Activation[]) {
  return store.produce(tasks, now())
}

contract('produce', 'produce stores new tasks and lists repeated ids as duplicates', async (t, backend) => {
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

contract('produce', 'produce derives status, deadlines and bucket from the activation', async (t, backend) => {
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

contract('produceMany', 'produceMany stores several calls in one statement, each answered as if alone', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  await produce(store, activation({ id: 'stored' }))
  const early = new Date(Date.now() - 60_000)
  const late = now()
  const delayed = (id: string, at: Date) => toActivation({ id, namespace: 'ns', taskname: 'x', delay: 30, received_at: early.toISOString() }, at)
  const [first, second, third] = await store.produceMany([
    { activations: [activation({ id: 'm1' }), activation({ id: 'stored' }), activation({ id: 'm1' })], now: late },
    // m1 was given by the call before: a duplicate here, as if the calls had run one after the other.
    { activations: [activation({ id: 'm1' }), activation({ id: 'm2' }), delayed('late-delay', late)], now: late, priorities: [0, 7, 0] },
    // Each call's own clock decides its delays: 30 s after a received_at 60 s before `late` is over.
    { activations: [delayed('early-delay', early)], now: early }
  ])
  t.same(first, { inserted: ['m1'], duplicates: ['m1', 'stored'], handedOff: new Map() })
  t.same(second, { inserted: ['m2', 'late-delay'], duplicates: ['m1'], handedOff: new Map() })
  t.same(third, { inserted: ['early-delay'], duplicates: [], handedOff: new Map() })
  t.equal((await store.getById('m2'))?.priority, 7, 'priorities are per call')
  t.equal((await store.getById('late-delay'))?.status, 'pending', 'its delay was over by its call\'s now')
  t.equal((await store.getById('early-delay'))?.status, 'delay', 'its delay was still running by its call\'s now')
  t.same((await store.claim({}, 10)).map(task => task.activation.id), ['m2', 'stored', 'm1', 'late-delay'], 'higher priority first, then rows in call order')
  t.same(await store.produceMany([]), [], 'no calls: no answers')
  t.same(await store.produceMany([{ activations: [], now: late }]), [{ inserted: [], duplicates: [], handedOff: new Map() }])
})

contract('produceMany', 'produceMany hands each call\'s offered tasks to the claims they were offered to', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  const [plain, offered] = await store.produceMany([
    { activations: [activation({ id: 'kept', application: 'a' })], now: now() },
    { activations: [activation({ id: 'given', application: 'b' }), activation({ id: 'unoffered', application: 'b' })], now: now(), handoff: [{ application: 'b' }, undefined] }
  ])
  t.same(plain?.handedOff, new Map(), 'a call with no offers hands nothing off')
  t.same([...offered!.handedOff.keys()], ['given'])
  t.equal(offered!.handedOff.get('given')?.status, 'processing')
  t.ok(offered!.handedOff.get('given')?.lease, 'a handed-off task has a lease, as a claim leaves it')
  t.same(offered!.inserted, ['given', 'unoffered'])
  t.same((await store.claim({}, 10)).map(task => task.activation.id), ['kept', 'unoffered'], 'the handed-off task is not claimable')
})

contract('claim', 'claim hands out the oldest pending tasks first, each once', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  for (const id of ['t1', 't2', 't3', 't4', 't5']) await produce(store, activation({ id }))
  const first = await store.claim({}, 2)
  t.same(first.map(task => task.activation.id), ['t1', 't2'])
  const rest = await store.claim({}, 10)
  t.same(rest.map(task => task.activation.id), ['t3', 't4', 't5'])
  t.same(await store.claim({}, 10), [], 'nothing left to claim')
  for (const task of [...first, ...rest]) t.equal(task.status, 'processing')
})

contract('claim', 'claim keeps FIFO order within one produce batch', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  const ids = Array.from({ length: 50 }, (_, i) => `batch-${String(i).padStart(2, '0')}`)
  await produce(store, ...ids.map(id => activation({ id })))
  const claimed = await store.claim({}, 50)
  t.same(claimed.map(c => c.activation.id), ids)
})

contract('claim', 'claim sets deadline = database now + duration + grace', async (t, backend) => {
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

contract('claim', 'claim filters by application, and by application and namespace', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  await produce(store,
    activation({ id: 'a-x', application: 'a', namespace: 'x' }),
    activation({ id: 'a-y', application: 'a', namespace: 'y' }),
    activation({ id: 'b-x', application: 'b', namespace: 'x' }))
  t.same((await store.claim({ application: 'a', namespace: 'y' }, 10)).map(c => c.activation.id), ['a-y'])
  t.same((await store.claim({ application: 'b' }, 10)).map(c => c.activation.id), ['b-x'])
  t.same((await store.claim({}, 10)).map(c => c.activation.id), ['a-x'])
})

contract('claim', 'claim skips delayed and expired tasks', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  await produce(store,
    activation({ id: 'later', delay: 60 }),
    activation({ id: 'expired', expires: 1, received_at: new Date(Date.now() - 10_000).toISOString() }),
    activation({ id: 'ready' }))
  t.same((await store.claim({}, 10)).map(c => c.activation.id), ['ready'])
})

contract('claim', 'concurrent claims never hand out the same task twice', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  await produce(store, ...Array.from({ length: 60 }, (_, i) => activation({ id: `c${i}` })))
  const results = await Promise.all(Array.from({ length: 30 }, () => store.claim({}, 3)))
  const ids = results.flat().map(c => c.activation.id)
  t.equal(ids.length, 60)
  t.equal(new Set(ids).size, 60)
})

contract('setStatusMany', 'setStatusMany writes mixed statuses in one statement', async (t, backend) => {
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

contract('setStatusMany', 'setStatusMany with nothing to write runs no statement', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  t.same([...await store.setStatusMany([])], [])
})

contract('setStatusMany', 'in mark mode complete keeps the row with status complete', async (t, backend) => {
  const { store } = await storeFor(t, backend, 'mark')
  await produce(store, activation({ id: 'm' }))
  t.same([...await store.setStatusMany([{ id: 'm', status: 'complete' }])], ['m'])
  t.equal((await store.getById('m'))?.status, 'complete')
})

contract('stats', 'stats counts by status and queue and ages the oldest pending task', async (t, backend) => {
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

contract('produce', 'text that needs quoting survives the array parameters of produce and status', async (t, backend) => {
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

contract('setStatusManyAndClaim', 'setStatusManyAndClaim writes reports and claims the next tasks in one statement', async (t, backend) => {
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

contract('setStatusManyAndClaim', 'setStatusManyAndClaim never claims a task it reports on', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  // A pending task reported on (its deadline passed and upkeep reset it; the late worker reports).
  await produce(store, activation({ id: 'late' }), activation({ id: 'next' }))
  const result = await store.setStatusManyAndClaim([{ id: 'late', status: 'complete' }], {}, 2)
  t.same([...result.applied], ['late'])
  t.same(result.claimed.map(c => c.activation.id), ['next'], 'the reported task is written, not handed out again')
  t.equal(await store.getById('late'), null)
})

contract('claim', 'claim skips a pending task another session holds, and takes it once released', { only: 'postgres' }, async (t, backend) => {
  const { store, url } = await storeFor(t, backend)
  await produce(store, activation({ id: 'held' }), activation({ id: 'next1' }), activation({ id: 'next2' }))
  const other = postgres(url as string, { max: 1, onnotice: () => {} })
  t.teardown(() => other.end({ timeout: 5 }))
  const session = await other.reserve()
  await session`begin`
  await session`select id from inflight_tasks where id = 'held' for update`
  t.same((await store.claim({}, 3)).map(c => c.activation.id), ['next1', 'next2'], 'the held row is skipped, not waited for')
  await session`commit`
  session.release()
  t.same((await store.claim({}, 3)).map(c => c.activation.id), ['held'], 'released, it is claimed')
})

contract('claim', 'claim moves an undecodable task to the dead letters with the reason and serves the others', async (t, backend) => {
  const { store, database } = await storeFor(t, backend)
  await produce(store, activation({ id: 'bad', application: 'app' }), activation({ id: 'good', application: 'app' }))
  await database.rows(sql`update inflight_tasks set activation = jsonb_set(activation, '{retry_state}', '"often"') where id = 'bad'`)
  t.same((await store.claim({ application: 'app' }, 5)).map(c => c.activation.id), ['good'])
  const [dead] = await database.rows(sql`select id, reason, processing_attempts, application from deadletter_tasks`)
  t.match(dead, { id: 'bad', reason: 'undecodable_activation: activation/retry_state is not an object', processing_attempts: 0, application: 'app' })
  t.same((await database.rows(sql`select id, status from inflight_tasks`)), [{ id: 'good', status: 'processing' }], 'the undecodable task left inflight_tasks')
})

contract('setStatusMany', 'failure records reported_failure; every report clears the deadline; unknown ids are not applied', async (t, backend) => {
  const { store, database } = await storeFor(t, backend)
  await produce(store, activation({ id: 'f' }), activation({ id: 'r' }))
  await store.claim({}, 2)
  t.same([...await store.setStatusMany([{ id: 'f', status: 'failure' }, { id: 'r', status: 'retry' }, { id: 'nobody', status: 'failure' }])].sort(), ['f', 'r'])
  const rows = await database.rows(sql`select id, status, failure_reason, processing_deadline from inflight_tasks order by id`)
  t.same(rows, [
    { id: 'f', status: 'failure', failure_reason: 'reported_failure', processing_deadline: null },
    { id: 'r', status: 'retry', failure_reason: null, processing_deadline: null }
  ])
})

contract('setStatusManyAndClaim', 'the claim riding in a report sets the deadline as a claim does, and in mark mode keeps completed rows', async (t, backend) => {
  const { store, database } = await storeFor(t, backend, 'mark')
  await produce(store, activation({ id: 'done' }), activation({ id: 'next', processing_deadline_duration: 30 }))
  await store.claim({}, 1)
  const dbNow = async () => new Date((await database.rows(sql`select now() as now`))[0]!.now as string).getTime()
  const before = await dbNow()
  const result = await store.setStatusManyAndClaim([{ id: 'done', status: 'complete' }], {}, 1)
  const after = await dbNow()
  t.same([...result.applied], ['done'])
  t.equal((await store.getById('done'))?.status, 'complete', 'mark mode: the row stays, complete')
  const claimedAt = result.claimed[0]!.processingDeadline!.getTime() - (30 + GRACE) * 1000
  t.ok(claimedAt >= before && claimedAt <= after, 'deadline = statement time + duration + grace')
  t.same(await store.setStatusManyAndClaim([], {}, 0), { applied: new Set(), stale: new Set(), cancelled: new Set(), claimed: [] }, 'nothing to write or claim')
})

contract('getById', 'getById returns the stored task with every field, or null', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  const a = activation({ id: 'one', expires: 60, delay: 30 })
  await produce(store, a)
  const task = await store.getById('one')
  t.same(task?.activation, a, 'the activation as produced')
  t.equal(task?.status, 'delay')
  t.equal(task?.processingAttempts, 0)
  t.equal(task?.processingDeadline, null)
  t.equal(task?.claimExpiresAt, null)
  t.ok(task?.addedAt instanceof Date && task.delayUntil instanceof Date && task.expiresAt instanceof Date, 'timestamps are Dates')
  t.equal(await store.getById('none'), null)
})

contract('countLive', 'countLive counts pending, delay, processing and claimed tasks only', async (t, backend) => {
  const { store, database } = await storeFor(t, backend)
  t.same(await store.countLive(), { pending: 0, delay: 0, processing: 0, claimed: 0 })
  await produce(store, ...['p1', 'p2', 'run', 'retry', 'failed', 'done', 'leased'].map(id => activation({ id })), activation({ id: 'later', delay: 60 }))
  await database.rows(sql`update inflight_tasks set status = 'processing' where id = 'run'`)
  await database.rows(sql`update inflight_tasks set status = 'retry' where id = 'retry'`)
  await database.rows(sql`update inflight_tasks set status = 'failure' where id = 'failed'`)
  await database.rows(sql`update inflight_tasks set status = 'complete' where id = 'done'`)
  await database.rows(sql`update inflight_tasks set status = 'claimed' where id = 'leased'`)
  t.same(await store.countLive(), { pending: 2, delay: 1, processing: 1, claimed: 1 })
})

contract('ping', 'ping answers on a reachable store', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  await t.resolves(store.ping())
})

contract('writeReports', 'a report carrying a lease applies only under that lease; others are stale and change nothing', async (t, backend) => {
  const { store } = await storeFor(t, backend)
  await produce(store, ...['fenced', 'old', 'open', 'gone'].map(id => activation({ id })))
  const claimed = new Map((await store.claim({}, 10)).map(task => [task.activation.id, task]))
  const leaseOf = (id: string) => claimed.get(id)?.lease ?? undefined
  t.equal(claimed.size, 4)
  t.match(leaseOf('fenced'), /^[0-9a-f-]{36}$/, 'a claim hands out a uuid lease')
  t.equal(new Set([...claimed.values()].map(task => task.lease)).size, 4, 'one lease per task')
  const written = await store.writeReports([
    { id: 'fenced', status: 'complete', lease: leaseOf('fenced') },
    { id: 'old', status: 'failure', lease: '00000000-0000-4000-8000-000000000000' },
    { id: 'open', status: 'retry' },
    { id: 'gone', status: 'complete', lease: leaseOf('gone') },
    { id: 'missing', status: 'complete', lease: leaseOf('gone') }
  ])
  t.same([...written.applied].sort(), ['fenced', 'gone', 'open'])
  t.same([...written.stale], ['old'], 'a lease that is not the task\'s')
  t.same([...written.cancelled], [])
  t.equal(await store.getById('fenced'), null)
  t.match(await store.getById('old'), { status: 'processing', lease: leaseOf('old') }, 'a stale report changes nothing')
  t.match(await store.getById('open'), { status: 'retry', lease: null }, 'without a lease: applied as before; the lease is cleared')
  const again = await store.writeReports([{ id: 'open', status: 'failure', lease: leaseOf('open') }])
  t.same([...again.stale], ['open'], 'a reported task has no lease any more: a late report with the old one is stale')
})

contract('writeReports', 'a report ends a task whose cancel was requested, whatever it says; stale reports ride beside a claim', async (t, backend) => {
  for (const completedRows of ['delete', 'mark'] as const) {
    const { store, database } = await storeFor(t, backend, completedRows)
    await produce(store, ...['c-retry', 'c-fail', 'plain'].map(id => activation({ id, application: 'cancel' })), activation({ id: 'next', application: 'next' }))
    const claimed = await store.claim({ application: 'cancel' }, 10)
    t.equal(claimed.length, 3)
    await database.rows(sql`update inflight_tasks set cancel_requested = true where id in ('c-retry', 'c-fail')`)
    const written = await store.setStatusManyAndClaim([
      { id: 'c-retry', status: 'retry' },
      { id: 'c-fail', status: 'failure' },
      { id: 'plain', status: 'retry', lease: '00000000-0000-4000-8000-000000000000' }
    ], { application: 'next' }, 1)
    t.same([...written.cancelled].sort(), ['c-fail', 'c-retry'], `${completedRows}: cancelled`)
    t.same([...written.applied].sort(), ['c-fail', 'c-retry'], 'cancelled reports are applied')
    t.same([...written.stale], ['plain'])
    t.same(written.claimed.map(task => task.activation.id), ['next'], 'the riding claim is served')
    t.match(written.claimed[0], { status: 'processing', lease: /^[0-9a-f-]{36}$/ })
    t.equal((await store.getById('c-retry'))?.status, 'complete', 'ended, not retried: complete, for upkeep to remove')
    t.equal((await store.getById('c-fail'))?.status, 'complete', 'ended, not failed')
    t.equal((await store.getById('plain'))?.status, 'processing')
  }
})

contract.everyMethodCovered()
