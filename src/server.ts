/**
 * The broker process: parse the configuration, build the app, listen, and shut down in order on
 * SIGTERM/SIGINT (the order is written in src/core/broker.ts). Nothing else lives here.
 */
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { ConfigError, configWarnings, exposureWarning, loadConfig, StartupRefusedError } from './config/config.js'

let config
try {
  config = loadConfig(process.env)
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`)
    process.exit(78) // EX_CONFIG
  }
  throw error
}

const { createLogger } = await import('./core/logger.js')
const log = createLogger(config)
for (const warning of configWarnings(process.env)) log.warn(warning)
const exposed = exposureWarning(config)
if (exposed !== undefined) log.warn(exposed)
const { followPrimary, isClusterPrimary, runPrimary, shareMetrics } = await import('./core/cluster.js')
// TASKBROKER_PROCESSES > 1: this process only starts and stops the broker processes.
if (isClusterPrimary(config)) process.exit(await runPrimary(config, log))
let app: FastifyInstance
try {
  // The store opens (PGlite compiles its WebAssembly off the main thread) while the HTTP side's
  // modules load: imported after the broker is under way, not before.
  const { createBroker } = await import('./core/broker.js')
  const broker = createBroker(config, { logger: log })
  broker.catch(() => {}) // awaited below
  const { buildApp } = await import('./http/app.js')
  app = await buildApp(config, { logger: log, broker: await broker })
} catch (error) {
  // Something to fix before starting again (data directory in use, database not migrated or
  // missing): one line, no stack, and the same exit code as a bad setting.
  if (error instanceof ConfigError || error instanceof StartupRefusedError) {
    process.stderr.write(`${error.message}\n`)
    process.exit(78)
  }
  log.fatal({ err: error }, 'cannot start the broker')
  process.exit(1)
}

// A second signal, or the timeout, ends the process at once.
let closing = false
const grace = closeWithGrace({ delay: config.broker.shutdownTimeoutMs + 2_000, logger: log }, async ({ signal, err }) => {
  closing = true
  if (err !== undefined) log.error({ err }, 'shutting down after an error')
  else log.info({ signal }, 'shutting down')
  await app.close()
  log.info('shutdown complete')
})
// One of several broker processes: the primary's shutdown is this process's (once: a terminal's
// Ctrl-C reaches every process of the group as well).
shareMetrics(app.broker.metrics.registry)
followPrimary(() => {
  if (closing) return
  closing = true
  grace.close()
})

// SIGHUP re-reads the runtime config file (it is also re-read when it changes).
process.on('SIGHUP', () => {
  app.broker.runtimeConfig.reload().catch((error: unknown) => log.error({ err: error }, 'runtime config reload failed'))
})

try {
  await app.listen({ host: config.http.host, port: config.http.port })
  log.info({
    store: config.store.databaseUrl === undefined ? `embedded PGlite (${config.store.dataDir})` : 'postgres',
    deliveryMode: config.broker.deliveryMode,
    statusBatching: config.status.batching,
    statusAck: config.status.ack,
    ...(config.broker.processes > 1 ? { processes: config.broker.processes } : {}),
    // From process start (node's time origin), so module loading and opening the store count.
    startupMs: Math.round(performance.now())
  }, 'taskbroker ready; API docs at /docs')
} catch (error) {
  log.fatal({ err: error }, 'cannot listen')
  await app.close()
  process.exit(1)
}
