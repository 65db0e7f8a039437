/**
 * Dates a producer sends are a client's business: a `received_at` no store can hold is a 400 naming
 * the field (never a 500), a `received_at` in the future never parks a task beyond the broker's
 * own `now + delay`, and a statement that does fail is logged without the task's parameters.
 */
import { Writable } from 'node:stream'
import { sql } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { buildTestApp, NO_UPKEEP, task, testConfig, testStore } from '../helpers/app.js'
import { createTestDatabase, eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { assertError } from '../helpers/requests.js'

keepAlive(t)

function produce (app: FastifyInstance, tasks: unknown[]) {
  return app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks } })
}

async function stored (app: FastifyInstance): Promise<number> {
  const res = await app.inject({ method: 'GET', url: '/v1/stats' })
  return Object.values(res.json().by_status as Record<string, number>).reduce((a, b) => a + b, 0)
}

async function state (app: FastifyInstance, id: string) {
  return (await app.inject({ method: 'GET', url: `/v1/tasks/${id}` })).json()
}

eachBackend(t, 'dates no store can hold are a 400 naming the field', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['a leap second', { received_at: '2016-12-31T23:59:60Z' }, /^body\/tasks\/1\/received_at .*second 60/],
    ['year 0000', { received_at: '0000-01-01T00:00:00Z' }, /^body\/tasks\/1\/received_at is outside 0001-01-01/],
    ['year 0000 through an offset', { received_at: '0001-01-01T00:30:00+01:00' }, /^body\/tasks\/1\/received_at is outside/],
    ['the last second of 9999 with a delay', { received_at: '9999-12-31T23:59:59Z', delay: 10 }, /^body\/tasks\/1\/received_at plus delay/],
    ['the last second of 9999 with an expiry', { received_at: '9999-12-31T23:59:59Z', expires: 10 }, /^body\/tasks\/1\/received_at plus expires/]
  ]
  for (const [name, fields, message] of cases) {
    // A good task first: the whole request is refused, nothing of it stored.
    const res = await produce(app, [task({ id: `ok-${name}` }), task({ id: `bad-${name}`, ...fields })])
    assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST', message)
  }
  t.equal(await stored(app), 0, 'no task of a refused request was stored')

  const edges = await produce(app, [
    task({ id: 'first', received_at: '0001-01-01T00:00:00Z' }),
    task({ id: 'last', received_at: '9999-12-31T23:59:59.999Z' }),
    task({ id: 'offset', received_at: '2016-12-31 23:59:59.5-01:30' })
  ])
  t.equal(edges.statusCode, 201, 'the first and last instants, and an offset, are accepted')
  t.equal((await state(app, 'first')).task.received_at, '0001-01-01T00:00:00.000Z')
  t.equal((await state(app, 'last')).task.received_at, '9999-12-31T23:59:59.999Z')
  t.equal((await state(app, 'offset')).task.received_at, '2017-01-01T01:29:59.500Z', 'stored in UTC')
})

eachBackend(t, 'a received_at in the future: delay and expiry count from the broker\'s clock', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const before = Date.now()
  const res = await produce(app, [
    task({ id: 'future-delay', received_at: '9000-01-01T00:00:00Z', delay: 10 }),
    task({ id: 'future-expires', received_at: '9000-01-01T00:00:00Z', expires: 60 }),
    task({ id: 'past-delay', received_at: new Date(before - 4_000).toISOString(), delay: 10 })
  ])
  t.equal(res.statusCode, 201)
  const after = Date.now()

  const delayed = await state(app, 'future-delay')
  t.equal(delayed.status, 'delay')
  t.equal(delayed.task.received_at, '9000-01-01T00:00:00.000Z', 'the activation keeps the producer\'s received_at')
  const until = Date.parse(delayed.delay_until)
  t.ok(until >= before + 10_000 && until <= after + 10_000, `delay_until is now + 10 s (${delayed.delay_until})`)
  const expiresAt = Date.parse((await state(app, 'future-expires')).expires_at)
  t.ok(expiresAt >= before + 60_000 && expiresAt <= after + 60_000, 'expires_at is now + 60 s')
  const past = Date.parse((await state(app, 'past-delay')).delay_until)
  t.ok(past <= after + 6_000, 'a received_at in the past still counts from received_at (upstream)')

  await app.broker.upkeep.runOnce(new Date(after + 11_000))
  t.equal((await state(app, 'future-delay')).status, 'pending', 'pending once 10 s of the broker\'s clock passed')
})

eachBackend(t, 'a failed statement is logged without the task\'s parameters', async (t, backend) => {
  const { database } = await createTestDatabase(t, backend)
  // A store that refuses one task name: the produce statement fails, as any unforeseen error would.
  await database.rows(sql.raw(`create or replace function tb_test_refuse() returns trigger language plpgsql as $$
    begin if new.taskname = 'tests.refused' then raise exception 'refused on purpose'; end if; return new; end $$`))
  await database.rows(sql.raw('create trigger tb_test_refuse before insert on inflight_tasks for each row execute function tb_test_refuse()'))
  t.teardown(async () => {
    await database.rows(sql.raw('drop trigger if exists tb_test_refuse on inflight_tasks')).catch(() => {})
    await database.rows(sql.raw('drop function if exists tb_test_refuse()')).catch(() => {})
  })
  const lines: string[] = []
  const sink = new Writable({ write (chunk, _encoding, done) { lines.push(String(chunk)); done() } })
  const config = testConfig({ ...NO_UPKEEP, LOG_LEVEL: 'info' })
  const app = await buildApp(config, { store: testStore(database, config), logger: pino({ level: 'info' }, sink) })
  t.teardown(() => app.close())

  const res = await produce(app, [task({ taskname: 'tests.refused', parameters: { card: 'SECRET-4242' }, headers: { h: 'SECRET-HEADER' } })])
  assertError(t, res, 500, 'TASKBROKER_INTERNAL', 'Internal Server Error')
  const errors = lines.filter(l => JSON.parse(l).level >= 50)
  t.ok(errors.length > 0, 'the failure is logged')
  t.match(errors.join(''), /refused on purpose/, 'with the database\'s message')
  t.notMatch(lines.join(''), /SECRET|insert into/, 'no parameter, header or statement text in any log line')
})
