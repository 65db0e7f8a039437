/**
 * UpkeepStore contracts: the upkeep statements (src/store/upkeep-store.ts), one transition at a
 * time, on every backend.
 * State is built through the real task store and, where a path has no API yet (push claims,
 * attempts counted by earlier passes), by setting columns directly. Time is an injected `now`.
 */
import { sql, type SQL } from 'drizzle-orm'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import type { Database, Row } from '../../../src/db/database.js'
import { toDate } from '../../../src/store/rows.js'
import { createTaskStore, type TaskStore } from '../../../src/store/task-store.js'
import type { Activation } from '../../../src/domain/types.js'
import { createUpkeepStore, type Released, type UpkeepStore } from '../../../src/store/upkeep-store.js'
import { toActivation } from '../../../src/domain/activation.js'
import { createTestDatabase, type BackendName } from '../../helpers/database.js'
import { contracts, stubDatabase } from './contract.js'

const contract = contracts<UpkeepStore>(t, 'UpkeepStore', createUpkeepStore(stubDatabase))

const LIMIT = 100
/** maxProcessingAttempts */
const MAX = 5

interface Ctx {
  database: Database
  /** PostgreSQL only: the test database's URL, for a second session. */
  url: string | undefined
  store: TaskStore
  upkeep: UpkeepStore
  /** The test's clock: `at(0)` is when the test started, `at(120)` two minutes later. */
  at: (sec: number) => Date
  activation: (overrides?: Partial<Parameters<typeof toActivation>[0]>) => Activation
  produce: (...tasks: Activation[]) => Promise<void>
}

async function setup (t: Test, backend: BackendName): Promise<Ctx> {
  const { database, url } = await createTestDatabase(t, backend)
  const store = createTaskStore(database, { processingDeadlineGraceSec: 0, maxDelaySec: 3600 })
  const base = new Date()
  const at = (sec: number) => new Date(base.getTime() + sec * 1000)
  return {
    database,
    url,
    store,
    upkeep: createUpkeepStore(database),
    at,
    activation: (overrides = {}) => toActivation({ namespace: 'ns', taskname: 'tests.noop', ...overrides }, base),
    async produce (...tasks) {
      const { inserted } = await store.produce(tasks, base)
      if (inserted.length !== tasks.length) throw new Error(`produced ${inserted.length} of ${tasks.length}`)
    }
  }
}

async function rowOf (database: Database, id: string): Promise<Row | undefined> {
  return (await database.rows(sql`select * from inflight_tasks where id = ${id}`))[0]
}

async function deadletterOf (database: Database, id: string): Promise<Row | undefined> {
  return (await database.rows(sql`select * from deadletter_tasks where id = ${id}`))[0]
}

async function update (database: Database, id: string, set: SQL) {
  await database.rows(sql`update inflight_tasks set ${set} where id = ${id}`)
}

async function tableCounts (database: Database) {
  const [row] = await database.rows(sql`select
    (select count(*) from inflight_tasks)::int as inflight,
    (select count(*) from deadletter_tasks)::int as deadletter`)
  return { inflight: Number(row?.inflight), deadletter: Number(row?.deadletter) }
}

const iso = (date: Date) => date.toISOString()
const time = (value: unknown) => toDate(value)?.getTime()
const sorted = (released: Released) =>
  [...released].sort((a, b) => `${a.application}/${a.namespace}`.localeCompare(`${b.application}/${b.namespace}`))

// ---------------------------------------------------------------------------------------------
// processing deadline

contract('resetMissedDeadlines', 'a passed processing deadline puts the task back to pending with one more attempt', async (t, backend) => {
  const { database, store, upkeep, at, activation, produce } = await setup(t, backend)
  await produce(
    activation({ id: 'a1', application: 'a', namespace: 'x' }),
    activation({ id: 'a2', application: 'a', namespace: 'x' }),
    activation({ id: 'b1', application: 'b', namespace: 'y' }),
    activation({ id: 'late', application: 'a', namespace: 'x', processing_deadline_duration: 600 }),
    activation({ id: 'once', application: 'a', namespace: 'x', retry_state: { at_most_once: true } }))
  t.equal((await store.claim({}, 10)).length, 5)
  await update(database, 'a2', sql`processing_attempts = 2`)

  t.strictSame(await upkeep.resetMissedDeadlines(at(10), MAX, LIMIT), { reset: 0, failed: 0, released: [] },
    'deadlines (about now + 60 s) are still ahead at now + 10 s')
  t.equal((await store.getById('a1'))?.status, 'processing')

  const result = await upkeep.resetMissedDeadlines(at(120), MAX, LIMIT)
  t.equal(result.reset, 3)
  t.equal(result.failed, 1)
  t.strictSame(sorted(result.released), [
    { application: 'a', namespace: 'x', count: 2 },
    { application: 'b', namespace: 'y', count: 1 }
  ], 'released names each queue with its count; the at_most_once failure is not released')

  for (const [id, attempts] of [['a1', 1], ['a2', 3], ['b1', 1]] as const) {
    const task = await store.getById(id)
    t.equal(task?.status, 'pending', `${id} pending`)
    t.equal(task?.processingAttempts, attempts, `${id} processing_attempts + 1`)
    t.equal(task?.processingDeadline, null, `${id} has no deadline`)
  }
  const late = await store.getById('late')
  t.equal(late?.status, 'processing', 'a deadline still in the future is untouched')
  t.equal(late?.processingAttempts, 0)
  t.not(late?.processingDeadline, null)

  t.strictSame(await upkeep.resetMissedDeadlines(at(120), MAX, LIMIT), { reset: 0, failed: 0, released: [] }, 'nothing left to reset')
  t.same((await store.claim({}, 10)).map(task => task.activation.id).sort(), ['a1', 'a2', 'b1'], 'the reset tasks are claimable again')
})

contract('resetMissedDeadlines', 'an at_most_once task past its deadline fails and is never handed out again', async (t, backend) => {
  const { database, store, upkeep, at, activation, produce } = await setup(t, backend)
  await produce(
    activation({ id: 'once-discard', retry_state: { at_most_once: true } }),
    activation({ id: 'once-dead', retry_state: { at_most_once: true, on_attempts_exceeded: 'deadletter' } }))
  await store.claim({}, 10)
  await update(database, 'once-dead', sql`processing_attempts = 1`)

  t.strictSame(await upkeep.resetMissedDeadlines(at(120), MAX, LIMIT), { reset: 0, failed: 2, released: [] })
  for (const [id, attempts] of [['once-discard', 0], ['once-dead', 1]] as const) {
    const row = await rowOf(database, id)
    t.equal(row?.status, 'failure', `${id} failed`)
    t.equal(row?.failure_reason, 'deadline_missed_at_most_once')
    t.equal(row?.processing_attempts, attempts, `${id} attempts unchanged`)
    t.equal(row?.processing_deadline, null)
  }
  t.same(await store.claim({}, 10), [], 'a failed task is not claimable')

  t.strictSame(await upkeep.settleFailures(LIMIT), { discarded: 1, deadlettered: 1 })
  t.equal(await rowOf(database, 'once-discard'), undefined, 'discarded')
  t.equal(await deadletterOf(database, 'once-discard'), undefined, 'a discarded task leaves no dead letter')
  t.equal(await rowOf(database, 'once-dead'), undefined, 'dead-lettered: gone from inflight_tasks')
  const dead = await deadletterOf(database, 'once-dead')
  t.equal(dead?.reason, 'deadline_missed_at_most_once')
  t.equal(dead?.processing_attempts, 1)
  t.same(await store.claim({}, 10), [])
  t.strictSame(await upkeep.resetMissedDeadlines(at(600), MAX, LIMIT), { reset: 0, failed: 0, released: [] })
})

// ---------------------------------------------------------------------------------------------
// push claims

contract('expireClaims', 'a lapsed claim lease puts the task back to pending without counting an attempt', async (t, backend) => {
  const { database, store, upkeep, at, activation, produce } = await setup(t, backend)
  await produce(
    activation({ id: 'c1', application: 'a', namespace: 'x' }),
    activation({ id: 'c2', application: 'a', namespace: 'x', retry_state: { at_most_once: true } }),
    activation({ id: 'c3', application: 'b', namespace: 'y' }),
    activation({ id: 'fresh', application: 'a', namespace: 'x' }),
    activation({ id: 'plain', application: 'a', namespace: 'x' }))
  for (const id of ['c1', 'c2', 'c3']) {
    await update(database, id, sql`status = 'claimed', processing_attempts = 2, claim_expires_at = ${iso(at(30))}::timestamptz`)
  }
  await update(database, 'fresh', sql`status = 'claimed', processing_attempts = 2, claim_expires_at = ${iso(at(300))}::timestamptz`)

  t.strictSame(await upkeep.expireClaims(at(30), LIMIT), { expired: 0, released: [] }, 'a lease ending exactly now has not passed')
  const result = await upkeep.expireClaims(at(31), LIMIT)
  t.equal(result.expired, 3)
  t.strictSame(sorted(result.released), [
    { application: 'a', namespace: 'x', count: 2 },
    { application: 'b', namespace: 'y', count: 1 }
  ])
  for (const id of ['c1', 'c2', 'c3']) {
    const task = await store.getById(id)
    t.equal(task?.status, 'pending', `${id} pending`)
    t.equal(task?.claimExpiresAt, null, `${id} lease cleared`)
    t.equal(task?.processingAttempts, 2, `${id} processing_attempts not incremented`)
  }
  const fresh = await store.getById('fresh')
  t.equal(fresh?.status, 'claimed', 'a lease in the future is untouched')
  t.equal(time(fresh?.claimExpiresAt), at(300).getTime())
  t.equal((await store.getById('plain'))?.status, 'pending')
  t.same((await store.claim({}, 10)).map(task => task.activation.id).sort(), ['c1', 'c2', 'c3', 'plain'],
    'expired claims (at_most_once included) are claimable again')
})

// ---------------------------------------------------------------------------------------------
// processing attempts

contract('failExhaustedProcessingAttempts', 'a pending task with processing_attempts >= the maximum fails', async (t, backend) => {
  const { database, store, upkeep, activation, produce } = await setup(t, backend)
  await produce(
    activation({ id: 'four' }), activation({ id: 'five' }), activation({ id: 'six', retry_state: { on_attempts_exceeded: 'deadletter' } }),
    activation({ id: 'busy' }))
  await update(database, 'four', sql`processing_attempts = 4`)
  await update(database, 'five', sql`processing_attempts = 5`)
  await update(database, 'six', sql`processing_attempts = 6`)
  await update(database, 'busy', sql`status = 'processing', processing_attempts = 7`)

  t.strictSame(await upkeep.failExhaustedProcessingAttempts(5, LIMIT), { failed: 2 })
  for (const id of ['five', 'six']) {
    const row = await rowOf(database, id)
    t.equal(row?.status, 'failure', `${id} failed`)
    t.equal(row?.failure_reason, 'processing_attempts_exceeded')
  }
  const four = await rowOf(database, 'four')
  t.equal(four?.status, 'pending', '4 attempts: untouched')
  t.equal(four?.failure_reason, null)
  t.equal((await rowOf(database, 'busy'))?.status, 'processing', 'only pending tasks are failed')
  t.same((await store.claim({}, 10)).map(task => task.activation.id), ['four'])

  t.strictSame(await upkeep.settleFailures(LIMIT), { discarded: 1, deadlettered: 1 })
  t.equal((await deadletterOf(database, 'six'))?.processing_attempts, 6)
  t.equal((await deadletterOf(database, 'six'))?.reason, 'processing_attempts_exceeded')
})

contract('resetMissedDeadlines', 'a task missing its deadline maxProcessingAttempts times fails at the last miss', async (t, backend) => {
  const { database, store, upkeep, at, activation, produce } = await setup(t, backend)
  await produce(activation({ id: 'slow', retry_state: { on_attempts_exceeded: 'deadletter' } }))
  for (let attempt = 1; attempt < MAX; attempt++) {
    t.equal((await store.claim({}, 1)).length, 1, `claim ${attempt}`)
    t.strictSame(await upkeep.resetMissedDeadlines(at(120), MAX, LIMIT),
      { reset: 1, failed: 0, released: [{ application: '', namespace: 'ns', count: 1 }] }, `miss ${attempt}: reset`)
    const task = await store.getById('slow')
    t.equal(task?.status, 'pending')
    t.equal(task?.processingAttempts, attempt)
  }
  t.equal((await store.claim({}, 1)).length, 1, `claim ${MAX}`)
  t.strictSame(await upkeep.resetMissedDeadlines(at(120), MAX, LIMIT), { reset: 0, failed: 1, released: [] },
    'the miss that reaches the maximum fails the task in the same statement (it is never pending again)')
  const row = await rowOf(database, 'slow')
  t.equal(row?.status, 'failure')
  t.equal(row?.failure_reason, 'processing_attempts_exceeded')
  t.equal(row?.processing_attempts, MAX, 'the last miss is counted')
  t.equal(row?.processing_deadline, null)
  t.same(await store.claim({}, 1), [], 'the failed task is not handed out')
  t.strictSame(await upkeep.failExhaustedProcessingAttempts(MAX, LIMIT), { failed: 0 }, 'already failed: nothing for the attempts step')
  t.strictSame(await upkeep.settleFailures(LIMIT), { discarded: 0, deadlettered: 1 })
  const dead = await deadletterOf(database, 'slow')
  t.equal(dead?.reason, 'processing_attempts_exceeded')
  t.equal(dead?.processing_attempts, MAX)
})

contract('resetMissedDeadlines', 'the deadline step fails exactly at maxAttempts; at_most_once keeps its own reason', async (t, backend) => {
  const { database, store, upkeep, at, activation, produce } = await setup(t, backend)
  await produce(
    activation({ id: 'three' }), activation({ id: 'four' }), activation({ id: 'nine' }),
    activation({ id: 'once-four', retry_state: { at_most_once: true } }))
  await store.claim({}, 10)
  await update(database, 'three', sql`processing_attempts = 3`)
  await update(database, 'four', sql`processing_attempts = 4`)
  await update(database, 'nine', sql`processing_attempts = 9`)
  await update(database, 'once-four', sql`processing_attempts = 4`)

  t.strictSame(await upkeep.resetMissedDeadlines(at(120), MAX, LIMIT),
    { reset: 1, failed: 3, released: [{ application: '', namespace: 'ns', count: 1 }] })
  const three = await rowOf(database, 'three')
  t.equal(three?.status, 'pending', '3 + 1 < 5: pending')
  t.equal(three?.processing_attempts, 4)
  t.equal(three?.failure_reason, null)
  for (const [id, attempts] of [['four', 5], ['nine', 10]] as const) {
    const row = await rowOf(database, id)
    t.equal(row?.status, 'failure', `${id}: failure`)
    t.equal(row?.failure_reason, 'processing_attempts_exceeded')
    t.equal(row?.processing_attempts, attempts)
  }
  const once = await rowOf(database, 'once-four')
  t.equal(once?.status, 'failure')
  t.equal(once?.failure_reason, 'deadline_missed_at_most_once', 'at_most_once wins over the attempt limit')
  t.equal(once?.processing_attempts, 4, 'an at_most_once miss is not counted')
})

// ---------------------------------------------------------------------------------------------
// expiry

contract('removeExpired', 'a pending task past expires_at is deleted; delayed and unexpired ones stay', async (t, backend) => {
  const { database, store, upkeep, at, activation, produce } = await setup(t, backend)
  await produce(
    activation({ id: 'short', expires: 10 }),
    activation({ id: 'short2', expires: 20 }),
    activation({ id: 'long', expires: 600 }),
    activation({ id: 'never' }),
    activation({ id: 'delayed', expires: 10, delay: 120 }),
    activation({ id: 'running', expires: 10 }))
  t.equal((await store.getById('delayed'))?.status, 'delay')
  await update(database, 'running', sql`status = 'processing'`)

  t.strictSame(await upkeep.removeExpired(at(10), LIMIT), { removed: 0 }, 'expires_at equal to now is not past')
  t.strictSame(await upkeep.removeExpired(at(11), LIMIT), { removed: 1 })
  t.equal(await rowOf(database, 'short'), undefined, 'the expired task is gone')
  t.not(await rowOf(database, 'short2'), undefined)
  t.strictSame(await upkeep.removeExpired(at(30), LIMIT), { removed: 1 })
  t.equal(await rowOf(database, 'short2'), undefined)
  t.equal((await rowOf(database, 'long'))?.status, 'pending', 'expires in the future: stays')
  t.equal((await rowOf(database, 'never'))?.status, 'pending', 'no expiry: stays')
  t.equal((await rowOf(database, 'delayed'))?.status, 'delay', 'a delay task past its expiry is not removed by this step')
  t.equal((await rowOf(database, 'running'))?.status, 'processing', 'a task being processed is not removed')
  t.equal(await deadletterOf(database, 'short'), undefined, 'expired tasks are not dead-lettered')
})

// ---------------------------------------------------------------------------------------------
// delay

contract('releaseDelayed', 'a delay whose delay_until has come becomes pending and claimable', async (t, backend) => {
  const { store, upkeep, at, activation, produce } = await setup(t, backend)
  await produce(
    activation({ id: 'd30', application: 'a', namespace: 'x', delay: 30 }),
    activation({ id: 'd30b', application: 'b', namespace: 'y', delay: 30 }),
    activation({ id: 'd90', application: 'a', namespace: 'x', delay: 90 }))
  t.same(await store.claim({}, 10), [], 'nothing claimable while delayed')

  t.strictSame(await upkeep.releaseDelayed(at(29), LIMIT), { released: [], count: 0 })
  const result = await upkeep.releaseDelayed(at(30), LIMIT)
  t.equal(result.count, 2, 'delay_until <= now is due')
  t.strictSame(sorted(result.released), [
    { application: 'a', namespace: 'x', count: 1 },
    { application: 'b', namespace: 'y', count: 1 }
  ])
  t.equal((await store.getById('d30'))?.status, 'pending')
  t.equal((await store.getById('d90'))?.status, 'delay', 'a future delay stays')
  t.same((await store.claim({}, 10)).map(task => task.activation.id).sort(), ['d30', 'd30b'], 'released tasks are claimable')
  t.equal((await upkeep.releaseDelayed(at(91), LIMIT)).count, 1)
  t.same((await store.claim({}, 10)).map(task => task.activation.id), ['d90'])
})

// ---------------------------------------------------------------------------------------------
// retry

contract('requeueRetries', 'a retry goes back to pending at the back of the queue, as the same task', async (t, backend) => {
  const { database, store, upkeep, at, activation, produce } = await setup(t, backend)
  const retry = { max_attempts: 3 }
  await produce(activation({ id: 'A', retry_state: retry }), activation({ id: 'B', retry_state: retry }), activation({ id: 'C', retry_state: retry }))
  t.same((await store.claim({}, 1)).map(task => task.activation.id), ['A'])
  await update(database, 'A', sql`processing_attempts = 2`)
  const before = await rowOf(database, 'A')
  t.same([...await store.setStatusMany([{ id: 'A', status: 'retry' }])], ['A'])

  const result = await upkeep.requeueRetries(at(5), 3600, LIMIT)
  t.strictSame(result, { requeued: 1, delayed: 0, failed: 0, released: [{ application: '', namespace: 'ns', count: 1 }] })
  const row = await rowOf(database, 'A')
  const task = await store.getById('A')
  t.equal(task?.status, 'pending')
  t.equal(task?.activation.id, 'A', 'same id')
  t.equal(task?.activation.retry_state.attempts, 1, 'retry_state.attempts + 1')
  t.equal(task?.activation.retry_state.max_attempts, 3)
  t.equal(task?.activation.received_at, at(5).toISOString(), 'received_at in the activation is now')
  t.equal(time(row?.received_at), at(5).getTime(), 'the received_at column is now')
  t.equal(task?.processingAttempts, 0, 'processing_attempts reset')
  t.equal(task?.processingDeadline, null)
  t.equal(task?.delayUntil, null)
  t.equal(task?.activation.delay, undefined)
  t.ok(task!.addedAt.getTime() > toDate(before?.added_at)!.getTime(), 'added_at moved')
  t.equal(row?.failure_reason, null)

  t.same((await store.claim({}, 10)).map(task => task.activation.id), ['B', 'C', 'A'], 'the retried task is now last in line')
})

contract('requeueRetries', 'a retry with delay_on_retry waits in delay, and expires restarts from now', async (t, backend) => {
  const { database, store, upkeep, at, activation, produce } = await setup(t, backend)
  await produce(
    activation({ id: 'delayed', retry_state: { max_attempts: 3, delay_on_retry: 30 } }),
    activation({ id: 'reported', retry_state: { max_attempts: 3 } }),
    activation({ id: 'expiring', expires: 300, retry_state: { max_attempts: 3 } }),
    activation({ id: 'was-delayed', delay: 10, retry_state: { max_attempts: 3 } }))
  t.equal((await upkeep.releaseDelayed(at(10), LIMIT)).count, 1)
  t.equal((await store.claim({}, 10)).length, 4)
  t.equal((await store.getById('expiring'))?.expiresAt?.getTime(), at(300).getTime())
  await store.setStatusMany([
    { id: 'delayed', status: 'retry' },
    { id: 'reported', status: 'retry', delayOnRetry: 45 },
    { id: 'expiring', status: 'retry' },
    { id: 'was-delayed', status: 'retry' }
  ])

  const result = await upkeep.requeueRetries(at(100), 3600, LIMIT)
  t.equal(result.delayed, 2)
  t.equal(result.requeued, 2)
  t.equal(result.failed, 0)
  t.strictSame(result.released, [{ application: '', namespace: 'ns', count: 2 }], 'delayed retries are not released')

  const delayed = await store.getById('delayed')
  t.equal(delayed?.status, 'delay')
  t.equal(delayed?.delayUntil?.getTime(), at(130).getTime(), 'delay_until = now + delay_on_retry')
  t.equal(delayed?.activation.delay, 30, 'activation.delay = delay_on_retry')
  t.equal(delayed?.activation.received_at, at(100).toISOString())
  t.equal(delayed?.activation.retry_state.attempts, 1)
  const reported = await store.getById('reported')
  t.equal(reported?.status, 'delay', 'delay_on_retry from the report')
  t.equal(reported?.delayUntil?.getTime(), at(145).getTime())
  t.equal(reported?.activation.delay, 45)

  const expiring = await store.getById('expiring')
  t.equal(expiring?.status, 'pending')
  t.equal(expiring?.expiresAt?.getTime(), at(400).getTime(), 'expires_at restarts from now')
  t.equal(expiring?.activation.expires, 300)
  const wasDelayed = await store.getById('was-delayed')
  t.equal(wasDelayed?.status, 'pending')
  t.equal(wasDelayed?.activation.delay, undefined, 'the produce-time delay is not applied again')
  t.equal(wasDelayed?.delayUntil, null)
  t.equal(wasDelayed?.expiresAt, null, 'no expires: no expires_at')

  t.same((await store.claim({}, 10)).map(task => task.activation.id), ['expiring', 'was-delayed'])
  t.equal((await upkeep.releaseDelayed(at(129), LIMIT)).count, 0)
  t.equal((await upkeep.releaseDelayed(at(130), LIMIT)).count, 1)
  t.same((await store.claim({}, 10)).map(task => task.activation.id), ['delayed'], 'after the retry delay the task is claimable')
  t.equal(await rowOf(database, 'reported').then(row => row?.status), 'delay')
})

contract('requeueRetries', 'a retry that would reach max_attempts fails with retries_exhausted', async (t, backend) => {
  const { database, store, upkeep, at, activation, produce } = await setup(t, backend)
  await produce(activation({ id: 'default' }), activation({ id: 'three', retry_state: { max_attempts: 3 } }))

  // default max_attempts 1: the first retry fails
  await store.claim({}, 10)
  await store.setStatusMany([{ id: 'default', status: 'retry' }, { id: 'three', status: 'retry' }])
  t.strictSame(await upkeep.requeueRetries(at(1), 3600, LIMIT), { requeued: 1, delayed: 0, failed: 1, released: [{ application: '', namespace: 'ns', count: 1 }] })
  const failed = await rowOf(database, 'default')
  t.equal(failed?.status, 'failure')
  t.equal(failed?.failure_reason, 'retries_exhausted')
  t.equal((failed?.activation as Activation).retry_state.attempts, 0, 'a failed retry keeps its activation')

  // max_attempts 3: a second retry is allowed, the third fails
  t.equal((await store.getById('three'))?.activation.retry_state.attempts, 1)
  t.equal((await store.claim({}, 10)).length, 1)
  await store.setStatusMany([{ id: 'three', status: 'retry' }])
  t.strictSame(await upkeep.requeueRetries(at(2), 3600, LIMIT), { requeued: 1, delayed: 0, failed: 0, released: [{ application: '', namespace: 'ns', count: 1 }] })
  t.equal((await store.getById('three'))?.activation.retry_state.attempts, 2)
  t.equal((await store.claim({}, 10)).length, 1)
  await store.setStatusMany([{ id: 'three', status: 'retry' }])
  t.strictSame(await upkeep.requeueRetries(at(3), 3600, LIMIT), { requeued: 0, delayed: 0, failed: 1, released: [] })
  const three = await rowOf(database, 'three')
  t.equal(three?.status, 'failure')
  t.equal(three?.failure_reason, 'retries_exhausted')
  t.same(await store.claim({}, 10), [])

  t.strictSame(await upkeep.settleFailures(LIMIT), { discarded: 2, deadlettered: 0 })
  t.strictSame(await tableCounts(database), { inflight: 0, deadletter: 0 })
})

contract('requeueRetries', 'a retry beyond max_attempts with deadletter ends in deadletter_tasks', async (t, backend) => {
  const { database, store, upkeep, at, activation, produce } = await setup(t, backend)
  await produce(activation({ id: 'r', retry_state: { max_attempts: 2, on_attempts_exceeded: 'deadletter' } }))
  for (const second of [1, 2]) {
    await store.claim({}, 1)
    await store.setStatusMany([{ id: 'r', status: 'retry' }])
    await upkeep.requeueRetries(at(second), 3600, LIMIT)
  }
  const failed = await store.getById('r')
  t.equal(failed?.status, 'failure')
  t.strictSame(await upkeep.settleFailures(LIMIT), { discarded: 0, deadlettered: 1 })
  t.equal(await rowOf(database, 'r'), undefined)
  const dead = await deadletterOf(database, 'r')
  t.equal(dead?.reason, 'retries_exhausted')
  t.same(dead?.activation, failed?.activation)
  t.equal((dead?.activation as Activation).retry_state.attempts, 1)
})

contract('requeueRetries', 'a retry report with max_attempts raises the limit before upkeep decides', async (t, backend) => {
  const { store, upkeep, at, activation, produce } = await setup(t, backend)
  await produce(activation({ id: 'raised' }))
  await store.claim({}, 1)
  await store.setStatusMany([{ id: 'raised', status: 'retry', maxAttempts: 2 }])
  t.equal((await upkeep.requeueRetries(at(1), 3600, LIMIT)).requeued, 1)
  const task = await store.getById('raised')
  t.equal(task?.status, 'pending')
  t.equal(task?.activation.retry_state.max_attempts, 2)
  t.equal(task?.activation.retry_state.attempts, 1)
})

// ---------------------------------------------------------------------------------------------
// failure

contract('settleFailures', 'failures are discarded or dead-lettered per on_attempts_exceeded, in one statement', async (t, backend) => {
  const { database, store, upkeep, activation, produce } = await setup(t, backend)
  await produce(
    activation({ id: 'x1' }),
    activation({ id: 'x2' }),
    activation({ id: 'x3', application: 'app', namespace: 'other', taskname: 'tests.dead', retry_state: { on_attempts_exceeded: 'deadletter' } }),
    activation({ id: 'x4', retry_state: { on_attempts_exceeded: 'deadletter' } }),
    activation({ id: 'alive' }))
  await store.claim({}, 4)
  await update(database, 'x3', sql`processing_attempts = 3`)
  await store.setStatusMany(['x1', 'x2', 'x3', 'x4'].map(id => ({ id, status: 'failure' as const })))
  await update(database, 'x4', sql`failure_reason = null`)
  const x3 = await rowOf(database, 'x3')
  t.equal(x3?.failure_reason, 'reported_failure')
  t.strictSame(await tableCounts(database), { inflight: 5, deadletter: 0 })

  t.strictSame(await upkeep.settleFailures(LIMIT), { discarded: 2, deadlettered: 2 })
  t.strictSame(await tableCounts(database), { inflight: 1, deadletter: 2 }, 'every failed task is in exactly one place')
  for (const id of ['x1', 'x2']) {
    t.equal(await rowOf(database, id), undefined, `${id} discarded`)
    t.equal(await deadletterOf(database, id), undefined, `${id} has no dead letter`)
  }
  t.equal(await rowOf(database, 'x3'), undefined)
  const dead = await deadletterOf(database, 'x3')
  t.same(dead?.activation, x3?.activation, 'the activation is kept')
  t.equal(dead?.reason, 'reported_failure')
  t.equal(dead?.processing_attempts, 3)
  t.equal(dead?.application, 'app')
  t.equal(dead?.namespace, 'other')
  t.equal(dead?.taskname, 'tests.dead')
  t.equal(time(dead?.received_at), time(x3?.received_at))
  t.ok(dead?.deadlettered_at !== null && dead?.deadlettered_at !== undefined)
  t.equal((await deadletterOf(database, 'x4'))?.reason, 'reported_failure', 'no failure_reason: reported_failure')
  t.equal((await rowOf(database, 'alive'))?.status, 'pending', 'other tasks are untouched')
  t.strictSame(await upkeep.settleFailures(LIMIT), { discarded: 0, deadlettered: 0 })
})

contract('settleFailures', 'dead-lettering an id that already has a dead letter replaces it', async (t, backend) => {
  const { database, store, upkeep, activation, produce } = await setup(t, backend)
  await database.rows(sql`insert into deadletter_tasks (id, activation, application, namespace, taskname, reason, processing_attempts, received_at)
    values ('again', '{"old": true}'::jsonb, '', 'ns', 'tests.noop', 'retries_exhausted', 9, now())`)
  await produce(activation({ id: 'again', retry_state: { on_attempts_exceeded: 'deadletter' } }))
  await store.setStatusMany([{ id: 'again', status: 'failure' }])
  t.strictSame(await upkeep.settleFailures(LIMIT), { discarded: 0, deadlettered: 1 })
  t.strictSame(await tableCounts(database), { inflight: 0, deadletter: 1 })
  const dead = await deadletterOf(database, 'again')
  t.equal(dead?.reason, 'reported_failure')
  t.equal(dead?.processing_attempts, 0)
  t.equal((dead?.activation as Activation).id, 'again')
})

// ---------------------------------------------------------------------------------------------
// completed, killswitch

contract('removeCompleted', 'completed rows are removed', async (t, backend) => {
  const { database, upkeep, activation, produce } = await setup(t, backend)
  await produce(activation({ id: 'done1' }), activation({ id: 'done2' }), activation({ id: 'open' }))
  await update(database, 'done1', sql`status = 'complete'`)
  await update(database, 'done2', sql`status = 'complete'`)
  t.strictSame(await upkeep.removeCompleted(LIMIT), { removed: 2 })
  t.equal(await rowOf(database, 'done1'), undefined)
  t.equal(await rowOf(database, 'done2'), undefined)
  t.equal((await rowOf(database, 'open'))?.status, 'pending')
  t.strictSame(await tableCounts(database), { inflight: 1, deadletter: 0 })
  t.strictSame(await upkeep.removeCompleted(LIMIT), { removed: 0 })
})

contract('removeKillswitched', 'killswitched tasknames are removed whatever their status', async (t, backend) => {
  const { database, store, upkeep, at, activation, produce } = await setup(t, backend)
  const kill = (id: string, extra: Partial<Parameters<typeof toActivation>[0]> = {}) =>
    activation({ id, taskname: 'tests.kill', retry_state: { max_attempts: 3, on_attempts_exceeded: 'deadletter' }, ...extra })
  await produce(kill('k-processing'))
  await store.claim({}, 1)
  await produce(
    kill('k-pending'), kill('k-delay', { delay: 60 }), kill('k-retry'), kill('k-other-app', { application: 'elsewhere' }),
    activation({ id: 'keep', taskname: 'tests.keep' }),
    activation({ id: 'keep-also', taskname: 'tests.kill.not' }))
  await update(database, 'k-retry', sql`status = 'retry'`)
  const statuses = await database.rows(sql`select status from inflight_tasks where taskname = 'tests.kill' order by status`)
  t.same(statuses.map(r => r.status), ['delay', 'pending', 'pending', 'processing', 'retry'])

  t.strictSame(await upkeep.removeKillswitched([], LIMIT), { removed: 0 }, 'an empty list removes nothing')
  t.strictSame(await tableCounts(database), { inflight: 7, deadletter: 0 })
  t.strictSame(await upkeep.removeKillswitched(['tests.kill', 'tests.absent'], LIMIT), { removed: 5 })
  t.same((await database.rows(sql`select id from inflight_tasks order by id`)).map(r => r.id), ['keep', 'keep-also'])
  t.strictSame(await tableCounts(database), { inflight: 2, deadletter: 0 }, 'killswitched tasks are not dead-lettered')
  t.strictSame(await upkeep.requeueRetries(at(1), 3600, LIMIT), { requeued: 0, delayed: 0, failed: 0, released: [] })
})

// ---------------------------------------------------------------------------------------------
// bounded

contract('settleFailures', 'every statement touches at most `limit` rows per call', async (t, backend) => {
  const { database, store, upkeep, at, activation, produce } = await setup(t, backend)
  const tasks = (prefix: string) =>
    Array.from({ length: 7 }, (_, i) => activation({ id: `${prefix}-${i}`, taskname: `tests.${prefix}` }))
  const setStatus = (prefix: string, set: SQL) => database.rows(sql`update inflight_tasks set ${set} where taskname = ${`tests.${prefix}`}`)

  const cases: Array<{ name: string, prefix: string, prepare: () => Promise<unknown>, run: () => Promise<number> }> = [
    {
      name: 'resetMissedDeadlines',
      prefix: 'deadline',
      prepare: () => setStatus('deadline', sql`status = 'processing', processing_deadline = ${iso(at(1))}::timestamptz`),
      run: async () => (await upkeep.resetMissedDeadlines(at(2), MAX, 3)).reset
    },
    {
      name: 'expireClaims',
      prefix: 'claims',
      prepare: () => setStatus('claims', sql`status = 'claimed', claim_expires_at = ${iso(at(1))}::timestamptz`),
      run: async () => (await upkeep.expireClaims(at(2), 3)).expired
    },
    {
      name: 'failExhaustedProcessingAttempts',
      prefix: 'attempts',
      prepare: () => setStatus('attempts', sql`processing_attempts = 5`),
      run: async () => (await upkeep.failExhaustedProcessingAttempts(5, 3)).failed
    },
    {
      name: 'removeExpired',
      prefix: 'expired',
      prepare: () => setStatus('expired', sql`expires_at = ${iso(at(1))}::timestamptz`),
      run: async () => (await upkeep.removeExpired(at(2), 3)).removed
    },
    {
      name: 'releaseDelayed',
      prefix: 'delayed',
      prepare: () => setStatus('delayed', sql`status = 'delay', delay_until = ${iso(at(1))}::timestamptz`),
      run: async () => (await upkeep.releaseDelayed(at(2), 3)).count
    },
    {
      name: 'requeueRetries',
      prefix: 'retry',
      prepare: () => store.setStatusMany(tasks('retry').map(task => ({ id: task.id, status: 'retry', maxAttempts: 5 }))),
      run: async () => (await upkeep.requeueRetries(at(2), 3600, 3)).requeued
    },
    {
      name: 'settleFailures',
      prefix: 'failure',
      prepare: () => store.setStatusMany(tasks('failure').map(task => ({ id: task.id, status: 'failure' }))),
      run: async () => (await upkeep.settleFailures(3)).discarded
    },
    {
      name: 'removeCompleted',
      prefix: 'completed',
      prepare: () => setStatus('completed', sql`status = 'complete'`),
      run: async () => (await upkeep.removeCompleted(3)).removed
    },
    {
      name: 'removeKillswitched',
      prefix: 'killswitch',
      prepare: async () => {},
      run: async () => (await upkeep.removeKillswitched(['tests.killswitch'], 3)).removed
    }
  ]
  for (const c of cases) {
    await database.rows(sql`truncate table inflight_tasks, deadletter_tasks`)
    await produce(...tasks(c.prefix))
    await c.prepare()
    const done: number[] = []
    for (let i = 0; i < 4; i++) done.push(await c.run())
    t.strictSame(done, [3, 3, 1, 0], `${c.name}: 3, 3, 1, then nothing`)
  }
})

contract('requeueRetries', 'a retry delay longer than the maximum delay is capped, as a produced delay is', async (t, backend) => {
  const { store, upkeep, at, activation, produce } = await setup(t, backend)
  await produce(activation({ id: 'long', retry_state: { max_attempts: 3 } }))
  await store.claim({}, 1)
  await store.setStatusMany([{ id: 'long', status: 'retry', delayOnRetry: 86_400 }])
  t.equal((await upkeep.requeueRetries(at(10), 600, LIMIT)).delayed, 1)
  const task = await store.getById('long')
  t.equal(task?.delayUntil?.getTime(), at(610).getTime(), 'delay_until = now + the 600 s maximum, not a day')
  t.equal(task?.activation.delay, 600)
})

contract('resetMissedDeadlines', 'a step skips rows another session holds and takes them on a later pass', { only: 'postgres' }, async (t, backend) => {
  const { store, upkeep, at, activation, produce, url } = await setup(t, backend)
  await produce(activation({ id: 'held' }), activation({ id: 'free' }))
  await store.claim({}, 2)
  const other = postgres(url as string, { max: 1, onnotice: () => {} })
  t.teardown(() => other.end({ timeout: 5 }))
  const session = await other.reserve()
  await session`begin`
  await session`select id from inflight_tasks where id = 'held' for update`
  t.equal((await upkeep.resetMissedDeadlines(at(120), MAX, LIMIT)).reset, 1, 'the free row is reset at once, the held one not waited for')
  t.equal((await store.getById('held'))?.status, 'processing')
  await session`commit`
  session.release()
  t.equal((await upkeep.resetMissedDeadlines(at(120), MAX, LIMIT)).reset, 1, 'the next pass takes it')
})

contract('settleFailures', 'an undecodable failure becomes a dead letter whatever its on_attempts_exceeded', async (t, backend) => {
  const { database, upkeep, activation, produce } = await setup(t, backend)
  await produce(activation({ id: 'poison' }), activation({ id: 'plain' }))
  await update(database, 'poison', sql`status = 'failure', failure_reason = 'undecodable_activation: activation/expires is not an integer'`)
  await update(database, 'plain', sql`status = 'failure', failure_reason = 'reported_failure'`)
  t.strictSame(await upkeep.settleFailures(LIMIT), { discarded: 1, deadlettered: 1 })
  t.equal((await deadletterOf(database, 'poison'))?.reason, 'undecodable_activation: activation/expires is not an integer')
  t.equal(await deadletterOf(database, 'plain'), undefined, 'a discard failure leaves no dead letter')
  t.strictSame(await tableCounts(database), { inflight: 0, deadletter: 1 })
})

contract.everyMethodCovered()
