/**
 * Request bodies and request signing (see src/auth/signing.ts), in one place.
 *
 * Bodies: every content type goes through one parser that reads the raw bytes, so the signature
 * can cover them whatever the type; only application/json is then parsed. An empty body is no
 * body, whatever its type; any other non-empty body is a 415 naming application/json.
 *
 * Signing, on when TASKBROKER_AUTH_SECRETS is set: every request to a route that is not exempt
 * must be signed. A request without a body is verified in onRequest, one with a body by the
 * parser, over its raw bytes, before anything is parsed; GET and HEAD (whose bodies Fastify never
 * reads) may not carry one. A signature is good for one request (src/http/plugins/replay-cache.ts).
 * Safety net: every handler of a route that is not exempt is wrapped so that it refuses a request
 * the verifier has not passed, so a path around the checks above (a new parser, a new method, a
 * new route) fails closed with a 401 instead of serving.
 *
 * Exemption is decided by the route a request matched (its declared URL), not by the URL as sent.
 */
import type { FastifyInstance, FastifyRequest, RouteHandlerMethod } from 'fastify'
import { createReplayCache } from './replay-cache.js'
import { NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verifySignature } from '../../auth/signing.js'
import {
  InvalidRequestError, ReplayCacheFullError, ReplayedError, UnauthorizedError, UnsupportedMediaTypeError
} from '../../domain/errors.js'

export interface AuthOptions {
  secrets: readonly string[]
  maxSkewSec: number
  /** "/docs*" exempts routes under a prefix; anything else is an exact route URL. */
  exemptPaths: readonly string[]
  /** Most signatures remembered at once (replay protection); beyond it signed requests get 503. */
  replayCacheSize: number
}

/** Methods whose body Fastify never reads (so nothing could verify it). */
const BODYLESS = new Set(['GET', 'HEAD', 'TRACE'])

const header = (request: FastifyRequest, name: string) => {
  const value = request.headers[name]
  return typeof value === 'string' ? value : undefined
}

const hasBody = (request: FastifyRequest) => {
  const length = request.headers['content-length']
  return (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined
}

const isJson = (contentType: string | undefined) =>
  contentType === 'application/json' || (contentType !== undefined && contentType.split(';')[0]?.trim().toLowerCase() === 'application/json')

/** Whether a route (by its declared URL, `/v1/tasks/:id`) is exempt from signing by TASKBROKER_AUTH_EXEMPT_PATHS. */
export function exemptRoutes (exemptPaths: readonly string[]): (routeUrl: string | undefined) => boolean {
  const exact = new Set(exemptPaths.filter(p => !p.endsWith('*')))
  const prefixes = exemptPaths.filter(p => p.endsWith('*')).map(p => p.slice(0, -1))
  return routeUrl => routeUrl !== undefined && (exact.has(routeUrl) || prefixes.some(prefix => routeUrl.startsWith(prefix)))
}

/** What a 401 says of how to authenticate (RFC 9110 asks for it on every 401). */
export const WWW_AUTHENTICATE = 'Taskbroker-HMAC-SHA256 realm="taskbroker"'

export function installAuth (app: FastifyInstance, options: AuthOptions): void {
  const signed = options.secrets.length > 0
  const exempt = exemptRoutes(options.exemptPaths)
  const isExempt = (routeUrl: string | undefined) => !signed || exempt(routeUrl)

  // The requests whose signature checked out; only `verify` adds to it.
  const verified = new WeakSet<FastifyRequest>()
  const replays = createReplayCache(options.replayCacheSize)

  /** Throws unless the request is signed over `body` with a signature not used before. */
  const verify = (request: FastifyRequest, body: Uint8Array | string): void => {
    const nowSec = Math.floor(Date.now() / 1000)
    const signature = header(request, SIGNATURE_HEADER)
    const timestamp = header(request, TIMESTAMP_HEADER)
    const ok = verifySignature(options.secrets, {
      method: request.method,
      path: request.url,
      body,
      signature,
      timestamp,
      nonce: header(request, NONCE_HEADER),
      maxSkewSec: options.maxSkewSec,
      nowSec
    })
    if (!ok || signature === undefined) throw new UnauthorizedError()
    const verdict = replays.check(signature, Number(timestamp) + options.maxSkewSec, nowSec)
    if (verdict === 'replayed') throw new ReplayedError()
    if (verdict === 'full') throw new ReplayCacheFullError()
    verified.add(request)
  }

  if (signed) {
    app.addHook('onRequest', async (request) => {
      if (isExempt(request.routeOptions.url)) return
      if (!hasBody(request)) verify(request, '')
      else if (BODYLESS.has(request.method)) throw new InvalidRequestError(`a ${request.method} request takes no body`)
      // else: verified by the parser, over the body's bytes
    })
  }

  const parseJson = app.getDefaultJsonParser('error', 'ignore')
  app.removeAllContentTypeParsers()
  // Signed, the body is read as bytes (the signature covers them); unsigned, straight as text.
  app.addContentTypeParser('*', { parseAs: signed ? 'buffer' : 'string' }, (request, body, done) => {
    const raw = body as Buffer | string
    if (signed) {
      try {
        // A body-less request verified in onRequest may still come here (it names a content type).
        if (!isExempt(request.routeOptions.url) && (raw.length > 0 || !verified.has(request))) verify(request, raw)
      } catch (error) {
        done(error as Error, undefined)
        return
      }
    }
    const type = header(request, 'content-type')
    // An empty body is no body, whatever its type says (generated clients send `application/json`
    // with nothing): routes whose body is optional take it as {}, the others answer "body must be".
    if (raw.length === 0) done(null, undefined)
    else if (isJson(type)) parseJson(request, typeof raw === 'string' ? raw : raw.toString('utf8'), done)
    else done(new UnsupportedMediaTypeError(type === undefined ? 'no content-type' : JSON.stringify(type.slice(0, 100))), undefined)
  })

  if (!signed) return
  app.addHook('onRoute', (route) => {
    if (isExempt(route.url)) return
    const handler = route.handler as (this: FastifyInstance, ...args: Parameters<RouteHandlerMethod>) => unknown
    route.handler = function guarded (this: FastifyInstance, request, reply) {
      if (!verified.has(request)) throw new UnauthorizedError()
      return handler.call(this, request, reply)
    } as RouteHandlerMethod
  })
}
