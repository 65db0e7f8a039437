/**
 * Configuration: parsed once, at the edge, into a typed and frozen object.
 *
 * Sources, later wins: built-in defaults → the optional config file named by
 * `TASKBROKER_CONFIG_FILE` (YAML or JSON, same keys as the environment) → environment variables.
 * Nothing else in the broker reads `process.env`. A bad value stops the broker with a
 * `ConfigError` naming the variable, the rule it broke and the value it got.
 */
import { readFileSync } from 'node:fs'
import { Type, type Static, type TSchema } from 'typebox'
import { Value } from 'typebox/value'
import { parse as parseYaml } from 'yaml'
import { isHttpUrl, parseWorkerMap, workerMapText, type WorkerRoute } from './worker-map.js'

const int = (def: number, minimum: number, maximum: number, description: string) =>
  Type.Integer({ default: def, minimum, maximum, description })
const bool = (def: boolean, description: string) => Type.Boolean({ default: def, description })
const oneOf = <V extends string>(values: readonly V[], def: V, description: string) =>
  Type.Enum(values as V[], { default: def, description })

/** Every setting, its default, bounds and meaning. `.env.example` and the README table follow this. */
export const ConfigSchema = Type.Object({
  PORT: int(8080, 0, 65535, 'HTTP port (0 = any free port)'),
  HOST: Type.String({ default: '127.0.0.1', minLength: 1, description: 'HTTP bind address' }),
  LOG_LEVEL: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info', 'pino log level'),
  TASKBROKER_DATABASE_URL: Type.Optional(Type.String({ minLength: 1, description: 'PostgreSQL URL; unset = embedded PGlite' })),
  DATABASE_URL: Type.Optional(Type.String({ minLength: 1, description: 'fallback for TASKBROKER_DATABASE_URL' })),
  TASKBROKER_DATA_DIR: Type.String({ default: './.taskbroker', minLength: 1, description: 'embedded store directory ("memory://" = in memory)' }),
  TASKBROKER_RUN_MIGRATIONS: Type.Optional(Type.Boolean({ description: 'apply migrations at start (default: on for the embedded store, off for PostgreSQL)' })),
  TASKBROKER_DB_POOL_SIZE: int(10, 1, 200, 'PostgreSQL connections per broker process'),
  TASKBROKER_DB_CALL_TIMEOUT_MS: int(2_000, 0, 600_000, 'PostgreSQL: longest one statement of a request may take, waiting for a connection included; then it is cancelled and answered 503 (0 = no limit)'),
  TASKBROKER_DB_UPKEEP_CALL_TIMEOUT_MS: int(30_000, 0, 3_600_000, 'PostgreSQL: the same for one upkeep statement (0 = no limit)'),
  TASKBROKER_STATUS_BATCHING: bool(true, 'queue status reports and write them in bulk statements'),
  TASKBROKER_STATUS_BATCH_SIZE: int(256, 1, 1000, 'reports per bulk statement (flush at once when reached)'),
  TASKBROKER_STATUS_FLUSH_INTERVAL_MS: int(1, 0, 60_000, 'longest a queued report waits for a flush (0 = as soon as the previous flush ends)'),
  TASKBROKER_STATUS_CONCURRENT_FLUSHES: int(2, 1, 64, 'bulk statements in flight at once (one fills while another is written)'),
  TASKBROKER_STATUS_ACK: oneOf(['flushed', 'queued'], 'flushed', 'answer a report after its flush committed, or at enqueue'),
  TASKBROKER_STATUS_MAX_QUEUED: int(20_000, 1, 10_000_000, 'bound on queued reports; beyond it reports get 503'),
  TASKBROKER_STATUS_ACK_TIMEOUT_MS: int(5_000, 1, 600_000, 'flushed ack: answer 503 if the flush has not committed by then (the report stays queued)'),
  TASKBROKER_UPKEEP_INTERVAL_MS: int(1_000, 10, 3_600_000, 'period of the upkeep pass'),
  TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: int(60, 0, 86_400, 'after start, wait this long before resetting missed deadlines'),
  TASKBROKER_PROCESSING_DEADLINE_GRACE_SEC: int(3, 0, 86_400, 'added to every processing deadline'),
  TASKBROKER_MAX_PROCESSING_ATTEMPTS: int(5, 1, 1_000, 'deadline resets before a task fails'),
  TASKBROKER_MAX_DELAY_SEC: int(3_600, 0, 31_536_000, 'longest delay honoured; longer delays are capped'),
  TASKBROKER_UPKEEP_ENABLED: bool(true, 'run upkeep in this process (off: another broker on the database does it)'),
  TASKBROKER_UPKEEP_BATCH_LIMIT: int(10_000, 1, 1_000_000, 'rows one upkeep step may touch per pass'),
  TASKBROKER_MAX_PENDING_COUNT: int(0, 0, 1_000_000_000, 'produce gets 503 when pending tasks would pass this (0 = no limit)'),
  TASKBROKER_MAX_DELAY_COUNT: int(0, 0, 1_000_000_000, 'produce gets 503 when delayed tasks would pass this (0 = no limit)'),
  TASKBROKER_MAX_PROCESSING_COUNT: int(0, 0, 1_000_000_000, 'produce gets 503 while processing + claimed tasks reach this (0 = no limit)'),
  TASKBROKER_BACKPRESSURE_CACHE_MS: int(250, 0, 60_000, 'how long the task counts behind backpressure are reused'),
  TASKBROKER_RUNTIME_CONFIG: Type.Optional(Type.String({ minLength: 1, description: 'YAML/JSON runtime config (killswitch), reloaded on change and SIGHUP' })),
  TASKBROKER_DELIVERY_MODE: oneOf(['pull', 'push'], 'pull', 'workers claim tasks (pull) or the broker delivers them (push)'),
  TASKBROKER_WORKER_MAP: Type.Optional(Type.String({ description: 'push mode: application=url,... (the URL each application\'s tasks are POSTed to)' })),
  TASKBROKER_PUBLIC_URL: Type.Optional(Type.String({ minLength: 1, description: 'base URL workers reach this broker at (push callback_url); default http://HOST:PORT' })),
  TASKBROKER_PUSH_FETCH_LOOPS: int(2, 1, 256, 'push mode: fetch loops, each claiming from its own range of the 256 task buckets'),
  TASKBROKER_PUSH_FETCH_BATCH_SIZE: int(32, 1, 1000, 'push mode: tasks one fetch loop claims per statement'),
  TASKBROKER_PUSH_FETCH_BACKOFF_MS: int(100, 1, 60_000, 'push mode: a fetch loop that found nothing (or hit a store error) waits this long, unless woken by a new task'),
  TASKBROKER_PUSH_CONCURRENCY: int(64, 1, 10_000, 'push mode: pushes in flight at once (all workers together)'),
  TASKBROKER_PUSH_QUEUE_SIZE: int(64, 1, 100_000, 'push mode: claimed tasks held waiting for a push slot'),
  TASKBROKER_PUSH_TIMEOUT_MS: int(10_000, 1, 600_000, 'push mode: time limit of one push (connect, send, answer)'),
  TASKBROKER_PUSH_WORKER_BACKOFF_MS: int(100, 1, 600_000, 'push mode: first pause for a worker after a failed or refused push (doubles per failure)'),
  TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS: int(10_000, 1, 3_600_000, 'push mode: longest pause for a failing worker'),
  TASKBROKER_PUSH_UPDATE_BATCHING: bool(true, 'push mode: write claimed -> processing (and failed pushes -> pending) in bulk statements'),
  TASKBROKER_PUSH_UPDATE_BATCH_SIZE: int(256, 1, 1000, 'push mode: push outcomes per bulk statement'),
  TASKBROKER_PUSH_UPDATE_FLUSH_INTERVAL_MS: int(5, 0, 60_000, 'push mode: longest a push outcome waits for its bulk statement'),
  TASKBROKER_AUTH_SECRETS: Type.Optional(Type.String({ description: 'comma-separated HMAC secrets; unset = no auth' })),
  TASKBROKER_AUTH_MAX_SKEW_SEC: int(300, 1, 86_400, 'signed requests older or newer than this are refused (replay protection)'),
  TASKBROKER_AUTH_REPLAY_CACHE_SIZE: int(1_000_000, 1, 100_000_000, 'signatures remembered to refuse replays within the skew window (about 90 bytes each); when full, signed requests get 503'),
  TASKBROKER_AUTH_EXEMPT_PATHS: Type.String({ default: '/healthz,/readyz,/metrics,/docs*,/openapi.json', description: 'comma-separated paths that need no signature ("/docs*" = a prefix)' }),
  TASKBROKER_BODY_LIMIT_BYTES: int(5 * 1024 * 1024, 1024, 1024 * 1024 * 1024, 'largest request body accepted (413 beyond)'),
  TASKBROKER_REQUEST_TIMEOUT_MS: int(30_000, 100, 3_600_000, 'longest receiving one request (headers and body) may take; then 408 and the connection is closed (answers, e.g. long-poll claims, are not limited)'),
  TASKBROKER_HEADERS_TIMEOUT_MS: int(10_000, 100, 3_600_000, 'longest receiving a request\'s headers may take (from its first byte; on a new connection from connecting); then 408; at most TASKBROKER_REQUEST_TIMEOUT_MS'),
  TASKBROKER_MAX_CONNECTIONS: int(10_000, 1, 1_000_000, 'open HTTP connections per process; further ones are closed at once (keep it below the open-file limit)'),
  TASKBROKER_MAX_REQUESTS_PER_SOCKET: int(10_000, 0, 100_000_000, 'requests on one keep-alive connection; the last answer carries connection: close (0 = no limit)'),
  TASKBROKER_MAX_INFLIGHT_BODY_BYTES: int(64 * 1024 * 1024, 1024, 64 * 1024 * 1024 * 1024, 'request body bytes being received at once, all requests together (declared sizes); beyond it 503; at least TASKBROKER_BODY_LIMIT_BYTES'),
  TASKBROKER_LINGER_MS: int(5_000, 0, 600_000, 'after an early error answer (413, 401, ...) the rest of the body is read and discarded for at most this long, so the client can read the answer'),
  TASKBROKER_LINGER_MAX_BYTES: int(64 * 1024 * 1024, 0, 64 * 1024 * 1024 * 1024, 'and at most this many bytes'),
  TASKBROKER_PRODUCE_MAX_TASKS: int(1_000, 1, 10_000, 'most tasks in one produce request (400 beyond)'),
  TASKBROKER_STATUS_MAX_UPDATES: int(1_000, 1, 10_000, 'most updates in one batch status request (400 beyond)'),
  TASKBROKER_CLAIM_MAX_TASKS: int(100, 1, 1_000, 'largest limit a claim may ask for (400 beyond)'),
  TASKBROKER_ID_MAX_CHARS: int(255, 36, 512, 'longest task id, in characters (400 beyond; at least 36 for generated UUIDs, at most 512 so any id fits an index entry)'),
  TASKBROKER_NAME_MAX_CHARS: int(200, 1, 220, 'longest application, namespace or task name, in characters (400 beyond; at most 220 so the three fit one index entry)'),
  TASKBROKER_PARAMETERS_MAX_BYTES: int(1024 * 1024, 2, 1024 * 1024 * 1024, 'largest task parameters, in bytes of JSON (400 beyond)'),
  TASKBROKER_CLAIM_COALESCING: bool(true, 'serve concurrent claims for one filter with one claim statement'),
  TASKBROKER_CLAIM_MAX_WAIT_MS: int(30_000, 0, 300_000, 'upper bound for a claim request\'s wait_ms'),
  TASKBROKER_CLAIM_RECHECK_MS: int(1_000, 10, 600_000, 'how often the long-polls of one filter look for tasks together when no wake-up came (tasks another broker released)'),
  TASKBROKER_CLAIM_MAX_WAITERS: int(10_000, 1, 1_000_000, 'claims long-polling at once (all filters); one more gets 503 TASKBROKER_TOO_MANY_WAITERS'),
  TASKBROKER_SHUTDOWN_TIMEOUT_MS: int(10_000, 100, 600_000, 'how long shutdown may take before giving up on draining'),
  TASKBROKER_RETRY_AFTER_SEC: int(1, 1, 3_600, 'Retry-After sent with 503 answers')
}, { additionalProperties: true })

export type DeliveryMode = 'pull' | 'push'
export type StatusAck = 'flushed' | 'queued'

export interface Config {
  readonly broker: {
    readonly logLevel: string
    readonly deliveryMode: DeliveryMode
    /** The runtime config file (killswitch), or undefined. */
    readonly runtimeConfigPath: string | undefined
    readonly shutdownTimeoutMs: number
  }
  readonly store: {
    /** PostgreSQL URL, or undefined for the embedded PGlite store. */
    readonly databaseUrl: string | undefined
    readonly dataDir: string
    readonly runMigrations: boolean
    readonly poolSize: number
    /** PostgreSQL: bound on one statement call of a request / of upkeep, in ms (0 = none). */
    readonly callTimeoutMs: number
    readonly upkeepCallTimeoutMs: number
  }
  readonly tasks: {
    readonly processingDeadlineGraceSec: number
    readonly maxProcessingAttempts: number
    readonly maxDelaySec: number
  }
  readonly status: {
    readonly batching: boolean
    readonly batchSize: number
    readonly flushIntervalMs: number
    readonly concurrentFlushes: number
    readonly ack: StatusAck
    readonly maxQueued: number
    readonly ackTimeoutMs: number
  }
  readonly claims: {
    readonly maxWaitMs: number
    readonly maxWaiters: number
    readonly recheckMs: number
    readonly coalescing: boolean
  }
  readonly upkeep: {
    readonly enabled: boolean
    readonly intervalMs: number
    readonly batchLimit: number
    readonly deadlineResetSkipAfterStartupSec: number
  }
  readonly backpressure: {
    readonly maxPending: number
    readonly maxDelay: number
    readonly maxProcessing: number
    readonly cacheMs: number
  }
  readonly push: PushConfig
  readonly auth: {
    readonly secrets: readonly string[]
    readonly maxSkewSec: number
    readonly replayCacheSize: number
    readonly exemptPaths: readonly string[]
  }
  readonly http: HttpLimits
  readonly limits: Limits
}

/** Bounds on connections and on receiving requests (Node's HTTP server and src/http/plugins/transport.ts). */
export interface HttpLimits {
  readonly host: string
  readonly port: number
  readonly bodyLimitBytes: number
  /** Retry-After sent with 503 answers, in seconds. */
  readonly retryAfterSec: number
  readonly requestTimeoutMs: number
  readonly headersTimeoutMs: number
  readonly maxConnections: number
  /** 0 = no limit. */
  readonly maxRequestsPerSocket: number
  readonly maxInflightBodyBytes: number
  readonly lingerMs: number
  readonly lingerMaxBytes: number
}

/** Bounds on what one request may carry (validated by the route schemas, built from these). */
export interface Limits {
  readonly produceMaxTasks: number
  readonly statusMaxUpdates: number
  readonly claimMaxTasks: number
  readonly idMaxChars: number
  readonly nameMaxChars: number
  readonly parametersMaxBytes: number
}

export interface PushConfig {
  /** Base URL workers reach the broker at; undefined = derived from the listening address. */
  readonly publicUrl: string | undefined
  /** Application → worker URL; only these applications' tasks are ever claimed in push mode. */
  readonly workers: readonly WorkerRoute[]
  readonly fetchLoops: number
  readonly fetchBatchSize: number
  readonly fetchBackoffMs: number
  readonly concurrency: number
  readonly queueSize: number
  readonly timeoutMs: number
  readonly workerBackoffMs: number
  readonly workerBackoffMaxMs: number
  readonly updateBatching: boolean
  readonly updateBatchSize: number
  readonly updateFlushIntervalMs: number
}

export class ConfigError extends Error {
  readonly code = 'TASKBROKER_CONFIG_INVALID'
  constructor (readonly variable: string, message: string) {
    super(`Invalid configuration: ${variable} ${message}`)
    this.name = 'ConfigError'
  }
}

type Env = Record<string, string | undefined>

/** Reads the config file named by TASKBROKER_CONFIG_FILE: a flat map of the same keys. */
function readConfigFile (path: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError('TASKBROKER_CONFIG_FILE', `cannot be read (${(err as Error).message})`)
  }
  let parsed: unknown
  try {
    parsed = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text)
  } catch (err) {
    throw new ConfigError('TASKBROKER_CONFIG_FILE', `is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'} (${(err as Error).message})`)
  }
  if (parsed === null || parsed === undefined) return {}
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError('TASKBROKER_CONFIG_FILE', 'must hold a map of settings')
  }
  return parsed as Record<string, unknown>
}

/**
 * The broker cannot start as it is set up, for a reason that is not one variable's value (its data
 * directory is in use, the database is not migrated): server.ts prints the message and exits 78.
 */
export class StartupRefusedError extends Error {
  readonly code = 'TASKBROKER_STARTUP_REFUSED'
  override name = 'StartupRefusedError'
}

/** Variables of the test and fault tooling, which share the prefix but are not settings. */
const TOOLING_PREFIXES = ['TASKBROKER_TEST_', 'TASKBROKER_FAULT_', 'TASKBROKER_BENCH_']

/** The known setting closest to a misspelt name, or undefined when none is close. */
export function closestSetting (name: string): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const key of [...Object.keys(ConfigSchema.properties), 'TASKBROKER_CONFIG_FILE']) {
    const distance = editDistance(name, key)
    if (distance < bestDistance) {
      best = key
      bestDistance = distance
    }
  }
  // More than a third of the name changed: a guess would mislead more than help.
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined
}

function editDistance (a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length] as number
}

const didYouMean = (name: string): string => {
  const closest = closestSetting(name)
  return closest === undefined ? '' : ` (did you mean ${closest}?)`
}

/**
 * Warnings about the environment that do not stop the broker: a TASKBROKER_* variable that is no
 * setting (a misspelling would otherwise be silently ignored). server.ts logs them at start.
 */
export function configWarnings (env: Env = process.env): string[] {
  const known = new Set([...Object.keys(ConfigSchema.properties), 'TASKBROKER_CONFIG_FILE'])
  const warnings: string[] = []
  for (const key of Object.keys(env).sort()) {
    if (!key.startsWith('TASKBROKER_') || known.has(key) || TOOLING_PREFIXES.some(p => key.startsWith(p))) continue
    warnings.push(`${key} is not a known setting and is ignored${didYouMean(key)}`)
  }
  return warnings
}

/**
 * typebox's Convert truncates "80.9" to 80 (and reads "1e3" or "0x10"): an integer setting must be
 * written as a whole number in digits.
 */
function checkIntegers (raw: Record<string, unknown>): void {
  const properties = ConfigSchema.properties as Record<string, { type?: unknown }>
  for (const [key, value] of Object.entries(raw)) {
    if (properties[key]?.type !== 'integer') continue
    const whole = typeof value === 'number' ? Number.isInteger(value) : typeof value === 'string' && /^\s*[+-]?\d+\s*$/.test(value)
    if (!whole) throw new ConfigError(key, `must be a whole number (got ${JSON.stringify(value)})`)
  }
}

function describeError (schema: TSchema, key: string, value: unknown, message: string): string {
  const property = (schema as { properties: Record<string, { enum?: unknown[] }> }).properties[key]
  if (property?.enum !== undefined) return `must be one of ${property.enum.join(', ')} (got ${JSON.stringify(value)})`
  return `${message} (got ${JSON.stringify(value)})`
}

/**
 * Builds the frozen Config from environment variables (and the optional config file).
 * Empty strings count as unset, so `PORT=` falls back to the default.
 */
export function loadConfig (env: Env = process.env): Config {
  const fromEnv: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== '') fromEnv[key] = value
  }
  const file = typeof fromEnv.TASKBROKER_CONFIG_FILE === 'string' ? readConfigFile(fromEnv.TASKBROKER_CONFIG_FILE) : {}
  if (file.TASKBROKER_WORKER_MAP !== undefined) file.TASKBROKER_WORKER_MAP = workerMapText(file.TASKBROKER_WORKER_MAP)
  const known = Object.keys(ConfigSchema.properties)
  for (const key of Object.keys(file)) {
    if (!known.includes(key)) throw new ConfigError(key, `is not a known setting (in TASKBROKER_CONFIG_FILE)${didYouMean(key)}`)
  }
  const raw: Record<string, unknown> = {}
  for (const key of known) {
    const value = fromEnv[key] ?? file[key]
    if (value !== undefined) raw[key] = value
  }
  checkIntegers(raw)
  const values = Value.Convert(ConfigSchema, Value.Default(ConfigSchema, raw)) as Record<string, unknown>
  const [error] = Value.Errors(ConfigSchema, values)
  if (error !== undefined) {
    const key = error.instancePath.split('/')[1] ?? '(config)'
    throw new ConfigError(key, describeError(ConfigSchema, key, raw[key], error.message))
  }
  const v = values as Static<typeof ConfigSchema>
  const databaseUrl = v.TASKBROKER_DATABASE_URL ?? v.DATABASE_URL
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\/./i.test(databaseUrl)) {
    const variable = v.TASKBROKER_DATABASE_URL !== undefined ? 'TASKBROKER_DATABASE_URL' : 'DATABASE_URL'
    // The value is not echoed: a URL may carry a password.
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(databaseUrl)?.[1]
    throw new ConfigError(variable, `must be a postgres:// or postgresql:// URL (got ${scheme !== undefined ? `a ${scheme}:// URL` : 'no URL'})`)
  }
  const secrets = authSecrets(v.TASKBROKER_AUTH_SECRETS)
  const push = pushConfig(v)
  return deepFreeze({
    broker: {
      logLevel: v.LOG_LEVEL,
      deliveryMode: v.TASKBROKER_DELIVERY_MODE,
      runtimeConfigPath: v.TASKBROKER_RUNTIME_CONFIG,
      shutdownTimeoutMs: v.TASKBROKER_SHUTDOWN_TIMEOUT_MS
    },
    store: {
      databaseUrl,
      dataDir: v.TASKBROKER_DATA_DIR,
      runMigrations: v.TASKBROKER_RUN_MIGRATIONS ?? databaseUrl === undefined,
      poolSize: v.TASKBROKER_DB_POOL_SIZE,
      callTimeoutMs: v.TASKBROKER_DB_CALL_TIMEOUT_MS,
      upkeepCallTimeoutMs: v.TASKBROKER_DB_UPKEEP_CALL_TIMEOUT_MS
    },
    tasks: {
      processingDeadlineGraceSec: v.TASKBROKER_PROCESSING_DEADLINE_GRACE_SEC,
      maxProcessingAttempts: v.TASKBROKER_MAX_PROCESSING_ATTEMPTS,
      maxDelaySec: v.TASKBROKER_MAX_DELAY_SEC
    },
    status: {
      batching: v.TASKBROKER_STATUS_BATCHING,
      batchSize: v.TASKBROKER_STATUS_BATCH_SIZE,
      flushIntervalMs: v.TASKBROKER_STATUS_FLUSH_INTERVAL_MS,
      concurrentFlushes: v.TASKBROKER_STATUS_CONCURRENT_FLUSHES,
      ack: v.TASKBROKER_STATUS_ACK,
      maxQueued: v.TASKBROKER_STATUS_MAX_QUEUED,
      ackTimeoutMs: v.TASKBROKER_STATUS_ACK_TIMEOUT_MS
    },
    claims: {
      maxWaitMs: v.TASKBROKER_CLAIM_MAX_WAIT_MS,
      maxWaiters: v.TASKBROKER_CLAIM_MAX_WAITERS,
      recheckMs: v.TASKBROKER_CLAIM_RECHECK_MS,
      coalescing: v.TASKBROKER_CLAIM_COALESCING
    },
    upkeep: {
      enabled: v.TASKBROKER_UPKEEP_ENABLED,
      intervalMs: v.TASKBROKER_UPKEEP_INTERVAL_MS,
      batchLimit: v.TASKBROKER_UPKEEP_BATCH_LIMIT,
      deadlineResetSkipAfterStartupSec: v.TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC
    },
    backpressure: {
      maxPending: v.TASKBROKER_MAX_PENDING_COUNT,
      maxDelay: v.TASKBROKER_MAX_DELAY_COUNT,
      maxProcessing: v.TASKBROKER_MAX_PROCESSING_COUNT,
      cacheMs: v.TASKBROKER_BACKPRESSURE_CACHE_MS
    },
    push,
    auth: {
      secrets,
      maxSkewSec: v.TASKBROKER_AUTH_MAX_SKEW_SEC,
      replayCacheSize: v.TASKBROKER_AUTH_REPLAY_CACHE_SIZE,
      exemptPaths: v.TASKBROKER_AUTH_EXEMPT_PATHS.split(',').map(s => s.trim()).filter(s => s.length > 0)
    },
    http: httpLimits(v),
    limits: {
      produceMaxTasks: v.TASKBROKER_PRODUCE_MAX_TASKS,
      statusMaxUpdates: v.TASKBROKER_STATUS_MAX_UPDATES,
      claimMaxTasks: v.TASKBROKER_CLAIM_MAX_TASKS,
      idMaxChars: v.TASKBROKER_ID_MAX_CHARS,
      nameMaxChars: v.TASKBROKER_NAME_MAX_CHARS,
      parametersMaxBytes: v.TASKBROKER_PARAMETERS_MAX_BYTES
    }
  })
}

/** Unset = signing off; a set value with an empty entry (" , ") is a mistake, never "off". */
function authSecrets (value: string | undefined): string[] {
  if (value === undefined) return []
  const secrets = value.split(',').map(s => s.trim())
  if (secrets.some(s => s.length === 0)) {
    throw new ConfigError('TASKBROKER_AUTH_SECRETS', `has an empty entry (got ${secrets.length} comma-separated entries, ${secrets.filter(s => s.length === 0).length} empty); unset it to turn signing off`)
  }
  return secrets
}

const LOOPBACK_NAMES = new Set(['localhost', '::1', '0:0:0:0:0:0:0:1'])

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost (host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1')
  return LOOPBACK_NAMES.has(h) || /^127(\.\d{1,3}){3}$/.test(h) || /^::ffff:127(\.\d{1,3}){3}$/.test(h)
}

/** The warning to log at start when anyone who can reach the port may use the API; undefined when none. */
export function exposureWarning (config: { http: Pick<HttpLimits, 'host'>, auth: { secrets: readonly string[] } }): string | undefined {
  if (config.auth.secrets.length > 0 || isLoopbackHost(config.http.host)) return undefined
  return `request signing is off (TASKBROKER_AUTH_SECRETS unset) and HOST=${config.http.host} is not a loopback address: anyone who can reach the port can produce, claim and purge tasks`
}

function httpLimits (v: Static<typeof ConfigSchema>): HttpLimits {
  if (v.TASKBROKER_HEADERS_TIMEOUT_MS > v.TASKBROKER_REQUEST_TIMEOUT_MS) {
    throw new ConfigError('TASKBROKER_HEADERS_TIMEOUT_MS', `must be at most TASKBROKER_REQUEST_TIMEOUT_MS (got ${v.TASKBROKER_HEADERS_TIMEOUT_MS})`)
  }
  // Else a body of the largest allowed size could never be received.
  if (v.TASKBROKER_MAX_INFLIGHT_BODY_BYTES < v.TASKBROKER_BODY_LIMIT_BYTES) {
    throw new ConfigError('TASKBROKER_MAX_INFLIGHT_BODY_BYTES', `must be at least TASKBROKER_BODY_LIMIT_BYTES (got ${v.TASKBROKER_MAX_INFLIGHT_BODY_BYTES})`)
  }
  return {
    host: v.HOST,
    port: v.PORT,
    bodyLimitBytes: v.TASKBROKER_BODY_LIMIT_BYTES,
    retryAfterSec: v.TASKBROKER_RETRY_AFTER_SEC,
    requestTimeoutMs: v.TASKBROKER_REQUEST_TIMEOUT_MS,
    headersTimeoutMs: v.TASKBROKER_HEADERS_TIMEOUT_MS,
    maxConnections: v.TASKBROKER_MAX_CONNECTIONS,
    maxRequestsPerSocket: v.TASKBROKER_MAX_REQUESTS_PER_SOCKET,
    maxInflightBodyBytes: v.TASKBROKER_MAX_INFLIGHT_BODY_BYTES,
    lingerMs: v.TASKBROKER_LINGER_MS,
    lingerMaxBytes: v.TASKBROKER_LINGER_MAX_BYTES
  }
}

function pushConfig (v: Static<typeof ConfigSchema>): PushConfig {
  let workers: WorkerRoute[]
  try {
    workers = parseWorkerMap(v.TASKBROKER_WORKER_MAP ?? '')
  } catch (error) {
    throw new ConfigError('TASKBROKER_WORKER_MAP', (error as Error).message)
  }
  if (v.TASKBROKER_DELIVERY_MODE === 'push' && workers.length === 0) {
    throw new ConfigError('TASKBROKER_WORKER_MAP', 'must name at least one application=url when TASKBROKER_DELIVERY_MODE is push')
  }
  if (v.TASKBROKER_PUBLIC_URL !== undefined && !isHttpUrl(v.TASKBROKER_PUBLIC_URL)) {
    throw new ConfigError('TASKBROKER_PUBLIC_URL', `must be an http(s) URL (got ${JSON.stringify(v.TASKBROKER_PUBLIC_URL)})`)
  }
  if (v.TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS < v.TASKBROKER_PUSH_WORKER_BACKOFF_MS) {
    throw new ConfigError('TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS', `must be at least TASKBROKER_PUSH_WORKER_BACKOFF_MS (got ${v.TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS})`)
  }
  return {
    publicUrl: v.TASKBROKER_PUBLIC_URL?.replace(/\/+$/, ''),
    workers,
    fetchLoops: v.TASKBROKER_PUSH_FETCH_LOOPS,
    fetchBatchSize: v.TASKBROKER_PUSH_FETCH_BATCH_SIZE,
    fetchBackoffMs: v.TASKBROKER_PUSH_FETCH_BACKOFF_MS,
    concurrency: v.TASKBROKER_PUSH_CONCURRENCY,
    queueSize: v.TASKBROKER_PUSH_QUEUE_SIZE,
    timeoutMs: v.TASKBROKER_PUSH_TIMEOUT_MS,
    workerBackoffMs: v.TASKBROKER_PUSH_WORKER_BACKOFF_MS,
    workerBackoffMaxMs: v.TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS,
    updateBatching: v.TASKBROKER_PUSH_UPDATE_BATCHING,
    updateBatchSize: v.TASKBROKER_PUSH_UPDATE_BATCH_SIZE,
    updateFlushIntervalMs: v.TASKBROKER_PUSH_UPDATE_FLUSH_INTERVAL_MS
  }
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner)
    Object.freeze(value)
  }
  return value
}
