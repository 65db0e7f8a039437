import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Broker } from '../../../core/broker.js'
import { ErrorResponseSchema, StatsResponseSchema } from './schemas.js'

export const statsRoutes: FastifyPluginAsyncTypebox<{ broker: Broker }> = async (app, { broker }) => {
  app.get('/stats', {
    schema: {
      tags: ['operations'],
      operationId: 'getStats',
      summary: 'Task counts by status and by queue, dead letters, and the age of the oldest claimable task',
      response: { 200: StatsResponseSchema, 503: ErrorResponseSchema }
    }
  }, async () => {
    const stats = await broker.stats()
    return {
      by_status: stats.byStatus,
      queues: stats.byQueue,
      deadletters: stats.deadletters,
      oldest_pending_age_sec: stats.oldestPendingAgeSec,
      status_queue_depth: stats.statusQueueDepth,
      schedules: { total: stats.schedules.total, paused: stats.schedules.paused, from_file: stats.schedules.fromFile }
    }
  })
}
