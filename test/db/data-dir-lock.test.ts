/**
 * One broker per embedded data directory (src/db/data-dir-lock.ts): a second open is refused with
 * the holder named, a stale lock (dead pid, or a reboot since) is taken over, one from another host
 * is not, the lock goes with close, and an unusable directory is a ConfigError naming it.
 */
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import t from 'tap'
import { ConfigError, StartupRefusedError } from '../../src/config/config.js'
import { LOCK_FILE, lockDataDir } from '../../src/db/data-dir-lock.js'
import { openDatabase } from '../../src/db/database.js'

const silent = pino({ level: 'silent' })
const freshDir = () => join(mkdtempSync(join(tmpdir(), 'tb-lock-')), 'data')

/** The pid of a process that has exited. */
function deadPid (): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
  return Number(child.stdout)
}

const writeLock = (dir: string, holder: Record<string, unknown>) => {
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, LOCK_FILE), `${JSON.stringify(holder)}\n`)
}
const holderOf = (dir: string) => JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')) as { pid: number, host: string, since: string }

t.test('a second open of a locked directory is refused, naming the directory and the holder', async (t) => {
  const dir = freshDir()
  const first = lockDataDir(dir)
  t.teardown(() => first.release())
  t.equal(first.replaced, undefined)
  t.equal(holderOf(dir).pid, process.pid)
  t.equal(holderOf(dir).host, hostname())
  const err = t.throws(() => lockDataDir(dir)) as Error
  t.type(err, StartupRefusedError)
  t.match(err.message, `TASKBROKER_DATA_DIR ${first.dir} is in use by another broker (pid ${process.pid} on host ${hostname()} since ${holderOf(dir).since})`)
  t.notOk(err.message.includes('\n'), 'one line')
  first.release()
  const again = lockDataDir(dir)
  again.release()
  t.notOk(existsSync(join(dir, LOCK_FILE)), 'released')
  t.same(readdirSync(dir), [], 'no temporary or set-aside files left behind')
})

t.test('a lock whose process is gone (same host) is taken over', async (t) => {
  const dir = freshDir()
  writeLock(dir, { pid: deadPid(), host: hostname(), since: '2026-01-01T00:00:00.000Z' })
  const lock = lockDataDir(dir)
  t.teardown(() => lock.release())
  t.equal(holderOf(dir).pid, process.pid)
  t.equal(lock.replaced?.since, '2026-01-01T00:00:00.000Z', 'says whose lock it replaced')
  t.same(readdirSync(dir), [LOCK_FILE])
})

t.test('a lock from before a reboot is taken over even if its pid is alive now', async (t) => {
  const dir = freshDir()
  // process.ppid is certainly alive; the boot id says it is another process than the holder.
  writeLock(dir, { pid: process.ppid, host: hostname(), since: '2026-01-01T00:00:00.000Z', bootId: 'another-boot' })
  const lock = lockDataDir(dir)
  t.teardown(() => lock.release())
  t.equal(holderOf(dir).pid, process.pid)
})

t.test('a lock held by a live process on this host is not taken over', async (t) => {
  const dir = freshDir()
  writeLock(dir, { pid: process.ppid, host: hostname(), since: '2026-01-01T00:00:00.000Z' })
  t.throws(() => lockDataDir(dir), { name: 'StartupRefusedError', message: new RegExp(`pid ${process.ppid} on host`) })
  t.equal(holderOf(dir).pid, process.ppid, 'left in place')
})

t.test('a lock from another host is never broken automatically; the message says how to remove it', async (t) => {
  const dir = freshDir()
  writeLock(dir, { pid: deadPid(), host: 'some-other-host', since: '2026-01-01T00:00:00.000Z' })
  const err = t.throws(() => lockDataDir(dir)) as Error
  t.match(err.message, /in use by a broker on another host \(pid \d+ on host some-other-host since 2026-01-01T00:00:00.000Z\)/)
  t.match(err.message, `delete ${join(dir, LOCK_FILE)}`)
  t.equal(holderOf(dir).host, 'some-other-host', 'left in place')
})

t.test('an unreadable lock file is refused with the file to delete', async (t) => {
  const dir = freshDir()
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, LOCK_FILE), 'garbage')
  t.throws(() => lockDataDir(dir), { name: 'StartupRefusedError', message: /which this broker cannot read; if no broker uses the directory, delete that file/ })
})

t.test('the embedded store takes the lock when it opens and gives it up when it closes', { timeout: 180_000 }, async (t) => {
  const dir = freshDir()
  const database = await openDatabase({ dataDir: dir, poolSize: 1, log: silent })
  t.equal(holderOf(dir).pid, process.pid)
  await t.rejects(openDatabase({ dataDir: dir, poolSize: 1, log: silent }), { name: 'StartupRefusedError', message: /is in use by another broker/ })
  await database.close()
  t.notOk(existsSync(join(dir, LOCK_FILE)), 'released on close')
  const reopened = await openDatabase({ dataDir: dir, poolSize: 1, log: silent })
  await reopened.close()
})

t.test('an unusable data directory is one ConfigError naming TASKBROKER_DATA_DIR and the path', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'tb-lock-'))
  const file = join(base, 'a-file')
  writeFileSync(file, '')
  t.throws(() => lockDataDir(file), new ConfigError('TASKBROKER_DATA_DIR', `${JSON.stringify(file)} is not a directory`))
  t.throws(() => lockDataDir(join(file, 'data')), new ConfigError('TASKBROKER_DATA_DIR', `${JSON.stringify(join(file, 'data'))} cannot be created (ENOTDIR)`))
  // Node's recursive mkdir never returns under /proc; the broker hung there instead of refusing.
  if (existsSync('/proc/self')) {
    t.throws(() => lockDataDir('/proc/taskbroker-no-such/data'), { name: 'ConfigError', message: /TASKBROKER_DATA_DIR "\/proc\/taskbroker-no-such\/data" cannot be created \(ENOENT\)/ })
  }
  const deep = join(base, 'a', 'b', 'c')
  const lock = lockDataDir(deep)
  t.equal(lock.dir, deep, 'missing parents are created, as mkdir -p does')
  lock.release()
  const readOnly = join(base, 'read-only')
  mkdirSync(readOnly)
  chmodSync(readOnly, 0o555)
  t.teardown(() => chmodSync(readOnly, 0o755))
  if (process.getuid?.() === 0) {
    t.comment('running as root: permissions are not enforced, the read-only case is skipped')
  } else {
    t.throws(() => lockDataDir(readOnly), { name: 'ConfigError', message: `Invalid configuration: TASKBROKER_DATA_DIR ${JSON.stringify(readOnly)} is not writable (EACCES)` })
    t.throws(() => lockDataDir(join(readOnly, 'data')), { name: 'ConfigError', message: /TASKBROKER_DATA_DIR .* cannot be created \(EACCES\)/ })
  }
})

t.test('processes racing for a stale lock: exactly one gets it', { timeout: 180_000 }, async (t) => {
  const dir = freshDir()
  writeLock(dir, { pid: deadPid(), host: hostname(), since: '2026-01-01T00:00:00.000Z' })
  const go = join(dir, '..', 'go')
  const module = fileURLToPath(new URL('../../src/db/data-dir-lock.ts', import.meta.url))
  // Each waits for the go file, tries once, and holds what it got until the others have tried.
  const script = `
    import { existsSync } from 'node:fs'
    const { lockDataDir } = await import(${JSON.stringify(module)})
    process.stdout.write('loaded\\n')
    while (!existsSync(${JSON.stringify(go)})) await new Promise(resolve => setTimeout(resolve, 5))
    let outcome
    try { lockDataDir(${JSON.stringify(dir)}); outcome = 'locked' } catch (error) { outcome = error.name }
    process.stdout.write(outcome + '\\n')
    await new Promise(resolve => setTimeout(resolve, 3000))
  `
  const children = Array.from({ length: 6 }, () => spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] }))
  const outputs = children.map(child => {
    let text = ''
    child.stdout.on('data', (chunk: Buffer) => { text += chunk.toString('utf8') })
    return { loaded: () => text.includes('loaded'), exited: new Promise<string>(resolve => child.once('exit', () => resolve(text))) }
  })
  t.teardown(() => { for (const child of children) child.kill('SIGKILL') })
  while (!outputs.every(o => o.loaded())) await new Promise(resolve => setTimeout(resolve, 20))
  writeFileSync(go, '')
  const outcomes = (await Promise.all(outputs.map(o => o.exited))).map(text => text.replace('loaded', '').trim())
  t.equal(outcomes.filter(o => o === 'locked').length, 1, `one winner (${outcomes.join(', ')})`)
  t.equal(outcomes.filter(o => o === 'StartupRefusedError').length, 5, 'the others are refused')
  t.same(readdirSync(dir).filter(name => name !== LOCK_FILE), [], 'nothing left beside the lock')
})
