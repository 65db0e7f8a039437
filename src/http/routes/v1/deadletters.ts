import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Broker } from '../../../core/broker.js'
import {
  createDeadletterRequestSchemas, DeadletterListResponseSchema, NoContentSchema, RequeueResponseSchema
} from './deadletter-schemas.js'
import { ErrorResponseSchema } from './schemas.js'
import { toDeadletterBody } from './wire.js'

export const deadletterRoutes: FastifyPluginAsyncTypebox<{ broker: Broker }> = async (app, { broker }) => {
  const { deadletters } = broker
  const schemas = createDeadletterRequestSchemas(broker.config.limits)

  app.get('/deadletters', {
    schema: {
      tags: ['deadletters'],
      operationId: 'listDeadletters',
      summary: 'Dead letters, oldest first, a page at a time (keyset cursor)',
      querystring: schemas.ListQuery,
      response: { 200: DeadletterListResponseSchema, 400: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request) => {
    const page = await deadletters.list(request.query)
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
    await deadletters.requeue(id)
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
    await deadletters.remove(request.params.id)
    return reply.code(204).send(null)
  })
}
