/**
 * Push mode and the queue controls: a paused application's tasks are not pushed (a later task of
 * another application is), they are once resumed, and each push shows the task's priority.
 */
import t from 'tap'
import { task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { fakeWorker, produce, startPushApp, until } from '../push/helpers.js'

const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

eachBackend(t, 'a paused application is not pushed until resumed; pushes carry the priority', async (t, backend) => {
  const worker = await fakeWorker(t)
  const { app } = await startPushApp(t, backend, { TASKBROKER_WORKER_MAP: `shop=${worker.url},mail=${worker.url}`, TASKBROKER_PUSH_FETCH_LOOPS: '1' })
  const paused = await app.inject({ method: 'PATCH', url: '/v1/queues', payload: { application: 'shop', paused: true } })
  t.equal(paused.statusCode, 200)
  await produce(t, app, [task({ id: 'shop-1', application: 'shop', priority: 5 }), task({ id: 'shop-2', application: 'shop', priority: 1 })])
  await produce(t, app, [task({ id: 'mail-1', application: 'mail', priority: -3 })])
  await until(t, 'the later mail task is pushed', () => worker.received.length >= 1)
  t.same(worker.received.map(push => push.task.id), ['mail-1'], 'the older, higher shop tasks were passed over: paused')
  t.equal((worker.received[0] as unknown as { priority: number }).priority, -3, 'the push shows the priority beside the task')
  t.notOk('priority' in (worker.received[0]?.task ?? {}), 'the task itself is the activation as produced')

  t.equal((await app.inject({ method: 'PATCH', url: '/v1/queues', payload: { application: 'shop', paused: false } })).statusCode, 200)
  await until(t, 'the shop tasks are pushed once resumed', () => worker.received.length >= 3)
  const shop = worker.received.slice(1).map(push => [push.task.id, (push as unknown as { priority: number }).priority])
  t.same(shop.sort(), [['shop-1', 5], ['shop-2', 1]])
})
