/**
 * examples/pull-worker.ts against a broker on a real port: as a program it completes every task
 * produced, and on SIGTERM finishes the task in hand, reports it and exits holding none. In
 * process: it signs its requests, and waits Retry-After after a 503.
 */
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { startPullWorker } from '../../examples/pull-worker.js'
import { signRequest } from '../../src/auth/signing.js'
import { buildTestApp, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'

const ROOT = new URL('../..', import.meta.url).pathname
const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms))

async function until (what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await sleep(50)
  }
}

eachBackend(t, 'the pull worker completes every task, and on SIGTERM reports the task in hand and exits holding none', { timeout: 180_000 }, async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { TASKBROKER_AUTH_SECRETS: 's3cret' })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const signed = (method: string, path: string, body = '') => ({ 'content-type': 'application/json', ...signRequestHeaders(method, path, body) })
  const produce = async (n: number, prefix: string) => {
    const body = JSON.stringify({ tasks: Array.from({ length: n }, (_, i) => task({ id: `${prefix}-${i}`, namespace: 'mail', taskname: 'send' })) })
    const response = await app.inject({ method: 'POST', url: '/v1/tasks', headers: signed('POST', '/v1/tasks', body), payload: body })
    t.equal(response.statusCode, 201)
  }
  const counts = async () => (await app.inject({ url: '/v1/stats', headers: signed('GET', '/v1/stats') })).json().by_status as Record<string, number>

  await produce(10, 'first')
  // WORK_MS: each task takes 200 ms, so a SIGTERM finds one in hand.
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'examples/pull-worker.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, TASKBROKER_URL: url, TASKBROKER_SECRET: 's3cret', WAIT_MS: '1000', WORK_MS: '200' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  t.teardown(() => { child.kill('SIGKILL') })

  await until('the first 10 tasks are done', async () => {
    const c = await counts()
    return c.pending === 0 && c.processing === 0
  }, 120_000)
  t.equal(output.match(/: complete\n/g)?.length, 10, 'every task was run once')
  t.notMatch(output, /answered 401/, 'its requests are signed')

  await produce(30, 'second')
  await until('the worker holds a task', async () => (await counts()).processing === 1)
  child.kill('SIGTERM')
  const code = await Promise.race([exited, sleep(60_000).then(() => 'still running')])
  t.equal(code, 0, `the worker exited (output: ${output.slice(-1000)})`)
  const after = await counts()
  t.equal(after.processing, 0, 'no task is left processing')
  t.equal(after.claimed, 0)
  const ran = output.match(/second-\d+ mail\.send: complete\n/g)?.length ?? 0
  t.ok(ran >= 1 && ran < 30, `it stopped part way (${ran} of 30 run)`)
  t.equal(after.pending, 30 - ran, 'every task it ran was reported; the rest wait, unclaimed')
})

t.test('after a 503 the worker waits Retry-After seconds and sends the same request again', async (t) => {
  const seen: Array<{ path: string, at: number }> = []
  let claims = 0
  const server = createServer((request, response) => {
    seen.push({ path: request.url ?? '', at: Date.now() })
    request.resume()
    request.on('end', () => {
      if (request.url === '/v1/tasks/claim') {
        claims++
        if (claims === 1) return response.writeHead(503, { 'retry-after': '2', 'content-type': 'application/json' }).end('{"code":"TASKBROKER_STORE_UNAVAILABLE"}')
        const tasks = claims === 2 ? [{ id: 'only', namespace: 'n', taskname: 'x', application: '', parameters: null, processing_deadline: '', retry_state: { attempts: 0, max_attempts: 1 } }] : []
        return response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ tasks }))
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ applied: true, queued: false, task: null }))
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const worker = startPullWorker({ brokerUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, waitMs: 100, handler: () => 'complete' })
  await until('the task is reported', async () => worker.reported === 1)
  await worker.stop()
  const [first, second] = seen
  t.same([first?.path, second?.path], ['/v1/tasks/claim', '/v1/tasks/claim'])
  t.ok((second?.at ?? 0) - (first?.at ?? 0) >= 1_900, 'the second claim came after Retry-After (2 s)')
  t.ok(seen.some(s => s.path === '/v1/tasks/only/status'), 'the task was reported')
})

function signRequestHeaders (method: string, path: string, body: string): Record<string, string> {
  return signRequest('s3cret', { method, path, body, nonce: randomUUID() })
}

eachBackend(t, 'the pull worker refused by the broker (a wrong secret) exits 1, so a supervisor sees it fail', { timeout: 120_000 }, async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { TASKBROKER_AUTH_SECRETS: 's3cret' })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'examples/pull-worker.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, TASKBROKER_URL: url, TASKBROKER_SECRET: 'wrong', WAIT_MS: '1000' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  t.teardown(() => { child.kill('SIGKILL') })
  const code = await Promise.race([new Promise<number | null>(resolve => child.once('exit', resolve)), sleep(100_000).then(() => 'still running')])
  t.equal(code, 1, output)
  t.match(output, /answered 401/)
})
