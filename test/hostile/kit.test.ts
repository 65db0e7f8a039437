/**
 * Shared kit of the hostile-input tests in test/hostile: how a hostile request is sent, what every
 * answer to one must look like, a fingerprint of everything stored, and the fast-check
 * arbitraries the files share.
 *
 * It is named like a test only so that it lives among them; run by itself (as tap does) it checks
 * its own checker and fingerprint. Imported, it only exports.
 *
 * The invariants, for every generated request:
 * - never a 5xx (the broker is configured so that no 503 is legitimate here: no backpressure
 *   limits in reach, the store up), and the process answers /healthz afterwards;
 * - a 4xx body is exactly {statusCode, code, error, message} with a TASKBROKER_* code and
 *   body.statusCode = the HTTP status; a validation error names the field: its message starts
 *   with body, params, querystring or headers (then "/" or " ");
 * - a rejected request changes nothing stored (fingerprint of both tables, every column).
 */
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sql } from 'drizzle-orm'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import fc from 'fast-check'
import tap from 'tap'
import type { Database } from '../../src/db/database.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { replayHint, withTestSeed } from '../helpers/property.js'

/** A tap test: the file's `t` or any subtest. */
export type Test = Parameters<Parameters<typeof tap.test>[0]>[0]

/**
 * The broker as the hostile tests run it: PGlite, no upkeep (it would change rows on its own), no
 * backpressure limit within reach (a 503 is then always a bug), claims that never wait long, and
 * short ack/shutdown timeouts so a stuck status batcher shows up as a 503 within a second instead
 * of hanging the file.
 */
export const HOSTILE_ENV: Record<string, string> = {
  TASKBROKER_UPKEEP_ENABLED: 'false',
  TASKBROKER_MAX_PENDING_COUNT: '100000000',
  TASKBROKER_MAX_DELAY_COUNT: '100000000',
  TASKBROKER_MAX_PROCESSING_COUNT: '100000000',
  TASKBROKER_CLAIM_MAX_WAIT_MS: '20',
  TASKBROKER_STATUS_ACK_TIMEOUT_MS: '500',
  TASKBROKER_SHUTDOWN_TIMEOUT_MS: '300'
}

export function buildHostileApp (t: Test, env: Record<string, string> = {}): Promise<TestApp> {
  return buildTestApp(t, 'pglite', { ...HOSTILE_ENV, ...env })
}

/** The broker's timers are unref()'d: each file keeps its process alive with this (test/helpers). */
export { keepAlive }

export interface Req {
  method: 'GET' | 'POST' | 'DELETE' | 'PUT' | 'PATCH'
  url: string
  headers?: Record<string, string>
  /** An object is sent as JSON (light-my-request stringifies it); strings and Buffers as they are. */
  payload?: string | Buffer | object
}

/** A request in a few hundred characters, for failure messages (long strings by their length). */
export function describe (req: Req): string {
  const short = (s: string) => s.length > 160 ? `${JSON.stringify(s.slice(0, 80))}…(${s.length} chars)` : JSON.stringify(s)
  let payload = ''
  if (req.payload !== undefined) {
    if (Buffer.isBuffer(req.payload)) payload = ` bytes ${short(req.payload.toString('latin1'))}`
    else if (typeof req.payload === 'string') payload = ` text ${short(req.payload)}`
    else {
      let text: string
      try { text = JSON.stringify(req.payload) } catch { text = '<unserialisable>' }
      payload = ` json ${short(text)}`
    }
  }
  const headers = req.headers === undefined ? '' : ` headers ${short(JSON.stringify(req.headers))}`
  return `${req.method} ${short(req.url)}${headers}${payload}`
}

/** How many requests each route got (generated inputs, shrinking included), reported at the end. */
const counts = new Map<string, number>()

export function countFor (route: string): void {
  counts.set(route, (counts.get(route) ?? 0) + 1)
}

export function reportCounts (t: Test, file: string): void {
  t.teardown(() => {
    const lines = [...counts.entries()].sort().map(([route, n]) => `${route}: ${n}`)
    t.comment(`${file}: requests sent per route\n  ${lines.join('\n  ')}`)
  })
}

export async function send (app: FastifyInstance, route: string, req: Req): Promise<LightMyRequestResponse> {
  countFor(route)
  return app.inject({ method: req.method, url: req.url, headers: req.headers, payload: req.payload as never })
}

const REASONS: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type'
}

/** A message that names what was wrong with the request (the validation messages' form). */
export const NAMES_FIELD = /^(body|params|querystring|headers)([/ ]|$)/

export interface Expect {
  /** 2xx statuses that are a legitimate answer to this request (default: none, it must be refused). */
  ok?: readonly number[]
  /** A validation refusal's message must start with this (the field the request got wrong). */
  field?: string
  /** Nothing stored may change even when the request is accepted (it names no task that could change). */
  unchanged?: boolean
}

export type Outcome = 'accepted' | 'rejected'

/**
 * Throws (so fast-check sees a counterexample) unless the answer is a well-formed 4xx, or one of
 * the allowed 2xx.
 */
export function checkAnswer (res: LightMyRequestResponse, req: Req, expect: Expect = {}): Outcome {
  const fail = (why: string): never => {
    throw new Error(`${why}\n  request: ${describe(req)}\n  answer: ${res.statusCode} ${res.body.slice(0, 400)}`)
  }
  if (res.statusCode >= 500) fail(`answered ${res.statusCode} (a 5xx)`)
  if (res.statusCode >= 200 && res.statusCode < 300) {
    if (expect.ok?.includes(res.statusCode) !== true) fail(`accepted with ${res.statusCode}, expected a refusal`)
    return 'accepted'
  }
  if (res.statusCode < 400) fail(`answered ${res.statusCode}`)
  if (!/^application\/json/.test(String(res.headers['content-type']))) fail('the error is not JSON')
  let body: Record<string, unknown>
  try {
    body = res.json()
  } catch {
    return fail('the error body does not parse as JSON')
  }
  const keys = Object.keys(body).sort().join(',')
  if (keys !== 'code,error,message,statusCode') fail(`the error body has keys ${keys}, not exactly statusCode, code, error, message`)
  if (body.statusCode !== res.statusCode) fail(`body.statusCode ${String(body.statusCode)} differs from the HTTP status`)
  if (typeof body.code !== 'string' || !body.code.startsWith('TASKBROKER_')) fail(`code ${JSON.stringify(body.code)} is not a TASKBROKER_ code`)
  const reason = REASONS[res.statusCode]
  if (typeof body.error !== 'string' || body.error === '' || (reason !== undefined && body.error !== reason)) {
    fail(`error ${JSON.stringify(body.error)} is not the HTTP reason`)
  }
  if (typeof body.message !== 'string') fail('message is not a string')
  const message = body.message as string
  if (body.code === 'TASKBROKER_INVALID_REQUEST' && !message.startsWith('Request body size did not match') && !NAMES_FIELD.test(message)) {
    fail('the validation message does not name the field (body/…, params/…, querystring/…)')
  }
  if (expect.field !== undefined && body.code === 'TASKBROKER_INVALID_REQUEST' && !message.startsWith(expect.field)) {
    fail(`the message does not start with ${expect.field}`)
  }
  return 'rejected'
}

/** Everything stored, every column of every row of both tables, as one digest (and the counts). */
export async function fingerprint (database: Database): Promise<string> {
  const rows = await database.rows(sql`
    select (select count(*)::int from inflight_tasks) as live,
           (select count(*)::int from deadletter_tasks) as dead,
           (select md5(coalesce(string_agg(t::text, '|' order by t.id), '')) from inflight_tasks t) as live_md5,
           (select md5(coalesce(string_agg(d::text, '|' order by d.id), '')) from deadletter_tasks d) as dead_md5`)
  return JSON.stringify(rows[0])
}

/** Throws unless the process still answers /healthz. */
export async function assertHealthy (app: FastifyInstance): Promise<void> {
  const res = await app.inject({ method: 'GET', url: '/healthz' })
  if (res.statusCode !== 200 || res.json().status !== 'ok') throw new Error(`/healthz answered ${res.statusCode} ${res.body}`)
}

export interface Ctx { app: FastifyInstance, database: Database }

/**
 * Sends one hostile request and checks every invariant: the answer (checkAnswer), nothing stored
 * changed when it was refused, the process still healthy. Returns the answer and the outcome.
 */
export async function probe (ctx: Ctx, route: string, req: Req, expect: Expect = {}): Promise<{ res: LightMyRequestResponse, outcome: Outcome }> {
  const before = await fingerprint(ctx.database)
  const res = await send(ctx.app, route, req)
  const outcome = checkAnswer(res, req, expect)
  if (outcome === 'rejected' || expect.unchanged === true) {
    const after = await fingerprint(ctx.database)
    if (after !== before) {
      throw new Error(`${outcome === 'rejected' ? 'a refused' : 'an accepted'} request changed the store\n  request: ${describe(req)}\n` +
        `  answer: ${res.statusCode} ${res.body.slice(0, 200)}\n  before: ${before}\n  after: ${after}`)
    }
  }
  await assertHealthy(ctx.app)
  return { res, outcome }
}

/** Counts by status from /v1/stats (the public snapshot of the store). */
export async function byStatus (app: FastifyInstance): Promise<unknown> {
  return (await app.inject({ method: 'GET', url: '/v1/stats' })).json().by_status
}

/**
 * Runs a property with fc.assert and reports it as one tap assertion: a pass naming the inputs
 * tried, or a failure naming the seed (TASKBROKER_TEST_SEED replays it: test/helpers/property.ts)
 * and carrying fast-check's report (seed, counterexample after shrinking, error).
 */
export async function holds<Ts extends [unknown, ...unknown[]]> (
  t: Test, name: string, numRuns: number,
  arbs: { [K in keyof Ts]: fc.Arbitrary<Ts[K]> }, predicate: (...args: Ts) => Promise<void>,
  params: fc.Parameters<Ts> = {}
): Promise<boolean> {
  const started = Date.now()
  try {
    await fc.assert(fc.asyncProperty<Ts>(...arbs, predicate), withTestSeed({ numRuns, ...params }))
    t.pass(`${name} (${numRuns} inputs, ${Date.now() - started} ms)`)
    return true
  } catch (error) {
    const clip = (text: string) => text.length > 4000 ? `${text.slice(0, 4000)}…` : text
    const report = error instanceof Error ? error.message : String(error)
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : undefined
    const counterexample = /Counterexample: (.*?)\n\s*Shrunk/s.exec(report)?.[1]
    t.fail(`${name}, ${replayHint(report)}: ${clip(cause ?? report).split('\n')[0] ?? ''}`, {
      counterexample: clip(counterexample ?? ''),
      error: clip(cause ?? report),
      report: clip(report)
    })
    return false
  }
}

/**
 * Seeds the store with a task in every reachable state and two dead letters, leaving nothing
 * claimable: a random claim that happens to be valid then finds no task, so it changes nothing.
 * `snapshot()` is the public view of all of them (GET of each task, the dead-letter list).
 */
export async function seed (ctx: Ctx): Promise<{ tasks: string[], deadletters: string[], snapshot: () => Promise<string> }> {
  const { app, database } = ctx
  const post = async (url: string, payload: object, status: number) => {
    const res = await app.inject({ method: 'POST', url, payload })
    if (res.statusCode !== status) throw new Error(`seeding: ${url} answered ${res.statusCode} ${res.body}`)
    return res.json()
  }
  const tasks = ['seed-processing-1', 'seed-processing-2', 'seed-failure', 'seed-retry', 'seed-delayed']
  await post('/v1/tasks', {
    tasks: [
      { id: 'seed-processing-1', application: 'seeds', namespace: 'work', taskname: 'hostile.seed', parameters: { n: [1, { two: 2 }] }, headers: { k: 'v' } },
      { id: 'seed-processing-2', application: 'seeds', namespace: 'work', taskname: 'hostile.seed', retry_state: { max_attempts: 5, delay_on_retry: 3 } },
      { id: 'seed-failure', application: 'seeds', namespace: 'work', taskname: 'hostile.seed', retry_state: { on_attempts_exceeded: 'deadletter' } },
      { id: 'seed-retry', application: 'seeds', namespace: 'work', taskname: 'hostile.seed', retry_state: { max_attempts: 3 } },
      { id: 'seed-delayed', application: 'seeds', namespace: 'later', taskname: 'hostile.seed', delay: 3600 }
    ]
  }, 201)
  const claimed = await post('/v1/tasks/claim', { application: 'seeds', namespace: 'work', limit: 10 }, 200) as { tasks: unknown[] }
  if (claimed.tasks.length !== 4) throw new Error(`seeding: claimed ${claimed.tasks.length} tasks, not 4`)
  await post('/v1/tasks/seed-failure/status', { status: 'failure' }, 200)
  await post('/v1/tasks/seed-retry/status', { status: 'retry' }, 200)
  const deadletters = ['seed-dead-1', 'seed-dead-2']
  for (const [i, id] of deadletters.entries()) {
    const activation = {
      id,
      application: 'seeds',
      namespace: 'dead',
      taskname: 'hostile.dead',
      parameters: { i },
      headers: {},
      received_at: '2024-05-01T10:00:00.000Z',
      processing_deadline_duration: 60,
      retry_state: { attempts: 2, max_attempts: 2, on_attempts_exceeded: 'deadletter', at_most_once: false }
    }
    await database.rows(sql`
      insert into deadletter_tasks (id, activation, application, namespace, taskname, reason, processing_attempts, received_at, deadlettered_at)
      values (${id}, ${JSON.stringify(activation)}::jsonb, 'seeds', 'dead', 'hostile.dead', 'retries_exhausted', 1,
        '2024-05-01T10:00:00.000Z'::timestamptz, ${`2024-05-02T10:00:0${i}.123456Z`}::timestamptz)`)
  }
  const snapshot = async () => {
    const states = await Promise.all(tasks.map(async id => (await app.inject(`/v1/tasks/${id}`)).body))
    const dead = (await app.inject('/v1/deadletters?application=seeds')).body
    return JSON.stringify({ states, dead })
  }
  return { tasks, deadletters, snapshot }
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** Any JSON-ish value of any type (fast-check's anything(), plus the classics). */
export const wrongValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.anything({ maxDepth: 3 }),
  fc.constantFrom<unknown>(null, true, false, 0, -1, 1.5, 1e308, -1e308, '', '0', 'true', [], {}, [null], { '': '' }, 2 ** 53 + 2)
)

/** A string of at least `min`..`max` characters (code points; up to ~100 KB), a short unicode piece repeated. */
export function hugeString (min = 256, max = 100_000): fc.Arbitrary<string> {
  return fc.tuple(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }), fc.integer({ min, max }))
    .map(([piece, n]) => piece.repeat(Math.max(1, Math.ceil(n / [...piece].length))))
}

/** Valid UTF-16 text with the awkward characters: controls, separators, BOM, noncharacters, RTL, ZWJ, astral. */
export const oddUnicode: fc.Arbitrary<string> = fc.array(fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 8 }),
  fc.string({ unit: 'grapheme-composite', maxLength: 4 }),
  fc.constantFrom(
    '\u0001', '\u001f', '\u007f', '\u0085', '\u00a0', '\u2028', '\u2029', '\ufeff', '\ufffe', '\uffff', '\ufffd',
    '\u200b', '\u200d', '\u202e', '\u{10ffff}', '\u{1f469}\u200d\u{1f469}\u200d\u{1f467}', 'e\u0301', '\\', '"', "'",
    '%00', '\\u0000', '$' + '{x}', "'; drop table inflight_tasks; --", '../..', '\r\n', '\t'
  )
), { minLength: 1, maxLength: 6 }).map(parts => parts.join('')).filter(s => s.length > 0 && s.length <= 200)

/** A string that contains at least one NUL (U+0000), which PostgreSQL text and jsonb cannot store. */
export const withNul: fc.Arbitrary<string> = fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }))
  .map(([a, b]) => `${a}\u0000${b}`)

/** A string with at least one lone surrogate (no valid UTF-8 encoding exists for it). */
export const withLoneSurrogate: fc.Arbitrary<string> = fc.tuple(
  fc.string({ maxLength: 10 }), fc.integer({ min: 0xd800, max: 0xdfff }), fc.string({ maxLength: 10 })
).map(([a, unit, b]) => `${a}${String.fromCharCode(unit)}${b}`)

/** JSON text `depth` levels deep: arrays, objects, or both alternating, with `leaf` at the bottom. */
export function deepJson (depth: number, kind: 'array' | 'object' | 'mixed', leaf = '1'): string {
  if (kind === 'array') return '['.repeat(depth) + leaf + ']'.repeat(depth)
  if (kind === 'object') return '{"a":'.repeat(depth) + leaf + '}'.repeat(depth)
  const open: string[] = []
  const close: string[] = []
  for (let i = 0; i < depth; i++) {
    open.push(i % 2 === 0 ? '[' : '{"k":')
    close.push(i % 2 === 0 ? ']' : '}')
  }
  return open.join('') + leaf + close.reverse().join('')
}

export type DeepKind = 'array' | 'object' | 'mixed'

export const deepSpec = (min = 1000, max = 20_000): fc.Arbitrary<{ depth: number, kind: DeepKind }> =>
  fc.record({ depth: fc.integer({ min, max }), kind: fc.constantFrom<DeepKind>('array', 'object', 'mixed') })

/** Percent-encodes text as UTF-8 (lone surrogates become U+FFFD, as any client's encoder would). */
export function percentEncode (text: string): string {
  return [...Buffer.from(text, 'utf8')].map(byte => {
    const c = String.fromCharCode(byte)
    return /[A-Za-z0-9_.~-]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }).join('')
}

/**
 * A path segment with odd but well-formed characters (valid percent-encoded UTF-8, at most 100
 * characters decoded, no NUL): `..`, `.`, encoded slashes, unicode, reserved characters.
 */
export const oddSegment: fc.Arbitrary<string> = fc.oneof(
  oddUnicode.map(s => s.replaceAll('\u0000', '')).filter(s => s.length > 0 && s.length <= 60).map(percentEncode),
  fc.constantFrom('..', '.', '%2e%2e', '%2E', '%2F', '%2f..%2f', '~', '*', '%20', '+', ';', ',', '@', ':', '$', '!', "'", '(', ')',
    '%25', '%3F', '%23', '%E2%80%AE', '%F0%9F%92%A9', '%EF%BB%BF', 'a%2Fb%2F..%2F..', '%5C', '%7F', '%01')
)

/** A path segment with a NUL somewhere (%00). */
export const nulSegment: fc.Arbitrary<string> = fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }))
  .map(([a, b]) => `${percentEncode(a)}%00${percentEncode(b)}`)

/** A path segment whose percent-encoding is broken or is not UTF-8 (%zz, %, %FF, overlong, encoded surrogates). */
export const brokenSegment: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('%', '%z', '%zz', 'a%', '%%', '%FF', '%C0%AF', '%ED%A0%80', '%ED%BF%BF', '%F8%88%80%80%80', '%80', '%E2%82'),
  fc.uint8Array({ minLength: 1, maxLength: 8 })
    .filter(bytes => !Buffer.from(Buffer.from(bytes).toString('utf8'), 'utf8').equals(Buffer.from(bytes)))
    .map(bytes => [...bytes].map(x => `%${x.toString(16).padStart(2, '0')}`).join(''))
)

/** An id longer than the 100 characters Fastify allows in a path parameter by default (up to ~100 KB). */
export const longSegment: fc.Arbitrary<string> = fc.oneof(
  fc.integer({ min: 101, max: 255 }).map(n => 'l'.repeat(n)),
  fc.integer({ min: 256, max: 100_000 }).map(n => 'L'.repeat(n))
)

// ---------------------------------------------------------------------------------------------
// Self-test, when tap runs this file by itself

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)

if (isMain) {
  keepAlive(tap)
  tap.test('the hostile kit checks what it claims to check', async (t) => {
    const { app, database } = await buildHostileApp(t)
    const req: Req = { method: 'POST', url: '/v1/tasks', payload: { tasks: [{ namespace: 'ns' }] } }
    const refused = await app.inject({ method: 'POST', url: req.url, payload: { tasks: [{ namespace: 'ns' }] } })
    t.equal(checkAnswer(refused, req, { field: 'body/tasks/0/taskname' }), 'rejected', 'a well-formed 400 naming the field passes')
    t.throws(() => checkAnswer(refused, req, { field: 'body/tasks/0/namespace' }), /does not start with/, 'the wrong field is caught')
    const ok = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [{ id: 'kit', namespace: 'ns', taskname: 'x' }] } })
    t.throws(() => checkAnswer(ok, req), /accepted with 201/, 'an unexpected 2xx is caught')
    t.equal(checkAnswer(ok, req, { ok: [201] }), 'accepted')

    const before = await fingerprint(database)
    t.equal(await fingerprint(database), before, 'the fingerprint is stable')
    await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: {} })
    t.not(await fingerprint(database), before, 'claiming a task changes the fingerprint')
    await assertHealthy(app)

    t.equal(deepJson(2, 'mixed'), '[{"k":1}]')
    t.same(JSON.parse(deepJson(3, 'object')), { a: { a: { a: 1 } } })
    t.equal(percentEncode('a/\u0000é'), 'a%2F%00%C3%A9')
    for (const segment of fc.sample(brokenSegment, 50)) {
      t.throws(() => decodeURIComponent(segment), URIError, `${segment} is not valid percent-encoded UTF-8`)
    }
    for (const segment of fc.sample(oddSegment, 50)) t.doesNotThrow(() => decodeURIComponent(segment), `${segment} decodes`)
  })
}
