/**
 * The push receiver as a Fastify plugin: `app.register(taskbrokerPush, {path: '/push', handler,
 * secrets})`. The route reads its body as text (the signature covers the exact bytes); the
 * receiver drains when the app closes.
 */
import type { FastifyPluginAsync } from 'fastify'
import { createPushReceiver, PUSH_MAX_BODY_BYTES, type PushReceiverOptions } from './push.js'

export interface TaskbrokerPushOptions extends PushReceiverOptions {
  /** Route of the pushes (default /push). */
  path?: string
}

export const taskbrokerPush: FastifyPluginAsync<TaskbrokerPushOptions> = async (app, options) => {
  const receiver = createPushReceiver(options)
  // Encapsulated: JSON bodies stay text in this plugin only.
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: PUSH_MAX_BODY_BYTES }, (_request, body, done) => done(null, body))
  app.post(options.path ?? '/push', async (request, reply) => {
    const answer = receiver.receive({
      method: request.method,
      path: request.url,
      body: typeof request.body === 'string' ? request.body : '',
      header: (name) => { const v = request.headers[name]; return typeof v === 'string' ? v : undefined }
    })
    return await reply.code(answer.statusCode).headers(answer.headers ?? {}).send(answer.body)
  })
  app.addHook('onClose', async () => { await receiver.close() })
  app.decorate('taskbrokerPush', receiver)
}
