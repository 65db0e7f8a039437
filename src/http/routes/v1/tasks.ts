import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { BackpressureError, InvalidRequestError, OutcomeUnknownError, TaskNotFoundError, TaskUndecodableError } from '../../../domain/errors.js'
import { initialStatus } from '../../../domain/schedule.js'
import { outcomeUnknown } from '../../../store/errors.js'
import { undecodableReason } from '../../../store/undecodable.js'
import { toActivation } from '../../../domain/activation.js'
import { toTaskState } from './wire.js'
import { receivedAtProblem } from '../../../domain/dates.js'
import type { V1Services } from './index.js'
import {
  createRequestSchemas, ErrorResponseSchema, parametersTooLarge, ProduceResponseSchema, ProduceUnavailableResponseSchema,
  TaskStateResponseSchema
} from './schemas.js'

export const taskRoutes: FastifyPluginAsyncTypebox<{ services: V1Services }> = async (app, { services }) => {
  const { store, metrics } = services
  const { limits } = services.config
  const schemas = createRequestSchemas(limits)

  app.post('/tasks', {
    schema: {
      tags: ['tasks'],
      operationId: 'produceTasks',
      summary: `Produce tasks (1–${limits.produceMaxTasks}); idempotent on id; 503 when the broker is over its limits`,
      body: schemas.ProduceBody,
      response: { 201: ProduceResponseSchema, 400: ErrorResponseSchema, 413: ErrorResponseSchema, 503: ProduceUnavailableResponseSchema }
    }
  }, async (request, reply) => {
    // A body at most half the limit cannot hold parameters over it (re-serialised JSON is never
    // twice as long as the JSON it was parsed from): most requests skip the measuring.
    if (!(Number(request.headers['content-length']) * 2 <= limits.parametersMaxBytes)) {
      const problem = parametersTooLarge(request.body.tasks, limits.parametersMaxBytes)
      if (problem !== null) throw new InvalidRequestError(problem)
    }
    const dateProblem = receivedAtProblem(request.body.tasks)
    if (dateProblem !== null) throw new InvalidRequestError(dateProblem)
    const now = services.now()
    const activations = request.body.tasks.map(input => toActivation(input, now))
    // Killswitched task names are dropped here, and removed by upkeep if already stored.
    const killswitched = activations.filter(a => services.isKillswitched(a.taskname)).map(a => a.id)
    metrics.tasksKillswitched.inc(killswitched.length)
    const accepted = killswitched.length === 0 ? activations : activations.filter(a => !services.isKillswitched(a.taskname))
    const delayed = new Set(accepted.filter(a => initialStatus(a, now, services.config.tasks.maxDelaySec) === 'delay').map(a => a.id))
    const refusal = await services.backpressure.refusal({ pending: accepted.length - delayed.size, delay: delayed.size })
    if (refusal !== null) {
      metrics.produceRefused.inc({ reason: 'backpressure' })
      throw new BackpressureError(refusal)
    }
    let result
    try {
      result = await store.produce(accepted, now)
    } catch (error) {
      if (!outcomeUnknown(error)) throw error
      // The insert may have committed: the client learns the ids to produce again (a stored id is
      // ignored), and waiting claims look, in case the tasks are there.
      wakeClaimers(services, accepted.filter(a => !delayed.has(a.id)))
      throw Object.assign(new OutcomeUnknownError(), { ids: activations.map(a => a.id) })
    }
    const inserted = new Set(result.inserted)
    const insertedDelayed = result.inserted.filter(id => delayed.has(id)).length
    services.backpressure.record({ pending: inserted.size - insertedDelayed, delay: insertedDelayed })
    metrics.tasksProduced.inc(inserted.size)
    metrics.tasksDuplicate.inc(result.duplicates.length)
    wakeClaimers(services, accepted.filter(a => inserted.has(a.id) && !delayed.has(a.id)))
    return reply.code(201).send({
      ids: activations.map(a => a.id),
      inserted: inserted.size,
      duplicates: result.duplicates,
      killswitched
    })
  })

  app.get('/tasks/:id', {
    schema: {
      tags: ['tasks'],
      operationId: 'getTask',
      summary: 'A task with its broker state',
      params: schemas.TaskIdParams,
      response: { 200: TaskStateResponseSchema, 404: ErrorResponseSchema, 409: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request) => {
    const task = await store.getById(request.params.id)
    if (task === null) throw new TaskNotFoundError(request.params.id)
    const undecodable = undecodableReason(task.activation, request.params.id)
    if (undecodable !== null) throw new TaskUndecodableError(request.params.id, undecodable)
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
