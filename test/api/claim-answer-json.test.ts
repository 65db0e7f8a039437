/**
 * Claim answers pass the stored activation's JSON text on as it is (src/http/routes/v1/wire.ts)
 * instead of the schema serialiser: the documents must be the ones the schema describes, with
 * every value intact, whatever the activation holds.
 */
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { Value } from 'typebox/value'
import { claimedTaskJson, toClaimedTask } from '../../src/http/routes/v1/wire.js'
import { ClaimResponseSchema, StatusResponseSchema } from '../../src/http/routes/v1/schemas.js'
import type { StoredTask } from '../../src/domain/types.js'
import { buildTestApp, NO_UPKEEP, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'

keepAlive(t)

/** Values that serialisers get wrong most often. */
const AWKWARD_PARAMETERS = [
  { text: 'quote " backslash \\ slash / tab \t newline \n', unicode: 'ünïcødé 日本 🎉', separators: '\u2028\u2029', control: '\u0001\u001f' },
  [1, -0.5, 1e21, 12345678901234, null, true, false, [], {}],
  null,
  'a string',
  0,
  { nested: { deep: { deeper: [{ a: 1 }, { b: [2, 3] }] } }, '': 'empty key', 'key with "quotes"': 1 }
]

const stateOf = async (app: FastifyInstance, id: string) => (await app.inject({ method: 'GET', url: `/v1/tasks/${id}` })).json()

eachBackend(t, 'claim answers carry every activation value intact, in the documented shape', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const tasks = AWKWARD_PARAMETERS.map((parameters, i) => task({
    id: `j-${i}`,
    application: 'shop',
    parameters,
    headers: { 'x-trace': `ü-${i}` },
    ...(i === 1 ? { expires: 600, retry_state: { max_attempts: 3, backoff: { strategy: 'exponential', base_sec: 1, max_sec: 60, jitter: true } } } : {}),
    ...(i === 2 ? { priority: -7 } : {})
  }))
  t.equal((await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks } })).statusCode, 201)

  const res = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'shop', limit: 100 } })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  const body = res.json()
  t.ok(Value.Check(ClaimResponseSchema, body), `the answer matches ClaimResponseSchema ${JSON.stringify([...Value.Errors(ClaimResponseSchema, body)].slice(0, 2))}`)
  t.equal(body.tasks.length, tasks.length)
  for (const claimed of body.tasks) {
    const state = await stateOf(app, claimed.id)
    const { processing_deadline: deadline, processing_attempts: attempts, lease, priority, ...activation } = claimed
    t.strictSame(activation, state.task, `${claimed.id}: the activation as stored`)
    t.same({ deadline, attempts, lease: typeof lease, priority }, { deadline: state.processing_deadline, attempts: state.processing_attempts, lease: 'string', priority: state.priority })
  }
  t.strictSame(body.tasks.find((x: { id: string }) => x.id === 'j-0').parameters, AWKWARD_PARAMETERS[0], 'escapes, unicode and line separators survive')

  // The task a report claims next comes the same way.
  const first = body.tasks[0]
  t.equal((await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: 'next', application: 'shop', parameters: AWKWARD_PARAMETERS[0] })] } })).statusCode, 201)
  const reported = await app.inject({ method: 'POST', url: `/v1/tasks/${first.id as string}/status`, payload: { status: 'complete', lease: first.lease, fetch_next: { application: 'shop' } } })
  const answer = reported.json()
  t.ok(Value.Check(StatusResponseSchema, answer), 'the status answer matches StatusResponseSchema')
  t.same({ applied: answer.applied, queued: answer.queued, id: answer.task?.id }, { applied: true, queued: false, id: 'next' })
  t.strictSame(answer.task.parameters, AWKWARD_PARAMETERS[0])
})

t.test('stored activation text, however spaced, gives the object the schema serialiser was given', async (t) => {
  const base: StoredTask = {
    activation: {
      id: 'u-1',
      application: 'a',
      namespace: 'n',
      taskname: 't',
      parameters: AWKWARD_PARAMETERS[0],
      headers: {},
      received_at: '2026-12-04T00:00:00.000Z',
      processing_deadline_duration: 60,
      retry_state: { attempts: 0, max_attempts: 1, on_attempts_exceeded: 'discard', at_most_once: false }
    },
    status: 'processing',
    addedAt: new Date(),
    processingAttempts: 2,
    processingDeadline: new Date('2026-12-04T00:01:00.000Z'),
    expiresAt: null,
    delayUntil: null,
    claimExpiresAt: null,
    priority: 3,
    lease: '6a1f0c2e-0000-4000-8000-000000000000',
    progress: null,
    cancelRequested: false
  }
  // As PostgreSQL writes jsonb out: spaces after separators.
  const stored = { ...base, activationJson: JSON.stringify(base.activation, null, 1).replace(/\n/g, ' ') }
  t.strictSame(JSON.parse(claimedTaskJson(stored)), toClaimedTask(base), 'passed on from the stored text')
})
