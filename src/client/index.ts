/** `taskbroker/client`: the API client, the worker SDK and their errors. */
export { createClient, type ClientOptions, type CallOptions, type TaskbrokerClient } from './client.js'
export { TaskbrokerError, TaskbrokerUnreachableError, NOTHING_DONE_CODES, isRouteNotFound } from './errors.js'
export type { RetryOptions } from './retry.js'
export type * from './types.js'
export { createWorker, type Worker, type WorkerOptions, type TaskEnd } from '../worker/worker.js'
export { retry, TaskAbortedError, type Handler, type HandlerTask, type TaskContext, type AbortReason, type RetryRequest } from '../worker/run-task.js'
export { createPushHandler, createPushReceiver, type PushReceiver, type PushReceiverOptions } from '../worker/push.js'
export { taskbrokerPush, type TaskbrokerPushOptions } from '../worker/push-fastify.js'
