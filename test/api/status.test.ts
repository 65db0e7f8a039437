/**
 * POST /v1/tasks/{id}/status and POST /v1/tasks/status: worker reports, fetch_next, batches, and
 * the writer's modes (batched or not, flushed or queued ack, a full queue).
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { sql } from 'drizzle-orm'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { buildTestApp, NO_UPKEEP, task } from '../helpers/app.js'
import { eachBackend, type BackendName } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { assertError, type Test } from '../helpers/requests.js'

keepAlive(t)

interface TaskState {
  status: string
  task: { id: string, application: string, retry_state: Record<string, unknown>, [field: string]: unknown }
  [field: string]: unknown
}

/** Produces tasks with these ids and claims them all, so they are `processing`. */
async function claimed (t: Test, app: FastifyInstance, ids: string[], application = 'status'): Promise<void> {
  const produced = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: ids.map(id => task({ id, application })) } })
  t.equal(produced.statusCode, 201)
  const res = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application, limit: 100 } })
  t.same(res.json().tasks.map((c: { id: string }) => c.id).sort(), [...ids].sort(), 'claimed')
}

function report (app: FastifyInstance, id: string, body: Record<string, unknown>): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: `/v1/tasks/${encodeURIComponent(id)}/status`, payload: body })
}

function reportMany (app: FastifyInstance, updates: Array<Record<string, unknown>>): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/v1/tasks/status', payload: { updates } })
}

/** The task's state, or null when GET answers 404. */
async function stateOf (t: Test, app: FastifyInstance, id: string): Promise<TaskState | null> {
  const res = await app.inject({ method: 'GET', url: `/v1/tasks/${encodeURIComponent(id)}` })
  if (res.statusCode === 404) return null
  t.equal(res.statusCode, 200)
  return res.json()
}

/**
 * The behaviours that must not depend on how reports are written (batched or one statement each):
 * run once with batching on and once with it off.
 */
async function reportBehaviours (t: Test, backend: BackendName, env: Record<string, string>): Promise<void> {
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, ...env })

  await t.test('complete answers applied:true, queued:false, task:null and the task is gone', async (t) => {
    await claimed(t, app, ['done'])
    const res = await report(app, 'done', { status: 'complete' })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { applied: true, queued: false, task: null })
    t.equal(await stateOf(t, app, 'done'), null, 'GET answers 404')
  })

  await t.test('failure is stored as status failure', async (t) => {
    await claimed(t, app, ['failed'])
    t.same((await report(app, 'failed', { status: 'failure' })).json(), { applied: true, queued: false, task: null })
    const state = await stateOf(t, app, 'failed')
    t.equal(state?.status, 'failure')
    t.equal(state?.processing_deadline, null, 'the deadline is cleared')
  })

  await t.test('retry is stored as status retry and leaves retry_state as it was', async (t) => {
    await claimed(t, app, ['retried'])
    t.same((await report(app, 'retried', { status: 'retry' })).json(), { applied: true, queued: false, task: null })
    const state = await stateOf(t, app, 'retried')
    t.equal(state?.status, 'retry')
    t.same(state?.task.retry_state, { attempts: 0, max_attempts: 1, on_attempts_exceeded: 'discard', at_most_once: false })
  })

  await t.test('retry with max_attempts and delay_on_retry updates the task\'s retry_state', async (t) => {
    await claimed(t, app, ['retry-fields', 'retry-one-field'])
    t.equal((await report(app, 'retry-fields', { status: 'retry', max_attempts: 4, delay_on_retry: 30 })).json().applied, true)
    t.equal((await report(app, 'retry-one-field', { status: 'retry', delay_on_retry: 5 })).json().applied, true)
    const both = await stateOf(t, app, 'retry-fields')
    t.equal(both?.status, 'retry')
    t.same(both?.task.retry_state, { attempts: 0, max_attempts: 4, on_attempts_exceeded: 'discard', at_most_once: false, delay_on_retry: 30 })
    const one = await stateOf(t, app, 'retry-one-field')
    t.same(one?.task.retry_state, { attempts: 0, max_attempts: 1, on_attempts_exceeded: 'discard', at_most_once: false, delay_on_retry: 5 },
      'a field not given keeps its value')
  })

  await t.test('a report for an unknown id answers 200 applied:false', async (t) => {
    for (const status of ['complete', 'failure', 'retry']) {
      const res = await report(app, `never-produced-${status}`, { status })
      t.equal(res.statusCode, 200, `${status} for an unknown id answers 200`)
      t.same(res.json(), { applied: false, queued: false, task: null })
    }
  })

  await t.test('a second complete for a finished task answers applied:false', async (t) => {
    await claimed(t, app, ['twice-done'])
    t.equal((await report(app, 'twice-done', { status: 'complete' })).json().applied, true)
    t.same((await report(app, 'twice-done', { status: 'complete' })).json(), { applied: false, queued: false, task: null })
  })

  await t.test('a status other than complete, failure or retry is answered 400 listing the allowed values and changes nothing', async (t) => {
    await claimed(t, app, ['bad-status'])
    for (const status of ['pending', 'bogus', 'processing']) {
      assertError(t, await report(app, 'bad-status', { status }), 400, 'TASKBROKER_INVALID_REQUEST', 'complete, failure, retry')
    }
    assertError(t, await reportMany(app, [{ id: 'bad-status', status: 'pending' }]), 400, 'TASKBROKER_INVALID_REQUEST', 'complete, failure, retry')
    assertError(t, await report(app, 'bad-status', {}), 400, 'TASKBROKER_INVALID_REQUEST', 'body/status')
    assertError(t, await report(app, 'bad-status', { status: 'retry', max_attempts: 0 }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/max_attempts')
    assertError(t, await report(app, 'bad-status', { status: 'retry', attempts: 2 }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/attempts is not a known field')
    t.equal((await stateOf(t, app, 'bad-status'))?.status, 'processing')
  })

  await t.test('fetch_next claims and returns the next task in the same request', async (t) => {
    await claimed(t, app, ['before-next'], 'next')
    await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: 'next-1', application: 'next' }), task({ id: 'next-2', application: 'next' })] } })
    const res = await report(app, 'before-next', { status: 'complete', fetch_next: {} })
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.equal(body.applied, true)
    t.equal(body.task?.id, 'next-1', 'the oldest pending task')
    t.equal(body.task?.processing_attempts, 0)
    t.type(body.task?.processing_deadline, 'string')
    t.equal((await stateOf(t, app, 'next-1'))?.status, 'processing')
    t.equal((await stateOf(t, app, 'next-2'))?.status, 'pending')
    t.equal(await stateOf(t, app, 'before-next'), null, 'the report itself was applied')
    // Leave nothing pending for later tests.
    const next = await report(app, 'next-1', { status: 'complete', fetch_next: { application: 'next' } })
    t.equal(next.json().task?.id, 'next-2')
    t.same((await report(app, 'next-2', { status: 'complete', fetch_next: { application: 'next' } })).json(),
      { applied: true, queued: false, task: null }, 'task is null when nothing is ready')
  })

  await t.test('fetch_next only claims a task matching its application (and namespace) filter', async (t) => {
    await claimed(t, app, ['filter-first'], 'wanted')
    await app.inject({
      method: 'POST',
      url: '/v1/tasks',
      payload: {
        tasks: [
          task({ id: 'not-wanted', application: 'unwanted' }),
          task({ id: 'wanted-other-ns', application: 'wanted', namespace: 'other' }),
          task({ id: 'wanted-1', application: 'wanted', namespace: 'mine' })
        ]
      }
    })
    const res = await report(app, 'filter-first', { status: 'failure', fetch_next: { application: 'wanted', namespace: 'mine' } })
    t.equal(res.json().task?.id, 'wanted-1')
    const byApp = await report(app, 'wanted-1', { status: 'complete', fetch_next: { application: 'wanted' } })
    t.equal(byApp.json().task?.id, 'wanted-other-ns')
    t.equal((await stateOf(t, app, 'not-wanted'))?.status, 'pending', 'the other application\'s older task was not claimed')
    // Leave nothing pending for later tests.
    await reportMany(app, [{ id: 'not-wanted', status: 'complete' }, { id: 'wanted-other-ns', status: 'complete' }])
  })

  await t.test('fetch_next with a namespace but no application is answered 400 and the report is not applied', async (t) => {
    await claimed(t, app, ['ns-without-app'])
    const res = await report(app, 'ns-without-app', { status: 'complete', fetch_next: { namespace: 'ns' } })
    assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST', 'fetch_next/namespace')
    t.equal((await stateOf(t, app, 'ns-without-app'))?.status, 'processing')
  })

  await t.test('a batch with complete, failure, retry and an unknown id stores every status and lists the unknown id', async (t) => {
    await claimed(t, app, ['b-complete', 'b-failure', 'b-retry'])
    const res = await reportMany(app, [
      { id: 'b-complete', status: 'complete' },
      { id: 'b-unknown', status: 'complete' },
      { id: 'b-failure', status: 'failure' },
      { id: 'b-retry', status: 'retry', max_attempts: 3, delay_on_retry: 9 }
    ])
    t.equal(res.statusCode, 200)
    t.same(res.json(), { applied: 3, queued: 0, not_found: ['b-unknown'] })
    t.equal(await stateOf(t, app, 'b-complete'), null)
    t.equal((await stateOf(t, app, 'b-failure'))?.status, 'failure')
    const retried = await stateOf(t, app, 'b-retry')
    t.equal(retried?.status, 'retry')
    t.equal(retried?.task.retry_state.max_attempts, 3)
    t.equal(retried?.task.retry_state.delay_on_retry, 9)
    t.equal(await stateOf(t, app, 'b-unknown'), null, 'an unknown id is not created')
  })

  await t.test('the same id twice in one batch: the last report wins', async (t) => {
    await claimed(t, app, ['dup-1', 'dup-2'])
    const res = await reportMany(app, [
      { id: 'dup-1', status: 'complete' },
      { id: 'dup-2', status: 'retry' },
      { id: 'dup-1', status: 'failure' },
      { id: 'dup-2', status: 'failure' },
      { id: 'dup-2', status: 'retry', max_attempts: 7 }
    ])
    t.equal(res.statusCode, 200)
    t.same(res.json(), { applied: 2, queued: 0, not_found: [] })
    t.equal((await stateOf(t, app, 'dup-1'))?.status, 'failure', 'dup-1 was not completed')
    const dup2 = await stateOf(t, app, 'dup-2')
    t.equal(dup2?.status, 'retry')
    t.equal(dup2?.task.retry_state.max_attempts, 7)
  })

  await t.test('1001 updates in one batch are answered 400 and change nothing', async (t) => {
    await claimed(t, app, ['over-1', 'over-2'])
    const updates = Array.from({ length: 1001 }, (_, i) => ({ id: i < 2 ? `over-${i + 1}` : `over-x-${i}`, status: 'complete' }))
    assertError(t, await reportMany(app, updates), 400, 'TASKBROKER_INVALID_REQUEST', 'body/updates')
    t.equal((await stateOf(t, app, 'over-1'))?.status, 'processing')
    t.equal((await stateOf(t, app, 'over-2'))?.status, 'processing')
  })

  await t.test('an empty batch and an unknown field are answered 400', async (t) => {
    assertError(t, await reportMany(app, []), 400, 'TASKBROKER_INVALID_REQUEST', 'body/updates')
    assertError(t, await reportMany(app, [{ id: 'x', status: 'complete', note: 'hi' }]), 400,
      'TASKBROKER_INVALID_REQUEST', 'body/updates/0/note is not a known field')
  })

  await t.test('a batch of 1000 updates is applied', async (t) => {
    const ids = Array.from({ length: 1000 }, (_, i) => `thousand-${i}`)
    const produced = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: ids.map(id => task({ id, application: 'thousand' })) } })
    t.equal(produced.json().inserted, 1000)
    const res = await reportMany(app, ids.map((id, i) => ({ id, status: i % 2 === 0 ? 'complete' : 'failure' })))
    t.same(res.json(), { applied: 1000, queued: 0, not_found: [] })
    t.equal(await stateOf(t, app, 'thousand-0'), null)
    t.equal((await stateOf(t, app, 'thousand-999'))?.status, 'failure')
  })
}

eachBackend(t, 'status reports (batched, flushed ack)', async (t, backend) => {
  await reportBehaviours(t, backend, {})
})

eachBackend(t, 'status reports with TASKBROKER_STATUS_BATCHING=false', async (t, backend) => {
  await reportBehaviours(t, backend, { TASKBROKER_STATUS_BATCHING: 'false' })
})

eachBackend(t, 'status reports with TASKBROKER_STATUS_ACK=queued', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_STATUS_ACK: 'queued' })

  /** Polls GET (bounded, about 2 s) until `done` holds for the task's state. */
  async function eventually (t: Test, id: string, done: (state: TaskState | null) => boolean): Promise<TaskState | null> {
    let state: TaskState | null = null
    for (let i = 0; i < 100; i++) {
      state = await stateOf(t, app, id)
      if (done(state)) return state
      await sleep(20)
    }
    return state
  }

  await t.test('a single report answers queued:true, applied:false and is written shortly after', async (t) => {
    await claimed(t, app, ['q-done', 'q-retry'])
    t.same((await report(app, 'q-done', { status: 'complete' })).json(), { applied: false, queued: true, task: null })
    t.same((await report(app, 'q-retry', { status: 'retry', max_attempts: 6 })).json(), { applied: false, queued: true, task: null })
    t.equal(await eventually(t, 'q-done', s => s === null), null, 'the completed task is gone')
    const retried = await eventually(t, 'q-retry', s => s?.status === 'retry')
    t.equal(retried?.status, 'retry')
    t.equal(retried?.task.retry_state.max_attempts, 6)
  })

  await t.test('a batch answers queued:N, applied:0 and every report is written shortly after', async (t) => {
    await claimed(t, app, ['qb-1', 'qb-2', 'qb-3'])
    const res = await reportMany(app, [
      { id: 'qb-1', status: 'complete' },
      { id: 'qb-2', status: 'failure' },
      { id: 'qb-3', status: 'retry' },
      { id: 'qb-unknown', status: 'complete' }
    ])
    t.equal(res.statusCode, 200)
    t.same(res.json(), { applied: 0, queued: 4, not_found: [] })
    t.equal(await eventually(t, 'qb-1', s => s === null), null)
    t.equal((await eventually(t, 'qb-2', s => s?.status === 'failure'))?.status, 'failure')
    t.equal((await eventually(t, 'qb-3', s => s?.status === 'retry'))?.status, 'retry')
  })

  await t.test('fetch_next still returns the next task when the report is only queued', async (t) => {
    await claimed(t, app, ['qn-first'], 'queued-next')
    await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: 'qn-next', application: 'queued-next' })] } })
    const res = await report(app, 'qn-first', { status: 'complete', fetch_next: { application: 'queued-next' } })
    t.equal(res.json().queued, true)
    t.equal(res.json().task?.id, 'qn-next')
    t.equal(await eventually(t, 'qn-first', s => s === null), null)
  })
})

eachBackend(t, 'a full status queue', async (t, backend) => {
  const { app, database } = await buildTestApp(t, backend, {
    ...NO_UPKEEP,
    TASKBROKER_STATUS_MAX_QUEUED: '2',
    TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '60000',
    TASKBROKER_STATUS_BATCH_SIZE: '1000',
    TASKBROKER_STATUS_ACK_TIMEOUT_MS: '200'
  })

  await t.test('a batch larger than the free queue space is answered 503 TASKBROKER_STATUS_QUEUE_FULL with Retry-After and none is queued', async (t) => {
    await claimed(t, app, ['full-1', 'full-2', 'full-3'])
    const res = await reportMany(app, [
      { id: 'full-1', status: 'complete' },
      { id: 'full-2', status: 'failure' },
      { id: 'full-3', status: 'retry' }
    ])
    assertError(t, res, 503, 'TASKBROKER_STATUS_QUEUE_FULL')
    t.equal(res.headers['retry-after'], '1', 'Retry-After is TASKBROKER_RETRY_AFTER_SEC')
    const stats = (await app.inject({ method: 'GET', url: '/v1/stats' })).json()
    t.equal(stats.status_queue_depth, 0, 'nothing was queued')
    for (const id of ['full-1', 'full-2', 'full-3']) t.equal((await stateOf(t, app, id))?.status, 'processing', `${id} is unchanged`)
  })

  await t.test('a report not flushed within TASKBROKER_STATUS_ACK_TIMEOUT_MS is answered 503 TASKBROKER_STATUS_ACK_TIMEOUT but stays queued', async (t) => {
    const res = await report(app, 'full-1', { status: 'complete' })
    assertError(t, res, 503, 'TASKBROKER_STATUS_ACK_TIMEOUT')
    t.equal(res.headers['retry-after'], '1')
    const stats = (await app.inject({ method: 'GET', url: '/v1/stats' })).json()
    t.equal(stats.status_queue_depth, 1, 'the report is still queued')
  })

  await t.test('at shutdown the queued report is written and the rejected batch is not', async (t) => {
    await app.close()
    const rows = await database.rows(sql`select id, status from inflight_tasks where id like 'full-%' order by id`)
    t.same(rows.map(r => ({ id: r.id, status: r.status })), [
      { id: 'full-2', status: 'processing' },
      { id: 'full-3', status: 'processing' }
    ], 'full-1 was completed by the shutdown flush; full-2 and full-3 were never changed')
  })
})
