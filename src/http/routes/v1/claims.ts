import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { InvalidRequestError, WrongDeliveryModeError } from '../../../domain/errors.js'
import { toClaimedTask } from './wire.js'
import type { V1Services } from './index.js'
import { ClaimResponseSchema, createRequestSchemas, ErrorResponseSchema } from './schemas.js'

export const claimRoutes: FastifyPluginAsyncTypebox<{ services: V1Services }> = async (app, { services }) => {
  const schemas = createRequestSchemas(services.config.limits)
  app.post('/tasks/claim', {
    schema: {
      tags: ['workers'],
      operationId: 'claimTasks',
      summary: 'Claim tasks (oldest first), optionally long-polling until one arrives',
      body: schemas.ClaimBody,
      response: { 200: ClaimResponseSchema, 400: ErrorResponseSchema, 409: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request, reply) => {
    if (services.config.broker.deliveryMode === 'push') {
      throw new WrongDeliveryModeError('The broker delivers tasks itself (push mode); claims are not allowed')
    }
    const { application, namespace, limit = 1, wait_ms: waitMs = 0 } = request.body
    if (namespace !== undefined && application === undefined) {
      throw new InvalidRequestError('body/namespace needs body/application: a namespace filter without an application is not allowed')
    }
    // Stop waiting when the client goes away (the response closes before it was sent).
    const abort = new AbortController()
    const onClose = () => abort.abort()
    reply.raw.once('close', onClose)
    try {
      const tasks = await services.claims.claim({ application, namespace }, limit, waitMs, abort.signal)
      return { tasks: tasks.map(toClaimedTask) }
    } finally {
      reply.raw.off('close', onClose)
    }
  })
}
