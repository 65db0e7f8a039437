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
  /** stream: latencies of tasks claimed in [measureFrom, measureUntil) (wall ms) are recorded */
  measureFrom: number
  measureUntil: number
  /** single/batch: stop after this many ms even if tasks are left (0 = drain them all) */
  capMs: number
  /**
   * single/batch: use leases and heartbeats as a careful worker does: heartbeat each claimed task
   * (batch: one request per claimed batch) and send its lease with the report
   */
  features?: Features
  /** features used: the tasks in the queue for this run; an empty claim ends a worker only once this many are reported */
  total?: number
}

/** Whether a run's workers and producer use the optional features (leases, heartbeats, priorities, queue controls). */
export type Features = 'unused' | 'used'

export type DriverMessage = RunCommand | { type: 'stop' } | { type: 'exit' }

export interface RunResult {
  type: 'result'
  mode: WorkerMode
  /** tasks reported complete (and acknowledged) */
  done: number
  /** every request sent, heartbeats and retries included */
  requests: number
  /** heartbeat requests answered 200 (features used) */
  heartbeats: number
  /** features used: claims that came back empty while tasks were still unreported, and were made again */
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
