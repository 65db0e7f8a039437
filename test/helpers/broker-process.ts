/**
 * The broker as a real child process, for tests that need one (test/faults): started on a port
 * (a free one by default) with the environment given, ready once /readyz answers 200, its log
 * lines sorted into errors and message counts, its RSS readable; and a cleanup stack that stops
 * it (and anything else registered) when the test ends.
 *
 * - It runs as `node --import tsx src/server.ts` (no build, nothing written to dist/), or as
 *   `node dist/src/server.js` with TASKBROKER_FAULT_BROKER=dist (built first when stale).
 * - A one-line `--import data:` guard makes it SIGKILL itself if the test process dies, so a
 *   crashed or timed-out test never leaves a broker behind.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { freePort, newestMtime, ROOT, rssMb, stopChild, waitUntilReady } from '../../bench/lib/process.js'

export { freePort, ROOT }

export const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------
// Cleanup: one teardown per test that runs everything registered, last first, each step guarded.

export type Defer = (step: () => unknown) => void

export function cleanupStack (t: Test): Defer {
  const steps: Array<() => unknown> = []
  t.teardown(async () => {
    for (const step of steps.reverse()) {
      try {
        await step()
      } catch (error) {
        process.stderr.write(`fault test cleanup step failed: ${String(error)}\n`)
      }
    }
  })
  return step => { steps.push(step) }
}

// ---------------------------------------------------------------------------------------------
// The broker process.

/**
 * TASKBROKER_FAULT_BROKER_ENV='{"KEY":"value"}' adds settings to every broker a fault test starts
 * (for experiments, e.g. trying a workaround); the summaries then show them.
 */
export const EXTRA_BROKER_ENV: Record<string, string> = JSON.parse(process.env.TASKBROKER_FAULT_BROKER_ENV ?? '{}') as Record<string, string>

const MODE = process.env.TASKBROKER_FAULT_BROKER === 'dist' ? 'dist' : 'source'
const SERVER_JS = join(ROOT, 'dist', 'src', 'server.js')

/** With TASKBROKER_FAULT_BROKER=dist: `npm run build` when dist/ is missing or older than src/. */
export async function prepareBroker (): Promise<string> {
  const extra = Object.keys(EXTRA_BROKER_ENV).length > 0 ? ` with ${JSON.stringify(EXTRA_BROKER_ENV)}` : ''
  if (MODE === 'source') return `node --import tsx src/server.ts${extra}`
  const stale = !existsSync(SERVER_JS) || statSync(SERVER_JS).mtimeMs < newestMtime(join(ROOT, 'src'))
  if (stale) {
    const result = await new Promise<{ code: number, output: string }>(resolve => {
      execFile('npm', ['run', '--silent', 'build'], { cwd: ROOT, timeout: 300_000, encoding: 'utf8' }, (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : 1, output: `${stdout}${stderr}` })
      })
    })
    if (result.code !== 0) throw new Error(`npm run build failed:\n${result.output.slice(-2000)}`)
  }
  return `node dist/src/server.js${extra}`
}

/** Kills the broker if its parent (the test process) goes away: an orphan never outlives a test. */
const ORPHAN_GUARD = 'data:text/javascript,const p=process.ppid;' +
  'setInterval(()=>{if(process.ppid!==p)process.kill(process.pid,"SIGKILL")},500).unref()'

export interface Exit { code: number | null, signal: NodeJS.Signals | null, at: number }

export interface Broker {
  readonly url: string
  readonly port: number
  readonly pid: number
  /** From spawn to /readyz 200. */
  readonly readyMs: number
  readonly exited: Promise<Exit>
  readonly exit: Exit | undefined
  /** Log lines at level error or above (pino level ≥ 50), and stderr lines other than process warnings. */
  readonly errors: string[]
  /** Counts of warn-and-above log messages by "level msg". */
  readonly messages: Map<string, number>
  rssMb (): number | undefined
  kill (signal: NodeJS.Signals): void
  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves with the exit. */
  stop (timeoutMs?: number): Promise<Exit>
}

/** Starts the broker on `port` (a free one by default) and waits until /readyz answers 200. */
export async function startBroker (defer: Defer, env: Record<string, string>, port?: number): Promise<Broker> {
  const listenPort = port ?? await freePort()
  const inherited: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || key.startsWith('TASKBROKER_') || key.startsWith('NODE_') ||
      ['DATABASE_URL', 'PORT', 'HOST', 'LOG_LEVEL'].includes(key)) continue
    inherited[key] = value
  }
  const entry = MODE === 'dist' ? [SERVER_JS] : ['--import', 'tsx', join(ROOT, 'src', 'server.ts')]
  const child: ChildProcess = spawn(process.execPath, [`--import=${ORPHAN_GUARD}`, ...entry], {
    cwd: ROOT,
    env: { ...inherited, HOST: '127.0.0.1', PORT: String(listenPort), ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const errors: string[] = []
  const messages = new Map<string, number>()
  const tail: string[] = []
  const onLine = (line: string, stream: 'stdout' | 'stderr') => {
    if (line.trim() === '') return
    tail.push(line.slice(0, 500))
    if (tail.length > 30) tail.shift()
    // Process warnings (deprecations) on stderr are not errors of the broker.
    let level = /^\(node:\d+\) .*Warning|^\(Use `node --trace-warnings/.test(line) ? 40 : 60
    let msg = line.slice(0, 200)
    if (stream === 'stdout') {
      try {
        const parsed = JSON.parse(line) as { level?: number, msg?: string }
        level = parsed.level ?? 30
        msg = parsed.msg ?? ''
      } catch {}
    }
    const key = `${level >= 50 ? 'error' : level >= 40 ? 'warn' : 'info'} ${msg}`
    messages.set(key, (messages.get(key) ?? 0) + 1)
    if (level >= 50 && errors.length < 200) errors.push(line.slice(0, 1000))
  }
  const lineReader = (stream: 'stdout' | 'stderr') => {
    let rest = ''
    return (chunk: Buffer) => {
      const lines = (rest + chunk.toString('utf8')).split('\n')
      rest = lines.pop() ?? ''
      for (const line of lines) onLine(line, stream)
    }
  }
  child.stdout?.on('data', lineReader('stdout'))
  child.stderr?.on('data', lineReader('stderr'))
  let exit: Exit | undefined
  const exited = new Promise<Exit>(resolve => child.once('exit', (code, signal) => {
    exit = { code, signal, at: Date.now() }
    resolve(exit)
  }))
  const stop = async (timeoutMs = 15_000): Promise<Exit> => exit ?? await stopChild(child, exited, timeoutMs)
  defer(() => stop(5_000))

  const url = `http://127.0.0.1:${listenPort}`
  const spawnedAt = Date.now()
  await waitUntilReady(child, url, () => exit === undefined ? undefined : exit.signal ?? String(exit.code), () => tail.join('\n'))
  const pid = child.pid as number
  return {
    url,
    port: listenPort,
    pid,
    readyMs: Date.now() - spawnedAt,
    exited,
    get exit () { return exit },
    errors,
    messages,
    rssMb: () => rssMb(pid),
    kill: (signal) => { if (exit === undefined) child.kill(signal) },
    stop
  }
}

/** Samples a process's RSS every `everyMs` until stopped. */
export class RssSampler {
  readonly samples: Array<{ at: number, mb: number }> = []
  private readonly timer: ReturnType<typeof setInterval>
  constructor (private pid: () => number | undefined, everyMs = 250) {
    this.timer = setInterval(() => this.sample(), everyMs)
    this.timer.unref()
  }

  sample (): void {
    const pid = this.pid()
    const mb = rssMb(pid)
    if (mb !== undefined) this.samples.push({ at: Date.now(), mb })
  }

  /** Largest sample in [from, to). */
  max (from = 0, to = Infinity): number {
    let max = 0
    for (const s of this.samples) if (s.at >= from && s.at < to && s.mb > max) max = s.mb
    return max
  }

  stop (): void { clearInterval(this.timer) }
}
