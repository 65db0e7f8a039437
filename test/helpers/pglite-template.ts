/**
 * A migrated PGlite data directory that test processes copy instead of starting an empty PGlite.
 * An empty PGlite runs initdb in a second WebAssembly instance on every start; opening a copy of a
 * migrated directory skips that and the migrations, which were most of a store test file's fixed
 * cost (`node scripts/time-test-start.mjs` shows both).
 *
 * The template is built once and kept under node_modules/.cache, keyed by what its contents depend
 * on (the migrations, the PGlite and drizzle-orm versions): a changed migration or an upgrade builds
 * a new one. A test process that finds none builds it under a name of its own and renames it into
 * place; when several race, the first rename wins and the others use it.
 */
import { createHash, randomBytes } from 'node:crypto'
import { accessSync, constants, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { openDatabase, type Database } from '../../src/db/database.js'
import { migrationsFolder, packageRoot } from '../../src/paths.js'

const silent = pino({ level: 'silent' })

/** Per-process copies are named `<prefix><pid>-<random>`, so copies of dead processes can be found. */
export const COPY_PREFIX = 'taskbroker-test-pglite-'

export interface PgliteCopy {
  database: Database
  /** The copy's data directory. */
  dir: string
  /** Closes the database and deletes its copy (once, however often called). */
  close (): Promise<void>
}

/** Opens a fresh copy of the migrated template. */
export async function openPgliteCopy (): Promise<PgliteCopy> {
  const template = await templateDir()
  const base = copiesDir()
  removeDirsOfDeadProcesses(base, COPY_PREFIX)
  const dir = mkdtempSync(join(base, `${COPY_PREFIX}${process.pid}-`))
  try {
    cpSync(template, dir, { recursive: true })
    const database = await openDatabase({ dataDir: dir, poolSize: 1, log: silent })
    let closing: Promise<void> | undefined
    const close = async (): Promise<void> => {
      try {
        await database.close()
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }
    return { database, dir, close: () => (closing ??= close()) }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}

/** The template's directory, built first if there is none for the current key. */
export async function templateDir (): Promise<string> {
  const cache = join(packageRoot(), 'node_modules', '.cache', 'taskbroker-tests')
  const name = `pglite-${templateKey()}`
  const dir = join(cache, name)
  if (isDataDir(dir)) return dir
  mkdirSync(cache, { recursive: true })
  removeDirsOfDeadProcesses(cache, `${name}.building-`)
  const building = join(cache, `${name}.building-${process.pid}-${randomBytes(4).toString('hex')}`)
  try {
    const database = await openDatabase({ dataDir: building, poolSize: 1, log: silent })
    try {
      await database.migrate()
    } finally {
      await database.close()
    }
    renameSync(building, dir)
    removeOtherTemplates(cache, name)
  } catch (error) {
    if (!isDataDir(dir)) throw error
  } finally {
    rmSync(building, { recursive: true, force: true })
  }
  return dir
}

/** Changes whenever a template built now could differ from one built before. */
export function templateKey (): string {
  const hash = createHash('sha256')
  for (const name of ['@electric-sql/pglite', 'drizzle-orm']) {
    hash.update(`${name}@${installedVersion(name)}\n`)
  }
  const folder = migrationsFolder()
  for (const file of filesUnder(folder)) {
    hash.update(`${file}\n`).update(readFileSync(join(folder, file)))
  }
  return hash.digest('hex').slice(0, 16)
}

function isDataDir (dir: string): boolean {
  return existsSync(join(dir, 'PG_VERSION'))
}

function installedVersion (name: string): string {
  const manifest = join(packageRoot(), 'node_modules', name, 'package.json')
  return (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version
}

/** Paths of the files under `dir`, relative to it and sorted. */
function filesUnder (dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((file) => statSync(join(dir, file)).isFile())
    .sort()
}

/** A tmpfs when the system has one (the copies are written to, never needed after the process). */
export function copiesDir (): string {
  try {
    accessSync('/dev/shm', constants.W_OK)
    if (statSync('/dev/shm').isDirectory()) return '/dev/shm'
  } catch {}
  return tmpdir()
}

/** Templates of earlier keys (migrations since changed): tens of MB each. */
function removeOtherTemplates (cache: string, current: string): void {
  for (const entry of readdirSync(cache)) {
    if (entry.startsWith('pglite-') && entry !== current && !entry.includes('.building-')) {
      rmSync(join(cache, entry), { recursive: true, force: true })
    }
  }
}

/** Directories `<prefix><pid>-…` whose process is gone (killed before its teardown). */
function removeDirsOfDeadProcesses (parent: string, prefix: string): void {
  for (const entry of readdirSync(parent)) {
    if (!entry.startsWith(prefix)) continue
    const pid = Number(entry.slice(prefix.length).split('-')[0])
    if (Number.isSafeInteger(pid) && pid > 0 && !isAlive(pid)) rmSync(join(parent, entry), { recursive: true, force: true })
  }
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
