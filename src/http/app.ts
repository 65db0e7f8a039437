/**
 * buildApp(config): the broker as a Fastify instance, ready to `listen` or `inject`. A pure
 * factory: it never reads the environment, never listens and never installs signal handlers
 * (server.ts does those).
 *
 * Close order (Fastify runs onClose hooks last-registered-first, so they are registered in the
 * reverse of this list):
 *   1. preClose: stop long-polls and report not-ready; HTTP stops accepting, in-flight requests finish
 *   2. upkeep stops (waits for a pass in progress, at most 2 s; gives up the upkeep lock); the
 *      runtime config file is no longer watched
 *   3. push mode: the fetch loops stopped at preClose; unpushed tasks go back to pending, pushes in
 *      flight finish, their outcomes are flushed (src/core/push/install.ts)
 *   4. the status batcher stops taking reports and flushes everything queued
 *   5. the store connection closes
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import pino, { type Logger } from 'pino'
import { createClaimService } from '../core/claims/claim-service.js'
import { connectBrokers } from '../core/claims/broker-notifications.js'
import { createTaskSignal } from '../core/claims/task-signal.js'
import type { Config } from '../config/config.js'
import { openDatabase, type Database } from '../db/database.js'
import { prepareSchema } from '../db/migration-check.js'
import { createMetrics, type Metrics } from '../core/metrics.js'
import { ShuttingDownError } from '../domain/errors.js'
import { installAuth } from './plugins/auth.js'
import { installErrorHandling } from './plugins/errors.js'
import { answerClientError, installBodyBudget } from './plugins/transport.js'
import { installPushDelivery } from '../core/push/install.js'
import { registerDocs } from './plugins/docs.js'
import { installStorableCheck, installValidation } from './plugins/validation.js'
import { operationsRoutes } from './routes/operations.js'
import { v1Routes } from './routes/v1/index.js'
import { loadRuntimeConfig, type RuntimeConfigSource } from '../core/runtime-config.js'
import { createStatusWriter } from '../core/status/status-writer.js'
import { createDeadletterStore } from '../store/deadletter-store.js'
import { createTaskStore } from '../store/task-store.js'
import { createUpkeepStore, type Released } from '../store/upkeep-store.js'
import { createBackpressure } from '../core/produce/backpressure.js'
import { createUpkeepJobs } from '../core/upkeep/jobs.js'
import { createUpkeep, type Upkeep } from '../core/upkeep/upkeep.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The upkeep loop; tests call `upkeep.runOnce(now)` with TASKBROKER_UPKEEP_ENABLED=false. */
    upkeep: Upkeep
    /** The runtime config file (killswitch); server.ts reloads it on SIGHUP. */
    runtimeConfig: RuntimeConfigSource
  }
}

export interface AppDeps {
  /** Use this store connection instead of opening one from the config (tests). The caller closes it. */
  database?: Database
  logger?: Logger
  /** The broker's clock (tests inject one). */
  now?: () => Date
}

/** Advisory lock key held by the broker that runs upkeep ("tbuk"). */
const UPKEEP_LOCK_KEY = 0x7462_756b

export function createLogger (config: { broker: Pick<Config['broker'], 'logLevel'> }): Logger {
  return pino({
    level: config.broker.logLevel,
    redact: ['req.headers.authorization', 'req.headers["taskbroker-signature"]']
  })
}

export async function buildApp (config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  const log = deps.logger ?? createLogger(config)
  const now = deps.now ?? (() => new Date())
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
    frameworkErrors: (error, _request, reply) => {
      const statusCode = error.statusCode ?? 400
      const message = 'params/id: the request path is malformed (bad percent-encoding) or a path segment is too long'
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
  installValidation(app)
  installStorableCheck(app)
  installAuth(app, {
    secrets: config.auth.secrets,
    maxSkewSec: config.auth.maxSkewSec,
    exemptPaths: config.auth.exemptPaths,
    replayCacheSize: config.auth.replayCacheSize
  })

  const metrics = createMetrics()
  installErrorHandling(app, { retryAfterSec: config.http.retryAfterSec, metrics, linger: config.http })
  installBodyBudget(app, { maxBytes: config.http.maxInflightBodyBytes, bodyLimit: config.http.bodyLimitBytes })

  const database = deps.database ?? await openDatabase({
    url: config.store.databaseUrl,
    dataDir: config.store.dataDir,
    poolSize: config.store.poolSize,
    callTimeoutMs: config.store.callTimeoutMs,
    log: log.child({ component: 'db' })
  })
  if (deps.database === undefined) app.addHook('onClose', async () => { await database.close() })
  try {
    // Migrates if configured, then refuses a database whose schema is behind or ahead of this broker.
    if (deps.database === undefined) await prepareSchema(database, config.store.runMigrations, log)
    await assemble(app, config, database, metrics, log, now)
  } catch (error) {
    // Whatever was opened so far (the store, its pool, timers) is closed before giving up.
    await app.close().catch(() => {})
    throw error
  }
  return app
}

async function assemble (app: FastifyInstance, config: Config, database: Database, metrics: Metrics, log: Logger, now: () => Date): Promise<void> {
  const store = createTaskStore(database, { processingDeadlineGraceSec: config.tasks.processingDeadlineGraceSec, maxDelaySec: config.tasks.maxDelaySec })
  const signal = createTaskSignal()
  const claims = createClaimService({ store, signal, metrics, maxWaitMs: config.claims.maxWaitMs, coalesce: config.claims.coalescing, maxWaiters: config.claims.maxWaiters, recheckMs: config.claims.recheckMs })
  const deadletters = createDeadletterStore(database)
  metrics.trackTaskCounts(async () => ({ ...await store.countLive(), deadletter: await deadletters.count() }))
  const statusWriter = createStatusWriter({
    store,
    config: config.status,
    metrics,
    log: log.child({ component: 'status-batcher' }),
    claim: (filter, limit) => claims.claim(filter, limit)
  })
  // Shutdown has one budget, TASKBROKER_SHUTDOWN_TIMEOUT_MS from the start of close: draining
  // requests and stopping upkeep take what they need of it (upkeep at most 2 s), flushing queued
  // status reports gets the rest (at least 250 ms), then the store closes (at most 1 s more).
  let closeStartedAt: number | undefined
  const shutdownLeftMs = () => Math.max(0, (closeStartedAt ?? Date.now()) + config.broker.shutdownTimeoutMs - Date.now())
  app.addHook('onClose', async () => { await statusWriter.close(Math.max(250, shutdownLeftMs())) })
  app.addHook('onClose', async () => { await claims.close() })

  const announce = await connectBrokers(database, signal, log)
  app.addHook('onClose', async () => { await announce.close() })

  const runtimeConfig = await loadRuntimeConfig({ path: config.broker.runtimeConfigPath, log: log.child({ component: 'runtime-config' }) })
  app.decorate('runtimeConfig', runtimeConfig)
  app.addHook('onClose', async () => { runtimeConfig.close() })

  const wake = (released: Released) => {
    for (const { count, ...queue } of released) {
      signal.notify(queue, count)
      announce.send(queue, count)
    }
  }
  const upkeep = createUpkeep({
    jobs: createUpkeepJobs(createUpkeepStore(database, { timeoutMs: config.store.upkeepCallTimeoutMs }), {
      limit: config.upkeep.batchLimit,
      maxProcessingAttempts: config.tasks.maxProcessingAttempts,
      maxDelaySec: config.tasks.maxDelaySec,
      startedAt: now(),
      deadlineResetSkipAfterStartupSec: config.upkeep.deadlineResetSkipAfterStartupSec,
      killswitched: () => runtimeConfig.current().dropTaskKillswitch
    }),
    intervalMs: config.upkeep.intervalMs,
    lock: database.leaderLock(UPKEEP_LOCK_KEY),
    log: log.child({ component: 'upkeep' }),
    metrics,
    now,
    onReleased: wake
  })
  app.decorate('upkeep', upkeep)
  if (config.upkeep.enabled) app.addHook('onReady', async () => { upkeep.start() })
  // A pass stuck on the store must not eat the budget of the status flush that follows.
  app.addHook('onClose', async () => { await upkeep.stop(Math.min(2_000, shutdownLeftMs() / 4)) })
  // Push mode: fetch loops and the push pool (src/push/); its onClose runs before the store closes.
  if (config.broker.deliveryMode === 'push') installPushDelivery(app, { config, database, signal, metrics, log: log.child({ component: 'push' }) })

  let closing = false
  app.addHook('preClose', async () => {
    closing = true
    closeStartedAt ??= Date.now()
    signal.close()
  })
  app.addHook('onRequest', async (request) => {
    if (closing && !request.url.startsWith('/healthz') && !request.url.startsWith('/readyz')) throw new ShuttingDownError()
  })

  app.addHook('onResponse', async (request, reply) => {
    metrics.httpRequestDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unknown', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000
    )
  })

  await registerDocs(app)
  await app.register(operationsRoutes, {
    services: {
      store,
      metrics,
      retryAfterSec: config.http.retryAfterSec,
      notReadyReason: () => closing ? 'shutting down' : upkeep.lateReason()
    }
  })
  await app.register(v1Routes, {
    prefix: '/v1',
    services: {
      config,
      store,
      deadletters,
      claims,
      signal,
      statusWriter,
      metrics,
      backpressure: createBackpressure(store, config.backpressure),
      isKillswitched: (taskname) => runtimeConfig.isKillswitched(taskname),
      now,
      announce: announce.send
    }
  })
}
