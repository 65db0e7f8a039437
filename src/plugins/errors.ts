/**
 * One place maps every error to `{statusCode, code, error, message}`: client mistakes keep a
 * stable TASKBROKER_* code and name the field; 503s carry Retry-After; anything unexpected is
 * logged and answered 500 without internals.
 */
import type { FastifyError, FastifyInstance } from 'fastify'
import type { Metrics } from '../metrics.js'

const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'TASKBROKER_INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'TASKBROKER_INVALID_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'TASKBROKER_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'TASKBROKER_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'TASKBROKER_INVALID_REQUEST',
  FST_ERR_VALIDATION: 'TASKBROKER_INVALID_REQUEST',
  FST_ERR_BAD_URL: 'TASKBROKER_INVALID_REQUEST',
  FST_ERR_MAX_PARAM_LENGTH: 'TASKBROKER_INVALID_REQUEST'
}

export function installErrorHandling (app: FastifyInstance, retryAfterSec: number, metrics: Metrics): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const statusCode = error.statusCode ?? 500
    if (statusCode >= 500 && statusCode !== 503) {
      request.log.error({ err: error }, 'request failed')
      return reply.code(500).send({ statusCode: 500, code: 'TASKBROKER_INTERNAL', error: 'Internal Server Error', message: 'Internal Server Error' })
    }
    if (statusCode === 503) {
      if (error.code === 'TASKBROKER_STORE_UNAVAILABLE') metrics.storeUnavailable.inc()
      request.log.warn({ code: error.code, message: error.message }, 'answering 503')
      reply.header('retry-after', String(retryAfterSec))
    }
    const code = error.code in FASTIFY_CODES ? FASTIFY_CODES[error.code] as string : error.code ?? 'TASKBROKER_INVALID_REQUEST'
    const message = error.validation !== undefined ? validationMessage(error) : error.message
    return reply.code(statusCode).send({ statusCode, code, error: httpReason(statusCode), message })
  })
  app.setNotFoundHandler((request, reply) => {
    return reply.code(404).send({
      statusCode: 404, code: 'TASKBROKER_ROUTE_NOT_FOUND', error: 'Not Found', message: `Route ${request.method} ${request.url} not found`
    })
  })
}

/** "body/tasks/0/namespace must have required property 'namespace'", with allowed values spelled out. */
function validationMessage (error: FastifyError): string {
  const first = error.validation?.[0]
  if (first === undefined) return error.message
  const params = first.params as { allowedValues?: unknown[], additionalProperty?: string, missingProperty?: string }
  let field = `${error.validationContext ?? 'body'}${first.instancePath}`
  let detail = first.message ?? 'is invalid'
  if (params.additionalProperty !== undefined) {
    field += `/${params.additionalProperty}`
    detail = 'is not a known field'
  } else if (params.missingProperty !== undefined) {
    field += `/${params.missingProperty}`
    detail = 'is required'
  } else if (params.allowedValues !== undefined) {
    detail = `must be one of: ${params.allowedValues.join(', ')}`
  }
  return `${field} ${detail}`
}

function httpReason (statusCode: number): string {
  switch (statusCode) {
    case 400: return 'Bad Request'
    case 401: return 'Unauthorized'
    case 404: return 'Not Found'
    case 409: return 'Conflict'
    case 413: return 'Payload Too Large'
    case 415: return 'Unsupported Media Type'
    case 503: return 'Service Unavailable'
    default: return 'Error'
  }
}
