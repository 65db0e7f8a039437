import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { InvalidRequestError, WrongDeliveryModeError } from '../../../domain/errors.js'
import type { StatusUpdate } from '../../../domain/types.js'
import { toClaimedTask } from './wire.js'
import type { V1Services } from './index.js'
import { BatchStatusResponseSchema, createRequestSchemas, ErrorResponseSchema, StatusResponseSchema } from './schemas.js'

const errors = { 400: ErrorResponseSchema, 413: ErrorResponseSchema, 503: ErrorResponseSchema }

export const statusRoutes: FastifyPluginAsyncTypebox<{ services: V1Services }> = async (app, { services }) => {
  const { statusWriter } = services
  const schemas = createRequestSchemas(services.config.limits)

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
    if (next !== undefined && services.config.broker.deliveryMode === 'push') {
      // Refused before anything is written: a worker asking for tasks is misconfigured for push mode.
      throw new WrongDeliveryModeError('The broker delivers tasks itself (push mode); fetch_next is not allowed')
    }
    if (next?.namespace !== undefined && next.application === undefined) {
      throw new InvalidRequestError('body/fetch_next/namespace needs body/fetch_next/application')
    }
    const update: StatusUpdate = { id: request.params.id, status, maxAttempts, delayOnRetry }
    if (next === undefined) {
      const outcome = await statusWriter.report([update])
      return { applied: outcome.applied.length === 1, queued: outcome.queued.length === 1, task: null }
    }
    const { outcome, task } = await statusWriter.reportAndClaimNext(update, { application: next.application, namespace: next.namespace })
    return { applied: outcome.applied.length === 1, queued: outcome.queued.length === 1, task: task === undefined ? null : toClaimedTask(task) }
  })

  app.post('/tasks/status', {
    schema: {
      tags: ['workers'],
      operationId: 'reportStatuses',
      summary: `Report many outcomes at once (1–${services.config.limits.statusMaxUpdates}); unknown ids are listed, never fail the batch`,
      body: schemas.BatchStatusBody,
      response: { 200: BatchStatusResponseSchema, ...errors }
    }
  }, async (request) => {
    // The same id twice in one request: the last report wins, as in the batcher.
    const byId = new Map<string, StatusUpdate>()
    for (const u of request.body.updates) {
      byId.delete(u.id)
      byId.set(u.id, { id: u.id, status: u.status, maxAttempts: u.max_attempts, delayOnRetry: u.delay_on_retry })
    }
    const outcome = await statusWriter.report([...byId.values()])
    return { applied: outcome.applied.length, queued: outcome.queued.length, not_found: outcome.notFound }
  })
}
