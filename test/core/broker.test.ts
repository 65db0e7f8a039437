/**
 * The broker core driven with no Fastify at all: produce, claim with filters and long-polls,
 * report, report-and-claim-next, stats, a dead letter requeued, and stop, in the order broker.ts
 * writes it.
 */
import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { createBroker, type Broker } from '../../src/core/broker.js'
import { testConfig, testStore } from '../helpers/app.js'
import { createTestDatabase, eachBackend } from '../helpers/database.js'
import type { Test } from '../helpers/requests.js'

const silent = pino({ level: 'silent' })

async function brokerOn (t: Test, backend: 'pglite' | 'postgres', env: Record<string, string> = {}, logger = silent): Promise<Broker> {
  const { database } = await createTestDatabase(t, backend)
  const config = testConfig({ TASKBROKER_UPKEEP_ENABLED: 'false', TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: '0', ...env })
  const broker = await createBroker(config, { store: testStore(database, config), logger })
  // Registered after the database's teardown, so it runs first.
  t.teardown(() => broker.stop())
  broker.start()
  return broker
}

const ids = (tasks: Array<{ activation: { id: string } }>) => tasks.map(task => task.activation.id)

eachBackend(t, 'the use cases without a front end', async (t, backend) => {
  const broker = await brokerOn(t, backend)

  const produced = await broker.produce([
    { id: 'a1', application: 'shop', namespace: 'mail', taskname: 'send' },
    { id: 'a2', application: 'shop', namespace: 'bill', taskname: 'charge' },
    { id: 'b1', application: 'blog', namespace: 'mail', taskname: 'send' },
    { id: 'a1', application: 'shop', namespace: 'mail', taskname: 'send' }
  ])
  t.same(produced, { ids: ['a1', 'a2', 'b1', 'a1'], inserted: 3, duplicates: ['a1'], killswitched: [] })

  t.same(ids(await broker.claim({ application: 'shop', namespace: 'bill' })), ['a2'], 'application and namespace filter')
  t.same(ids(await broker.claim({ application: 'blog', limit: 5 })), ['b1'], 'application filter')
  await t.rejects(broker.claim({ namespace: 'mail' }), { code: 'TASKBROKER_INVALID_REQUEST' }, 'a namespace needs an application, whatever the front end')

  const report = await broker.report([{ id: 'a2', status: 'retry' }, { id: 'a2', status: 'complete' }, { id: 'nope', status: 'failure' }])
  t.same(report, { applied: ['a2'], notFound: ['nope'], queued: [], stale: [], cancelled: [] }, 'the last report for an id counts')
  await t.rejects(broker.getTask('a2'), { code: 'TASKBROKER_TASK_NOT_FOUND' }, 'completed tasks are gone')

  const next = await broker.reportAndClaimNext({ id: 'b1', status: 'complete' }, { application: 'shop' })
  t.same(next.outcome.applied, ['b1'])
  t.equal(next.task?.activation.id, 'a1', 'the next task came with the report')
  t.equal((await broker.getTask('a1')).status, 'processing')

  const stats = await broker.stats()
  t.equal(stats.byStatus.processing, 1)
  t.equal(stats.deadletters, 0)
  t.equal(stats.statusQueueDepth, 0)
  t.equal(await broker.notReadyReason(), null, 'ready')
})

eachBackend(t, 'a long-poll wakes for a produced task, and ends when its caller gives up', async (t, backend) => {
  const broker = await brokerOn(t, backend, { TASKBROKER_CLAIM_RECHECK_MS: '60000' })
  const waiting = broker.claim({ application: 'shop', waitMs: 20_000 })
  await until(t, () => broker.metrics.claimWaiters.get().then(m => m.values[0]?.value === 1))
  await broker.produce([{ id: 'woken', application: 'shop', namespace: 'mail', taskname: 'send' }])
  t.same(ids(await waiting), ['woken'], 'woken by produce, not by the minute-long re-check')

  const abort = new AbortController()
  const abandoned = broker.claim({ application: 'shop', waitMs: 20_000, abort: abort.signal })
  await until(t, () => broker.metrics.claimWaiters.get().then(m => m.values[0]?.value === 1))
  abort.abort()
  t.same(await abandoned, [], 'an aborted wait answers with nothing')
})

eachBackend(t, 'a failed task becomes a dead letter, is requeued and claimed again', async (t, backend) => {
  const broker = await brokerOn(t, backend, { TASKBROKER_CLAIM_RECHECK_MS: '60000' })
  await broker.produce([{ id: 'dl', namespace: 'ns', taskname: 'fails', retry_state: { max_attempts: 1, on_attempts_exceeded: 'deadletter' } }])
  t.same(ids(await broker.claim({})), ['dl'])
  await broker.report([{ id: 'dl', status: 'failure' }])
  await broker.upkeep.runOnce(new Date())
  const page = await broker.deadletters.list({})
  t.same(page.items.map(letter => [letter.id, letter.reason]), [['dl', 'reported_failure']])
  await t.rejects(broker.deadletters.list({ cursor: 'not-a-cursor' }), { code: 'TASKBROKER_INVALID_REQUEST' })

  const waiting = broker.claim({ waitMs: 20_000 })
  await broker.deadletters.requeue('dl')
  t.same(ids(await waiting), ['dl'], 'the requeue woke the long-poll')
  await t.rejects(broker.deadletters.requeue('dl'), { code: 'TASKBROKER_DEADLETTER_NOT_FOUND' })
  await t.rejects(broker.deadletters.remove('dl'), { code: 'TASKBROKER_DEADLETTER_NOT_FOUND' })
})

t.test('push mode refuses claims and fetch_next, whatever the front end', async (t) => {
  const broker = await brokerOn(t, 'pglite', { TASKBROKER_DELIVERY_MODE: 'push', TASKBROKER_WORKER_MAP: 'shop=http://127.0.0.1:9/push' })
  await t.rejects(broker.claim({}), { code: 'TASKBROKER_WRONG_DELIVERY_MODE' })
  await t.rejects(broker.reportAndClaimNext({ id: 'x', status: 'complete' }, {}), { code: 'TASKBROKER_WRONG_DELIVERY_MODE' })
})

t.test('stop: long-polls end at once, then the parts stop in the order broker.ts lists', async (t) => {
  const lines: Array<{ msg: string, part?: string }> = []
  const sink = new Writable({ write (chunk, _encoding, done) { lines.push(JSON.parse(String(chunk))); done() } })
  const broker = await brokerOn(t, 'pglite', {}, pino({ level: 'debug' }, sink))
  const waiting = broker.claim({ waitMs: 60_000 })
  broker.beginShutdown()
  t.same(await waiting, [], 'the long-poll answered at shutdown')
  t.equal(await broker.notReadyReason(), 'shutting down')
  await broker.stop()
  const order = lines.filter(l => l.msg === 'stopping').map(l => l.part)
  // The given store stays open (its owner closes it); a store the broker opened closes last.
  t.same(order, ['upkeep', 'runtime config', 'queue restrictions watch', 'heartbeats', 'status writer', 'produce', 'claims', 'broker notifications'])
})

t.test('a broker that opened its store closes it last', async (t) => {
  const lines: Array<{ msg: string, part?: string }> = []
  const sink = new Writable({ write (chunk, _encoding, done) { lines.push(JSON.parse(String(chunk))); done() } })
  const config = testConfig({ TASKBROKER_DELIVERY_MODE: 'push', TASKBROKER_WORKER_MAP: 'shop=http://127.0.0.1:9/push' })
  const broker = await createBroker(config, { logger: pino({ level: 'debug' }, sink) })
  await broker.stop()
  t.same(lines.filter(l => l.msg === 'stopping').map(l => l.part), ['upkeep', 'runtime config', 'queue restrictions watch', 'push', 'heartbeats', 'status writer', 'produce', 'claims', 'broker notifications', 'store'])
})

async function until (t: Test, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 2_000; i++) {
    if (await check()) return
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  t.fail('timed out waiting')
}
