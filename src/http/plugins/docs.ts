/**
 * OpenAPI: @fastify/swagger builds the spec from the route schemas, @fastify/swagger-ui serves the
 * interactive page at /docs, and /openapi.json serves the spec (the same as openapi/openapi.json).
 */
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import { packageVersion } from '../../paths.js'
import { ErrorResponseSchema } from '../routes/v1/schemas.js'
import { allFieldsOptional } from './validation.js'

const SIGNING = 'With `TASKBROKER_AUTH_SECRETS` set, every request outside `/healthz`, `/readyz`, `/metrics`, ' +
  '`/docs` and `/openapi.json` carries `taskbroker-timestamp` (unix seconds, within ' +
  '`TASKBROKER_AUTH_MAX_SKEW_SEC` of the broker\'s clock) and `taskbroker-signature`: hex ' +
  'HMAC-SHA256, keyed with one of the secrets, over `<METHOD> <path with query>:<timestamp>:<raw body>`, ' +
  'e.g. `printf \'%s\' "POST /v1/tasks:$ts:$body" | openssl dgst -sha256 -hmac "$SECRET"`. ' +
  'An optional `taskbroker-nonce` (1–64 URL-safe characters) is signed as `<timestamp>.<nonce>` in place of the timestamp; ' +
  'each signature is accepted once (a second use is 401 TASKBROKER_REPLAYED). ' +
  'The page cannot compute the signature: paste both values, and send the body exactly as signed. ' +
  'Without secrets the headers are not needed.'

/** What an error status means on any route (the body is always an ErrorResponse with a stable code). */
const ERROR_DESCRIPTIONS: Record<string, string> = {
  400: 'The request is invalid (TASKBROKER_INVALID_REQUEST, TASKBROKER_INVALID_JSON): the message names the field. Nothing was changed.',
  401: 'Missing or wrong signature (TASKBROKER_UNAUTHORIZED)',
  404: 'No such task or dead letter',
  409: 'The request conflicts with the broker\'s state or mode: see the code',
  413: 'The body is larger than TASKBROKER_BODY_LIMIT_BYTES (TASKBROKER_BODY_TOO_LARGE)',
  415: 'The body is not application/json',
  503: 'The broker cannot take this now (store unavailable, backpressure, status queue full, shutting down): retry after Retry-After seconds'
}

/** The error body as the spec shows it inline elsewhere (without the $id used to share it). */
function errorBody (): unknown {
  const { $id: _id, ...schema } = JSON.parse(JSON.stringify(ErrorResponseSchema)) as Record<string, unknown>
  return schema
}

interface Operation {
  security?: unknown[]
  responses?: Record<string, { description?: string, content?: unknown }>
  requestBody?: { required?: boolean, content?: Record<string, { schema?: unknown }> }
}

/**
 * Error responses share one schema ($ref ErrorResponse), so their description comes from the
 * status; every signed operation (not `security: []`) can answer 401, written here once. A body
 * with no required field is marked optional, as the server takes it.
 */
function describeErrors (spec: { paths?: Record<string, Record<string, Operation>> }) {
  for (const methods of Object.values(spec.paths ?? {})) {
    for (const operation of Object.values(methods)) {
      if (operation.security === undefined && operation.responses !== undefined && operation.responses['401'] === undefined) {
        operation.responses['401'] = { description: 'Default Response', content: { 'application/json': { schema: errorBody() } } }
        operation.responses = Object.fromEntries(Object.entries(operation.responses).sort(([a], [b]) => a.localeCompare(b)))
      }
      // A body whose fields are all optional may be left out (installOptionalBodies).
      if (operation.requestBody !== undefined && allFieldsOptional(operation.requestBody.content?.['application/json']?.schema)) operation.requestBody.required = false
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        const description = ERROR_DESCRIPTIONS[status]
        if (description !== undefined && response.description === 'Default Response') response.description = description
      }
    }
  }
  return spec
}

export async function registerDocs (app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Taskbroker API',
        version: packageVersion(),
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
        description: 'Produce tasks, claim them from workers and report their outcomes. ' +
          'Errors are `{statusCode, code, error, message}`; 503 answers carry Retry-After.\n\n' +
          'Try the examples in order: produce a task, claim it, report its outcome.\n\n' + SIGNING
      },
      servers: [{ url: '/', description: 'this broker' }],
      components: {
        securitySchemes: {
          signature: { type: 'apiKey', in: 'header', name: 'taskbroker-signature', description: SIGNING },
          timestamp: { type: 'apiKey', in: 'header', name: 'taskbroker-timestamp', description: 'unix seconds, signed with the request (see signature)' }
        }
      },
      // Both headers together; operations open to anyone say `security: []`.
      security: [{ signature: [], timestamp: [] }],
      tags: [
        { name: 'tasks', description: 'producing and inspecting tasks' },
        { name: 'workers', description: 'claiming tasks and reporting outcomes' },
        { name: 'deadletters', description: 'tasks that failed for good: list, requeue, purge' },
        { name: 'queues', description: 'queues and their controls: pause, max processing, rate limit' },
        { name: 'schedules', description: 'periodic tasks: cron or interval schedules fired by upkeep' },
        { name: 'operations', description: 'state of the broker' }
      ]
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` },
    transformObject: (document) => 'openapiObject' in document ? describeErrors(document.openapiObject as Parameters<typeof describeErrors>[0]) as typeof document.openapiObject : document.swaggerObject
  })
  await app.register(swaggerUi, { routePrefix: '/docs', theme: { title: 'Taskbroker API' } })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
}
