/**
 * One broker per embedded data directory. PGlite is PostgreSQL inside one process, with no shared
 * memory or locking between processes: two brokers on one directory each run on their own copy of
 * the files and overwrite each other's, so tasks acknowledged by one are gone after a restart.
 *
 * The directory holds `taskbroker.lock`: the holder's pid, host, start time (and Linux boot id).
 * - It is created atomically: written under a temporary name, then hard-linked to the lock name,
 *   which fails if the name exists, so a reader never sees a half-written lock.
 * - A stale lock (same host, and its pid is not alive or the machine rebooted since) is deleted,
 *   one breaker at a time, only if it still says what was read, and the lock taken again.
 * - A lock from another host is never broken automatically (its pid means nothing here): the
 *   refusal says which file to delete once that broker is known to be gone.
 * - Released on close and, as a last resort, when the process exits; after a crash (SIGKILL) the
 *   next start finds the lock stale.
 */
import { randomBytes } from 'node:crypto'
import { accessSync, constants, existsSync, linkSync, mkdirSync, readFileSync, rmdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { ConfigError, StartupRefusedError } from '../config/config.js'

export const LOCK_FILE = 'taskbroker.lock'

export interface DataDirLock {
  /** The data directory, absolute. */
  readonly dir: string
  /** The holder of a stale lock this one replaced (its broker crashed), for the start-up log. */
  readonly replaced: Holder | undefined
  /** Deletes the lock file if it is still this holder's. Idempotent. */
  release (): void
}

export interface Holder {
  pid: number
  host: string
  since: string
  bootId?: string
}

/** Lock files this process holds: its own pid in a lock file is then not a stale leftover. */
const heldHere = new Set<string>()

/** Creates the data directory if needed, checks it is a writable directory, and locks it. */
export function lockDataDir (dataDir: string): DataDirLock {
  const dir = prepareDataDir(dataDir)
  const lockPath = join(dir, LOCK_FILE)
  const text = `${JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString(), bootId: bootId() })}\n`
  // A few rounds: each lost race (a stale lock removed by someone else, a new lock appearing) is
  // decided again from what the file says now.
  let replaced: Holder | undefined
  for (let round = 0; round < 100; round++) {
    if (tryCreate(dir, lockPath, text)) {
      heldHere.add(lockPath)
      let released = false
      const release = (): void => {
        if (released) return
        released = true
        heldHere.delete(lockPath)
        process.off('exit', release)
        try {
          if (readFileSync(lockPath, 'utf8') === text) unlinkSync(lockPath)
        } catch {}
      }
      process.on('exit', release)
      return { dir, replaced, release }
    }
    let current: string
    try {
      current = readFileSync(lockPath, 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue // just released: try again
      throw dataDirError(dir, `cannot read ${lockPath}`, error)
    }
    const holder = parseHolder(current)
    if (holder !== undefined && isStale(holder, lockPath)) {
      replaced = holder
      removeIfUnchanged(lockPath, current)
      continue
    }
    throw new StartupRefusedError(refusal(dir, lockPath, holder))
  }
  throw new StartupRefusedError(`TASKBROKER_DATA_DIR ${dir}: could not take ${lockPath} (other brokers starting on it at the same time?)`)
}

/** The data directory, absolute, created if missing; a ConfigError naming it when it is unusable. */
export function prepareDataDir (dataDir: string): string {
  const dir = resolve(dataDir)
  try {
    makeDirectories(dir)
  } catch (error) {
    if (isFile(dir)) throw dataDirError(dir, 'is not a directory')
    throw dataDirError(dir, 'cannot be created', error)
  }
  if (isFile(dir)) throw dataDirError(dir, 'is not a directory')
  try {
    accessSync(dir, constants.R_OK | constants.W_OK | constants.X_OK)
  } catch (error) {
    throw dataDirError(dir, 'is not writable', error)
  }
  return dir
}

/**
 * `mkdir -p`, one level at a time. Node's own `mkdirSync(dir, { recursive: true })` never returns
 * where a parent cannot hold directories (under /proc, say: it keeps retrying), so a broker
 * started there hung instead of stopping with the reason.
 */
function makeDirectories (dir: string): void {
  const missing: string[] = []
  for (let path = dir; !existsSync(path); path = dirname(path)) {
    if (dirname(path) === path) break
    missing.unshift(path)
  }
  for (const path of missing) {
    try {
      mkdirSync(path)
    } catch (error) {
      // Another broker starting at the same moment made it first.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
  }
}

function dataDirError (dir: string, problem: string, cause?: unknown): ConfigError {
  const reason = cause === undefined ? '' : ` (${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message})`
  return new ConfigError('TASKBROKER_DATA_DIR', `${JSON.stringify(dir)} ${problem}${reason}`)
}

function isFile (path: string): boolean {
  try {
    return !statSync(path).isDirectory()
  } catch {
    return false
  }
}

/** Writes the lock under a temporary name and links it to the lock name: false if that exists. */
function tryCreate (dir: string, lockPath: string, text: string): boolean {
  const temporary = `${lockPath}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  try {
    writeFileSync(temporary, text, { flag: 'wx', mode: 0o644 })
  } catch (error) {
    throw dataDirError(dir, 'is not writable', error)
  }
  try {
    linkSync(temporary, lockPath)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw dataDirError(dir, `cannot create ${lockPath}`, error)
  } finally {
    try { unlinkSync(temporary) } catch {}
  }
}

function parseHolder (text: string): Holder | undefined {
  try {
    const value = JSON.parse(text) as Partial<Holder>
    if (typeof value.pid === 'number' && typeof value.host === 'string' && typeof value.since === 'string') return value as Holder
  } catch {}
  return undefined
}

function isStale (holder: Holder, lockPath: string): boolean {
  if (holder.host !== hostname()) return false
  const boot = bootId()
  if (holder.bootId !== undefined && boot !== undefined && holder.bootId !== boot) return true // rebooted since
  // Our own pid but not held here: an earlier process with the same pid (pid 1 in a container).
  if (holder.pid === process.pid) return !heldHere.has(lockPath)
  try {
    process.kill(holder.pid, 0)
    return false
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH' // EPERM: alive, another user's
  }
}

/**
 * Deletes the stale lock if it still says what was read. Breakers take turns through an exclusive
 * directory (mkdir is atomic), so a lock that another broker wrote after breaking the same stale
 * one is re-read here and kept, never deleted. A breaker that died mid-way leaves its directory;
 * older than 10 s, it is cleared.
 */
function removeIfUnchanged (lockPath: string, staleText: string): void {
  const breaker = `${lockPath}.break`
  try {
    mkdirSync(breaker)
  } catch {
    try { if (Date.now() - statSync(breaker).mtimeMs > 10_000) rmdirSync(breaker) } catch {}
    pause(10) // another broker is breaking it: decide again from what the file says then
    return
  }
  try {
    if (readFileSync(lockPath, 'utf8') === staleText) unlinkSync(lockPath)
  } catch {} finally {
    try { rmdirSync(breaker) } catch {}
  }
}

function pause (ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

function refusal (dir: string, lockPath: string, holder: Holder | undefined): string {
  if (holder === undefined) {
    return `TASKBROKER_DATA_DIR ${dir} is locked by ${lockPath}, which this broker cannot read; if no broker uses the directory, delete that file`
  }
  const who = `pid ${holder.pid} on host ${holder.host} since ${holder.since}`
  if (holder.host !== hostname()) {
    return `TASKBROKER_DATA_DIR ${dir} is in use by a broker on another host (${who}); ` +
      `if that broker is gone, delete ${lockPath} (a lock from another host is never removed automatically)`
  }
  return `TASKBROKER_DATA_DIR ${dir} is in use by another broker (${who}); stop it or give this one another TASKBROKER_DATA_DIR`
}

let boot: string | null | undefined

/** Linux's id of the current boot; undefined elsewhere. */
function bootId (): string | undefined {
  if (boot === undefined) {
    try {
      boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    } catch {
      boot = null
    }
  }
  return boot ?? undefined
}
