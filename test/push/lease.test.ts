/**
 * Claims of push mode: bucket ranges, the lease and its expiry by upkeep, and the fencing that
 * keeps a late push outcome from touching a task that moved on.
 */
import { sql } from 'drizzle-orm'
import t from 'tap'
import { pushClaimLeaseMs, bucketRange } from '../../src/core/push/lease.js'
import { createPushStore } from '../../src/store/push-store.js'
import { buildTestApp, task, testConfig } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { fakeWorker, metric, produce, startPushApp, statusCounts, taskRows, until } from './helpers.js'

const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

t.test('the lease covers the worst case from claim to settle, as upstream sizes it', async (t) => {
  const defaults = testConfig().push
  t.equal(pushClaimLeaseMs(defaults), 2 * 10_000 + 5 + 2 * 1000, 'defaults: two rounds of push timeouts + the flush interval + two statements')
  t.equal(pushClaimLeaseMs({ ...defaults, updateBatching: false }), 2 * 10_000 + 1000, 'unbatched: one statement')
  t.equal(pushClaimLeaseMs({ ...defaults, queueSize: 100, concurrency: 10, timeoutMs: 1000 }), 11 * 1000 + 5 + 2000, 'a deep queue waits behind ceil(queue / concurrency) rounds')
})

t.test('the fetch loops\' bucket ranges cover 0–255 exactly once', async (t) => {
  for (const loops of [1, 2, 3, 5, 7, 64, 255, 256]) {
    const covered: number[] = []
    for (let i = 0; i < loops; i++) {
      const [low, high] = bucketRange(i, loops)
      t.ok(low <= high, `loop ${i} of ${loops} has a range`)
      for (let b = low; b <= high; b++) covered.push(b)
    }
    t.same(covered, Array.from({ length: 256 }, (_, i) => i), `${loops} loops`)
  }
})

/** A UUID whose last byte (its bucket) is `bucket`. */
const uuidIn = (bucket: number, n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(10, '0')}${bucket.toString(16).padStart(2, '0')}`

eachBackend(t, 'a push claim takes only its buckets and mapped applications, oldest first, with a lease', async (t, backend) => {
  const { app, database } = await buildTestApp(t, backend, { TASKBROKER_UPKEEP_ENABLED: 'false', TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: '0' })
  const store = createPushStore(database, { processingDeadlineGraceSec: 3 })
  await produce(t, app, [
    task({ id: uuidIn(0x10, 1), application: 'shop' }),
    task({ id: uuidIn(0x90, 2), application: 'shop' }),
    task({ id: uuidIn(0x11, 3), application: 'other' }),
    task({ id: uuidIn(0x12, 4), application: 'shop' }),
    task({ id: uuidIn(0x13, 5), application: 'shop', delay: 600 })
  ])
  const before = Date.now()
  const claimed = await store.claim({ buckets: [0, 127], applications: ['shop'], limit: 10, leaseMs: 30_000 })
  t.same(claimed.map(c => c.activation.id), [uuidIn(0x10, 1), uuidIn(0x12, 4)], 'in range, mapped, pending; oldest first')
  const rows = await taskRows(database)
  for (const row of rows.filter(r => r.status === 'claimed')) {
    const expires = new Date(row.claim_expires_at as string).getTime()
    t.ok(expires >= before + 29_000 && expires <= Date.now() + 31_000, 'claim_expires_at = now + lease')
  }
  t.same(await store.claim({ buckets: [0, 127], applications: ['shop'], limit: 10, leaseMs: 30_000 }), [], 'claimed tasks are not claimed again')
  t.same(await store.claim({ buckets: [0, 127], applications: [], limit: 10, leaseMs: 30_000 }), [], 'no applications, no claim')
  t.same((await store.claim({ buckets: [128, 255], applications: ['shop'], limit: 10, leaseMs: 30_000 })).map(c => c.activation.id), [uuidIn(0x90, 2)], 'the other range')

  await t.test('an expired lease puts the task back to pending with no attempt counted', async (t) => {
    await app.broker.upkeep.runOnce(new Date(Date.now() + 10_000))
    t.equal((await statusCounts(database)).claimed, 3, 'not before the lease passes')
    await app.broker.upkeep.runOnce(new Date(Date.now() + 31_000))
    const after = await taskRows(database)
    t.equal(after.filter(r => r.status === 'claimed').length, 0, 'no claim left')
    for (const id of [uuidIn(0x10, 1), uuidIn(0x12, 4), uuidIn(0x90, 2)]) {
      const row = after.find(r => r.id === id)
      t.equal(row?.status, 'pending', `${id} pending again`)
      t.equal(row?.processing_attempts, 0, 'no attempt counted')
      t.equal(row?.claim_expires_at, null, 'lease cleared')
    }
  })
})

eachBackend(t, 'settling is fenced: only a task still claimed under the same claim changes', async (t, backend) => {
  const { app, database } = await buildTestApp(t, backend, { TASKBROKER_UPKEEP_ENABLED: 'false', TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: '0' })
  const store = createPushStore(database, { processingDeadlineGraceSec: 3 })
  const claim = async () => store.claim({ buckets: [0, 255], applications: ['shop'], limit: 10, leaseMs: 30_000 })
  const [a, b, c, d] = await produce(t, app, [task({ application: 'shop' }), task({ application: 'shop' }), task({ application: 'shop' }), task({ application: 'shop' })]) as [string, string, string, string]
  const first = new Map((await claim()).map(x => [x.activation.id, x.token]))
  t.equal(first.size, 4)

  // b: reported complete by its worker before the broker settled its push
  await app.inject({ method: 'POST', url: `/v1/tasks/${b}/status`, payload: { status: 'complete' } })
  // c: its lease expired and it was claimed again (a new token)
  await database.rows(sql`update inflight_tasks set status = 'pending', claim_expires_at = null where id = ${c}`)
  const second = await claim()
  t.same(second.map(x => x.activation.id), [c])
  t.not(second[0]?.token, first.get(c), 'a new claim, a new token')

  const applied = await store.settle([
    { id: a, token: first.get(a) as string, delivered: true },
    { id: b, token: first.get(b) as string, delivered: true },
    { id: c, token: first.get(c) as string, delivered: false },
    { id: d, token: first.get(d) as string, delivered: false }
  ])
  t.same([...applied].sort(), [a, d].sort(), 'only the tasks still under their claim')
  const rows = new Map((await taskRows(database)).map(r => [r.id, r]))
  t.equal(rows.get(a)?.status, 'processing', 'delivered → processing')
  t.ok(rows.get(a)?.processing_deadline !== null, 'with a deadline')
  t.equal(rows.has(b), false, 'the completed task is left alone (gone)')
  t.equal(rows.get(c)?.status, 'claimed', 'the re-claimed task keeps its new claim')
  t.equal(rows.get(d)?.status, 'pending', 'not delivered → pending')
  t.equal(rows.get(d)?.processing_attempts, 0, 'no attempt counted')
  t.same(await store.settle([{ id: a, token: first.get(a) as string, delivered: false }]), new Set(), 'a processing task is never reverted')
})

eachBackend(t, 'push mode end to end: a push stuck past its lease is taken back, and its late answer changes nothing', async (t, backend) => {
  const worker = await fakeWorker(t, { mode: 'hang' })
  const { app, database, config } = await startPushApp(t, backend, {
    TASKBROKER_WORKER_MAP: `shop=${worker.url}`,
    TASKBROKER_PUSH_TIMEOUT_MS: '60000',
    TASKBROKER_PUSH_CONCURRENCY: '2',
    TASKBROKER_PUSH_QUEUE_SIZE: '2'
  })
  const leaseMs = pushClaimLeaseMs(config.push)
  const ids = await produce(t, app, Array.from({ length: 6 }, () => task({ application: 'shop' })))
  await until(t, 'two pushes hang and two more wait', async () => worker.received.length === 2 && (await statusCounts(database)).claimed === 4)

  await app.broker.upkeep.runOnce(new Date(Date.now() + leaseMs + 1000))
  t.equal((await statusCounts(database)).pending, 6, 'every lease passed: all six pending again')

  worker.mode = 'accept' // the stuck pushes are answered now, long after their lease
  await until(t, 'all six end up processing', async () => (await statusCounts(database)).processing === 6)
  t.ok(await metric(app, 'taskbroker_push_updates_total{to="processing",result="skipped"}') >= 2, 'the late answers were fenced off')
  t.same([...new Set(worker.accepted)].sort(), ids.slice().sort(), 'every task delivered')
})
