/**
 * Fault 5: sustained overload while the database is unreachable. The broker reaches PostgreSQL
 * through a TCP proxy run by the test; for 30 s the proxy resets every connection and every new
 * one (as a dead database host or a firewall would), while producers, workers and "ghost"
 * reporters (batches of 200 reports for ids that were never produced, to fill the status queue)
 * keep sending without honouring Retry-After. Callers must get 503 + Retry-After (never a timeout,
 * never a 500), the broker's RSS must stay under RSS_BOUND_MB and stop growing (the last third of
 * the outage may not exceed the first third by more than RSS_GROWTH_BOUND_MB), and once the proxy
 * lets connections through again the broker must serve again and lose no acknowledged report.
 */
import t from 'tap'
import {
  assertNoLoss, assertTrafficClean, brokerEnv, cleanupStack, createFaultDatabase, databaseUrl, Ledger, PgProxy,
  prepareBroker, RssSampler, sleep, startBroker, startLoad, summary, Traffic, verify, waitForDrainedQueue
} from './kit.js'

const OUTAGE_MS = 30_000
const RSS_BOUND_MB = 400
const RSS_GROWTH_BOUND_MB = 64
const RECOVERY_BOUND_MS = 15_000
/** No request waits out the outage: the store calls give up after 2 s (default), flushed acks after 2 s (set below). */
const OUTAGE_LATENCY_BOUND_MS = 3_500

t.test('database unreachable for 30 s under sustained load: 503s, bounded memory, nothing lost', { timeout: 240_000 }, async t => {
  const started = Date.now()
  const command = await prepareBroker()
  const defer = cleanupStack(t)
  const db = await createFaultDatabase(defer)
  const proxy = await PgProxy.start()
  defer(() => proxy.close())
  // Default limits (the status queue holds up to 20,000 reports), a shorter ack timeout.
  const broker = await startBroker(defer, brokerEnv(databaseUrl(db.name, proxy.port), {
    TASKBROKER_STATUS_ACK_TIMEOUT_MS: '2000'
  }))
  const rss = new RssSampler(() => broker.pid)
  defer(() => rss.stop())
  const traffic = new Traffic()
  const ledger = new Ledger()
  const load = startLoad({
    base: broker.url,
    traffic,
    ledger,
    prefix: 'outage',
    producers: 2,
    workers: 4,
    ghostReporters: 2,
    failures: true,
    producerPauseMs: 20,
    honourRetryAfter: false
  })
  defer(() => load.stop(0))

  await sleep(4_000)
  const baselineMb = rss.max()
  const cutAt = Date.now()
  proxy.cut()
  await sleep(OUTAGE_MS)
  const restoredAt = Date.now()
  const refused = proxy.refused
  proxy.restore()
  // Serve again: wait (bounded) for a claim and a report to succeed after the restore.
  for (let i = 0; i < RECOVERY_BOUND_MS / 250 + 8; i++) {
    if (traffic.recoveryMs('claim', restoredAt) !== undefined && traffic.recoveryMs('report', restoredAt) !== undefined) break
    await sleep(250)
  }
  await sleep(5_000)
  await load.stop(30_000)
  const drained = await waitForDrainedQueue(broker.url, 30_000)
  const verification = await verify(db.url, ledger)
  rss.stop()
  const crashed = broker.exit
  const exit = await broker.stop(15_000)

  const third = OUTAGE_MS / 3
  const firstThirdMb = rss.max(cutAt, cutAt + third)
  const lastThirdMb = rss.max(restoredAt - third, restoredAt)
  const maxMb = rss.max()
  const outage = traffic.window(cutAt, restoredAt)
  const recovery = Math.max(traffic.recoveryMs('claim', restoredAt) ?? Infinity, traffic.recoveryMs('report', restoredAt) ?? Infinity)
  t.equal(crashed, undefined, 'the broker stayed up through the outage')
  t.ok(outage.unavailable > 0, `callers got 503 during the outage (${outage.unavailable} of ${outage.sent})`)
  t.ok(outage.maxMs <= OUTAGE_LATENCY_BOUND_MS, `no request sent during the outage waited more than ${OUTAGE_LATENCY_BOUND_MS} ms (median ${outage.p50Ms} ms, max ${outage.maxMs} ms)`)
  t.ok(maxMb > 0 && maxMb < RSS_BOUND_MB, `RSS stayed under ${RSS_BOUND_MB} MB (max ${maxMb} MB, ${baselineMb} MB before the outage)`)
  t.ok(firstThirdMb > 0 && lastThirdMb > 0 && lastThirdMb - firstThirdMb < RSS_GROWTH_BOUND_MB,
    `RSS stopped growing during the outage (first third max ${firstThirdMb} MB, last third max ${lastThirdMb} MB)`)
  t.ok(recovery <= RECOVERY_BOUND_MS, `claims and reports succeed again within ${RECOVERY_BOUND_MS} ms of the database coming back (${recovery} ms)`)
  t.ok(drained, 'the status queue drained')
  assertTrafficClean(t, traffic)
  assertNoLoss(t, verification, ledger)
  t.same(broker.errors.slice(0, 5), [], 'the broker logged no error')
  t.same(exit, { code: 0, signal: null, at: exit.at }, 'SIGTERM afterwards: exit code 0')
  t.comment(`answers by code: ${traffic.codesText()}`)
  t.comment(summary('database unreachable 30 s', traffic, verification, {
    'during the outage: requests': outage.sent,
    '2xx/503/timeouts': `${outage.ok}/${outage.unavailable}/${outage.timeouts}`,
    'latency p50/max ms': `${outage.p50Ms}/${outage.maxMs}`,
    'connections reset by the proxy': refused,
    'ghost reports acknowledged': ledger.ghostsAcked,
    'RSS MB before/first third/last third/max': `${baselineMb}/${firstThirdMb}/${lastThirdMb}/${maxMb}`,
    'recovery ms': recovery,
    'max latency ms': traffic.maxLatencyMs,
    broker: command,
    'run time s': Math.round((Date.now() - started) / 1000)
  }))
})
