/**
 * Priorities: produce stores them, claims of every shape take the highest first and the oldest
 * first within a priority, and the API shows them; a priority out of the smallint range is a 400.
 */
import t from 'tap'
import { buildTestApp, NO_UPKEEP, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { assertError } from '../helpers/requests.js'
import { claimShapes, queueStores, uuid as id } from './helpers.js'

eachBackend(t, 'every claim shape takes the highest priority first, the oldest first within it', async (t, backend) => {
  const stores = await queueStores(t, backend)
  for (const [i, [shape, claim]] of Object.entries(claimShapes(stores)).entries()) {
    // Ids of their own: the tasks of the shapes before stay (processing or claimed).
    const uuid = (n: number) => id(i * 100 + n)
    await t.test(shape, async (t) => {
      // Oldest first in id order; priorities mixed, negatives and the range's ends included.
      await stores.produce(
        { id: uuid(1), priority: 0 },
        { id: uuid(2), priority: -5 },
        { id: uuid(3), priority: 7 },
        { id: uuid(4) },
        { id: uuid(5), priority: 32_767 },
        { id: uuid(6), priority: 7 },
        { id: uuid(7), priority: -32_768 })
      const order: string[] = []
      // Two at a time: each claim's rows come back in claim order too.
      for (let i = 0; i < 4; i++) order.push(...await claim(2))
      t.same(order, [uuid(5), uuid(3), uuid(6), uuid(1), uuid(4), uuid(2), uuid(7)])
    })
  }
})

eachBackend(t, 'the API takes, stores and shows priorities', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const produced = await app.inject({
    method: 'POST',
    url: '/v1/tasks',
    payload: { tasks: [task({ id: 'low', priority: -1 }), task({ id: 'plain' }), task({ id: 'high', priority: 10 })] }
  })
  t.equal(produced.statusCode, 201)
  t.equal((await app.inject({ method: 'GET', url: '/v1/tasks/high' })).json().priority, 10)
  const plain = (await app.inject({ method: 'GET', url: '/v1/tasks/plain' })).json()
  t.equal(plain.priority, 0, 'default 0')
  t.notOk('priority' in plain.task, 'the activation stays as upstream\'s: no priority in it')
  const claimed = (await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { limit: 3 } })).json().tasks
  t.same(claimed.map((c: { id: string }) => c.id), ['high', 'plain', 'low'])
  t.same(claimed.map((c: { priority: number }) => c.priority), [10, 0, -1], 'the worker sees each task\'s priority')

  for (const bad of [32_768, -32_769, 1.5, '3']) {
    const res = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: `bad-${String(bad)}`, priority: bad })] } })
    assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST')
    t.match(res.json().message, /tasks\/0\/priority/, `${JSON.stringify(bad)}: the message names the field`)
    t.equal((await app.inject({ method: 'GET', url: `/v1/tasks/bad-${String(bad)}` })).statusCode, 404, 'nothing stored')
  }
})

eachBackend(t, 'produce called without the HTTP schema still refuses an out-of-range priority', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  await t.rejects(app.broker.produce([{ namespace: 'ns', taskname: 'x', priority: 40_000 }]), { code: 'TASKBROKER_INVALID_REQUEST', message: /tasks\/0\/priority/ })
})
