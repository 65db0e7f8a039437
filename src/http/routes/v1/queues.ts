import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Broker, QueueSettings } from '../../../core/broker.js'
import { ErrorResponseSchema } from './schemas.js'
import { createQueueRequestSchemas, QueueChangeResponseSchema, QueueListResponseSchema } from './queue-schemas.js'

function toSettingsBody (settings: QueueSettings) {
  return {
    paused: settings.paused,
    max_processing: settings.maxProcessing,
    rate_limit: settings.rateLimit === null ? null : { per_sec: settings.rateLimit.perSec, burst: settings.rateLimit.burst },
    updated_at: settings.updatedAt.toISOString()
  }
}

export const queueRoutes: FastifyPluginAsyncTypebox<{ broker: Broker }> = async (app, { broker }) => {
  const schemas = createQueueRequestSchemas(broker.config.limits)

  app.get('/queues', {
    schema: {
      tags: ['queues'],
      operationId: 'listQueues',
      summary: 'Queues (application and namespace) with task counts by status, the oldest pending age and their settings',
      response: { 200: QueueListResponseSchema, 503: ErrorResponseSchema }
    }
  }, async () => {
    const listing = await broker.queues.list()
    return {
      queues: listing.queues.map(queue => ({
        application: queue.application,
        namespace: queue.namespace,
        counts: queue.counts,
        oldest_pending_age_sec: queue.oldestPendingAgeSec,
        settings: queue.settings === null ? null : { ...toSettingsBody(queue.settings), source: queue.settings.source }
      })),
      applications: listing.applications.map(row => ({ application: row.application, ...toSettingsBody(row) }))
    }
  })

  app.patch('/queues', {
    schema: {
      tags: ['queues'],
      operationId: 'changeQueue',
      summary: 'Pause or resume a queue, cap its tasks processing at once, limit its claims per second (null clears a setting)',
      body: schemas.ChangeBody,
      response: { 200: QueueChangeResponseSchema, 400: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request) => {
    const { application, namespace, paused, max_processing: maxProcessing, rate_limit: rate } = request.body
    const rateLimit = rate === undefined || rate === null ? rate : { perSec: rate.per_sec, burst: rate.burst ?? Math.max(1, Math.ceil(rate.per_sec)) }
    const settings = await broker.queues.change({ application, namespace, paused, maxProcessing, rateLimit })
    return { application, namespace: namespace ?? null, settings: settings === null ? null : toSettingsBody(settings) }
  })
}
