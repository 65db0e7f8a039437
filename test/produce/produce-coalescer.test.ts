import t from 'tap'
import { createProduceCoalescer, SMALL_CALL_TASKS } from '../../src/core/produce/produce-coalescer.js'
import { toActivation } from '../../src/domain/activation.js'
import { StoreUnavailableError } from '../../src/domain/errors.js'
import { StoreError } from '../../src/store/errors.js'
import { createTaskStore, type ProduceCall, type TaskStore } from '../../src/store/task-store.js'
import { createTestDatabase, eachBackend } from '../helpers/database.js'

const act = (id: string, application = 'app') => toActivation({ id, application, namespace: 'ns', taskname: 't' }, new Date())

/** The real store, recording the calls of each produce statement. */
function counting (store: TaskStore) {
  const statements: string[][] = []
  const record = (calls: readonly ProduceCall[]) => { statements.push(calls.flatMap(c => c.activations.map(a => a.id))) }
  return { statements, store: { produceMany: async (calls: readonly ProduceCall[]) => { record(calls); return await store.produceMany(calls) } } }
}

eachBackend(t, 'concurrent small produces share statements, each answered as if alone', async (t, backend) => {
  const { database } = await createTestDatabase(t, backend)
  const store = createTaskStore(database, { processingDeadlineGraceSec: 3, maxDelaySec: 3600 })
  await store.produce([act('old')], new Date())
  const { statements, store: counted } = counting(store)
  const coalescer = createProduceCoalescer(counted)
  const now = new Date()
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => coalescer.produce([act(`p${i}`), act(i === 5 ? 'old' : `q${i}`), act('shared')], now)))
  t.ok(statements.length < 20, `20 calls took ${statements.length} statements`)
  t.same(answers[0], { inserted: ['p0', 'q0', 'shared'], duplicates: [], handedOff: new Map() }, 'the first call stored the id every call gave')
  t.same(answers[5], { inserted: ['p5'], duplicates: ['shared', 'old'], handedOff: new Map() }, 'a stored id and an id of an earlier call are duplicates')
  t.same(answers.slice(1).map(a => a.inserted.length), answers.slice(1).map((_, i) => i + 1 === 5 ? 1 : 2))
  t.equal(answers.reduce((sum, a) => sum + a.inserted.length, 0), 40, 'every new id stored once')
  t.same((await store.claim({}, 100)).map(task => task.activation.id).sort(), ['old', 'shared', ...Array.from({ length: 20 }, (_, i) => [`p${i}`, ...(i === 5 ? [] : [`q${i}`])]).flat()].sort())
  await coalescer.close()
})

t.test('a lone call goes at once; a large call goes alone beside a running statement', async (t) => {
  const statements: number[] = []
  let release: (() => void) | undefined
  const fake = {
    produceMany: async (calls: readonly ProduceCall[]) => {
      statements.push(calls.reduce((sum, c) => sum + c.activations.length, 0))
      if (release === undefined) await new Promise<void>(resolve => { release = resolve })
      return calls.map(c => ({ inserted: c.activations.map(a => a.id), duplicates: [], handedOff: new Map() }))
    }
  }
  const coalescer = createProduceCoalescer(fake)
  const first = coalescer.produce([act('a')], new Date())
  await new Promise(resolve => setImmediate(resolve))
  t.same(statements, [1], 'the first call did not wait for company')
  const queued = [coalescer.produce([act('b')], new Date()), coalescer.produce([act('c'), act('d')], new Date())]
  const large = Array.from({ length: SMALL_CALL_TASKS + 1 }, (_, i) => act(`l${i}`))
  t.equal((await coalescer.produce(large, new Date())).inserted.length, SMALL_CALL_TASKS + 1, 'a large call does not queue behind the running statement')
  t.same((await coalescer.produce([], new Date())).inserted, [], 'nor does an empty one')
  release?.()
  await first
  t.same((await Promise.all(queued)).map(a => a.inserted), [['b'], ['c', 'd']])
  t.same(statements, [1, SMALL_CALL_TASKS + 1, 0, 3], 'the two calls queued meanwhile went in one statement')
  await coalescer.close()
  t.same((await coalescer.produce([act('late')], new Date())).inserted, ['late'], 'after close a call goes alone')
})

/** A fake store whose first statement waits for `go`, so the calls after it coalesce. */
function gatedStore (fail: (calls: readonly ProduceCall[]) => unknown) {
  const statements: string[][] = []
  let go: () => void = () => {}
  const gate = new Promise<void>(resolve => { go = resolve })
  const fake = {
    produceMany: async (calls: readonly ProduceCall[]) => {
      statements.push(calls.flatMap(c => c.activations.map(a => a.id)))
      if (statements.length === 1) await gate
      const error = fail(calls)
      if (error !== undefined) throw error
      return calls.map(c => ({ inserted: c.activations.map(a => a.id), duplicates: [], handedOff: new Map() }))
    }
  }
  return { fake, statements, go: () => { go() } }
}

async function coalesced (fake: ReturnType<typeof gatedStore>['fake'], go: () => void, ids: string[]) {
  const coalescer = createProduceCoalescer(fake)
  const first = coalescer.produce([act('first')], new Date())
  await new Promise(resolve => setImmediate(resolve))
  const rest = ids.map(id => coalescer.produce([act(id)], new Date()))
  go()
  await first
  return await Promise.allSettled(rest)
}

t.test('a coalesced statement failing on one call\'s data: each call is tried alone, only that one fails', async (t) => {
  const bad = new StoreError(new Error('invalid input syntax'))
  const { fake, statements, go } = gatedStore(calls => calls.some(c => c.activations.some(a => a.id === 'bad')) ? bad : undefined)
  const settled = await coalesced(fake, go, ['ok1', 'bad', 'ok2'])
  t.same(settled.map(s => s.status), ['fulfilled', 'rejected', 'fulfilled'])
  t.equal((settled[1] as PromiseRejectedResult).reason, bad)
  t.same(statements, [['first'], ['ok1', 'bad', 'ok2'], ['ok1'], ['bad'], ['ok2']])
})

t.test('a coalesced statement that may have committed, or a store out of reach: every call gets the error, nothing is tried again', async (t) => {
  for (const error of [Object.assign(new StoreError(new Error('connection lost')), { mayHaveRun: true }), new StoreUnavailableError('down')]) {
    const { fake, statements, go } = gatedStore(calls => calls.length > 1 ? error : undefined)
    const settled = await coalesced(fake, go, ['x', 'y'])
    t.same(settled.map(s => s.status === 'rejected' && s.reason === error), [true, true], `${error.name}: both calls fail with it`)
    t.same(statements, [['first'], ['x', 'y']], `${error.name}: no call was tried again`)
  }
})
