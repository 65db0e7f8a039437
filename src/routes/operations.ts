/** Liveness, readiness and metrics: unauthenticated, outside /v1, hidden from the API docs. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { Metrics } from '../metrics.js'
import type { TaskStore } from '../store/task-store.js'

export interface OperationsServices {
  store: TaskStore
  metrics: Metrics
  /** Extra readiness checks (upkeep running on time, not shutting down): a reason, or null when fine. */
  notReadyReason: () => string | null
  retryAfterSec: number
}

const HealthSchema = Type.Object({ status: Type.String(), reason: Type.Optional(Type.String()) })

export const operationsRoutes: FastifyPluginAsyncTypebox<{ services: OperationsServices }> = async (app, { services }) => {
  app.get('/healthz', { schema: { hide: true, response: { 200: HealthSchema } } }, async () => ({ status: 'ok' }))

  app.get('/readyz', { schema: { hide: true, response: { 200: HealthSchema, 503: HealthSchema } } }, async (request, reply) => {
    let reason = services.notReadyReason()
    if (reason === null) {
      try {
        await services.store.ping()
      } catch (error) {
        request.log.warn({ err: error }, 'readiness: store unreachable')
        reason = 'store unreachable'
      }
    }
    if (reason !== null) {
      return reply.code(503).header('retry-after', String(services.retryAfterSec)).send({ status: 'unavailable', reason })
    }
    return { status: 'ready' }
  })

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    const text = await services.metrics.registry.metrics()
    return reply.type(services.metrics.registry.contentType).send(text)
  })
}
