import t from 'tap'
import { createClaimCoalescer } from '../../src/core/claims/claim-coalescer.js'
import { createTaskStore, type TaskStore } from '../../src/store/task-store.js'
import { toActivation } from '../../src/domain/activation.js'
import { createTestDatabase, eachBackend } from '../helpers/database.js'

/** The real store, counting claim statements. */
function counting (store: TaskStore) {
  const calls: Array<{ filter: unknown, limit: number }> = []
  return { calls, store: { ...store, claim: (filter: Parameters<TaskStore['claim']>[0], limit: number) => { calls.push({ filter, limit }); return store.claim(filter, limit) } } }
}

eachBackend(t, 'concurrent claims share statements and each task goes to exactly one request, oldest to earliest', async (t, backend) => {
  const { database } = await createTestDatabase(t, backend)
  const store = createTaskStore(database, { processingDeadlineGraceSec: 3, maxDelaySec: 3600 })
  const now = new Date()
  const ids = Array.from({ length: 30 }, (_, i) => `c-${String(i).padStart(2, '0')}`)
  await store.produce(ids.map(id => toActivation({ id, namespace: 'ns', taskname: 't' }, now)), now)
  const { calls, store: counted } = counting(store)
  const coalescer = createClaimCoalescer(counted)

  const results = await Promise.all(Array.from({ length: 20 }, () => coalescer.claim({}, 1)))
  t.same(results.map(r => r.length), Array(20).fill(1), 'every request got its one task')
  t.same(results.map(r => r[0]!.activation.id), ids.slice(0, 20), 'in FIFO order, request by request')
  t.ok(calls.length < 20, `20 requests took ${calls.length} statements`)
  t.equal(calls.reduce((sum, c) => sum + c.limit, 0), 20, 'the statements asked for exactly the requested total')

  const more = await Promise.all([coalescer.claim({}, 5), coalescer.claim({}, 5)])
  t.same(more.map(r => r.length), [5, 5])
  t.same((await coalescer.claim({}, 5)).length, 0, 'nothing left: an empty answer, not a hang')
  await coalescer.close()
})

t.test('requests for different filters are never mixed', async (t) => {
  const claimed: Array<{ filter: unknown, limit: number }> = []
  const fake = {
    claim: async (filter: { application?: string }, limit: number) => {
      claimed.push({ filter, limit })
      return Array.from({ length: limit }, () => ({ activation: { application: filter.application } }))
    }
  } as unknown as TaskStore
  const coalescer = createClaimCoalescer(fake)
  const [a, b] = await Promise.all([coalescer.claim({ application: 'a' }, 2), coalescer.claim({ application: 'b' }, 3)])
  t.same(a!.map(x => x.activation.application), ['a', 'a'])
  t.same(b!.map(x => x.activation.application), ['b', 'b', 'b'])
})

t.test('a failed claim statement fails its requests at once and the next claim works', async (t) => {
  let fail = true
  const fake = {
    claim: async (_filter: unknown, limit: number) => {
      if (fail) throw Object.assign(new Error('store down'), { statusCode: 503 })
      return Array.from({ length: limit }, (_, i) => ({ activation: { id: `x${i}` } }))
    }
  } as unknown as TaskStore
  const coalescer = createClaimCoalescer(fake)
  await t.rejects(Promise.all([coalescer.claim({}, 1), coalescer.claim({}, 1)]), { message: 'store down' })
  fail = false
  t.equal((await coalescer.claim({}, 2)).length, 2)
})
