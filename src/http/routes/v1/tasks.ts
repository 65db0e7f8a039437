import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Broker } from '../../../core/broker.js'
import {
  createRequestSchemas, ErrorResponseSchema, ProduceResponseSchema, ProduceUnavailableResponseSchema, TaskStateResponseSchema
} from './schemas.js'
import { toTaskState } from './wire.js'

export const taskRoutes: FastifyPluginAsyncTypebox<{ broker: Broker }> = async (app, { broker }) => {
  const { limits } = broker.config
  const schemas = createRequestSchemas(limits, broker.config.claims)

  app.post('/tasks', {
    schema: {
      tags: ['tasks'],
      operationId: 'produceTasks',
      summary: `Produce tasks (1–${limits.produceMaxTasks}); idempotent on id; 503 when the broker is over its limits`,
      body: schemas.ProduceBody,
      response: { 201: ProduceResponseSchema, 400: ErrorResponseSchema, 413: ErrorResponseSchema, 503: ProduceUnavailableResponseSchema }
    }
  }, async (request, reply) => {
    const outcome = await broker.produce(request.body.tasks, { receivedBytes: Number(request.headers['content-length']) })
    return reply.code(201).send(outcome)
  })

  app.get('/tasks/:id', {
    schema: {
      tags: ['tasks'],
      operationId: 'getTask',
      summary: 'A task with its broker state',
      params: schemas.TaskIdParams,
      response: { 200: TaskStateResponseSchema, 404: ErrorResponseSchema, 409: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request) => toTaskState(await broker.getTask(request.params.id)))
}
