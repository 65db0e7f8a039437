/**
 * Signing fails closed: with TASKBROKER_AUTH_SECRETS set, no unsigned request reaches a handler,
 * whatever its method, body, content type or framing (Content-Length, chunked), on every route of
 * the spec the broker serves; signed requests still work. On a real port, because app.inject
 * does not send chunked bodies or bodies on GET the way a client on the wire does.
 */
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { sql } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { signRequest } from '../../src/auth/signing.js'
import type { Database } from '../../src/db/database.js'
import { toActivation } from '../../src/domain/activation.js'
import { buildTestApp, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'

const SECRET = 'sekret'
const DEAD = 'dead-1'
const LIVE = 'live-1'

interface Answer { status: number, body: string }

type Framing = 'none' | 'json' | 'text' | 'chunked'

/** One request on the wire; `framing` says how its body (if any) is sent. */
function send (port: number, method: string, path: string, framing: Framing, body: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const h: Record<string, string> = { ...headers }
    if (framing === 'json' || framing === 'chunked') h['content-type'] = 'application/json'
    if (framing === 'text') h['content-type'] = 'text/plain'
    if (framing === 'json' || framing === 'text') h['content-length'] = String(Buffer.byteLength(body))
    if (framing === 'chunked') h['transfer-encoding'] = 'chunked'
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers: h, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    if (framing === 'chunked') {
      // Two chunks, so it really is chunked on the wire.
      req.write(body.slice(0, 1))
      req.end(body.slice(1))
    } else {
      req.end(framing === 'none' ? undefined : body)
    }
  })
}

/** A JSON body the route would accept (so only the signature stands between it and its handler). */
function validBody (template: string): string {
  switch (template) {
    case '/v1/tasks': return JSON.stringify({ tasks: [task({ id: 'unsigned-new' })] })
    case '/v1/tasks/claim': return JSON.stringify({ limit: 10 })
    case '/v1/tasks/{id}/status': return JSON.stringify({ status: 'complete' })
    case '/v1/tasks/status': return JSON.stringify({ updates: [{ id: LIVE, status: 'complete' }] })
    default: return '{}'
  }
}

async function insertDeadletter (database: Database, id: string): Promise<void> {
  const a = toActivation({ id, namespace: 'ns', taskname: 'tests.noop' }, new Date('2024-05-01T10:00:00.000Z'))
  await database.rows(sql`
    insert into deadletter_tasks (id, activation, application, namespace, taskname, reason, processing_attempts, received_at, deadlettered_at)
    values (${a.id}, ${JSON.stringify(a)}::jsonb, ${a.application}, ${a.namespace}, ${a.taskname},
      'retries_exhausted', 1, ${a.received_at}::timestamptz, now())`)
}

/** Everything a handler could change: the live tasks with their state, and the dead letters. */
async function snapshot (database: Database): Promise<string> {
  const live = await database.rows(sql`select id, status, processing_attempts from inflight_tasks order by id`)
  const dead = await database.rows(sql`select id from deadletter_tasks order by id`)
  return JSON.stringify({ live, dead })
}

async function listen (app: FastifyInstance): Promise<number> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return (app.server.address() as AddressInfo).port
}

const signed = (method: string, path: string, body = '', nonce?: string) =>
  signRequest(SECRET, { method, path, body, ...(nonce === undefined ? {} : { nonce }) })

eachBackend(t, 'unsigned requests never reach a handler', { timeout: 120_000 }, async (t, backend) => {
  const { app, database, config } = await buildTestApp(t, backend, { TASKBROKER_AUTH_SECRETS: SECRET, TASKBROKER_UPKEEP_ENABLED: 'false' })
  const port = await listen(app)
  await insertDeadletter(database, DEAD)
  const produced = await send(port, 'POST', '/v1/tasks', 'json', JSON.stringify({ tasks: [task({ id: LIVE })] }),
    signed('POST', '/v1/tasks', JSON.stringify({ tasks: [task({ id: LIVE })] })))
  t.equal(produced.status, 201, 'a signed produce stores the task the unsigned requests then aim at')
  const before = await snapshot(database)

  const spec = (await app.inject('/openapi.json')).json() as { paths: Record<string, unknown> }
  // The exempt paths (health, metrics, docs) are public by design; every other path must be signed.
  const exempt = (path: string) => config.auth.exemptPaths.some(p => p.endsWith('*') ? path.startsWith(p.slice(0, -1)) : p === path)
  const templates = Object.keys(spec.paths).filter(path => !exempt(path))
  t.ok(templates.length >= 8, `the spec lists the API's routes (${templates.join(', ')})`)
  let requests = 0
  const seen = new Set<number>()
  for (const template of templates) {
    const path = template.replace('{id}', template.startsWith('/v1/deadletters') ? DEAD : LIVE)
    for (const method of ['GET', 'HEAD', 'POST', 'DELETE']) {
      for (const framing of ['none', 'json', 'text', 'chunked'] as const) {
        const body = framing === 'none' ? '' : framing === 'text' ? 'purge it' : validBody(template)
        const answer = await send(port, method, path, framing, body)
        requests++
        seen.add(answer.status)
        if (answer.status < 400 || answer.status >= 500) {
          t.fail(`${method} ${path} (${framing}) unsigned was answered ${answer.status}: ${answer.body.slice(0, 200)}`)
        }
      }
    }
  }
  t.pass(`${requests} unsigned requests, answered ${[...seen].sort().join(', ')}`)
  t.equal(await snapshot(database), before, 'no handler ran: the tasks and the dead letter are as they were')

  // A body Fastify would never read (GET/HEAD) is refused even when signed: nothing could verify it.
  const getWithBody = await send(port, 'GET', '/v1/stats', 'json', '{}', signed('GET', '/v1/stats', '{}'))
  t.equal(getWithBody.status, 400, 'a signed GET with a body is refused')
  t.match(getWithBody.body, /GET request takes no body/)

  // A non-JSON body is refused after the signature checks out, and names the type expected.
  const text = await send(port, 'DELETE', `/v1/deadletters/${DEAD}`, 'text', 'x', signed('DELETE', `/v1/deadletters/${DEAD}`, 'x'))
  t.equal(text.status, 415, 'a signed text/plain body is a 415')
  t.match(JSON.parse(text.body), { code: 'TASKBROKER_UNSUPPORTED_MEDIA_TYPE', message: /application\/json/ })
  t.equal(await snapshot(database), before, 'the dead letter is still there')

  // Signed requests work, whatever the framing.
  const stats = await send(port, 'GET', '/v1/stats', 'none', '', signed('GET', '/v1/stats'))
  t.equal(stats.status, 200, 'a signed GET is served')
  const head = await send(port, 'HEAD', `/v1/tasks/${LIVE}`, 'none', '', signed('HEAD', `/v1/tasks/${LIVE}`))
  t.equal(head.status, 200, 'a signed HEAD is served')
  const produceBody = JSON.stringify({ tasks: [task({ id: 'chunked-1' })] })
  const chunked = await send(port, 'POST', '/v1/tasks', 'chunked', produceBody, signed('POST', '/v1/tasks', produceBody))
  t.equal(chunked.status, 201, 'a signed chunked produce is served')
  const claim = await send(port, 'POST', '/v1/tasks/claim', 'json', '{"limit":10}', signed('POST', '/v1/tasks/claim', '{"limit":10}'))
  t.equal(claim.status, 200)
  t.same(JSON.parse(claim.body).tasks.map((c: { id: string }) => c.id).sort(), ['chunked-1', LIVE], 'a signed claim hands out both tasks')
  const purge = await send(port, 'DELETE', `/v1/deadletters/${DEAD}`, 'none', '', signed('DELETE', `/v1/deadletters/${DEAD}`))
  t.equal(purge.status, 204, 'a signed purge (no body) is served')
  const bodied = await send(port, 'POST', '/v1/deadletters/nobody/requeue', 'json', '{}', signed('POST', '/v1/deadletters/nobody/requeue', '{}'))
  t.equal(bodied.status, 404, 'a signed requeue with a JSON body gets to its handler')
})

t.test('safety net: a route added later, with a parser of its own, still refuses unsigned requests', async (t) => {
  const { app } = await buildTestApp(t, 'pglite', { TASKBROKER_AUTH_SECRETS: SECRET, TASKBROKER_UPKEEP_ENABLED: 'false' })
  const reached: string[] = []
  await app.register(async (child) => {
    // A parser that does not verify anything, as a careless plugin might add.
    child.addContentTypeParser('application/x-careless', { parseAs: 'string' }, (_request, body, done) => { done(null, body) })
    child.post('/v1/careless', async (request) => { reached.push(request.method); return { ok: true } })
    child.get('/v1/careless', async (request) => { reached.push(request.method); return { ok: true } })
  })
  const port = await listen(app)
  const post = (headers: Record<string, string>) => new Promise<number>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/v1/careless', agent: false, headers: { 'content-type': 'application/x-careless', ...headers } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end('anything')
  })
  t.equal(await post({}), 401, 'an unsigned body through a parser that verifies nothing is refused before the handler')
  t.equal(await post(signed('POST', '/v1/careless', 'anything')), 401, 'and so is a signed one: that parser never verified it')
  t.equal((await send(port, 'GET', '/v1/careless', 'none', '')).status, 401, 'an unsigned GET of the new route is refused')
  t.equal((await send(port, 'GET', '/v1/careless', 'none', '', signed('GET', '/v1/careless'))).status, 200, 'a signed GET of it is served')
  t.same(reached, ['GET'], 'only the signed GET reached a handler')
})

t.test('exemption follows the route a request matched, not the URL as sent', async (t) => {
  const { app } = await buildTestApp(t, 'pglite', { TASKBROKER_AUTH_SECRETS: SECRET, TASKBROKER_UPKEEP_ENABLED: 'false' })
  for (const url of ['/healthz', '/healthz?x=1', '/metrics', '/openapi.json', '/docs/json']) {
    t.equal((await app.inject(url)).statusCode, 200, `${url} needs no signature`)
  }
  for (const url of ['/v1/stats?/healthz', '/v1/stats#/metrics', '/docs/../v1/stats']) {
    t.not((await app.inject(url)).statusCode, 200, `${url} is not served unsigned`)
  }
})
