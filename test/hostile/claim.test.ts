/**
 * POST /v1/tasks/claim under hostile input: values of any type in every field, huge strings,
 * deep nesting, awkward unicode, NUL bytes and lone surrogates in the filters. See kit.test.ts
 * for the invariants checked on every request.
 *
 * The store is seeded with nothing claimable, so even an accepted claim must leave the store as
 * it was: every request here is checked against the fingerprint, accepted or not.
 */
import fc from 'fast-check'
import t from 'tap'
import {
  assertHealthy, buildHostileApp, deepJson, deepSpec, fingerprint, holds, hugeString, keepAlive, oddUnicode, probe, reportCounts, seed,
  withLoneSurrogate, withNul, wrongValue, type Ctx, type Expect, type Req
} from './kit.test.js'

keepAlive(t)
reportCounts(t, 'claim.test.ts')

const CLAIM = 'POST /v1/tasks/claim'

/**
 * Sends the request and checks the answer; nothing stored may change whatever the answer, since
 * nothing is claimable and no report names a task that could take it.
 */
const probeUnchanged = (ctx: Ctx, route: string, req: Req, expect: Expect) => probe(ctx, route, req, { ...expect, unchanged: true })

const json = (url: string, payload: unknown): Req =>
  ({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) ?? '' })

t.test('POST /v1/tasks/claim under hostile input', async (t) => {
  const ctx = await buildHostileApp(t)
  const { app } = ctx
  const seeds = await seed(ctx)
  const seeded = await seeds.snapshot()
  t.afterEach(async () => {
    await assertHealthy(app)
    t.equal(await seeds.snapshot(), seeded, 'the seeded tasks and dead letters are unchanged')
  })

  const CLAIM_FIELDS = ['application', 'namespace', 'limit', 'wait_ms'] as const
  const claimField = fc.oneof(
    fc.constantFrom<string>(...CLAIM_FIELDS),
    fc.string({ minLength: 1, maxLength: 20 }).filter(k => !(CLAIM_FIELDS as readonly string[]).includes(k) && k !== '__proto__')
  )
  const claimBase = () => ({ application: 'zz-none', namespace: 'zz', limit: 5, wait_ms: 0 })

  await t.test('claim: a value of any type in any field is refused naming the field, or claims nothing', async (t) => {
    await holds(t, 'claim wrong types', 300, [claimField, wrongValue], async (field, value) => {
      const body: Record<string, unknown> = { ...claimBase(), [field]: value }
      // Dropping application leaves a namespace without one: refused, naming body/namespace.
      const expect = { ok: [200], field: value === undefined ? 'body/' : `body/${field}` }
      await probeUnchanged(ctx, CLAIM, json('/v1/tasks/claim', body), expect)
    })
    await holds(t, 'claim body of any type', 150, [wrongValue], async (value) => {
      await probeUnchanged(ctx, CLAIM, json('/v1/tasks/claim', value), { ok: [200], field: 'body' })
    })
  })

  await t.test('claim: huge, deeply nested and awkward unicode filters are refused naming the field or match nothing', async (t) => {
    await holds(t, 'claim huge strings', 40, [fc.constantFrom('application', 'namespace'), hugeString(1, 100_000)], async (field, text) => {
      const req = json('/v1/tasks/claim', { ...claimBase(), [field]: text })
      const before = await fingerprint(ctx.database)
      const { res } = await probe(ctx, CLAIM, req, { ok: [200], field: `body/${field}` })
      // The default TASKBROKER_NAME_MAX_CHARS (limits.test.ts tries others).
      if ([...text].length > 200 && res.statusCode === 200) throw new Error(`a ${field} of ${[...text].length} characters was accepted`)
      if ([...text].length <= 200 && res.statusCode !== 200) throw new Error(`a ${field} within 200 characters was refused: ${res.body}`)
      if (await fingerprint(ctx.database) !== before) throw new Error('the store changed')
    })
    await holds(t, 'claim deep nesting', 30, [fc.constantFrom(...CLAIM_FIELDS, 'unknown', 'body'), deepSpec(1000, 20_000)], async (field, { depth, kind }) => {
      const deep = deepJson(depth, kind)
      const payload = field === 'body' ? deep : `{"application":"zz-none","${field}":${deep}}`
      const req: Req = { method: 'POST', url: '/v1/tasks/claim', headers: { 'content-type': 'application/json' }, payload }
      await probeUnchanged(ctx, CLAIM, req, { field: field === 'body' ? 'body' : `body/${field}` })
    })
    await holds(t, 'claim valid unicode', 100, [fc.constantFrom('application', 'namespace'), oddUnicode], async (field, text) => {
      await probeUnchanged(ctx, CLAIM, json('/v1/tasks/claim', { ...claimBase(), [field]: text }), { ok: [200] })
    })
    await holds(t, 'claim NUL in a filter', 50, [fc.constantFrom('application', 'namespace'), withNul], async (field, text) => {
      await probeUnchanged(ctx, CLAIM, json('/v1/tasks/claim', { ...claimBase(), [field]: text }), { ok: [200], field: `body/${field}` })
    })
    await holds(t, 'claim lone surrogate in a filter', 50, [fc.constantFrom('application', 'namespace'), withLoneSurrogate], async (field, text) => {
      await probeUnchanged(ctx, CLAIM, json('/v1/tasks/claim', { ...claimBase(), [field]: text }), { ok: [200], field: `body/${field}` })
    })
  })
})
