/**
 * The read and dead-letter routes under hostile input: GET /v1/tasks/{id}, GET /v1/stats,
 * GET /v1/deadletters (query strings), POST /v1/deadletters/{id}/requeue and
 * DELETE /v1/deadletters/{id}. Odd path parameters (.., encoded slashes, unicode, %00, broken
 * percent-encoding, very long ids), malformed and hostile query strings, forged cursors, random
 * headers. See kit.test.ts for the invariants checked on every request.
 *
 * None of these requests names a stored task or dead letter, so every one of them, accepted or
 * not, must leave the store as it was.
 */
import fc from 'fast-check'
import t from 'tap'
import {
  assertHealthy, brokenSegment, buildHostileApp, holds, hugeString, keepAlive, longSegment, nulSegment, oddSegment, oddUnicode,
  percentEncode, probe, reportCounts, seed, withLoneSurrogate, withNul, wrongValue, type Ctx, type Expect, type Req
} from './kit.test.js'

keepAlive(t)
reportCounts(t, 'reads.test.ts')

const GET_TASK = 'GET /v1/tasks/{id}'
const STATS = 'GET /v1/stats'
const LIST = 'GET /v1/deadletters'
const REQUEUE = 'POST /v1/deadletters/{id}/requeue'
const DELETE = 'DELETE /v1/deadletters/{id}'

/** The three routes with an id in the path, and the request of each for a path segment. */
const byId = fc.constantFrom(GET_TASK, REQUEUE, DELETE)
function request (route: string, segment: string): Req {
  if (route === GET_TASK) return { method: 'GET', url: `/v1/tasks/${segment}` }
  if (route === REQUEUE) return { method: 'POST', url: `/v1/deadletters/${segment}/requeue` }
  return { method: 'DELETE', url: `/v1/deadletters/${segment}` }
}

const probeUnchanged = (ctx: Ctx, route: string, req: Req, expect: Expect = {}) => probe(ctx, route, req, { ...expect, unchanged: true })

const noNul = (s: string) => s.replaceAll('\u0000', '')

/** A value for a query parameter: awkward unicode, any JSON as text, numbers in every spelling, long text. */
const queryValue: fc.Arbitrary<string> = fc.oneof(
  oddUnicode.map(noNul),
  fc.string(),
  wrongValue.map(v => noNul(JSON.stringify(v) ?? '')),
  fc.integer().map(String),
  fc.double().map(String),
  fc.constantFrom('', '0', '-1', '1', '1000', '1001', '1e3', '0x10', '0b1', 'NaN', 'Infinity', '1.5', ' 1', '1 ', 'true', 'null', '[]', '{}', '+1', '٣'),
  hugeString(1, 5000).map(noNul)
)
const queryKey: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('application', 'namespace', 'taskname', 'limit', 'cursor'),
  fc.constantFrom('application[]', 'limit[0]', 'LIMIT', ' limit', 'limit ', '__proto__', 'constructor', 'toString', 'hasOwnProperty'),
  fc.string({ minLength: 1, maxLength: 12 }).map(noNul)
)

t.test('read and dead-letter routes under hostile input', async (t) => {
  const ctx = await buildHostileApp(t)
  const { app } = ctx
  const seeds = await seed(ctx)
  const seeded = await seeds.snapshot()
  t.afterEach(async () => {
    await assertHealthy(app)
    t.equal(await seeds.snapshot(), seeded, 'the seeded tasks and dead letters are unchanged')
  })

  await t.test('path ids with odd characters (.., encoded slashes and dots, unicode, reserved characters): 404 or another clean 4xx', async (t) => {
    await holds(t, 'odd ids', 150, [byId, oddSegment, fc.constantFrom('', 'zz', 'seed-dead-1', 'seed-processing-1')], async (route, segment, prefix) => {
      // A prefix followed by an odd segment is never a stored id: the store must not change.
      await probeUnchanged(ctx, route, request(route, `${prefix}${segment}`))
    })
    await holds(t, 'seeded ids in other spellings', 40,
      [byId, fc.constantFrom(...seeds.tasks, ...seeds.deadletters), fc.constantFrom('%20', '%0A', '%09', '%E2%80%8B', '%C2%A0', '.', '~', '%2F', '%ef%bb%bf'), fc.boolean(), fc.boolean()],
      async (route, id, odd, before, upper) => {
        const spelled = upper ? id.toUpperCase() : id
        await probeUnchanged(ctx, route, request(route, before ? `${odd}${spelled}` : `${spelled}${odd}`), { ok: upper ? [] : [200] })
      })
  })

  await t.test('a NUL (%00) in a path id is answered 404 or 400, never a 5xx', async (t) => {
    for (const route of [GET_TASK, REQUEUE, DELETE]) {
      await holds(t, `NUL in path ids: ${route}`, 15, [nulSegment], async (segment) => {
        await probeUnchanged(ctx, route, request(route, segment), { field: 'params/id' })
      })
    }
  })

  await t.test('a path with broken percent-encoding or bytes that are not UTF-8 is answered with a TASKBROKER_ error body', async (t) => {
    for (const route of [GET_TASK, REQUEUE, DELETE]) {
      await holds(t, `broken percent-encoding in path ids: ${route}`, 20, [brokenSegment, fc.constantFrom('', 'zz')], async (segment, prefix) => {
        await probeUnchanged(ctx, route, request(route, `${prefix}${segment}`))
      })
    }
  })

  await t.test('an id of 101–100,000 characters is answered with a TASKBROKER_ error body', async (t) => {
    for (const route of [GET_TASK, REQUEUE, DELETE]) {
      await holds(t, `long path ids: ${route}`, 10, [longSegment], async (segment) => {
        await probeUnchanged(ctx, route, request(route, segment), { field: 'params/id' })
      })
    }
  })

  await t.test('a task produced with a 101–255 character id (valid) can be read back and reported on', async (t) => {
    const id = 'i'.repeat(255)
    const produced = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [{ id, namespace: 'long', taskname: 'x' }] } })
    t.equal(produced.statusCode, 201, 'a 255-character id is accepted by produce')
    t.teardown(async () => {
      await app.inject({ method: 'POST', url: '/v1/tasks/status', payload: { updates: [{ id, status: 'complete' }] } })
    })
    const read = await app.inject(`/v1/tasks/${id}`)
    t.equal(read.statusCode, 200, `GET /v1/tasks/{255 chars} answers 200 (got ${read.statusCode} ${read.body.slice(0, 80)})`)
    const deleted = await app.inject({ method: 'DELETE', url: `/v1/deadletters/${id}` })
    t.equal(deleted.statusCode, 404, `DELETE /v1/deadletters/{255 chars} answers 404 (got ${deleted.statusCode})`)
    const reported = await app.inject({ method: 'POST', url: `/v1/tasks/${id}/status`, payload: { status: 'failure' } })
    t.equal(reported.statusCode, 200, `POST /v1/tasks/{255 chars}/status answers 200 (got ${reported.statusCode})`)
  })

  await t.test('GET /v1/stats and GET /v1/tasks/{id} ignore any query string and any headers', async (t) => {
    const header = fc.tuple(
      fc.oneof(fc.constantFrom('accept', 'accept-encoding', 'x-forwarded-for', 'x-forwarded-host', 'if-none-match', 'range', 'te', 'cookie', 'authorization',
        'taskbroker-signature', 'taskbroker-timestamp', 'content-type', 'origin', 'x-http-method-override', 'via'), fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/)),
      fc.oneof(fc.string(), fc.string({ unit: 'binary-ascii' }).map(s => noNul(s.replace(/[\r\n]/g, ''))), hugeString(1, 8000).map(s => s.replace(/[^\x20-\x7e]/g, 'x')))
    )
    await holds(t, 'stats with hostile queries and headers', 100, [fc.array(fc.tuple(queryKey, queryValue), { maxLength: 5 }), fc.array(header, { maxLength: 6 })],
      async (query, headers) => {
        const qs = query.map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`).join('&')
        const req: Req = { method: 'GET', url: `/v1/stats?${qs}`, headers: Object.fromEntries(headers) }
        const { res } = await probeUnchanged(ctx, STATS, req, { ok: [200] })
        if (res.statusCode !== 200) throw new Error(`stats answered ${res.statusCode}: ${res.body}`)
      })
    await holds(t, 'get task with hostile queries and headers', 60,
      [fc.constantFrom('seed-processing-1', 'zz-none'), fc.array(fc.tuple(queryKey, queryValue), { maxLength: 5 }), fc.array(header, { maxLength: 6 })],
      async (id, query, headers) => {
        const qs = query.map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`).join('&')
        const { res } = await probeUnchanged(ctx, GET_TASK, { method: 'GET', url: `/v1/tasks/${id}?${qs}`, headers: Object.fromEntries(headers) }, { ok: [200] })
        if (res.statusCode !== (id === 'zz-none' ? 404 : 200)) throw new Error(`GET ${id} answered ${res.statusCode}`)
      })
  })

  await t.test('GET /v1/deadletters with hostile query strings: 200 or a 400 naming querystring/…', async (t) => {
    await holds(t, 'deadletters structured queries', 250, [fc.array(fc.tuple(queryKey, queryValue), { maxLength: 6 })], async (pairs) => {
      const qs = pairs.map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`).join('&')
      await probeUnchanged(ctx, LIST, { method: 'GET', url: `/v1/deadletters?${qs}` }, { ok: [200] })
    })
    const rawPiece = fc.oneof(
      fc.constantFrom('%', '%%', '%z', '%zz', '%FF', '%C0%AF', '%ED%A0%80', '&', '&&', '=', '==', ';', '+', '[', ']', '[]', '?', '??', '.', '..',
        'application', 'namespace', 'taskname', 'limit', 'cursor', '10', '-', '_', 'é', '%E2%80%AE', '\u202e', '\u{1f4a9}', ' ', '%20', '%2B', '%26', '%3D'),
      fc.string({ maxLength: 5 }).map(s => noNul(s.replaceAll('#', '')))
    )
    await holds(t, 'deadletters raw malformed query strings', 250, [fc.array(rawPiece, { maxLength: 20 })], async (pieces) => {
      await probeUnchanged(ctx, LIST, { method: 'GET', url: `/v1/deadletters?${pieces.join('')}` }, { ok: [200] })
    })
    await holds(t, 'deadletters huge filter values', 30, [fc.constantFrom('application', 'namespace', 'taskname', 'cursor', 'limit'), hugeString(256, 30_000)],
      async (key, value) => {
        await probeUnchanged(ctx, LIST, { method: 'GET', url: `/v1/deadletters?${key}=${percentEncode(noNul(value))}` }, { field: `querystring/${key}` })
      })
    await holds(t, 'deadletters awkward unicode and lone surrogates in filters', 80,
      [fc.constantFrom('application', 'namespace', 'taskname'), fc.oneof(oddUnicode.map(noNul), withLoneSurrogate)],
      async (key, value) => {
        await probeUnchanged(ctx, LIST, { method: 'GET', url: `/v1/deadletters?${key}=${percentEncode(value)}` }, { ok: [200] })
      })
  })

  await t.test('GET /v1/deadletters with a NUL in a filter: 400 naming the field, or an empty page', async (t) => {
    await holds(t, 'NUL in deadletter filters', 40, [fc.constantFrom('application', 'namespace', 'taskname'), withNul], async (key, value) => {
      await probeUnchanged(ctx, LIST, { method: 'GET', url: `/v1/deadletters?${key}=${percentEncode(value)}` }, { ok: [200], field: `querystring/${key}` })
    })
  })

  await t.test('GET /v1/deadletters with forged cursors: 400 naming querystring/cursor, or a page', async (t) => {
    const base64url = (text: string) => Buffer.from(text, 'utf8').toString('base64url')
    const pad = (n: number, width: number) => String(n).padStart(width, '0')
    // Timestamps of the cursor's exact shape (YYYY-MM-DDTHH:MM:SS.ffffffZ), calendar-valid or not.
    const timestamp = fc.record({
      year: fc.oneof(fc.integer({ min: 1, max: 9999 }), fc.constantFrom(1, 1969, 1970, 2024, 9999)),
      month: fc.integer({ min: 0, max: 13 }),
      day: fc.integer({ min: 0, max: 32 }),
      hour: fc.integer({ min: 0, max: 24 }),
      minute: fc.integer({ min: 0, max: 60 }),
      second: fc.integer({ min: 0, max: 60 }),
      micros: fc.integer({ min: 0, max: 999_999 })
    }).map(d => `${pad(d.year, 4)}-${pad(d.month, 2)}-${pad(d.day, 2)}T${pad(d.hour, 2)}:${pad(d.minute, 2)}:${pad(d.second, 2)}.${pad(d.micros, 6)}Z`)
    const cursorId = fc.oneof(fc.string(), oddUnicode.map(noNul), withLoneSurrogate, hugeString(1, 2000))
    await holds(t, 'forged cursors without NUL', 200, [fc.oneof(
      fc.tuple(timestamp, cursorId).map(([ts, id]) => base64url(JSON.stringify([ts, id]))),
      wrongValue.map(v => base64url(noNul(JSON.stringify(v) ?? ''))),
      fc.stringMatching(/^[A-Za-z0-9_-]{1,200}$/),
      fc.string({ minLength: 1, maxLength: 50 }).map(percentEncode)
    )], async (cursor) => {
      await probeUnchanged(ctx, LIST, { method: 'GET', url: `/v1/deadletters?cursor=${cursor}` }, { ok: [200], field: 'querystring/cursor' })
    })
    await holds(t, 'forged cursors with year 0000', 20, [timestamp.map(ts => `0000${ts.slice(4)}`), fc.string({ maxLength: 5 })], async (ts, id) => {
      const cursor = base64url(JSON.stringify([ts, id]))
      await probeUnchanged(ctx, LIST, { method: 'GET', url: `/v1/deadletters?cursor=${cursor}` }, { ok: [200], field: 'querystring/cursor' })
    })
    await holds(t, 'forged cursors with a NUL in the id', 20, [timestamp, withNul], async (ts, id) => {
      const cursor = base64url(JSON.stringify([ts, id]))
      await probeUnchanged(ctx, LIST, { method: 'GET', url: `/v1/deadletters?cursor=${cursor}` }, { ok: [200], field: 'querystring/cursor' })
    })
  })

  await t.test('requeue and delete with bodies of any content type and content are answered 404 for unknown ids', async (t) => {
    const body = fc.oneof(
      wrongValue.map(v => ({ type: 'application/json', payload: JSON.stringify(v) ?? '' })),
      fc.string().map(s => ({ type: 'application/json', payload: s })),
      fc.string().map(s => ({ type: 'text/plain', payload: s })),
      fc.string().map(s => ({ type: 'application/x-www-form-urlencoded', payload: s })),
      fc.uint8Array({ maxLength: 64 }).map(b => ({ type: 'application/octet-stream', payload: Buffer.from(b) }))
    )
    await holds(t, 'requeue and delete with junk bodies', 120, [fc.constantFrom(REQUEUE, DELETE), body], async (route, { type, payload }) => {
      const url = route === REQUEUE ? '/v1/deadletters/zz-none/requeue' : '/v1/deadletters/zz-none'
      await probeUnchanged(ctx, route, { method: route === REQUEUE ? 'POST' : 'DELETE', url, headers: { 'content-type': type }, payload })
    })
  })

  await t.test('wrong-typed path ids of any JSON value, as text: a clean 4xx', async (t) => {
    await holds(t, 'any value as a path id', 150, [byId, wrongValue], async (route, value) => {
      const text = noNul(typeof value === 'string' ? value : JSON.stringify(value) ?? 'undefined')
      if (text.length === 0 || [...text].length > 100) return
      await probeUnchanged(ctx, route, request(route, percentEncode(text)))
    })
  })
})
