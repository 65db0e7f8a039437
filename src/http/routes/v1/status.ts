import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Broker } from '../../../core/broker.js'
import { BatchStatusResponseSchema, createRequestSchemas, ErrorResponseSchema, StatusResponseSchema } from './schemas.js'
import { claimedTaskJson, sendJsonText, untilClientGone } from './wire.js'
import { LeaseStaleError } from '../../../domain/errors.js'
import type { StatusUpdate } from '../../../domain/types.js'
import type { ServerResponse } from 'node:http'

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
  }, async (request, reply) => {
    const { status, max_attempts: maxAttempts, delay_on_retry: delayOnRetry, backoff, lease, fetch_next: next } = request.body
    const update = { id: request.params.id, status, maxAttempts, delayOnRetry, backoff, lease }
    const { outcome, task } = next === undefined
      ? { outcome: await broker.report([update]), task: undefined }
      : await reportAndClaimNext(broker, update, next, reply.raw)
    // A stale report changed nothing; a task claimed beside it (fetch_next) is the worker's all the same.
    if (outcome.stale.length === 1 && task === undefined) throw new LeaseStaleError(update.id)
    const applied = outcome.applied.length === 1
    const queued = outcome.queued.length === 1
    const cancelled = outcome.cancelled.length === 1
    if (task === undefined) return { applied, queued, task: null, ...(cancelled ? { cancelled: true as const } : {}) }
    return await sendJsonText(reply, `{"applied":${String(applied)},"queued":${String(queued)},"task":${claimedTaskJson(task)}${cancelled ? ',"cancelled":true' : ''}}`)
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
    const outcome = await broker.report(request.body.updates.map(u => ({
      id: u.id, status: u.status, maxAttempts: u.max_attempts, delayOnRetry: u.delay_on_retry, backoff: u.backoff, lease: u.lease
    })))
    return {
      applied: outcome.applied.length,
      queued: outcome.queued.length,
      not_found: outcome.notFound,
      ...(outcome.stale.length > 0 ? { stale: outcome.stale } : {}),
      ...(outcome.cancelled.length > 0 ? { cancelled: outcome.cancelled } : {})
    }
  })
}

/** A report with `fetch_next`; its long-poll for the next task (`wait_ms`) stops when the client goes away. */
async function reportAndClaimNext (broker: Broker, update: StatusUpdate, next: { application?: string, namespace?: string, wait_ms?: number }, response: ServerResponse) {
  const filter = { application: next.application, namespace: next.namespace }
  if (next.wait_ms === undefined || next.wait_ms === 0) return await broker.reportAndClaimNext(update, filter)
  const waitMs = next.wait_ms
  return await untilClientGone(response, abort => broker.reportAndClaimNext(update, { ...filter, waitMs, abort }))
}
