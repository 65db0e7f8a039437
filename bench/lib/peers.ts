/**
 * Peer job queues on the same PostgreSQL: graphile-worker 0.17.3 and pg-boss
 * 10.4.2, installed into bench/peers/ (a package of its own, never a dependency of the broker) on
 * first use, each run in a process of its own, one at a time, with the broker stopped.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './broker.js'

const PEERS_DIR = join(ROOT, 'bench', 'peers')

export interface PeerConfig {
  key: string
  /** the package, for its installed version */
  pkg: 'graphile-worker' | 'pg-boss'
  settings: string
  options: Record<string, unknown>
}

export const PEER_CONFIGS: PeerConfig[] = [
  {
    key: 'graphile-worker defaults',
    pkg: 'graphile-worker',
    settings: 'concurrency 10, defaults (no localQueue, completeJobBatchDelay default), pollInterval 2000',
    options: { schema: 'bench_graphile_worker', concurrency: 10 }
  },
  {
    key: 'graphile-worker batched',
    pkg: 'graphile-worker',
    settings: 'concurrency 50, localQueue.size 500, completeJobBatchDelay 0',
    options: { schema: 'bench_graphile_worker', concurrency: 50, localQueueSize: 500, completeJobBatchDelay: 0 }
  },
  {
    key: 'pg-boss',
    pkg: 'pg-boss',
    settings: '50 workers × batchSize 100, pollingIntervalSeconds 0.5, VACUUM ANALYZE after enqueue',
    options: { schema: 'bench_pgboss', workers: 50, batchSize: 100, pollingIntervalSeconds: 0.5, analyze: true }
  }
]

export interface PeerRun {
  key: string
  rep: number
  jobs: number
  completed: number
  seconds: number
  jobs_per_sec: number
  enqueue_per_sec: number
}

/** `npm install --prefix bench/peers` when its node_modules is missing. */
export function ensurePeersInstalled (log: (line: string) => void): void {
  if (existsSync(join(PEERS_DIR, 'node_modules', 'graphile-worker')) && existsSync(join(PEERS_DIR, 'node_modules', 'pg-boss'))) return
  log('installing the peers into bench/peers (npm install --prefix bench/peers) …')
  const result = spawnSync('npm', ['install', '--prefix', PEERS_DIR, '--no-audit', '--no-fund'], { cwd: ROOT, encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`npm install --prefix bench/peers failed:\n${result.stderr}`)
}

export function peerVersion (pkg: string): string {
  try {
    return (JSON.parse(readFileSync(join(PEERS_DIR, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version
  } catch {
    return 'not installed'
  }
}

/** One run of one peer configuration in its own process; the result is its last stdout line. */
export function runPeer (config: PeerConfig, url: string, jobs: number, rep: number): Promise<PeerRun> {
  const script = join(PEERS_DIR, `${config.pkg}.ts`)
  const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify({ url, jobs, ...config.options })], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString('utf8') })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8') })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => {
      const last = stdout.trim().split('\n').pop() ?? ''
      if (code !== 0) return reject(new Error(`${config.key} exited with ${String(code)}:\n${stderr.slice(-2000)}`))
      try {
        resolve({ key: config.key, rep, ...(JSON.parse(last) as Omit<PeerRun, 'key' | 'rep'>) })
      } catch {
        reject(new Error(`${config.key} printed no result:\n${stdout.slice(-1000)}\n${stderr.slice(-1000)}`))
      }
    })
  })
}
