/**
 * Request validation with Fastify's own validator (Ajv), one instance per kind of input:
 * - JSON bodies are NOT type-coerced: `"namespace": 123` or `"delay": true` is a 400 naming the
 *   field, never silently stored as "123" or a one-second delay;
 * - params and querystrings arrive as text and are coerced to the schema's types (`?limit=10`).
 * Unknown fields are rejected rather than dropped, so a typo does not go unnoticed.
 *
 * PostgreSQL cannot store a NUL character (in text or jsonb) and refuses unpaired UTF-16
 * surrogates in jsonb; JSON nested without bound would exhaust the stack. Such input is refused
 * with a 400 naming the field, before it can reach a statement (or the status batcher, where one
 * bad report would otherwise fail every flush it is part of).
 */
import { Ajv, type Options } from 'ajv'
import * as ajvFormats from 'ajv-formats'
import type { FastifyInstance, FastifySchema } from 'fastify'
import { InvalidRequestError } from '../../domain/errors.js'

// ajv-formats is CommonJS; under ESM its function arrives as (or inside) the default export.
type AddFormats = (ajv: Ajv) => Ajv
const formats = ajvFormats as unknown as { default: AddFormats | { default: AddFormats } }
const addFormats: AddFormats = typeof formats.default === 'function' ? formats.default : formats.default.default

function compiler (options: Options) {
  const ajv = new Ajv({ useDefaults: true, removeAdditional: false, allErrors: false, strict: false, ...options })
  addFormats(ajv)
  return ajv
}

export function installValidation (app: FastifyInstance): void {
  const body = compiler({ coerceTypes: false })
  const text = compiler({ coerceTypes: 'array' })
  app.setValidatorCompiler(({ schema, httpPart }: { schema: FastifySchema, httpPart?: string }) =>
    (httpPart === 'body' ? body : text).compile(schema as object))
}

/** Methods whose body the server reads. */
const WITH_BODY = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/**
 * A route that reads a body but takes no fields (cancel, requeue, trigger, the DELETEs) takes no
 * body or `{}`: anything else is a 400 naming the field, as an unknown field is everywhere else,
 * not silently dropped. Install before installOptionalBodies, which then lets the body be left out.
 */
export function installNoFieldBodies (app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    if (route.schema === undefined || route.schema.body !== undefined || route.schema.hide === true || !methods.some(m => WITH_BODY.has(m))) return
    route.schema = { ...route.schema, body: { type: 'object', properties: {}, additionalProperties: false, description: 'no fields: send no body, or {}' } }
  })
}

/**
 * A POST whose body fields are all optional (claim, heartbeat, release) may come with no body at
 * all (`curl -X POST …/release`): it means `{}`, not a 400 "body must be object".
 */
export function installOptionalBodies (app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    if (!allFieldsOptional(route.schema?.body)) return
    const emptyIsObject = (request: { body: unknown }, _reply: unknown, done: () => void) => {
      if (request.body === undefined || request.body === null) request.body = {}
      done()
    }
    const hooks = route.preValidation
    route.preValidation = hooks === undefined ? [emptyIsObject] : [emptyIsObject, ...(Array.isArray(hooks) ? hooks : [hooks])]
  })
}

/** An object schema with no required field: its body may be left out (the spec says so too). */
export function allFieldsOptional (schema: unknown): boolean {
  const body = schema as { type?: unknown, required?: unknown[] } | undefined
  return body?.type === 'object' && (body.required?.length ?? 0) === 0
}

/** JSON nested deeper than this is refused (anywhere, `parameters` included). */
export const MAX_JSON_DEPTH = 64

// eslint-disable-next-line no-control-regex
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** The path of the first value PostgreSQL cannot take, and why; null when all is well. */
export function findUnstorable (root: unknown, rootPath: string): string | null {
  const problem = problemIn(root, 0)
  if (problem === null) return null
  const path = [rootPath, ...problem.keys.reverse()].join('/')
  switch (problem.kind) {
    case 'text': return `${path} contains a NUL character or an unpaired surrogate, which cannot be stored`
    case 'key': return `${path} has a key with a NUL character or an unpaired surrogate, which cannot be stored`
    case 'depth': return `${path} is nested more than ${MAX_JSON_DEPTH} levels deep`
  }
}

/** Keys from the problem up to the root (pushed on the way out, so a clean body allocates nothing). */
interface Problem { keys: string[], kind: 'text' | 'key' | 'depth' }

/** Recursion stops at MAX_JSON_DEPTH, so any depth of input is safe for the stack. */
function problemIn (value: unknown, depth: number): Problem | null {
  if (typeof value === 'string') return UNSTORABLE.test(value) ? { keys: [], kind: 'text' } : null
  if (value === null || typeof value !== 'object') return null
  if (depth >= MAX_JSON_DEPTH) return { keys: [], kind: 'depth' }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const problem = problemIn(value[i], depth + 1)
      if (problem !== null) { problem.keys.push(String(i)); return problem }
    }
    return null
  }
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue
    if (UNSTORABLE.test(key)) return { keys: [], kind: 'key' }
    const problem = problemIn((value as Record<string, unknown>)[key], depth + 1)
    if (problem !== null) { problem.keys.push(key); return problem }
  }
  return null
}

/** Runs before schema validation, on every route. */
export function installStorableCheck (app: FastifyInstance): void {
  app.addHook('preValidation', (request, _reply, done) => {
    const problem = findUnstorable(request.params, 'params') ?? findUnstorable(request.query, 'querystring') ?? findUnstorable(request.body, 'body')
    done(problem === null ? undefined : new InvalidRequestError(problem))
  })
}
