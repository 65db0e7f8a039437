/**
 * The status routes under hostile input: POST /v1/tasks/{id}/status and POST /v1/tasks/status.
 * Values of any type in every field, huge strings, deep nesting, odd path parameters, unicode,
 * NUL bytes, duplicate ids and oversized batches. See kit.test.ts for the invariants checked on
 * every request.
 *
 * The store is seeded with nothing claimable and reports go to unknown ids (or carry an unknown
 * field when they name a seeded task), so even an accepted request must leave the store as it
 * was: every request here is checked against the fingerprint, accepted or not.
 *
 * A status report with a NUL in its id poisons the status batcher (see the last tests): the
 * properties that send NULs to the status routes therefore get a fresh broker per input, and the
 * other status properties leave NUL out of their ids.
 */
import { sql } from 'drizzle-orm'
import fc from 'fast-check'
import pino from 'pino'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import type { Database } from '../../src/db/database.js'
import { testConfig, testStore } from '../helpers/app.js'
import {
  HOSTILE_ENV, assertHealthy, brokenSegment, buildHostileApp, deepJson, deepSpec, fingerprint, holds, hugeString, keepAlive, longSegment,
  nulSegment, oddSegment, oddUnicode, percentEncode, probe, reportCounts, seed, withLoneSurrogate, withNul, wrongValue,
  type Ctx, type Expect, type Req
} from './kit.test.js'

keepAlive(t)
reportCounts(t, 'status.test.ts')

const STATUS = 'POST /v1/tasks/{id}/status'
const BATCH = 'POST /v1/tasks/status'

let sequence = 0
const unknownId = () => `zz-unknown-${++sequence}`

/**
 * Sends the request and checks the answer; nothing stored may change whatever the answer, since
 * nothing is claimable and no report names a task that could take it.
 */
const probeUnchanged = (ctx: Ctx, route: string, req: Req, expect: Expect) => probe(ctx, route, req, { ...expect, unchanged: true })

/** A broker of its own on the shared store, closed when `fn` ends (for inputs that break a broker for good). */
async function withFreshBroker (database: Database, fn: (ctx: Ctx) => Promise<void>): Promise<void> {
  const config = testConfig({ ...HOSTILE_ENV, TASKBROKER_STATUS_ACK_TIMEOUT_MS: '200', TASKBROKER_SHUTDOWN_TIMEOUT_MS: '100' })
  const app = await buildApp(config, { store: testStore(database, config), logger: pino({ level: 'silent' }) })
  try {
    await fn({ app, database })
  } finally {
    await app.close()
  }
}

const json = (url: string, payload: unknown): Req =>
  ({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) ?? '' })

t.test('status routes under hostile input', async (t) => {
  const ctx = await buildHostileApp(t)
  const { app } = ctx
  const seeds = await seed(ctx)
  const seeded = await seeds.snapshot()
  t.afterEach(async () => {
    await assertHealthy(app)
    t.equal(await seeds.snapshot(), seeded, 'the seeded tasks and dead letters are unchanged')
  })

  // ---------------------------------------------------------------------------------------------
  // POST /v1/tasks/{id}/status

  const STATUS_FIELDS = ['status', 'max_attempts', 'delay_on_retry', 'fetch_next', 'fetch_next.application', 'fetch_next.namespace'] as const
  const statusField = fc.oneof(
    fc.constantFrom<string>(...STATUS_FIELDS),
    fc.string({ minLength: 1, maxLength: 20 }).filter(k => !(STATUS_FIELDS as readonly string[]).includes(k) && k !== '__proto__' && !k.includes('.'))
  )
  const statusBase = (): Record<string, unknown> => ({ status: 'retry', max_attempts: 3, delay_on_retry: 5, fetch_next: { application: 'zz-none', namespace: 'zz' } })
  const withField = (body: Record<string, unknown>, field: string, value: unknown) => {
    const [outer, inner] = field.split('.') as [string, string | undefined]
    if (inner === undefined) body[outer] = value
    else body[outer] = { ...(body[outer] as object), [inner]: value }
    return body
  }
  const fieldName = (field: string) => `body/${field.replace('.', '/')}`

  await t.test('status: a value of any type in any body field is refused naming the field, or reports to an unknown id', async (t) => {
    await holds(t, 'status wrong types', 150, [statusField, wrongValue], async (field, value) => {
      const body = withField(statusBase(), field, value)
      const expect = { ok: [200], field: value === undefined ? 'body/' : fieldName(field) }
      await probeUnchanged(ctx, STATUS, json(`/v1/tasks/${unknownId()}/status`, body), expect)
    })
    await holds(t, 'status body of any type', 100, [wrongValue], async (value) => {
      await probeUnchanged(ctx, STATUS, json(`/v1/tasks/${unknownId()}/status`, value), { ok: [200], field: 'body' })
    })
    await holds(t, 'status for a seeded task with a refused body leaves it as it was', 80,
      [fc.constantFrom(...seeds.tasks), statusField, wrongValue, fc.string({ minLength: 1, maxLength: 10 }).filter(k => !(STATUS_FIELDS as readonly string[]).includes(k) && k !== '__proto__' && !k.includes('.'))],
      async (id, field, value, unknown) => {
        const body = withField({ ...statusBase(), [unknown]: true }, field, value)
        await probeUnchanged(ctx, STATUS, json(`/v1/tasks/${id}/status`, body), { field: 'body' })
      })
  })

  await t.test('status: huge strings and deep nesting in the body are refused naming the field', async (t) => {
    await holds(t, 'status huge strings', 40, [fc.constantFrom('status', 'fetch_next.application', 'fetch_next.namespace'), hugeString(256, 100_000)], async (field, text) => {
      await probeUnchanged(ctx, STATUS, json(`/v1/tasks/${unknownId()}/status`, withField(statusBase(), field, text)), { field: fieldName(field) })
    })
    await holds(t, 'status deep nesting', 30, [fc.constantFrom('status', 'max_attempts', 'fetch_next', 'unknown', 'body'), deepSpec(1000, 20_000)], async (field, { depth, kind }) => {
      const deep = deepJson(depth, kind)
      const payload = field === 'body' ? deep : `{"status":"complete","${field}":${deep}}`.replace('"status":"complete","status"', '"status"')
      const req: Req = { method: 'POST', url: `/v1/tasks/${unknownId()}/status`, headers: { 'content-type': 'application/json' }, payload }
      await probeUnchanged(ctx, STATUS, req, { field: field === 'body' ? 'body' : `body/${field}` })
    })
    await holds(t, 'status awkward unicode in fetch_next', 40, [fc.constantFrom('fetch_next.application', 'fetch_next.namespace'), oddUnicode], async (field, text) => {
      await probeUnchanged(ctx, STATUS, json(`/v1/tasks/${unknownId()}/status`, withField(statusBase(), field, text)), { ok: [200] })
    })
  })

  await t.test('status: odd path parameters (.., encoded slashes, unicode, reserved characters) report to no task or are refused', async (t) => {
    await holds(t, 'status odd ids', 60, [oddSegment, fc.constantFrom('complete', 'failure', 'retry')], async (segment, status) => {
      await probeUnchanged(ctx, STATUS, json(`/v1/tasks/zz${segment}/status`, { status }), { ok: [200] })
      await probeUnchanged(ctx, STATUS, json(`/v1/tasks/${segment}/status`, { status }), { ok: [200] })
    })
  })

  await t.test('status: an id of 101–100,000 characters is answered with a TASKBROKER_ error (ids up to 255 are valid tasks)', async (t) => {
    await holds(t, 'status long ids', 20, [longSegment], async (segment) => {
      await probeUnchanged(ctx, STATUS, json(`/v1/tasks/${segment}/status`, { status: 'complete' }), { ok: [200] })
    })
  })

  await t.test('status: a path with broken percent-encoding is answered with a TASKBROKER_ error', async (t) => {
    await holds(t, 'status broken percent-encoding', 40, [brokenSegment], async (segment) => {
      await probeUnchanged(ctx, STATUS, json(`/v1/tasks/zz${segment}/status`, { status: 'complete' }), {})
    })
  })

  // ---------------------------------------------------------------------------------------------
  // POST /v1/tasks/status

  const UPDATE_FIELDS = ['id', 'status', 'max_attempts', 'delay_on_retry'] as const
  const updateField = fc.oneof(
    fc.constantFrom<string>(...UPDATE_FIELDS),
    fc.string({ minLength: 1, maxLength: 20 }).filter(k => !(UPDATE_FIELDS as readonly string[]).includes(k) && k !== '__proto__')
  )
  const update = (): Record<string, unknown> => ({ id: unknownId(), status: 'retry', max_attempts: 2, delay_on_retry: 1 })

  await t.test('batch status: a value of any type in any field of any update is refused naming it, or reports to unknown ids', async (t) => {
    await holds(t, 'batch wrong types', 150, [fc.integer({ min: 1, max: 5 }), fc.nat(), updateField, wrongValue], async (size, at, field, value) => {
      const index = at % size
      const updates = Array.from({ length: size }, update)
      ;(updates[index] as Record<string, unknown>)[field] = value
      if (field === 'id' && typeof value === 'string' && (seeds.tasks.includes(value) || value.includes('\u0000'))) return
      await probeUnchanged(ctx, BATCH, json('/v1/tasks/status', { updates }), { ok: [200], field: `body/updates/${index}/${field}` })
    })
    await holds(t, 'batch body or updates of any type', 100, [wrongValue, fc.boolean()], async (value, whole) => {
      const req = json('/v1/tasks/status', whole ? value : { updates: value })
      await probeUnchanged(ctx, BATCH, req, { ok: [200], field: whole ? 'body' : 'body/updates' })
    })
    await holds(t, 'batch naming seeded tasks with one refused update leaves them as they were', 60,
      [fc.array(fc.constantFrom(...seeds.tasks), { minLength: 1, maxLength: 10 }), updateField, wrongValue.filter(v => v !== undefined)],
      async (ids, field, value) => {
        const updates: Array<Record<string, unknown>> = ids.map(id => ({ id, status: 'complete' }))
        updates.push({ id: unknownId(), status: 'complete', [field === 'id' || field === 'status' ? 'zz' : field]: value, zz: true })
        await probeUnchanged(ctx, BATCH, json('/v1/tasks/status', { updates }), { field: `body/updates/${updates.length - 1}` })
      })
  })

  await t.test('batch status: duplicate and odd ids are answered 200 listing them as not found, once each', async (t) => {
    await holds(t, 'batch duplicate and unicode ids', 50,
      [fc.array(fc.oneof(fc.constantFrom('zz-a', 'zz-b', 'zz-c'), oddUnicode.map(s => `zz${s}`)), { minLength: 1, maxLength: 40 })],
      async (ids) => {
        const req = json('/v1/tasks/status', { updates: ids.map(id => ({ id, status: 'failure' })) })
        const before = await fingerprint(ctx.database)
        const { res } = await probe(ctx, BATCH, req, { ok: [200] })
        if (res.statusCode !== 200) return
        const body = res.json() as { applied: number, not_found: string[] }
        const distinct = [...new Set(ids.filter(id => [...id].length <= 255))]
        if (body.applied !== 0 || body.not_found.length !== distinct.length || !distinct.every(id => body.not_found.includes(id))) {
          throw new Error(`expected every distinct id once in not_found: ${res.body.slice(0, 300)}`)
        }
        if (await fingerprint(ctx.database) !== before) throw new Error('the store changed')
      })
  })

  await t.test('batch status: huge ids, deep nesting and more than 1,000 updates are refused naming the field', async (t) => {
    await holds(t, 'batch huge ids', 30, [hugeString(256, 100_000)], async (id) => {
      await probeUnchanged(ctx, BATCH, json('/v1/tasks/status', { updates: [update(), { id, status: 'complete' }] }), { field: 'body/updates/1/id' })
    })
    await holds(t, 'batch deep nesting', 30, [fc.constantFrom('updates', 'update', 'id', 'body'), deepSpec(1000, 20_000)], async (where, { depth, kind }) => {
      const deep = deepJson(depth, kind)
      const payloads = { updates: `{"updates":${deep}}`, update: `{"updates":[${deep}]}`, id: `{"updates":[{"id":${deep},"status":"complete"}]}`, body: deep }
      const req: Req = { method: 'POST', url: '/v1/tasks/status', headers: { 'content-type': 'application/json' }, payload: payloads[where] }
      await probeUnchanged(ctx, BATCH, req, { field: where === 'body' ? 'body' : 'body/updates' })
    })
    await holds(t, 'batch of more than 1,000 updates', 5, [fc.integer({ min: 1001, max: 1500 })], async (size) => {
      const updates = Array.from({ length: size }, (_, i) => ({ id: i < 10 ? (seeds.tasks[i % seeds.tasks.length] as string) : unknownId(), status: 'complete' }))
      await probeUnchanged(ctx, BATCH, json('/v1/tasks/status', { updates }), { field: 'body/updates' })
    })
    await holds(t, 'batch lone surrogates in ids', 40, [withLoneSurrogate], async (id) => {
      await probeUnchanged(ctx, BATCH, json('/v1/tasks/status', { updates: [{ id: `zz${id}`, status: 'complete' }] }), { ok: [200], field: 'body/updates/0/id' })
    })
  })

  // ---------------------------------------------------------------------------------------------
  // NUL bytes in the status routes: each input gets a broker of its own (see the file comment).

  await t.test('a NUL in a status report (path id, batch id, fetch_next filter) is refused with 400 or reports to no task; later reports still work', async (t) => {
    const nulCase = (req: Req, route: string, field: string) => withFreshBroker(ctx.database, async (fresh) => {
      await probeUnchanged(fresh, route, req, { ok: [200], field })
      const next = await fresh.app.inject({ method: 'POST', url: `/v1/tasks/${unknownId()}/status`, payload: { status: 'complete' } })
      if (next.statusCode !== 200) throw new Error(`the next, valid report is answered ${next.statusCode} ${next.body}`)
    })
    await holds(t, 'NUL in the path id', 8, [nulSegment], (segment) =>
      nulCase(json(`/v1/tasks/${segment}/status`, { status: 'complete' }), STATUS, 'params/id'))
    await holds(t, 'NUL in a batch id', 8, [withNul], (id) =>
      nulCase(json('/v1/tasks/status', { updates: [{ id, status: 'failure' }] }), BATCH, 'body/updates/0/id'))
    await holds(t, 'NUL in fetch_next', 8, [fc.constantFrom('application', 'namespace'), withNul], (field, text) =>
      nulCase(json(`/v1/tasks/${unknownId()}/status`, { status: 'complete', fetch_next: { application: 'zz', [field]: text } }), STATUS, `body/fetch_next/${field}`))
  })

  await t.test('a report with a NUL id must not block the reports queued after it (a seeded task completes)', async (t) => {
    t.teardown(async () => { await ctx.database.rows(sql`delete from inflight_tasks where id = 'victim'`) })
    await withFreshBroker(ctx.database, async (fresh) => {
      const produced = await fresh.app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [{ id: 'victim', application: 'victims', namespace: 'ns', taskname: 'x' }] } })
      t.equal(produced.statusCode, 201)
      const claimed = await fresh.app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'victims' } })
      t.equal(claimed.json().tasks.length, 1, 'the victim task is processing')
      const poison = await fresh.app.inject({ method: 'POST', url: '/v1/tasks/status', payload: { updates: [{ id: 'poison\u0000', status: 'complete' }] } })
      t.ok(poison.statusCode < 500, `the NUL report is answered ${poison.statusCode} (not a 5xx)`)
      const victim = await fresh.app.inject({ method: 'POST', url: '/v1/tasks/victim/status', payload: { status: 'complete' } })
      t.equal(victim.statusCode, 200, `the next report for a real task is answered 200 (got ${victim.statusCode} ${victim.body})`)
      t.equal((await fresh.app.inject('/v1/tasks/victim')).statusCode, 404, 'the victim task was completed (its row deleted)')
      const stats = (await fresh.app.inject('/v1/stats')).json() as { status_queue_depth: number }
      t.equal(stats.status_queue_depth, 0, 'no report is left stuck in the status queue')
    })
  })

  await t.test('the same through the single-report route: POST /v1/tasks/a%00b/status', async (t) => {
    await withFreshBroker(ctx.database, async (fresh) => {
      const poison = await fresh.app.inject({ method: 'POST', url: `/v1/tasks/a${percentEncode('\u0000')}b/status`, payload: { status: 'complete' } })
      t.ok(poison.statusCode < 500, `the NUL report is answered ${poison.statusCode} (not a 5xx)`)
      const next = await fresh.app.inject({ method: 'POST', url: '/v1/tasks/zz-after-poison/status', payload: { status: 'complete' } })
      t.equal(next.statusCode, 200, `a later report is answered 200 (got ${next.statusCode} ${next.body})`)
    })
  })
})
