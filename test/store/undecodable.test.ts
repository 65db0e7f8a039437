/**
 * Poison rows: a stored activation that cannot be decoded as a task (written by hand or by another
 * version) never fails a claim. The claim moves it to the dead letters with the reason and serves
 * the good tasks it claimed beside it; the dead-letter list still shows it (as stored), a requeue
 * of it is refused, a read of it is a 409, and nothing answers 500.
 */
import { sql } from 'drizzle-orm'
import t from 'tap'
import type { Database } from '../../src/db/database.js'
import { undecodableReason } from '../../src/domain/undecodable.js'
import { toActivation } from '../../src/domain/activation.js'
import { buildTestApp, task } from '../helpers/app.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { eachBackend } from '../helpers/database.js'
import { fakeWorker, produce, startPushApp, until } from '../push/helpers.js'

keepAlive(t)

const good = () => toActivation({ id: 'g', namespace: 'ns', taskname: 'x', parameters: { n: 1 }, retry_state: { max_attempts: 3, delay_on_retry: 5 } }, new Date('2024-01-02T03:04:05Z'))

/** Stored activations that cannot be decoded, by id. */
const POISON: Record<string, unknown> = {
  'poison-scalar': 5,
  'poison-array': [1, 2],
  'poison-string': 'hello',
  'poison-null-json': null,
  'poison-missing': { id: 'poison-missing', application: 'app', namespace: 'ns' },
  'poison-retry': { ...good(), id: 'poison-retry', application: 'app', retry_state: 'three times' },
  'poison-types': { ...good(), id: 'poison-types', application: 'app', processing_deadline_duration: '60' },
  'poison-other-id': { ...good(), id: 'someone-else', application: 'app' }
}

async function insertPoison (database: Database): Promise<void> {
  for (const [id, activation] of Object.entries(POISON)) {
    // Older than anything produced afterwards: claims reach these first.
    await database.rows(sql`
      insert into inflight_tasks (id, activation, added_at, received_at, processing_deadline_duration, status, application, namespace, taskname)
      values (${id}, ${JSON.stringify(activation)}::jsonb, now() - interval '1 hour', now(), 60, 'pending', 'app', 'ns', 'poison.task')`)
  }
}

t.test('undecodableReason: a produced activation decodes; each broken field is named', async (t) => {
  const activation = good()
  t.equal(undecodableReason(activation, 'g'), null, 'a produced activation decodes')
  t.equal(undecodableReason({ ...activation, expires: 10, delay: 0 }, 'g'), null, 'optional fields')
  const cases: Array<[unknown, RegExp]> = [
    [5, /is a number, not an object/],
    [[activation], /is an array/],
    [null, /is null/],
    [{ ...activation, id: 'h' }, /^activation\/id is not the id of the task$/],
    [{ ...activation, application: 1 }, /^activation\/application /],
    [{ ...activation, namespace: null }, /^activation\/namespace /],
    [{ ...activation, taskname: {} }, /^activation\/taskname /],
    [(({ parameters, ...rest }) => rest)(activation), /^activation\/parameters is missing$/],
    [{ ...activation, headers: [] }, /^activation\/headers is not an object$/],
    [{ ...activation, headers: { a: 1 } }, /^activation\/headers has a value/],
    [{ ...activation, received_at: 'yesterday' }, /^activation\/received_at /],
    [{ ...activation, processing_deadline_duration: 1.5 }, /^activation\/processing_deadline_duration /],
    [{ ...activation, expires: '10' }, /^activation\/expires /],
    [{ ...activation, delay: true }, /^activation\/delay /],
    [{ ...activation, retry_state: null }, /^activation\/retry_state is not an object$/],
    [{ ...activation, retry_state: { ...activation.retry_state, attempts: '0' } }, /^activation\/retry_state\/attempts /],
    [{ ...activation, retry_state: { ...activation.retry_state, max_attempts: undefined } }, /^activation\/retry_state\/max_attempts /],
    [{ ...activation, retry_state: { ...activation.retry_state, on_attempts_exceeded: 'retry' } }, /^activation\/retry_state\/on_attempts_exceeded /],
    [{ ...activation, retry_state: { ...activation.retry_state, at_most_once: 'no' } }, /^activation\/retry_state\/at_most_once /],
    [{ ...activation, retry_state: { ...activation.retry_state, delay_on_retry: -0.5 } }, /^activation\/retry_state\/delay_on_retry /]
  ]
  for (const [value, reason] of cases) t.match(undecodableReason(value, 'g'), reason, `${JSON.stringify(value)?.slice(0, 60)} → ${String(reason)}`)
})

eachBackend(t, 'a claim dead-letters undecodable tasks with the reason and still serves the good ones', async (t, backend) => {
  const { app, database } = await buildTestApp(t, backend, { TASKBROKER_UPKEEP_ENABLED: 'false' })
  await insertPoison(database)
  const produced = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: 'good-1', application: 'app' }), task({ id: 'good-2', application: 'app' })] } })
  t.equal(produced.statusCode, 201)

  const read = await app.inject('/v1/tasks/poison-retry')
  t.equal(read.statusCode, 409, 'reading an undecodable task is a 409, not a 500')
  t.match(read.json(), { code: 'TASKBROKER_TASK_UNDECODABLE', message: /activation\/retry_state is not an object/ })

  const claim = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'app', limit: 20 } })
  t.equal(claim.statusCode, 200, 'the claim succeeds')
  t.same(claim.json().tasks.map((x: { id: string }) => x.id), ['good-1', 'good-2'], 'it serves the good tasks, oldest first')

  const rows = await database.rows(sql`select id, reason from deadletter_tasks order by id`)
  t.same(rows.map(r => r.id), Object.keys(POISON).sort(), 'every undecodable task is a dead letter now')
  for (const row of rows) t.match(row.reason, /^undecodable_activation: ./, `${String(row.id)}: ${String(row.reason)}`)
  const live = await database.rows(sql`select id, status from inflight_tasks order by id`)
  t.same(live, [{ id: 'good-1', status: 'processing' }, { id: 'good-2', status: 'processing' }], 'only the good tasks are left, processing')

  const listed = await app.inject('/v1/deadletters?limit=100')
  t.equal(listed.statusCode, 200, 'the dead-letter list still answers')
  const letters = listed.json().deadletters as Array<{ task: { id: string, application: string, taskname: string, parameters: unknown }, stored_activation?: unknown, reason: string }>
  t.equal(letters.length, Object.keys(POISON).length)
  for (const letter of letters) {
    t.same(letter.stored_activation, POISON[letter.task.id], `${letter.task.id}: stored_activation is the value as stored`)
    t.match(letter.task, { application: 'app', taskname: 'poison.task', parameters: null }, `${letter.task.id}: task rebuilt from the columns`)
  }
  const requeue = await app.inject({ method: 'POST', url: '/v1/deadletters/poison-scalar/requeue' })
  t.equal(requeue.statusCode, 409, 'an undecodable dead letter cannot be requeued')
  t.equal(requeue.json().code, 'TASKBROKER_DEADLETTER_UNDECODABLE')
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/deadletters/poison-scalar' })).statusCode, 204, 'it can be purged')
})

eachBackend(t, 'a status report with fetch_next dead-letters an undecodable next task and hands out a good one', async (t, backend) => {
  for (const batching of ['true', 'false']) {
    const { app, database } = await buildTestApp(t, backend, { TASKBROKER_UPKEEP_ENABLED: 'false', TASKBROKER_STATUS_BATCHING: batching })
    await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: `first-${batching}`, application: 'app' })] } })
    const first = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'app' } })
    t.equal(first.json().tasks[0].id, `first-${batching}`)
    await insertPoison(database)
    await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: `next-${batching}`, application: 'app' })] } })
    let next: string | null = null
    // Each report claims one task: poison ones are dead-lettered until the good one comes.
    for (let i = 0; i < Object.keys(POISON).length + 1 && next === null; i++) {
      const res = await app.inject({ method: 'POST', url: `/v1/tasks/first-${batching}/status`, payload: { status: 'retry', fetch_next: { application: 'app' } } })
      t.equal(res.statusCode, 200, `report ${i + 1} (batching ${batching}) answered 200`)
      next = res.json().task?.id ?? null
    }
    t.equal(next, `next-${batching}`, `batching ${batching}: the good task is handed out`)
    const dead = await database.rows(sql`select count(*)::int as n from deadletter_tasks where reason like 'undecodable_activation:%'`)
    t.equal(dead[0]?.n, Object.keys(POISON).length, `batching ${batching}: the undecodable tasks are dead letters`)
    await database.rows(sql`truncate table inflight_tasks, deadletter_tasks`)
  }
})

/** Retry reports whose stored activation the retry step cannot read, by id. */
const RETRY_POISON: Record<string, unknown> = {
  'retry-scalar': 5,
  'retry-string': 'hello',
  'retry-state-string': { ...good(), id: 'retry-state-string', application: 'app', retry_state: 'three times' },
  'retry-state-missing': { ...good(), id: 'retry-state-missing', application: 'app', retry_state: undefined },
  'retry-attempts-text': { ...good(), id: 'retry-attempts-text', application: 'app', retry_state: { ...good().retry_state, attempts: '1' } },
  'retry-max-fraction': { ...good(), id: 'retry-max-fraction', application: 'app', retry_state: { ...good().retry_state, max_attempts: 2.5 } },
  'retry-max-huge': { ...good(), id: 'retry-max-huge', application: 'app', retry_state: { ...good().retry_state, max_attempts: 1e12 } },
  'retry-delay-text': { ...good(), id: 'retry-delay-text', application: 'app', retry_state: { ...good().retry_state, delay_on_retry: 'soon' } },
  'retry-expires-object': { ...good(), id: 'retry-expires-object', application: 'app', expires: {} }
}

eachBackend(t, 'a retry of a task whose activation cannot be read dead-letters it; the retry step still serves every other task', async (t, backend) => {
  const { app, database } = await buildTestApp(t, backend, { TASKBROKER_UPKEEP_ENABLED: 'false' })
  await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: 'ok-1', application: 'app', retry_state: { max_attempts: 3 } }), task({ id: 'ok-2', application: 'app', retry_state: { max_attempts: 3, delay_on_retry: 30 } })] } })
  const claimed = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'app', limit: 2 } })
  t.equal(claimed.json().tasks.length, 2)
  for (const [id, activation] of Object.entries(RETRY_POISON)) {
    await database.rows(sql`
      insert into inflight_tasks (id, activation, added_at, received_at, processing_deadline_duration, status, application, namespace, taskname, on_attempts_exceeded)
      values (${id}, ${JSON.stringify(activation)}::jsonb, now(), now(), 60, 'processing', 'app', 'ns', 'poison.task', 'discard')`)
  }
  // The reports of the poison tasks (retry fields included, which patch retry_state) and of the
  // good ones, in one request: the flush must write them all.
  // (A report's max_attempts would repair a bad one: those two are reported without it.)
  const reports = [...Object.keys(RETRY_POISON), 'ok-1', 'ok-2'].map(id => id.startsWith('retry-max-') ? { id, status: 'retry' } : { id, status: 'retry', max_attempts: 4 })
  const reported = await app.inject({ method: 'POST', url: '/v1/tasks/status', payload: { updates: reports } })
  t.equal(reported.statusCode, 200, 'the status flush is not failed by a poison row')
  t.same(reported.json(), { applied: reports.length, queued: 0, not_found: [] }, 'every report applied')

  const pass = await app.broker.upkeep.runOnce(new Date())
  t.same(Object.keys(pass.errors), [], 'no upkeep job failed')
  const live = await database.rows(sql`select id, status, activation -> 'retry_state' ->> 'attempts' as attempts from inflight_tasks order by id`)
  t.same(live, [{ id: 'ok-1', status: 'pending', attempts: '1' }, { id: 'ok-2', status: 'delay', attempts: '1' }], 'the good tasks were retried')
  const patched = await database.rows(sql`select activation -> 'retry_state' ->> 'max_attempts' as max from inflight_tasks where id = 'ok-1'`)
  t.equal(patched[0]?.max, '4', 'the retry fields of a good report were written')
  const dead = await database.rows(sql`select id, reason from deadletter_tasks order by id`)
  t.same(dead.map(r => r.id), Object.keys(RETRY_POISON).sort(), 'every unreadable retry is a dead letter, whatever its on_attempts_exceeded')
  const reasons = Object.fromEntries(dead.map(r => [r.id as string, r.reason as string]))
  t.match(reasons, {
    'retry-scalar': 'undecodable_activation: the activation is not an object',
    'retry-string': 'undecodable_activation: the activation is not an object',
    'retry-state-string': 'undecodable_activation: activation/retry_state is not an object',
    'retry-state-missing': 'undecodable_activation: activation/retry_state is not an object',
    'retry-attempts-text': 'undecodable_activation: activation/retry_state/attempts is not an integer',
    'retry-max-fraction': 'undecodable_activation: activation/retry_state/max_attempts is not an integer',
    'retry-max-huge': 'undecodable_activation: activation/retry_state/max_attempts is not an integer',
    'retry-delay-text': 'undecodable_activation: activation/retry_state/delay_on_retry is not an integer',
    'retry-expires-object': 'undecodable_activation: activation/expires is not an integer'
  })
  const stored = await database.rows(sql`select activation from deadletter_tasks where id = 'retry-state-string'`)
  t.same(stored[0]?.activation, RETRY_POISON['retry-state-string'], 'an activation the report could not patch is kept as stored')
})

eachBackend(t, 'push mode: a fetch dead-letters undecodable tasks and pushes the good ones', async (t, backend) => {
  const worker = await fakeWorker(t)
  const { app, database } = await startPushApp(t, backend, { TASKBROKER_WORKER_MAP: `app=${worker.url}` })
  await insertPoison(database)
  const ids = await produce(t, app, [task({ id: 'push-good-1', application: 'app' }), task({ id: 'push-good-2', application: 'app' })])
  await until(t, 'the good tasks are pushed', () => worker.accepted.length === 2)
  await until(t, 'the undecodable tasks are dead letters', async () =>
    (await database.rows(sql`select count(*)::int as n from deadletter_tasks where reason like 'undecodable_activation:%'`))[0]?.n === Object.keys(POISON).length)
  t.same(worker.received.map(p => p.task.id).sort(), ids.sort(), 'only the good tasks reached the worker')
  t.same((await database.rows(sql`select id from inflight_tasks order by id`)).map(r => r.id), ids.sort(), 'no poison row is left to be claimed again')
})
