/**
 * Fault 1: the broker's PostgreSQL sessions are killed under load (pg_terminate_backend on every
 * session of its database, three times, 2 s apart). The broker must recover by itself within a
 * few seconds, answer every request in the meantime with a success or a 503 + Retry-After (never a
 * 500, never a hang), and every report it acknowledged must be in the database.
 *
 * Run twice: with ack = flushed (the default), and with ack = queued and a 10 s flush interval, so
 * acknowledged reports are still queued when the sessions die (they must be written once the
 * database answers again).
 */
import t, { type Test } from 'tap'
import {
  assertNoLoss, assertTrafficClean, brokerEnv, cleanupStack, createFaultDatabase, Ledger, prepareBroker, RssSampler,
  sleep, startBroker, startLoad, summary, terminateBackends, Traffic, verify, waitForDrainedQueue
} from './kit.js'

const KILLS = 3
const RECOVERY_BOUND_MS = 5_000

async function scenario (t: Test, name: string, env: Record<string, string>): Promise<void> {
  const started = Date.now()
  const command = await prepareBroker()
  const defer = cleanupStack(t)
  const db = await createFaultDatabase(defer)
  const broker = await startBroker(defer, brokerEnv(db.url, env))
  const rss = new RssSampler(() => broker.pid)
  defer(() => rss.stop())
  const traffic = new Traffic()
  const ledger = new Ledger()
  const load = startLoad({ base: broker.url, traffic, ledger, prefix: 'kill', producers: 2, workers: 4, failures: true })
  defer(() => load.stop(0))

  await sleep(3_000)
  const kills: Array<{ at: number, terminated: number }> = []
  for (let i = 0; i < KILLS; i++) {
    kills.push({ at: Date.now(), terminated: await terminateBackends(db.name) })
    await sleep(2_000)
  }
  await sleep(5_000)
  await load.stop(20_000)
  const drained = await waitForDrainedQueue(broker.url, 30_000)
  const verification = await verify(db.url, ledger)
  rss.stop()
  const crashed = broker.exit
  const exit = await broker.stop(15_000)

  const recoveries = kills.map(k => Math.max(traffic.recoveryMs('claim', k.at) ?? Infinity, traffic.recoveryMs('report', k.at) ?? Infinity))
  t.equal(crashed, undefined, 'the broker stayed up through every kill')
  t.ok(kills.every(k => k.terminated > 0), `every kill terminated the broker's sessions (${kills.map(k => k.terminated).join(', ')})`)
  t.ok(recoveries.every(ms => ms <= RECOVERY_BOUND_MS), `claims and reports succeed again within ${RECOVERY_BOUND_MS} ms of each kill (${recoveries.join(', ')} ms)`)
  t.ok(drained, 'the status queue drained')
  assertTrafficClean(t, traffic)
  assertNoLoss(t, verification, ledger)
  t.same(broker.errors.slice(0, 5), [], 'the broker logged no error')
  t.same({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, 'SIGTERM afterwards: exit code 0')
  t.comment(`answers by code: ${traffic.codesText()}`)
  t.comment(summary(name, traffic, verification, {
    'sessions terminated': kills.map(k => k.terminated).join('+'),
    'recovery ms': recoveries.join('/'),
    'tasks produced': ledger.produced.size,
    'max RSS MB': rss.max(),
    'max latency ms': traffic.maxLatencyMs,
    broker: command,
    'run time s': Math.round((Date.now() - started) / 1000)
  }))
}

t.test('sessions killed under load, ack = flushed: the broker recovers by itself and loses no acknowledged report', { timeout: 180_000 }, async t => {
  await scenario(t, 'connections killed (ack flushed)', {})
})

t.test('sessions killed under load, ack = queued: reports queued at the kill are still written', { timeout: 180_000 }, async t => {
  await scenario(t, 'connections killed (ack queued)', {
    TASKBROKER_STATUS_ACK: 'queued',
    TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '10000',
    TASKBROKER_STATUS_BATCH_SIZE: '1000'
  })
})
