import t from 'tap'
import { createRiders } from '../../src/core/status/riders.js'
import { ShuttingDownError } from '../../src/domain/errors.js'
import { BatcherClosedError } from '../../src/core/batcher/batcher.js'
import type { ClaimFilter, StoredTask } from '../../src/domain/types.js'

const task = (id: string) => ({ activation: { id } }) as unknown as StoredTask
const idOf = (next: StoredTask | undefined) => next?.activation.id

function ridersWith (claim: (filter: ClaimFilter, limit: number) => Promise<StoredTask[]> = async () => []) {
  const claimsApart: string[] = []
  const counted: number[] = []
  const riders = createRiders({
    claim: async (filter, limit) => { claimsApart.push(`${filter.application ?? '*'}/${filter.namespace ?? '*'}:${limit}`); return await claim(filter, limit) },
    countClaimed: count => { counted.push(count) }
  })
  return { riders, claimsApart, counted }
}

t.test('the largest filter group rides in the flush; the others are groups of their own', async (t) => {
  const { riders } = ridersWith()
  const filters: ClaimFilter[] = [{ application: 'b' }, { application: 'a' }, {}, { application: 'a' }, { application: 'a', namespace: 'n' }, { application: 'b' }, { application: 'a' }]
  filters.forEach(filter => { riders.wait(filter).catch(() => {}) })
  t.equal(riders.waiting, 7)
  const { main, rest } = riders.take()
  t.same(main?.filter, { application: 'a' })
  t.equal(main?.size, 3)
  t.same(rest.map(g => [g.filter, g.size]), [[{ application: 'b' }, 2], [{}, 1], [{ application: 'a', namespace: 'n' }, 1]], 'in order of first arrival')
  t.equal(riders.waiting, 0, 'every rider was taken')
  t.same(riders.take(), { main: undefined, rest: [] }, 'a second flush finds none')
})

t.test('on a tie the filter that arrived first rides', async (t) => {
  const { riders } = ridersWith()
  for (const application of ['x', 'y', 'y', 'x']) riders.wait({ application }).catch(() => {})
  t.same(riders.take().main?.filter, { application: 'x' })
})

t.test('tasks claimed in the flush go to the riders in arrival order; riders left over get none', async (t) => {
  const { riders, counted } = ridersWith()
  const next = [riders.wait({}), riders.wait({}), riders.wait({})]
  riders.take().main?.hand([task('old'), task('new')])
  t.same((await Promise.all(next)).map(idOf), ['old', 'new', undefined])
  t.same(counted, [2], 'the tasks handed out are counted as claimed')
})

t.test('a group claimed apart uses its filter and its size', async (t) => {
  const { riders, claimsApart, counted } = ridersWith(async (_, limit) => [task('p1'), task('p2')].slice(0, limit))
  const a = riders.wait({ application: 'a' })
  const b = [riders.wait({ application: 'b', namespace: 'n' }), riders.wait({ application: 'b', namespace: 'n' }), riders.wait({ application: 'b', namespace: 'n' })]
  const { main, rest } = riders.take()
  t.equal(rest.length, 1)
  rest[0]?.claimApart()
  main?.claimApart()
  t.same((await Promise.all(b)).map(idOf), ['p1', 'p2', undefined])
  t.equal(idOf(await a), 'p1')
  t.same(claimsApart, ['a/*:1', 'b/n:3'])
  t.same(counted, [], 'a claim apart counts its own tasks')
})

t.test('a claim apart refused by shutdown gives no task; any other error reaches the rider', async (t) => {
  for (const error of [new ShuttingDownError(), new BatcherClosedError('closed')]) {
    const { riders } = ridersWith(async () => { throw error })
    const next = riders.wait({})
    riders.take().main?.claimApart()
    t.equal(await next, undefined, `${error.name}: no next task`)
  }
  const broken = new Error('claim broke')
  const { riders } = ridersWith(async () => { throw broken })
  const next = riders.wait({})
  riders.take().main?.claimApart()
  await t.rejects(next, broken)
})

t.test('a failed group rejects its riders; a rider rejected before it is awaited is not unhandled', async (t) => {
  const { riders } = ridersWith()
  const next = riders.wait({})
  const down = new Error('store down')
  riders.take().main?.fail(down)
  await new Promise(resolve => setImmediate(resolve)) // an unhandled rejection would fail the test here
  await t.rejects(next, down)
})

t.test('at shutdown the riders still waiting get no next task', async (t) => {
  const { riders } = ridersWith()
  const next = [riders.wait({}), riders.wait({ application: 'a' })]
  riders.releaseAll()
  t.same(await Promise.all(next), [undefined, undefined])
  t.equal(riders.waiting, 0)
})
