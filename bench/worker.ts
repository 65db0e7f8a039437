/**
 * Simulated workers, in a process of their own (forked by bench/run.ts with IPC): K concurrent
 * loops on one undici Pool with K keep-alive connections, calling the broker's HTTP API the way a
 * worker does. Commands and results travel as IPC messages (see lib/protocol.ts).
 */
import { randomUUID } from 'node:crypto'
import { Api, HttpError, ok, type BatchHeartbeatReply, type BatchStatusReply, type ClaimedTask, type ClaimReply, type StatusReply } from './lib/http.js'
import { featuresOf, type DriverMessage, type RunCommand, type RunResult, type WorkerMessage } from './lib/protocol.js'
import { sleep, summarize, wallMs } from './lib/stats.js'

const send = (message: WorkerMessage) => { process.send?.(message) }

if (process.send === undefined) {
  process.stderr.write('bench/worker.ts is started by bench/run.ts (it needs an IPC channel)\n')
  process.exit(2)
}

/** A worker of a run with queue controls whose claims stay empty this long while tasks are unreported gives up (the run then shows them as incomplete). */
const EMPTY_CLAIMS_GIVE_UP_MS = 5000

let stopping = false
const stopRequested = () => stopping
let running = false

class Counters {
  done = 0
  requests = 0
  heartbeats = 0
  leasedReports = 0
  emptyClaims = 0
  errors = 0
  errorSamples: string[] = []

  /** A reply that came back 200 but says the work was not done as asked (not retried: a retry would not change it). */
  wrong (message: string): void {
    this.errors++
    if (this.errorSamples.length < 5) this.errorSamples.push(message.slice(0, 300))
  }
}

/** Runs `call` until it succeeds: an error (HTTP or network) is counted, then retried after a short pause. */
async function retrying<T> (counters: Counters, call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    counters.requests++
    try {
      return await call()
    } catch (error) {
      counters.errors++
      const message = error instanceof HttpError ? error.message : String((error as Error).message ?? error)
      if (counters.errorSamples.length < 5) counters.errorSamples.push(message)
      if (attempt >= 50) throw new Error(`giving up after ${attempt} attempts: ${message}`)
      await sleep(Math.min(1000, 20 * attempt))
    }
  }
}

async function run (command: RunCommand): Promise<RunResult> {
  const api = new Api(command.baseUrl, command.workers)
  const counters = new Counters()
  const claimSamples: number[] = []
  const ackSamples: number[] = []
  const { filter } = command
  const uses = featuresOf(command.features)
  const claim = async (limit: number, waitMs: number) =>
    ok(await api.post<ClaimReply>('/v1/tasks/claim', { ...filter, limit, wait_ms: waitMs })).tasks
  const leaseOf = (task: ClaimedTask) => {
    if (typeof task.lease !== 'string') throw new Error(`claimed task ${task.id} has no lease: the broker does not hand out leases, so its features cannot be measured used`)
    return task.lease
  }
  const complete = async (id: string, lease: string | undefined, fetchNext: boolean, nextWaitMs = 0): Promise<StatusReply> => {
    const body: Record<string, unknown> = { status: 'complete' }
    if (lease !== undefined) body.lease = lease
    if (fetchNext) body.fetch_next = nextWaitMs > 0 ? { ...filter, wait_ms: nextWaitMs } : filter
    return ok(await api.post<StatusReply>(`/v1/tasks/${encodeURIComponent(id)}/status`, body))
  }
  // A 409 (not processing, or held under another lease) is an error like any other non-2xx answer.
  const heartbeat = async (id: string, lease: string) => {
    await retrying(counters, async () => ok(await api.post(`/v1/tasks/${encodeURIComponent(id)}/heartbeat`, { lease })))
    counters.heartbeats++
  }
  const heartbeatMany = async (tasks: ClaimedTask[]) => {
    const heartbeats = tasks.map(t => ({ id: t.id, lease: leaseOf(t) }))
    const reply = await retrying(counters, async () => ok(await api.post<BatchHeartbeatReply>('/v1/tasks/heartbeat', { heartbeats })))
    counters.heartbeats++
    if (reply.extended.length !== tasks.length) counters.wrong(`heartbeat extended ${reply.extended.length} of ${tasks.length} tasks (not processing: ${reply.not_processing.length}, stale: ${reply.stale.length})`)
  }

  const startedAt = performance.now()
  const capped = () => command.capMs > 0 && performance.now() - startedAt >= command.capMs
  let hitCap = false

  // An empty claim ends a worker: the queue is drained. With queue controls a claim may come back
  // empty while tasks are pending (a capped queue whose row another claim changed meanwhile gives
  // that claim none of its tasks), so in a run with queue settings a worker claims again until the
  // run's tasks are all reported, counting those empty claims; otherwise workers would drop out
  // early and the run would measure fewer workers, not the features.
  const claimOrEnd = async (limit: number): Promise<ClaimedTask[]> => {
    let emptySince: number | undefined
    for (;;) {
      const tasks = await retrying(counters, () => claim(limit, 0))
      if (tasks.length > 0 || !uses.queues || command.total === undefined || counters.done >= command.total) return tasks
      counters.emptyClaims++
      emptySince ??= performance.now()
      if (capped()) { hitCap = true; return tasks }
      if (performance.now() - emptySince > EMPTY_CLAIMS_GIVE_UP_MS) return tasks
      await sleep(1)
    }
  }

  const single = async () => {
    let task: ClaimedTask | null = null
    for (;;) {
      if (capped()) { hitCap = true; return }
      if (task === null) {
        task = (await claimOrEnd(1))[0] ?? null
        if (task === null) return
      }
      const id: string = task.id
      if (uses.heartbeats) await heartbeat(id, leaseOf(task))
      // Heartbeats alone report unfenced, as a worker that keeps its tasks alive but ignores leases.
      const lease: string | undefined = uses.leases ? leaseOf(task) : undefined
      const reply: StatusReply = await retrying(counters, () => complete(id, lease, true))
      if (lease !== undefined) counters.leasedReports++
      counters.done++
      task = reply.task
    }
  }

  const batch = async () => {
    for (;;) {
      if (capped()) { hitCap = true; return }
      const tasks = await claimOrEnd(command.limit)
      if (tasks.length === 0) return
      if (uses.heartbeats) await heartbeatMany(tasks)
      if (uses.leases) {
        const updates = tasks.map(t => ({ id: t.id, status: 'complete', lease: leaseOf(t) }))
        const reply = await retrying(counters, async () => ok(await api.post<BatchStatusReply>('/v1/tasks/status', { updates })))
        if ((reply.stale ?? []).length > 0) counters.wrong(`batch status: ${reply.stale?.length ?? 0} of ${tasks.length} reports refused as stale`)
        counters.leasedReports += tasks.length
      } else {
        const updates = tasks.map(t => ({ id: t.id, status: 'complete' }))
        await retrying(counters, async () => ok(await api.post<BatchStatusReply>('/v1/tasks/status', { updates })))
      }
      counters.done += tasks.length
    }
  }

  const recordClaim = (task: ClaimedTask) => {
    const now = wallMs()
    const sentAt = task.parameters?.t
    if (typeof sentAt === 'number' && now >= command.measureFrom && now < command.measureUntil) claimSamples.push(now - sentAt)
  }

  const stream = async () => {
    while (!stopRequested()) {
      let task: ClaimedTask | null = (await retrying(counters, () => claim(1, command.waitMs)))[0] ?? null
      while (task !== null) {
        recordClaim(task)
        const id: string = task.id
        const started = wallMs()
        const reply = await retrying(counters, () => complete(id, undefined, command.fetchNext, command.fetchNextWaitMs))
        const ended = wallMs()
        // A fetch_next that long-polls answers after its wait: no ack time to record.
        if (ended >= command.measureFrom && ended < command.measureUntil && (command.fetchNextWaitMs ?? 0) === 0) ackSamples.push(ended - started)
        counters.done++
        task = reply.task
      }
    }
  }

  // Requests shaped like a single worker's report (a fresh id each), to a server that does nothing.
  const ceiling = async () => {
    const body = JSON.stringify({ status: 'complete', fetch_next: filter })
    while (!capped()) {
      await retrying(counters, async () => ok(await api.post<StatusReply>(`/v1/tasks/${randomUUID()}/status`, body)))
      counters.done++
    }
    hitCap = true
  }

  const loop = { single, batch, stream, ceiling }[command.mode]
  const progress = setInterval(() => send({ type: 'progress', done: counters.done, errors: counters.errors }), 250)
  try {
    await Promise.all(Array.from({ length: command.workers }, () => loop()))
  } finally {
    clearInterval(progress)
  }
  const elapsed = performance.now() - startedAt
  await api.close()
  send({ type: 'progress', done: counters.done, errors: counters.errors })
  return {
    type: 'result',
    mode: command.mode,
    done: counters.done,
    requests: counters.requests,
    heartbeats: counters.heartbeats,
    leasedReports: counters.leasedReports,
    emptyClaims: counters.emptyClaims,
    errors: counters.errors,
    errorSamples: counters.errorSamples,
    wallMs: elapsed,
    capped: hitCap,
    ...(command.mode === 'stream' ? { claimLatency: summarize(claimSamples), ackLatency: summarize(ackSamples) } : {})
  }
}

process.on('message', (message: DriverMessage) => {
  if (message.type === 'stop') {
    stopping = true
  } else if (message.type === 'exit') {
    process.exit(0)
  } else if (message.type === 'run') {
    if (running) {
      send({ type: 'failed', message: 'a run is already in progress' })
      return
    }
    running = true
    stopping = false
    run(message).then(send, (error: unknown) => send({ type: 'failed', message: String((error as Error).stack ?? error) }))
      .finally(() => { running = false })
  }
})
// The driver went away: never outlive it.
process.on('disconnect', () => process.exit(0))
send({ type: 'ready' })
