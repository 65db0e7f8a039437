/**
 * Prometheus metrics: one registry per app (so several apps in one process, as in tests, never
 * share counters), exposed at GET /metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export type Metrics = ReturnType<typeof createMetrics>

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
const BATCH_BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000]

export function createMetrics () {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'taskbroker_' })
  const registers = [registry]
  const heldBack = new Gauge({
    name: 'taskbroker_queues_held_back',
    help: 'Capped queues whose claims are refused right now: at their max_processing, or out of rate_limit tokens; read at scrape time',
    labelNames: ['limit'] as const,
    registers,
    // Every process reads the same store: several processes (TASKBROKER_PROCESSES) must not add up.
    aggregator: 'max',
    async collect () {
      if (queueControls === undefined) return
      try {
        const figures = await queueControls()
        this.set({ limit: 'max_processing' }, figures.atMaxProcessing)
        this.set({ limit: 'rate_limit' }, figures.outOfTokens)
      } catch {
        // The store is down: keep the last figures.
      }
    }
  })
  const depthProviders = new Map<string, () => number>()
  let pushState: (() => PushState) | undefined
  let countTasks: (() => Promise<Record<string, number>>) | undefined
  let queueControls: (() => Promise<QueueControlFigures>) | undefined
  return {
    /** Reads live task counts (by status, plus dead letters) at every scrape. */
    trackTaskCounts (counts: () => Promise<Record<string, number>>) {
      countTasks = counts
    },
    tasks: new Gauge({
      name: 'taskbroker_tasks',
      help: 'Tasks in the store by status (deadletter = the dead-letter table), read at scrape time',
      labelNames: ['status'] as const,
      registers,
      aggregator: 'max',
      async collect () {
        if (countTasks === undefined) return
        try {
          for (const [status, count] of Object.entries(await countTasks())) this.set({ status }, count)
        } catch {
          // The store is down: keep the last figures; readiness and the 503 counter tell the story.
        }
      }
    }),
    /** Reads the queue controls' figures (paused, held back) at every scrape. */
    trackQueueControls (figures: () => Promise<QueueControlFigures>) {
      queueControls = figures
    },
    queuesPaused: new Gauge({
      name: 'taskbroker_queues_paused',
      help: 'Queue settings rows (a namespace, or an application as a whole) that are paused, read at scrape time',
      registers,
      aggregator: 'max',
      async collect () {
        if (queueControls === undefined) return
        try {
          this.set((await queueControls()).paused)
        } catch {
          // The store is down: keep the last figures.
        }
      }
    }),
    queuesHeldBack: heldBack,
    /** Reports a batcher's depth at every scrape. */
    trackQueueDepth (batcher: string, depth: () => number) {
      depthProviders.set(batcher, depth)
    },
    registry,
    httpRequestDuration: new Histogram({
      name: 'taskbroker_http_request_duration_seconds',
      help: 'HTTP requests by route, method and status code',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: LATENCY_BUCKETS,
      registers
    }),
    tasksProduced: new Counter({ name: 'taskbroker_tasks_produced_total', help: 'Tasks stored by produce requests', registers }),
    tasksDuplicate: new Counter({ name: 'taskbroker_tasks_duplicate_total', help: 'Produced tasks ignored because their id exists', registers }),
    tasksClaimed: new Counter({ name: 'taskbroker_tasks_claimed_total', help: 'Tasks handed to workers', registers }),
    tasksHandedOff: new Counter({
      name: 'taskbroker_tasks_handed_off_total',
      help: 'Tasks produce handed straight to a waiting claim (also counted in taskbroker_tasks_claimed_total)',
      registers
    }),
    // Leases, heartbeats, release and cancel (src/core/leases/).
    heartbeats: new Counter({
      name: 'taskbroker_heartbeats_total',
      help: 'Heartbeats by result (extended, stale, not_processing)',
      labelNames: ['result'] as const,
      registers
    }),
    staleReports: new Counter({
      name: 'taskbroker_stale_reports_total',
      help: 'Reports, heartbeats and releases refused because their lease is not the task\'s any more, by kind',
      labelNames: ['kind'] as const,
      registers
    }),
    releases: new Counter({ name: 'taskbroker_tasks_released_total', help: 'Processing tasks a worker gave back (pending again, no attempt counted)', registers }),
    tasksCancelled: new Counter({
      name: 'taskbroker_tasks_cancelled_total',
      help: 'Cancels: removed (the task was not held), requested (held: its next report ends it), reported (a report ended a task whose cancel was requested)',
      labelNames: ['how'] as const,
      registers
    }),
    claimDuration: new Histogram({
      name: 'taskbroker_claim_statement_duration_seconds',
      help: 'Time of one claim statement',
      buckets: LATENCY_BUCKETS,
      registers
    }),
    claimWaiters: new Gauge({ name: 'taskbroker_claim_waiters', help: 'Claim requests long-polling for a task', registers }),
    statusRequested: new Counter({
      name: 'taskbroker_status_reports_requested_total',
      help: 'Status reports received from workers',
      labelNames: ['status'] as const,
      registers
    }),
    statusApplied: new Counter({
      name: 'taskbroker_status_reports_applied_total',
      help: 'Status reports written to an existing task',
      registers
    }),
    statusNotFound: new Counter({
      name: 'taskbroker_status_reports_not_found_total',
      help: 'Status reports for ids that are not (or no longer) in the store',
      registers
    }),
    batchSize: new Histogram({
      name: 'taskbroker_batcher_flush_size',
      help: 'Items written per flush',
      labelNames: ['batcher'] as const,
      buckets: BATCH_BUCKETS,
      registers
    }),
    flushDuration: new Histogram({
      name: 'taskbroker_batcher_flush_duration_seconds',
      help: 'Time of one flush (one bulk statement)',
      labelNames: ['batcher'] as const,
      buckets: LATENCY_BUCKETS,
      registers
    }),
    flushFailures: new Counter({
      name: 'taskbroker_batcher_flush_failures_total',
      help: 'Flushes that failed and will be retried',
      labelNames: ['batcher'] as const,
      registers
    }),
    queueDepth: new Gauge({
      name: 'taskbroker_batcher_queue_depth',
      help: 'Items waiting in a batcher (queued and in flight)',
      labelNames: ['batcher'] as const,
      registers,
      collect () {
        for (const [batcher, depth] of depthProviders) this.set({ batcher }, depth())
      }
    }),
    upkeepTransitions: new Counter({
      name: 'taskbroker_upkeep_transitions_total',
      help: 'Tasks moved by upkeep, by job and transition (e.g. processing_deadline/reset, failure/deadlettered)',
      labelNames: ['job', 'transition'] as const,
      registers
    }),
    scheduleFires: new Counter({
      name: 'taskbroker_schedule_fires_total',
      help: 'Schedule windows produced as tasks, by how (upkeep: due; trigger: POST .../trigger)',
      labelNames: ['how'] as const,
      registers
    }),
    scheduleSkips: new Counter({
      name: 'taskbroker_schedule_skips_total',
      help: 'Schedule windows not produced, by reason (overlap: the last task still live; missed: catch_up left it out; killswitch)',
      labelNames: ['reason'] as const,
      registers
    }),
    scheduleLag: new Histogram({
      name: 'taskbroker_schedule_lag_seconds',
      help: 'From a window\'s due time to its task being produced',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
      registers
    }),
    upkeepFailures: new Counter({
      name: 'taskbroker_upkeep_job_failures_total',
      help: 'Upkeep jobs that failed (the pass went on with the others)',
      labelNames: ['job'] as const,
      registers
    }),
    upkeepPassDuration: new Histogram({
      name: 'taskbroker_upkeep_pass_duration_seconds',
      help: 'Time of one upkeep pass',
      buckets: LATENCY_BUCKETS,
      registers
    }),
    upkeepLastPass: new Gauge({ name: 'taskbroker_upkeep_last_pass_timestamp_seconds', help: 'When the last upkeep pass ended', registers, aggregator: 'max' }),
    upkeepLeader: new Gauge({ name: 'taskbroker_upkeep_leader', help: '1 when this broker holds the upkeep lock', registers }),
    produceRefused: new Counter({
      name: 'taskbroker_produce_refused_total',
      help: 'Produce requests refused (backpressure limit reached, or every task killswitched)',
      labelNames: ['reason'] as const,
      registers
    }),
    tasksKillswitched: new Counter({ name: 'taskbroker_tasks_killswitched_total', help: 'Produced tasks dropped by the killswitch', registers }),
    storeUnavailable: new Counter({
      name: 'taskbroker_store_unavailable_total',
      help: 'Requests answered 503 because the store could not be reached',
      registers
    }),

    // Push mode (src/push/). Claimed tasks in the store are in taskbroker_tasks{status="claimed"}.
    /** Reports the push queue, pushes in flight and pausing workers at every scrape. */
    trackPush (state: () => PushState) {
      pushState = state
    },
    pushes: new Counter({
      name: 'taskbroker_push_total',
      help: 'Pushes by result: delivered, refused (429/503), rejected (other status), timeout, unreachable, shutdown, backoff (not sent: worker pausing)',
      labelNames: ['result'] as const,
      registers
    }),
    pushDuration: new Histogram({
      name: 'taskbroker_push_duration_seconds',
      help: 'Time of one push, from sending to the worker\'s answer (or the failure)',
      labelNames: ['result'] as const,
      buckets: LATENCY_BUCKETS,
      registers
    }),
    pushReceivedToPushed: new Histogram({
      name: 'taskbroker_push_received_to_pushed_seconds',
      help: 'From a task\'s received_at to its delivery, for first deliveries (no earlier attempt)',
      buckets: [...LATENCY_BUCKETS, 60, 300, 900],
      registers
    }),
    pushClaimed: new Counter({ name: 'taskbroker_push_claimed_total', help: 'Tasks claimed by the push fetch loops', registers }),
    pushFetchFailures: new Counter({ name: 'taskbroker_push_fetch_failures_total', help: 'Push fetch (claim) statements that failed', registers }),
    pushUpdates: new Counter({
      name: 'taskbroker_push_updates_total',
      help: 'Push outcomes written: to processing (delivered) or pending; skipped = the task had moved on',
      labelNames: ['to', 'result'] as const,
      registers
    }),
    pushQueueDepth: new Gauge({
      name: 'taskbroker_push_queue_depth',
      help: 'Claimed tasks waiting for a push slot',
      registers,
      collect () { if (pushState !== undefined) this.set(pushState().queued) }
    }),
    pushInFlight: new Gauge({
      name: 'taskbroker_push_in_flight',
      help: 'Pushes in flight',
      registers,
      collect () { if (pushState !== undefined) this.set(pushState().inFlight) }
    }),
    pushWorkersPausing: new Gauge({
      name: 'taskbroker_push_workers_pausing',
      help: 'Workers paused after a failed or refused push',
      registers,
      collect () { if (pushState !== undefined) this.set(pushState().workersPausing) }
    })
  }
}

export interface QueueControlFigures { paused: number, atMaxProcessing: number, outOfTokens: number }

export interface PushState { queued: number, inFlight: number, workersPausing: number }
