/**
 * Seeds tasks in every state (and dead letters), then throws batches of random requests that must
 * be refused — or are no-ops, such as producing an existing id again — at every route, many at
 * once, and checks that every seeded task reads back byte-for-byte as before (GET of each, the
 * dead-letter list) and that nothing else in the store changed either.
 *
 * Answers of 5xx are collected and reported by a separate assertion, so a broken route does not
 * hide whether the seeded data survived.
 */
import fc from 'fast-check'
import type { LightMyRequestResponse } from 'fastify'
import t from 'tap'
import {
  assertHealthy, buildHostileApp, checkAnswer, describe, fingerprint, holds, keepAlive, oddSegment, percentEncode, reportCounts, seed, send,
  wrongValue, type Req
} from './kit.test.js'

keepAlive(t)
reportCounts(t, 'seeded.test.ts')

/** More seeded tasks, with awkward content, in states a random request could disturb. */
const VARIED = [
  { id: 'varied-unicode', application: 'varied', namespace: 'ns', taskname: 'v.unicode', parameters: { text: 'é\u2028\u{1f4a9}\u202e"\\', list: [1.5, -0, 1e21, null] }, headers: { 'x-é': '\u{10ffff}' } },
  { id: 'varied-expires', application: 'varied', namespace: 'ns', taskname: 'v.expires', expires: 86_400, processing_deadline_duration: 5 },
  { id: 'varied-past', application: 'varied', namespace: 'ns', taskname: 'v.past', received_at: '2001-02-03T04:05:06.789Z', retry_state: { attempts: 3, max_attempts: 9, at_most_once: true } },
  { id: 'varied-delay', application: 'varied', namespace: 'later', taskname: 'v.delay', delay: 3000 },
  { id: 'varied-claimed', application: 'varied', namespace: 'held', taskname: 'v.held', retry_state: { max_attempts: 4, delay_on_retry: 60, on_attempts_exceeded: 'deadletter' } },
  { id: 'v'.repeat(100), application: 'varied', namespace: 'ns', taskname: 'v.long' },
  { id: 'varied/slash', application: 'varied', namespace: 'ns', taskname: 'v.slash' },
  { id: 'varied..', application: 'varied', namespace: 'ns', taskname: 'v.dots' }
]

t.test('seeded tasks survive batches of random refused requests at every route', async (t) => {
  const ctx = await buildHostileApp(t)
  const { app } = ctx
  const seeds = await seed(ctx)
  const produced = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: VARIED } })
  t.equal(produced.statusCode, 201, 'the varied tasks are stored')
  const held = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'varied', namespace: 'held' } })
  t.equal(held.json().tasks.length, 1, 'varied-claimed is processing')

  const taskIds = [...seeds.tasks, ...VARIED.map(v => v.id)]
  const allIds = [...taskIds, ...seeds.deadletters]
  /** The exact bytes of every seeded task's GET and of the dead-letter list. */
  const bytes = async (): Promise<Record<string, string>> => {
    const reads = await Promise.all(taskIds.map(async id => [id, (await app.inject(`/v1/tasks/${percentEncode(id)}`)).body] as const))
    return { ...Object.fromEntries(reads), deadletters: (await app.inject('/v1/deadletters')).body }
  }
  const original = await bytes()
  const originalStore = await fingerprint(ctx.database)
  for (const id of taskIds) t.match(original[id], /^\{"task":/, `${id} reads back`)

  const seededId = fc.constantFrom(...allIds)
  /** A seeded id spelled differently: a suffix, a prefix, another case, an encoded character. */
  const otherSpelling = fc.tuple(seededId, fc.constantFrom('%20', '%0A', '%2F', '.', '~', '%E2%80%8B', '%00', '%C2%A0', 'x'), fc.boolean())
    .map(([id, odd, before]) => before ? `${odd}${percentEncode(id)}` : `${percentEncode(id)}${odd}`)
  /** Something that makes an otherwise valid body invalid. */
  const spoil = fc.oneof(
    fc.tuple(fc.string({ minLength: 1, maxLength: 8 }).map(k => `zz${k}`), wrongValue.filter(v => v !== undefined)).map(([k, v]) => ({ [k]: v })),
    fc.constantFrom<Record<string, unknown>>({ status: 'done' }, { max_attempts: 0 }, { delay_on_retry: -1 }, { max_attempts: 1.5 }, { status: null })
  )
  const task = (id: string) => ({ id, application: 'varied', namespace: 'ns', taskname: 'hostile.overwrite', parameters: { overwritten: true } })
  const json = (method: Req['method'], url: string, payload: unknown, type = 'application/json'): Req =>
    ({ method, url, headers: { 'content-type': type }, payload: JSON.stringify(payload) ?? '' })

  const request: fc.Arbitrary<[string, Req]> = fc.oneof(
    // produce: seeded ids with new content next to one invalid task; or only existing ids (a no-op)
    fc.tuple(fc.array(seededId, { minLength: 1, maxLength: 5 }), wrongValue.filter(v => typeof v !== 'string' || v === ''), fc.boolean()).map(([ids, bad, onlyDuplicates]): [string, Req] =>
      ['POST /v1/tasks', json('POST', '/v1/tasks', { tasks: onlyDuplicates ? ids.filter(id => taskIds.includes(id)).map(task).concat(task(taskIds[0] as string)) : [...ids.map(task), { ...task('zz-new'), namespace: bad }] })]),
    fc.integer({ min: 1001, max: 1100 }).map((n): [string, Req] =>
      ['POST /v1/tasks', json('POST', '/v1/tasks', { tasks: Array.from({ length: n }, (_, i) => task(i < allIds.length ? allIds[i] as string : `zz-${i}`)) })]),
    fc.tuple(fc.array(seededId, { minLength: 1, maxLength: 3 }), fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'multipart/form-data'))
      .map(([ids, type]): [string, Req] => ['POST /v1/tasks', json('POST', '/v1/tasks', { tasks: ids.map(task) }, type)]),
    // claim: filters that would match seeded tasks, always with something invalid
    fc.tuple(fc.constantFrom({ application: 'varied' }, { application: 'seeds' }, {}, { application: 'varied', namespace: 'ns' }), spoil, fc.constantFrom({}, { limit: 0 }, { limit: 101 }, { wait_ms: -1 }))
      .map(([filter, bad, limit]): [string, Req] => ['POST /v1/tasks/claim', json('POST', '/v1/tasks/claim', { ...filter, ...limit, ...bad })]),
    fc.constant<[string, Req]>(['POST /v1/tasks/claim', json('POST', '/v1/tasks/claim', { namespace: 'ns' })]),
    // single status report for a seeded task with an invalid body, or for another spelling of one
    fc.tuple(seededId, fc.constantFrom('complete', 'failure', 'retry'), spoil).map(([id, status, bad]): [string, Req] =>
      ['POST /v1/tasks/{id}/status', json('POST', `/v1/tasks/${percentEncode(id)}/status`, { status, ...bad })]),
    fc.tuple(seededId, fc.constantFrom({ application: 'varied', zz: 1 }, { namespace: 'ns' }, { application: 7 })).map(([id, next]): [string, Req] =>
      ['POST /v1/tasks/{id}/status', json('POST', `/v1/tasks/${percentEncode(id)}/status`, { status: 'complete', fetch_next: next })]),
    fc.tuple(seededId, fc.constantFrom('text/plain', 'application/x-www-form-urlencoded')).map(([id, type]): [string, Req] =>
      ['POST /v1/tasks/{id}/status', json('POST', `/v1/tasks/${percentEncode(id)}/status`, { status: 'complete' }, type)]),
    fc.tuple(otherSpelling, spoil).map(([segment, bad]): [string, Req] =>
      ['POST /v1/tasks/{id}/status', json('POST', `/v1/tasks/${segment}/status`, { status: 'complete', ...bad })]),
    // batch status: valid reports for seeded tasks next to one invalid update; or more than 1,000
    fc.tuple(fc.array(seededId, { minLength: 1, maxLength: 8 }), spoil).map(([ids, bad]): [string, Req] =>
      ['POST /v1/tasks/status', json('POST', '/v1/tasks/status', { updates: [...ids.map(id => ({ id, status: 'complete' })), { id: 'zz', status: 'failure', ...bad }] })]),
    fc.integer({ min: 1001, max: 1100 }).map((n): [string, Req] =>
      ['POST /v1/tasks/status', json('POST', '/v1/tasks/status', { updates: Array.from({ length: n }, (_, i) => ({ id: allIds[i % allIds.length], status: 'complete' })) })]),
    // reads with odd ids and queries
    fc.oneof(otherSpelling, oddSegment).map((segment): [string, Req] => ['GET /v1/tasks/{id}', { method: 'GET', url: `/v1/tasks/${segment}` }]),
    fc.string().map((q): [string, Req] => ['GET /v1/stats', { method: 'GET', url: `/v1/stats?${percentEncode(q)}` }]),
    fc.tuple(fc.constantFrom('application', 'namespace', 'taskname', 'limit', 'cursor', 'zz'), fc.string()).map(([k, v]): [string, Req] =>
      ['GET /v1/deadletters', { method: 'GET', url: `/v1/deadletters?${k}=${percentEncode(v)}` }]),
    // dead letters: other spellings of seeded ids (live tasks and dead letters alike), and live ids
    fc.tuple(fc.oneof(otherSpelling, fc.constantFrom(...taskIds).map(percentEncode)), fc.boolean()).map(([segment, requeue]): [string, Req] => requeue
      ? ['POST /v1/deadletters/{id}/requeue', { method: 'POST', url: `/v1/deadletters/${segment}/requeue` }]
      : ['DELETE /v1/deadletters/{id}', { method: 'DELETE', url: `/v1/deadletters/${segment}` }])
  )

  const serverErrors: string[] = []
  const wrongAnswers: string[] = []
  await holds(t, 'seeded tasks read back byte-for-byte after a batch of refused requests', 15,
    [fc.array(request, { minLength: 30, maxLength: 80 })],
    async (batch) => {
      // All at once: refusals must not depend on being alone.
      const answers: LightMyRequestResponse[] = await Promise.all(batch.map(([route, req]) => send(app, route, req)))
      answers.forEach((res, i) => {
        const [, req] = batch[i] as [string, Req]
        if (res.statusCode >= 500) {
          serverErrors.push(`${res.statusCode} ${describe(req).slice(0, 160)}`)
          return
        }
        try {
          // Accepted only: a produce of existing ids (201, all duplicates) and reads.
          checkAnswer(res, req, { ok: [200, 201] })
        } catch (error) {
          wrongAnswers.push((error as Error).message.split('\n')[0] as string)
        }
      })
      await assertHealthy(app)
      const now = await bytes()
      for (const [id, body] of Object.entries(original)) {
        if (now[id] !== body) throw new Error(`${id} changed:\n  before: ${body.slice(0, 300)}\n  after:  ${String(now[id]).slice(0, 300)}`)
      }
      const store = await fingerprint(ctx.database)
      if (store !== originalStore) throw new Error(`the store changed: ${originalStore} → ${store}`)
    })
  t.same([...new Set(wrongAnswers)], [], 'every refusal is a well-formed 4xx (or a 2xx no-op)')
  t.same([...new Set(serverErrors.map(e => e.replace(/\d+/g, 'N')))].slice(0, 20), [], `no request got a 5xx (${serverErrors.length} did, e.g. ${serverErrors[0] ?? '-'})`)
})
