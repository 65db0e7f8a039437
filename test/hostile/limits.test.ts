/**
 * The configurable request limits (TASKBROKER_PRODUCE_MAX_TASKS, _STATUS_MAX_UPDATES,
 * _CLAIM_MAX_TASKS, _ID_MAX_CHARS, _NAME_MAX_CHARS, _PARAMETERS_MAX_BYTES), at their defaults and
 * set small: every input within a limit is accepted, every input past it is refused with a 400
 * naming the field and changes nothing (the invariants of kit.test.ts), and the OpenAPI spec the
 * broker serves states the limits it applies. Lengths count characters (code points), sizes count
 * bytes of JSON; the inputs mix ASCII with 2-, 3- and 4-byte characters.
 *
 * Also: names and ids at the largest allowed limits in 4-byte characters go through the whole
 * lifecycle on PostgreSQL (stored, claimed, dead-lettered, requeued): they fit every index.
 */
import fc from 'fast-check'
import t from 'tap'
import { buildTestApp } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { buildHostileApp, holds, keepAlive, percentEncode, probe, reportCounts, type Ctx, type Req, type Test } from './kit.test.js'

keepAlive(t)
reportCounts(t, 'limits.test.ts')

const PRODUCE = 'POST /v1/tasks'
const CLAIM = 'POST /v1/tasks/claim'
const STATUS = 'POST /v1/tasks/{id}/status'
const BATCH = 'POST /v1/tasks/status'
const READ = 'GET /v1/tasks/{id}'
const DEADLETTERS = 'GET /v1/deadletters'

/** Text of exactly `n` characters (code points), drawn from 1- to 4-byte characters. */
function textOf (n: number, seed: number): string {
  const alphabet = ['a', 'Z', '0', '-', 'é', 'ß', 'Ж', '€', '中', '\u2028', '😀', '\u{10ffff}', '\u{20000}']
  let out = ''
  for (let i = 0; i < n; i++) out += alphabet[(seed + i * 7) % alphabet.length]
  return out
}

const json = (url: string, payload: unknown): Req => ({ method: 'POST', url, payload: payload as object })

let sequence = 0
/** A fresh id of exactly `n` characters (the counter up front keeps it unique). */
function idOf (n: number, seed: number): string {
  const head = `l${++sequence}-`
  return n <= head.length ? head.slice(0, n) : head + textOf(n - head.length, seed)
}

interface Limits { tasks: number, updates: number, claim: number, id: number, name: number, params: number }

/** One property per limit: a value of length `limit - 2 … limit + 2` is accepted iff within it. */
async function checkLimits (t: Test, ctx: Ctx, limits: Limits, runs: number): Promise<void> {
  const around = (limit: number, min = 1) => fc.integer({ min: Math.max(min, limit - 2), max: limit + 2 })
  const seed = fc.nat({ max: 1000 })
  const task = (overrides: Record<string, unknown> = {}) => ({ id: idOf(20, 0), namespace: 'n', taskname: 't', ...overrides })
  const expectFor = (within: boolean, field: string, ok: number) => ({ ok: within ? [ok] : [], field })
  const outcome = async (req: Req, route: string, within: boolean, field: string, ok: number) => {
    const { res } = await probe(ctx, route, req, expectFor(within, field, ok))
    if (within !== (res.statusCode === ok)) throw new Error(`expected ${within ? 'acceptance' : 'a refusal'}, got ${res.statusCode} ${res.body.slice(0, 200)}`)
  }

  await holds(t, `produce: tasks per request (limit ${limits.tasks})`, runs, [around(limits.tasks)], async (n) => {
    const tasks = Array.from({ length: n }, () => task({ id: idOf(20, n) }))
    await outcome(json('/v1/tasks', { tasks }), PRODUCE, n <= limits.tasks, 'body/tasks', 201)
  })
  for (const field of ['application', 'namespace', 'taskname'] as const) {
    await holds(t, `produce: ${field} length (limit ${limits.name})`, runs, [around(limits.name), seed], async (n, s) => {
      await outcome(json('/v1/tasks', { tasks: [task({ [field]: textOf(n, s) })] }), PRODUCE, n <= limits.name, `body/tasks/0/${field}`, 201)
    })
  }
  await holds(t, `produce: id length (limit ${limits.id})`, runs, [around(limits.id), seed], async (n, s) => {
    await outcome(json('/v1/tasks', { tasks: [task({ id: idOf(n, s) })] }), PRODUCE, n <= limits.id, 'body/tasks/0/id', 201)
  })
  await holds(t, `produce: parameters size (limit ${limits.params} bytes)`, runs,
    [fc.integer({ min: -3, max: 3 }), seed, fc.constantFrom('string', 'object')], async (delta, s, shape) => {
      // A JSON value of exactly limit + delta bytes: a string (2 bytes of quotes) or {"k":"…"} (8 bytes).
      const overhead = shape === 'string' ? 2 : 8
      const size = Math.max(overhead, limits.params + delta)
      // Some multi-byte characters (none that JSON escapes), then ASCII up to the exact size.
      let head = textOf(Math.min(16, Math.floor((size - overhead) / 4)), s).replace(/\u2028/g, 'x')
      while (Buffer.byteLength(head) > size - overhead) head = [...head].slice(0, -1).join('')
      const text = head + 'x'.repeat(size - overhead - Buffer.byteLength(head))
      const parameters = shape === 'string' ? text : { k: text }
      const bytes = Buffer.byteLength(JSON.stringify(parameters))
      await outcome(json('/v1/tasks', { tasks: [task({ parameters })] }), PRODUCE, bytes <= limits.params, 'body/tasks/0/parameters', 201)
    })
  await holds(t, `claim: limit (at most ${limits.claim})`, runs, [around(limits.claim)], async (n) => {
    await outcome(json('/v1/tasks/claim', { application: 'zz', limit: n }), CLAIM, n <= limits.claim, 'body/limit', 200)
  })
  for (const field of ['application', 'namespace'] as const) {
    await holds(t, `claim: ${field} filter length (limit ${limits.name})`, runs, [around(limits.name), seed], async (n, s) => {
      const body = { application: 'zz', namespace: 'zz', [field]: textOf(n, s) }
      await outcome(json('/v1/tasks/claim', body), CLAIM, n <= limits.name, `body/${field}`, 200)
    })
    await holds(t, `status fetch_next: ${field} filter length (limit ${limits.name})`, runs, [around(limits.name), seed], async (n, s) => {
      const body = { status: 'complete', fetch_next: { application: 'zz', namespace: 'zz', [field]: textOf(n, s) } }
      await outcome(json(`/v1/tasks/${idOf(10, s)}/status`, body), STATUS, n <= limits.name, `body/fetch_next/${field}`, 200)
    })
    await holds(t, `dead letters: ${field} filter length (limit ${limits.name})`, runs, [around(limits.name), seed], async (n, s) => {
      const req: Req = { method: 'GET', url: `/v1/deadletters?${field}=${percentEncode(textOf(n, s))}` }
      await outcome(req, DEADLETTERS, n <= limits.name, `querystring/${field}`, 200)
    })
  }
  await holds(t, `batch status: updates per request (limit ${limits.updates})`, runs, [around(limits.updates)], async (n) => {
    const updates = Array.from({ length: n }, () => ({ id: idOf(20, n), status: 'complete' }))
    await outcome(json('/v1/tasks/status', { updates }), BATCH, n <= limits.updates, 'body/updates', 200)
  })
  await holds(t, `batch status: id length (limit ${limits.id})`, runs, [around(limits.id), seed], async (n, s) => {
    await outcome(json('/v1/tasks/status', { updates: [{ id: idOf(n, s), status: 'failure' }] }), BATCH, n <= limits.id, 'body/updates/0/id', 200)
  })
  await holds(t, `id in the path (limit ${limits.id})`, runs, [around(limits.id), seed, fc.boolean()], async (n, s, read) => {
    const id = percentEncode(idOf(n, s))
    if (read) {
      const { res } = await probe(ctx, READ, { method: 'GET', url: `/v1/tasks/${id}` }, { ok: [], field: 'params/id' })
      if ((n <= limits.id) !== (res.statusCode === 404)) throw new Error(`GET of an id of ${n} characters answered ${res.statusCode} ${res.body.slice(0, 200)}`)
    } else {
      await outcome(json(`/v1/tasks/${id}/status`, { status: 'complete' }), STATUS, n <= limits.id, 'params/id', 200)
    }
  })
}

t.test('the default limits: within them accepted, past them refused naming the field', async (t) => {
  const ctx = await buildHostileApp(t)
  await checkLimits(t, ctx, { tasks: 1000, updates: 1000, claim: 100, id: 255, name: 200, params: 1024 * 1024 }, 6)
})

const SMALL = {
  TASKBROKER_PRODUCE_MAX_TASKS: '3',
  TASKBROKER_STATUS_MAX_UPDATES: '2',
  TASKBROKER_CLAIM_MAX_TASKS: '4',
  TASKBROKER_ID_MAX_CHARS: '40',
  TASKBROKER_NAME_MAX_CHARS: '5',
  TASKBROKER_PARAMETERS_MAX_BYTES: '64'
}

t.test('small custom limits: applied by validation and stated by the served OpenAPI spec', async (t) => {
  const ctx = await buildHostileApp(t, SMALL)
  await checkLimits(t, ctx, { tasks: 3, updates: 2, claim: 4, id: 40, name: 5, params: 64 }, 25)

  const spec = JSON.stringify((await ctx.app.inject('/openapi.json')).json())
  for (const [what, pattern] of [
    ['tasks per produce', /"tasks":\{"type":"array","items":\{[^]*?\},"minItems":1,"maxItems":3\}/],
    ['updates per batch', /"maxItems":2/],
    ['claim limit', /"limit":\{"type":"integer","minimum":1,"maximum":4/],
    ['id length', /"maxLength":40/],
    ['name length', /"namespace":\{"type":"string","minLength":1,"maxLength":5/],
    ['parameters size', /at most 64 bytes as JSON/]
  ] as const) t.match(spec, pattern, `the spec states the ${what}`)
})

t.test('a produce request over the parameters limit stores none of its tasks', async (t) => {
  const { app, database } = await buildHostileApp(t, { TASKBROKER_PARAMETERS_MAX_BYTES: '100' })
  const ctx = { app, database }
  const tasks = [
    { id: 'p-ok-1', namespace: 'n', taskname: 't', parameters: 'x'.repeat(50) },
    { id: 'p-big', namespace: 'n', taskname: 't', parameters: { list: Array.from({ length: 45 }, (_, i) => i) } },
    { id: 'p-ok-2', namespace: 'n', taskname: 't' }
  ]
  const { res } = await probe(ctx, PRODUCE, json('/v1/tasks', { tasks }), { field: 'body/tasks/1/parameters' })
  t.equal(res.statusCode, 400)
  t.match(res.json().message, /^body\/tasks\/1\/parameters is 1\d\d bytes as JSON, more than the 100 allowed \(TASKBROKER_PARAMETERS_MAX_BYTES\)$/)
})

eachBackend(t, 'ids and names at the largest allowed limits, in 4-byte characters, go through the whole lifecycle', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, {
    TASKBROKER_UPKEEP_ENABLED: 'false',
    TASKBROKER_ID_MAX_CHARS: '512',
    TASKBROKER_NAME_MAX_CHARS: '220'
  })
  // Characters from the CJK Extension B block: 4 bytes each in UTF-8, and they do not compress.
  const wide = (n: number, offset: number) => Array.from({ length: n }, (_, i) => String.fromCodePoint(0x20000 + ((i * 7919 + offset * 104729) % 40000))).join('')
  const id = wide(512, 1)
  const names = { application: wide(220, 2), namespace: wide(220, 3), taskname: wide(220, 4) }
  const produced = await app.inject({
    method: 'POST',
    url: '/v1/tasks',
    payload: { tasks: [{ id, ...names, retry_state: { on_attempts_exceeded: 'deadletter' } }] }
  })
  t.equal(produced.statusCode, 201, 'produced')
  const claimed = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: names.application, namespace: names.namespace } })
  t.equal(claimed.json().tasks[0]?.id, id, 'claimed by its filter')
  const failed = await app.inject({ method: 'POST', url: `/v1/tasks/${percentEncode(id)}/status`, payload: { status: 'failure' } })
  t.equal(failed.json().applied, true, 'failure reported through the path')
  const pass = await app.broker.upkeep.runOnce(new Date())
  t.same(pass.errors, {}, 'upkeep moved it to the dead letters without an error')
  const listed = await app.inject(`/v1/deadletters?application=${percentEncode(names.application)}&taskname=${percentEncode(names.taskname)}`)
  t.equal(listed.json().deadletters[0]?.task.id, id, 'listed as a dead letter by its names')
  const requeued = await app.inject({ method: 'POST', url: `/v1/deadletters/${percentEncode(id)}/requeue` })
  t.equal(requeued.statusCode, 200, 'requeued')
  const read = await app.inject(`/v1/tasks/${percentEncode(id)}`)
  t.equal(read.json().status, 'pending', 'pending again')
})
