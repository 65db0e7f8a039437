/**
 * What the store offers the broker core: one interface per store, every method one statement (or
 * none), each failure a StoreUnavailableError (503) or a StoreError (see errors.ts). The contract
 * suite (test/store/contract.test.ts) runs every method against PGlite and PostgreSQL; a method
 * added here needs a contract there before the suite compiles.
 */
import type { DatabaseKind } from '../db/database.js'
import type {
  Activation, ClaimFilter, ProduceResult, QueueRef, StatusUpdate, StoredTask, StoreStats, TaskStatus
} from '../domain/types.js'

// ---------------------------------------------------------------------------------------------
// Tasks

/** What a status statement did to each report. */
export interface ReportsWritten {
  /** Written to an existing task (cancelled ones included). */
  applied: Set<string>
  /** Carried a lease that is no longer the task's (it was reset or claimed again): not applied. */
  stale: Set<string>
  /** Applied to a task whose cancel was requested: the task ended whatever the report said. */
  cancelled: Set<string>
}

/** One `produce` call's arguments, for `produceMany`. */
export interface ProduceCall {
  activations: readonly Activation[]
  now: Date
  priorities?: readonly number[] | undefined
  handoff?: ReadonlyArray<ClaimFilter | undefined> | undefined
}

export interface LiveCounts { pending: number, delay: number, processing: number, claimed: number }

export interface TaskStore {
  readonly kind: DatabaseKind
  /**
   * Inserts new tasks; ids already present (or repeated in the batch) are listed as duplicates.
   * `priorities[i]` is the priority of `activations[i]` (default 0). `handoff[i]`, when given, is
   * the filter of a waiting claim `activations[i]` is offered to: if nothing its filter matches
   * comes first and its queue is neither paused nor capped, the task is stored as that claim
   * would leave it (processing, a new lease) and returned in `handedOff`.
   */
  produce (activations: Activation[], now: Date, priorities?: readonly number[], handoff?: ReadonlyArray<ClaimFilter | undefined>): Promise<ProduceResult>
  /**
   * Several produce calls in ONE statement, each answered as `produce` would answer it alone: an id
   * also given by an earlier call of the list is that later call's duplicate. The statement stores
   * all or nothing; an error fails every call.
   */
  produceMany (calls: readonly ProduceCall[]): Promise<ProduceResult[]>
  /**
   * Claims up to `limit` pending tasks, oldest `added_at` first, skipping rows other claims hold;
   * each becomes `processing` with deadline = database now + its duration + grace. Undecodable
   * tasks among them are moved to the dead letters instead (undecodable.ts).
   */
  claim (filter: ClaimFilter, limit: number): Promise<StoredTask[]>
  /**
   * Writes many worker reports in ONE statement. `complete` deletes the row (or marks it);
   * `failure`/`retry` set the status and clear the deadline; retry fields patch
   * activation.retry_state. Ids must be unique. Returns the ids that existed and were changed.
   */
  setStatusMany (updates: readonly StatusUpdate[]): Promise<Set<string>>
  /** setStatusMany, telling stale reports (lease not the task's) and cancelled tasks apart. */
  writeReports (updates: readonly StatusUpdate[]): Promise<ReportsWritten>
  /**
   * writeReports and a claim of up to `limit` tasks matching `filter`, in ONE statement (the path
   * of reports that ask for their next task). Never claims a task reported in the same call.
   */
  setStatusManyAndClaim (updates: readonly StatusUpdate[], filter: ClaimFilter, limit: number): Promise<ReportsWritten & { claimed: StoredTask[] }>
  getById (id: string): Promise<StoredTask | null>
  /** Counts by status and by application/namespace/status, and the age of the oldest pending task. */
  stats (now: Date): Promise<StoreStats>
  /** Live task counts behind produce backpressure. */
  countLive (): Promise<LiveCounts>
  /** Cheap round trip for readiness checks. */
  ping (): Promise<void>
}

// ---------------------------------------------------------------------------------------------
// Leases: heartbeats, release, cancel

/** One heartbeat: extend a processing task's deadline, store its progress. */
export interface Heartbeat {
  id: string
  /** Fencing: acts only while the task's lease is this one. */
  lease?: string | undefined
  /** Seconds from now (default: the task's processing_deadline_duration), capped. */
  extendSec?: number | undefined
  /** Any JSON; kept when undefined. */
  progress?: unknown
}

export interface HeartbeatResult {
  /** extended; stale: processing under another lease; not_processing: the task is in another status. */
  outcome: 'extended' | 'stale' | 'not_processing'
  processingDeadline: Date | null
  cancelRequested: boolean
}

export type ReleaseResult =
  | { outcome: 'released' | 'cancelled' | 'stale' | 'not_processing', queue: QueueRef }
  | { outcome: 'not_found' }

export interface CancelFilter {
  application: string
  namespace?: string | undefined
  taskname?: string | undefined
}

export interface CancelResult {
  /** Tasks that matched. */
  found: number
  /** Not held by a worker (pending, delay, retry): deleted. */
  removed: number
  /** Held (processing, claimed): marked cancel_requested. */
  requested: number
}

export interface LeaseStore {
  /** Heartbeats in ONE statement (ids unique); the result of each id that exists. */
  heartbeat (beats: readonly Heartbeat[], maxExtendSec: number): Promise<Map<string, HeartbeatResult>>
  /** A processing task back to pending at once, no attempt counted, lease cleared (or ended if its cancel was requested). */
  release (id: string, lease: string | undefined): Promise<ReleaseResult>
  /** Cancels one task: removed when not held, cancel_requested when held. */
  cancel (id: string): Promise<CancelResult>
  /** Cancels every task matching the filter the same way, in one statement. */
  cancelMany (filter: CancelFilter): Promise<CancelResult>
}

// ---------------------------------------------------------------------------------------------
// Upkeep: each transition of the task lifecycle, at most `limit` rows per call, time given as `now`

/** Tasks that became claimable, grouped by queue, so long-polls can be woken. */
export type Released = Array<QueueRef & { count: number }>

export interface UpkeepStore {
  /** Processing deadline passed: pending with one more attempt, or failure (at_most_once, attempts used up). */
  resetMissedDeadlines (now: Date, maxAttempts: number, limit: number): Promise<{ reset: number, failed: number, released: Released }>
  /** Push lease passed: pending again, no attempt counted. */
  expireClaims (now: Date, limit: number): Promise<{ expired: number, released: Released }>
  /** Pending tasks whose attempts reached the maximum fail. */
  failExhaustedProcessingAttempts (maxAttempts: number, limit: number): Promise<{ failed: number }>
  /** Pending tasks past expires_at are deleted. */
  removeExpired (now: Date, limit: number): Promise<{ removed: number }>
  /** Delayed tasks whose delay_until has come become pending. */
  releaseDelayed (now: Date, limit: number): Promise<{ released: Released, count: number }>
  /**
   * Retries go back to pending (or delay, by retry_state.backoff or delay_on_retry), or fail when
   * out of attempts or undecodable. `jitter`: the fraction a jittered backoff takes (default random).
   */
  requeueRetries (now: Date, maxDelaySec: number, limit: number, jitter?: number): Promise<{ requeued: number, delayed: number, failed: number, released: Released }>
  /** Failures are removed, dead-lettered when on_attempts_exceeded = deadletter (or undecodable). */
  settleFailures (limit: number): Promise<{ discarded: number, deadlettered: number }>
  /** Rows left `complete` (mark mode) are removed. */
  removeCompleted (limit: number): Promise<{ removed: number }>
  /** Tasks of killswitched tasknames are removed, whatever their status. */
  removeKillswitched (names: readonly string[], limit: number): Promise<{ removed: number }>
}

// ---------------------------------------------------------------------------------------------
// Dead letters

/** A task that failed for good, with why and when. */
export interface DeadLetter {
  id: string
  /** As stored: an Activation, unless the dead letter was set aside as undecodable (see `undecodable`). */
  activation: Activation
  /** Why `activation` cannot be decoded as a task, or null (src/store/undecodable.ts). */
  undecodable: string | null
  application: string
  namespace: string
  taskname: string
  /** Why it failed (a FailureReason, see types.ts). */
  reason: string
  processingAttempts: number
  receivedAt: Date
  deadletteredAt: Date
}

export interface DeadletterFilter {
  application?: string | undefined
  namespace?: string | undefined
  taskname?: string | undefined
}

export interface DeadletterListOptions extends DeadletterFilter {
  /** Most dead letters in the page (callers bound it). */
  limit: number
  /** `nextCursor` of the previous page; the page starts after it. */
  after?: string | undefined
}

export interface DeadletterPage {
  items: DeadLetter[]
  /** Pass as `after` for the next page; null on the last page. */
  nextCursor: string | null
}

/** What a requeue did; a requeued task's queue is given so long-polls can be woken. */
export type RequeueResult =
  | { outcome: 'requeued', queue: QueueRef }
  /** No dead letter has this id. */
  | { outcome: 'not_found' }
  /** A task with this id is live in inflight_tasks: nothing was changed. */
  | { outcome: 'live' }
  /** Its stored activation cannot be decoded as a task: nothing was changed. */
  | { outcome: 'undecodable', reason: string }

export interface DeadletterStore {
  /** Oldest first by (deadlettered_at, id), after `after` when given; filters match exactly. */
  list (options: DeadletterListOptions): Promise<DeadletterPage>
  /** Moves a dead letter back as a fresh pending task, unless a task with the id is live. */
  requeue (id: string, now: Date): Promise<RequeueResult>
  /** Purges one dead letter; false when there was none with the id. */
  remove (id: string): Promise<boolean>
  /** How many dead letters there are. */
  count (): Promise<number>
}

// ---------------------------------------------------------------------------------------------
// Queue settings (claims enforce them: statements/claim.ts)

export interface QueueSettings {
  paused: boolean
  maxProcessing: number | null
  rateLimit: { perSec: number, burst: number } | null
  updatedAt: Date
}

/** A change of one queue's settings (namespace undefined: the application's row); null clears. */
export interface QueueSettingsChange {
  application: string
  namespace?: string | undefined
  paused?: boolean | null | undefined
  maxProcessing?: number | null | undefined
  rateLimit?: { perSec: number, burst: number } | null | undefined
}

export interface QueueListing {
  /** Every queue with tasks or a row of its own. */
  queues: Array<QueueRef & {
    counts: Record<TaskStatus, number>
    oldestPendingAgeSec: number
    /** What steers it: its own row, its application's, or nothing. */
    settings: (QueueSettings & { source: 'namespace' | 'application' }) | null
  }>
  /** Application-wide rows. */
  applications: Array<{ application: string } & QueueSettings>
}

/** Figures for the metrics. */
export interface QueueControls { paused: number, atMaxProcessing: number, outOfTokens: number }

export interface QueueStore {
  list (now: Date): Promise<QueueListing>
  /** Applies a change; returns the row's settings, or null when nothing is left set (the row is removed). */
  change (change: QueueSettingsChange): Promise<QueueSettings | null>
  /** Pending tasks by queue of an application (one namespace when given): whom to wake. */
  pending (application: string, namespace?: string): Promise<Array<QueueRef & { count: number }>>
  /** Rows paused, capped queues at their max_processing, rate-limited rows out of tokens. */
  controls (): Promise<QueueControls>
}

// ---------------------------------------------------------------------------------------------
// Push mode

/** A task a fetch loop claimed for delivery. */
export interface PushClaim {
  activation: Activation
  processingAttempts: number
  /** Claims take higher first; the push body shows it beside the task. */
  priority: number
  /** The claim's fencing token (its claim_expires_at as PostgreSQL text). */
  token: string
  /** The claim's lease, pushed to the worker: its reports and heartbeats carry it. */
  lease: string
}

export interface PushClaimRequest {
  /** Inclusive range of the task `bucket` (0–255) this fetch loop owns. */
  buckets: readonly [number, number]
  /** Only tasks of these applications (those with a worker that is not backing off). */
  applications: readonly string[]
  limit: number
  /** Lease: when it passes, upkeep puts the task back to pending. */
  leaseMs: number
}

/** What happened to one push: delivered → processing, otherwise → pending (no attempt counted). */
export interface PushOutcome {
  id: string
  token: string
  delivered: boolean
}

export interface PushStore {
  /** Claims up to `limit` pending tasks, oldest first, of the given buckets and applications, under a lease. */
  claim (request: PushClaimRequest): Promise<PushClaim[]>
  /**
   * Settles push outcomes in ONE statement (ids unique). Only rows still `claimed` under the same
   * token change (fencing). Returns the ids that did.
   */
  settle (outcomes: readonly PushOutcome[]): Promise<Set<string>>
}
