import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { V1Services } from './index.js'
import { ErrorResponseSchema, StatsResponseSchema } from './schemas.js'

export const statsRoutes: FastifyPluginAsyncTypebox<{ services: V1Services }> = async (app, { services }) => {
  app.get('/stats', {
    schema: {
      tags: ['operations'],
      operationId: 'getStats',
      summary: 'Task counts by status and by queue, dead letters, and the age of the oldest claimable task',
      response: { 200: StatsResponseSchema, 503: ErrorResponseSchema }
    }
  }, async () => {
    const [stats, deadletters] = await Promise.all([services.store.stats(services.now()), services.deadletters.count()])
    return {
      by_status: stats.byStatus,
      queues: stats.byQueue,
      deadletters,
      oldest_pending_age_sec: stats.oldestPendingAgeSec,
      status_queue_depth: services.statusWriter.depth
    }
  })
}
