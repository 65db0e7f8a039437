/**
 * The SDK examples as real processes against a real broker with signing on (both stores): the
 * producer produces, the pull worker runs every task and drains on SIGINT (Ctrl-C), the push worker
 * receives the broker's pushes, reports them and drains on SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { freePort, ROOT } from '../../bench/lib/process.js'
import { createClient } from '../../src/client/index.js'
import { eachBackend } from '../helpers/database.js'
import { PUSH_ENV } from '../push/helpers.js'
import { SECRET, startBroker, waitFor } from './broker.js'

interface Child { process: ChildProcess, output: () => string, exited: Promise<number | null> }

function example (t: Test, file: string, env: Record<string, string>, args: string[] = []): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'examples', file), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, LOG_LEVEL: 'warn', TASKBROKER_SECRET: SECRET, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  return { process: child, output: () => output, exited }
}

eachBackend(t, 'the producer and the pull worker', { timeout: 180_000 }, async (t, backend) => {
  const broker = await startBroker(t, backend)
  const producer = example(t, 'producer.ts', { TASKBROKER_URL: broker.url }, ['25'])
  t.equal(await producer.exited, 0, producer.output())
  const ids = producer.output().trim().split('\n')
  t.equal(ids.length, 25)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  t.equal((await client.stats()).by_status.pending, 25)
  await client.produce([{ id: 'retry-me', application: 'example', namespace: 'emails', taskname: 'x', parameters: { retryMe: true }, retry_state: { max_attempts: 2 } }])

  const worker = example(t, 'sdk-pull-worker.ts', { TASKBROKER_URL: broker.url })
  t.ok(await waitFor(() => ids.every(id => worker.output().includes(`done ${id}`)), 120_000), 'every produced task done')
  // The example prints `done` for this task only on its second attempt (the first returns retry()),
  // so its line shows that the retry was reported and the broker ran the task again (upkeep is on).
  t.ok(await waitFor(() => worker.output().includes('done retry-me'), 120_000), 'the retry was reported and the task ran again')
  // Ctrl-C drains as SIGTERM does.
  worker.process.kill('SIGINT')
  t.equal(await worker.exited, 0, worker.output())
  const stats = await client.stats()
  t.equal(stats.by_status.processing ?? 0, 0, 'nothing left processing')
})

eachBackend(t, 'the push worker', { timeout: 180_000 }, async (t, backend) => {
  const port = await freePort()
  const worker = example(t, 'sdk-push-worker.ts', { PORT: String(port) })
  t.ok(await waitFor(() => worker.output().includes('listening'), 120_000), worker.output())
  const broker = await startBroker(t, backend, { ...PUSH_ENV, TASKBROKER_WORKER_MAP: `example=http://127.0.0.1:${port}/push` })
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  const produced = await client.produce(Array.from({ length: 20 }, () => ({ application: 'example', namespace: 'n', taskname: 't' })))
  t.ok(await waitFor(() => produced.ids.every(id => worker.output().includes(`done ${id}`)), 120_000), 'every task pushed and run')
  t.ok(await waitFor(async () => Object.values((await client.stats()).by_status).every(n => n === 0)), 'every report written')
  worker.process.kill('SIGTERM')
  t.equal(await worker.exited, 0, worker.output())
})
