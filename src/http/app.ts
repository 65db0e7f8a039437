/**
 * buildApp(config): the HTTP front end of the broker, a Fastify instance ready to `listen` or
 * `inject`. The broker itself (use cases and long-lived parts) is src/core/broker.ts; this file
 * builds it (or takes one), registers the plugins and routes, and ties the broker's lifecycle to
 * the server's. A pure factory: it never reads the environment, never listens and never installs
 * signal handlers (server.ts does those).
 *
 * Lifecycle:
 *   ready      broker.start(): upkeep runs
 *   listening  broker.start({ publicUrl }): push delivery starts (workers call back to this address)
 *   preClose   broker.beginShutdown(): not ready, long-polls end, push stops fetching; new requests
 *              get 503 while Fastify drains the ones in flight
 *   onClose    broker.stop(): every part stops in the order written in broker.ts, within what is
 *              left of TASKBROKER_SHUTDOWN_TIMEOUT_MS counted from preClose
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Logger } from 'pino'
import type { Config } from '../config/config.js'
import { createLogger } from '../core/logger.js'
import { createBroker, type Broker, type Store } from '../core/broker.js'
import { ShuttingDownError } from '../domain/errors.js'
import { exemptRoutes, installAuth } from './plugins/auth.js'
import { registerDocs } from './plugins/docs.js'
import { installErrorHandling } from './plugins/errors.js'
import { answerClientError, installBodyBudget } from './plugins/transport.js'
import { installNoFieldBodies, installOptionalBodies, installStorableCheck, installValidation } from './plugins/validation.js'
import { derivedPublicUrl } from './public-url.js'
import { operationsRoutes } from './routes/operations.js'
import { v1Routes } from './routes/v1/index.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The broker this front end serves. */
    broker: Broker
  }
}

export interface AppDeps {
  /** Serve this broker (the app still starts and stops it with the server). */
  broker?: Broker
  /** Build the broker on this store instead of opening one from the config (tests). Its owner closes it. */
  store?: Store
  logger?: Logger
  /** The broker's clock (tests inject one). */
  now?: () => Date
}

export async function buildApp (config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  const log = deps.logger ?? createLogger(config)
  const broker = deps.broker ?? await createBroker(config, { store: deps.store, logger: log, now: deps.now })
  const app = createServer(config, log)
  app.decorate('broker', broker)
  bindLifecycle(app, broker, config)
  try {
    await registerAll(app, config, broker)
  } catch (error) {
    // Stops the broker too (onClose): nothing opened so far is left running.
    await app.close().catch(() => {})
    throw error
  }
  return app
}

function createServer (config: Config, log: Logger) {
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    bodyLimit: config.http.bodyLimitBytes,
    // Receiving a request is bounded in time (408, then the connection closes); answering is not,
    // so a long-poll claim outlives the request timeout. Node checks the timeouts every
    // connectionsCheckingInterval (its default, 30 s, would let them overrun by that much).
    requestTimeout: config.http.requestTimeoutMs,
    http: { requestTimeout: config.http.requestTimeoutMs, headersTimeout: config.http.headersTimeoutMs, connectionsCheckingInterval: 1_000 },
    maxRequestsPerSocket: config.http.maxRequestsPerSocket,
    // Ids may be TASKBROKER_ID_MAX_CHARS (at most 512) characters, 1024 UTF-16 units; longer path
    // segments are refused with a 4xx before routing.
    routerOptions: { maxParamLength: 1024 },
    // Errors Fastify raises before routing (a bad URL, an overlong path segment) and malformed HTTP
    // get the same body shape and a stable code as every other error.
    frameworkErrors: (error, request, reply) => {
      const statusCode = error.statusCode ?? 400
      // The route is not known yet; every path parameter is a task's or dead letter's id or a schedule's name.
      const param = request.url.startsWith('/v1/schedules/') ? 'params/name' : 'params/id'
      const message = `${param}: ${statusCode === 414 ? 'a path segment is longer than 1024 characters' : 'the request path is malformed (bad percent-encoding)'}`
      ;(reply as FastifyReply).code(statusCode).send({ statusCode, code: 'TASKBROKER_INVALID_REQUEST', error: statusCode === 414 ? 'URI Too Long' : 'Bad Request', message })
    },
    // Malformed HTTP (400), overlong headers (431), a request not received in time (408).
    clientErrorHandler: (error, socket) => { answerClientError(error, socket, config.http, log) },
    // Per-request info logs would cost more than the work at 15k requests/s; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    // Our own onRequest hook answers during shutdown, with a code and Retry-After.
    return503OnClosing: false
  }).withTypeProvider<TypeBoxTypeProvider>()
  // Beyond it Node closes new connections at once: stalled clients cannot use up file descriptors.
  app.server.maxConnections = config.http.maxConnections
  return app
}

function bindLifecycle (app: FastifyInstance, broker: Broker, config: Config): void {
  app.addHook('onReady', async () => { broker.start() })
  app.addHook('onListen', async () => {
    broker.start({ publicUrl: config.push.publicUrl ?? derivedPublicUrl(config.http.host, app.server.address()) })
  })
  app.addHook('preClose', async () => { broker.beginShutdown() })
  app.addHook('onClose', async () => { await broker.stop() })
}

async function registerAll (app: FastifyInstance, config: Config, broker: Broker): Promise<void> {
  const { metrics } = broker
  installValidation(app)
  installNoFieldBodies(app)
  installOptionalBodies(app)
  installStorableCheck(app)
  installAuth(app, {
    secrets: config.auth.secrets,
    maxSkewSec: config.auth.maxSkewSec,
    exemptPaths: config.auth.exemptPaths,
    replayCacheSize: config.auth.replayCacheSize
  })
  installErrorHandling(app, { retryAfterSec: config.http.retryAfterSec, metrics, linger: config.http, bodyLimitBytes: config.http.bodyLimitBytes })
  installBodyBudget(app, { maxBytes: config.http.maxInflightBodyBytes, bodyLimit: config.http.bodyLimitBytes })
  // Our own answer during shutdown, with a code and Retry-After (return503OnClosing is off).
  // Hooks on every request take callbacks, not async functions: a promise per hook per request
  // is measurable at these rates.
  app.addHook('onRequest', (request, _reply, done) => {
    if (broker.shuttingDown && !request.url.startsWith('/healthz') && !request.url.startsWith('/readyz')) done(new ShuttingDownError())
    else done()
  })
  // Shutting down, every answer closes its connection: a keep-alive client would otherwise hold
  // the connection open after its last answer, and the server's close (the drain) would wait for
  // the keep-alive timeout; under node:cluster the shutdown ran into its kill timeout.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (broker.shuttingDown) reply.header('connection', 'close')
    done(null, payload)
  })
  app.addHook('onResponse', (request, reply, done) => {
    metrics.httpRequestDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unknown', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000
    )
    done()
  })
  await registerDocs(app, { signed: config.auth.secrets.length > 0, exempt: exemptRoutes(config.auth.exemptPaths) })
  await app.register(operationsRoutes, { broker })
  await app.register(v1Routes, { prefix: '/v1', broker })
}
