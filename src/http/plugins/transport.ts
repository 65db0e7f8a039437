/**
 * Receiving requests without letting slow or oversized ones pin the broker:
 * - a budget on body bytes being received at once, all requests together (503 beyond it);
 * - a lingering close: an answer sent before the request's body was read (413, 401, 503) goes out
 *   with `connection: close`, then the rest of the body is read and discarded for a bounded time
 *   and size before the socket is closed, as nginx does. Closing at once would reset the
 *   connection while the client is still writing, and it would get EPIPE/ECONNRESET, not the answer;
 * - the answers to malformed HTTP, overlong headers and request timeouts (Node's clientError).
 * The request/headers timeouts and the connection cap are Node's own, set in app.ts.
 */
import type { Socket } from 'node:net'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { HttpLimits } from '../../config/config.js'
import { BodyBudgetFullError } from '../../domain/errors.js'

export type LingerLimits = Pick<HttpLimits, 'lingerMs' | 'lingerMaxBytes'>

/**
 * Each request with a body reserves its declared size (Content-Length; a chunked body reserves the
 * body limit, the most it may grow to) until its answer is done, since the parsed body lives that
 * long. A body over the body limit reserves nothing: it is answered 413 before a byte is read.
 */
export function installBodyBudget (app: FastifyInstance, options: { maxBytes: number, bodyLimit: number }): void {
  let reserved = 0
  app.addHook('onRequest', (request, reply, done) => {
    const size = declaredBodySize(request, options.bodyLimit)
    if (size === 0) return done()
    if (reserved + size > options.maxBytes) return done(new BodyBudgetFullError())
    reserved += size
    // 'close' comes once per answer, whether it was sent or the connection was lost.
    reply.raw.once('close', () => { reserved -= size })
    done()
  })
}

function declaredBodySize (request: FastifyRequest, bodyLimit: number): number {
  const headers = request.headers
  if (headers['transfer-encoding'] !== undefined) return bodyLimit
  const length = Number(headers['content-length'] ?? 0)
  return Number.isSafeInteger(length) && length > 0 && length <= bodyLimit ? length : 0
}

/**
 * Call before sending an answer: when the request's body has not been fully received, the answer
 * closes the connection after a lingering read. Inject requests (tests) have no socket to close.
 */
export function closeAfterAnswer (request: FastifyRequest, reply: FastifyReply, limits: LingerLimits): void {
  if (request.raw.complete !== false) return
  reply.header('connection', 'close')
  const socket = request.raw.socket as Socket & { destroySoon?: () => void }
  // Node ends an answer marked `connection: close` with socket.destroySoon(), which destroys the
  // socket as soon as the answer is written; this socket lingers instead.
  if (typeof socket.destroySoon === 'function') socket.destroySoon = () => { lingerThenDestroy(socket, limits) }
}

/** Ends our side (FIN after the answer), reads and discards what still comes, then destroys. */
function lingerThenDestroy (socket: Socket, limits: LingerLimits): void {
  if (socket.writable) socket.end()
  if (socket.destroyed) return
  if (limits.lingerMs === 0) {
    if (socket.writableFinished) socket.destroy()
    else socket.once('finish', () => socket.destroy())
    return
  }
  // The bytes go to Node's HTTP parser, which drops the rest of the body; bytesRead counts them.
  const startBytes = socket.bytesRead
  const sizeCheck = setInterval(() => { if (socket.bytesRead - startBytes > limits.lingerMaxBytes) socket.destroy() }, 50)
  const deadline = setTimeout(() => socket.destroy(), limits.lingerMs)
  socket.once('close', () => {
    clearInterval(sizeCheck)
    clearTimeout(deadline)
  })
}

const CLIENT_ERRORS: Record<string, { status: number, reason: string, code: string, message: string }> = {
  HPE_HEADER_OVERFLOW: {
    status: 431,
    reason: 'Request Header Fields Too Large',
    code: 'TASKBROKER_HEADERS_TOO_LARGE',
    message: 'The request headers are too large'
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    reason: 'Request Timeout',
    code: 'TASKBROKER_REQUEST_TIMEOUT',
    message: 'The request was not received in time (TASKBROKER_HEADERS_TIMEOUT_MS, TASKBROKER_REQUEST_TIMEOUT_MS)'
  }
}
const MALFORMED = { status: 400, reason: 'Bad Request', code: 'TASKBROKER_INVALID_REQUEST', message: 'Malformed HTTP request' }

/**
 * Node's clientError: a request that cannot be parsed, headers over the size limit, or a request
 * not received within its timeout. The answer is written on the socket (there is no request
 * object), in the same JSON shape as every other error; then the socket lingers and closes.
 */
export function answerClientError (error: NodeJS.ErrnoException, socket: Socket, limits: LingerLimits, log: Pick<FastifyBaseLogger, 'debug'>): void {
  const answer = CLIENT_ERRORS[error.code ?? ''] ?? MALFORMED
  log.debug({ err: error, statusCode: answer.status }, 'client error')
  // As Node does: write nothing if an answer to this connection's request has already begun.
  const started = (socket as { _httpMessage?: { headersSent?: boolean } | null })._httpMessage?.headersSent === true
  if (!socket.writable || started) {
    socket.destroy()
    return
  }
  const body = JSON.stringify({ statusCode: answer.status, code: answer.code, error: answer.reason, message: answer.message })
  socket.write(`HTTP/1.1 ${answer.status} ${answer.reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  lingerThenDestroy(socket, limits)
}
