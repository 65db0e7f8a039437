import { readFileSync } from 'node:fs'
import t from 'tap'
import { OPENAPI_FILE, renderOpenApi } from '../scripts/openapi.js'

t.test('openapi/openapi.json matches the routes (run `npm run openapi` after changing a schema)', async (t) => {
  const committed = readFileSync(OPENAPI_FILE, 'utf8')
  const current = await renderOpenApi()
  t.equal(committed, current, 'openapi/openapi.json is stale: run npm run openapi')
  const spec = JSON.parse(current) as { paths: Record<string, unknown> }
  t.same(Object.keys(spec.paths).sort(), ['/v1/deadletters', '/v1/deadletters/{id}', '/v1/deadletters/{id}/requeue', '/v1/stats', '/v1/tasks', '/v1/tasks/claim', '/v1/tasks/status', '/v1/tasks/{id}', '/v1/tasks/{id}/status'])
})
