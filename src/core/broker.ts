/**
 * The broker without a front end: `createBroker(config)` opens the store (or takes one), builds
 * the long-lived parts and returns the use cases. The HTTP API (src/http/) is one front end over
 * it; a CLI, another protocol or a test drives the same object.
 *
 * Lifecycle: `start()` starts upkeep (and push delivery once given the address workers call back);
 * `beginShutdown()` makes the broker take no new work; `stop()` stops every part in the order of
 * the list below, all within config.broker.shutdownTimeoutMs counted from `beginShutdown()`.
 */
import pino, { type Logger } from 'pino'
import type { Config } from '../config/config.js'
import type { TaskInput } from '../domain/activation.js'
import type { StatusUpdate, StoredTask } from '../domain/types.js'
import { openStore, type Store, type StoreRules } from '../store/index.js'
import { connectBrokers } from './claims/broker-notifications.js'
import { createClaimService } from './claims/claim-service.js'
import { createTaskSignal } from './claims/task-signal.js'
import { clusterNotReadyReason } from './cluster.js'
import { createDeadletters, type Deadletters } from './deadletters.js'
import { createLifecycle, deadlineIn, msLeft, type Deadline, type Part, type StartOptions } from './lifecycle.js'
import { createLeases, type Leases } from './leases/leases.js'
import { createMetrics, type Metrics } from './metrics.js'
import { createBackpressure } from './produce/backpressure.js'
import { createProduce, type ProduceOptions, type ProduceOutcome } from './produce/produce.js'
import { createProduceCoalescer } from './produce/produce-coalescer.js'
import type { PushDelivery } from './push/push-delivery.js'
import { createQueues, watchQueueRestrictions, type Queues } from './queues.js'
import { createReads, type BrokerStats } from './reads.js'
import { loadRuntimeConfig, type RuntimeConfigSource } from './runtime-config.js'
import { createSchedules, type Schedules } from './schedules/schedules.js'
import { createStatusWriter, type ReportOutcome } from './status/status-writer.js'
import { createUpkeepJobs } from './upkeep/jobs.js'
import { createUpkeep, type Upkeep } from './upkeep/upkeep.js'
import { createWake } from './wake.js'
import { createWorkerApi, type ClaimRequest, type NextRequest } from './worker-api.js'

export type { Store } from '../store/index.js'
export type { TaskInput } from '../domain/activation.js'
export type { DeadLetter, DeadletterPage, DeadletterQuery } from './deadletters.js'
export type { Deadline, StartOptions } from './lifecycle.js'
export type { BrokerStats, ClaimRequest, ProduceOptions, ProduceOutcome, ReportOutcome }
export type { QueueListing, QueueSettings, QueueSettingsChange } from './queues.js'

export interface BrokerDeps {
  /** Use this store instead of opening one from the config; its owner closes it. */
  store?: Store
  logger?: Logger
  /** The broker's clock for task times (tests inject one). */
  now?: () => Date
}

export interface Broker {
  readonly config: Config
  readonly metrics: Metrics
  /** The upkeep loop; tests call `upkeep.runOnce(now)` with upkeep disabled. */
  readonly upkeep: Upkeep
  /** The runtime config file (killswitch); a front end reloads it on request (the process: SIGHUP). */
  readonly runtimeConfig: RuntimeConfigSource
  /** True from `beginShutdown()` on. */
  readonly shuttingDown: boolean

  produce (tasks: readonly TaskInput[], options?: ProduceOptions): Promise<ProduceOutcome>
  claim (request: ClaimRequest): Promise<StoredTask[]>
  report (updates: readonly StatusUpdate[]): Promise<ReportOutcome>
  reportAndClaimNext (update: StatusUpdate, next: NextRequest): Promise<{ outcome: ReportOutcome, task: StoredTask | undefined }>
  getTask (id: string): Promise<StoredTask>
  stats (): Promise<BrokerStats>
  readonly deadletters: Deadletters
  /** Heartbeats, release and cancel of tasks (src/core/leases/). */
  readonly leases: Leases
  /** Queue listing and settings (pause, max_processing, rate_limit). */
  readonly queues: Queues
  /** Schedules (/v1/schedules); upkeep fires them. */
  readonly schedules: Schedules
  /** Why the broker should get no work now (shutting down, upkeep late, store unreachable), or null. */
  notReadyReason (): Promise<string | null>

  start (options?: StartOptions): void
  /** Takes no new work: long-polls end, push stops fetching, readiness says so. */
  beginShutdown (): void
  /** Stops every part in order by `deadline` (default: the budget counted from `beginShutdown()`). */
  stop (deadline?: Deadline): Promise<void>
}

/** Advisory lock key held by the broker that runs upkeep ("tbuk"). */
const UPKEEP_LOCK_KEY = 0x7462_756b

/** What the store's statements need of the settings. */
export function storeRules (config: Config): StoreRules {
  return {
    processingDeadlineGraceSec: config.tasks.processingDeadlineGraceSec,
    maxDelaySec: config.tasks.maxDelaySec,
    upkeepCallTimeoutMs: config.store.upkeepCallTimeoutMs
  }
}

export async function createBroker (config: Config, deps: BrokerDeps = {}): Promise<Broker> {
  const log = deps.logger ?? pino({ level: config.broker.logLevel })
  const now = deps.now ?? (() => new Date())
  // First: a broken file stops the broker before anything else is opened.
  const runtimeConfig = await loadRuntimeConfig({
    path: config.broker.runtimeConfigPath,
    log: log.child({ component: 'runtime-config' }),
    limits: config.limits
  })
  let opened: Store | undefined
  try {
    // Migrates if configured, then refuses a database whose schema is behind or ahead of this broker.
    const store = deps.store ?? (opened = await openStore({ ...openStoreOptions(config), log }))
    return await assemble(config, { store, owned: opened !== undefined, runtimeConfig, log, now })
  } catch (error) {
    runtimeConfig.close()
    await opened?.close().catch(() => {})
    throw error
  }
}

function openStoreOptions (config: Config) {
  const { databaseUrl, dataDir, runMigrations, poolSize, callTimeoutMs } = config.store
  return { ...storeRules(config), databaseUrl, dataDir, runMigrations, poolSize, callTimeoutMs }
}

interface Assembly {
  store: Store
  /** Opened here, so closed here. */
  owned: boolean
  runtimeConfig: RuntimeConfigSource
  log: Logger
  now: () => Date
}

async function assemble (config: Config, { store, owned, runtimeConfig, log, now }: Assembly): Promise<Broker> {
  const metrics = createMetrics()
  const signal = createTaskSignal()
  const restrictionsWatch = watchQueueRestrictions({ restrictions: store.queueRestrictions, everyMs: config.claims.recheckMs, log })
  const brokers = await connectBrokers(store, signal, log, restrictionsWatch.lookNow, config.claims.recheckMs)
  // Listening first: a change another broker makes from here on is heard. The first claims
  // already take the plain statement when no queue is restricted.
  await store.queueRestrictions.refresh().catch((error: unknown) => { log.warn({ err: error }, 'queue restrictions not looked at; claims keep the queue-control steps') })
  const wake = createWake(signal, brokers)
  const leases = createLeases({
    store: store.leases,
    status: config.status,
    leases: config.leases,
    metrics,
    log: log.child({ component: 'leases' }),
    wake: queues => { wake(queues.map(q => ({ ...q, count: 1 }))) }
  })
  // A task handed to a claim whose client went away: pending again at once, not at its deadline.
  const releaseUnclaimed = async (task: StoredTask): Promise<void> => {
    await leases.release(task.activation.id, task.lease ?? undefined).catch((error: unknown) => {
      log.warn({ err: error, id: task.activation.id }, 'a task claimed for a client that went away was not released; it is reset at its processing deadline')
    })
  }
  const claims = createClaimService({
    store: store.tasks,
    signal,
    metrics,
    maxWaitMs: config.claims.maxWaitMs,
    coalesce: config.claims.coalescing,
    maxWaiters: config.claims.maxWaiters,
    recheckMs: config.claims.recheckMs,
    release: releaseUnclaimed
  })
  metrics.trackTaskCounts(async () => ({ ...await store.tasks.countLive(), deadletter: await store.deadletters.count() }))
  const statusWriter = createStatusWriter({
    store: store.tasks,
    config: config.status,
    metrics,
    log: log.child({ component: 'status-batcher' }),
    claim: (filter, limit) => claims.claim(filter, limit)
  })
  const produceCoalescer = config.produce.coalescing ? createProduceCoalescer(store.tasks, metrics) : undefined
  const produce = createProduce({
    store: produceCoalescer ?? store.tasks,
    backpressure: createBackpressure(store.tasks, config.backpressure),
    isKillswitched: (taskname) => runtimeConfig.isKillswitched(taskname),
    metrics,
    wake,
    now,
    parametersMaxBytes: config.limits.parametersMaxBytes,
    maxDelaySec: config.tasks.maxDelaySec,
    handoff: !config.claims.handoff
      ? undefined
      : {
          reserve: (queue, tasks) => claims.reserve(queue, tasks),
          release: releaseUnclaimed
        }
  })
  const schedules = createSchedules({
    store: store.schedules,
    produce,
    runtimeConfig,
    hasFile: config.broker.runtimeConfigPath !== undefined,
    metrics,
    log: log.child({ component: 'schedules' }),
    now,
    settings: { ...config.schedules, limit: config.upkeep.batchLimit },
    parametersMaxBytes: config.limits.parametersMaxBytes
  })
  // The file's schedules are in the table before the API answers; upkeep retries a failure.
  await schedules.syncFile().catch((error: unknown) => { log.warn({ err: error }, 'schedules: syncing the runtime config file failed') })
  const upkeep = createUpkeep({
    jobs: [...createUpkeepJobs(store.upkeep, {
      limit: config.upkeep.batchLimit,
      maxProcessingAttempts: config.tasks.maxProcessingAttempts,
      maxDelaySec: config.tasks.maxDelaySec,
      startedAt: now(),
      deadlineResetSkipAfterStartupSec: config.upkeep.deadlineResetSkipAfterStartupSec,
      killswitched: () => runtimeConfig.current().dropTaskKillswitch
    }), schedules.job],
    intervalMs: config.upkeep.intervalMs,
    lock: store.leaderLock(UPKEEP_LOCK_KEY),
    log: log.child({ component: 'upkeep' }),
    metrics,
    now,
    onReleased: wake
  })
  // Push mode's modules (its HTTP client among them) are loaded only in push mode: start-up time.
  const push = config.broker.deliveryMode !== 'push'
    ? undefined
    : (await import('./push/push-delivery.js')).createPushDelivery({
        config: config.push,
        store: store.push,
        workers: (await import('./push/workers.js')).createPushWorkers(config.push, { secrets: config.auth.secrets, log: log.child({ component: 'push' }) }),
        signal,
        metrics,
        log: log.child({ component: 'push' })
      })

  // THE order of shutdown (starting runs it backwards). First, all at once, every part stops taking
  // work (quiesce); the front end then drains its requests; then each part stops in turn.
  const lifecycle = createLifecycle([
    // Long-polls end now and answer with what they have; readiness reports "shutting down".
    { name: 'claim waits', quiesce: () => { signal.close() } },
    // At most 2 s of the budget: a pass stuck on the store must not eat the final flushes' time.
    {
      name: 'upkeep',
      start: () => { if (config.upkeep.enabled) upkeep.start() },
      stop: async (deadline) => { await upkeep.stop(Math.min(2_000, msLeft(deadline) / 4)) }
    },
    { name: 'runtime config', stop: () => { runtimeConfig.close() } },
    { name: 'queue restrictions watch', start: () => { restrictionsWatch.start() }, stop: () => { restrictionsWatch.stop() } },
    // Fetching stops at once; at stop unpushed tasks go back to pending, pushes in flight finish
    // (aborted near the deadline), their outcomes are written.
    ...(push === undefined ? [] : [pushPart(push)]),
    // Everything queued is written; the flush's fetch_next riders still claim through the claims below.
    { name: 'heartbeats', stop: async (deadline) => { await leases.close(msLeft(deadline)) } },
    { name: 'status writer', stop: async (deadline) => { await statusWriter.close(msLeft(deadline)) }, minimumMs: 250 },
    // Produce statements still queued are written (the front end has drained; schedules have stopped).
    { name: 'produce', stop: async () => { await produceCoalescer?.close() } },
    { name: 'claims', stop: async () => { await claims.close() } },
    { name: 'broker notifications', start: () => { brokers.start() }, stop: async () => { await brokers.close() } },
    // A store given by its owner stays open. Calls still in flight get a second.
    ...(owned ? [{ name: 'store', stop: async () => { await store.close() }, minimumMs: 1_000 }] : [])
  ], log)
  let shutdownDeadline: Deadline | undefined
  const beginShutdown = () => {
    shutdownDeadline ??= deadlineIn(config.broker.shutdownTimeoutMs)
    lifecycle.quiesce()
  }

  const workerApi = createWorkerApi({ deliveryMode: config.broker.deliveryMode, claims, statusWriter })
  const reads = createReads({ tasks: store.tasks, deadletters: store.deadletters, schedules: store.schedules, statusQueueDepth: () => statusWriter.depth, now })

  return {
    config,
    metrics,
    upkeep,
    runtimeConfig,
    get shuttingDown () { return lifecycle.stopping },

    produce,
    claim: workerApi.claim,
    report: workerApi.report,
    reportAndClaimNext: workerApi.reportAndClaimNext,
    getTask: reads.getTask,
    stats: reads.stats,
    deadletters: createDeadletters({ store: store.deadletters, wake, now }),
    leases,
    queues: createQueues({ store: store.queues, wake, metrics, now, changed: () => { brokers.queuesChanged() } }),
    schedules,

    async notReadyReason () {
      const reason = lifecycle.stopping ? 'shutting down' : upkeep.lateReason() ?? clusterNotReadyReason()
      if (reason !== null) return reason
      try {
        await store.tasks.ping()
        return null
      } catch (error) {
        log.warn({ err: error }, 'readiness: store unreachable')
        return 'store unreachable'
      }
    },

    start (options) { lifecycle.start(options) },

    beginShutdown,

    async stop (deadline) {
      beginShutdown()
      await lifecycle.stop(deadline ?? shutdownDeadline ?? deadlineIn(config.broker.shutdownTimeoutMs))
    }
  }
}

/** Push delivery starts once it knows where workers call back (the front end tells it). */
function pushPart (push: PushDelivery): Part {
  return {
    name: 'push',
    start: ({ publicUrl }) => { if (publicUrl !== undefined) push.start(publicUrl) },
    quiesce: () => { push.stopFetching() },
    stop: async (deadline) => { await push.close(msLeft(deadline)) },
    minimumMs: 250
  }
}
