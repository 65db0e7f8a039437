/**
 * Fault 3: the broker is SIGKILLed under load and started again on the same database and port.
 * With ack = flushed every report that got a 2xx must be in the database, and no task may be lost:
 * each produced task was completed exactly once (its completion acknowledged) or is still in the
 * table (pending, or processing when its claim or report died with the broker), so
 * rows + completed = produced, up to the tasks whose last report had an unknown outcome.
 * Workers retry reports that failed (as real workers do) against the restarted broker.
 * Finally the processing deadlines of the tasks left processing (their holders died with the
 * broker's answers) are moved into the past, as if a minute went by: upkeep must put every one of
 * them back in pending, so every produced task ends completed exactly once or pending.
 */
import t from 'tap'
import {
  assertNoLoss, assertTrafficClean, brokerEnv, cleanupStack, connectTo, createFaultDatabase, Ledger, prepareBroker, RssSampler,
  sleep, startBroker, startLoad, summary, Traffic, verify, waitForDrainedQueue, type Broker
} from './kit.js'

const RECOVERY_BOUND_MS = 10_000

t.test('no acknowledged report and no task is lost when the broker is SIGKILLed under load', { timeout: 180_000 }, async t => {
  const started = Date.now()
  const command = await prepareBroker()
  const defer = cleanupStack(t)
  const db = await createFaultDatabase(defer)
  const env = brokerEnv(db.url)
  const first = await startBroker(defer, env)
  let broker: Broker = first
  const rss = new RssSampler(() => broker.pid)
  defer(() => rss.stop())
  const traffic = new Traffic()
  const ledger = new Ledger()
  const load = startLoad({ base: first.url, traffic, ledger, prefix: 'sigkill', producers: 2, workers: 4, failures: false })
  defer(() => load.stop(0))

  await sleep(4_000)
  const killedAt = Date.now()
  first.kill('SIGKILL')
  const killed = await first.exited
  await sleep(1_000)
  // No startup window for deadline resets: the end of the test moves deadlines into the past.
  broker = await startBroker(defer, { ...env, TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: '0' }, first.port)
  const upAt = Date.now()
  await sleep(6_000)
  await load.stop(20_000)
  const drained = await waitForDrainedQueue(broker.url, 30_000)
  const verification = await verify(db.url, ledger)
  // A minute goes by: the tasks whose holders died with the first broker pass their deadline.
  const sql = connectTo(db.url)
  let orphans = 0
  let settled: Record<string, number> = {}
  try {
    orphans = (await sql`update inflight_tasks set processing_deadline = now() - interval '1 second' where status = 'processing' returning id`).length
    for (let i = 0; i < 50; i++) {
      settled = Object.fromEntries((await sql`select status, count(*)::int as n from inflight_tasks group by status`).map(r => [r.status as string, r.n as number]))
      if (Object.keys(settled).every(status => status === 'pending')) break
      await sleep(200)
    }
  } finally {
    await sql.end({ timeout: 5 })
  }
  rss.stop()
  const crashed = broker.exit
  const exit = await broker.stop(15_000)

  const recovery = Math.max(traffic.recoveryMs('claim', upAt) ?? Infinity, traffic.recoveryMs('report', upAt) ?? Infinity)
  t.equal(killed.signal, 'SIGKILL', 'the first broker died of SIGKILL')
  t.equal(crashed, undefined, 'the restarted broker stayed up')
  t.ok(recovery <= RECOVERY_BOUND_MS, `claims and reports succeed against the restarted broker (${recovery} ms after it was ready)`)
  t.ok(drained, 'the status queue drained')
  // Connections to the killed broker fail (reset, refused) until it is back: that is the fault itself.
  assertTrafficClean(t, traffic, { allowNetworkErrors: true })
  assertNoLoss(t, verification, ledger)
  const v = verification
  t.equal(v.rows + v.deadletters + v.completed + v.uncertainGone, ledger.produced.size + v.maybeFound + v.phantom.length,
    `rows ${v.rows} + completed ${v.completed} + completed by a report of unknown outcome ${v.uncertainGone}` +
    ` = produced ${ledger.produced.size} + stored by a produce of unknown outcome ${v.maybeFound}`)
  t.same(Object.keys(settled).filter(status => status !== 'pending'), [],
    `every task not completed is pending once its deadline passed (${orphans} were left processing by the kill: ${JSON.stringify(settled)})`)
  t.same(broker.errors.slice(0, 5), [], 'the restarted broker logged no error')
  t.same(exit, { code: 0, signal: null, at: exit.at }, 'SIGTERM afterwards: exit code 0')
  t.comment(`answers by code: ${traffic.codesText()}`)
  t.comment(summary('broker SIGKILLed', traffic, verification, {
    'tasks produced': ledger.produced.size,
    'rows left': verification.rows,
    'left processing by the kill, then pending': orphans,
    completed: verification.completed,
    'down ms': upAt - killedAt,
    'restart to ready ms': broker.readyMs,
    'recovery ms': recovery,
    'max RSS MB': rss.max(),
    'max latency ms': traffic.maxLatencyMs,
    broker: command,
    'run time s': Math.round((Date.now() - started) / 1000)
  }))
})
