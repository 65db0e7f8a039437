/**
 * The upkeep jobs (src/core/upkeep/jobs.ts) and the whole pass (src/core/upkeep/upkeep.ts), on every
 * backend. Each job is picked by name and driven with an injected `now`; state is built through
 * the real task store, with columns set directly where a path has no API yet (push claims).
 */
import { sql, type SQL } from 'drizzle-orm'
import pino from 'pino'
import t, { type Test } from 'tap'
import type { Database, Row } from '../../src/db/database.js'
import { createMetrics } from '../../src/core/metrics.js'
import { toDate } from '../../src/store/rows.js'
import { createTaskStore, type TaskStore } from '../../src/store/task-store.js'
import type { Activation } from '../../src/domain/types.js'
import { createUpkeepStore, type Released } from '../../src/store/upkeep-store.js'
import { toActivation } from '../../src/domain/activation.js'
import { createUpkeepJobs, type JobResult, type JobSettings, type UpkeepJob } from '../../src/core/upkeep/jobs.js'
import { createUpkeep } from '../../src/core/upkeep/upkeep.js'
import { createTestDatabase, eachBackend, type BackendName } from '../helpers/database.js'

type TaskInput = Parameters<typeof toActivation>[0]

const JOB_ORDER = [
  'processing_deadline', 'claim_expiry', 'processing_attempts', 'expiry', 'delay', 'retry', 'failure', 'completed', 'killswitch'
]

interface Ctx {
  database: Database
  store: TaskStore
  /** The test's clock: `at(0)` is when the test started. */
  at: (sec: number) => Date
  activation: (overrides?: Partial<TaskInput>) => Activation
  produce: (...tasks: Activation[]) => Promise<void>
  /** Jobs over the real upkeep store; started long ago (outside the startup window) unless overridden. */
  jobs: (overrides?: Partial<JobSettings>) => UpkeepJob[]
  job: (name: string, overrides?: Partial<JobSettings>) => UpkeepJob
}

async function setup (t: Test, backend: BackendName): Promise<Ctx> {
  const { database } = await createTestDatabase(t, backend)
  const store = createTaskStore(database, { processingDeadlineGraceSec: 0, maxDelaySec: 3600 })
  const upkeepStore = createUpkeepStore(database)
  const base = new Date()
  const at = (sec: number) => new Date(base.getTime() + sec * 1000)
  const jobs = (overrides: Partial<JobSettings> = {}) => createUpkeepJobs(upkeepStore, {
    limit: 100,
    maxProcessingAttempts: 5,
    maxDelaySec: 3600,
    startedAt: at(-3600),
    deadlineResetSkipAfterStartupSec: 60,
    killswitched: () => [],
    ...overrides
  })
  return {
    database,
    store,
    at,
    activation: (overrides = {}) => toActivation({ namespace: 'ns', taskname: 'tests.noop', ...overrides }, base),
    async produce (...tasks) {
      const { inserted } = await store.produce(tasks, base)
      if (inserted.length !== tasks.length) throw new Error(`produced ${inserted.length} of ${tasks.length}`)
    },
    jobs,
    job (name, overrides) {
      const found = jobs(overrides).find(job => job.name === name)
      if (found === undefined) throw new Error(`no upkeep job named ${name}`)
      return found
    }
  }
}

async function rowOf (database: Database, id: string): Promise<Row | undefined> {
  return (await database.rows(sql`select * from inflight_tasks where id = ${id}`))[0]
}

async function deadletterOf (database: Database, id: string): Promise<Row | undefined> {
  return (await database.rows(sql`select * from deadletter_tasks where id = ${id}`))[0]
}

async function update (database: Database, where: SQL, set: SQL) {
  await database.rows(sql`update inflight_tasks set ${set} where ${where}`)
}

async function tableCounts (database: Database) {
  const [row] = await database.rows(sql`select
    (select count(*) from inflight_tasks)::int as inflight,
    (select count(*) from deadletter_tasks)::int as deadletter`)
  return { inflight: Number(row?.inflight), deadletter: Number(row?.deadletter) }
}

const iso = (date: Date) => date.toISOString()
const sortReleased = (released: Released | undefined) =>
  [...released ?? []].sort((a, b) => `${a.application}/${a.namespace}`.localeCompare(`${b.application}/${b.namespace}`))
const withSortedReleased = (result: JobResult): JobResult =>
  result.released === undefined ? result : { ...result, released: sortReleased(result.released) }

t.test('the jobs run in upstream order', async (t) => {
  const jobs = createUpkeepJobs({} as never, {
    limit: 1, maxProcessingAttempts: 1, maxDelaySec: 3600, startedAt: new Date(), deadlineResetSkipAfterStartupSec: 0, killswitched: () => []
  })
  t.strictSame(jobs.map(job => job.name), JOB_ORDER)
})

// ---------------------------------------------------------------------------------------------
// processing_deadline

eachBackend(t, 'processing_deadline resets missed deadlines and fails at_most_once tasks', async (t, backend) => {
  const { database, store, at, activation, produce, job } = await setup(t, backend)
  await produce(
    activation({ id: 'p1', application: 'a', namespace: 'x' }),
    activation({ id: 'p2', application: 'b', namespace: 'y' }),
    activation({ id: 'once', application: 'a', namespace: 'x', retry_state: { at_most_once: true } }),
    activation({ id: 'long', processing_deadline_duration: 3600 }))
  t.equal((await store.claim({}, 10)).length, 4)
  const deadline = job('processing_deadline')

  t.strictSame(await deadline.runOnce(at(10)), { counts: { reset: 0, failed: 0 }, released: [] }, 'no deadline has passed yet')
  t.strictSame(withSortedReleased(await deadline.runOnce(at(120))), {
    counts: { reset: 2, failed: 1 },
    released: [{ application: 'a', namespace: 'x', count: 1 }, { application: 'b', namespace: 'y', count: 1 }]
  })
  for (const id of ['p1', 'p2']) {
    const task = await store.getById(id)
    t.equal(task?.status, 'pending')
    t.equal(task?.processingAttempts, 1)
    t.equal(task?.processingDeadline, null)
  }
  const once = await rowOf(database, 'once')
  t.equal(once?.status, 'failure')
  t.equal(once?.failure_reason, 'deadline_missed_at_most_once')
  t.equal(once?.processing_attempts, 0)
  t.equal((await store.getById('long'))?.status, 'processing', 'a deadline in the future is untouched')
  t.same((await store.claim({}, 10)).map(task => task.activation.id).sort(), ['p1', 'p2'], 'the at_most_once task is not handed out')

  t.strictSame(await job('failure').runOnce(at(121)), { counts: { discarded: 1, deadlettered: 0 } })
  t.equal(await rowOf(database, 'once'), undefined)
  t.equal(await deadletterOf(database, 'once'), undefined)
})

eachBackend(t, 'processing_deadline waits out the startup window', async (t, backend) => {
  const { store, at, activation, produce, job } = await setup(t, backend)
  await produce(activation({ id: 'w1' }), activation({ id: 'w2', retry_state: { at_most_once: true } }))
  await store.claim({}, 10)
  const now = at(120)

  const inside = job('processing_deadline', { startedAt: new Date(now.getTime() - 50_000), deadlineResetSkipAfterStartupSec: 60 })
  t.strictSame(await inside.runOnce(now), { counts: { skipped: 1 } }, '50 s after start: skipped')
  t.equal((await store.getById('w1'))?.status, 'processing', 'nothing reset inside the window')
  t.equal((await store.getById('w2'))?.status, 'processing', 'nothing failed inside the window')

  const outside = job('processing_deadline', { startedAt: new Date(now.getTime() - 90_000), deadlineResetSkipAfterStartupSec: 60 })
  t.strictSame(await outside.runOnce(now), { counts: { reset: 1, failed: 1 }, released: [{ application: '', namespace: 'ns', count: 1 }] })
  t.equal((await store.getById('w1'))?.status, 'pending')
  t.equal((await store.getById('w2'))?.status, 'failure')
})

eachBackend(t, 'processing_deadline fails a task whose miss reaches maxProcessingAttempts', async (t, backend) => {
  const { database, store, at, activation, produce, job } = await setup(t, backend)
  await produce(activation({ id: 'first' }), activation({ id: 'second', retry_state: { on_attempts_exceeded: 'deadletter' } }))
  await store.claim({}, 10)
  await update(database, sql`id = 'second'`, sql`processing_attempts = 1`)
  t.strictSame(await job('processing_deadline', { maxProcessingAttempts: 2 }).runOnce(at(120)),
    { counts: { reset: 1, failed: 1 }, released: [{ application: '', namespace: 'ns', count: 1 }] })
  t.equal((await store.getById('first'))?.processingAttempts, 1)
  const second = await rowOf(database, 'second')
  t.equal(second?.status, 'failure')
  t.equal(second?.failure_reason, 'processing_attempts_exceeded')
  t.equal(second?.processing_attempts, 2)
  t.strictSame(await job('failure').runOnce(at(120)), { counts: { discarded: 0, deadlettered: 1 } })
  t.equal((await deadletterOf(database, 'second'))?.processing_attempts, 2)
})

// ---------------------------------------------------------------------------------------------
// claim_expiry

eachBackend(t, 'claim_expiry returns lapsed push claims to pending without counting an attempt', async (t, backend) => {
  const { database, store, at, activation, produce, job } = await setup(t, backend)
  await produce(
    activation({ id: 'c1', application: 'a', namespace: 'x' }),
    activation({ id: 'c2', application: 'a', namespace: 'x', retry_state: { at_most_once: true } }),
    activation({ id: 'c-later', application: 'a', namespace: 'x' }))
  await update(database, sql`id in ('c1', 'c2')`, sql`status = 'claimed', processing_attempts = 1, claim_expires_at = ${iso(at(20))}::timestamptz`)
  await update(database, sql`id = 'c-later'`, sql`status = 'claimed', claim_expires_at = ${iso(at(200))}::timestamptz`)
  const now = at(100)

  const inside = job('claim_expiry', { startedAt: new Date(now.getTime() - 50_000), deadlineResetSkipAfterStartupSec: 60 })
  t.strictSame(await inside.runOnce(now), { counts: { skipped: 1 } }, '50 s after start: skipped')
  t.equal((await store.getById('c1'))?.status, 'claimed')

  const outside = job('claim_expiry', { startedAt: new Date(now.getTime() - 90_000), deadlineResetSkipAfterStartupSec: 60 })
  t.strictSame(await outside.runOnce(now), { counts: { reset: 2 }, released: [{ application: 'a', namespace: 'x', count: 2 }] })
  for (const id of ['c1', 'c2']) {
    const task = await store.getById(id)
    t.equal(task?.status, 'pending', `${id} pending`)
    t.equal(task?.claimExpiresAt, null)
    t.equal(task?.processingAttempts, 1, `${id}: no attempt counted (at_most_once included)`)
  }
  const later = await store.getById('c-later')
  t.equal(later?.status, 'claimed', 'a lease in the future is untouched')
  t.equal(later?.claimExpiresAt?.getTime(), at(200).getTime())
})

// ---------------------------------------------------------------------------------------------
// processing_attempts, expiry, delay

eachBackend(t, 'processing_attempts fails pending tasks at maxProcessingAttempts', async (t, backend) => {
  const { database, at, activation, produce, job } = await setup(t, backend)
  await produce(activation({ id: 'four' }), activation({ id: 'five' }))
  await update(database, sql`id = 'four'`, sql`processing_attempts = 4`)
  await update(database, sql`id = 'five'`, sql`processing_attempts = 5`)
  t.strictSame(await job('processing_attempts', { maxProcessingAttempts: 5 }).runOnce(at(0)), { counts: { failed: 1 } })
  const five = await rowOf(database, 'five')
  t.equal(five?.status, 'failure')
  t.equal(five?.failure_reason, 'processing_attempts_exceeded')
  const four = await rowOf(database, 'four')
  t.equal(four?.status, 'pending', '4 is untouched')
  t.equal(four?.processing_attempts, 4)
})

eachBackend(t, 'expiry deletes pending tasks past expires_at', async (t, backend) => {
  const { database, at, activation, produce, job } = await setup(t, backend)
  await produce(
    activation({ id: 'gone', expires: 10 }),
    activation({ id: 'kept', expires: 100 }),
    activation({ id: 'delayed', expires: 10, delay: 60 }))
  const expiry = job('expiry')
  t.strictSame(await expiry.runOnce(at(5)), { counts: { removed: 0 } })
  t.strictSame(await expiry.runOnce(at(20)), { counts: { removed: 1 } })
  t.equal(await rowOf(database, 'gone'), undefined)
  t.equal((await rowOf(database, 'kept'))?.status, 'pending')
  t.equal((await rowOf(database, 'delayed'))?.status, 'delay', 'a delay task past expires is not removed by this step')
  t.strictSame(await tableCounts(database), { inflight: 2, deadletter: 0 })
})

eachBackend(t, 'delay releases due tasks to pending, and they can be claimed', async (t, backend) => {
  const { store, at, activation, produce, job } = await setup(t, backend)
  await produce(activation({ id: 'soon', application: 'a', namespace: 'x', delay: 30 }), activation({ id: 'later', delay: 300 }))
  const delay = job('delay')
  t.strictSame(await delay.runOnce(at(29)), { counts: { released: 0 }, released: [] })
  t.same(await store.claim({}, 10), [])
  t.strictSame(await delay.runOnce(at(30)), { counts: { released: 1 }, released: [{ application: 'a', namespace: 'x', count: 1 }] })
  t.equal((await store.getById('soon'))?.status, 'pending')
  t.equal((await store.getById('later'))?.status, 'delay', 'a future delay stays')
  t.same((await store.claim({}, 10)).map(task => task.activation.id), ['soon'])
})

// ---------------------------------------------------------------------------------------------
// retry

eachBackend(t, 'retry requeues at the back of the queue as the same task', async (t, backend) => {
  const { database, store, at, activation, produce, job } = await setup(t, backend)
  const retry = { max_attempts: 3 }
  await produce(activation({ id: 'A', retry_state: retry }), activation({ id: 'B', retry_state: retry }), activation({ id: 'C', retry_state: retry }))
  t.same((await store.claim({}, 1)).map(task => task.activation.id), ['A'])
  await update(database, sql`id = 'A'`, sql`processing_attempts = 1`)
  await store.setStatusMany([{ id: 'A', status: 'retry' }])

  const now = at(7)
  t.strictSame(await job('retry').runOnce(now), {
    counts: { requeued: 1, delayed: 0, failed: 0 },
    released: [{ application: '', namespace: 'ns', count: 1 }]
  })
  const task = await store.getById('A')
  t.equal(task?.status, 'pending')
  t.equal(task?.activation.retry_state.attempts, 1)
  t.equal(task?.activation.received_at, now.toISOString())
  t.equal(toDate((await rowOf(database, 'A'))?.received_at)?.getTime(), now.getTime())
  t.equal(task?.processingAttempts, 0)
  t.same((await store.claim({}, 10)).map(task => task.activation.id), ['B', 'C', 'A'])
})

eachBackend(t, 'retry with delay_on_retry and expires', async (t, backend) => {
  const { store, at, activation, produce, job } = await setup(t, backend)
  await produce(activation({ id: 'r', expires: 60, retry_state: { max_attempts: 3, delay_on_retry: 30 } }))
  await store.claim({}, 1)
  await store.setStatusMany([{ id: 'r', status: 'retry' }])
  t.strictSame(await job('retry').runOnce(at(50)), { counts: { requeued: 0, delayed: 1, failed: 0 }, released: [] })
  const task = await store.getById('r')
  t.equal(task?.status, 'delay')
  t.equal(task?.delayUntil?.getTime(), at(80).getTime())
  t.equal(task?.activation.delay, 30)
  t.equal(task?.expiresAt?.getTime(), at(110).getTime(), 'expires_at restarts from now')
  t.strictSame(await job('expiry').runOnce(at(79)), { counts: { removed: 0 } })
  t.strictSame(await job('delay').runOnce(at(80)), { counts: { released: 1 }, released: [{ application: '', namespace: 'ns', count: 1 }] })
  t.same((await store.claim({}, 10)).map(task => task.activation.id), ['r'])
})

eachBackend(t, 'retry fails a task whose attempts would reach max_attempts', async (t, backend) => {
  const { database, store, at, activation, produce, job } = await setup(t, backend)
  await produce(
    activation({ id: 'one' }),
    activation({ id: 'three', retry_state: { max_attempts: 3, on_attempts_exceeded: 'deadletter' } }))
  const retry = job('retry')
  const failure = job('failure')

  await store.claim({}, 10)
  await store.setStatusMany([{ id: 'one', status: 'retry' }, { id: 'three', status: 'retry' }])
  t.strictSame((await retry.runOnce(at(1))).counts, { requeued: 1, delayed: 0, failed: 1 }, 'default max_attempts 1: the first retry fails')
  t.equal((await rowOf(database, 'one'))?.failure_reason, 'retries_exhausted')
  t.strictSame(await failure.runOnce(at(1)), { counts: { discarded: 1, deadlettered: 0 } })
  t.equal(await rowOf(database, 'one'), undefined)

  t.equal((await store.claim({}, 10)).length, 1)
  await store.setStatusMany([{ id: 'three', status: 'retry' }])
  t.strictSame((await retry.runOnce(at(2))).counts, { requeued: 1, delayed: 0, failed: 0 }, 'second retry allowed')
  t.equal((await store.claim({}, 10)).length, 1)
  await store.setStatusMany([{ id: 'three', status: 'retry' }])
  t.strictSame((await retry.runOnce(at(3))).counts, { requeued: 0, delayed: 0, failed: 1 }, 'the third retry fails')
  const three = await rowOf(database, 'three')
  t.equal(three?.status, 'failure')
  t.equal(three?.failure_reason, 'retries_exhausted')

  t.strictSame(await failure.runOnce(at(3)), { counts: { discarded: 0, deadlettered: 1 } })
  t.equal(await rowOf(database, 'three'), undefined)
  const dead = await deadletterOf(database, 'three')
  t.equal(dead?.reason, 'retries_exhausted')
  t.equal((dead?.activation as Activation).retry_state.attempts, 2)
  t.strictSame(await tableCounts(database), { inflight: 0, deadletter: 1 })
})

// ---------------------------------------------------------------------------------------------
// failure, completed, killswitch

eachBackend(t, 'failure discards or dead-letters per on_attempts_exceeded', async (t, backend) => {
  const { database, store, at, activation, produce, job } = await setup(t, backend)
  await produce(
    activation({ id: 'f-discard' }),
    activation({ id: 'f-dead', retry_state: { on_attempts_exceeded: 'deadletter' } }),
    activation({ id: 'f-dead2', retry_state: { on_attempts_exceeded: 'deadletter' } }),
    activation({ id: 'live' }))
  await store.claim({}, 3)
  await update(database, sql`id = 'f-dead'`, sql`processing_attempts = 2`)
  const activationOf = (await store.getById('f-dead'))?.activation
  await store.setStatusMany([{ id: 'f-discard', status: 'failure' }, { id: 'f-dead', status: 'failure' }, { id: 'f-dead2', status: 'failure' }])

  t.strictSame(await job('failure').runOnce(at(0)), { counts: { discarded: 1, deadlettered: 2 } })
  t.strictSame(await tableCounts(database), { inflight: 1, deadletter: 2 }, 'each failed task in exactly one table, none lost')
  t.equal(await rowOf(database, 'f-discard'), undefined)
  t.equal(await deadletterOf(database, 'f-discard'), undefined)
  t.equal(await rowOf(database, 'f-dead'), undefined)
  const dead = await deadletterOf(database, 'f-dead')
  t.equal(dead?.id, 'f-dead')
  t.same(dead?.activation, activationOf)
  t.equal(dead?.reason, 'reported_failure')
  t.equal(dead?.processing_attempts, 2)
  t.equal((await rowOf(database, 'live'))?.status, 'pending')
})

eachBackend(t, 'completed removes rows marked complete', async (t, backend) => {
  const { database, store, at, activation, produce, job } = await setup(t, backend)
  await produce(activation({ id: 'done' }), activation({ id: 'open' }))
  await update(database, sql`id = 'done'`, sql`status = 'complete'`)
  t.strictSame(await job('completed').runOnce(at(0)), { counts: { removed: 1 } })
  t.equal(await rowOf(database, 'done'), undefined)
  t.equal((await store.getById('open'))?.status, 'pending')
})

eachBackend(t, 'killswitch removes listed tasknames in any status, reading the list at every pass', async (t, backend) => {
  const { database, store, at, activation, produce, job } = await setup(t, backend)
  await produce(activation({ id: 'k-processing', taskname: 'tests.kill' }))
  await store.claim({}, 1)
  await produce(
    activation({ id: 'k-pending', taskname: 'tests.kill' }),
    activation({ id: 'k-delay', taskname: 'tests.kill', delay: 60 }),
    activation({ id: 'k-retry', taskname: 'tests.kill', retry_state: { max_attempts: 3 } }),
    activation({ id: 'k2', taskname: 'tests.kill2' }),
    activation({ id: 'keep', taskname: 'tests.keep' }))
  await store.setStatusMany([{ id: 'k-retry', status: 'retry' }])
  let list: string[] = []
  const killswitch = job('killswitch', { killswitched: () => list })

  t.strictSame(await killswitch.runOnce(at(0)), { counts: { removed: 0 } }, 'an empty list removes nothing')
  t.strictSame(await tableCounts(database), { inflight: 6, deadletter: 0 })
  list = ['tests.kill']
  t.strictSame(await killswitch.runOnce(at(1)), { counts: { removed: 4 } }, 'pending, processing, delay and retry all removed')
  for (const id of ['k-processing', 'k-pending', 'k-delay', 'k-retry']) t.equal(await rowOf(database, id), undefined, `${id} removed`)
  list = ['tests.kill2', 'tests.none']
  t.strictSame(await killswitch.runOnce(at(2)), { counts: { removed: 1 } }, 'a changed list applies at the next pass')
  t.same((await database.rows(sql`select id from inflight_tasks`)).map(r => r.id), ['keep'])
  t.strictSame(await tableCounts(database), { inflight: 1, deadletter: 0 })
})

// ---------------------------------------------------------------------------------------------
// bounded

eachBackend(t, 'every job handles at most `limit` tasks per run', async (t, backend) => {
  const { database, store, at, activation, produce, job } = await setup(t, backend)
  const seven = (taskname: string) => Array.from({ length: 7 }, (_, i) => activation({ id: `${taskname}-${i}`, taskname }))
  const now = at(100)
  const cases: Array<{ job: string, key: string, prepare: (ids: string[]) => Promise<unknown>, settings?: Partial<JobSettings> }> = [
    { job: 'processing_deadline', key: 'reset', prepare: () => store.claim({}, 10) },
    { job: 'claim_expiry', key: 'reset', prepare: () => update(database, sql`true`, sql`status = 'claimed', claim_expires_at = ${iso(at(50))}::timestamptz`) },
    { job: 'processing_attempts', key: 'failed', prepare: () => update(database, sql`true`, sql`processing_attempts = 5`) },
    { job: 'expiry', key: 'removed', prepare: () => update(database, sql`true`, sql`expires_at = ${iso(at(50))}::timestamptz`) },
    { job: 'delay', key: 'released', prepare: () => update(database, sql`true`, sql`status = 'delay', delay_until = ${iso(at(50))}::timestamptz`) },
    { job: 'retry', key: 'requeued', prepare: (ids) => store.setStatusMany(ids.map(id => ({ id, status: 'retry', maxAttempts: 3 }))) },
    { job: 'failure', key: 'discarded', prepare: (ids) => store.setStatusMany(ids.map(id => ({ id, status: 'failure' }))) },
    { job: 'completed', key: 'removed', prepare: () => update(database, sql`true`, sql`status = 'complete'`) },
    { job: 'killswitch', key: 'removed', prepare: async () => {}, settings: { killswitched: () => ['tests.killswitch'] } }
  ]
  for (const c of cases) {
    await database.rows(sql`truncate table inflight_tasks, deadletter_tasks`)
    const tasks = seven(`tests.${c.job}`)
    await produce(...tasks)
    await c.prepare(tasks.map(task => task.id))
    const bounded = job(c.job, { limit: 3, ...c.settings })
    const done: unknown[] = []
    for (let i = 0; i < 4; i++) done.push((await bounded.runOnce(now)).counts[c.key])
    t.strictSame(done, [3, 3, 1, 0], `${c.job}: 3, then 3, then 1, then nothing`)
  }
})

// ---------------------------------------------------------------------------------------------
// the whole pass

function passDeps (database: Database, jobs: UpkeepJob[], now: Date) {
  const released: Released[] = []
  const metrics = createMetrics()
  const lock = database.leaderLock(12345)
  const upkeep = createUpkeep({
    jobs,
    intervalMs: 1000,
    lock,
    log: pino({ level: 'silent' }),
    metrics,
    now: () => now,
    onReleased: (queues) => { released.push(queues) }
  })
  return { upkeep, released, metrics, lock }
}

eachBackend(t, 'one pass runs every job in order, so a task moves through several steps', async (t, backend) => {
  const { database, store, at, activation, produce, jobs } = await setup(t, backend)
  await produce(
    activation({ id: 'retry-dead', retry_state: { on_attempts_exceeded: 'deadletter' } }),
    activation({ id: 'slow', application: 'a', namespace: 'x', retry_state: { on_attempts_exceeded: 'deadletter' } }),
    activation({ id: 'reset', application: 'a', namespace: 'x' }),
    activation({ id: 'once', application: 'a', namespace: 'x', retry_state: { at_most_once: true } }),
    activation({ id: 'done' }),
    activation({ id: 'later', application: 'b', namespace: 'y', delay: 30 }))
  t.equal((await store.claim({}, 10)).length, 5)
  await produce(activation({ id: 'lowered' }))
  await update(database, sql`id = 'slow'`, sql`processing_attempts = 4`)
  await update(database, sql`id = 'lowered'`, sql`processing_attempts = 7`)
  await update(database, sql`id = 'done'`, sql`status = 'complete'`)
  await store.setStatusMany([{ id: 'retry-dead', status: 'retry' }])
  const now = at(120)
  const { upkeep, released, metrics, lock } = passDeps(database, jobs({ startedAt: at(0) }), now)
  try {
    const result = await upkeep.runOnce(now)
    t.equal(result.leader, true)
    t.strictSame(result.errors, {})
    t.match(result.counts, {
      'processing_deadline.reset': 1,
      'processing_deadline.failed': 2,
      'claim_expiry.reset': 0,
      'processing_attempts.failed': 1,
      'expiry.removed': 0,
      'delay.released': 1,
      'retry.requeued': 0,
      'retry.failed': 1,
      'failure.discarded': 2,
      'failure.deadlettered': 2,
      'completed.removed': 1,
      'killswitch.removed': 0
    })
    t.equal(Object.keys(result.counts).length, 13, 'every transition of every job is reported')

    const retryDead = await deadletterOf(database, 'retry-dead')
    t.equal(retryDead?.reason, 'retries_exhausted', 'a retry past max_attempts is dead-lettered in the same pass')
    const slow = await deadletterOf(database, 'slow')
    t.equal(slow?.reason, 'processing_attempts_exceeded', 'a deadline miss reaching the attempt limit fails and is dead-lettered in the same pass')
    t.equal(slow?.processing_attempts, 5)
    t.equal(await rowOf(database, 'once'), undefined, 'an at_most_once task past its deadline is discarded in the same pass')
    t.equal(await rowOf(database, 'lowered'), undefined, 'a pending task over the limit fails and is discarded in the same pass')
    t.equal(await deadletterOf(database, 'lowered'), undefined)
    t.equal(await rowOf(database, 'done'), undefined)
    t.equal((await store.getById('reset'))?.status, 'pending')
    t.equal((await store.getById('later'))?.status, 'pending')
    t.strictSame(await tableCounts(database), { inflight: 2, deadletter: 2 })

    t.strictSame(released.map(sortReleased), [
      [{ application: 'a', namespace: 'x', count: 1 }],
      [{ application: 'b', namespace: 'y', count: 1 }]
    ], 'onReleased is called with the queues of the reset and the released tasks')
    const transitions = await metrics.upkeepTransitions.get()
    t.equal(transitions.values.find(v => v.labels.job === 'failure' && v.labels.transition === 'deadlettered')?.value, 2)
    t.equal((await metrics.upkeepLeader.get()).values[0]?.value, 1)

    const again = await upkeep.runOnce(at(121))
    t.ok(Object.entries(again.counts).every(([, n]) => n === 0), 'a second pass finds nothing to do')
    t.equal(released.length, 2, 'onReleased is not called when nothing was released')
  } finally {
    await lock.release()
  }
})

eachBackend(t, 'inside the startup window a pass skips deadline and claim resets but runs the rest', async (t, backend) => {
  const { database, store, at, activation, produce, jobs } = await setup(t, backend)
  await produce(activation({ id: 'running' }), activation({ id: 'pushed' }), activation({ id: 'failed' }))
  await store.claim({}, 1)
  await update(database, sql`id = 'pushed'`, sql`status = 'claimed', claim_expires_at = ${iso(at(10))}::timestamptz`)
  await store.setStatusMany([{ id: 'failed', status: 'failure' }])
  const now = at(120)
  const { upkeep, released, lock } = passDeps(database, jobs({ startedAt: new Date(now.getTime() - 50_000) }), now)
  try {
    const result = await upkeep.runOnce(now)
    t.equal(result.counts['processing_deadline.skipped'], 1)
    t.equal(result.counts['claim_expiry.skipped'], 1)
    t.equal(result.counts['processing_deadline.reset'], undefined)
    t.equal(result.counts['failure.discarded'], 1, 'the other jobs ran')
    t.equal((await store.getById('running'))?.status, 'processing')
    t.equal((await store.getById('pushed'))?.status, 'claimed')
    t.same(released, [])
  } finally {
    await lock.release()
  }
})

eachBackend(t, 'a job that throws is reported and the remaining jobs still run', async (t, backend) => {
  const { database, store, at, activation, produce, jobs } = await setup(t, backend)
  await produce(
    activation({ id: 'stuck', retry_state: { max_attempts: 3 } }),
    activation({ id: 'failed' }),
    activation({ id: 'done' }),
    activation({ id: 'killed', taskname: 'tests.kill' }),
    activation({ id: 'delayed', delay: 10 }))
  await store.setStatusMany([{ id: 'stuck', status: 'retry' }, { id: 'failed', status: 'failure' }])
  await update(database, sql`id = 'done'`, sql`status = 'complete'`)
  const boom = new Error('boom')
  const wrapped = jobs({ killswitched: () => ['tests.kill'] }).map((job): UpkeepJob =>
    job.name === 'retry' ? { name: 'retry', runOnce: async () => { throw boom } } : job)
  const now = at(60)
  const { upkeep, released, metrics, lock } = passDeps(database, wrapped, now)
  try {
    const result = await upkeep.runOnce(now)
    t.equal(result.leader, true)
    t.strictSame(Object.keys(result.errors), ['retry'])
    t.equal(result.errors.retry, boom)
    t.equal(Object.keys(result.counts).filter(key => key.startsWith('retry.')).length, 0)
    t.equal(result.counts['delay.released'], 1, 'jobs before the failing one ran')
    t.equal(result.counts['failure.discarded'], 1, 'jobs after the failing one still ran')
    t.equal(result.counts['completed.removed'], 1)
    t.equal(result.counts['killswitch.removed'], 1)
    t.equal((await store.getById('stuck'))?.status, 'retry', 'the failing job changed nothing')
    t.equal(await rowOf(database, 'failed'), undefined)
    t.equal(await rowOf(database, 'done'), undefined)
    t.equal(await rowOf(database, 'killed'), undefined)
    t.strictSame(released, [[{ application: '', namespace: 'ns', count: 1 }]])
    t.equal((await metrics.upkeepFailures.get()).values.find(v => v.labels.job === 'retry')?.value, 1)
  } finally {
    await lock.release()
  }
})
