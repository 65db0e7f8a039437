/**
 * A produced task goes straight to a claim long-polling for it: the produce statement stores it as
 * processing under a new lease and the waiter gets it with no claim statement in between. Only
 * when a claim would have taken that task next anyway: never past an older (or higher-priority)
 * pending task the waiter's filter matches, never for a paused or capped queue, never a delayed or
 * duplicate task. Otherwise the task is stored pending and claimed as before.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { toActivation } from '../../src/domain/activation.js'
import { buildTestApp, NO_UPKEEP, task, testStore } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { metric, untilWaiting } from '../helpers/requests.js'

keepAlive(t)

const STATEMENTS = 'taskbroker_claim_statement_duration_seconds_count'
const HANDED_OFF = 'taskbroker_tasks_handed_off_total'

const claim = (app: FastifyInstance, body: Record<string, unknown>): Promise<LightMyRequestResponse> =>
  app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: body })
const produce = (app: FastifyInstance, tasks: Array<Record<string, unknown>>): Promise<LightMyRequestResponse> =>
  app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks } })
const idsOf = (res: LightMyRequestResponse): string[] => res.json().tasks.map((x: { id: string }) => x.id)
const statusOf = async (app: FastifyInstance, id: string): Promise<string> =>
  (await app.inject({ method: 'GET', url: `/v1/tasks/${id}` })).json().status

eachBackend(t, 'a long-poll gets the produced task from the produce statement itself, under a lease that fences its report', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  for (const filter of [{ application: 'shop', namespace: 'emails' }, { application: 'shop' }, {}]) {
    const waiting = claim(app, { ...filter, wait_ms: 20_000 })
    await untilWaiting(t, app, 1)
    const statements = await metric(app, STATEMENTS)
    const id = `h-${Object.keys(filter).length}`
    t.equal((await produce(app, [task({ id, application: 'shop', namespace: 'emails' })])).statusCode, 201)
    const answer = await waiting
    t.same(idsOf(answer), [id], `filter ${JSON.stringify(filter)}: the waiter got the task`)
    t.equal(await metric(app, STATEMENTS), statements, 'with no claim statement')
    const claimed = answer.json().tasks[0]
    t.match(claimed.lease, /^[0-9a-f-]{36}$/, 'under a lease')
    t.type(claimed.processing_deadline, 'string', 'with a processing deadline')
    t.equal(await statusOf(app, id), 'processing', 'the task is processing')
    const stale = await app.inject({ method: 'POST', url: `/v1/tasks/${id}/status`, payload: { status: 'complete', lease: '00000000-0000-4000-8000-000000000000' } })
    t.equal(stale.statusCode, 409, 'a report under another lease is stale')
    const done = await app.inject({ method: 'POST', url: `/v1/tasks/${id}/status`, payload: { status: 'complete', lease: claimed.lease } })
    t.equal(done.statusCode, 200, 'the report under its lease is applied')
  }
  t.equal(await metric(app, HANDED_OFF), 3, 'three tasks handed off')
})

eachBackend(t, 'a produced task never overtakes an older pending task its waiter would have claimed first', async (t, backend) => {
  const { app, database, config } = await buildTestApp(t, backend, NO_UPKEEP)
  const waiting = claim(app, { application: 'shop', wait_ms: 20_000 })
  await untilWaiting(t, app, 1)
  // Stored behind the broker's back (as another broker would, before its notification arrives).
  await testStore(database, config).tasks.produce([toActivation({ id: 'older', application: 'shop', namespace: 'other', taskname: 'x' }, new Date())], new Date())
  t.equal((await produce(app, [task({ id: 'newer', application: 'shop', namespace: 'emails' })])).statusCode, 201)
  t.same(idsOf(await waiting), ['older'], 'the waiter got the older task, by a claim')
  t.equal(await metric(app, HANDED_OFF), 0, 'nothing handed off')
  t.equal(await statusOf(app, 'newer'), 'pending', 'the new task waits its turn')

  t.same(idsOf(await claim(app, {})), ['newer'], 'then the newer one')

  // A higher priority goes first: handing it off is what a claim would do.
  const next = claim(app, { wait_ms: 20_000 })
  await untilWaiting(t, app, 1)
  await testStore(database, config).tasks.produce([toActivation({ id: 'older-2', application: 'other', namespace: 'x', taskname: 'x' }, new Date())], new Date())
  t.equal((await produce(app, [task({ id: 'urgent', application: 'shop', namespace: 'urgent', priority: 5 })])).statusCode, 201)
  t.same(idsOf(await next), ['urgent'], 'the urgent task went to the unfiltered waiter, past the older one of priority 0')
  t.equal(await metric(app, HANDED_OFF), 1, 'handed off')
  t.equal(await statusOf(app, 'older-2'), 'pending', 'the older task is still pending')
})

eachBackend(t, 'tasks of a paused or capped queue, delayed or duplicate tasks are not handed off', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const patch = (payload: Record<string, unknown>) => app.inject({ method: 'PATCH', url: '/v1/queues', payload })

  t.equal((await patch({ application: 'shop', namespace: 'emails', paused: true })).statusCode, 200)
  const paused = claim(app, { application: 'shop', namespace: 'emails', wait_ms: 1_500 })
  await untilWaiting(t, app, 1)
  t.equal((await produce(app, [task({ id: 'p1', application: 'shop', namespace: 'emails' })])).statusCode, 201)
  t.same(idsOf(await paused), [], 'a paused queue: the waiter gets nothing')
  t.equal(await statusOf(app, 'p1'), 'pending', 'its task stays pending')
  t.equal((await patch({ application: 'shop', namespace: 'emails', paused: false })).statusCode, 200)
  t.same(await (async () => idsOf(await claim(app, { application: 'shop', namespace: 'emails' })))(), ['p1'], 'claimed once resumed')

  t.equal((await patch({ application: 'shop', max_processing: 10 })).statusCode, 200)
  const capped = claim(app, { application: 'shop', namespace: 'emails', wait_ms: 20_000 })
  await untilWaiting(t, app, 1)
  t.equal((await produce(app, [task({ id: 'c1', application: 'shop', namespace: 'emails' })])).statusCode, 201)
  t.same(idsOf(await capped), ['c1'], 'a capped queue: the waiter gets the task by a claim statement, which counts the cap')
  t.equal((await patch({ application: 'shop', max_processing: null })).statusCode, 200)

  const waiting = claim(app, { application: 'shop', namespace: 'emails', wait_ms: 1_500 })
  await untilWaiting(t, app, 1)
  const res = await produce(app, [
    task({ id: 'd1', application: 'shop', namespace: 'emails', delay: 60 }),
    task({ id: 'c1', application: 'shop', namespace: 'emails' })
  ])
  t.equal(res.statusCode, 201)
  t.same(res.json().duplicates, ['c1'], 'the stored id is a duplicate')
  t.same(idsOf(await waiting), [], 'the waiter got none of them')
  t.equal(await statusOf(app, 'd1'), 'delay', 'the delayed task waits for its time')
  t.equal(await metric(app, HANDED_OFF), 0, 'nothing handed off')
})

eachBackend(t, 'a batch goes to its waiters in claim order, each up to its limit; the rest is stored pending', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const first = claim(app, { application: 'shop', namespace: 'emails', limit: 2, wait_ms: 20_000 })
  await untilWaiting(t, app, 1)
  const second = claim(app, { application: 'shop', limit: 1, wait_ms: 20_000 })
  await untilWaiting(t, app, 2)
  const res = await produce(app, [
    task({ id: 'b0', application: 'shop', namespace: 'emails' }),
    task({ id: 'b1', application: 'shop', namespace: 'emails', priority: 3 }),
    task({ id: 'b2', application: 'shop', namespace: 'emails' }),
    task({ id: 'b3', application: 'shop', namespace: 'emails' })
  ])
  t.equal(res.statusCode, 201)
  t.same(idsOf(await first), ['b1', 'b0'], 'the oldest waiter of the queue\'s own filter: highest priority, then oldest')
  t.same(idsOf(await second), ['b2'], 'the application-wide waiter: the next one')
  t.equal(await metric(app, HANDED_OFF), 3)
  t.equal(await statusOf(app, 'b3'), 'pending', 'the task no waiter could take is pending')
  t.same(idsOf(await claim(app, { application: 'shop' })), ['b3'], 'and claimed as usual')
})

eachBackend(t, 'TASKBROKER_CLAIM_HANDOFF=false: the waiter gets its task by a claim statement', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_CLAIM_HANDOFF: 'false' })
  const waiting = claim(app, { application: 'shop', wait_ms: 20_000 })
  await untilWaiting(t, app, 1)
  const statements = await metric(app, STATEMENTS)
  t.equal((await produce(app, [task({ id: 'n1', application: 'shop' })])).statusCode, 201)
  t.same(idsOf(await waiting), ['n1'])
  t.ok(await metric(app, STATEMENTS) > statements, 'claimed by a claim statement')
  t.equal(await metric(app, HANDED_OFF), 0)
})
