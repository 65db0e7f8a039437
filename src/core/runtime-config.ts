/**
 * Runtime configuration: settings an operator must be able to change while the broker runs,
 * without a restart: the task killswitch, and schedules kept in git (`schedules:`, see src/core/schedules/).
 *
 * The file named by `TASKBROKER_RUNTIME_CONFIG` (YAML, or JSON for `.json`) is re-read when it
 * changes (polled with `fs.watchFile`, which works on every filesystem and survives editors that
 * replace the file by renaming) and when `reload()` is called (the process does that on SIGHUP).
 *
 * - At start a broken file stops the broker: it must not run with a config nobody meant.
 * - On reload a broken file keeps the last good config and logs why: a typo must not undo a
 *   killswitch that is protecting the system right now.
 * - A missing file (or none configured) is an empty config; deleting the file clears it.
 * - Unknown keys are an error, so a misspelt key cannot silently do nothing.
 */
import { readFile } from 'node:fs/promises'
import { unwatchFile, watchFile } from 'node:fs'
import { extname } from 'node:path'
import type { Logger } from 'pino'
import { parse as parseYaml } from 'yaml'
import { checkSpec, createScheduleSpecSchema, nameProblem, toDefinition, type ScheduleSpec } from './schedules/spec.js'

export interface RuntimeConfig {
  /** Task names whose tasks are dropped at produce and removed by upkeep, whatever their status. */
  readonly dropTaskKillswitch: readonly string[]
  /** Schedules declared in the file (`schedules:` name → schedule, as PUT /v1/schedules/{name} takes it). */
  readonly schedules: ReadonlyArray<{ readonly name: string, readonly spec: ScheduleSpec }>
}

/** Bounds the file's schedules are checked against (the broker's settings). */
export interface RuntimeConfigLimits { nameMaxChars: number, idMaxChars: number }
const DEFAULT_LIMITS: RuntimeConfigLimits = { nameMaxChars: 200, idMaxChars: 255 }

export interface RuntimeConfigSource {
  /** The last good config (frozen). */
  current (): RuntimeConfig
  /** O(1): whether tasks with this name are to be dropped. */
  isKillswitched (taskname: string): boolean
  /**
   * Re-reads the file now. Resolves true if the config changed. A broken file keeps the last good
   * config, is logged at error level and resolves false. Never rejects; calls are serialised.
   */
  reload (): Promise<boolean>
  /** Called with the new config after every change (not at start). */
  onChange (listener: (config: RuntimeConfig) => void): void
  /** Stops watching the file. `reload()` still works. */
  close (): void
}

const KNOWN_KEYS = ['drop_task_killswitch', 'schedules'] as const
const MAX_TASKNAME_LENGTH = 255

const EMPTY: RuntimeConfig = freeze([], [])

/** What reading the file gave: a config, or the file is absent. Problems throw. */
type ReadResult = { kind: 'config', config: RuntimeConfig } | { kind: 'missing' }

function freeze (killswitch: readonly string[], schedules: RuntimeConfig['schedules']): RuntimeConfig {
  return Object.freeze({ dropTaskKillswitch: Object.freeze([...killswitch]), schedules: Object.freeze([...schedules]) })
}

/** Parses and validates the file's text. Throws an Error whose message is the problem. */
function parseRuntimeConfig (text: string, format: 'json' | 'yaml', limits: RuntimeConfigLimits): RuntimeConfig {
  let parsed: unknown
  try {
    parsed = format === 'json' ? JSON.parse(text) : parseYaml(text)
  } catch (err) {
    throw new Error(`is not valid ${format === 'json' ? 'JSON' : 'YAML'} (${(err as Error).message})`)
  }
  if (parsed === null || parsed === undefined) return EMPTY
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('must hold a map of settings')
  const map = parsed as Record<string, unknown>
  const unknown = Object.keys(map).filter(key => !(KNOWN_KEYS as readonly string[]).includes(key))
  if (unknown.length > 0) {
    throw new Error(`has unknown key(s) ${unknown.map(k => JSON.stringify(k)).join(', ')} (known: ${KNOWN_KEYS.join(', ')})`)
  }
  return freeze(parseKillswitch(map.drop_task_killswitch), parseSchedules(map.schedules, limits))
}

/** A map of schedule name → schedule, each checked as the API checks a PUT (timing included). */
function parseSchedules (value: unknown, limits: RuntimeConfigLimits): RuntimeConfig['schedules'] {
  if (value === undefined || value === null) return []
  if (typeof value !== 'object' || Array.isArray(value)) throw new Error('schedules must be a map of schedule name to schedule')
  const schema = createScheduleSpecSchema(limits)
  return Object.entries(value as Record<string, unknown>).map(([name, raw]) => {
    const badName = nameProblem(name, limits.idMaxChars)
    if (badName !== null) throw new Error(`schedules: the name ${badName}`)
    const spec = checkSpec(schema, raw, `schedules/${name}`)
    toDefinition(spec, `schedules/${name}`)
    return Object.freeze({ name, spec })
  })
}

/** A list of task names, duplicates removed (first occurrence kept). `null` (an empty YAML key) is []. */
function parseKillswitch (value: unknown): string[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) throw new Error(`drop_task_killswitch must be a list of task names (got ${JSON.stringify(value)})`)
  value.forEach((entry: unknown, index) => {
    if (typeof entry !== 'string' || entry.length === 0 || entry.length > MAX_TASKNAME_LENGTH) {
      throw new Error(`drop_task_killswitch[${index}] must be a non-empty string of at most ${MAX_TASKNAME_LENGTH} characters (got ${JSON.stringify(entry)})`)
    }
  })
  return [...new Set(value as string[])]
}

function formatOf (path: string): 'json' | 'yaml' {
  return extname(path).toLowerCase() === '.json' ? 'json' : 'yaml'
}

async function readRuntimeConfig (path: string, limits: RuntimeConfigLimits): Promise<ReadResult> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' }
    throw new Error(`cannot be read (${(err as Error).message})`)
  }
  return { kind: 'config', config: parseRuntimeConfig(text, formatOf(path), limits) }
}

function sameConfig (a: RuntimeConfig, b: RuntimeConfig): boolean {
  const x = a.dropTaskKillswitch
  const y = b.dropTaskKillswitch
  return x.length === y.length && x.every((name, i) => name === y[i]) && JSON.stringify(a.schedules) === JSON.stringify(b.schedules)
}

/** The source for "no runtime config file": always empty, never watches. */
function emptySource (): RuntimeConfigSource {
  return {
    current: () => EMPTY,
    isKillswitched: () => false,
    reload: async () => false,
    onChange: () => {},
    close: () => {}
  }
}

/**
 * Loads the runtime config and keeps it current. Throws if the file is broken at start
 * (the message names the file and the problem).
 */
export async function loadRuntimeConfig (opts: {
  path: string | undefined
  log: Logger
  watchIntervalMs?: number
  limits?: RuntimeConfigLimits
}): Promise<RuntimeConfigSource> {
  const { log } = opts
  const limits = opts.limits ?? DEFAULT_LIMITS
  if (opts.path === undefined) return emptySource()
  const path = opts.path

  let config = EMPTY
  let killswitch = new Set<string>()
  let missingLogged = false
  let queue: Promise<unknown> = Promise.resolve()
  const listeners: Array<(config: RuntimeConfig) => void> = []

  /** Turns a read into a config, logging a missing file once per absence. */
  function resolve (result: ReadResult): RuntimeConfig {
    if (result.kind === 'config') {
      missingLogged = false
      return result.config
    }
    if (!missingLogged) {
      log.info({ path }, 'runtime config file not found; using an empty runtime config')
      missingLogged = true
    }
    return EMPTY
  }

  function apply (next: RuntimeConfig): void {
    config = next
    killswitch = new Set(next.dropTaskKillswitch)
  }

  function notify (next: RuntimeConfig): void {
    for (const listener of listeners) {
      try {
        listener(next)
      } catch (err) {
        log.error({ err, path }, 'runtime config change listener failed')
      }
    }
  }

  async function reloadNow (): Promise<boolean> {
    let next: RuntimeConfig
    try {
      next = resolve(await readRuntimeConfig(path, limits))
    } catch (err) {
      log.error({ path, reason: (err as Error).message }, 'runtime config reload failed; keeping the last good config')
      return false
    }
    if (sameConfig(config, next)) return false
    apply(next)
    log.info({ path, dropTaskKillswitch: next.dropTaskKillswitch, schedules: next.schedules.map(s => s.name) }, 'runtime config changed')
    notify(next)
    return true
  }

  /** Serialised so that overlapping reloads (watcher and SIGHUP) apply in the order they read. */
  function reload (): Promise<boolean> {
    const run = queue.then(reloadNow)
    queue = run.catch(() => {})
    return run
  }

  // Any stat change (also the file appearing or disappearing) is worth a re-read; an unchanged
  // config just resolves false.
  const onFileChange = (): void => { reload().catch(() => {}) }

  // Watch before the first read, so a change made while it is under way is not missed.
  watchFile(path, { interval: opts.watchIntervalMs ?? 1000, persistent: false }, onFileChange)
  try {
    apply(resolve(await readRuntimeConfig(path, limits)))
  } catch (err) {
    unwatchFile(path, onFileChange)
    throw new Error(`Invalid runtime config ${path}: ${(err as Error).message}`, { cause: err })
  }
  log.info({ path, dropTaskKillswitch: config.dropTaskKillswitch, schedules: config.schedules.map(s => s.name) }, 'runtime config loaded')

  return {
    current: () => config,
    isKillswitched: (taskname) => killswitch.has(taskname),
    reload,
    onChange: (listener) => { listeners.push(listener) },
    // Only our listener: fs.watchFile shares one poller per path between all its listeners.
    close: () => { unwatchFile(path, onFileChange) }
  }
}
