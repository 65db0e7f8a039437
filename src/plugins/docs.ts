/**
 * OpenAPI: @fastify/swagger builds the spec from the route schemas, @fastify/swagger-ui serves the
 * interactive page at /docs, and /openapi.json serves the spec (the same as openapi/openapi.json).
 */
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import { packageVersion } from '../paths.js'

export async function registerDocs (app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Taskbroker API',
        version: packageVersion(),
        description: 'Produce tasks, claim them from workers and report their outcomes. ' +
          'Errors are `{statusCode, code, error, message}`; 503 answers carry Retry-After.'
      },
      tags: [
        { name: 'tasks', description: 'producing and inspecting tasks' },
        { name: 'workers', description: 'claiming tasks and reporting outcomes' },
        { name: 'operations', description: 'state of the broker' }
      ]
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` }
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
}
