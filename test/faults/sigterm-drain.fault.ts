/**
 * Fault 4: SIGTERM under load with TASKBROKER_STATUS_ACK=queued and a 2 s flush interval, so
 * acknowledged reports sit in the status queue when the signal arrives. The broker must stop
 * accepting work, write every queued report, and exit with code 0 within
 * TASKBROKER_SHUTDOWN_TIMEOUT_MS + 1 s (README "Shutdown": draining gives up after the timeout;
 * server.ts forces an exit 2 s after it). Every report acknowledged as queued must be in the
 * database after the exit.
 */
import t from 'tap'
import {
  assertNoLoss, assertTrafficClean, brokerEnv, cleanupStack, createFaultDatabase, getJson, Ledger, prepareBroker,
  RssSampler, sleep, startBroker, startLoad, summary, Traffic, verify, within
} from './kit.js'

const SHUTDOWN_TIMEOUT_MS = 5_000
const EXIT_BOUND_MS = SHUTDOWN_TIMEOUT_MS + 1_000

t.test('SIGTERM under load: queued reports are written and the broker exits 0 in time', { timeout: 180_000 }, async t => {
  const started = Date.now()
  const command = await prepareBroker()
  const defer = cleanupStack(t)
  const db = await createFaultDatabase(defer)
  const broker = await startBroker(defer, brokerEnv(db.url, {
    TASKBROKER_STATUS_ACK: 'queued',
    TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '2000',
    TASKBROKER_STATUS_BATCH_SIZE: '1000',
    TASKBROKER_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS)
  }))
  const rss = new RssSampler(() => broker.pid)
  defer(() => rss.stop())
  const traffic = new Traffic()
  const ledger = new Ledger()
  const load = startLoad({ base: broker.url, traffic, ledger, prefix: 'sigterm', producers: 2, workers: 4, failures: true })
  defer(() => load.stop(0))

  await sleep(4_000)
  // SIGTERM while reports are queued (the flush interval is 2 s, so this takes a moment at most).
  let depth = 0
  for (let i = 0; i < 50 && depth === 0; i++) {
    depth = Number((await getJson(broker.url, '/v1/stats'))?.status_queue_depth ?? 0)
    if (depth === 0) await sleep(100)
  }
  const ackedBefore = ledger.acked.size
  const termAt = Date.now()
  broker.kill('SIGTERM')
  const exit = await within(broker.exited, EXIT_BOUND_MS + 10_000)
  const exitMs = (exit?.at ?? Date.now()) - termAt
  await load.stop(0)
  rss.stop()
  const verification = await verify(db.url, ledger)
  const acceptedAfter = traffic.okSentAt.filter(at => at >= termAt + 100).length

  t.ok(depth > 0, `reports were queued at SIGTERM (${depth})`)
  t.ok(exit !== undefined, 'the broker exited')
  t.same(exit === undefined ? undefined : { code: exit.code, signal: exit.signal }, { code: 0, signal: null }, 'exit code 0')
  t.ok(exitMs <= EXIT_BOUND_MS, `it exited within TASKBROKER_SHUTDOWN_TIMEOUT_MS + 1 s (${exitMs} ms ≤ ${EXIT_BOUND_MS} ms)`)
  t.equal(acceptedAfter, 0, 'no request sent 100 ms or more after SIGTERM was answered 2xx (it stopped accepting)')
  // After the exit connections are refused: that is the expected end of the run.
  assertTrafficClean(t, traffic, { allowNetworkErrors: true })
  assertNoLoss(t, verification, ledger)
  t.ok(verification.acked > ackedBefore - 1 && ackedBefore > 0, 'reports were acknowledged before the signal')
  t.same(broker.errors.slice(0, 5), [], 'the broker logged no error (nothing abandoned)')
  t.comment(`answers by code: ${traffic.codesText()}`)
  t.comment(summary('SIGTERM under load', traffic, verification, {
    'queued at SIGTERM': depth,
    'exit ms': exitMs,
    'exit code': String(exit?.code ?? 'none'),
    'bound ms': EXIT_BOUND_MS,
    'max RSS MB': rss.max(),
    'max latency ms': traffic.maxLatencyMs,
    broker: command,
    'run time s': Math.round((Date.now() - started) / 1000)
  }))
})
