/**
 * A broker started the way a user starts it (`node --import tsx src/server.ts`) with only the
 * given environment, for tests of start-up and of several processes. Killed, with any processes it
 * started, when the test ends.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import type { Test } from 'tap'
import { childPids } from '../../bench/lib/process.js'
import { freePort, ROOT } from './broker-process.js'

export interface ServerRun {
  pid: number
  url: string
  /** Resolves with the fields of the first log line `isReady` accepts, undefined if the process exited first. */
  ready: Promise<Record<string, unknown> | undefined>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  stdout: string[]
  stderr: string[]
  kill (signal: NodeJS.Signals): void
}

/** The single broker's ready line; `processes ready` is the primary's with TASKBROKER_PROCESSES. */
export const BROKER_READY = (fields: Record<string, unknown>) => typeof fields.msg === 'string' && fields.msg.startsWith('taskbroker ready')

export async function runServer (t: Test, env: Record<string, string>, isReady = BROKER_READY): Promise<ServerRun> {
  const inherited: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || key.startsWith('TASKBROKER_') || key.startsWith('NODE_') || ['DATABASE_URL', 'PORT', 'HOST', 'LOG_LEVEL'].includes(key)) continue
    inherited[key] = value
  }
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'server.ts')], {
    cwd: ROOT,
    env: { ...inherited, HOST: '127.0.0.1', PORT: String(port), TASKBROKER_DATA_DIR: 'memory://', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const stdout: string[] = []
  const stderr: string[] = []
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.once('exit', (code, signal) => resolve({ code, signal })))
  t.teardown(async () => {
    // Its broker processes too: a failed assertion must not leave one behind.
    for (const pid of childPids(child.pid as number)) try { process.kill(pid, 'SIGKILL') } catch {}
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  let onReady: (fields: Record<string, unknown> | undefined) => void = () => {}
  const ready = new Promise<Record<string, unknown> | undefined>(resolve => { onReady = resolve })
  exited.then(() => onReady(undefined), () => {})
  const lines = (into: string[], stream: NodeJS.ReadableStream, onLine?: (line: string) => void) => {
    let rest = ''
    stream.on('data', (chunk: Buffer) => {
      const parts = (rest + chunk.toString('utf8')).split('\n')
      rest = parts.pop() ?? ''
      for (const line of parts) {
        into.push(line)
        onLine?.(line)
      }
    })
    stream.on('end', () => { if (rest !== '') into.push(rest) })
  }
  lines(stdout, child.stdout, (line) => {
    try {
      const fields = JSON.parse(line) as Record<string, unknown>
      if (isReady(fields)) onReady(fields)
    } catch {}
  })
  lines(stderr, child.stderr)
  return { pid: child.pid as number, url: `http://127.0.0.1:${port}`, ready, exited, stdout, stderr, kill: (signal) => child.kill(signal) }
}
