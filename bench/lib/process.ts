/**
 * Child-process plumbing shared by the benchmark (bench/lib/broker.ts) and the fault tests
 * (test/helpers/broker-process.ts): both start the broker as users run it and wait for it.
 */
import type { ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository root (bench/lib/../..). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url))

const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms))

/** The newest modification time of any file under `dir` (is dist/ older than src/?). */
export function newestMtime (dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs)
  }
  return newest
}

/** A port nobody listens on right now (the kernel's pick for port 0, released again). */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** Resident set size of a process in MB, from /proc/<pid>/status (undefined when unreadable). */
export function rssMb (pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match === null ? undefined : Math.round(Number(match[1]) / 102.4) / 10
  } catch {
    return undefined
  }
}

/** The live child processes of `pid` (a broker run with TASKBROKER_PROCESSES > 1 has its broker processes there). */
export function childPids (pid: number): number[] {
  const children: number[] = []
  let entries: string[]
  try { entries = readdirSync('/proc') } catch { return children }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // After the command: the state, then the parent's pid.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[1]) === pid && fields[0] !== 'Z') children.push(Number(entry))
    } catch {}
  }
  return children
}

/** RSS of a process and its children together (a multi-process broker is one broker), in MB. */
export function treeRssMb (pid: number | undefined): number | undefined {
  const own = rssMb(pid)
  if (pid === undefined || own === undefined) return own
  return Math.round((own + childPids(pid).reduce((sum, child) => sum + (rssMb(child) ?? 0), 0)) * 10) / 10
}

/**
 * Polls `<url>/readyz` every 100 ms until it answers 200. Throws, with the process's last output,
 * when it exits first (`exitOf` says how) or is not ready within 60 s (it is SIGKILLed then).
 */
export async function waitUntilReady (child: ChildProcess, url: string, exitOf: () => string | undefined, tail: () => string): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const exit = exitOf()
    if (exit !== undefined) throw new Error(`the broker exited (${exit}) before it was ready:\n${tail()}`)
    try {
      const response = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) })
      await response.arrayBuffer()
      if (response.status === 200) return
    } catch {}
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`the broker was not ready within 60 s:\n${tail()}`)
    }
    await sleep(100)
  }
}

/** SIGTERM, then SIGKILL after `timeoutMs`; resolves with what `exited` resolves to. */
export async function stopChild<T> (child: ChildProcess, exited: Promise<T>, timeoutMs: number): Promise<T> {
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  try {
    return await exited
  } finally {
    clearTimeout(timer)
  }
}
