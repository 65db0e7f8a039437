/** Heartbeats, release and cancel: what a worker holding a task (or an operator) may do besides reporting it. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Broker } from '../../../core/broker.js'
import {
  BatchHeartbeatResponseSchema, CancelManyResponseSchema, CancelResponseSchema, createLeaseSchemas, HeartbeatResponseSchema, ReleaseResponseSchema
} from './lease-schemas.js'
import { createRequestSchemas, ErrorResponseSchema } from './schemas.js'

const errors = { 400: ErrorResponseSchema, 413: ErrorResponseSchema, 503: ErrorResponseSchema }

export const leaseRoutes: FastifyPluginAsyncTypebox<{ broker: Broker }> = async (app, { broker }) => {
  const { limits } = broker.config
  const { TaskIdParams } = createRequestSchemas(limits, broker.config.claims)
  const schemas = createLeaseSchemas(limits, broker.config.leases.heartbeatMaxExtendSec)

  app.post('/tasks/:id/heartbeat', {
    schema: {
      tags: ['workers'],
      operationId: 'heartbeatTask',
      summary: 'Extend a processing task\'s deadline and store its progress; 409 when it is not processing or held under another lease',
      params: TaskIdParams,
      body: schemas.HeartbeatBody,
      response: { 200: HeartbeatResponseSchema, ...errors, 404: ErrorResponseSchema, 409: ErrorResponseSchema }
    }
  }, async (request) => {
    const { extend_sec: extendSec, progress, lease } = request.body
    const answer = await broker.leases.heartbeat({ id: request.params.id, extendSec, progress, lease })
    return { processing_deadline: answer.processingDeadline.toISOString(), cancel_requested: answer.cancelRequested }
  })

  app.post('/tasks/heartbeat', {
    schema: {
      tags: ['workers'],
      operationId: 'heartbeatTasks',
      summary: `Heartbeats of many tasks at once (1–${limits.statusMaxUpdates}); ids not processing or stale are listed, never fail the batch`,
      body: schemas.BatchHeartbeatBody,
      response: { 200: BatchHeartbeatResponseSchema, ...errors }
    }
  }, async (request) => {
    const answer = await broker.leases.heartbeatMany(request.body.heartbeats.map(b => ({ id: b.id, extendSec: b.extend_sec, progress: b.progress, lease: b.lease })))
    return {
      extended: answer.extended.map(e => ({ id: e.id, processing_deadline: e.processingDeadline.toISOString(), cancel_requested: e.cancelRequested })),
      not_processing: answer.notProcessing,
      stale: answer.stale
    }
  })

  app.post('/tasks/:id/release', {
    schema: {
      tags: ['workers'],
      operationId: 'releaseTask',
      summary: 'Give a processing task back: pending again at once, no attempt counted; 409 when it is not processing or held under another lease',
      params: TaskIdParams,
      body: schemas.ReleaseBody,
      response: { 200: ReleaseResponseSchema, ...errors, 404: ErrorResponseSchema, 409: ErrorResponseSchema }
    }
  }, async (request) => {
    const { cancelled } = await broker.leases.release(request.params.id, request.body.lease)
    return { released: !cancelled, cancelled }
  })

  app.post('/tasks/:id/cancel', {
    schema: {
      tags: ['tasks'],
      operationId: 'cancelTask',
      summary: 'Cancel a task: removed when waiting (pending, delay, retry); when held by a worker its next report ends it',
      params: TaskIdParams,
      response: { 200: CancelResponseSchema, ...errors, 404: ErrorResponseSchema, 409: ErrorResponseSchema }
    }
  }, async (request) => await broker.leases.cancel(request.params.id))

  app.post('/tasks/cancel', {
    schema: {
      tags: ['tasks'],
      operationId: 'cancelTasks',
      summary: 'Cancel every task of an application (optionally of one namespace and task name), as a single cancel does each',
      body: schemas.CancelManyBody,
      response: { 200: CancelManyResponseSchema, ...errors }
    }
  }, async (request) => await broker.leases.cancelMany(request.body))
}
