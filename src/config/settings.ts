/**
 * Every setting, declared once: its variable, type, default, bounds, meaning and the `Config` field
 * it fills (group and field name below). The parser (load.ts), the `Config` type, `.env.example`
 * and the README's table (`npx tsx scripts/settings.ts --write`) and the request schemas' bounds
 * all follow this table. Rules between settings are in rules.ts.
 */
import { bool, group, int, InvalidValue, oneOf, optionalBool, optionalText, rawValue, refine, entries, text } from './setting.js'
import { isHttpUrl, parseWorkerMap, workerMapText, type WorkerRoute } from './worker-map.js'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

const databaseUrl = refine(optionalText('TASKBROKER_DATABASE_URL', {
  description: 'PostgreSQL URL; unset = the embedded PGlite store in TASKBROKER_DATA_DIR (DATABASE_URL is read when TASKBROKER_DATABASE_URL is unset)',
  aliases: ['DATABASE_URL'],
  example: 'postgres://user:password@127.0.0.1:5432/taskbroker'
}), (url) => {
  if (url !== undefined && !/^postgres(ql)?:\/\/./i.test(url)) {
    // The value is not echoed: a URL may carry a password.
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]
    throw new InvalidValue(`must be a postgres:// or postgresql:// URL (got ${scheme !== undefined ? `a ${scheme}:// URL` : 'no URL'})`)
  }
  return url
})

/** Unset = signing off; a set value with an empty entry (" , ") is a mistake, never "off". */
function authSecrets (value: string | undefined): readonly string[] {
  if (value === undefined) return []
  const secrets = value.split(',').map(s => s.trim())
  const empty = secrets.filter(s => s.length === 0).length
  if (empty > 0) {
    throw new InvalidValue(`has an empty entry (got ${secrets.length} comma-separated entries, ${empty} empty); unset it to turn signing off`)
  }
  return secrets
}

function workerMap (value: string | undefined): readonly WorkerRoute[] {
  try {
    return parseWorkerMap(value ?? '')
  } catch (error) {
    throw new InvalidValue((error as Error).message)
  }
}

function publicUrl (value: string | undefined): string | undefined {
  if (value !== undefined && !isHttpUrl(value)) throw new InvalidValue(`must be an http(s) URL (got ${JSON.stringify(value)})`)
  return value?.replace(/\/+$/, '')
}

export const SETTINGS = {
  broker: group('Broker', {
    logLevel: oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info', 'pino log level'),
    deliveryMode: oneOf('TASKBROKER_DELIVERY_MODE', ['pull', 'push'], 'pull',
      '`pull`: workers claim tasks; `push`: the broker delivers them and claims answer 409 (see Delivery)'),
    runtimeConfigPath: optionalText('TASKBROKER_RUNTIME_CONFIG', {
      description: 'YAML/JSON runtime config file (killswitch), re-read when it changes and on SIGHUP',
      example: './runtime.yaml'
    }),
    shutdownTimeoutMs: int('TASKBROKER_SHUTDOWN_TIMEOUT_MS', 10_000, 100, 600_000,
      'shutdown budget: how long draining requests and flushing reports may take (see Shutdown)'),
    processes: int('TASKBROKER_PROCESSES', 1, 1, 256,
      'broker processes sharing the port, one core each (node:cluster); more than 1 needs PostgreSQL (see Performance)')
  }),
  store: group('Store', {
    databaseUrl,
    dataDir: text('TASKBROKER_DATA_DIR', './.taskbroker',
      'embedded store directory (`memory://` = in memory); PGlite never fsyncs: it survives a crash of the broker, not of the machine'),
    runMigrations: refine(optionalBool('TASKBROKER_RUN_MIGRATIONS', {
      description: 'apply migrations at start (migrate PostgreSQL with `npm run db:migrate`)',
      defaultText: 'true embedded, false PostgreSQL'
    }), (run, raw) => run ?? rawValue(databaseUrl, raw) === undefined),
    poolSize: int('TASKBROKER_DB_POOL_SIZE', 10, 1, 200, 'PostgreSQL connections per broker process'),
    callTimeoutMs: int('TASKBROKER_DB_CALL_TIMEOUT_MS', 2_000, 0, 600_000,
      'PostgreSQL: longest one statement of a request may take, waiting for a connection included; then it is cancelled and the request answered 503 (0 = no limit; see Reliability)'),
    upkeepCallTimeoutMs: int('TASKBROKER_DB_UPKEEP_CALL_TIMEOUT_MS', 30_000, 0, 3_600_000,
      'PostgreSQL: the same for one upkeep statement (0 = no limit)')
  }),
  tasks: group('Tasks', {
    processingDeadlineGraceSec: int('TASKBROKER_PROCESSING_DEADLINE_GRACE_SEC', 3, 0, 86_400, 'added to every processing deadline'),
    maxProcessingAttempts: int('TASKBROKER_MAX_PROCESSING_ATTEMPTS', 5, 1, 1_000, 'deadline resets before a task fails'),
    maxDelaySec: int('TASKBROKER_MAX_DELAY_SEC', 3_600, 0, 31_536_000, 'longest delay honoured; longer delays are capped')
  }),
  produce: group('Produce', {
    coalescing: bool('TASKBROKER_PRODUCE_COALESCING', true,
      'store small produce requests (up to 32 tasks) that arrive while a produce statement runs together in one statement, each answered as if alone (false: a statement per request)')
  }),
  status: group('Status reports (the batcher)', {
    batching: bool('TASKBROKER_STATUS_BATCHING', true, 'queue status reports and write them in bulk statements (false: one statement per report)'),
    batchSize: int('TASKBROKER_STATUS_BATCH_SIZE', 256, 1, 1_000, 'reports per bulk statement; a full batch is flushed at once'),
    flushIntervalMs: int('TASKBROKER_STATUS_FLUSH_INTERVAL_MS', 1, 0, 60_000,
      'longest a queued report waits for its flush (0 = as soon as the previous flush ends)'),
    concurrentFlushes: int('TASKBROKER_STATUS_CONCURRENT_FLUSHES', 2, 1, 64, 'bulk statements in flight at once: one batch fills while another is written'),
    ack: oneOf('TASKBROKER_STATUS_ACK', ['flushed', 'queued'], 'flushed',
      '`flushed`: answer a report after its flush committed (nothing acknowledged is lost); `queued`: answer at enqueue'),
    maxQueued: int('TASKBROKER_STATUS_MAX_QUEUED', 20_000, 1, 10_000_000, 'bound on queued reports; beyond it reports get 503'),
    ackTimeoutMs: int('TASKBROKER_STATUS_ACK_TIMEOUT_MS', 5_000, 1, 600_000,
      'flushed ack: answer 503 if the flush has not committed by then (the report stays queued)')
  }),
  leases: group('Leases (heartbeats)', {
    heartbeatMaxExtendSec: int('TASKBROKER_HEARTBEAT_MAX_EXTEND_SEC', 3_600, 1, 31_536_000,
      'longest a heartbeat may move a processing deadline ahead (a larger `extend_sec` is capped)'),
    progressMaxBytes: int('TASKBROKER_HEARTBEAT_PROGRESS_MAX_BYTES', 64 * KiB, 2, 16 * MiB, 'largest heartbeat `progress`, in bytes of JSON (400 beyond)')
  }),
  claims: group('Claims', {
    maxWaitMs: int('TASKBROKER_CLAIM_MAX_WAIT_MS', 30_000, 0, 300_000, 'largest `wait_ms` (long-poll) a claim may ask for (400 beyond)'),
    maxWaiters: int('TASKBROKER_CLAIM_MAX_WAITERS', 10_000, 1, 1_000_000,
      'claims long-polling at once, all filters together; one more is answered 503 TASKBROKER_TOO_MANY_WAITERS'),
    recheckMs: int('TASKBROKER_CLAIM_RECHECK_MS', 1_000, 10, 600_000,
      'how often the long-polls of one filter look for tasks together (one statement) when no wake-up came (tasks another broker released); also how often a broker looks at the queue settings again (whether claims may skip the queue controls) and counts the brokers listening on its database (whether produce must notify them)'),
    coalescing: bool('TASKBROKER_CLAIM_COALESCING', true, 'serve concurrent claims for one filter with one claim statement (false: a statement per request)'),
    handoff: bool('TASKBROKER_CLAIM_HANDOFF', true,
      'a produced task goes straight to a claim long-polling for it, stored as processing by the produce statement itself (false: it is stored pending and the waiting claim looks for it with a claim statement)')
  }),
  upkeep: group('Upkeep', {
    enabled: bool('TASKBROKER_UPKEEP_ENABLED', true,
      'run upkeep in this process (with several brokers on one database one runs it at a time; off: another broker does it)'),
    intervalMs: int('TASKBROKER_UPKEEP_INTERVAL_MS', 1_000, 10, 3_600_000, 'period of the upkeep pass'),
    batchLimit: int('TASKBROKER_UPKEEP_BATCH_LIMIT', 10_000, 1, 1_000_000, 'rows one upkeep step may touch per pass'),
    deadlineResetSkipAfterStartupSec: int('TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC', 60, 0, 86_400,
      'after start, wait this long before resetting missed deadlines (workers can report after a restart)')
  }),
  schedules: group('Schedules', {
    catchUpMax: int('TASKBROKER_SCHEDULE_CATCH_UP_MAX', 100, 1, 1_000,
      'catch_up: all fires at most this many missed windows of one schedule (the latest ones); older ones are skipped'),
    misfireGraceSec: int('TASKBROKER_SCHEDULE_MISFIRE_GRACE_SEC', 60, 0, 86_400,
      'catch_up: none fires a window up to this late (e.g. after a restart); a window later than that counts as missed')
  }),
  backpressure: group('Backpressure', {
    maxPending: int('TASKBROKER_MAX_PENDING_COUNT', 0, 0, 1_000_000_000, 'produce gets 503 when pending tasks would pass this (0 = no limit)'),
    maxDelay: int('TASKBROKER_MAX_DELAY_COUNT', 0, 0, 1_000_000_000, 'produce gets 503 when delayed tasks would pass this (0 = no limit)'),
    maxProcessing: int('TASKBROKER_MAX_PROCESSING_COUNT', 0, 0, 1_000_000_000,
      'produce gets 503 while processing + claimed tasks reach this (0 = no limit)'),
    cacheMs: int('TASKBROKER_BACKPRESSURE_CACHE_MS', 250, 0, 60_000, 'how long the task counts behind backpressure are reused')
  }),
  push: group('Push mode (TASKBROKER_DELIVERY_MODE=push)', {
    publicUrl: refine(optionalText('TASKBROKER_PUBLIC_URL', {
      description: 'base URL workers reach this broker at (each push carries callback_url = this + /v1/tasks/{id}/status); ' +
        'by default as the broker listens (0.0.0.0 becomes 127.0.0.1): set it when workers run on other machines',
      defaultText: 'http://HOST:PORT',
      example: 'http://broker.internal:8080'
    }), publicUrl),
    workers: refine(optionalText('TASKBROKER_WORKER_MAP', {
      description: '`application=url,…`: each application\'s tasks are POSTed to its URL; required in push mode, and tasks of other ' +
        'applications are never claimed (in the config file it may also be a map: {shop: "http://10.0.0.5:9000/push"})',
      example: 'shop=http://127.0.0.1:9000/push,mail=http://127.0.0.1:9001/push',
      fromFile: workerMapText
    }, 0), workerMap),
    fetchLoops: int('TASKBROKER_PUSH_FETCH_LOOPS', 2, 1, 256, 'fetch loops, each claiming from its own range of the 256 task buckets (they never contend)'),
    fetchBatchSize: int('TASKBROKER_PUSH_FETCH_BATCH_SIZE', 32, 1, 1_000, 'tasks one fetch loop claims per statement'),
    fetchBackoffMs: int('TASKBROKER_PUSH_FETCH_BACKOFF_MS', 100, 1, 60_000,
      'a fetch loop that found nothing (or hit a store error) waits this long, unless a produced task wakes it'),
    concurrency: int('TASKBROKER_PUSH_CONCURRENCY', 64, 1, 10_000, 'pushes in flight at once, all workers together'),
    queueSize: int('TASKBROKER_PUSH_QUEUE_SIZE', 64, 1, 100_000,
      'claimed tasks held waiting for a push slot (with the concurrency, the bound on tasks in memory)'),
    timeoutMs: int('TASKBROKER_PUSH_TIMEOUT_MS', 10_000, 1, 600_000,
      'time limit of one push (connect, send, answer); the claim lease is sized from it (see Delivery)'),
    workerBackoffMs: int('TASKBROKER_PUSH_WORKER_BACKOFF_MS', 100, 1, 600_000,
      'first pause for a worker after a failed or refused (429/503) push; it doubles per failure'),
    workerBackoffMaxMs: int('TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS', 10_000, 1, 3_600_000, 'longest pause for a failing worker'),
    updateBatching: bool('TASKBROKER_PUSH_UPDATE_BATCHING', true,
      'write claimed → processing (and failed pushes → pending) in bulk statements (false: one per push)'),
    updateBatchSize: int('TASKBROKER_PUSH_UPDATE_BATCH_SIZE', 256, 1, 1_000, 'push outcomes per bulk statement'),
    updateFlushIntervalMs: int('TASKBROKER_PUSH_UPDATE_FLUSH_INTERVAL_MS', 5, 0, 60_000, 'longest a push outcome waits for its bulk statement')
  }),
  auth: group('Security (request signing)', {
    secrets: refine(optionalText('TASKBROKER_AUTH_SECRETS',
      'comma-separated HMAC secrets, any one of them verifies (rotation); unset = no authentication; an empty entry (" , ") stops the broker, it never turns signing off', 0),
    authSecrets),
    maxSkewSec: int('TASKBROKER_AUTH_MAX_SKEW_SEC', 300, 1, 86_400, 'signed timestamps further than this from now are refused (replay protection)'),
    replayCacheSize: int('TASKBROKER_AUTH_REPLAY_CACHE_SIZE', 1_000_000, 1, 100_000_000,
      'signatures remembered to refuse replays within the skew window (about 90 bytes each; needed: signed requests per second × TASKBROKER_AUTH_MAX_SKEW_SEC); when full, signed requests get 503'),
    exemptPaths: refine(text('TASKBROKER_AUTH_EXEMPT_PATHS', '/healthz,/readyz,/metrics,/docs*,/openapi.json',
      'comma-separated paths that need no signature (`/docs*` = a prefix)', 0), entries)
  }),
  http: group('HTTP', {
    host: text('HOST', '127.0.0.1', 'HTTP bind address'),
    port: int('PORT', 8080, 0, 65_535, 'HTTP port (0 = any free port)'),
    bodyLimitBytes: int('TASKBROKER_BODY_LIMIT_BYTES', 5 * MiB, KiB, GiB, 'largest request body accepted (413 beyond)'),
    retryAfterSec: int('TASKBROKER_RETRY_AFTER_SEC', 1, 1, 3_600, '`Retry-After` (seconds) sent with every 503'),
    requestTimeoutMs: int('TASKBROKER_REQUEST_TIMEOUT_MS', 30_000, 100, 3_600_000,
      'longest receiving one request (headers and body) may take; then 408 and the connection is closed (answers, e.g. long-poll claims, are not limited)'),
    headersTimeoutMs: int('TASKBROKER_HEADERS_TIMEOUT_MS', 10_000, 100, 3_600_000,
      'longest receiving a request\'s headers may take (from its first byte; on a new connection from connecting); then 408; at most TASKBROKER_REQUEST_TIMEOUT_MS'),
    maxConnections: int('TASKBROKER_MAX_CONNECTIONS', 10_000, 1, 1_000_000,
      'open HTTP connections per process; further ones are closed at once (keep it below the open-file limit, `ulimit -n`)'),
    maxRequestsPerSocket: int('TASKBROKER_MAX_REQUESTS_PER_SOCKET', 10_000, 0, 100_000_000,
      'requests on one keep-alive connection; the last answer carries `connection: close` (0 = no limit)'),
    maxInflightBodyBytes: int('TASKBROKER_MAX_INFLIGHT_BODY_BYTES', 64 * MiB, KiB, 64 * GiB,
      'request body bytes being received at once, all requests together (declared sizes; a chunked body counts as TASKBROKER_BODY_LIMIT_BYTES); beyond it 503; at least TASKBROKER_BODY_LIMIT_BYTES'),
    lingerMs: int('TASKBROKER_LINGER_MS', 5_000, 0, 600_000,
      'after an answer sent before the body was read (413, 401, 503), the rest of the body is read and discarded for at most this long, so the client can read the answer'),
    lingerMaxBytes: int('TASKBROKER_LINGER_MAX_BYTES', 64 * MiB, 0, 64 * GiB, 'and at most this many bytes')
  }),
  limits: group('Request limits (400 beyond, naming the field)', {
    produceMaxTasks: int('TASKBROKER_PRODUCE_MAX_TASKS', 1_000, 1, 10_000, 'most tasks in one produce request'),
    statusMaxUpdates: int('TASKBROKER_STATUS_MAX_UPDATES', 1_000, 1, 10_000, 'most updates in one batch status request'),
    claimMaxTasks: int('TASKBROKER_CLAIM_MAX_TASKS', 100, 1, 1_000, 'largest `limit` a claim may ask for'),
    idMaxChars: int('TASKBROKER_ID_MAX_CHARS', 255, 36, 512,
      'longest task id, in characters (at least 36 for generated UUIDs, at most 512 so any id fits an index entry)'),
    nameMaxChars: int('TASKBROKER_NAME_MAX_CHARS', 200, 1, 220,
      'longest application, namespace or task name, in characters (at most 220 so the three fit one PostgreSQL index entry even in 4-byte characters)'),
    parametersMaxBytes: int('TASKBROKER_PARAMETERS_MAX_BYTES', MiB, 2, GiB, 'largest `parameters` of one task, in bytes of JSON')
  })
}
