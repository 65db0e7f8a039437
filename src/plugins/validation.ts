/**
 * Request validation with Fastify's own validator (Ajv), one instance per kind of input:
 * - JSON bodies are NOT type-coerced: `"namespace": 123` or `"delay": true` is a 400 naming the
 *   field, never silently stored as "123" or a one-second delay;
 * - params and querystrings arrive as text and are coerced to the schema's types (`?limit=10`).
 * Unknown fields are rejected rather than dropped, so a typo does not go unnoticed.
 */
import { Ajv, type Options } from 'ajv'
import * as ajvFormats from 'ajv-formats'
import type { FastifyInstance, FastifySchema } from 'fastify'

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
