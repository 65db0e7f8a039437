/**
 * buildApp(config): the broker as a Fastify instance, ready to `listen` or `inject`. A pure
 * factory: it never reads the environment, never listens and never installs signal handlers
 * (server.ts does those).
 *
 * Close order (Fastify runs onClose hooks last-registered-first, so they are registered in the
 * reverse of this list):
 *   1. preClose: stop long-polls and report not-ready; HTTP stops accepting, in-flight requests finish
 *   2. upkeep stops (waits for a pass in progress, gives up the upkeep lock); the runtime config
 *      file is no longer watched
 *   3. the status batcher stops taking reports and flushes everything queued
 *   4. the store connection closes
 */
import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import pino, { type Logger } from 'pino'
import { createClaimService } from './claims/claim-service.js'
import { createTaskSignal, type QueueRef } from './claims/task-signal.js'
import type { Config } from './config.js'
import { openDatabase, type Database } from './db/database.js'
import { createMetrics } from './metrics.js'
import { installAuth } from './plugins/auth.js'
import { registerDocs } from './plugins/docs.js'
import { installValidation } from './plugins/validation.js'
import { operationsRoutes } from './routes/operations.js'
import { v1Routes } from './routes/v1/index.js'
import { loadRuntimeConfig, type RuntimeConfigSource } from './runtime-config.js'
import { createStatusWriter } from './status/status-writer.js'
import { createDeadletterStore } from './store/deadletter-store.js'
import { createTaskStore } from './store/task-store.js'
import { createUpkeepStore, type Released } from './store/upkeep-store.js'
import { createBackpressure } from './tasks/backpressure.js'
import { createUpkeepJobs } from './upkeep/jobs.js'
import { createUpkeep, type Upkeep } from './upkeep/upkeep.js'

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

/** Channel for "tasks arrived" notifications between broker processes sharing one database. */
const TASKS_CHANNEL = 'taskbroker_tasks'
/** Advisory lock key held by the broker that runs upkeep ("tbuk"). */
const UPKEEP_LOCK_KEY = 0x7462_756b

export function createLogger (config: Pick<Config, 'logLevel'>): Logger {
  return pino({
    level: config.logLevel,
    redact: ['req.headers.authorization', 'req.headers["taskbroker-signature"]']
  })
}

export async function buildApp (config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  const log = deps.logger ?? createLogger(config)
  const now = deps.now ?? (() => new Date())
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    bodyLimit: config.bodyLimitBytes,
    // Per-request info logs would cost more than the work at 15k requests/s; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true
  }).withTypeProvider<TypeBoxTypeProvider>()
  installValidation(app)
  installAuth(app, { secrets: config.authSecrets, maxSkewSec: config.authMaxSkewSec, exemptPaths: config.authExemptPaths })

  const metrics = createMetrics()
  installErrorHandling(app, config, metrics)

  const database = deps.database ?? await openDatabase({
    url: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.dbPoolSize,
    log: log.child({ component: 'db' })
  })
  if (deps.database === undefined) {
    app.addHook('onClose', async () => { await database.close() })
    if (config.runMigrations) {
      log.info({ store: database.kind }, 'applying migrations')
      await database.migrate()
    }
  }

  const store = createTaskStore(database, { processingDeadlineGraceSec: config.processingDeadlineGraceSec, maxDelaySec: config.maxDelaySec })
  const signal = createTaskSignal()
  const claims = createClaimService({ store, signal, metrics, maxWaitMs: config.claimMaxWaitMs, coalesce: config.claimCoalescing })
  const deadletters = createDeadletterStore(database)
  metrics.trackTaskCounts(async () => ({ ...await store.countLive(), deadletter: await deadletters.count() }))
  const statusWriter = createStatusWriter({ store, config: config.status, metrics, log: log.child({ component: 'status-batcher' }) })
  app.addHook('onClose', async () => { await statusWriter.close(config.shutdownTimeoutMs) })
  app.addHook('onClose', async () => { await claims.close() })

  const announce = await connectBrokers(database, signal, log)
  app.addHook('onClose', async () => { await announce.close() })

  const runtimeConfig = await loadRuntimeConfig({ path: config.runtimeConfigPath, log: log.child({ component: 'runtime-config' }) })
  app.decorate('runtimeConfig', runtimeConfig)
  app.addHook('onClose', async () => { runtimeConfig.close() })

  const wake = (released: Released) => {
    for (const { count, ...queue } of released) {
      signal.notify(queue, count)
      announce.send(queue, count)
    }
  }
  const upkeep = createUpkeep({
    jobs: createUpkeepJobs(createUpkeepStore(database), {
      limit: config.upkeep.batchLimit,
      maxProcessingAttempts: config.maxProcessingAttempts,
      startedAt: now(),
      deadlineResetSkipAfterStartupSec: config.deadlineResetSkipAfterStartupSec,
      killswitched: () => runtimeConfig.current().dropTaskKillswitch
    }),
    intervalMs: config.upkeepIntervalMs,
    lock: database.leaderLock(UPKEEP_LOCK_KEY),
    log: log.child({ component: 'upkeep' }),
    metrics,
    now,
    onReleased: wake
  })
  app.decorate('upkeep', upkeep)
  if (config.upkeep.enabled) app.addHook('onReady', async () => { upkeep.start() })
  app.addHook('onClose', async () => { await upkeep.stop() })

  let closing = false
  app.addHook('preClose', async () => {
    closing = true
    signal.close()
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
      retryAfterSec: config.retryAfterSec,
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
  return app
}

/**
 * Brokers sharing a PostgreSQL database tell each other about new tasks with NOTIFY, so a
 * long-poll on one broker wakes for a task produced through another. Each broker ignores its own
 * notifications (it woke its waiters already).
 */
async function connectBrokers (database: Database, signal: ReturnType<typeof createTaskSignal>, log: Logger) {
  const noop = { send: () => {}, close: async () => {} }
  if (database.kind !== 'postgres') return noop
  const self = randomUUID()
  let subscription: { unlisten: () => Promise<void> } | undefined
  try {
    subscription = await database.listen(TASKS_CHANNEL, payload => {
      try {
        const message = JSON.parse(payload) as { from: string, queue: QueueRef, count: number }
        if (message.from !== self) signal.notify(message.queue, message.count)
      } catch (error) {
        log.warn({ err: error }, 'ignoring a malformed task notification')
      }
    })
  } catch (error) {
    // Not fatal: long-polls still re-check every second.
    log.warn({ err: error }, 'cannot LISTEN for task notifications; long-polls fall back to polling')
    return noop
  }
  return {
    send (queue: QueueRef, count: number) {
      const payload = JSON.stringify({ from: self, queue, count })
      database.notify(TASKS_CHANNEL, payload).catch((error: unknown) => {
        log.debug({ err: error }, 'task notification not sent')
      })
    },
    close: async () => { await subscription?.unlisten().catch(() => {}) }
  }
}

const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'TASKBROKER_INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'TASKBROKER_INVALID_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'TASKBROKER_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'TASKBROKER_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'TASKBROKER_INVALID_REQUEST',
  FST_ERR_VALIDATION: 'TASKBROKER_INVALID_REQUEST'
}

/**
 * One place maps every error to `{statusCode, code, error, message}`: client mistakes keep a
 * stable TASKBROKER_* code and name the field; 503s carry Retry-After; anything unexpected is
 * logged and answered 500 without internals.
 */
function installErrorHandling (app: FastifyInstance, config: Config, metrics: ReturnType<typeof createMetrics>) {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const statusCode = error.statusCode ?? 500
    if (statusCode >= 500 && statusCode !== 503) {
      request.log.error({ err: error }, 'request failed')
      return reply.code(500).send({ statusCode: 500, code: 'TASKBROKER_INTERNAL', error: 'Internal Server Error', message: 'Internal Server Error' })
    }
    if (statusCode === 503) {
      if (error.code === 'TASKBROKER_STORE_UNAVAILABLE') metrics.storeUnavailable.inc()
      request.log.warn({ code: error.code, message: error.message }, 'answering 503')
      reply.header('retry-after', String(config.retryAfterSec))
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
