/**
 * The plain claim (no queue-control steps) that claims take while no queue is paused or capped:
 * the view of "some queue is restricted" follows every change; a claim on a stale view (another
 * broker's pause not seen yet) takes nothing rather than a paused queue's task; and brokers sharing
 * a database tell each other, so the view of one follows a change made through another at once.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { createBroker } from '../../src/core/broker.js'
import { watchQueueRestrictions } from '../../src/core/queues.js'
import type { Row } from '../../src/db/database.js'
import { createQueueRestrictions } from '../../src/store/queue-restrictions.js'
import { createPushStore } from '../../src/store/push-store.js'
import { createTaskStore } from '../../src/store/task-store.js'
import { testConfig, testStore } from '../helpers/app.js'
import { backends, createTestDatabase, eachBackend } from '../helpers/database.js'
import { claimShapes, queueStores, uuid } from './helpers.js'

eachBackend(t, 'the view of queue restrictions follows every change', async (t, backend) => {
  const { queues, restrictions } = await queueStores(t, backend)
  t.equal(restrictions.none, true, 'no settings: claims may skip the controls')
  await queues.change({ application: 'shop', paused: true })
  t.equal(restrictions.none, false, 'a pause')
  await queues.change({ application: 'shop', paused: false })
  t.equal(restrictions.none, true, 'resumed: the row is gone')
  await queues.change({ application: 'shop', namespace: 'ns', maxProcessing: 5 })
  t.equal(restrictions.none, false, 'a cap')
  await queues.change({ application: 'other', rateLimit: { perSec: 10, burst: 10 } })
  await queues.change({ application: 'shop', namespace: 'ns', maxProcessing: null })
  t.equal(restrictions.none, false, 'one restriction left')
  await queues.change({ application: 'other', rateLimit: null })
  t.equal(restrictions.none, true, 'none left')
})

eachBackend(t, 'a claim on a stale view takes nothing while some queue is restricted', async (t, backend) => {
  const stores = await queueStores(t, backend)
  const { database, produce, restrictions } = stores
  const free = uuid(1)
  const paused = uuid(2)
  await produce({ id: paused, application: 'paused-app' }, { id: free })
  // Another broker pauses a queue; this one's view still says none is restricted.
  await database.rows(sql`insert into queue_settings (application, namespace, paused) values ('paused-app', '', true)`)
  t.equal(restrictions.none, true, 'the view is stale')
  const stale = { none: true }
  const rules = { processingDeadlineGraceSec: 3, maxDelaySec: 3600 }
  const staleShapes = claimShapes({ ...stores, tasks: createTaskStore(database, rules, stale), push: createPushStore(database, rules, stale) })
  for (const [shape, claim] of Object.entries(staleShapes)) {
    t.same(await claim(10), [], `${shape}: nothing claimed, not even of a free queue`)
  }
  await restrictions.refresh()
  t.equal(restrictions.none, false, 'looked again: a queue is restricted')
  t.same(await stores.tasks.claim({}, 10).then(claimed => claimed.map(task => task.activation.id)), [free], 'with the controls: the free queue only')
})

t.test('overlapping looks: each answer counts unless a newer look answered first', async (t) => {
  const answers: Array<(restricted: boolean) => void> = []
  const database = { prepare: () => ({ run: async () => await new Promise<Row[]>(resolve => { answers.push(restricted => { resolve([{ restricted }]) }) }) }) }
  const restrictions = createQueueRestrictions(database as unknown as Parameters<typeof createQueueRestrictions>[0])
  /** Answers look `i` (in start order) and waits for it. */
  const answer = async (look: Promise<boolean>, i: number, restricted: boolean) => {
    answers[i]?.(restricted)
    await look
  }
  const first = restrictions.refresh()
  const second = restrictions.refresh()
  await answer(second, 1, false)
  t.equal(restrictions.none, true, 'the newer look answered: none restricted')
  await answer(first, 0, true)
  t.equal(restrictions.none, true, 'the older look answering late is dropped')
  const third = restrictions.refresh()
  const fourth = restrictions.refresh()
  await answer(third, 2, true)
  t.equal(restrictions.none, false, 'an older look answering first counts (looks that keep overlapping still move the view)')
  await answer(fourth, 3, false)
  t.equal(restrictions.none, true, 'then the newer one')
})

t.test('the watch looks periodically, one periodic look at a time, until stopped', async (t) => {
  let looks = 0
  let out = 0
  let mostOut = 0
  const restrictions = {
    none: true,
    async refresh () {
      looks++
      mostOut = Math.max(mostOut, ++out)
      await sleep(30)
      out--
      return false
    }
  }
  const watch = watchQueueRestrictions({ restrictions, everyMs: 5, log: pino({ level: 'silent' }) })
  watch.start()
  t.ok(await within30s(() => looks >= 3), 'looks again and again')
  watch.stop()
  const stoppedAt = looks
  await sleep(200)
  t.equal(looks, stoppedAt, 'no look after stop')
  t.equal(mostOut, 1, 'a tick while a look is out adds none (a slow database is not piled on)')
})

for (const backend of backends().filter(b => b === 'postgres')) {
  t.test(`a change made through one broker reaches the other's view at once [${backend}]`, async (t) => {
    const { database } = await createTestDatabase(t, backend)
    // Periodic looks far apart: only the notification can update the view within the test.
    const config = testConfig({ TASKBROKER_UPKEEP_ENABLED: 'false', TASKBROKER_CLAIM_RECHECK_MS: '600000' })
    const storeA = testStore(database, config)
    const storeB = testStore(database, config)
    const silent = pino({ level: 'silent' })
    const a = await createBroker(config, { store: storeA, logger: silent })
    const b = await createBroker(config, { store: storeB, logger: silent })
    t.teardown(async () => { await Promise.all([a.stop(), b.stop()]) })
    a.start()
    b.start()
    t.equal(storeB.queueRestrictions.none, true, 'no settings yet')

    await a.queues.change({ application: 'shop', paused: true })
    t.ok(await within30s(() => !storeB.queueRestrictions.none), 'B sees the pause')
    await b.produce([{ id: 'held', application: 'shop', namespace: 'ns', taskname: 'x' }])
    t.same(await b.claim({ application: 'shop' }), [], 'B keeps the paused queue')

    await a.queues.change({ application: 'shop', paused: false })
    t.ok(await within30s(() => storeB.queueRestrictions.none), 'B sees the resume')
    t.same((await b.claim({ application: 'shop' })).map(task => task.activation.id), ['held'], 'resumed: B claims it')
  })
}

/** Whether `check` holds within 30 s (generous: a notification takes milliseconds). */
async function within30s (check: () => boolean): Promise<boolean> {
  const end = Date.now() + 30_000
  while (!check()) {
    if (Date.now() > end) return false
    await sleep(10)
  }
  return true
}
