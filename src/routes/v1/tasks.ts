import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { TaskNotFoundError } from '../../errors.js'
import { toActivation, toTaskState } from '../../tasks/activation.js'
import type { V1Services } from './index.js'
import {
  ErrorResponseSchema, ProduceBodySchema, ProduceResponseSchema, TaskIdParamsSchema, TaskStateResponseSchema
} from './schemas.js'

export const taskRoutes: FastifyPluginAsyncTypebox<{ services: V1Services }> = async (app, { services }) => {
  const { store, metrics } = services

  app.post('/tasks', {
    schema: {
      tags: ['tasks'],
      summary: 'Produce tasks (1–1000); idempotent on id',
      body: ProduceBodySchema,
      response: { 201: ProduceResponseSchema, 400: ErrorResponseSchema, 413: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request, reply) => {
    const now = services.now()
    const activations = request.body.tasks.map(input => toActivation(input, now))
    const result = await store.produce(activations, now)
    metrics.tasksProduced.inc(result.inserted.length)
    metrics.tasksDuplicate.inc(result.duplicates.length)
    const inserted = new Set(result.inserted)
    wakeClaimers(services, activations.filter(a => inserted.has(a.id) && (a.delay ?? 0) === 0))
    return reply.code(201).send({ ids: activations.map(a => a.id), inserted: result.inserted.length, duplicates: result.duplicates })
  })

  app.get('/tasks/:id', {
    schema: {
      tags: ['tasks'],
      summary: 'A task with its broker state',
      params: TaskIdParamsSchema,
      response: { 200: TaskStateResponseSchema, 404: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request) => {
    const task = await store.getById(request.params.id)
    if (task === null) throw new TaskNotFoundError(request.params.id)
    return toTaskState(task)
  })
}

/** Wakes long-polling claims here and in other brokers: one wake per claimable task and queue. */
function wakeClaimers (services: V1Services, activations: Array<{ application: string, namespace: string }>) {
  const counts = new Map<string, { application: string, namespace: string, count: number }>()
  for (const a of activations) {
    const key = `${a.application}\u0000${a.namespace}`
    const entry = counts.get(key)
    if (entry === undefined) counts.set(key, { application: a.application, namespace: a.namespace, count: 1 })
    else entry.count++
  }
  for (const { count, ...queue } of counts.values()) {
    services.signal.notify(queue, count)
    services.announce(queue, count)
  }
}
