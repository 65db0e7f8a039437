/**
 * GET and PATCH /v1/queues: settings stored and shown, null clears, the listing's counts and
 * settings sources, refused changes, a resume waking a long-poll, and the controls' metrics.
 */
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp, NO_UPKEEP, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { assertError, claimIds, metric, produceIds, untilWaiting } from '../helpers/requests.js'

keepAlive(t)

const patch = (app: FastifyInstance, payload: Record<string, unknown>) => app.inject({ method: 'PATCH', url: '/v1/queues', payload })

/** A labelled sample from /metrics. */
async function labelled (app: FastifyInstance, line: string): Promise<number> {
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
  const found = text.split('\n').find(l => l.startsWith(`${line} `))
  return found === undefined ? Number.NaN : Number(found.slice(line.length + 1))
}

eachBackend(t, 'queue settings through the API', async (t, backend) => {
  // Long-polls re-check only every 10 minutes: a claim served sooner was woken.
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_CLAIM_RECHECK_MS: '600000' })

  await t.test('PATCH stores settings, merges later changes, and null clears them', async (t) => {
    const first = await patch(app, { application: 'shop', namespace: 'emails', max_processing: 20, rate_limit: { per_sec: 2.5 } })
    t.equal(first.statusCode, 200)
    t.match(first.json(), { application: 'shop', namespace: 'emails', settings: { paused: false, max_processing: 20, rate_limit: { per_sec: 2.5, burst: 3 } } }, 'burst defaults to per_sec rounded up')
    const second = await patch(app, { application: 'shop', namespace: 'emails', paused: true, rate_limit: null })
    t.match(second.json().settings, { paused: true, max_processing: 20, rate_limit: null }, 'fields left out stay as they were')
    const cleared = await patch(app, { application: 'shop', namespace: 'emails', paused: null, max_processing: null })
    t.same(cleared.json(), { application: 'shop', namespace: 'emails', settings: null }, 'nothing left set: the row is gone')
    const listing = (await app.inject({ method: 'GET', url: '/v1/queues' })).json()
    t.same(listing.queues, [], 'no tasks and no settings: no queue')
  })

  await t.test('GET lists queues with tasks or settings, their counts and which row steers them', async (t) => {
    await produceIds(t, app, [task({ id: 'g1', application: 'shop', namespace: 'emails' }), task({ id: 'g2', application: 'shop', namespace: 'emails' }), task({ id: 'g3', application: 'mail', namespace: 'out' })])
    t.same(await claimIds(app, { application: 'shop', namespace: 'emails' }), ['g1'])
    t.equal((await patch(app, { application: 'shop', paused: true })).statusCode, 200)
    t.equal((await patch(app, { application: 'shop', namespace: 'idle', max_processing: 5 })).statusCode, 200)
    const res = await app.inject({ method: 'GET', url: '/v1/queues' })
    t.equal(res.statusCode, 200)
    const { queues, applications } = res.json()
    t.same(queues.map((q: { application: string, namespace: string }) => `${q.application}/${q.namespace}`), ['mail/out', 'shop/emails', 'shop/idle'])
    const [mail, emails, idle] = queues
    t.match(mail, { counts: { pending: 1, processing: 0 }, settings: null })
    t.ok(mail.oldest_pending_age_sec >= 0)
    t.match(emails, { counts: { pending: 1, processing: 1 }, settings: { paused: true, source: 'application' } })
    t.match(idle, { counts: { pending: 0 }, oldest_pending_age_sec: 0, settings: { paused: false, max_processing: 5, source: 'namespace' } }, 'settings but no tasks: listed')
    t.match(applications, [{ application: 'shop', paused: true, max_processing: null, rate_limit: null }])
    t.equal(await metric(app, 'taskbroker_queues_paused'), 1, 'the paused queues gauge')
  })

  await t.test('resuming wakes a long-poll waiting on the paused queue', async (t) => {
    await produceIds(t, app, [task({ id: 'w1', application: 'shop', namespace: 'wake' })])
    const waiting = Promise.resolve(app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'shop', namespace: 'wake', wait_ms: 30_000 } }))
    await untilWaiting(t, app, 1)
    t.equal((await patch(app, { application: 'shop', paused: false })).statusCode, 200)
    const res = await waiting
    t.same(res.json().tasks.map((c: { id: string }) => c.id), ['w1'], 'woken by the change, not by a re-check (10 min)')
  })

  await t.test('raising max_processing wakes a long-poll held back by it', async (t) => {
    await produceIds(t, app, [task({ id: 'r1', application: 'raise', namespace: 'ns' }), task({ id: 'r2', application: 'raise', namespace: 'ns' })])
    await patch(app, { application: 'raise', namespace: 'ns', max_processing: 1 })
    t.same(await claimIds(app, { application: 'raise', namespace: 'ns', limit: 5 }), ['r1'])
    const waiting = Promise.resolve(app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'raise', namespace: 'ns', wait_ms: 30_000 } }))
    await untilWaiting(t, app, 1)
    t.equal((await patch(app, { application: 'raise', namespace: 'ns', max_processing: 2 })).statusCode, 200)
    t.same((await waiting).json().tasks.map((c: { id: string }) => c.id), ['r2'], 'woken by the change')
    await patch(app, { application: 'raise', namespace: 'ns', max_processing: null })
  })

  await t.test('the held-back gauges count capped queues that refuse claims', async (t) => {
    await produceIds(t, app, [task({ id: 'm1', application: 'capped', namespace: 'ns' }), task({ id: 'm2', application: 'capped', namespace: 'ns' })])
    await patch(app, { application: 'capped', max_processing: 1, rate_limit: { per_sec: 0.000001, burst: 1 } })
    t.same(await claimIds(app, { application: 'capped', limit: 5 }), ['m1'])
    t.same(await claimIds(app, { application: 'capped', limit: 5 }), [])
    t.equal(await labelled(app, 'taskbroker_queues_held_back{limit="max_processing"}'), 1)
    t.equal(await labelled(app, 'taskbroker_queues_held_back{limit="rate_limit"}'), 1)
  })

  await t.test('bad changes are refused with 400 naming the field, and change nothing', async (t) => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ namespace: 'x', paused: true }, /application/],
      [{ application: 'shop', max_processing: 0 }, /max_processing/],
      [{ application: 'shop', max_processing: 1.5 }, /max_processing/],
      [{ application: 'shop', rate_limit: { per_sec: 0 } }, /rate_limit/],
      [{ application: 'shop', rate_limit: { per_sec: 1, burst: 0 } }, /rate_limit/],
      [{ application: 'shop', rate_limit: { burst: 2 } }, /rate_limit/],
      [{ application: 'shop', paused: 'yes' }, /paused/],
      [{ application: 'shop', namespace: '', paused: true }, /namespace/],
      [{ application: 'shop', colour: 'red' }, /colour/]
    ]
    const before = (await app.inject({ method: 'GET', url: '/v1/queues' })).json()
    for (const [body, field] of bad) {
      const res = await patch(app, body)
      assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST')
      t.match(res.json().message, field, `${JSON.stringify(body)}: names the field`)
    }
    const after = (await app.inject({ method: 'GET', url: '/v1/queues' })).json()
    t.same(after.applications, before.applications)
  })
})
