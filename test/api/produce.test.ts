/**
 * POST /v1/tasks and GET /v1/tasks/{id}: producing tasks, idempotency, defaults, and how bad
 * requests are answered (status, stable code, the field named) without storing anything.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { buildTestApp, NO_UPKEEP, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { assertError, metric } from '../helpers/requests.js'

keepAlive(t)

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function produce (app: FastifyInstance, tasks: unknown): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks } })
}

function getTask (app: FastifyInstance, id: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url: `/v1/tasks/${encodeURIComponent(id)}` })
}

/** The produce answer's ids, inserted count and duplicates (other fields, e.g. killswitched, aside). */
function produced (res: LightMyRequestResponse): { ids: string[], inserted: number, duplicates: string[] } {
  const { ids, inserted, duplicates } = res.json()
  return { ids, inserted, duplicates }
}

async function byStatus (app: FastifyInstance): Promise<Record<string, number>> {
  const res = await app.inject({ method: 'GET', url: '/v1/stats' })
  return res.json().by_status
}

eachBackend(t, 'producing tasks', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)

  await t.test('answers 201 with every id in request order, the inserted count and no duplicates', async (t) => {
    const res = await produce(app, [task({ id: 'p-1' }), task({ id: 'p-2' }), task({ id: 'p-3' })])
    t.equal(res.statusCode, 201)
    t.same(produced(res), { ids: ['p-1', 'p-2', 'p-3'], inserted: 3, duplicates: [] })
    for (const id of ['p-1', 'p-2', 'p-3']) t.equal((await getTask(app, id)).statusCode, 200, `${id} is stored`)
  })

  await t.test('generates a UUID for a task without an id and stores the task under it', async (t) => {
    const res = await produce(app, [task({ taskname: 'tests.generated' }), task({ taskname: 'tests.generated' })])
    t.equal(res.statusCode, 201)
    const { ids, inserted } = res.json() as { ids: string[], inserted: number }
    t.equal(ids.length, 2)
    t.equal(inserted, 2)
    for (const id of ids) t.match(id, UUID, `${id} is a UUID`)
    t.not(ids[0], ids[1], 'each task gets its own id')
    const stored = await getTask(app, ids[0] as string)
    t.equal(stored.statusCode, 200)
    t.equal(stored.json().task.id, ids[0], 'the stored activation carries the generated id')
  })

  await t.test('is idempotent on id: producing an existing id again lists it as a duplicate and leaves the stored task unchanged', async (t) => {
    const first = await produce(app, [task({ id: 'idem', taskname: 'tests.first', parameters: { n: 1 } })])
    t.same(produced(first), { ids: ['idem'], inserted: 1, duplicates: [] })
    const before = (await getTask(app, 'idem')).json()

    const second = await produce(app, [task({ id: 'idem', taskname: 'tests.second', parameters: { n: 2 } }), task({ id: 'idem-new' })])
    t.equal(second.statusCode, 201)
    t.same(produced(second), { ids: ['idem', 'idem-new'], inserted: 1, duplicates: ['idem'] })

    const after = (await getTask(app, 'idem')).json()
    t.equal(after.task.taskname, 'tests.first')
    t.same(after.task.parameters, { n: 1 })
    t.same(after, before, 'the stored task, including its broker state, did not change')
    t.equal((await getTask(app, 'idem-new')).statusCode, 200, 'the new task of the same request was stored')
  })

  await t.test('stores one task when the same id appears twice in one request and lists the other as a duplicate', async (t) => {
    const res = await produce(app, [task({ id: 'twice', taskname: 'tests.one' }), task({ id: 'twice', taskname: 'tests.two' })])
    t.equal(res.statusCode, 201)
    t.same(produced(res), { ids: ['twice', 'twice'], inserted: 1, duplicates: ['twice'] })
    const stored = await getTask(app, 'twice')
    t.equal(stored.statusCode, 200)
    t.equal(stored.json().task.taskname, 'tests.one', 'the first occurrence is the one stored')
  })

  await t.test('stores a task with a delay as status "delay" with delay_until = received_at + delay', async (t) => {
    const receivedAt = new Date()
    const res = await produce(app, [task({ id: 'delayed', received_at: receivedAt.toISOString(), delay: 30 })])
    t.equal(res.statusCode, 201)
    const state = (await getTask(app, 'delayed')).json()
    t.equal(state.status, 'delay')
    t.equal(state.delay_until, new Date(receivedAt.getTime() + 30_000).toISOString())
    t.equal(state.task.delay, 30)
  })

  await t.test('a delay longer than TASKBROKER_MAX_DELAY_SEC (default 3600) is capped', async (t) => {
    const receivedAt = new Date()
    await produce(app, [task({ id: 'long-delay', received_at: receivedAt.toISOString(), delay: 7200 })])
    const state = (await getTask(app, 'long-delay')).json()
    t.equal(state.status, 'delay')
    t.equal(state.delay_until, new Date(receivedAt.getTime() + 3600_000).toISOString())
  })

  await t.test('a task whose delay has already passed at produce time is stored pending', async (t) => {
    const receivedAt = new Date(Date.now() - 120_000)
    await produce(app, [task({ id: 'past-delay', received_at: receivedAt.toISOString(), delay: 60 })])
    const state = (await getTask(app, 'past-delay')).json()
    t.equal(state.status, 'pending')
    t.equal(state.delay_until, new Date(receivedAt.getTime() + 60_000).toISOString())
  })

  await t.test('fills every default: application "", headers {}, retry_state, processing_deadline_duration 60, received_at now', async (t) => {
    const before = Date.now()
    await produce(app, [{ id: 'defaults', namespace: 'ns', taskname: 'tests.defaults' }])
    const after = Date.now()
    const res = await getTask(app, 'defaults')
    t.equal(res.statusCode, 200)
    const state = res.json()
    const { received_at: receivedAt, ...rest } = state.task
    t.same(rest, {
      id: 'defaults',
      application: '',
      namespace: 'ns',
      taskname: 'tests.defaults',
      parameters: null,
      headers: {},
      processing_deadline_duration: 60,
      retry_state: { attempts: 0, max_attempts: 1, on_attempts_exceeded: 'discard', at_most_once: false }
    })
    t.strictSame(Object.keys(state.task.retry_state).sort(), ['at_most_once', 'attempts', 'max_attempts', 'on_attempts_exceeded'],
      'no delay_on_retry unless given')
    const received = Date.parse(receivedAt)
    t.ok(received >= before - 1000 && received <= after + 1000, `received_at ${receivedAt} is the time of the request`)
    t.equal(state.status, 'pending')
    t.equal(state.processing_attempts, 0)
    t.equal(state.processing_deadline, null)
    t.equal(state.expires_at, null)
    t.equal(state.delay_until, null)
    t.equal(state.claim_expires_at, null)
    t.ok(Date.parse(state.added_at) >= before - 5000, 'added_at is set')
  })

  await t.test('keeps every field the producer gave and derives expires_at from received_at + expires', async (t) => {
    const input = {
      id: 'full',
      application: 'billing',
      namespace: 'invoices',
      taskname: 'billing.send',
      parameters: { invoice: 42, lines: [1, 2, 3], nested: { ok: true } },
      headers: { 'x-trace': 'abc', other: '' },
      // In the past: expiry counts from it (a received_at ahead of the broker's clock counts from now).
      received_at: '2020-01-02T03:04:05.000Z',
      processing_deadline_duration: 15,
      expires: 600,
      retry_state: { attempts: 2, max_attempts: 5, on_attempts_exceeded: 'deadletter', at_most_once: true, delay_on_retry: 7 }
    }
    t.equal((await produce(app, [input])).statusCode, 201)
    const state = (await getTask(app, 'full')).json()
    t.same(state.task, input)
    t.equal(state.expires_at, '2020-01-02T03:14:05.000Z')
    t.equal(state.status, 'pending')
  })
})

eachBackend(t, 'concurrent produce requests each get their own answer, coalesced or not', async (t, backend) => {
  for (const coalescing of ['true', 'false']) {
    await t.test(`TASKBROKER_PRODUCE_COALESCING=${coalescing}`, async (t) => {
      const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_PRODUCE_COALESCING: coalescing })
      const answers = await Promise.all(Array.from({ length: 24 }, (_, i) => produce(app, [task({ id: `own-${i}` }), task({ id: 'shared' })])))
      t.same(answers.map(res => res.statusCode), Array(24).fill(201))
      const stored = answers.filter(res => res.json().inserted === 2)
      t.equal(stored.length, 1, 'one request stored the id all of them gave')
      for (const [i, res] of answers.entries()) {
        const mine = res.json().inserted === 2
        t.same(produced(res), { ids: [`own-${i}`, 'shared'], inserted: mine ? 2 : 1, duplicates: mine ? [] : ['shared'] }, `request ${i}`)
      }
      t.equal((await byStatus(app)).pending, 25)
      const coalesced = await metric(app, 'taskbroker_batcher_flush_size_sum{batcher="produce"}')
      if (coalescing === 'true') t.equal(coalesced, 24, 'every request went through the coalescer (batcher="produce")')
      else t.ok(Number.isNaN(coalesced), 'no produce batcher')
    })
  }
})

eachBackend(t, 'rejected produce requests', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)

  await t.test('a task without a namespace is answered 400 naming body/tasks/0/namespace', async (t) => {
    const res = await produce(app, [{ taskname: 'tests.x' }])
    assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/namespace')
  })

  await t.test('the failing task is named by its position in the request', async (t) => {
    const res = await produce(app, [task(), task(), { namespace: 'ns' }])
    assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST', 'body/tasks/2/taskname')
  })

  await t.test('an unknown field is answered 400 saying it "is not a known field"', async (t) => {
    const res = await produce(app, [task({ nmespace: 'typo' })])
    assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/nmespace is not a known field')
  })

  await t.test('an unknown field inside retry_state or at the top level is rejected too', async (t) => {
    assertError(t, await produce(app, [task({ retry_state: { max_attempts: 2, retries: 3 } })]), 400,
      'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/retry_state/retries is not a known field')
    const res = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task()], extra: true } })
    assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST', 'body/extra is not a known field')
  })

  await t.test('an empty tasks array is answered 400 naming body/tasks', async (t) => {
    assertError(t, await produce(app, []), 400, 'TASKBROKER_INVALID_REQUEST', 'body/tasks')
  })

  await t.test('a body without tasks is answered 400 naming body/tasks', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/v1/tasks', payload: {} })
    assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST', 'body/tasks is required')
  })

  await t.test('1001 tasks in one request are answered 400 naming body/tasks', async (t) => {
    const tasks = Array.from({ length: 1001 }, (_, i) => task({ id: `too-many-${i}` }))
    assertError(t, await produce(app, tasks), 400, 'TASKBROKER_INVALID_REQUEST', /^body\/tasks .*1000/)
    t.equal((await getTask(app, 'too-many-0')).statusCode, 404, 'none of them was stored')
  })

  await t.test('1000 tasks in one request are accepted', async (t) => {
    const tasks = Array.from({ length: 1000 }, (_, i) => task({ id: `max-${i}` }))
    const res = await produce(app, tasks)
    t.equal(res.statusCode, 201)
    t.equal(res.json().inserted, 1000)
    // Clean up so the "stores nothing" check below starts from an empty store.
    const done = await app.inject({
      method: 'POST', url: '/v1/tasks/status', payload: { updates: tasks.map(x => ({ id: x.id, status: 'complete' })) }
    })
    t.equal(done.json().applied, 1000)
  })

  await t.test('values of the wrong type are answered 400 naming the field', async (t) => {
    assertError(t, await produce(app, [task({ processing_deadline_duration: 'soon' })]), 400,
      'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/processing_deadline_duration must be integer')
    assertError(t, await produce(app, [task({ processing_deadline_duration: 1.5 })]), 400,
      'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/processing_deadline_duration')
    assertError(t, await produce(app, [task({ retry_state: { at_most_once: 'maybe' } })]), 400,
      'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/retry_state/at_most_once')
    assertError(t, await produce(app, [task({ headers: { a: { b: 'c' } } })]), 400,
      'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/headers/a')
    assertError(t, await produce(app, [task({ received_at: 'yesterday' })]), 400,
      'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/received_at')
    assertError(t, await produce(app, { namespace: 'ns', taskname: 'x' }), 400,
      'TASKBROKER_INVALID_REQUEST', 'body/tasks')
  })

  await t.test('out-of-range and empty values are answered 400 naming the field', async (t) => {
    assertError(t, await produce(app, [task({ processing_deadline_duration: 0 })]), 400,
      'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/processing_deadline_duration')
    assertError(t, await produce(app, [task({ delay: -1 })]), 400, 'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/delay')
    assertError(t, await produce(app, [task({ namespace: '' })]), 400, 'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/namespace')
    assertError(t, await produce(app, [task({ id: 'x'.repeat(256) })]), 400, 'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/id')
    assertError(t, await produce(app, [task({ retry_state: { on_attempts_exceeded: 'explode' } })]), 400,
      'TASKBROKER_INVALID_REQUEST', 'body/tasks/0/retry_state/on_attempts_exceeded must be one of: discard, deadletter')
  })

  await t.test('JSON values of another type are not silently converted (a number for a string, a boolean for an integer)', async (t) => {
    const numberNamespace = await produce(app, [task({ id: 'coerced-ns', namespace: 123 })])
    t.equal(numberNamespace.statusCode, 400, 'namespace: 123 is rejected')
    const booleanDelay = await produce(app, [task({ id: 'coerced-delay', delay: true })])
    t.equal(booleanDelay.statusCode, 400, 'delay: true is rejected')
    const stringDuration = await produce(app, [task({ id: 'coerced-duration', processing_deadline_duration: '60' })])
    t.equal(stringDuration.statusCode, 400, 'processing_deadline_duration: "60" is rejected')
    for (const id of ['coerced-ns', 'coerced-delay', 'coerced-duration']) {
      t.equal((await app.inject(`/v1/tasks/${id}`)).statusCode, 404, `${id} was not stored`)
    }
  })

  await t.test('malformed JSON is answered 400 TASKBROKER_INVALID_JSON', async (t) => {
    const res = await app.inject({
      method: 'POST', url: '/v1/tasks', headers: { 'content-type': 'application/json' }, payload: '{"tasks": [{"namespace": "ns",'
    })
    assertError(t, res, 400, 'TASKBROKER_INVALID_JSON')
  })

  await t.test('an empty body, typed JSON or not, is no body: 400 naming the body', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/v1/tasks', headers: { 'content-type': 'application/json' }, payload: '' })
    assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST', 'body must be object')
    assertError(t, await app.inject({ method: 'POST', url: '/v1/tasks' }), 400, 'TASKBROKER_INVALID_REQUEST', 'body must be object')
  })

  await t.test('a body of an unsupported media type is answered 415 TASKBROKER_UNSUPPORTED_MEDIA_TYPE', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/v1/tasks', headers: { 'content-type': 'application/xml' }, payload: '<tasks/>' })
    assertError(t, res, 415, 'TASKBROKER_UNSUPPORTED_MEDIA_TYPE')
  })

  await t.test('a text/plain body is answered 415 naming application/json', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/v1/tasks', headers: { 'content-type': 'text/plain' }, payload: 'tasks' })
    assertError(t, res, 415, 'TASKBROKER_UNSUPPORTED_MEDIA_TYPE', 'Request bodies must be application/json (got "text/plain")')
  })

  await t.test('a request with one valid and one invalid task stores neither', async (t) => {
    const res = await produce(app, [task({ id: 'valid-one' }), task({ id: 'invalid-one', delay: 'later' })])
    assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST', 'body/tasks/1/delay')
    t.equal((await getTask(app, 'valid-one')).statusCode, 404, 'the valid task was not stored')
  })

  await t.test('after all these rejected requests the store holds no task', async (t) => {
    const counts = await byStatus(app)
    t.same(counts, { pending: 0, claimed: 0, processing: 0, delay: 0, retry: 0, failure: 0, complete: 0 })
  })

  await t.test('GET of an unknown id is answered 404 TASKBROKER_TASK_NOT_FOUND naming the id', async (t) => {
    assertError(t, await getTask(app, 'no-such-task'), 404, 'TASKBROKER_TASK_NOT_FOUND', 'no-such-task')
  })

  await t.test('an unknown route is answered 404 with the same error body', async (t) => {
    assertError(t, await app.inject({ method: 'GET', url: '/v1/nothing-here' }), 404, 'TASKBROKER_ROUTE_NOT_FOUND', '/v1/nothing-here')
    assertError(t, await app.inject({ method: 'DELETE', url: '/v1/tasks' }), 404, 'TASKBROKER_ROUTE_NOT_FOUND')
  })
})

eachBackend(t, 'the body size limit', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_BODY_LIMIT_BYTES: '2048' })

  await t.test('a body within TASKBROKER_BODY_LIMIT_BYTES is accepted', async (t) => {
    const res = await produce(app, [task({ id: 'small', parameters: 'x'.repeat(1000) })])
    t.equal(res.statusCode, 201)
  })

  await t.test('a body over TASKBROKER_BODY_LIMIT_BYTES is answered 413 TASKBROKER_BODY_TOO_LARGE and stores nothing', async (t) => {
    const payload = JSON.stringify({ tasks: [task({ id: 'big', parameters: 'x'.repeat(3000) })] })
    t.ok(payload.length > 2048)
    const res = await app.inject({ method: 'POST', url: '/v1/tasks', headers: { 'content-type': 'application/json' }, payload })
    assertError(t, res, 413, 'TASKBROKER_BODY_TOO_LARGE')
    t.match(res.json().message, /larger than 2048 bytes \(TASKBROKER_BODY_LIMIT_BYTES\)/, 'the answer names the limit and its setting')
    t.equal((await getTask(app, 'big')).statusCode, 404, 'the task was not stored')
    t.equal((await byStatus(app)).pending, 1, 'only the earlier small task is stored')
  })
})
