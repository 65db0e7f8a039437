import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Broker } from '../../../core/broker.js'
import { ClaimResponseSchema, createRequestSchemas, ErrorResponseSchema } from './schemas.js'
import { claimAnswerJson, sendJsonText } from './wire.js'

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
    // Stop waiting when the client goes away (the response closes before it was sent).
    const abort = new AbortController()
    const onClose = () => abort.abort()
    reply.raw.once('close', onClose)
    try {
      const tasks = await broker.claim({ application, namespace, limit, waitMs, abort: abort.signal })
      return await sendJsonText(reply, claimAnswerJson(tasks))
    } finally {
      reply.raw.off('close', onClose)
    }
  })
}
