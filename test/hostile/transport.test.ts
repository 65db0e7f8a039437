/**
 * Every route under hostile transport: wrong and odd content types (text/plain, form, multipart,
 * none, charsets), bodies that are not JSON (truncated, trailing garbage, comments, NaN, single
 * quotes, BOM, UTF-16, random bytes), invalid UTF-8 inside JSON strings, bodies over the size
 * limit, Content-Length lies, unexpected methods; then malformed HTTP on a real socket (raw bytes
 * in the path and headers, smuggling-style framing, bad chunks). See kit.test.ts for the
 * invariants checked on every request.
 */
import net from 'node:net'
import { sql } from 'drizzle-orm'
import fc from 'fast-check'
import t from 'tap'
import {
  assertHealthy, buildHostileApp, checkAnswer, countFor, fingerprint, holds, keepAlive, probe, reportCounts, seed, wrongValue, type Ctx, type Req
} from './kit.test.js'

keepAlive(t)
reportCounts(t, 'transport.test.ts')

const BODY_LIMIT = 262_144

let sequence = 0
const fresh = (prefix: string) => `${prefix}-${++sequence}`

/**
 * Tasks this file produces are delayed an hour, so no claim can take them: a generated claim that
 * happens to be valid (`{}` claims any pending task) must find nothing, whatever ran before it.
 */
const UNCLAIMABLE = 3600

interface Route {
  name: string
  method: 'GET' | 'POST' | 'DELETE'
  url: () => string
  /** A valid body for the route (none for GET); valid requests touch no seeded task. */
  body?: () => unknown
  ok: number[]
  /** Whether an accepted request may change the store (only produce does). */
  writes?: boolean
}

const ROUTES: Route[] = [
  { name: 'POST /v1/tasks', method: 'POST', url: () => '/v1/tasks', body: () => ({ tasks: [{ id: fresh('tx'), namespace: 'ns', taskname: 'hostile.tx', delay: UNCLAIMABLE }] }), ok: [201], writes: true },
  { name: 'POST /v1/tasks/claim', method: 'POST', url: () => '/v1/tasks/claim', body: () => ({ application: 'zz-none', limit: 1 }), ok: [200] },
  { name: 'POST /v1/tasks/{id}/status', method: 'POST', url: () => `/v1/tasks/${fresh('zz')}/status`, body: () => ({ status: 'complete' }), ok: [200] },
  { name: 'POST /v1/tasks/status', method: 'POST', url: () => '/v1/tasks/status', body: () => ({ updates: [{ id: fresh('zz'), status: 'failure' }] }), ok: [200] },
  { name: 'GET /v1/tasks/{id}', method: 'GET', url: () => '/v1/tasks/zz-none', ok: [] },
  { name: 'GET /v1/stats', method: 'GET', url: () => '/v1/stats', ok: [200] },
  { name: 'GET /v1/deadletters', method: 'GET', url: () => '/v1/deadletters?application=zz-none', ok: [200] },
  { name: 'POST /v1/deadletters/{id}/requeue', method: 'POST', url: () => '/v1/deadletters/zz-none/requeue', ok: [] },
  { name: 'DELETE /v1/deadletters/{id}', method: 'DELETE', url: () => '/v1/deadletters/zz-none', ok: [] }
]

const CONTENT_TYPES = [
  undefined, 'application/json', 'application/json; charset=utf-8', 'application/json; charset=latin1', 'application/json; charset=utf-16',
  'APPLICATION/JSON', 'application/json;', 'application/json ; charset=utf-8', 'application/vnd.api+json', 'application/jsonx', 'text/json',
  'text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=----x', 'application/xml',
  'application/octet-stream', '*/*', '', ';', 'application/json, text/plain', 'json', 'application/problem+json'
] as const

type Kind = 'valid' | 'bom' | 'truncated' | 'trailing' | 'comment' | 'single-quotes' | 'nan' | 'text' | 'bytes' | 'invalid-utf8' |
  'empty' | 'duplicate-keys' | 'utf16' | 'any-json' | 'form'

/** A body of the given kind, built from the route's valid body. */
function payloadOf (kind: Kind, valid: string, extra: { text: string, bytes: Uint8Array, value: unknown, cut: number }): string | Buffer {
  switch (kind) {
    case 'valid': return valid
    case 'bom': return `\ufeff${valid}`
    case 'truncated': return valid.slice(0, extra.cut % Math.max(1, valid.length))
    case 'trailing': return `${valid}${extra.text.length === 0 ? 'x' : extra.text}`
    case 'comment': return `/* hostile */${valid}`
    case 'single-quotes': return valid.replaceAll('"', "'")
    case 'nan': return valid.replace(/}$/, ',"x":NaN}')
    case 'text': return extra.text
    case 'bytes': return Buffer.from(extra.bytes)
    case 'invalid-utf8': {
      // Bytes that are not UTF-8 inside the first string of the JSON text.
      const at = valid.indexOf('"') + 2
      return Buffer.concat([Buffer.from(valid.slice(0, at)), Buffer.from([0xff, 0xc0, 0x80, ...extra.bytes.slice(0, 4)]), Buffer.from(valid.slice(at))])
    }
    case 'empty': return ''
    case 'duplicate-keys': return valid.replace(/^\{/, '{"x":1,').replace(/}$/, valid.length > 2 ? `,${valid.slice(1)}` : '}')
    case 'utf16': return Buffer.from(valid, 'utf16le')
    case 'any-json': return JSON.stringify(extra.value) ?? ''
    case 'form': return 'tasks=1&namespace=ns&status=complete'
  }
}

const KINDS: Kind[] = ['valid', 'bom', 'truncated', 'trailing', 'comment', 'single-quotes', 'nan', 'text', 'bytes', 'invalid-utf8',
  'empty', 'duplicate-keys', 'utf16', 'any-json', 'form']

/** Sends raw bytes over a socket; resolves with what came back (or what came back before a timeout). */
function rawRequest (port: number, bytes: Buffer, timeoutMs = 3000): Promise<{ status: number, body: string, timedOut: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(bytes)
      socket.end()
    })
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; socket.destroy() }, timeoutMs)
    socket.on('data', chunk => chunks.push(chunk))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString('latin1')
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0)
      resolve({ status, body: text.split('\r\n\r\n').slice(1).join('\r\n\r\n'), timedOut })
    })
  })
}

t.test('every route under hostile transport', async (t) => {
  const ctx: Ctx = await buildHostileApp(t, { TASKBROKER_BODY_LIMIT_BYTES: String(BODY_LIMIT) })
  const { app } = ctx
  const seeds = await seed(ctx)
  const seeded = await seeds.snapshot()
  t.afterEach(async () => {
    await assertHealthy(app)
    t.equal(await seeds.snapshot(), seeded, 'the seeded tasks and dead letters are unchanged')
    const pending = await ctx.database.rows(sql`select id from inflight_tasks where status = 'pending'`)
    t.same(pending.map(r => r.id), [], 'nothing claimable is left for the next subtest')
  })

  await t.test('any content type with any kind of body, on every route: a clean 4xx unless it is valid JSON the route accepts', async (t) => {
    await holds(t, 'content types and non-JSON bodies', 400,
      [fc.constantFrom(...ROUTES), fc.constantFrom(...CONTENT_TYPES), fc.constantFrom(...KINDS), fc.string(), fc.uint8Array({ maxLength: 32 }), wrongValue, fc.nat()],
      async (route, type, kind, text, bytes, value, cut) => {
        const valid = route.body === undefined ? '{}' : JSON.stringify(route.body())
        const payload = payloadOf(kind, valid, { text, bytes, value, cut })
        const req: Req = { method: route.method, url: route.url(), payload, headers: type === undefined ? {} : { 'content-type': type } }
        await probe(ctx, route.name, req, { ok: route.ok, unchanged: route.writes !== true })
      })
  })

  await t.test('a JSON string with bytes that are not UTF-8 is stored with U+FFFD in their place, or refused', async (t) => {
    const invalid = fc.oneof(
      fc.constantFrom([0xff], [0xfe], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80]),
      fc.array(fc.integer({ min: 0x80, max: 0xff }), { minLength: 1, maxLength: 6 })
    )
    await holds(t, 'invalid UTF-8 in task fields', 80, [fc.constantFrom('namespace', 'taskname', 'id', 'application', 'parameters'), invalid], async (field, bad) => {
      const id = fresh('utf8')
      const fields: Record<string, string> = { id, namespace: 'ns', taskname: 'x', application: 'app', parameters: 'p' }
      const before = Buffer.from(`{"tasks":[{"delay":${UNCLAIMABLE},${Object.entries(fields).filter(([k]) => k !== field).map(([k, v]) => `"${k}":"${v}",`).join('')}"${field}":"a`)
      const payload = Buffer.concat([before, Buffer.from(bad), Buffer.from('b"}]}')])
      const req: Req = { method: 'POST', url: '/v1/tasks', headers: { 'content-type': 'application/json' }, payload }
      const { res, outcome } = await probe(ctx, 'POST /v1/tasks', req, { ok: [201] })
      if (outcome !== 'accepted') return
      const expected = `a${Buffer.from(bad).toString('utf8')}b`
      const storedId = (res.json() as { ids: string[] }).ids[0] as string
      const rows = await ctx.database.rows(sql`select activation from inflight_tasks where id = ${storedId}`)
      const stored = (rows[0]?.activation as Record<string, unknown> | undefined)?.[field]
      if (stored !== expected) throw new Error(`${field} stored as ${JSON.stringify(stored)}, expected ${JSON.stringify(expected)}`)
    })
  })

  await t.test('bodies over TASKBROKER_BODY_LIMIT_BYTES are answered 413 TASKBROKER_BODY_TOO_LARGE on every route that takes one', async (t) => {
    const writers = ROUTES.filter(r => r.method !== 'GET')
    await holds(t, 'bodies over the limit', 30, [fc.constantFrom(...writers), fc.integer({ min: 1, max: 200_000 }), fc.constantFrom('application/json', 'text/plain')],
      async (route, over, type) => {
        const valid = route.body === undefined ? '{}' : JSON.stringify(route.body())
        const payload = valid.replace(/}$/, `${' '.repeat(BODY_LIMIT + over - valid.length)}}`)
        const req: Req = { method: route.method, url: route.url(), headers: { 'content-type': type }, payload }
        const { res } = await probe(ctx, route.name, req, { unchanged: true })
        if (res.statusCode !== 413) throw new Error(`a body of ${payload.length} bytes was answered ${res.statusCode}, not 413`)
      })
  })

  await t.test('a Content-Length shorter than the body, or absurdly large, is refused cleanly', async (t) => {
    await holds(t, 'content-length lies', 60, [fc.constantFrom(...ROUTES.filter(r => r.method !== 'GET')), fc.oneof(fc.integer({ min: 0, max: 10 }), fc.integer({ min: BODY_LIMIT + 1, max: 2 ** 31 }))],
      async (route, length) => {
        const valid = JSON.stringify(route.body?.() ?? {})
        const req: Req = { method: route.method, url: route.url(), headers: { 'content-type': 'application/json', 'content-length': String(length) }, payload: valid }
        await probe(ctx, route.name, req, { ok: length === valid.length ? route.ok : [], unchanged: true })
      })
  })

  await t.test('any method on any path of the API: a route, or a clean 404', async (t) => {
    const paths = ['/v1/tasks', '/v1/tasks/claim', '/v1/tasks/status', '/v1/tasks/zz-none', '/v1/tasks/zz-none/status', '/v1/stats', '/v1/deadletters',
      '/v1/deadletters/zz-none', '/v1/deadletters/zz-none/requeue', '/v1', '/v1/', '/v2/tasks', '//v1//tasks', '/V1/TASKS', '/v1/tasks/', '/v1/tasks?']
    await holds(t, 'methods and paths', 150, [fc.constantFrom<Req['method']>('GET', 'POST', 'PUT', 'PATCH', 'DELETE'), fc.constantFrom(...paths), wrongValue],
      async (method, url, value) => {
        const req: Req = { method, url, headers: { 'content-type': 'application/json' }, payload: method === 'GET' ? undefined : JSON.stringify(value) ?? '' }
        // Only GETs, and the reads among them, may be answered 2xx: nothing here is a valid write.
        await probe(ctx, `${method} (any path)`, req, { ok: method === 'GET' ? [200] : [200, 201], unchanged: true })
      })
  })

  await t.test('malformed HTTP on a real socket: never a 5xx, never a hang, the server stays up', async (t) => {
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as net.AddressInfo
    const head = (line: string, headers: string) => Buffer.from(`${line}\r\nHost: x\r\nConnection: close\r\n${headers}\r\n`, 'latin1')
    const rawCase = fc.oneof(
      // Raw bytes (NUL, controls, bytes that are not UTF-8, spaces) in the path
      fc.tuple(fc.constantFrom('/v1/tasks/', '/v1/deadletters/', '/v1/deadletters?application=', '/v1/stats?'), fc.uint8Array({ minLength: 1, maxLength: 12 }))
        .map(([prefix, bytes]) => ({ name: 'raw path bytes', bytes: Buffer.concat([Buffer.from(`GET ${prefix}a`), Buffer.from(bytes), Buffer.from(' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]) })),
      // Raw bytes in a header value or name
      fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 12 }), fc.boolean())
        .map(([bytes, inName]) => ({
          name: 'raw header bytes',
          bytes: Buffer.concat([Buffer.from('GET /v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'), inName ? Buffer.from(bytes) : Buffer.from('X-A: a'), inName ? Buffer.from(': v') : Buffer.from(bytes), Buffer.from('\r\n\r\n')])
        })),
      // Framing: Content-Length with Transfer-Encoding, bad chunk sizes, short bodies, duplicate lengths
      fc.constantFrom(
        { name: 'cl+te', bytes: Buffer.concat([head('POST /v1/tasks HTTP/1.1', 'Content-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n'), Buffer.from('0\r\n\r\n')]) },
        { name: 'bad chunk size', bytes: Buffer.concat([head('POST /v1/tasks HTTP/1.1', 'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n'), Buffer.from('zz\r\n{}\r\n0\r\n\r\n')]) },
        { name: 'short body', bytes: Buffer.concat([head('POST /v1/tasks/status HTTP/1.1', 'Content-Type: application/json\r\nContent-Length: 500\r\n'), Buffer.from('{"updates":[]}')]) },
        { name: 'two lengths', bytes: Buffer.concat([head('POST /v1/tasks/claim HTTP/1.1', 'Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n'), Buffer.from('{}')]) },
        { name: 'chunked JSON', bytes: Buffer.concat([head('POST /v1/tasks/claim HTTP/1.1', 'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n'), Buffer.from('1\r\n{\r\n18\r\n"application":"zz-none"}\r\n0\r\n\r\n')]) },
        { name: 'TLS hello', bytes: Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]) },
        { name: 'header too large', bytes: head('GET /v1/stats HTTP/1.1', `X-A: ${'a'.repeat(100_000)}\r\n`) },
        { name: 'absolute URI', bytes: head('GET http://elsewhere/v1/stats HTTP/1.1', '') },
        { name: 'HTTP/1.0', bytes: Buffer.from('GET /v1/stats HTTP/1.0\r\n\r\n') },
        { name: 'HTTP/9', bytes: head('GET /v1/stats HTTP/9.9', '') },
        { name: 'lowercase method', bytes: head('get /v1/stats HTTP/1.1', '') },
        { name: 'bare LF', bytes: Buffer.from('GET /v1/stats HTTP/1.1\nHost: x\nConnection: close\n\n') }
      ),
      // Random bytes as a whole request
      fc.uint8Array({ minLength: 1, maxLength: 64 }).map(bytes => ({ name: 'random bytes', bytes: Buffer.from(bytes) }))
    )
    const clientErrors: string[] = []
    await holds(t, 'malformed HTTP never gets a 5xx or a hang', 120, [rawCase], async ({ name, bytes }) => {
      const before = await fingerprint(ctx.database)
      countFor('raw HTTP over a socket')
      const res = await rawRequest(port, bytes)
      if (res.timedOut) throw new Error(`${name}: no answer within 3 s to ${JSON.stringify(bytes.toString('latin1').slice(0, 120))}`)
      if (res.status >= 500) throw new Error(`${name}: answered ${res.status} ${res.body.slice(0, 200)}`)
      if (res.status >= 400) {
        let code: unknown
        try { code = (JSON.parse(res.body) as { code?: unknown }).code } catch {}
        if (typeof code !== 'string' || !code.startsWith('TASKBROKER_')) clientErrors.push(`${name} → ${res.status} ${res.body.slice(0, 120)}`)
      }
      if (await fingerprint(ctx.database) !== before) throw new Error(`${name}: the store changed`)
      const health = await rawRequest(port, Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))
      if (health.status !== 200) throw new Error(`${name}: /healthz over HTTP answered ${health.status} afterwards`)
    })
    const distinct = [...new Set(clientErrors.map(e => e.replace(/^[^→]*→ /, '')))]
    t.same(distinct, [], `every 4xx to malformed HTTP has a TASKBROKER_ code (${clientErrors.length} did not, e.g. ${clientErrors[0] ?? '-'})`)
  })

  await t.test('the same route still serves a valid request after all of it', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [{ id: fresh('after'), namespace: 'ns', taskname: 'x', delay: UNCLAIMABLE }] } })
    t.equal(checkAnswer(res, { method: 'POST', url: '/v1/tasks' }, { ok: [201] }), 'accepted')
  })
})
