/**
 * Long-polls cost little while they wait: the waiters of one filter share one re-check statement
 * per interval however many they are, a produce hands its tasks to them in a few statements, and
 * the number of waiters is bounded (TASKBROKER_CLAIM_MAX_WAITERS: one more gets 503 + Retry-After).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { buildTestApp, NO_UPKEEP, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { assertError, metric, type Test } from '../helpers/requests.js'

keepAlive(t)

const WAITERS = 500
const STATEMENTS = 'taskbroker_claim_statement_duration_seconds_count'

async function until (t: Test, what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const started = Date.now()
  while (Date.now() - started < timeoutMs) {
    if (await check()) return
    await sleep(50)
  }
  t.fail(`${what}: not within ${timeoutMs} ms`)
}

function claim (app: FastifyInstance, body: Record<string, unknown>): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: body })
}

eachBackend(t, `${WAITERS} long-polls on one filter share one re-check and all get their task`, { timeout: 180_000 }, async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_CLAIM_MAX_WAITERS: String(WAITERS) })
  const body = { application: 'shop', namespace: 'emails', wait_ms: 30_000 }
  const answers = Array.from({ length: WAITERS }, () => claim(app, body))
  await until(t, `${WAITERS} claims waiting`, async () => await metric(app, 'taskbroker_claim_waiters') === WAITERS)

  const before = await metric(app, STATEMENTS)
  const watchedMs = 3_000
  await sleep(watchedMs)
  const rechecks = await metric(app, STATEMENTS) - before
  // One re-check per second for the filter; slack for timers and the metric reads themselves.
  t.ok(rechecks <= watchedMs / 1000 + 3, `${WAITERS} waiters cost ${rechecks} claim statements in ${watchedMs} ms`)

  const refused = await claim(app, body)
  assertError(t, refused, 503, 'TASKBROKER_TOO_MANY_WAITERS', 'TASKBROKER_CLAIM_MAX_WAITERS')
  t.equal(refused.headers['retry-after'], '1', 'with Retry-After')
  const immediate = await claim(app, { ...body, wait_ms: 0 })
  t.equal(immediate.statusCode, 200, 'a claim that does not wait is still served')

  const produced = await app.inject({
    method: 'POST',
    url: '/v1/tasks',
    payload: { tasks: Array.from({ length: WAITERS }, (_, i) => task({ id: `w-${i}`, application: 'shop', namespace: 'emails' })) }
  })
  t.equal(produced.statusCode, 201)
  const results = await Promise.all(answers)
  t.ok(results.every(r => r.statusCode === 200), 'every long-poll answered 200')
  const ids = results.flatMap(r => r.json().tasks.map((x: { id: string }) => x.id))
  t.equal(ids.length, WAITERS, 'every waiter got a task')
  t.equal(new Set(ids).size, WAITERS, 'each task went to exactly one waiter')
  t.equal(await metric(app, 'taskbroker_claim_waiters'), 0, 'no one waits any more')
})

eachBackend(t, 'waiters of other filters wait apart, and a waiter whose time runs out gets an empty answer', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const short = claim(app, { application: 'a', wait_ms: 300 })
  const forB = claim(app, { application: 'b', wait_ms: 20_000 })
  const forC = claim(app, { application: 'c', namespace: 'ns', wait_ms: 20_000 })
  t.same((await short).json(), { tasks: [] }, 'a waiter whose time ran out gets no task')
  await until(t, 'two waiting', async () => await metric(app, 'taskbroker_claim_waiters') === 2)
  const res = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: 'for-b', application: 'b' }), task({ id: 'for-c', application: 'c' })] } })
  t.equal(res.statusCode, 201)
  const [b, c] = await Promise.all([forB, forC])
  t.same(b.json().tasks.map((x: { id: string }) => x.id), ['for-b'], 'the application filter got its task')
  t.same(c.json().tasks.map((x: { id: string }) => x.id), ['for-c'], 'the application and namespace filter got its task')
})
