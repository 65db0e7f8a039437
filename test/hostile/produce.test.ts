/**
 * POST /v1/tasks under hostile input, property by property: a value of any type in every field,
 * huge strings, JSON nested thousands of levels deep, awkward unicode, NUL bytes, lone
 * surrogates, duplicate ids and oversized batches. See kit.test.ts for the invariants checked on
 * every request (never a 5xx, a well-formed 4xx naming the field, nothing stored by a refusal,
 * /healthz still up). An accepted input must be stored as sent.
 */
import { isDeepStrictEqual } from 'node:util'
import { sql } from 'drizzle-orm'
import fc from 'fast-check'
import t from 'tap'
import {
  assertHealthy, buildHostileApp, deepJson, deepSpec, hugeString, holds, keepAlive, oddUnicode, percentEncode, probe, reportCounts,
  withLoneSurrogate, withNul, wrongValue, type Ctx, type DeepKind, type Req
} from './kit.test.js'

keepAlive(t)
reportCounts(t, 'produce.test.ts')

const ROUTE = 'POST /v1/tasks'
const TASK_FIELDS = ['id', 'application', 'namespace', 'taskname', 'parameters', 'headers', 'received_at',
  'processing_deadline_duration', 'expires', 'delay', 'retry_state'] as const
const RETRY_FIELDS = ['attempts', 'max_attempts', 'on_attempts_exceeded', 'at_most_once', 'delay_on_retry'] as const

/** Where a value goes in a task: a field, a retry_state field, a header value, or an unknown key. */
type Path = readonly [string] | readonly [string, string]

const fieldPath: fc.Arbitrary<Path> = fc.oneof(
  fc.constantFrom(...TASK_FIELDS.map(f => [f] as const)),
  fc.constantFrom(...RETRY_FIELDS.map(f => ['retry_state', f] as const)),
  fc.constant(['headers', 'h'] as const),
  fc.string({ minLength: 1, maxLength: 20 })
    .filter(k => !(TASK_FIELDS as readonly string[]).includes(k) && k !== '__proto__')
    .map(k => [k] as const)
)

let sequence = 0
const freshId = (prefix: string) => `${prefix}-${++sequence}`

function baseTask (id: string): Record<string, unknown> {
  return {
    id,
    namespace: 'ns',
    taskname: 'hostile.task',
    parameters: { n: 1, list: [1, 'two', null] },
    headers: { h: 'v' },
    retry_state: { max_attempts: 2 }
  }
}

function setPath (target: Record<string, unknown>, path: Path, value: unknown): void {
  if (path.length === 1) {
    target[path[0]] = value
    return
  }
  const inner = { ...(target[path[0]] as Record<string, unknown>) }
  inner[path[1]] = value
  target[path[0]] = inner
}

function getPath (target: Record<string, unknown> | undefined, path: Path): unknown {
  const first = target?.[path[0]]
  return path.length === 1 ? first : (first as Record<string, unknown> | undefined)?.[path[1]]
}

/** What JSON makes of a value (undefined stays undefined: the key is left out). */
const viaJson = (value: unknown): unknown => value === undefined ? undefined : JSON.parse(JSON.stringify(value))

async function storedActivation (ctx: Ctx, id: string): Promise<Record<string, unknown> | undefined> {
  const rows = await ctx.database.rows(sql`select activation from inflight_tasks where id = ${id}`)
  return rows[0]?.activation as Record<string, unknown> | undefined
}

/** Throws unless the stored activation holds `sent` at `path` (the accepted task was stored as sent). */
async function assertStoredAsSent (ctx: Ctx, id: string, path: Path, sent: unknown, req: Req): Promise<void> {
  const stored = await storedActivation(ctx, id)
  if (stored === undefined) throw new Error(`accepted task ${JSON.stringify(id)} is not stored\n  request: ${JSON.stringify(req.payload).slice(0, 300)}`)
  const got = getPath(stored, path)
  const expected = viaJson(sent)
  let same: boolean
  if (path[0] === 'received_at') same = Date.parse(String(got)) === Date.parse(String(expected))
  else if (path.length === 1 && path[0] === 'retry_state' && typeof expected === 'object' && expected !== null) {
    // The broker fills retry_state's defaults: every field sent must be there as sent.
    same = Object.entries(expected).every(([key, value]) => isDeepStrictEqual((got as Record<string, unknown>)[key], value))
  } else same = isDeepStrictEqual(got, expected)
  if (!same) {
    throw new Error(`task ${JSON.stringify(id)}: ${path.join('.')} was stored as ${JSON.stringify(got)?.slice(0, 200)}, ` +
      `sent ${JSON.stringify(expected)?.slice(0, 200)}`)
  }
}

/** The produce answer's ids and duplicates, when it was a 201. */
function answer (body: string): { ids: string[], duplicates: string[], inserted: number } {
  return JSON.parse(body)
}

t.test('POST /v1/tasks under hostile input', async (t) => {
  const ctx = await buildHostileApp(t)
  const { app } = ctx
  const seeds = [
    { id: 'seed-1', application: 'app', namespace: 'ns', taskname: 'hostile.seed', parameters: { deep: { er: [1, 2, { x: 'y' }] } }, headers: { a: 'b' } },
    { id: 'seed-2', namespace: 'ns', taskname: 'hostile.seed', delay: 3600 },
    { id: 'seed-3', application: 'seeds', namespace: 'claimed', taskname: 'hostile.seed', retry_state: { max_attempts: 3, on_attempts_exceeded: 'deadletter' } }
  ]
  t.equal((await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: seeds } })).statusCode, 201, 'seeded')
  const claimed = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'seeds', namespace: 'claimed' } })
  t.equal(claimed.json().tasks.length, 1, 'seed-3 is processing')
  const seedState = async () => Promise.all(seeds.map(async s => (await app.inject(`/v1/tasks/${s.id}`)).json()))
  const seeded = await seedState()

  t.afterEach(async () => {
    await assertHealthy(app)
    t.same(await seedState(), seeded, 'the seeded tasks are unchanged')
  })

  await t.test('a value of any type in any field of any task of a batch: refused naming that field, or stored as sent', async (t) => {
    await holds(t, 'wrong types per field', 250,
      [fc.integer({ min: 1, max: 4 }), fc.nat(), fieldPath, wrongValue],
      async (size, at, path, value) => {
        const index = at % size
        const tasks = Array.from({ length: size }, () => baseTask(freshId('types')))
        setPath(tasks[index] as Record<string, unknown>, path, value)
        const req: Req = { method: 'POST', url: '/v1/tasks', payload: { tasks } }
        const { res, outcome } = await probe(ctx, ROUTE, req, { ok: [201], field: `body/tasks/${index}/${path[0]}` })
        if (outcome === 'accepted') {
          const { ids, duplicates } = answer(res.body)
          const id = ids[index] as string
          // undefined leaves the field out of the JSON: the broker's default is stored instead.
          if (!duplicates.includes(id) && value !== undefined) await assertStoredAsSent(ctx, id, path, value, req)
        }
      })
  })

  await t.test('a body, or a tasks list, of any type is refused naming body', async (t) => {
    await holds(t, 'whole body of any type', 100, [wrongValue], async (value) => {
      const text = JSON.stringify(value)
      await probe(ctx, ROUTE, { method: 'POST', url: '/v1/tasks', headers: { 'content-type': 'application/json' }, payload: text ?? '' }, { field: 'body' })
    })
    await holds(t, 'tasks of any type', 100, [wrongValue], async (value) => {
      await probe(ctx, ROUTE, { method: 'POST', url: '/v1/tasks', payload: { tasks: value } }, { field: 'body/tasks' })
    })
    await holds(t, 'an unknown top-level field next to valid tasks', 50,
      [fc.string({ minLength: 1, maxLength: 30 }).filter(k => k !== 'tasks' && k !== '__proto__'), wrongValue.filter(v => v !== undefined)],
      async (key, value) => {
        await probe(ctx, ROUTE, { method: 'POST', url: '/v1/tasks', payload: { tasks: [baseTask(freshId('top'))], [key]: value } }, { field: `body/${key}` })
      })
  })

  await t.test('huge strings (up to ~100 KB) in every string field: refused past the limit naming the field, stored as sent below it', async (t) => {
    const limits: Array<[Path, number]> = [
      // The default TASKBROKER_ID_MAX_CHARS and TASKBROKER_NAME_MAX_CHARS (limits.test.ts tries others).
      [['id'], 255], [['application'], 200], [['namespace'], 200], [['taskname'], 200], [['headers', 'h'], 8192],
      [['parameters'], Infinity], [['received_at'], 0], [['retry_state', 'on_attempts_exceeded'], 0]
    ]
    await holds(t, 'huge strings', 60, [fc.constantFrom(...limits), hugeString(1, 100_000)], async ([path, limit], text) => {
      const task = baseTask(freshId('huge'))
      setPath(task, path, text)
      const req: Req = { method: 'POST', url: '/v1/tasks', payload: { tasks: [task] } }
      const { res, outcome } = await probe(ctx, ROUTE, req, { ok: [201], field: `body/tasks/0/${path[0]}` })
      const codePoints = [...text].length
      if (outcome === 'accepted') {
        if (codePoints > limit) throw new Error(`${path.join('.')} of ${codePoints} characters was accepted (limit ${limit})`)
        const id = answer(res.body).ids[0] as string
        await assertStoredAsSent(ctx, id, path, text, req)
      } else if (codePoints <= limit && limit > 0) {
        throw new Error(`${path.join('.')} of ${codePoints} characters (within the limit ${limit}) was refused: ${res.body}`)
      }
    })
    await holds(t, 'huge header names and parameter keys', 20, [hugeString(1, 100_000), fc.boolean()], async (key, inHeaders) => {
      const task = baseTask(freshId('hugekey'))
      if (inHeaders) task.headers = { [key]: 'v' }
      else task.parameters = { [key]: 1 }
      const req: Req = { method: 'POST', url: '/v1/tasks', payload: { tasks: [task] } }
      const { res, outcome } = await probe(ctx, ROUTE, req, { ok: [201], field: 'body/tasks/0/' })
      if (outcome === 'accepted') {
        const path: Path = [inHeaders ? 'headers' : 'parameters']
        await assertStoredAsSent(ctx, answer(res.body).ids[0] as string, path, inHeaders ? task.headers : task.parameters, req)
      }
    })
  })

  await t.test('JSON nested 1,000–20,000 levels deep: parameters stored (and read back) or refused cleanly; anywhere else refused', async (t) => {
    const task = (id: string, extra: string) => `{"id":${JSON.stringify(id)},"namespace":"ns","taskname":"hostile.deep"${extra}}`
    const places = ['parameters', 'headers', 'retry_state', 'namespace', 'unknown', 'task', 'tasks', 'body', 'top-level'] as const
    const deepCase = async (place: typeof places[number], { depth, kind }: { depth: number, kind: DeepKind }): Promise<void> => {
      const id = freshId('deep')
      const deep = deepJson(depth, kind)
      const payloads: Record<typeof places[number], [string, string]> = {
        parameters: [`{"tasks":[${task(id, `,"parameters":${deep}`)}]}`, 'body/tasks/0/parameters'],
        headers: [`{"tasks":[${task(id, `,"headers":{"h":${deep}}`)}]}`, 'body/tasks/0/headers'],
        retry_state: [`{"tasks":[${task(id, `,"retry_state":${deep}`)}]}`, 'body/tasks/0/retry_state'],
        namespace: [`{"tasks":[{"id":"${id}","namespace":${deep},"taskname":"x"}]}`, 'body/tasks/0/namespace'],
        unknown: [`{"tasks":[${task(id, `,"zz":${deep}`)}]}`, 'body/tasks/0/zz'],
        task: [`{"tasks":[${deep}]}`, 'body/tasks/0'],
        tasks: [`{"tasks":${deep}}`, 'body/tasks'],
        body: [deep, 'body'],
        'top-level': [`{"tasks":[${task(id, '')}],"x":${deep}}`, 'body/x']
      }
      const [payload, field] = payloads[place]
      const req: Req = { method: 'POST', url: '/v1/tasks', headers: { 'content-type': 'application/json' }, payload }
      const { outcome } = await probe(ctx, ROUTE, req, { ok: place === 'parameters' ? [201] : [], field })
      if (outcome === 'accepted') {
        const read = await app.inject(`/v1/tasks/${id}`)
        if (read.statusCode !== 200) throw new Error(`the accepted task ${depth} levels deep (${kind}) reads back as ${read.statusCode} ${read.body.slice(0, 200)}`)
        if (!read.body.includes(`"parameters":${deep}`)) throw new Error(`the accepted task ${depth} levels deep (${kind}) reads back changed`)
      }
    }
    await holds(t, 'deep nesting in parameters', 25, [fc.constant('parameters' as const), deepSpec(1000, 20_000)], deepCase)
    await holds(t, 'deep nesting anywhere else', 40, [fc.constantFrom(...places.filter(p => p !== 'parameters')), deepSpec(1000, 20_000)], deepCase)
  })

  const stringPlaces: Path[] = [['id'], ['application'], ['namespace'], ['taskname'], ['parameters'], ['headers', 'h']]
  /** Puts `text` into a task: a field, a header value or name, a parameter value or key. */
  const placeText = (task: Record<string, unknown>, place: Path | 'header-name' | 'param-key', text: string): Path => {
    if (place === 'header-name') { task.headers = { [text]: 'v' }; return ['headers'] }
    if (place === 'param-key') { task.parameters = { [text]: [text] }; return ['parameters'] }
    setPath(task, place, text)
    return place
  }
  const anyPlace = fc.constantFrom<Path | 'header-name' | 'param-key'>(...stringPlaces, 'header-name', 'param-key')

  await t.test('awkward but valid unicode (controls, U+2028, BOM, noncharacters, RTL, ZWJ, astral) in every string field is stored exactly', async (t) => {
    await holds(t, 'valid unicode', 80, [anyPlace, oddUnicode], async (place, text) => {
      const task = baseTask(freshId('uni'))
      const path = placeText(task, place, text)
      const req: Req = { method: 'POST', url: '/v1/tasks', payload: { tasks: [task] } }
      const { res, outcome } = await probe(ctx, ROUTE, req, { ok: [201] })
      if (outcome !== 'accepted') throw new Error(`valid unicode was refused: ${res.body}`)
      const { ids, duplicates } = answer(res.body)
      const id = ids[0] as string
      if (!duplicates.includes(id)) await assertStoredAsSent(ctx, id, path, getPath(task, path), req)
    })
  })

  await t.test('a NUL (U+0000) in id, application, namespace, taskname, parameters or headers: refused with 400 naming the field, or stored exactly', async (t) => {
    await holds(t, 'NUL bytes', 100, [anyPlace, withNul], async (place, text) => {
      const task = baseTask(freshId('nul'))
      const path = placeText(task, place, text)
      const req: Req = { method: 'POST', url: '/v1/tasks', payload: { tasks: [task] } }
      const { res, outcome } = await probe(ctx, ROUTE, req, { ok: [201], field: `body/tasks/0/${path[0]}` })
      if (outcome === 'accepted') await assertStoredAsSent(ctx, answer(res.body).ids[0] as string, path, getPath(task, path), req)
    })
  })

  await t.test('a lone surrogate in any string field: refused with 400 naming the field, or stored (as sent or as U+FFFD)', async (t) => {
    await holds(t, 'lone surrogates', 100, [anyPlace, withLoneSurrogate], async (place, text) => {
      const task = baseTask(freshId('sur'))
      const path = placeText(task, place, text)
      const req: Req = { method: 'POST', url: '/v1/tasks', payload: { tasks: [task] } }
      const { res, outcome } = await probe(ctx, ROUTE, req, { ok: [201], field: `body/tasks/0/${path[0]}` })
      if (outcome === 'accepted') {
        const id = answer(res.body).ids[0] as string
        const read = await app.inject(`/v1/tasks/${percentEncode(id)}`)
        if (read.statusCode !== 200) throw new Error(`accepted task ${JSON.stringify(id)} reads back as ${read.statusCode}`)
      }
    })
  })

  await t.test('NUL and lone surrogates, field by field (one request each, so every failing field is listed)', async (t) => {
    const places = [...stringPlaces.map(p => p.join('.')), 'header-name', 'param-key'] as const
    for (const [label, text] of [['NUL', 'a\u0000b'], ['lone surrogate', 'a\ud800b']] as const) {
      for (const place of places) {
        const task = baseTask(freshId('matrix'))
        const target = place === 'header-name' || place === 'param-key' ? place : place.split('.') as unknown as Path
        const path = placeText(task, target, text)
        const req: Req = { method: 'POST', url: '/v1/tasks', payload: { tasks: [task] } }
        let problem = ''
        try {
          const { res, outcome } = await probe(ctx, ROUTE, req, { ok: [201], field: `body/tasks/0/${path[0]}` })
          if (outcome === 'accepted' && label === 'NUL') await assertStoredAsSent(ctx, answer(res.body).ids[0] as string, path, getPath(task, path), req)
        } catch (error) {
          problem = (error as Error).message.split('\n')[0] ?? ''
        }
        t.equal(problem, '', `a ${label} in ${place} is refused with a 400 or stored`)
      }
    }
  })

  await t.test('duplicate ids, within a batch and against stored tasks: 201, the first occurrence stored, the rest listed, stored tasks unchanged', async (t) => {
    const pool = ['seed-1', 'seed-2', 'seed-3', 'dup-a', 'dup-b', 'dup-c']
    await holds(t, 'duplicate ids', 25,
      [fc.array(fc.record({ id: fc.constantFrom(...pool, 'fresh'), taskname: fc.constantFrom('t.one', 't.two', 't.three') }), { minLength: 1, maxLength: 30 })],
      async (items) => {
        const fresh = freshId('dup-fresh')
        const tasks = items.map(i => ({ id: i.id === 'fresh' ? fresh : i.id, namespace: 'ns', taskname: i.taskname }))
        const distinct = [...new Set(tasks.map(x => x.id))]
        const before = new Map<string, unknown>()
        for (const id of distinct) before.set(id, await storedActivation(ctx, id))
        const req: Req = { method: 'POST', url: '/v1/tasks', payload: { tasks } }
        const { res } = await probe(ctx, ROUTE, req, { ok: [201] })
        if (res.statusCode !== 201) throw new Error(`valid batch with duplicate ids refused: ${res.body}`)
        const body = answer(res.body)
        const isNew = distinct.filter(id => before.get(id) === undefined)
        const expectedDuplicates = [...tasks.map(x => x.id)]
        for (const id of isNew) expectedDuplicates.splice(expectedDuplicates.indexOf(id), 1)
        if (!isDeepStrictEqual(body.ids, tasks.map(x => x.id))) throw new Error(`ids ${JSON.stringify(body.ids)} are not the request's`)
        if (body.inserted !== isNew.length) throw new Error(`inserted ${body.inserted}, expected ${isNew.length}`)
        if (!isDeepStrictEqual([...body.duplicates].sort(), expectedDuplicates.sort())) {
          throw new Error(`duplicates ${JSON.stringify(body.duplicates)}, expected ${JSON.stringify(expectedDuplicates)}`)
        }
        for (const id of distinct) {
          const after = await storedActivation(ctx, id)
          const was = before.get(id)
          if (was !== undefined && !isDeepStrictEqual(after, was)) throw new Error(`stored task ${id} changed on a duplicate produce`)
          if (was === undefined && (after as { taskname?: string } | undefined)?.taskname !== tasks.find(x => x.id === id)?.taskname) {
            throw new Error(`new task ${id} was not stored from its first occurrence`)
          }
        }
      })
  })

  await t.test('batches of more than 1,000 tasks are refused naming body/tasks and store nothing', async (t) => {
    await holds(t, 'oversized batches', 6, [fc.integer({ min: 1001, max: 1500 }), fc.boolean()], async (size, oneBad) => {
      const tasks = Array.from({ length: size }, () => baseTask(freshId('big')))
      if (oneBad) (tasks[size - 1] as Record<string, unknown>).namespace = 42
      const { res } = await probe(ctx, ROUTE, { method: 'POST', url: '/v1/tasks', payload: { tasks } }, { field: 'body/tasks' })
      if (!/1000/.test(res.json().message as string)) throw new Error(`the message does not give the limit: ${res.body}`)
    })
    const tasks = Array.from({ length: 1000 }, () => baseTask(freshId('max')))
    const res = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks } })
    t.equal(res.statusCode, 201, 'exactly 1,000 tasks are accepted')
    t.equal(res.json().inserted, 1000)
  })
})
