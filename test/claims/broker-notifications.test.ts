/**
 * Notifications between brokers on one PostgreSQL database: a broker alone sends none; a broker
 * that starts listening says hello, and from then on the others notify it (a long-poll on it wakes
 * for a task produced through another); once it has gone, the others' next count stops them again.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import postgres from 'postgres'
import t from 'tap'
import { createBroker } from '../../src/core/broker.js'
import { peerView } from '../../src/core/claims/broker-notifications.js'
import { openDatabase } from '../../src/db/database.js'
import { testConfig, testStore } from '../helpers/app.js'
import { backends, createTestDatabase } from '../helpers/database.js'

const silent = pino({ level: 'silent' })

t.test('the view of other brokers', async (t) => {
  let answer: () => Promise<number> = async () => 1
  let counts = 0
  const view = peerView(async () => { counts++; return await answer() }, silent)
  t.equal(view.othersListen, true, 'before any count: notify, as if others listen')
  await view.look()
  t.equal(view.othersListen, false, 'only this broker listens')
  answer = async () => 2
  await view.look()
  t.equal(view.othersListen, true, 'another listens')
  answer = async () => await Promise.reject(new Error('database gone'))
  await view.look()
  t.equal(view.othersListen, true, 'a failed count notifies, as if others listen')

  answer = async () => 1
  await view.look()
  t.equal(view.othersListen, false)
  let release = () => {}
  answer = async () => { await new Promise<void>(resolve => { release = resolve }); return 1 }
  const look = view.look()
  view.joined()
  release()
  await look
  t.equal(view.othersListen, true, 'a hello heard while the count was out outweighs its answer')

  counts = 0
  answer = async () => { await sleep(20); return 1 }
  await Promise.all([view.look(), view.look(), view.look()])
  t.equal(counts, 1, 'one count at a time')
  t.equal(view.othersListen, false)
})

for (const backend of backends().filter(b => b === 'postgres')) {
  t.test(`a broker notifies only while another listens [${backend}]`, async (t) => {
    const { database, url } = await createTestDatabase(t, backend)
    // The test's own listener is not a broker (another application_name): it is not counted.
    if (url === undefined) throw new Error('a PostgreSQL test database has a url')
    const listener = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: 'taskbroker-test-listener' } })
    t.teardown(() => listener.end({ timeout: 1 }))
    const heard: string[] = []
    await listener.listen('taskbroker_tasks', payload => { heard.push(payload) })

    // A counts the listening brokers every 100 ms; B never re-checks on its own (600 s), so only a
    // notification can wake its long-poll in time.
    const aConfig = testConfig({ TASKBROKER_UPKEEP_ENABLED: 'false', TASKBROKER_CLAIM_RECHECK_MS: '100' })
    const a = await createBroker(aConfig, { store: testStore(database, aConfig), logger: silent })
    t.teardown(() => a.stop())
    a.start()
    await a.produce([{ id: 'alone', application: 'shop', namespace: 'ns', taskname: 'x' }])
    await sleep(500)
    t.same(heard, [], 'alone, A sends no notification')

    // B has connections of its own, as another broker process would (one listener session each).
    const bDatabase = await openDatabase({ url, dataDir: '', poolSize: 5, log: silent })
    t.teardown(() => bDatabase.close())
    const bConfig = testConfig({ TASKBROKER_UPKEEP_ENABLED: 'false', TASKBROKER_CLAIM_RECHECK_MS: '600000' })
    const b = await createBroker(bConfig, { store: testStore(bDatabase, bConfig), logger: silent })
    b.start()
    t.same((await b.claim({ application: 'shop' })).map(task => task.activation.id), ['alone'])
    const waiting = b.claim({ application: 'shop', waitMs: 30_000 })
    t.ok(await within30s(async () => /taskbroker_claim_waiters 1\b/.test(await b.metrics.registry.metrics())), 'B\'s long-poll waits')
    await a.produce([{ id: 'for-b', application: 'shop', namespace: 'ns', taskname: 'x' }])
    t.same((await waiting).map(task => task.activation.id), ['for-b'], 'B\'s long-poll woke for a task produced through A')
    t.ok(heard.some(payload => JSON.parse(payload).queue.application === 'shop'), 'A notified')

    await b.stop()
    await bDatabase.close() // its listener session ends with it, as when a broker process exits
    // A's next count (every 100 ms) finds it alone again; then its produces send nothing.
    let n = 0
    t.ok(await within30s(async () => {
      heard.length = 0
      await a.produce([{ id: `after-${++n}`, application: 'shop', namespace: 'ns', taskname: 'x' }])
      await sleep(500)
      return heard.length === 0
    }), 'after B stopped, A sends no notification')
  })
}

/** Whether `check` holds within 30 s (generous: counts and notifications take milliseconds). */
async function within30s (check: () => Promise<boolean>): Promise<boolean> {
  const end = Date.now() + 30_000
  while (!await check()) {
    if (Date.now() > end) return false
    await sleep(10)
  }
  return true
}
