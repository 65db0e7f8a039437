/** Domain types of the store: what a task is and what can happen to it (not HTTP types). */

export const TASK_STATUSES = ['pending', 'claimed', 'processing', 'delay', 'retry', 'failure', 'complete'] as const
export type TaskStatus = typeof TASK_STATUSES[number]

/** The only statuses a worker may report. */
export const CONCLUSIONS = ['complete', 'failure', 'retry'] as const
export type Conclusion = typeof CONCLUSIONS[number]

export type OnAttemptsExceeded = 'discard' | 'deadletter'

/** Why a task ended in `failure` (kept with its dead letter). */
export type FailureReason =
  | 'reported_failure' // a worker reported failure
  | 'retries_exhausted' // a worker asked for a retry beyond retry_state.max_attempts
  | 'processing_attempts_exceeded' // the processing deadline passed too many times
  | 'deadline_missed_at_most_once' // an at_most_once task missed its deadline and may not run again
  | `undecodable_activation: ${string}` // its stored activation cannot be decoded (src/store/undecodable.ts)

export interface RetryState {
  attempts: number
  max_attempts: number
  on_attempts_exceeded: OnAttemptsExceeded
  at_most_once: boolean
  delay_on_retry?: number
  /** How long to wait before each retry, growing with the attempts; takes precedence over delay_on_retry. */
  backoff?: RetryBackoff
}

/** A retry's delay: `fixed` waits base_sec; `exponential` base_sec × 2^attempts up to max_sec; jitter: a random part of it. */
export interface RetryBackoff {
  strategy: 'fixed' | 'exponential'
  base_sec: number
  max_sec: number
  jitter: boolean
}

/** A task activation as workers receive it: upstream's TaskActivation in JSON, snake_case. */
export interface Activation {
  id: string
  application: string
  namespace: string
  taskname: string
  parameters: unknown
  headers: Record<string, string>
  /** RFC 3339 timestamp. */
  received_at: string
  /** Seconds a worker has to finish once it holds the task. */
  processing_deadline_duration: number
  /** Seconds after received_at when an unclaimed task is dropped. */
  expires?: number
  /** Seconds after received_at before the task may be claimed. */
  delay?: number
  retry_state: RetryState
}

/** A task with its broker-side state. */
export interface StoredTask {
  activation: Activation
  /** The activation's JSON text as stored, when the store read it: answers pass it on as it is. */
  activationJson?: string | undefined
  status: TaskStatus
  addedAt: Date
  processingAttempts: number
  processingDeadline: Date | null
  expiresAt: Date | null
  delayUntil: Date | null
  claimExpiresAt: Date | null
  /** Claims take higher first; 0 unless produced with one. */
  priority: number
  /** The current claim's token (null while nobody holds the task). */
  lease: string | null
  /** The holder's last heartbeat progress (any JSON), or null. */
  progress: unknown
  /** A cancel came while the task was held: its next report ends it. */
  cancelRequested: boolean
}

/** A queue: the pair long-polls wait on and notifications name. */
export interface QueueRef {
  application: string
  namespace: string
}

export interface ClaimFilter {
  application?: string | undefined
  namespace?: string | undefined
}

/** One worker report. Retry fields patch the task's retry_state when given. */
export interface StatusUpdate {
  id: string
  status: Conclusion
  maxAttempts?: number | undefined
  delayOnRetry?: number | undefined
  /** Patches retry_state.backoff when given. */
  backoff?: RetryBackoff | undefined
  /** The claim's lease: when given and the task's differs (reset, claimed again), the report is stale and not applied. */
  lease?: string | undefined
}

export interface ProduceResult {
  inserted: string[]
  duplicates: string[]
  /** Tasks handed straight to the waiting claims they were offered to, by id (processing now). */
  handedOff: Map<string, StoredTask>
}

export interface StoreStats {
  byStatus: Record<TaskStatus, number>
  byQueue: Array<{ application: string, namespace: string, status: TaskStatus, count: number }>
  oldestPendingAgeSec: number
}
