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
  400: 'The request is invalid (TASKBROKER_INVALID_REQUEST; TASKBROKER_INVALID_JSON for a body that is not JSON): the message names the field, ' +
    'the parameter or the problem. Nothing was changed.',
  401: 'Missing or wrong signature (TASKBROKER_UNAUTHORIZED), or a signature already used (TASKBROKER_REPLAYED)',
  404: 'Not found: the code says what (a task, a dead letter, a schedule)',
  409: 'The request conflicts with the broker\'s state or mode: see the code',
  413: 'The body is larger than TASKBROKER_BODY_LIMIT_BYTES (TASKBROKER_BODY_TOO_LARGE)',
  414: 'A segment of the path is longer than 1024 characters (TASKBROKER_INVALID_REQUEST)',
  415: 'The body is not application/json (TASKBROKER_UNSUPPORTED_MEDIA_TYPE)',
  503: 'The broker cannot take this now (store unavailable, backpressure, status queue full, shutting down): retry after Retry-After seconds'
}

const RETRY_AFTER = { 'Retry-After': { description: 'seconds to wait before sending the request again', schema: { type: 'integer', minimum: 0 } } }
const AUTHENTICATE = { 'WWW-Authenticate': { description: 'how to authenticate: the signing scheme (see the signature security scheme)', schema: { type: 'string' } } }

/** The error body as the spec shows it inline elsewhere (without the $id used to share it). */
function errorBody (): unknown {
  const { $id: _id, ...schema } = JSON.parse(JSON.stringify(ErrorResponseSchema)) as Record<string, unknown>
  return schema
}

interface Response { description?: string, content?: unknown, headers?: Record<string, unknown> }
interface Operation {
  security?: unknown[]
  responses?: Record<string, Response>
  requestBody?: { required?: boolean, content?: Record<string, { schema?: unknown }> }
}

interface Spec {
  paths?: Record<string, Record<string, Operation>>
  components?: { schemas?: Record<string, unknown> }
}

/** Methods whose body the server reads (and so may refuse as too large or not JSON). */
const WITH_BODY = new Set(['post', 'put', 'patch', 'delete'])

/**
 * Completes each operation with what every route of its kind can answer, so the spec lists every
 * status the server gives: outside the exempt routes, a signature (401) and a request the server
 * refuses before the handler (400: a malformed path, a GET with a body while signing is on); 414 on
 * a path with parameters; 413 and 415 where a body is read; 503 while shutting down (all but
 * /healthz). Error responses share one schema, so
 * their description comes from the status; 503s carry Retry-After, 401s WWW-Authenticate. A body
 * with no required field is marked optional, as the server takes it.
 */
function completeOperations (spec: Spec, exempt: (routeUrl: string) => boolean) {
  // Every plain error body is one shared schema, so a generated client has one error type.
  const shared = JSON.stringify(errorBody())
  spec.components = { ...spec.components, schemas: { ...spec.components?.schemas, ErrorResponse: errorBody() } }
  const ref = { $ref: '#/components/schemas/ErrorResponse' }
  const error = (): Response => ({ description: 'Default Response', content: { 'application/json': { schema: ref } } })
  for (const [path, methods] of Object.entries(spec.paths ?? {})) {
    const open = exempt(path.replace(/\{([^}]+)\}/g, ':$1'))
    for (const [method, operation] of Object.entries(methods)) {
      const responses = operation.responses
      if (responses === undefined) continue
      if (open) operation.security = []
      else {
        delete operation.security
        responses['401'] ??= error()
        responses['400'] ??= error()
      }
      // Every route but the liveness probe answers 503 while the broker shuts down.
      if (path !== '/healthz') responses['503'] ??= error()
      if (path.includes('{')) responses['414'] ??= error()
      if (WITH_BODY.has(method)) {
        responses['413'] ??= error()
        responses['415'] ??= error()
      }
      operation.responses = Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b)))
      // A body whose fields are all optional may be left out (installOptionalBodies).
      if (operation.requestBody !== undefined && allFieldsOptional(operation.requestBody.content?.['application/json']?.schema)) operation.requestBody.required = false
      for (const [status, response] of Object.entries(operation.responses)) {
        const description = ERROR_DESCRIPTIONS[status]
        if (description !== undefined && response.description === 'Default Response') response.description = description
        const body = (response.content as Record<string, { schema?: unknown }> | undefined)?.['application/json']
        if (Number(status) >= 400 && body !== undefined && JSON.stringify(body.schema) === shared) body.schema = ref
        if (status === '503') response.headers = { ...response.headers, ...RETRY_AFTER }
        if (status === '401') response.headers = { ...response.headers, ...AUTHENTICATE }
      }
    }
  }
  return spec
}

export interface DocsOptions {
  /** Signing is on (TASKBROKER_AUTH_SECRETS): the spec requires it outside the exempt routes. */
  signed: boolean
  /** The routes TASKBROKER_AUTH_EXEMPT_PATHS exempts from signing, by declared URL. */
  exempt: (routeUrl: string) => boolean
}

export async function registerDocs (app: FastifyInstance, options: DocsOptions): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Taskbroker API',
        version: packageVersion(),
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
        description: 'Produce tasks, claim them from workers and report their outcomes. ' +
          'Errors are `{statusCode, code, error, message}`; 503 answers carry Retry-After.\n\n' +
          'Before a request reaches its route, the HTTP server may answer it 400 (malformed HTTP), 408 (not received within ' +
          'TASKBROKER_HEADERS_TIMEOUT_MS / TASKBROKER_REQUEST_TIMEOUT_MS: TASKBROKER_REQUEST_TIMEOUT) or 431 (headers too large: ' +
          'TASKBROKER_HEADERS_TOO_LARGE), in the same error shape, and close the connection.\n\n' +
          'Try the examples in order: produce a task, claim it, report its outcome.\n\n' + SIGNING
      },
      servers: [{ url: '/', description: 'this broker' }],
      components: {
        securitySchemes: {
          signature: { type: 'apiKey', in: 'header', name: 'taskbroker-signature', description: SIGNING },
          timestamp: { type: 'apiKey', in: 'header', name: 'taskbroker-timestamp', description: 'unix seconds, signed with the request (see signature)' },
          nonce: { type: 'apiKey', in: 'header', name: 'taskbroker-nonce', description: 'optional: 1–64 URL-safe characters, signed as <timestamp>.<nonce> (see signature)' }
        }
      },
      // The two headers together, with a nonce or without; with no secrets set (the default) a
      // request may go unsigned. Operations open to anyone say `security: []`.
      security: [{ signature: [], timestamp: [] }, { signature: [], timestamp: [], nonce: [] }, ...(options.signed ? [] : [{}])],
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
    transformObject: (document) => 'openapiObject' in document
      ? completeOperations(document.openapiObject as Spec, options.exempt) as typeof document.openapiObject
      : document.swaggerObject
  })
  await app.register(swaggerUi, { routePrefix: '/docs', theme: { title: 'Taskbroker API' } })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
}
