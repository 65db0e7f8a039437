/**
 * Wires push delivery into the app (TASKBROKER_DELIVERY_MODE=push):
 * - starts once the server listens (callback URLs need the broker's address; a broker that does
 *   not listen could not hear back from its workers anyway);
 * - preClose: the fetch loops stop claiming, while HTTP requests drain;
 * - onClose: queued tasks go back to pending, pushes in flight finish (or are aborted near the
 *   deadline), the outcome batcher flushes. Registered after the status writer and the store, so
 *   it runs before either closes.
 */
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { TaskSignal } from '../claims/task-signal.js'
import type { Config } from '../../config/config.js'
import type { Database } from '../../db/database.js'
import type { Metrics } from '../metrics.js'
import { createPushStore } from '../../store/push-store.js'
import { createPushDelivery, type PushDelivery } from './push-delivery.js'
import { createPushWorkers } from './workers.js'

export function installPushDelivery (app: FastifyInstance, deps: {
  config: Config
  database: Database
  signal: TaskSignal
  metrics: Metrics
  log: Logger
}): PushDelivery {
  const { config, log } = deps
  const delivery = createPushDelivery({
    config: config.push,
    store: createPushStore(deps.database, { processingDeadlineGraceSec: config.tasks.processingDeadlineGraceSec }),
    workers: createPushWorkers(config.push, { secrets: config.auth.secrets }),
    signal: deps.signal,
    metrics: deps.metrics,
    log
  })
  app.addHook('onListen', async () => {
    delivery.start(config.push.publicUrl ?? derivedPublicUrl(config.http.host, app.server.address()))
  })
  app.addHook('preClose', async () => { delivery.stopFetching() })
  app.addHook('onClose', async () => { await delivery.close(config.broker.shutdownTimeoutMs) })
  return delivery
}

/** http://HOST:PORT as the server listens; a wildcard bind address becomes loopback. */
export function derivedPublicUrl (host: string, address: AddressInfo | string | null): string {
  const port = address !== null && typeof address === 'object' ? address.port : 0
  let name = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host
  if (name.includes(':') && !name.startsWith('[')) name = `[${name}]`
  return `http://${name}:${port}`
}
