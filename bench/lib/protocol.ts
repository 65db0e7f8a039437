/** Messages between the benchmark driver (bench/run.ts) and its worker process (bench/worker.ts), over IPC. */
import type { LatencySummary } from './stats.js'

/** A claim filter as workers send it. */
export interface ClaimFilter { application?: string, namespace?: string }

export type WorkerMode =
  /** claim one, then `status complete + fetch_next` until none comes back, then a final claim (wait_ms 0) */
  | 'single'
  /** claim `limit`, report them with one POST /v1/tasks/status, until a claim comes back empty */
  | 'batch'
  /** until told to stop: long-poll claim (wait_ms), then report (+ fetch_next) and record latencies */
  | 'stream'
  /** the HTTP ceiling: status-shaped requests to a trivial server (bench/ceiling-server.ts) until capMs */
  | 'ceiling'

export interface RunCommand {
  type: 'run'
  mode: WorkerMode
  baseUrl: string
  workers: number
  limit: number
  /** the claim filter of every claim and fetch_next ({} = any task) */
  filter: ClaimFilter
  waitMs: number
  fetchNext: boolean
  /** stream: fetch_next long-polls this long when no task is ready (0: answered at once) */
  fetchNextWaitMs?: number
  /** stream: latencies of tasks claimed in [measureFrom, measureUntil) (wall ms) are recorded */
  measureFrom: number
  measureUntil: number
  /** single/batch: stop after this many ms even if tasks are left (0 = drain them all) */
  capMs: number
  /**
   * single/batch: what the workers use of the features (featuresOf): leases, the claimed task's
   * lease sent with every report; heartbeats, one per claimed task (batch: one request per claimed
   * batch) under its lease; queues, claiming again after an empty claim (see bench/worker.ts)
   */
  features?: Features
  /** queue controls in use: the tasks in the queue for this run; an empty claim ends a worker only once this many are reported */
  total?: number
}

/** The optional features a run can use one at a time. */
export const FEATURE_NAMES = ['leases', 'heartbeats', 'priorities', 'queues'] as const
export type FeatureName = typeof FEATURE_NAMES[number]

/**
 * Which of the optional features a run's workers and producer use: none (`unused`), all of them
 * (`used`), or one alone, the rest as in `unused` (so each one's cost is a ratio of its own).
 */
export type Features = 'unused' | 'used' | FeatureName
export const FEATURES: readonly Features[] = ['unused', 'used', ...FEATURE_NAMES]

export function featuresOf (features: Features | undefined): Record<FeatureName, boolean> {
  const on = (name: FeatureName) => features === 'used' || features === name
  return { leases: on('leases'), heartbeats: on('heartbeats'), priorities: on('priorities'), queues: on('queues') }
}

/** How tables and run labels name a configuration's features ('' when unused). */
export function featuresLabel (features: Features | undefined): string {
  return features === undefined || features === 'unused' ? '' : features === 'used' ? 'features used' : `features used: ${features}`
}

export type DriverMessage = RunCommand | { type: 'stop' } | { type: 'exit' }

export interface RunResult {
  type: 'result'
  mode: WorkerMode
  /** tasks reported complete (and acknowledged) */
  done: number
  /** every request sent, heartbeats and retries included */
  requests: number
  /** heartbeat requests answered 200 (heartbeats used) */
  heartbeats: number
  /** tasks reported with their lease (leases used) */
  leasedReports: number
  /** queue controls used: claims that came back empty while tasks were still unreported, and were made again */
  emptyClaims: number
  errors: number
  errorSamples: string[]
  /** from starting the workers until the last one ended */
  wallMs: number
  /** single/batch: the run hit capMs before the queue was drained */
  capped: boolean
  /** stream only: produce → claim (ms), from the send time the producer put in the parameters */
  claimLatency?: LatencySummary
  /** stream only: round trip of the status report (ms) */
  ackLatency?: LatencySummary
}

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'progress', done: number, errors: number }
  | RunResult
  | { type: 'failed', message: string }
