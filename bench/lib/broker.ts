/**
 * The broker under test, run as users run it: `node dist/src/server.js` in its own process, on a
 * dedicated PostgreSQL database, configured through the environment only.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { connectPostgres } from './pg.js'
import { freePort, newestMtime, ROOT, rssMb, stopChild, treeRssMb, waitUntilReady } from './process.js'

export { freePort, ROOT, rssMb }
/** The compiled broker of a checkout. */
const serverOf = (root: string) => join(root, 'dist', 'src', 'server.js')

/**
 * Compiles the broker when asked to (`always`), or when `dist/` is missing or older than `src/`
 * (`auto`). A failed build stops the benchmark: numbers from a stale build would mislead.
 */
export function ensureBuilt (mode: 'auto' | 'always' | 'never', log: (line: string) => void, root = ROOT): void {
  const SERVER = serverOf(root)
  if (mode === 'never') {
    if (!existsSync(SERVER)) throw new Error(`${SERVER} is missing; run npm run build (or drop --no-build)`)
    return
  }
  const stale = !existsSync(SERVER) || statSync(SERVER).mtimeMs < Math.max(newestMtime(join(root, 'src')), statSync(join(root, 'package.json')).mtimeMs)
  if (mode === 'auto' && !stale) return
  log(`building the broker${root === ROOT ? '' : ` in ${root}`} (npm run build${mode === 'auto' ? ': dist is missing or older than src' : ''}) …`)
  const result = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  if (result.status !== 0) {
    const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n')
    throw new Error(`npm run build failed (exit ${String(result.status)}):\n${output}`)
  }
}

/** The URL of `database` on the server of `adminUrl`, creating the database when missing. */
export async function prepareDatabase (adminUrl: string, database: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]*$/.test(database)) throw new Error(`--database must be a plain identifier (got ${database})`)
  const admin = connectPostgres(adminUrl, { max: 1, onnotice: () => {} })
  try {
    const exists = await admin`select 1 from pg_database where datname = ${database}`
    if (exists.length === 0) await admin.unsafe(`create database ${database}`)
  } finally {
    await admin.end()
  }
  const url = new URL(adminUrl)
  url.pathname = `/${database}`
  return url.toString()
}

/**
 * Produce backpressure off, as it is by default (0 = no limit: nothing is counted). Spelled out so
 * a change of the defaults cannot slip into the numbers; a limit, however high, would add a count
 * query every TASKBROKER_BACKPRESSURE_CACHE_MS that a default broker does not run.
 */
export const NO_BACKPRESSURE = {
  TASKBROKER_MAX_PENDING_COUNT: '0',
  TASKBROKER_MAX_DELAY_COUNT: '0',
  TASKBROKER_MAX_PROCESSING_COUNT: '0'
}

export interface Broker {
  readonly url: string
  readonly pid: number
  readonly env: Record<string, string>
  rss: () => number | undefined
  /** Settles when the process exits, with its exit code or signal. */
  exited: Promise<string>
  /** The last lines the broker printed. */
  tail: () => string
  /** SIGTERM, then wait for the exit (SIGKILL after `timeoutMs`). Returns the exit code or signal. */
  stop: (timeoutMs?: number) => Promise<string>
}

/** Brokers started and not yet exited: killed if the driver itself has to stop early. */
const live = new Set<ChildProcess>()

/** For the driver's signal and exit handlers: SIGTERM (or SIGKILL) every broker still running. */
export function killBrokers (signal: NodeJS.Signals = 'SIGTERM'): number {
  for (const child of live) child.kill(signal)
  return live.size
}

/**
 * Starts `node dist/src/server.js` with `env` (on top of a clean environment: no inherited
 * TASKBROKER_* setting leaks in) and waits until GET /readyz answers 200. `fromSource` runs
 * src/server.ts through tsx instead (no build; for smoke tests, not for numbers).
 */
export async function startBroker (env: Record<string, string>, log: (line: string) => void, fromSource = false, nodeArgs: string[] = [], root = ROOT): Promise<Broker> {
  const port = await freePort()
  const inherited: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || key.startsWith('TASKBROKER_') || ['DATABASE_URL', 'PORT', 'HOST', 'LOG_LEVEL', 'NODE_OPTIONS'].includes(key)) continue
    inherited[key] = value
  }
  const brokerEnv = { HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', ...env }
  const args = [...nodeArgs, ...(fromSource ? ['--import', 'tsx', join(root, 'src', 'server.ts')] : [serverOf(root)])]
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: root,
    env: { ...inherited, ...brokerEnv },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const tail: string[] = []
  let shown = 0
  const onOutput = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue
      tail.push(line)
      if (tail.length > 40) tail.shift()
      // LOG_LEVEL=warn: whatever the broker prints is worth seeing, but never a flood.
      if (shown < 10) log(`  [broker] ${line.slice(0, 400)}`)
      else if (shown === 10) log('  [broker] … (more broker output suppressed)')
      shown++
    }
  }
  child.stdout?.on('data', onOutput)
  child.stderr?.on('data', onOutput)
  live.add(child)
  let exit: string | undefined
  const exited = new Promise<string>(resolve => child.once('exit', (code, signal) => {
    live.delete(child)
    exit = signal ?? String(code)
    resolve(exit)
  }))
  const url = `http://127.0.0.1:${port}`
  await waitUntilReady(child, url, () => exit, () => tail.join('\n'))
  const pid = child.pid as number
  return {
    url,
    pid,
    env: brokerEnv,
    rss: () => treeRssMb(pid),
    exited,
    tail: () => tail.join('\n'),
    stop: async (timeoutMs = 30_000) => exit ?? await stopChild(child, exited, timeoutMs)
  }
}

/** The trivial server of bench/ceiling-server.ts (no database), for the HTTP ceiling. */
export interface CeilingServer { readonly url: string, readonly pid: number, stop: () => Promise<void> }

export async function startCeilingServer (): Promise<CeilingServer> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'ceiling-server.ts')], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit']
  })
  live.add(child)
  const exited = new Promise<void>(resolve => child.once('exit', () => { live.delete(child); resolve() }))
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error('the ceiling server did not start within 30 s')), 30_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8')
      const match = /listening (\S+)/.exec(out)
      if (match !== null) { clearTimeout(timer); resolve(match[1] as string) }
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`the ceiling server exited (${String(code)}) before it listened`)) })
  })
  return {
    url,
    pid: child.pid as number,
    stop: () => stopChild(child, exited, 5_000)
  }
}
