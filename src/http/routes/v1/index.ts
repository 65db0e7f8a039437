/** API v1, mounted under /v1. Every route is schema-first and a few lines long: parse, call the broker, shape the answer. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Broker } from '../../../core/broker.js'
import { claimRoutes } from './claims.js'
import { deadletterRoutes } from './deadletters.js'
import { leaseRoutes } from './leases.js'
import { queueRoutes } from './queues.js'
import { scheduleRoutes } from './schedules.js'
import { statsRoutes } from './stats.js'
import { statusRoutes } from './status.js'
import { taskRoutes } from './tasks.js'

export const v1Routes: FastifyPluginAsyncTypebox<{ broker: Broker }> = async (app, { broker }) => {
  await app.register(taskRoutes, { broker })
  await app.register(claimRoutes, { broker })
  await app.register(statusRoutes, { broker })
  await app.register(statsRoutes, { broker })
  await app.register(deadletterRoutes, { broker })
  await app.register(leaseRoutes, { broker })
  await app.register(queueRoutes, { broker })
  await app.register(scheduleRoutes, { broker })
}
