/**
 * Request signing (see src/auth/signing.ts), on when TASKBROKER_AUTH_SECRETS is set. Every request
 * except the exempt paths must be signed; anything missing or wrong is a 401 with one stable code
 * and no hint of which part failed.
 *
 * The signature covers the raw body bytes, so the JSON parser is replaced by one that keeps them:
 * a request with a body is verified there, before its JSON is even parsed; a request without a
 * body is verified in onRequest.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, verifySignature } from '../auth/signing.js'
import { UnauthorizedError } from '../errors.js'

export interface AuthOptions {
  secrets: readonly string[]
  maxSkewSec: number
  exemptPaths: readonly string[]
}

export function installAuth (app: FastifyInstance, options: AuthOptions): void {
  if (options.secrets.length === 0) return
  // "/docs*" exempts a prefix; anything else is an exact path.
  const exact = new Set(options.exemptPaths.filter(p => !p.endsWith('*')))
  const prefixes = options.exemptPaths.filter(p => p.endsWith('*')).map(p => p.slice(0, -1))
  const isExempt = (request: FastifyRequest) => {
    const path = request.url.split('?')[0] ?? ''
    return exact.has(path) || prefixes.some(prefix => path.startsWith(prefix))
  }
  const header = (request: FastifyRequest, name: string) => {
    const value = request.headers[name]
    return typeof value === 'string' ? value : undefined
  }
  const verified = (request: FastifyRequest, body: string | Uint8Array) => verifySignature(options.secrets, {
    method: request.method,
    path: request.url,
    body,
    signature: header(request, SIGNATURE_HEADER),
    timestamp: header(request, TIMESTAMP_HEADER),
    maxSkewSec: options.maxSkewSec
  })

  app.addHook('onRequest', async (request) => {
    if (isExempt(request)) return
    const length = request.headers['content-length']
    const hasBody = (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined
    if (!hasBody && !verified(request, '')) throw new UnauthorizedError()
  })

  const parseJson = app.getDefaultJsonParser('error', 'ignore')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const raw = body as Buffer
    if (!isExempt(request) && !verified(request, raw)) {
      done(new UnauthorizedError(), undefined)
      return
    }
    parseJson(request, raw.toString('utf8'), done)
  })
}
