import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Broker } from '../../../core/broker.js'
import { ClaimResponseSchema, createRequestSchemas, ErrorResponseSchema } from './schemas.js'
import { claimAnswerJson, sendJsonText, untilClientGone } from './wire.js'

export const claimRoutes: FastifyPluginAsyncTypebox<{ broker: Broker }> = async (app, { broker }) => {
  const schemas = createRequestSchemas(broker.config.limits, broker.config.claims)
  app.post('/tasks/claim', {
    schema: {
      tags: ['workers'],
      operationId: 'claimTasks',
      summary: 'Claim tasks (oldest first), optionally long-polling until one arrives',
      body: schemas.ClaimBody,
      response: { 200: ClaimResponseSchema, 400: ErrorResponseSchema, 409: ErrorResponseSchema, 503: ErrorResponseSchema }
    }
  }, async (request, reply) => {
    const { application, namespace, limit, wait_ms: waitMs } = request.body
    const tasks = await untilClientGone(reply.raw, abort => broker.claim({ application, namespace, limit, waitMs, abort }))
    return await sendJsonText(reply, claimAnswerJson(tasks))
  })
}
