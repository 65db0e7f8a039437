/**
 * Safe to expose, at the transport: slow or unfinished requests cannot pin the broker (request and
 * headers timeouts, a connection cap, requests per connection, a budget on body bytes in flight),
 * an oversized body gets a 413 the client can read, and no answer shows internals (a database
 * address, a Fastify code). On a real port: these are properties of the socket, not of inject.
 */
import http from 'node:http'
import net from 'node:net'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../src/http/app.js'
import { buildTestApp, NO_UPKEEP, task, testConfig } from '../helpers/app.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { sleep } from '../helpers/broker-process.js'

keepAlive(t)

const MiB = 1024 * 1024

async function listening (t: Test, env: Record<string, string>): Promise<{ app: FastifyInstance, port: number }> {
  const { app } = await buildTestApp(t, 'pglite', { ...NO_UPKEEP, ...env })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, port: (app.server.address() as net.AddressInfo).port }
}

/** A raw connection: what came back, and whether (and when) the broker closed it. */
interface Conn {
  socket: net.Socket
  received: () => string
  status: () => number
  closed: Promise<number>
}

/** `halfOpen`: keep sending after the broker's FIN (a client still writing its body does). */
function connect (port: number, bytes = '', halfOpen = false): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let closedAt: (at: number) => void = () => {}
    const closed = new Promise<number>((resolve) => { closedAt = resolve })
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: halfOpen }, () => {
      if (bytes !== '') socket.write(bytes)
      const received = () => Buffer.concat(chunks).toString('latin1')
      resolve({ socket, received, status: () => Number(/^HTTP\/1\.1 (\d{3})/.exec(received())?.[1] ?? 0), closed })
    })
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('error', () => {})
    socket.on('close', () => closedAt(Date.now()))
    socket.once('error', reject)
  })
}

/** Resolves true if `promise` settles within `ms`. */
const within = async (promise: Promise<unknown>, ms: number): Promise<boolean> =>
  await Promise.race([promise.then(() => true), sleep(ms).then(() => false)])

async function healthz (port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`)
  await res.arrayBuffer()
  return res.status
}

const stalledUpload = `POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${5 * MiB}\r\n\r\n{"tasks":[`

t.test('stalled uploads are answered 408 and closed after TASKBROKER_REQUEST_TIMEOUT_MS; /healthz answers meanwhile', async (t) => {
  const timeoutMs = 2_000
  // The body budget would refuse most of them at once; here the timeout is under test.
  const { port } = await listening(t, {
    TASKBROKER_REQUEST_TIMEOUT_MS: String(timeoutMs), TASKBROKER_HEADERS_TIMEOUT_MS: '1000', TASKBROKER_MAX_INFLIGHT_BODY_BYTES: String(2048 * MiB)
  })
  const start = Date.now()
  const stalled = await Promise.all(Array.from({ length: 200 }, async () => await connect(port, stalledUpload)))
  t.equal(await healthz(port), 200, '/healthz answers with 200 uploads stalled')
  // Generous: the timeout, Node's check every second, the lingering close, a loaded machine.
  const allClosed = await within(Promise.all(stalled.map(async c => await c.closed)), timeoutMs + 20_000)
  t.ok(allClosed, `every stalled upload was closed (${stalled.filter(c => c.socket.destroyed).length}/200 by then)`)
  t.ok(Math.min(...await Promise.all(stalled.map(async c => await c.closed))) - start >= timeoutMs - 100, 'none before the timeout')
  const times = (await Promise.all(stalled.map(async c => await c.closed))).map(at => at - start).sort((a, b) => a - b)
  t.comment(`closed after ${times[0]}..${times[times.length - 1]} ms (median ${times[100]})`)
  const statuses = new Set(stalled.map(c => c.status()))
  t.same([...statuses], [408], 'each was answered 408')
  t.match(stalled[0]?.received(), /"code":"TASKBROKER_REQUEST_TIMEOUT"/)
  t.equal(await healthz(port), 200)
})

t.test('unfinished headers, and a connection that sends nothing, are closed after TASKBROKER_HEADERS_TIMEOUT_MS', async (t) => {
  const { port } = await listening(t, { TASKBROKER_REQUEST_TIMEOUT_MS: '60000', TASKBROKER_HEADERS_TIMEOUT_MS: '1000' })
  const partial = await connect(port, 'POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Ty')
  const silent = await connect(port)
  t.ok(await within(Promise.all([partial.closed, silent.closed]), 20_000), 'both closed long before the 60 s request timeout')
  t.equal(partial.status(), 408)
  t.match(partial.received(), /"code":"TASKBROKER_REQUEST_TIMEOUT"/)
})

t.test('a long-poll claim waiting longer than the request timeout gets its answer; a stalled upload beside it does not last', async (t) => {
  const { app, port } = await listening(t, { TASKBROKER_REQUEST_TIMEOUT_MS: '1000', TASKBROKER_HEADERS_TIMEOUT_MS: '1000' })
  const stalled = await connect(port, stalledUpload)
  const claim = fetch(`http://127.0.0.1:${port}/v1/tasks/claim`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ wait_ms: 25_000 })
  })
  // Produced after the stalled upload was closed, so well after the claim's request timeout.
  t.ok(await within(stalled.closed, 20_000), 'the stalled upload was closed')
  await sleep(1_500)
  const produced = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: 'late' })] } })
  t.equal(produced.statusCode, 201)
  const res = await claim
  t.equal(res.status, 200, 'the claim was answered, not cut by the request timeout')
  t.same((await res.json() as { tasks: Array<{ id: string }> }).tasks.map(c => c.id), ['late'])
})

t.test('beyond TASKBROKER_MAX_CONNECTIONS new connections are closed at once; once some close, the broker answers again', async (t) => {
  const { port } = await listening(t, { TASKBROKER_MAX_CONNECTIONS: '20', TASKBROKER_REQUEST_TIMEOUT_MS: '60000', TASKBROKER_HEADERS_TIMEOUT_MS: '60000' })
  const idle = await Promise.all(Array.from({ length: 20 }, async () => await connect(port)))
  await sleep(200) // the server has accepted them
  const extra = await connect(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
  t.ok(await within(extra.closed, 10_000), 'the 21st connection was closed')
  t.equal(extra.received(), '', 'without an answer')
  for (const c of idle) c.socket.destroy()
  let status = 0
  for (let i = 0; i < 100 && status !== 200; i++) {
    status = await healthz(port).catch(() => 0)
    if (status !== 200) await sleep(50)
  }
  t.equal(status, 200, '/healthz answers once connections are free')
})

t.test('after TASKBROKER_MAX_REQUESTS_PER_SOCKET requests a keep-alive connection is closed by its last answer', async (t) => {
  const { port } = await listening(t, { TASKBROKER_MAX_REQUESTS_PER_SOCKET: '3' })
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const connection: string[] = []
  const sockets = new Set<net.Socket>()
  for (let i = 0; i < 4; i++) {
    await new Promise<void>((resolve, reject) => {
      http.get({ agent, host: '127.0.0.1', port, path: '/healthz' }, (res) => {
        connection.push(String(res.headers.connection))
        sockets.add(res.socket)
        res.resume()
        res.on('end', resolve)
      }).on('error', reject)
    })
  }
  t.same(connection, ['keep-alive', 'keep-alive', 'close', 'keep-alive'])
  t.equal(sockets.size, 2, 'the fourth request went on a new connection')
})

t.test('bodies beyond TASKBROKER_MAX_INFLIGHT_BODY_BYTES are refused 503 with Retry-After until the ones in flight finish', async (t) => {
  const { app, port } = await listening(t, {
    TASKBROKER_MAX_INFLIGHT_BODY_BYTES: String(10 * MiB), TASKBROKER_REQUEST_TIMEOUT_MS: '60000', TASKBROKER_RETRY_AFTER_SEC: '3'
  })
  const uploads = await Promise.all(Array.from({ length: 6 }, async () => await connect(port, stalledUpload)))
  // Two 5 MiB bodies fit in 10 MiB: the other four are answered at once.
  let refused: Conn[] = []
  for (let i = 0; i < 400 && refused.length < 4; i++) {
    await sleep(50)
    refused = uploads.filter(c => c.status() !== 0)
  }
  t.equal(refused.length, 4, 'four refused')
  for (const c of refused) {
    t.equal(c.status(), 503)
    t.match(c.received(), /\r\nretry-after: 3\r\n/i)
    t.match(c.received(), /\r\nconnection: close\r\n/i)
    t.match(c.received(), /"code":"TASKBROKER_BODY_BUDGET_FULL"/)
  }
  await sleep(300)
  t.equal(uploads.filter(c => c.status() === 0).length, 2, 'two still being received')
  t.equal(await healthz(port), 200, 'requests without a body are not affected')
  const produce = () => fetch(`http://127.0.0.1:${port}/v1/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tasks: [task()] }) })
  const full = await produce()
  t.equal(full.status, 503, 'a small body does not fit beside the two either')
  await full.arrayBuffer()
  for (const c of uploads) c.socket.destroy()
  let status = 0
  for (let i = 0; i < 100 && status !== 201; i++) {
    const res = await produce()
    status = res.status
    await res.arrayBuffer()
    if (status !== 201) await sleep(50)
  }
  t.equal(status, 201, 'once the uploads are gone their bytes are free again')
  t.ok(app.server.listening)
})

t.test('a body over the limit gets a 413 the client can read while it writes the whole body', async (t) => {
  const { port } = await listening(t, {})
  const body = Buffer.alloc(20 * MiB, 'a')

  // Node's http client writing all 20 MB: the answer arrives, the writes end, and no EPIPE/ECONNRESET.
  const events: string[] = []
  const answer = await new Promise<{ status: number, connection: string, body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/tasks', headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: String(res.headers.connection), body: text }))
    })
    req.on('error', (error: NodeJS.ErrnoException) => { events.push(`error ${error.code ?? error.message}`); reject(error) })
    req.on('finish', () => events.push('finish'))
    req.end(body)
  }).catch((error: unknown) => ({ status: 0, connection: '', body: String(error) }))
  await sleep(500) // an error after the answer would come now
  t.equal(answer.status, 413, `http.request read the 413 (${answer.body.slice(0, 80)})`)
  t.equal(answer.connection, 'close')
  t.match(JSON.parse(answer.body), { statusCode: 413, code: 'TASKBROKER_BODY_TOO_LARGE', error: 'Payload Too Large' })
  t.same(events, ['finish'], 'the whole body was written, without a connection error')

  // fetch (undici) sending the whole body.
  const res = await fetch(`http://127.0.0.1:${port}/v1/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  t.equal(res.status, 413)
  t.match(await res.json(), { statusCode: 413, code: 'TASKBROKER_BODY_TOO_LARGE' })
})

t.test('after an early 413 the rest of the body is read and discarded (no reset for the client), for at most TASKBROKER_LINGER_MS', async (t) => {
  const { port } = await listening(t, { TASKBROKER_BODY_LIMIT_BYTES: '65536', TASKBROKER_REQUEST_TIMEOUT_MS: '60000', TASKBROKER_LINGER_MS: '2000' })
  const head = (length: number) => `POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`
  const untilAnswered = async (conn: Conn) => { for (let i = 0; i < 400 && conn.status() === 0; i++) await sleep(50) }

  // The client reads the 413 first, then sends the rest of its 1 MiB body and closes.
  const polite = await connect(port, head(MiB), true)
  let writeError: unknown
  polite.socket.on('error', (error) => { writeError ??= error })
  await untilAnswered(polite)
  t.equal(polite.status(), 413, 'answered before the body was sent')
  for (let sent = 0; sent < MiB; sent += 64 * 1024) {
    await new Promise<void>(resolve => polite.socket.write(Buffer.alloc(64 * 1024, 'a'), () => resolve()))
    await sleep(10)
  }
  polite.socket.end()
  t.ok(await within(polite.closed, 20_000), 'closed once the client was done')
  t.equal(writeError, undefined, 'the whole body was sent without EPIPE/ECONNRESET')
  t.match(polite.received(), /\r\nconnection: close\r\n/i)

  // A client that never stops sending is cut off after the linger time.
  const endless = await connect(port, head(100 * MiB), true)
  const trickle = setInterval(() => { if (!endless.socket.destroyed) endless.socket.write('a'.repeat(100)) }, 100)
  t.teardown(() => clearInterval(trickle))
  t.ok(await within(endless.closed, 20_000), 'closed while the client was still sending')
  t.equal(endless.status(), 413)
})

t.test('no answer shows internals', async (t) => {
  const { port } = await listening(t, {})

  await t.test('a path outside the docs gets a TASKBROKER code, not Fastify\'s', async (t) => {
    for (const path of ['/docs/static/../../package.json', '/docs/static/%2e%2e/x', '/docs/static/%2e%2e/%2e%2e/package.json']) {
      const conn = await connect(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
      await within(conn.closed, 10_000)
      const text = conn.received()
      t.notMatch(text, /FST_/, `${path}: no Fastify code`)
      t.match(text, /"code":"TASKBROKER_[A-Z_]+"/, `${path}: a TASKBROKER code`)
      t.notMatch(text, /"name"\s*:\s*"taskbroker"/, `${path}: not the file`)
    }
  })

  await t.test('a 20 KB header is answered 431 TASKBROKER_HEADERS_TOO_LARGE', async (t) => {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, { headers: { 'x-big': 'a'.repeat(20_000) } })
    t.equal(res.status, 431)
    t.same(await res.json(), {
      statusCode: 431, code: 'TASKBROKER_HEADERS_TOO_LARGE', error: 'Request Header Fields Too Large', message: 'The request headers are too large'
    })
  })
})

t.test('an error with a code that is not ours gets a TASKBROKER code by status and a generic message', async (t) => {
  const { app } = await buildTestApp(t, 'pglite', NO_UPKEEP)
  const internal = (code: string | undefined, statusCode: number) => Object.assign(new Error('at /srv/secret/file.js: password=hunter2'), { code, statusCode })
  app.get('/test/fst-400', async () => { throw internal('FST_ERR_SOMETHING_NEW', 400) })
  app.get('/test/plugin-403', async () => { throw internal('SOME_PLUGIN_CODE', 403) })
  app.get('/test/none-503', async () => { throw internal(undefined, 503) })
  const cases: Array<[string, number, string]> = [
    ['/test/fst-400', 400, 'TASKBROKER_INVALID_REQUEST'],
    ['/test/plugin-403', 403, 'TASKBROKER_FORBIDDEN'],
    ['/test/none-503', 503, 'TASKBROKER_UNAVAILABLE']
  ]
  for (const [url, status, code] of cases) {
    const res = await app.inject(url)
    t.equal(res.statusCode, status, url)
    t.equal(res.json().code, code, url)
    t.notMatch(res.body, /secret|hunter2|FST_|SOME_PLUGIN/, `${url}: nothing of the original error`)
  }
  t.ok((await app.inject('/test/none-503')).headers['retry-after'] !== undefined, 'a 503 carries Retry-After')
})

t.test('a 503 for an unreachable database names no host or port; the log has them', async (t) => {
  const lines: string[] = []
  const logger = pino({ level: 'warn' }, new Writable({ write (chunk, _encoding, done) { lines.push(String(chunk)); done() } }))
  const config = testConfig({ ...NO_UPKEEP, TASKBROKER_DATABASE_URL: 'postgres://postgres@127.0.0.1:1/unreachable', TASKBROKER_SHUTDOWN_TIMEOUT_MS: '1000' })
  const app = await buildApp(config, { logger })
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task()] } })
  t.equal(res.statusCode, 503)
  t.same(res.json(), { statusCode: 503, code: 'TASKBROKER_STORE_UNAVAILABLE', error: 'Service Unavailable', message: 'The task store is unavailable; retry later' })
  t.notMatch(res.body, /127\.0\.0\.1|ECONNREFUSED|:1\b/)
  t.ok(lines.some(line => line.includes('ECONNREFUSED') && line.includes('TASKBROKER_STORE_UNAVAILABLE')), 'the log line has the driver\'s message')
})
