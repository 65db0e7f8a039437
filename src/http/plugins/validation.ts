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

/** JSON nested deeper than this is refused (anywhere, `parameters` included). */
export const MAX_JSON_DEPTH = 64

// eslint-disable-next-line no-control-regex
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** The path of the first value PostgreSQL cannot take, and why; null when all is well. Iterative, so depth cannot overflow the stack. */
export function findUnstorable (root: unknown, rootPath: string): string | null {
  const stack: Array<{ value: unknown, path: string, depth: number }> = [{ value: root, path: rootPath, depth: 0 }]
  while (stack.length > 0) {
    const { value, path, depth } = stack.pop() as { value: unknown, path: string, depth: number }
    if (typeof value === 'string') {
      if (UNSTORABLE.test(value)) return `${path} contains a NUL character or an unpaired surrogate, which cannot be stored`
    } else if (value !== null && typeof value === 'object') {
      if (depth >= MAX_JSON_DEPTH) return `${path} is nested more than ${MAX_JSON_DEPTH} levels deep`
      for (const [key, inner] of Object.entries(value)) {
        if (UNSTORABLE.test(key)) return `${path} has a key with a NUL character or an unpaired surrogate, which cannot be stored`
        stack.push({ value: inner, path: `${path}/${key}`, depth: depth + 1 })
      }
    }
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
