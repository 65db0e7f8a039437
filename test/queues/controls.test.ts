/**
 * Queue controls in the claim statement, for every claim shape (pull without a filter, by
 * application, by application and namespace, the fetch_next rider, the push fetch): a paused
 * queue is skipped, max_processing caps its tasks processing (or claimed) at once, rate_limit's
 * token bucket caps its claims, a namespace's row replaces its application's as a whole.
 */
import { sql } from 'drizzle-orm'
import t from 'tap'
import { backends, eachBackend } from '../helpers/database.js'
import { claimShapes, queueStores, uuid } from './helpers.js'

/** A rate that refills nothing within a test. */
const NO_REFILL = 1e-6

eachBackend(t, 'every claim shape obeys the queue controls', async (t, backend) => {
  const stores = await queueStores(t, backend)
  const { queues, produce, tasks } = stores
  let next = 0
  const fresh = (count: number, input: { namespace?: string, priority?: number } = {}) => {
    const ids = Array.from({ length: count }, () => uuid(++next))
    return { ids, produced: produce(...ids.map(id => ({ id, ...input }))) }
  }
  for (const [shape, claim] of Object.entries(claimShapes(stores))) {
    await t.test(`${shape}: a paused application is skipped until resumed; produce is still accepted`, async (t) => {
      await queues.change({ application: 'shop', paused: true })
      const { ids, produced } = fresh(2)
      await produced
      t.same(await claim(10), [], 'nothing claimed while paused')
      await queues.change({ application: 'shop', paused: false })
      t.same(await claim(10), ids, 'claimed once resumed')
    })

    await t.test(`${shape}: a namespace's own row replaces its application's`, async (t) => {
      await queues.change({ application: 'shop', paused: true })
      await queues.change({ application: 'shop', namespace: 'ns', maxProcessing: 1_000 })
      const { ids, produced } = fresh(2)
      await produced
      t.same(await claim(10), ids, 'the namespace row is not paused: its tasks are claimed')
      await queues.change({ application: 'shop', namespace: 'ns', maxProcessing: null })
      const more = fresh(1)
      await more.produced
      t.same(await claim(10), [], 'its row cleared and removed, the paused application row steers it again')
      await queues.change({ application: 'shop', paused: null })
      t.same(await claim(10), more.ids)
    })

    await t.test(`${shape}: max_processing caps the tasks processing at once`, async (t) => {
      const before = (await tasks.countLive())
      const holding = before.processing + before.claimed
      await queues.change({ application: 'shop', namespace: 'ns', maxProcessing: holding + 2 })
      const { ids, produced } = fresh(5)
      await produced
      t.same(await claim(10), ids.slice(0, 2), 'up to the cap')
      t.same(await claim(10), [], 'at the cap: nothing')
      await tasks.setStatusMany([{ id: ids[0] as string, status: 'complete' }])
      t.same(await claim(10), [ids[2]], 'one finished, one more')
      await queues.change({ application: 'shop', namespace: 'ns', maxProcessing: null })
      t.same(await claim(10), ids.slice(3), 'cap cleared: the rest')
    })

    await t.test(`${shape}: rate_limit takes tokens only for tasks claimed`, async (t) => {
      await queues.change({ application: 'shop', rateLimit: { perSec: NO_REFILL, burst: 3 } })
      const first = fresh(1)
      await first.produced
      t.same(await claim(10), first.ids, 'one task: one token taken')
      const { ids, produced } = fresh(4)
      await produced
      t.same(await claim(10), ids.slice(0, 2), 'the two tokens left')
      t.same(await claim(10), [], 'no token left')
      await queues.change({ application: 'shop', rateLimit: { perSec: 1e6, burst: 1 } })
      t.same(await claim(10), [ids[2]], 'a new limit starts full')
      t.same(await claim(10), [ids[3]], 'and refills')
      await queues.change({ application: 'shop', rateLimit: null })
    })
  }

  await t.test('a report with fetch_next frees its slot for the next task of a capped queue', async (t) => {
    await queues.change({ application: 'solo', maxProcessing: 1 })
    const ids = [uuid(++next), uuid(++next)]
    await produce(...ids.map(id => ({ id, application: 'solo' })))
    const [first] = await tasks.claim({ application: 'solo' }, 5)
    t.equal(first?.activation.id, ids[0], 'the cap lets one out')
    const { applied, claimed } = await tasks.setStatusManyAndClaim([{ id: ids[0] as string, status: 'complete' }], { application: 'solo' }, 1)
    t.ok(applied.has(ids[0] as string))
    t.same(claimed.map(task => task.activation.id), [ids[1]], 'the reported task no longer counts against the cap')
    t.same((await tasks.setStatusManyAndClaim([{ id: 'nothing', status: 'complete' }], { application: 'solo' }, 1)).claimed, [], 'still capped at 1')
  })

  await t.test('a claim over several queues keeps the priority order across capped and free queues', async (t) => {
    await queues.change({ application: 'shop', namespace: 'ns', maxProcessing: 1_000_000 })
    const capped = fresh(2, { priority: 5 })
    await capped.produced
    const free = fresh(2, { namespace: 'other', priority: 1 })
    await free.produced
    const top = fresh(1, { namespace: 'other', priority: 9 })
    await top.produced
    const got = (await tasks.claim({ application: 'shop' }, 3)).map(task => task.activation.id)
    t.same(got, [top.ids[0], ...capped.ids], 'highest first, wherever it comes from, up to the limit')
    t.same((await tasks.claim({}, 5)).map(task => task.activation.id), free.ids)
  })
})

for (const backend of backends().filter(b => b === 'postgres')) {
  t.test(`concurrent claims never pass a cap [${backend}]`, async (t) => {
    const stores = await queueStores(t, backend)
    const ids = Array.from({ length: 40 }, (_, i) => uuid(i + 1))
    await stores.produce(...ids.map(id => ({ id })))
    await stores.queues.change({ application: 'shop', namespace: 'ns', maxProcessing: 3 })
    const shapes = Object.values(claimShapes(stores))
    // 30 claims at once over the pool's connections, every shape.
    const claimed = (await Promise.all(Array.from({ length: 30 }, (_, i) => (shapes[i % shapes.length] as (limit: number) => Promise<string[]>)(2)))).flat()
    t.equal(claimed.length, 3, 'exactly the cap: claims that waited for the row see what the others took')
    const [row] = await stores.database.rows(sql`select count(*)::int as n from inflight_tasks where status in ('processing', 'claimed')`)
    t.ok((row?.n as number) <= 3)

    await stores.queues.change({ application: 'shop', namespace: 'ns', maxProcessing: null, rateLimit: { perSec: NO_REFILL, burst: 5 } })
    const rated = (await Promise.all(Array.from({ length: 30 }, (_, i) => (shapes[i % shapes.length] as (limit: number) => Promise<string[]>)(1)))).flat()
    t.equal(rated.length, 5, 'the token bucket hands out exactly its 5 tokens to 30 racing claims')
  })

  t.test(`racing claims of a queue with room left each get a task [${backend}]`, async (t) => {
    const stores = await queueStores(t, backend)
    const ids = Array.from({ length: 40 }, (_, i) => uuid(i + 1))
    await stores.produce(...ids.map(id => ({ id })))
    await stores.queues.change({ application: 'shop', namespace: 'ns', maxProcessing: 1000 })
    const shapes = Object.values(claimShapes(stores))
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => (shapes[i % shapes.length] as (limit: number) => Promise<string[]>)(1)))
    t.same(answers.map(a => a.length), answers.map(() => 1), 'no claim answered empty while tasks were pending under the cap')
    t.equal(new Set(answers.flat()).size, 30, 'each task claimed once')
  })
}
