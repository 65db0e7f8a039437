/**
 * /v1/deadletters: listing with filters and cursor pages, requeue (then claim, and the wake-up of
 * a long-poll), purge, and the requests that are refused.
 */
import { sql } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import type { Database } from '../../src/db/database.js'
import type { Activation } from '../../src/domain/types.js'
import { toActivation } from '../../src/domain/activation.js'
import { buildTestApp, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { assertError, untilWaiting, type Test } from '../helpers/requests.js'

interface DeadletterBody {
  task: Activation
  reason: string
  processing_attempts: number
  received_at: string
  deadlettered_at: string
}

function activation (overrides: Partial<Parameters<typeof toActivation>[0]> = {}): Activation {
  return toActivation({
    namespace: 'ns',
    taskname: 'tests.noop',
    retry_state: { attempts: 2, max_attempts: 2, on_attempts_exceeded: 'deadletter' },
    ...overrides
  }, new Date('2024-05-01T10:00:00.000Z'))
}

async function insertDeadletter (database: Database, a: Activation, at: string, reason = 'retries_exhausted'): Promise<void> {
  await database.rows(sql`
    insert into deadletter_tasks (id, activation, application, namespace, taskname, reason, processing_attempts, received_at, deadlettered_at)
    values (${a.id}, ${JSON.stringify(a)}::jsonb, ${a.application}, ${a.namespace}, ${a.taskname},
      ${reason}, 1, ${a.received_at}::timestamptz, ${at}::timestamptz)`)
}

async function list (t: Test, app: FastifyInstance, query = ''): Promise<{ deadletters: DeadletterBody[], next_cursor: string | null }> {
  const res = await app.inject({ method: 'GET', url: `/v1/deadletters${query}` })
  t.equal(res.statusCode, 200, `GET /v1/deadletters${query} answers 200`)
  return res.json()
}

const ids = (body: { deadletters: DeadletterBody[] }) => body.deadletters.map(d => d.task.id)

eachBackend(t, 'dead letters', async (t, backend) => {
  // Waiting claims re-check together once a minute here: a long-poll answered sooner was woken.
  const { app, database } = await buildTestApp(t, backend, { TASKBROKER_CLAIM_RECHECK_MS: '60000' })
  const letter = (a: Activation, at: string, reason?: string) => insertDeadletter(database, a, at, reason)

  await t.test('the list shows each dead letter with its task, reason, attempts and times', async (t) => {
    const a = activation({ id: 'shown', application: 'app', parameters: { amount: 3 }, headers: { h: 'v' }, expires: 30 })
    await letter(a, '2024-05-01T12:00:00.123456Z', 'processing_attempts_exceeded')
    const body = await list(t, app)
    t.same(body, {
      deadletters: [{
        task: a,
        reason: 'processing_attempts_exceeded',
        processing_attempts: 1,
        received_at: '2024-05-01T10:00:00.000Z',
        deadlettered_at: '2024-05-01T12:00:00.123Z'
      }],
      next_cursor: null
    })
    t.equal((await app.inject({ method: 'DELETE', url: '/v1/deadletters/shown' })).statusCode, 204)
  })

  await t.test('filters match application, namespace and taskname exactly', async (t) => {
    await letter(activation({ id: 'f1', application: 'fa', namespace: 'x', taskname: 'one' }), '2024-05-02T00:00:01Z')
    await letter(activation({ id: 'f2', application: 'fa', namespace: 'y', taskname: 'one' }), '2024-05-02T00:00:02Z')
    await letter(activation({ id: 'f3', application: 'fa', namespace: 'x', taskname: 'two' }), '2024-05-02T00:00:03Z')
    await letter(activation({ id: 'f4', application: 'fab', namespace: 'x', taskname: 'one' }), '2024-05-02T00:00:04Z')
    t.same(ids(await list(t, app, '?application=fa')), ['f1', 'f2', 'f3'])
    t.same(ids(await list(t, app, '?application=fa&namespace=x')), ['f1', 'f3'])
    t.same(ids(await list(t, app, '?application=fa&namespace=x&taskname=two')), ['f3'])
    t.same(ids(await list(t, app, '?taskname=one')), ['f1', 'f2', 'f4'])
    t.same(ids(await list(t, app, '?namespace=y')), ['f2'])
    t.same(ids(await list(t, app, '?application=f')), [], 'no prefix match')
    for (const id of ['f1', 'f2', 'f3', 'f4']) await app.inject({ method: 'DELETE', url: `/v1/deadletters/${id}` })
  })

  await t.test('next_cursor walks every page once, in order, with the filter kept', async (t) => {
    const expected: string[] = []
    for (let i = 0; i < 7; i++) {
      const id = `p${i}`
      expected.push(id)
      // Two letters per millisecond: pages must not lose or repeat letters within one.
      await letter(activation({ id, application: 'paged' }), `2024-05-03T00:00:00.00${Math.floor(i / 2)}${i}00Z`)
    }
    await letter(activation({ id: 'other', application: 'unpaged' }), '2024-05-03T00:00:00.001500Z')
    const pages: string[][] = []
    let query = '?application=paged&limit=3'
    for (let i = 0; i < 10; i++) {
      const body = await list(t, app, query)
      pages.push(ids(body))
      if (body.next_cursor === null) break
      t.match(body.next_cursor, /^[A-Za-z0-9_-]+$/, 'the cursor is URL-safe')
      query = `?application=paged&limit=3&cursor=${body.next_cursor}`
    }
    t.same(pages, [['p0', 'p1', 'p2'], ['p3', 'p4', 'p5'], ['p6']], 'three pages, no gaps, no repeats')
    t.same(ids(await list(t, app, '?application=paged')), expected, 'the default limit (100) holds them all')
    t.equal((await list(t, app, '?application=paged&limit=7')).next_cursor, null, 'no cursor when nothing follows')
    for (const id of [...expected, 'other']) await app.inject({ method: 'DELETE', url: `/v1/deadletters/${id}` })
  })

  await t.test('the default page holds 100 dead letters', async (t) => {
    await database.rows(sql`
      insert into deadletter_tasks (id, activation, application, namespace, taskname, reason, processing_attempts, received_at)
      select id, jsonb_set(${JSON.stringify(activation({ application: 'bulk' }))}::jsonb, '{id}', to_jsonb(id)),
        'bulk', 'ns', 'tests.noop', 'reported_failure', 0, now()
      from (select 'bulk-' || lpad(n::text, 3, '0') as id from generate_series(1, 101) n) s`)
    const first = await list(t, app, '?application=bulk')
    t.equal(first.deadletters.length, 100)
    t.type(first.next_cursor, 'string')
    t.equal((await list(t, app, `?application=bulk&cursor=${first.next_cursor}`)).deadletters.length, 1)
    await database.rows(sql`delete from deadletter_tasks where application = 'bulk'`)
  })

  await t.test('a requeued dead letter is claimable at once, with no attempts counted', async (t) => {
    const a = activation({ id: 'again', application: 'rq', delay: 60, expires: 120 })
    await letter(a, '2024-05-04T00:00:00Z')
    const res = await app.inject({ method: 'POST', url: '/v1/deadletters/again/requeue' })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { id: 'again', status: 'pending' })
    t.same(ids(await list(t, app, '?application=rq')), [], 'no longer a dead letter')

    const claim = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'rq', limit: 10 } })
    t.equal(claim.statusCode, 200)
    const [claimed, ...more] = claim.json().tasks
    t.same(more, [])
    t.equal(claimed.id, 'again')
    t.equal(claimed.retry_state.attempts, 0)
    t.equal(claimed.processing_attempts, 0)
    t.equal(claimed.delay, undefined, 'the delay is not applied again')
    const age = Date.now() - Date.parse(claimed.received_at)
    t.ok(age >= 0 && age < 60_000, `received_at is the requeue time (${claimed.received_at as string}, was ${a.received_at})`)
    t.equal((await app.inject({ method: 'POST', url: '/v1/tasks/again/status', payload: { status: 'complete' } })).statusCode, 200)
  })

  await t.test('a requeue wakes a long-poll waiting for its queue', async (t) => {
    await letter(activation({ id: 'waker', application: 'wake', namespace: 'w' }), '2024-05-05T00:00:00Z')
    const pending = Promise.resolve(app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'wake', namespace: 'w', wait_ms: 10_000 } }))
    await untilWaiting(t, app, 1)
    t.equal((await app.inject({ method: 'POST', url: '/v1/deadletters/waker/requeue' })).statusCode, 200)
    // Without a wake-up it would get nothing: its 10 s end before the 60 s re-check.
    const res = await pending
    t.same(res.json().tasks.map((c: { id: string }) => c.id), ['waker'], 'the requeue woke the long-poll')
  })

  await t.test('requeue of an unknown dead letter is 404', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/v1/deadletters/nobody/requeue' })
    assertError(t, res, 404, 'TASKBROKER_DEADLETTER_NOT_FOUND', 'nobody')
    t.equal(res.json().error, 'Not Found')
  })

  await t.test('requeue of an id that is live is 409 and changes nothing', async (t) => {
    const produced = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: 'busy', taskname: 'live.task' })] } })
    t.equal(produced.statusCode, 201)
    await letter(activation({ id: 'busy', taskname: 'dead.task' }), '2024-05-06T00:00:00Z')
    const res = await app.inject({ method: 'POST', url: '/v1/deadletters/busy/requeue' })
    assertError(t, res, 409, 'TASKBROKER_TASK_EXISTS', 'busy')
    t.equal(res.json().error, 'Conflict')
    const dead = await list(t, app, '?taskname=dead.task')
    t.same(ids(dead), ['busy'], 'the dead letter stays')
    const state = (await app.inject({ method: 'GET', url: '/v1/tasks/busy' })).json()
    t.equal(state.task.taskname, 'live.task', 'the live task is untouched')
    t.equal(state.status, 'pending')
    await app.inject({ method: 'DELETE', url: '/v1/deadletters/busy' })
  })

  await t.test('a malformed cursor is 400 naming querystring/cursor', async (t) => {
    const notOurs = Buffer.from(JSON.stringify(['yesterday', 'x'])).toString('base64url')
    for (const cursor of ['abc', notOurs, 'a.b', '%2B%2F']) {
      const res = await app.inject({ method: 'GET', url: `/v1/deadletters?cursor=${cursor}` })
      assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST', 'querystring/cursor')
    }
  })

  await t.test('other bad list requests are 400 naming the field', async (t) => {
    assertError(t, await app.inject({ method: 'GET', url: '/v1/deadletters?limit=0' }), 400, 'TASKBROKER_INVALID_REQUEST', 'querystring/limit')
    assertError(t, await app.inject({ method: 'GET', url: '/v1/deadletters?limit=1001' }), 400, 'TASKBROKER_INVALID_REQUEST', 'querystring/limit')
    assertError(t, await app.inject({ method: 'GET', url: '/v1/deadletters?limit=ten' }), 400, 'TASKBROKER_INVALID_REQUEST', 'querystring/limit')
    assertError(t, await app.inject({ method: 'GET', url: '/v1/deadletters?app=x' }), 400, 'TASKBROKER_INVALID_REQUEST', 'querystring/app is not a known field')
  })

  await t.test('delete purges a dead letter: 204, then 404', async (t) => {
    await letter(activation({ id: 'purge-me', application: 'purge' }), '2024-05-07T00:00:00Z')
    await letter(activation({ id: 'keep-me', application: 'purge' }), '2024-05-07T00:00:01Z')
    const res = await app.inject({ method: 'DELETE', url: '/v1/deadletters/purge-me' })
    t.equal(res.statusCode, 204)
    t.equal(res.body, '', 'no body')
    t.same(ids(await list(t, app, '?application=purge')), ['keep-me'])
    assertError(t, await app.inject({ method: 'DELETE', url: '/v1/deadletters/purge-me' }), 404, 'TASKBROKER_DEADLETTER_NOT_FOUND', 'purge-me')
    t.equal((await app.inject({ method: 'GET', url: '/v1/tasks/purge-me' })).statusCode, 404, 'and it is not a task either')
    assertError(t, await app.inject({ method: 'POST', url: '/v1/deadletters/purge-me/requeue' }), 404, 'TASKBROKER_DEADLETTER_NOT_FOUND')
  })
})
