import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { DeadletterNotFoundError, DeadletterUndecodableError, InvalidRequestError, TaskAlreadyLiveError } from '../../../domain/errors.js'
import { decodeCursor } from '../../../store/deadletter-store.js'
import {
  createDeadletterRequestSchemas, DeadletterListResponseSchema, NoContentSchema, RequeueResponseSchema
} from './deadletter-schemas.js'
import type { V1Services } from './index.js'
import { ErrorResponseSchema } from './schemas.js'
import { toDeadletterBody } from './wire.js'

export const deadletterRoutes: FastifyPluginAsyncTypebox<{ services: V1Services }> = async (app, { services }) => {
  const { deadletters } = services
  const schemas = createDeadletterRequestSchemas(services.config.limits)

  app.get('/deadletters', {
    schema: {
      tags: ['deadletters'],
      operationId: 'listDeadletters',
      summary: 'Dead letters, oldest first, a page at a time (keyset cursor)',
      querystring: schemas.ListQuery,
      response: { 200: DeadletterListResponseSchema, 400: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request) => {
    const { application, namespace, taskname, limit = 100, cursor } = request.query
    if (cursor !== undefined && decodeCursor(cursor) === null) {
      throw new InvalidRequestError('querystring/cursor is not a cursor this API handed out: pass next_cursor of a previous page as is')
    }
    const page = await deadletters.list({ application, namespace, taskname, limit, after: cursor })
    return { deadletters: page.items.map(toDeadletterBody), next_cursor: page.nextCursor }
  })

  app.post('/deadletters/:id/requeue', {
    schema: {
      tags: ['deadletters'],
      operationId: 'requeueDeadletter',
      summary: 'Put a dead letter back as a fresh pending task (no attempts counted)',
      params: schemas.IdParams,
      response: {
        200: RequeueResponseSchema,
        400: ErrorResponseSchema,
        404: ErrorResponseSchema,
        409: ErrorResponseSchema,
        503: ErrorResponseSchema
      }
    }
  }, async (request) => {
    const { id } = request.params
    const result = await deadletters.requeue(id, services.now())
    if (result.outcome === 'not_found') throw new DeadletterNotFoundError(id)
    if (result.outcome === 'live') throw new TaskAlreadyLiveError(id)
    if (result.outcome === 'undecodable') throw new DeadletterUndecodableError(id, result.reason)
    // Wake long-polling claims here and in other brokers.
    services.signal.notify(result.queue, 1)
    services.announce(result.queue, 1)
    return { id, status: 'pending' as const }
  })

  app.delete('/deadletters/:id', {
    schema: {
      tags: ['deadletters'],
      operationId: 'deleteDeadletter',
      summary: 'Purge a dead letter',
      params: schemas.IdParams,
      response: { 204: NoContentSchema, 400: ErrorResponseSchema, 404: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request, reply) => {
    if (!await deadletters.remove(request.params.id)) throw new DeadletterNotFoundError(request.params.id)
    return reply.code(204).send(null)
  })
}
