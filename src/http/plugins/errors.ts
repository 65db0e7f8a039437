/**
 * One place maps every error to `{statusCode, code, error, message}`: client mistakes keep a
 * stable TASKBROKER_* code and name the field; 503s carry Retry-After; anything unexpected is
 * logged and answered 500 without internals. A code that is not ours (FST_*, a plugin's, none) is
 * never passed on: it becomes a TASKBROKER_* code by status with a generic message, the original
 * goes to the log.
 */
import type { FastifyError, FastifyInstance } from 'fastify'
import type { Metrics } from '../../core/metrics.js'
import { WWW_AUTHENTICATE } from './auth.js'
import { closeAfterAnswer, type LingerLimits } from './transport.js'

/** Fastify's codes whose messages are safe and useful to clients. */
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

/** Any other 4xx or 503: the code clients see, by status (default TASKBROKER_INVALID_REQUEST). */
const CODE_BY_STATUS: Record<number, string> = {
  403: 'TASKBROKER_FORBIDDEN',
  404: 'TASKBROKER_ROUTE_NOT_FOUND',
  408: 'TASKBROKER_REQUEST_TIMEOUT',
  413: 'TASKBROKER_BODY_TOO_LARGE',
  415: 'TASKBROKER_UNSUPPORTED_MEDIA_TYPE',
  431: 'TASKBROKER_HEADERS_TOO_LARGE',
  503: 'TASKBROKER_UNAVAILABLE'
}

export interface ErrorHandlingOptions {
  retryAfterSec: number
  metrics: Metrics
  /** Bounds of the lingering close after an answer sent before the body was read. */
  linger: LingerLimits
  /** The largest body accepted (TASKBROKER_BODY_LIMIT_BYTES), named in the 413. */
  bodyLimitBytes: number
}

export function installErrorHandling (app: FastifyInstance, options: ErrorHandlingOptions): void {
  const { retryAfterSec, metrics, linger, bodyLimitBytes } = options
  const tooLarge = `the request body is larger than ${bodyLimitBytes} bytes (TASKBROKER_BODY_LIMIT_BYTES)`
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const statusCode = error.statusCode ?? 500
    if (statusCode >= 500 && statusCode !== 503) {
      request.log.error({ err: error }, 'request failed')
      return reply.code(500).send({ statusCode: 500, code: 'TASKBROKER_INTERNAL', error: 'Internal Server Error', message: 'Internal Server Error' })
    }
    // An early refusal (413, 401, 503 before the body was read) closes the connection, lingering.
    closeAfterAnswer(request, reply, linger)
    const ours = typeof error.code === 'string' && error.code.startsWith('TASKBROKER_')
    if (statusCode === 503) {
      if (error.code === 'TASKBROKER_STORE_UNAVAILABLE' || error.code === 'TASKBROKER_OUTCOME_UNKNOWN') metrics.storeUnavailable.inc()
      request.log.warn({ code: error.code, message: error.message, detail: (error as { detail?: unknown }).detail }, 'answering 503')
      reply.header('retry-after', String(retryAfterSec))
    }
    if (statusCode === 401) reply.header('www-authenticate', WWW_AUTHENTICATE)
    // An outcome-unknown produce names the ids it assigned, so the client can produce them again.
    const ids = (error as { ids?: unknown }).ids
    if (ours) return reply.code(statusCode).send({ statusCode, code: error.code, error: httpReason(statusCode), message: error.message, ...(Array.isArray(ids) ? { ids } : {}) })
    const known = FASTIFY_CODES[error.code]
    if (known !== undefined) {
      const message = error.validation !== undefined ? validationMessage(error) : error.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? tooLarge : error.message
      return reply.code(statusCode).send({ statusCode, code: known, error: httpReason(statusCode), message })
    }
    request.log.info({ code: error.code, message: error.message, statusCode }, 'answering a generic error')
    const code = CODE_BY_STATUS[statusCode] ?? 'TASKBROKER_INVALID_REQUEST'
    return reply.code(statusCode).send({ statusCode, code, error: httpReason(statusCode), message: httpReason(statusCode) })
  })
  app.setNotFoundHandler((request, reply) => {
    closeAfterAnswer(request, reply, linger)
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
    case 403: return 'Forbidden'
    case 404: return 'Not Found'
    case 405: return 'Method Not Allowed'
    case 408: return 'Request Timeout'
    case 409: return 'Conflict'
    case 413: return 'Payload Too Large'
    case 415: return 'Unsupported Media Type'
    case 431: return 'Request Header Fields Too Large'
    case 503: return 'Service Unavailable'
    default: return statusCode >= 500 ? 'Server Error' : 'Client Error'
  }
}
