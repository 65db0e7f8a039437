/** Liveness, readiness and metrics: unauthenticated (no security in the spec), outside /v1. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { Broker } from '../../core/broker.js'
import { clusterMetrics } from '../../core/cluster.js'

const Health = (description: string) => Type.Object({
  status: Type.String({ description: 'ok, ready or unavailable' }),
  reason: Type.Optional(Type.String({ description: 'why the broker is not ready' }))
}, { description })
/** Exempt from signing by TASKBROKER_AUTH_EXEMPT_PATHS' default (the spec says which routes are, as configured). */
const open = { tags: ['operations'] }

export const operationsRoutes: FastifyPluginAsyncTypebox<{ broker: Broker }> = async (app, { broker }) => {
  const { metrics } = broker
  app.get('/healthz', {
    schema: { ...open, operationId: 'getHealth', summary: 'Liveness: the process serves HTTP', response: { 200: Health('The broker process is alive') } }
  }, async () => ({ status: 'ok' }))

  app.get('/readyz', {
    schema: {
      ...open,
      operationId: 'getReadiness',
      summary: 'Readiness: the store is reachable, upkeep runs on time and the broker is not shutting down',
      response: {
        200: Health('Ready to serve'),
        503: Health('Not ready (the reason says why); Retry-After says when to ask again')
      }
    }
  }, async (_request, reply) => {
    const reason = await broker.notReadyReason()
    if (reason !== null) {
      return reply.code(503).header('retry-after', String(broker.config.http.retryAfterSec)).send({ status: 'unavailable', reason })
    }
    return { status: 'ready' }
  })

  app.get('/metrics', {
    schema: {
      ...open,
      operationId: 'getMetrics',
      summary: 'Prometheus metrics',
      response: {
        200: { description: 'Metrics in the Prometheus text format', content: { 'text/plain': { schema: Type.String() } } }
      }
    }
  }, async (_request, reply) => {
    // With TASKBROKER_PROCESSES > 1: every process's metrics, summed by the primary.
    const text = await clusterMetrics() ?? await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(text)
  })
}
