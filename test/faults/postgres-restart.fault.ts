/**
 * Fault 2: PostgreSQL itself is restarted under load (`pg_ctlcluster 15 main restart`, fast mode:
 * every session is closed, the server is down for a moment). The broker must come back by itself
 * once the server accepts connections again, answer every request with a success or a 503 +
 * Retry-After (never a 500, never a hang), and lose no acknowledged report (ack = flushed).
 * PostgreSQL is started again in teardown if the restart left it down.
 */
import t from 'tap'
import {
  assertNoLoss, assertTrafficClean, brokerEnv, cleanupStack, createFaultDatabase, ensurePostgresUp, Ledger, prepareBroker,
  restartPostgres, RssSampler, sleep, startBroker, startLoad, summary, Traffic, verify, waitForDrainedQueue, waitForPostgres
} from './kit.js'

const RECOVERY_BOUND_MS = 10_000

t.test('the broker recovers by itself when PostgreSQL restarts under load', { timeout: 240_000 }, async t => {
  const started = Date.now()
  const command = await prepareBroker()
  const defer = cleanupStack(t)
  defer(() => ensurePostgresUp())
  const db = await createFaultDatabase(defer)
  const broker = await startBroker(defer, brokerEnv(db.url))
  const rss = new RssSampler(() => broker.pid)
  defer(() => rss.stop())
  const traffic = new Traffic()
  const ledger = new Ledger()
  const load = startLoad({ base: broker.url, traffic, ledger, prefix: 'restart', producers: 2, workers: 4, failures: true })
  defer(() => load.stop(0))

  await sleep(4_000)
  const restartAt = Date.now()
  const restart = await restartPostgres()
  const ready = await waitForPostgres(60_000)
  const readyAt = Date.now()
  await sleep(8_000)
  await load.stop(20_000)
  const drained = await waitForDrainedQueue(broker.url, 30_000)
  const verification = await verify(db.url, ledger)
  rss.stop()
  const crashed = broker.exit
  const exit = await broker.stop(15_000)

  const recovery = Math.max(traffic.recoveryMs('claim', readyAt) ?? Infinity, traffic.recoveryMs('report', readyAt) ?? Infinity)
  t.equal(restart.code, 0, `pg_ctlcluster restart succeeded (${restart.ms} ms) ${restart.output}`)
  t.ok(ready, 'PostgreSQL accepts connections again')
  t.equal(crashed, undefined, 'the broker stayed up through the restart')
  t.ok(recovery <= RECOVERY_BOUND_MS, `claims and reports succeed again within ${RECOVERY_BOUND_MS} ms of PostgreSQL being ready (${recovery} ms)`)
  t.ok(drained, 'the status queue drained')
  assertTrafficClean(t, traffic)
  assertNoLoss(t, verification, ledger)
  t.same(broker.errors.slice(0, 5), [], 'the broker logged no error')
  t.same(exit, { code: 0, signal: null, at: exit.at }, 'SIGTERM afterwards: exit code 0')
  t.comment(`answers by code: ${traffic.codesText()}`)
  t.comment(summary('PostgreSQL restarted', traffic, verification, {
    'restart ms': restart.ms,
    'down ms': readyAt - restartAt,
    'recovery ms': recovery,
    'tasks produced': ledger.produced.size,
    'max RSS MB': rss.max(),
    'max latency ms': traffic.maxLatencyMs,
    broker: command,
    'run time s': Math.round((Date.now() - started) / 1000)
  }))
})
