/**
 * Every error the API answers with: a stable `TASKBROKER_*` code, a message and an HTTP status.
 * The body is always `{statusCode, code, error, message}` (see src/http/plugins/errors.ts).
 */
import createError from '@fastify/error'

// Client mistakes (4xx)
export const InvalidRequestError = createError('TASKBROKER_INVALID_REQUEST', '%s', 400)
export const UnauthorizedError = createError('TASKBROKER_UNAUTHORIZED', 'Authentication failed', 401)
export const ReplayedError = createError(
  'TASKBROKER_REPLAYED',
  'This signature was already used; sign the request again (new timestamp or taskbroker-nonce)',
  401
)
export const UnsupportedMediaTypeError = createError(
  'TASKBROKER_UNSUPPORTED_MEDIA_TYPE',
  'Request bodies must be application/json (got %s)',
  415
)
export const TaskNotFoundError = createError('TASKBROKER_TASK_NOT_FOUND', 'Task %s not found', 404)
export const WrongDeliveryModeError = createError('TASKBROKER_WRONG_DELIVERY_MODE', '%s', 409)
// Leases (heartbeat, release, fenced reports)
export const TaskNotProcessingError = createError('TASKBROKER_TASK_NOT_PROCESSING', 'Task %s is not processing (not claimed, or already reported, reset or released)', 409)
export const LeaseStaleError = createError(
  'TASKBROKER_LEASE_STALE',
  'Task %s is held under another lease (it was reset or claimed again); this worker no longer holds it',
  409
)
export const TaskNotCancellableError = createError('TASKBROKER_TASK_NOT_CANCELLABLE', 'Task %s has already finished; it cannot be cancelled', 409)

// The broker cannot take the request right now (503 + Retry-After); nothing was lost.
const StoreUnavailableBase = createError('TASKBROKER_STORE_UNAVAILABLE', 'The task store is unavailable; retry later', 503)
/**
 * The detail (the driver's message, e.g. "connect ECONNREFUSED 10.0.0.5:5432") names the database's
 * host and port: it goes to the log (the error handler logs it), never into the answer.
 */
export class StoreUnavailableError extends StoreUnavailableBase {
  readonly detail: string
  constructor (detail: string, options?: { cause?: unknown }) {
    if (options === undefined) super()
    else super(options)
    this.name = 'StoreUnavailableError'
    this.detail = detail
  }
}
export const StatusQueueFullError = createError('TASKBROKER_STATUS_QUEUE_FULL', 'Too many status reports are queued; retry later', 503)
export const StatusAckTimeoutError = createError(
  'TASKBROKER_STATUS_ACK_TIMEOUT',
  'The status report is queued but was not written in time; it will still be applied',
  503
)
export const BackpressureError = createError('TASKBROKER_BACKPRESSURE', 'The broker is over its task limits: %s; retry later', 503)
export const ShuttingDownError = createError('TASKBROKER_SHUTTING_DOWN', 'The broker is shutting down', 503)
/**
 * The store got the statement but no answer in time (a timeout, a connection lost): it may have
 * committed. Not "nothing changed"; the answer carries what a client needs to retry safely.
 */
export const OutcomeUnknownError = createError(
  'TASKBROKER_OUTCOME_UNKNOWN',
  'The store took the statement but gave no answer in time: the tasks may or may not be stored. Produce them again with the ids listed (ids already stored are ignored)',
  503
)
export const TooManyWaitersError = createError(
  'TASKBROKER_TOO_MANY_WAITERS',
  'As many claims as allowed are already long-polling (TASKBROKER_CLAIM_MAX_WAITERS = %s); retry later',
  503
)
export const BodyBudgetFullError = createError(
  'TASKBROKER_BODY_BUDGET_FULL',
  'Too many request body bytes are being received at once (TASKBROKER_MAX_INFLIGHT_BODY_BYTES); retry later',
  503
)
export const ReplayCacheFullError = createError(
  'TASKBROKER_REPLAY_CACHE_FULL',
  'Too many signed requests to remember within the timestamp window (TASKBROKER_AUTH_REPLAY_CACHE_SIZE); retry later',
  503
)

/** Errors answered with 503 carry a Retry-After header. */
export function isRetryLater (error: { statusCode?: number }): boolean {
  return error.statusCode === 503
}

// Dead letters (/v1/deadletters)
export const DeadletterNotFoundError = createError('TASKBROKER_DEADLETTER_NOT_FOUND', 'Dead letter %s not found', 404)
export const TaskAlreadyLiveError = createError('TASKBROKER_TASK_EXISTS', 'Task %s is live; a dead letter with its id cannot be requeued', 409)
export const DeadletterUndecodableError = createError(
  'TASKBROKER_DEADLETTER_UNDECODABLE',
  'Dead letter %s cannot be requeued: its stored activation cannot be decoded (%s); see stored_activation in the list',
  409
)

// Schedules (/v1/schedules)
export const ScheduleNotFoundError = createError('TASKBROKER_SCHEDULE_NOT_FOUND', 'Schedule %s not found', 404)
export const ScheduleFromFileError = createError(
  'TASKBROKER_SCHEDULE_FROM_FILE',
  'Schedule %s is declared in the runtime config file; change it there',
  409
)

// Poison rows (src/store/undecodable.ts)
export const TaskUndecodableError = createError(
  'TASKBROKER_TASK_UNDECODABLE',
  'Task %s is stored with an activation that cannot be decoded (%s); the next claim that reaches it moves it to the dead letters',
  409
)
