/**
 * TASKBROKER_PROCESSES=N with real processes (`node --import tsx src/server.ts`):
 * - a broker process answers not ready until the primary's ready message, and the primary's
 *   shutdown message shuts it down (a stand-in process, test/fixtures/cluster-worker.ts);
 * - with the embedded store, N > 1 is refused: exit 78, one line naming the variable;
 * - on PostgreSQL, N processes share the port: the primary plus N broker processes, tasks go
 *   through the port from end to end, /metrics sums every process's metrics, SIGTERM stops them
 *   all (exit 0);
 * - a broker process that dies stops the others and the primary exits non-zero;
 * - a refusal of the first process (an unmigrated database) is the whole broker's: exit 78, its line.
 * PostgreSQL cases run when TASKBROKER_TEST_DATABASE_URL is set.
 */
import cluster from 'node:cluster'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { Agent, request } from 'undici'
import { READY_MESSAGE, SHUTDOWN_MESSAGE } from '../src/core/cluster.js'
import { childPids } from '../bench/lib/process.js'
import { ROOT } from './helpers/broker-process.js'
import { runServer, type ServerRun } from './helpers/server-process.js'

/** The primary's line once every broker process listens. */
const PROCESSES_READY = (fields: Record<string, unknown>) => fields.msg === 'taskbroker processes ready'
const runBroker = async (t: Test, env: Record<string, string>): Promise<ServerRun> => await runServer(t, env, PROCESSES_READY)
import { TEST_DATABASE_URL } from './helpers/database.js'

const pgOnly = { skip: TEST_DATABASE_URL === undefined || TEST_DATABASE_URL === '' ? 'TASKBROKER_TEST_DATABASE_URL is not set' : false }

const alive = (pid: number) => { try { process.kill(pid, 0); return true } catch { return false } }

async function waitFor (what: string, condition: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** A database of its own on the test server, dropped at the end. */
async function freshDatabase (t: Test): Promise<string> {
  const admin = postgres(TEST_DATABASE_URL as string, { max: 1, onnotice: () => {} })
  const name = `tb_cluster_${process.pid}_${randomBytes(4).toString('hex')}`
  await admin.unsafe(`create database ${name}`)
  t.teardown(async () => {
    await admin.unsafe(`drop database if exists ${name} with (force)`)
    await admin.end()
  })
  const url = new URL(TEST_DATABASE_URL as string)
  url.pathname = `/${name}`
  return url.toString()
}

/** One request on a connection of its own, so the requests spread over the processes. */
async function post (url: string, body: unknown): Promise<{ status: number, body: any }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' }, body: JSON.stringify(body) })
  return { status: response.status, body: await response.json() }
}

t.test('a broker process is not ready until the primary says all listen, and shuts down when the primary asks', { timeout: 120_000 }, async (t) => {
  cluster.setupPrimary({ exec: join(ROOT, 'test', 'fixtures', 'cluster-worker.ts'), execArgv: ['--import', 'tsx'], silent: false })
  const worker = cluster.fork()
  t.teardown(() => { if (!worker.isDead()) worker.kill('SIGKILL') })
  const messages: unknown[] = []
  worker.on('message', (message: unknown) => messages.push(message))
  const next = async (): Promise<unknown> => {
    await waitFor('a message from the broker process', () => messages.length > 0)
    return messages.shift()
  }
  t.same(await next(), { before: 'broker processes starting' }, '/readyz would say why: the others are starting')
  worker.send(READY_MESSAGE)
  worker.send('report')
  t.same(await next(), { after: null }, 'ready once the primary says every process listens')
  worker.send(SHUTDOWN_MESSAGE)
  t.same(await next(), { shutdown: true }, 'the primary\'s shutdown message starts its shutdown')
  const exited = new Promise(resolve => worker.once('exit', resolve))
  worker.send('exit')
  await exited
})

t.test('the embedded store with TASKBROKER_PROCESSES=2: exit 78, one line naming the variable', { timeout: 120_000 }, async (t) => {
  const run = await runBroker(t, { TASKBROKER_PROCESSES: '2' })
  const exit = await run.exited
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(exit.code, 78, `exit 78 (stderr: ${run.stderr.join('\n')})`)
  const lines = run.stderr.filter(line => line.trim() !== '' && !/^\(node:\d+\) .*Warning|^\(Use `node --trace-warnings/.test(line))
  t.same(lines, ['Invalid configuration: TASKBROKER_PROCESSES must be 1 with the embedded store (PGlite is one process; got 2); set TASKBROKER_DATABASE_URL to run several processes'])
})

t.test('PostgreSQL, 2 processes: they share the port, tasks go through, SIGTERM stops all of them', { ...pgOnly, timeout: 300_000 }, async (t) => {
  const url = await freshDatabase(t)
  // Reports wait up to a second for their flush, so some are in flight at SIGTERM (below).
  const run = await runBroker(t, { TASKBROKER_PROCESSES: '2', TASKBROKER_DATABASE_URL: url, TASKBROKER_RUN_MIGRATIONS: 'true', LOG_LEVEL: 'info', TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '1000' })
  t.ok(await run.ready, `ready (stderr: ${run.stderr.join('\n')})`)
  const children = childPids(run.pid)
  t.equal(children.length, 2, 'two broker processes under the primary')
  // Each broker process says it is ready (the last may log it just after the primary's line).
  await waitFor('two ready lines', () => run.stdout.filter(line => line.includes('"taskbroker ready')).length >= 2)
  const readyLines = run.stdout.filter(line => line.includes('"taskbroker ready')).map(line => JSON.parse(line) as { pid: number, processes: number })
  t.same(readyLines.map(l => l.pid).sort(), [...children].sort(), 'each process logged its ready line')
  t.ok(readyLines.every(l => l.processes === 2), 'and says how many there are')

  const ready = await fetch(`${run.url}/readyz`, { headers: { connection: 'close' } })
  t.equal(ready.status, 200, 'ready once every process listens')
  await ready.arrayBuffer()

  const produced = await post(`${run.url}/v1/tasks`, { tasks: Array.from({ length: 20 }, (_, i) => ({ id: `c-${i}`, application: 'app', namespace: 'ns', taskname: 'x' })) })
  t.equal(produced.status, 201)
  const claimed: string[] = []
  for (let i = 0; i < 20 && claimed.length < 20; i++) {
    const reply = await post(`${run.url}/v1/tasks/claim`, { application: 'app', limit: 3 })
    t.equal(reply.status, 200)
    for (const task of reply.body.tasks as Array<{ id: string }>) claimed.push(task.id)
  }
  t.same(claimed.sort(), Array.from({ length: 20 }, (_, i) => `c-${i}`).sort(), 'every task claimed once, whichever process answered')
  // Counts read from the store are the store's, not one per process added up.
  const counted = await fetch(`${run.url}/metrics`, { headers: { connection: 'close' } })
  t.match(await counted.text(), /^taskbroker_tasks\{status="processing"\} 20$/m, 'taskbroker_tasks: 20 processing, as the store says')
  const reported = await post(`${run.url}/v1/tasks/status`, { updates: claimed.map(id => ({ id, status: 'complete' })) })
  t.equal(reported.status, 200)
  t.equal(reported.body.applied + reported.body.queued, 20, 'and reported')

  // Whichever process answers /metrics, it counts the whole broker's tasks (summed by the primary).
  for (let i = 0; i < 6; i++) {
    const response = await fetch(`${run.url}/metrics`, { headers: { connection: 'close' } })
    t.equal(response.status, 200)
    const produced = /^taskbroker_tasks_produced_total (\d+)$/m.exec(await response.text())?.[1]
    t.equal(produced, '20', `metrics request ${i + 1}: 20 tasks produced in all`)
  }

  // Reports in flight over kept-alive connections at SIGTERM: answered, their connections closed,
  // and the processes shut down in order (they used to wait for the clients until killed).
  const more = await post(`${run.url}/v1/tasks`, { tasks: Array.from({ length: 8 }, (_, i) => ({ id: `k-${i}`, application: 'app', namespace: 'ns', taskname: 'x' })) })
  t.equal(more.status, 201)
  const agent = new Agent({ keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000 })
  t.teardown(() => agent.close())
  const held: string[] = []
  for (let i = 0; i < 20 && held.length < 8; i++) held.push(...((await post(`${run.url}/v1/tasks/claim`, { application: 'app', limit: 8 })).body.tasks as Array<{ id: string }>).map(task => task.id))
  const inFlight = held.map(id => request(`${run.url}/v1/tasks/${id}/status`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: '{"status":"complete"}' })
    .then(async answer => { await answer.body.dump(); return answer.statusCode }, () => 'reset'))
  await new Promise(resolve => setTimeout(resolve, 100))
  run.kill('SIGTERM')
  t.ok((await Promise.all(inFlight)).every(code => code === 200 || code === 503 || code === 'reset'), 'each report answered (or refused) at shutdown')
  const exit = await run.exited
  t.same(exit, { code: 0, signal: null }, 'the primary exits 0 after its processes')
  await waitFor('the broker processes to exit', () => children.every(pid => !alive(pid)))
  t.equal(run.stdout.filter(line => line.includes('"shutdown complete"')).length, 2, 'each process shut down in order')
})

t.test('PostgreSQL: a broker process that dies stops the others; the primary exits non-zero', { ...pgOnly, timeout: 300_000 }, async (t) => {
  const url = await freshDatabase(t)
  const run = await runBroker(t, { TASKBROKER_PROCESSES: '2', TASKBROKER_DATABASE_URL: url, TASKBROKER_RUN_MIGRATIONS: 'true' })
  t.ok(await run.ready, `ready (stderr: ${run.stderr.join('\n')})`)
  const [victim, other] = childPids(run.pid) as [number, number]
  process.kill(victim, 'SIGKILL')
  const exit = await run.exited
  t.equal(exit.code, 1, 'the primary exits 1')
  await waitFor('the other process to exit', () => !alive(other))
  t.ok(run.stdout.some(line => line.includes('a broker process exited; stopping the others') && line.includes(`"pid":${victim}`)), 'and says which process exited')
})

t.test('PostgreSQL: an unmigrated database is refused by the first process: exit 78, its one line', { ...pgOnly, timeout: 300_000 }, async (t) => {
  const url = await freshDatabase(t)
  const run = await runBroker(t, { TASKBROKER_PROCESSES: '3', TASKBROKER_DATABASE_URL: url })
  const exit = await run.exited
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(exit.code, 78, `exit 78 (stderr: ${run.stderr.join('\n')})`)
  const lines = run.stderr.filter(line => line.trim() !== '' && !/^\(node:\d+\) .*Warning|^\(Use `node --trace-warnings/.test(line))
  t.equal(lines.length, 1, 'one line on stderr')
  t.match(lines[0], /^The database at TASKBROKER_DATABASE_URL is not migrated/)
  t.equal(run.stdout.filter(line => line.includes('"taskbroker ready')).length, 0, 'no process started serving')
})
