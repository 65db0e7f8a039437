/**
 * Retry backoff: retry_state.backoff (fixed or exponential, capped, with full jitter) decides a
 * retry's delay in the retry step; produce and status reports validate and patch it.
 */
import { sql } from 'drizzle-orm'
import t from 'tap'
import type { RetryBackoff } from '../../src/domain/types.js'
import { toActivation } from '../../src/domain/activation.js'
import { createTaskStore } from '../../src/store/task-store.js'
import { createUpkeepStore } from '../../src/store/upkeep-store.js'
import { buildTestApp, NO_UPKEEP, task } from '../helpers/app.js'
import { createTestDatabase, eachBackend, type BackendName } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { assertError, type Test } from '../helpers/requests.js'
import { hold, post, stateOf } from './kit.js'

keepAlive(t)

const LIMIT = 100

async function setup (t: Test, backend: BackendName) {
  const { database } = await createTestDatabase(t, backend)
  const store = createTaskStore(database, { processingDeadlineGraceSec: 0, maxDelaySec: 3600 })
  const upkeep = createUpkeepStore(database)
  const base = new Date()
  const at = (sec: number) => new Date(base.getTime() + sec * 1000)
  /** Retries `id` once at second `sec` (claim, report retry, retry step); the delay it got in seconds, or null. */
  async function retryOnce (id: string, sec: number, jitter?: number): Promise<number | null> {
    await upkeep.releaseDelayed(at(sec), LIMIT)
    const [claimed] = await store.claim({ application: id }, 1)
    t.equal(claimed?.activation.id, id, 'claimed')
    await store.setStatusMany([{ id, status: 'retry' }])
    await upkeep.requeueRetries(at(sec), 3600, LIMIT, jitter)
    const after = await store.getById(id)
    return after?.delayUntil === null || after?.delayUntil === undefined ? null : (after.delayUntil.getTime() - at(sec).getTime()) / 1000
  }
  async function produce (id: string, backoff: RetryBackoff | Record<string, unknown>, extra: Record<string, unknown> = {}) {
    await store.produce([toActivation({ id, application: id, namespace: 'ns', taskname: 'x', retry_state: { max_attempts: 20, backoff: backoff as RetryBackoff, ...extra } }, base)], base)
  }
  return { database, store, upkeep, at, retryOnce, produce }
}

eachBackend(t, 'exponential backoff doubles per attempt up to max_sec; fixed stays', async (t, backend) => {
  const { retryOnce, produce } = await setup(t, backend)
  await produce('exp', { strategy: 'exponential', base_sec: 10, max_sec: 100, jitter: false }, { delay_on_retry: 5 })
  const delays: Array<number | null> = []
  for (let i = 0; i < 6; i++) delays.push(await retryOnce('exp', i * 1000))
  t.same(delays, [10, 20, 40, 80, 100, 100], 'base × 2^attempts, capped; delay_on_retry is ignored beside a backoff')

  await produce('fixed', { strategy: 'fixed', base_sec: 7, max_sec: 100, jitter: false })
  const fixed: Array<number | null> = []
  for (let i = 0; i < 3; i++) fixed.push(await retryOnce('fixed', 10_000 + i * 1000))
  t.same(fixed, [7, 7, 7])
})

eachBackend(t, 'jitter takes a random part of the computed delay: the given fraction, or random() within [0, delay]', async (t, backend) => {
  const { store, upkeep, at, retryOnce, produce } = await setup(t, backend)
  await produce('half', { strategy: 'exponential', base_sec: 10, max_sec: 1000, jitter: true })
  t.equal(await retryOnce('half', 0, 0.5), 5, 'attempt 0: 10 × 0.5')
  t.equal(await retryOnce('half', 100, 0.5), 10, 'attempt 1: 20 × 0.5')
  t.equal(await retryOnce('half', 200, 0), null, 'a fraction of 0: no delay, pending at once')
  t.equal((await store.getById('half'))?.status, 'pending')

  // Random: every delay within [0, 1000] (the cap), and not all equal.
  const ids = Array.from({ length: 20 }, (_, i) => `rand-${i}`)
  for (const id of ids) await produce(id, { strategy: 'fixed', base_sec: 1000, max_sec: 1000, jitter: true })
  const claimed = await store.claim({}, 100)
  await store.setStatusMany(claimed.map(c => ({ id: c.activation.id, status: 'retry' as const })))
  await upkeep.requeueRetries(at(300), 3600, LIMIT)
  const delays = await Promise.all(ids.map(async id => {
    const task = await store.getById(id)
    return task?.delayUntil === null || task?.delayUntil === undefined ? 0 : (task.delayUntil.getTime() - at(300).getTime()) / 1000
  }))
  t.ok(delays.every(d => d >= 0 && d <= 1000), `every delay within [0, 1000]: ${delays.join(', ')}`)
  t.ok(new Set(delays).size > 1, 'jittered: not all the same')
})

eachBackend(t, 'a backoff is capped by the maximum delay; a stored one that cannot be read dead-letters the task', async (t, backend) => {
  const { database, store, upkeep, at, produce, retryOnce } = await setup(t, backend)
  await produce('long', { strategy: 'fixed', base_sec: 86_400, max_sec: 86_400, jitter: false })
  t.equal(await retryOnce('long', 0), 3600, 'TASKBROKER_MAX_DELAY_SEC')
  await produce('bad', { strategy: 'fixed', base_sec: 1, max_sec: 1, jitter: false }, { on_attempts_exceeded: 'deadletter' })
  await database.rows(sql`update inflight_tasks set status = 'retry', activation = jsonb_set(activation, '{retry_state,backoff}', '{"strategy": "linear", "base_sec": 1, "max_sec": 2}') where id = 'bad'`)
  t.equal((await upkeep.requeueRetries(at(10), 3600, LIMIT)).failed, 1)
  const [row] = await database.rows(sql`select status, failure_reason from inflight_tasks where id = 'bad'`)
  t.same(row, { status: 'failure', failure_reason: 'undecodable_activation: activation/retry_state/backoff is not a valid backoff' })
  t.ok(await store.getById('long'))
})

eachBackend(t, 'the API validates a backoff in produce and patches it from a retry report', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const backoff = { strategy: 'exponential', base_sec: 5, max_sec: 60, jitter: true }
  for (const [bad, field] of [
    [{ ...backoff, strategy: 'linear' }, 'strategy'],
    [{ ...backoff, base_sec: -1 }, 'base_sec'],
    [{ strategy: 'fixed', base_sec: 1, max_sec: 2 }, 'jitter'],
    [{ ...backoff, extra: 1 }, 'backoff']
  ] as const) {
    const res = await post(app, '/v1/tasks', { tasks: [task({ retry_state: { backoff: bad } })] })
    assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST', field)
  }
  const ok = await post(app, '/v1/tasks', { tasks: [task({ id: 'b-1', application: 'backoff', retry_state: { max_attempts: 3, backoff } })] })
  t.equal(ok.statusCode, 201)
  t.same((await stateOf(app, 'b-1'))?.task.retry_state.backoff, backoff, 'stored and shown')

  const held = await hold(t, app, ['b-2'], 'backoff-2')
  const fixed = { strategy: 'fixed', base_sec: 30, max_sec: 30, jitter: false }
  assertError(t, await post(app, '/v1/tasks/b-2/status', { status: 'retry', backoff: { ...fixed, max_sec: 'x' } }), 400, 'TASKBROKER_INVALID_REQUEST', 'max_sec')
  t.equal((await post(app, '/v1/tasks/b-2/status', { status: 'retry', backoff: fixed, lease: held.get('b-2')?.lease })).json().applied, true)
  t.same((await stateOf(app, 'b-2'))?.task.retry_state.backoff, fixed, 'the report patched retry_state.backoff')
  const batch = await post(app, '/v1/tasks/status', { updates: [{ id: 'b-1', status: 'retry', backoff: { ...fixed, strategy: 'nope' } }] })
  assertError(t, batch, 400, 'TASKBROKER_INVALID_REQUEST', 'strategy')
})
