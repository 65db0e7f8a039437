import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Broker } from '../../../core/broker.js'
import type { ScheduleView } from '../../../core/schedules/schedules.js'
import { createScheduleSchemas } from './schedule-schemas.js'
import { ErrorResponseSchema } from './schemas.js'

const iso = (date: Date | null) => date === null ? null : date.toISOString()

function toScheduleBody (s: ScheduleView) {
  return {
    name: s.name,
    source: s.source,
    cron: s.cron,
    every_sec: s.everySec,
    timezone: s.timezone,
    task: s.task as never,
    overlap: s.overlap as 'allow' | 'skip',
    catch_up: s.catchUp as 'none' | 'latest' | 'all',
    paused: s.paused,
    next_fire_at: iso(s.nextFireAt),
    upcoming: s.upcoming.map(at => at.toISOString()),
    last_fire_at: iso(s.lastFireAt),
    last_task: s.lastTaskId === null ? null : { id: s.lastTaskId, status: s.lastTaskStatus ?? 'gone' },
    created_at: s.createdAt.toISOString(),
    updated_at: s.updatedAt.toISOString()
  }
}

export const scheduleRoutes: FastifyPluginAsyncTypebox<{ broker: Broker }> = async (app, { broker }) => {
  const { schedules } = broker
  const schemas = createScheduleSchemas(broker.config.limits)
  const errors = { 400: ErrorResponseSchema, 404: ErrorResponseSchema, 409: ErrorResponseSchema, 503: ErrorResponseSchema }

  app.put('/schedules/:name', {
    schema: {
      tags: ['schedules'],
      operationId: 'putSchedule',
      summary: 'Create or replace a schedule (cron or every_sec); 409 for one declared in the runtime config file',
      params: schemas.NameParams,
      body: schemas.Spec,
      response: { 200: schemas.Schedule, 201: schemas.Schedule, 400: ErrorResponseSchema, 409: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request, reply) => {
    const { schedule, created } = await schedules.put(request.params.name, request.body)
    return reply.code(created ? 201 : 200).send(toScheduleBody(schedule))
  })

  app.get('/schedules', {
    schema: {
      tags: ['schedules'],
      operationId: 'listSchedules',
      summary: 'Every schedule with its next windows, last fire and last task',
      response: { 200: schemas.ScheduleList, 503: ErrorResponseSchema }
    }
  }, async () => ({ schedules: (await schedules.list()).map(toScheduleBody) }))

  app.get('/schedules/:name', {
    schema: {
      tags: ['schedules'],
      operationId: 'getSchedule',
      summary: 'A schedule with its next windows, last fire and last task',
      params: schemas.NameParams,
      response: { 200: schemas.Schedule, 400: ErrorResponseSchema, 404: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request) => toScheduleBody(await schedules.get(request.params.name)))

  app.delete('/schedules/:name', {
    schema: {
      tags: ['schedules'],
      operationId: 'deleteSchedule',
      summary: 'Remove a schedule (its tasks already produced stay); 409 for one declared in the runtime config file',
      params: schemas.NameParams,
      response: { 204: schemas.NoContent, ...errors }
    }
  }, async (request, reply) => {
    await schedules.remove(request.params.name)
    return reply.code(204).send(null)
  })

  app.post('/schedules/:name/trigger', {
    schema: {
      tags: ['schedules'],
      operationId: 'triggerSchedule',
      summary: 'Fire a schedule now, outside its windows (paused or not; overlap does not apply); next_fire_at stays',
      params: schemas.NameParams,
      response: { 201: schemas.Trigger, 400: ErrorResponseSchema, 404: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request, reply) => reply.code(201).send(await schedules.trigger(request.params.name)))
}
