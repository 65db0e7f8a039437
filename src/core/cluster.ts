/**
 * TASKBROKER_PROCESSES=N (N > 1, PostgreSQL only): one broker process uses one core, so N of them
 * share the port through node:cluster. The primary opens no store and answers no request: it starts
 * one broker process and waits until it listens (so migrations, when the broker applies them, run
 * once and a refusal such as an unmigrated database stops everything with its own line and exit
 * code), then starts the others. Each process is a whole broker (its own pool, batchers and upkeep),
 * as several brokers on one database already are; long-polls hear of tasks produced through the
 * others by NOTIFY.
 *
 * SIGTERM/SIGINT to the primary asks every process to shut down as it would alone (drain, flush)
 * and exits when all have. A process that exits on its own stops the others, and the primary exits
 * with its code (78 stays 78): a process manager restarts the whole; no task lives in a process.
 */
import cluster, { type Worker } from 'node:cluster'
import type { Logger } from 'pino'
import { AggregatorRegistry, type PrometheusContentType, type Registry } from 'prom-client'
import type { Config } from '../config/config.js'

/** The message a broker process gets from the primary when it should shut down. */
export const SHUTDOWN_MESSAGE = 'taskbroker:shutdown'
/** The message every broker process gets once all of them listen. */
export const READY_MESSAGE = 'taskbroker:ready'

// Readiness is the whole broker's: until every process listens, the ones that do answer /readyz
// 503, so nothing (a load balancer, a benchmark) takes one started process for all of them.
let allListening = !cluster.isWorker
if (cluster.isWorker) process.on('message', (message) => { if (message === READY_MESSAGE) allListening = true })

// /metrics: whichever process takes the request asks the primary, which sums every process's
// metrics (prom-client's cluster aggregation), so a scrape sees the whole broker.
const METRICS_REQUEST = 'taskbroker:metrics'
const METRICS_REPLY = 'taskbroker:metrics-reply'
interface MetricsReply { type: typeof METRICS_REPLY, id: number, text?: string, error?: string }
const pendingMetrics = new Map<number, (reply: MetricsReply) => void>()
let metricsRequests = 0
let workerAggregator: AggregatorRegistry<PrometheusContentType> | undefined

/** In a broker process of a cluster: answer the primary's metrics requests from `registry`. */
export function shareMetrics (registry: Registry): void {
  if (!cluster.isWorker) return
  AggregatorRegistry.setRegistries([registry])
  // Constructing one adds prom-client's listener that answers the primary.
  workerAggregator ??= new AggregatorRegistry()
  process.on('message', (message: Partial<MetricsReply>) => {
    if (message?.type === METRICS_REPLY && typeof message.id === 'number') pendingMetrics.get(message.id)?.(message as MetricsReply)
  })
}

/**
 * The metrics of every broker process, summed, in the Prometheus text format; undefined outside a
 * cluster (the process's own registry is the broker's then).
 */
export async function clusterMetrics (): Promise<string | undefined> {
  if (!cluster.isWorker) return undefined
  const id = ++metricsRequests
  const reply = await new Promise<MetricsReply>((resolve) => {
    const timer = setTimeout(() => {
      pendingMetrics.delete(id)
      resolve({ type: METRICS_REPLY, id, error: 'the primary did not answer within 10 s' })
    }, 10_000)
    pendingMetrics.set(id, (r) => {
      clearTimeout(timer)
      pendingMetrics.delete(id)
      resolve(r)
    })
    process.send?.({ type: METRICS_REQUEST, id })
  })
  if (reply.error !== undefined || reply.text === undefined) throw new Error(`metrics of the broker processes: ${reply.error ?? 'no answer'}`)
  return reply.text
}

/** Why this process should get no work yet as one of several (the others are starting), or null. */
export function clusterNotReadyReason (): string | null {
  return allListening ? null : 'broker processes starting'
}

/** True in the primary of a multi-process broker: it runs `runPrimary`, never a broker. */
export function isClusterPrimary (config: Config): boolean {
  return config.broker.processes > 1 && cluster.isPrimary
}

/**
 * In a broker process of a cluster: calls `shutdown` when the primary asks, or when the primary is
 * gone (its IPC channel closed), so no process outlives it.
 */
export function followPrimary (shutdown: () => void): void {
  if (!cluster.isWorker) return
  process.on('message', (message) => { if (message === SHUTDOWN_MESSAGE) shutdown() })
  process.on('disconnect', shutdown)
}

/** Runs the primary until every broker process has exited; resolves with the exit code for it. */
export async function runPrimary (config: Config, log: Logger): Promise<number> {
  const count = config.broker.processes
  const live = new Set<Worker>()
  let stopping = false
  let exitCode = 0
  let allGone: () => void = () => {}
  const gone = new Promise<void>(resolve => { allGone = resolve })

  const listening = new Set<Worker>()
  const stopAll = (): void => {
    stopping = true
    for (const worker of live) {
      // One still starting has nothing to drain and may not listen for the message yet.
      if (!listening.has(worker)) worker.process.kill('SIGTERM')
      else if (worker.isConnected()) worker.send(SHUTDOWN_MESSAGE)
    }
  }
  let signals = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    // A second signal ends every process at once, as it does for a single broker.
    if (++signals > 1) {
      for (const worker of live) worker.process.kill('SIGKILL')
      return
    }
    log.info({ signal, processes: live.size }, 'shutting down the broker processes')
    stopAll()
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)

  const aggregator = new AggregatorRegistry()
  cluster.on('message', (worker, message: { type?: string, id?: number }) => {
    if (message?.type !== METRICS_REQUEST) return
    const answer = (reply: Omit<MetricsReply, 'type' | 'id'>) => { if (worker.isConnected()) worker.send({ type: METRICS_REPLY, id: message.id, ...reply }) }
    aggregator.clusterMetrics().then(text => answer({ text }), (error: unknown) => answer({ error: String((error as Error).message ?? error) }))
  })

  cluster.on('exit', (worker, code, signal) => {
    live.delete(worker)
    const status = code ?? 1
    if (!stopping) {
      log.error({ pid: worker.process.pid, code, signal }, 'a broker process exited; stopping the others')
      exitCode = status === 0 ? 1 : status
      stopAll()
    } else if (status !== 0 && exitCode === 0) {
      exitCode = status
    }
    if (live.size === 0) allGone()
  })

  /** Starts one broker process; resolves when it listens, or false when it exited first. */
  const start = (): Promise<boolean> => new Promise(resolve => {
    const worker = cluster.fork()
    live.add(worker)
    worker.once('listening', () => { listening.add(worker); resolve(true) })
    worker.once('exit', () => resolve(false))
  })

  if (await start()) {
    // One at a time; a signal or an exit meanwhile (stopping) ends the start-up.
    for (let started = 1; started < count; started++) {
      if (stopping || !await start()) break
    }
    if (!stopping) {
      for (const worker of live) if (worker.isConnected()) worker.send(READY_MESSAGE)
      log.info({ processes: count }, 'taskbroker processes ready')
    }
  }
  if (live.size > 0) await gone
  return exitCode
}
