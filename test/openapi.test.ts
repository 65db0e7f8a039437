import { readFileSync } from 'node:fs'
import t from 'tap'
import { OPENAPI_FILE, renderOpenApi } from '../scripts/openapi.js'
import { buildTestApp, NO_UPKEEP } from './helpers/app.js'
import { eachBackend } from './helpers/database.js'

interface Response { description: string }
interface Operation {
  operationId?: string
  security?: unknown[]
  parameters?: Array<{ name: string, in: string, schema: { examples?: unknown[] }, example?: unknown }>
  requestBody?: { content: Record<string, { example?: unknown }> }
  responses: Record<string, Response>
}
interface Spec {
  paths: Record<string, Record<string, Operation>>
  servers?: Array<{ url: string }>
  security?: Array<Record<string, unknown>>
  components: { securitySchemes?: Record<string, { type: string, in: string, name: string, description?: string }> }
}

const spec = JSON.parse(await renderOpenApi()) as Spec
const operations = Object.entries(spec.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ path, method, op })))

t.test('openapi/openapi.json matches the routes (run `npm run openapi` after changing a schema)', async (t) => {
  const committed = readFileSync(OPENAPI_FILE, 'utf8')
  t.equal(committed, JSON.stringify(spec, null, 2) + '\n', 'openapi/openapi.json is stale: run npm run openapi')
  t.same(Object.keys(spec.paths).sort(), [
    '/healthz', '/metrics', '/readyz',
    '/v1/deadletters', '/v1/deadletters/{id}', '/v1/deadletters/{id}/requeue', '/v1/queues',
    '/v1/schedules', '/v1/schedules/{name}', '/v1/schedules/{name}/trigger', '/v1/stats', '/v1/tasks', '/v1/tasks/cancel', '/v1/tasks/claim',
    '/v1/tasks/heartbeat', '/v1/tasks/status', '/v1/tasks/{id}', '/v1/tasks/{id}/cancel', '/v1/tasks/{id}/heartbeat', '/v1/tasks/{id}/release',
    '/v1/tasks/{id}/status'
  ])
})

t.test('a body is optional exactly where the server takes none (every field optional)', async (t) => {
  const optional = operations.filter(({ op }) => (op as { requestBody?: { required?: boolean } }).requestBody?.required === false).map(({ op }) => op.operationId).sort()
  t.same(optional, ['cancelTask', 'claimTasks', 'deleteDeadletter', 'deleteSchedule', 'heartbeatTask', 'releaseTask', 'requeueDeadletter', 'triggerSchedule'])
})

t.test('every operation has an operationId and every response a description of its own', async (t) => {
  const ids = operations.map(({ op }) => op.operationId)
  t.notOk(ids.includes(undefined), 'every operation has an operationId')
  t.equal(new Set(ids).size, ids.length, 'operationIds are unique')
  t.match(ids, ['getHealth', 'getReadiness', 'getMetrics', 'produceTasks', 'getTask', 'claimTasks', 'reportStatus'].map(id => ids.includes(id) ? id : `missing ${id}`))
  for (const { path, method, op } of operations) {
    for (const [status, response] of Object.entries(op.responses)) {
      t.not(response.description, 'Default Response', `${method} ${path} ${status} is described`)
    }
  }
})

t.test('the spec names the server and the signing headers: optional by default, never on the exempt routes', async (t) => {
  t.same(spec.servers?.map(s => s.url), ['/'])
  const scheme = (name: string) => ({ type: 'apiKey', in: 'header', name, description: spec.components.securitySchemes?.[name.replace('taskbroker-', '')]?.description })
  t.same(spec.components.securitySchemes, { signature: scheme('taskbroker-signature'), timestamp: scheme('taskbroker-timestamp'), nonce: scheme('taskbroker-nonce') })
  t.match(spec.components.securitySchemes?.signature, { description: /HMAC-SHA256.*<METHOD> <path with query>:<timestamp>:<raw body>/ })
  t.same(spec.security, [{ signature: [], timestamp: [] }, { signature: [], timestamp: [], nonce: [] }, {}], 'no secrets set: a request may go unsigned')
  for (const { path, method, op } of operations) {
    const open = ['/healthz', '/readyz', '/metrics'].includes(path)
    t.same(op.security, open ? [] : undefined, `${method} ${path} ${open ? 'needs no signature' : 'is signed'}`)
    if (!open) t.ok(op.responses['401'], `${method} ${path} lists 401`)
  }
})

eachBackend(t, 'a broker with secrets serves a spec that requires them, outside TASKBROKER_AUTH_EXEMPT_PATHS as configured', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_AUTH_SECRETS: 's3cret', TASKBROKER_AUTH_EXEMPT_PATHS: '/healthz,/readyz,/openapi.json,/v1/stats' })
  const served = (await app.inject('/openapi.json')).json<Spec>()
  t.same(served.security, [{ signature: [], timestamp: [] }, { signature: [], timestamp: [], nonce: [] }])
  t.same(served.paths['/metrics']?.get?.security, undefined, '/metrics is signed here')
  t.same(served.paths['/v1/stats']?.get?.security, [], '/v1/stats is not')
  t.equal((await app.inject('/v1/stats')).statusCode, 200, 'as the server says')
  const refused = await app.inject('/metrics')
  t.equal(refused.statusCode, 401)
  t.ok(served.paths['/metrics']?.get?.responses['401'], 'and its 401 is declared')
  t.match(refused.headers['www-authenticate'], /^Taskbroker-HMAC-SHA256 /, 'a 401 says how to authenticate')
})

/** A path of the spec with its parameters filled. */
const filled = (path: string, value: string) => path.replace(/\{[^}]+\}/g, value)

eachBackend(t, 'every status the server answers before a route\'s handler is declared for that route, with its headers', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_BODY_LIMIT_BYTES: '2048' })
  const served = (await app.inject('/openapi.json')).json<Spec>()
  const check = async (what: string, path: string, method: string, request: { url: string, headers?: Record<string, string>, payload?: string | object }, expected: number) => {
    const res = await app.inject({ method: method.toUpperCase() as 'GET', ...request })
    t.equal(res.statusCode, expected, `${method} ${path}: ${what} is ${expected} (${res.body.slice(0, 120)})`)
    t.ok(served.paths[path]?.[method]?.responses[String(expected)], `${method} ${path}: ${expected} is declared`)
    return res
  }
  for (const { path, method } of operations) {
    if (path.includes('{')) {
      await check('an overlong path segment', path, method, { url: filled(path, 'z'.repeat(1100)) }, 414)
      await check('bad percent-encoding', path, method, { url: filled(path, 'a%ZZ') }, 400)
    }
    if (['post', 'put', 'patch', 'delete'].includes(method)) {
      const url = filled(path, 'some-id')
      await check('a text/plain body', path, method, { url, headers: { 'content-type': 'text/plain' }, payload: 'hello' }, 415)
      await check('a body over the limit', path, method, { url, headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ pad: 'x'.repeat(3000) }) }, 413)
    }
  }
  // Routes that take no fields take no body or {}; a field is refused, not silently dropped.
  const noFields = operations.filter(({ op }) => (op.requestBody?.content['application/json'] as { schema?: { properties?: object } } | undefined)?.schema?.properties !== undefined &&
    Object.keys((op.requestBody?.content['application/json'] as { schema: { properties: object } }).schema.properties).length === 0)
  t.same(noFields.map(({ op }) => op.operationId).sort(), ['cancelTask', 'deleteDeadletter', 'deleteSchedule', 'requeueDeadletter', 'triggerSchedule'])
  for (const { path, method, op } of noFields) {
    t.equal((op.requestBody as { required?: boolean }).required, false, `${method} ${path}: the body may be left out`)
    const res = await check('a field', path, method, { url: filled(path, 'some-id'), payload: { reason: 'x' } }, 400)
    t.match(res.json().message, /body\/reason/, `${method} ${path}: the 400 names the field`)
  }
  app.broker.beginShutdown()
  for (const { path, method } of operations.filter(({ path }) => path !== '/healthz')) {
    const res = await check('shutting down', path, method, { url: filled(path, 'some-id'), ...(['post', 'put', 'patch'].includes(method) ? { payload: {} } : {}) }, 503)
    t.ok(Number(res.headers['retry-after']) >= 1, `${method} ${path}: the 503 carries Retry-After`)
    t.ok((served.paths[path]?.[method]?.responses['503'] as { headers?: Record<string, unknown> }).headers?.['Retry-After'], `${method} ${path}: and the spec says so`)
  }
})

eachBackend(t, 'the examples of the spec work when tried in order: produce, claim, report', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const served = (await app.inject('/openapi.json')).json<Spec>()
  const example = (path: string) => served.paths[path]?.post?.requestBody?.content['application/json']?.example
  const idParam = served.paths['/v1/tasks/{id}/status']?.post?.parameters?.find(p => p.name === 'id')
  const id = idParam?.example ?? idParam?.schema.examples?.[0]
  t.type(id, 'string', 'the task id parameter has an example')

  const produced = await app.inject({ method: 'POST', url: '/v1/tasks', payload: example('/v1/tasks') as object })
  t.equal(produced.statusCode, 201, produced.body)
  t.same(produced.json().ids, [id], 'the produce example makes the task the other examples name')
  const claimed = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: example('/v1/tasks/claim') as object })
  t.equal(claimed.statusCode, 200, claimed.body)
  t.same(claimed.json().tasks.map((task: { id: string }) => task.id), [id], 'the claim example claims the produced task')
  const reported = await app.inject({ method: 'POST', url: `/v1/tasks/${String(id)}/status`, payload: example('/v1/tasks/{id}/status') as object })
  t.equal(reported.statusCode, 200, reported.body)
  t.match(reported.json(), { applied: true }, 'the report example reports the claimed task')
  const batch = await app.inject({ method: 'POST', url: '/v1/tasks/status', payload: example('/v1/tasks/status') as object })
  t.equal(batch.statusCode, 200, batch.body)
})

eachBackend(t, 'the probes are documented as they answer, and the docs page has the API\'s title', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const metrics = await app.inject('/metrics')
  t.equal(metrics.statusCode, 200)
  t.match(metrics.headers['content-type'], /^text\/plain/)
  t.match(metrics.body, /^# HELP /m, 'metrics stay Prometheus text, not a JSON string')
  t.same((await app.inject('/healthz')).json(), { status: 'ok' })
  const page = await app.inject('/docs/')
  t.match(page.body, /<title>Taskbroker API<\/title>/)
})
