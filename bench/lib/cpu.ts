/**
 * CPU time (user + system) spent by the processes of a run, read from /proc (Linux only): the
 * broker, the simulated workers (the load generator) and every PostgreSQL process (backends,
 * WAL writer, autovacuum: all work the run caused). Divided by the tasks done it says where the
 * time per task goes, which a throughput figure on 2 shared cores cannot.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { childPids } from './process.js'

export type CpuGroup = 'broker' | 'postgres' | 'workers'

/** CPU milliseconds by process id, with the group each process belongs to. */
export type CpuSnapshot = Map<number, { group: CpuGroup, ms: number }>

/** Microseconds of CPU per task, by group (undefined off Linux). */
export interface CpuPerTask { broker: number, postgres: number, workers: number, total: number }

/** Kernel clock ticks per second for /proc/<pid>/stat times (USER_HZ: 100 on every Linux build we know of). */
const TICKS_PER_SEC = 100

/** utime + stime of `pid` in ms and its command name, or undefined when it is gone. */
function readStat (pid: number): { comm: string, ms: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command may contain spaces and parentheses: the fields after it start at the last ')'.
    const close = stat.lastIndexOf(')')
    const comm = stat.slice(stat.indexOf('(') + 1, close)
    const fields = stat.slice(close + 2).split(' ')
    // Fields 14 and 15 of the file (utime, stime) are the 12th and 13th after the command.
    return { comm, ms: (Number(fields[11]) + Number(fields[12])) * 1000 / TICKS_PER_SEC }
  } catch {
    return undefined
  }
}

function postgresPids (): number[] {
  const pids: number[] = []
  let entries: string[]
  try { entries = readdirSync('/proc') } catch { return pids }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    const stat = readStat(Number(entry))
    if (stat?.comm === 'postgres') pids.push(Number(entry))
  }
  return pids
}

/** The CPU time so far of the broker, the worker process and all PostgreSQL processes. */
export function cpuSnapshot (pids: { broker: number | undefined, workers: number | undefined }): CpuSnapshot {
  const snapshot: CpuSnapshot = new Map()
  const add = (pid: number | undefined, group: CpuGroup) => {
    if (pid === undefined) return
    const stat = readStat(pid)
    if (stat !== undefined) snapshot.set(pid, { group, ms: stat.ms })
  }
  add(pids.broker, 'broker')
  // A multi-process broker (TASKBROKER_PROCESSES): its processes are the broker's too.
  if (pids.broker !== undefined) for (const child of childPids(pids.broker)) add(child, 'broker')
  add(pids.workers, 'workers')
  for (const pid of postgresPids()) add(pid, 'postgres')
  return snapshot
}

/**
 * CPU µs per task between two snapshots. A process that started in between counts from zero
 * (a backend opened during the run); one that ended in between is lost (short-lived, so little).
 */
export function cpuPerTask (before: CpuSnapshot, after: CpuSnapshot, tasks: number): CpuPerTask | undefined {
  if (after.size === 0 || tasks <= 0) return undefined
  const ms = { broker: 0, postgres: 0, workers: 0 }
  for (const [pid, { group, ms: end }] of after) ms[group] += end - (before.get(pid)?.ms ?? 0)
  const us = (v: number) => Math.round(v * 1000 / tasks)
  return { broker: us(ms.broker), postgres: us(ms.postgres), workers: us(ms.workers), total: us(ms.broker + ms.postgres + ms.workers) }
}
