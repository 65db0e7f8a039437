/** API v1, mounted under /v1. Every route is schema-first and a few lines long. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { ClaimService } from '../../../core/claims/claim-service.js'
import type { TaskSignal } from '../../../core/claims/task-signal.js'
import type { Config } from '../../../config/config.js'
import type { Metrics } from '../../../core/metrics.js'
import type { StatusWriter } from '../../../core/status/status-writer.js'
import type { DeadletterStore } from '../../../store/deadletter-store.js'
import type { Backpressure } from '../../../core/produce/backpressure.js'
import type { TaskStore } from '../../../store/task-store.js'
import { claimRoutes } from './claims.js'
import { deadletterRoutes } from './deadletters.js'
import { statsRoutes } from './stats.js'
import { statusRoutes } from './status.js'
import { taskRoutes } from './tasks.js'

export interface V1Services {
  config: Config
  store: TaskStore
  deadletters: DeadletterStore
  claims: ClaimService
  signal: TaskSignal
  statusWriter: StatusWriter
  metrics: Metrics
  backpressure: Backpressure
  /** True when produce must drop tasks of this name (runtime config killswitch). */
  isKillswitched: (taskname: string) => boolean
  now: () => Date
  /** Tells other broker processes that tasks arrived (PostgreSQL NOTIFY); a no-op on PGlite. */
  announce: (queue: { application: string, namespace: string }, count: number) => void
}

export const v1Routes: FastifyPluginAsyncTypebox<{ services: V1Services }> = async (app, { services }) => {
  await app.register(taskRoutes, { services })
  await app.register(claimRoutes, { services })
  await app.register(statusRoutes, { services })
  await app.register(statsRoutes, { services })
  await app.register(deadletterRoutes, { services })
}
