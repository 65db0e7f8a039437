import pino from 'pino'
import t from 'tap'
import { createMetrics } from '../../src/core/metrics.js'
import { createStatusWriter } from '../../src/core/status/status-writer.js'
import type { Config } from '../../src/config/config.js'
import type { ClaimFilter, StatusUpdate, StoredTask } from '../../src/domain/types.js'
import type { TaskStore } from '../../src/store/task-store.js'
import { testConfig } from '../helpers/app.js'

// The batcher's timers are unref()'d; keep the test process alive while they run.
const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

/** A store that records its statements; each write waits until `release()` when `hold` is set. */
function recordingStore (hold = false) {
  const statements: string[] = []
  const held: Array<() => void> = []
  const store = {
    async writeReports (updates: readonly StatusUpdate[]) {
      statements.push(`set ${updates.map(u => u.id).join(',')}`)
      if (hold) await new Promise<void>(resolve => { held.push(resolve) })
      return { applied: new Set(updates.map(u => u.id)), stale: new Set(), cancelled: new Set() }
    },
    async setStatusManyAndClaim (updates: readonly StatusUpdate[], _: ClaimFilter, limit: number) {
      statements.push(`set ${updates.map(u => u.id).join(',')} and claim ${limit}`)
      return { applied: new Set(updates.map(u => u.id)), stale: new Set(), cancelled: new Set(), claimed: [] }
    }
  } as unknown as TaskStore
  return { store, statements, release: () => { for (const resolve of held.splice(0)) resolve() }, held: () => held.length }
}

/** The status settings, counting how often `batching` is read. */
function watchedConfig (env: Record<string, string>) {
  const settings: { -readonly [K in keyof Config['status']]: Config['status'][K] } = { ...testConfig(env).status }
  let reads = 0
  const config = new Proxy(settings, {
    get (target, name, receiver) {
      if (name === 'batching') reads++
      return Reflect.get(target, name, receiver)
    }
  })
  return { config, settings, reads: () => reads }
}

function writerWith (store: TaskStore, config: Config['status'], claims: string[] = []) {
  const claim = async (filter: ClaimFilter, limit: number): Promise<StoredTask[]> => { claims.push(`${filter.application ?? '*'}:${limit}`); return [] }
  const writer = createStatusWriter({ store, config, metrics: createMetrics(), log: pino({ level: 'silent' }), claim })
  t.teardown(() => writer.close(1000))
  return writer
}

const reports = (...ids: string[]): StatusUpdate[] => ids.map(id => ({ id, status: 'complete' }))

t.test('batching off: one statement per report, nothing queued, the setting read once', async (t) => {
  const { store, statements, release, held } = recordingStore(true)
  // A flush interval the test would time out on: a direct write must not wait for one.
  const { config, settings, reads } = watchedConfig({ TASKBROKER_STATUS_BATCHING: 'false', TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '60000' })
  const claims: string[] = []
  const writer = writerWith(store, config, claims)
  const readsAtStart = reads()
  settings.batching = true // the choice was made: changing the setting now changes nothing
  const answer = writer.report(reports('a', 'b', 'c'))
  t.same(statements, ['set a', 'set b', 'set c'], 'every report written at once, alone')
  t.equal(held(), 3)
  t.equal(writer.depth, 0, 'nothing queued')
  release()
  t.same(await answer, { applied: ['a', 'b', 'c'], notFound: [], queued: [], stale: [], cancelled: [] })
  const next = writer.reportAndClaimNext({ id: 'd', status: 'complete' }, { application: 'app' })
  await t.resolves(async () => { while (held() === 0) await new Promise(resolve => setImmediate(resolve)) })
  t.same(claims, [], 'the claim waits for the report')
  release()
  t.same((await next).task, undefined)
  t.same(claims, ['app:1'], 'then a claim of its own')
  t.same(statements.slice(3), ['set d'], 'never a bulk statement')
  t.equal(reads(), readsAtStart, '`batching` is not read on the request path')
})

t.test('batching on: reports share a bulk statement, the setting read once', async (t) => {
  const { store, statements } = recordingStore()
  const { config, settings, reads } = watchedConfig({ TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '20' })
  const writer = writerWith(store, config)
  const readsAtStart = reads()
  settings.batching = false
  const [outcome, next] = await Promise.all([
    writer.report(reports('a', 'b')),
    writer.reportAndClaimNext({ id: 'c', status: 'complete' }, {})
  ])
  t.same(outcome.applied, ['a', 'b'])
  t.same(next.outcome.applied, ['c'])
  t.same(statements, ['set a,b,c and claim 1'], 'one statement writes the reports and claims for the rider')
  t.equal(reads(), readsAtStart, '`batching` is not read on the request path')
})
