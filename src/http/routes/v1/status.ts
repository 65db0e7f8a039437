import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Broker } from '../../../core/broker.js'
import { BatchStatusResponseSchema, createRequestSchemas, ErrorResponseSchema, StatusResponseSchema } from './schemas.js'
import { toClaimedTask } from './wire.js'

const errors = { 400: ErrorResponseSchema, 413: ErrorResponseSchema, 503: ErrorResponseSchema }

export const statusRoutes: FastifyPluginAsyncTypebox<{ broker: Broker }> = async (app, { broker }) => {
  const schemas = createRequestSchemas(broker.config.limits, broker.config.claims)

  app.post('/tasks/:id/status', {
    schema: {
      tags: ['workers'],
      operationId: 'reportStatus',
      summary: 'Report a task\'s outcome, optionally claiming the next task in the same round trip',
      params: schemas.TaskIdParams,
      body: schemas.StatusBody,
      response: { 200: StatusResponseSchema, ...errors, 409: ErrorResponseSchema }
    }
  }, async (request) => {
    const { status, max_attempts: maxAttempts, delay_on_retry: delayOnRetry, fetch_next: next } = request.body
    const update = { id: request.params.id, status, maxAttempts, delayOnRetry }
    if (next === undefined) {
      const outcome = await broker.report([update])
      return { applied: outcome.applied.length === 1, queued: outcome.queued.length === 1, task: null }
    }
    const { outcome, task } = await broker.reportAndClaimNext(update, next)
    return { applied: outcome.applied.length === 1, queued: outcome.queued.length === 1, task: task === undefined ? null : toClaimedTask(task) }
  })

  app.post('/tasks/status', {
    schema: {
      tags: ['workers'],
      operationId: 'reportStatuses',
      summary: `Report many outcomes at once (1–${broker.config.limits.statusMaxUpdates}); unknown ids are listed, never fail the batch`,
      body: schemas.BatchStatusBody,
      response: { 200: BatchStatusResponseSchema, ...errors }
    }
  }, async (request) => {
    const outcome = await broker.report(request.body.updates.map(u => ({ id: u.id, status: u.status, maxAttempts: u.max_attempts, delayOnRetry: u.delay_on_retry })))
    return { applied: outcome.applied.length, queued: outcome.queued.length, not_found: outcome.notFound }
  })
}
