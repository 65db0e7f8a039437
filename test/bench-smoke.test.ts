/**
 * Keeps `npm run bench` from rotting: a tiny run of the whole HTTP suite (throughput single and
 * batch with the HTTP ceiling and CPU per task, latency, a short sustained run; status batching on only, no peers: every broker start
 * costs seconds) against the test PostgreSQL. The broker runs from dist/ when that is newer than
 * src/, else from source through tsx (no build here). Asserts that it completes and reports its
 * fields, never on timing. Needs TASKBROKER_TEST_DATABASE_URL.
 */
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { NO_BACKPRESSURE } from '../bench/lib/broker.js'
import { newestMtime, ROOT } from '../bench/lib/process.js'
import { loadConfig } from '../src/config/config.js'

const url = process.env.TASKBROKER_TEST_DATABASE_URL
const root = ROOT
/** dist/ is usable when it is newer than every source file; otherwise run the broker from source. */
function brokerFlag (): string {
  const server = join(root, 'dist', 'src', 'server.js')
  return existsSync(server) && statSync(server).mtimeMs > newestMtime(join(root, 'src')) ? '--no-build' : '--from-source'
}

t.test('the broker accepts every setting the bench gives it', async (t) => {
  const config = loadConfig({
    TASKBROKER_DATABASE_URL: 'postgres://bench@127.0.0.1:5432/taskbroker_bench',
    TASKBROKER_RUN_MIGRATIONS: 'true',
    HOST: '127.0.0.1',
    PORT: '40000',
    LOG_LEVEL: 'warn',
    TASKBROKER_STATUS_BATCHING: 'false',
    TASKBROKER_STATUS_ACK: 'queued',
    ...NO_BACKPRESSURE
  })
  t.match(config, { store: { runMigrations: true }, status: { batching: false, ack: 'queued' }, backpressure: { maxPending: 0, maxDelay: 0, maxProcessing: 0 } })
})

const needsDatabase = url === undefined || url === '' ? 'needs TASKBROKER_TEST_DATABASE_URL' : false

/**
 * Runs `node --import tsx bench/run.ts <args>` on a database and an output directory of its own
 * (both removed when the test ends); returns the exit code, the output and the output directory.
 */
async function runBench (t: Test, name: string, args: string[], timeoutMs: number): Promise<{ code: number | null, stdout: string, stderr: string, out: string }> {
  const out = mkdtempSync(join(tmpdir(), `taskbroker-bench-${name}-`))
  const database = `tb_bench_${name}_${process.pid}`
  t.teardown(async () => {
    rmSync(out, { recursive: true, force: true })
    const admin = postgres(url as string, { max: 1, onnotice: () => {} })
    await admin.unsafe(`drop database if exists ${database} with (force)`).catch(() => {})
    await admin.end()
  })
  const argv = ['--import', 'tsx', 'bench/run.ts', ...args, '--db-url', url as string, '--database', database, '--out', out]
  return await new Promise(resolve => {
    execFile(process.execPath, argv, { cwd: root, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : (typeof error.code === 'number' ? error.code : null), stdout, stderr, out })
    })
  })
}

t.test('npm run bench: a tiny run of the HTTP suite completes and reports every field', { skip: needsDatabase, timeout: 400_000 }, async (t) => {
  const { code, stdout, stderr, out } = await runBench(t, 'smoke', [
    'all',
    '--tasks', '200', '--workers', '4', '--batch-workers', '2', '--limit', '16', '--reps', '1', '--warmup-tasks', '0',
    '--duration', '2', '--warmup', '0', '--rate', '100', '--ack', 'flushed', '--sustained', '2', '--window', '200',
    '--processes', '1,2', '--noisy-tasks', '500', '--ceiling-seconds', '1', '--no-peers', brokerFlag()
  ], 390_000)
  t.equal(code, 0, `npm run bench exits 0\n${stderr.slice(-3000)}`)
  t.match(stdout, /scenario all/, 'prints the scenario')
  t.match(stdout, /machine .*"cores"/, 'prints the machine')
  t.ok(existsSync(join(out, 'latest.md')), 'writes latest.md')

  const results = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8'))
  t.match(results.machine, { cores: Number, node: String, postgres: /PostgreSQL/ }, 'machine: cores, node, PostgreSQL version')
  t.match(results.broker_env, { TASKBROKER_RUN_MIGRATIONS: 'true', TASKBROKER_MAX_PENDING_COUNT: '0' })

  const runs = results.throughput as Array<Record<string, unknown>>
  // Every filter shape for both loops, 2 processes with the latency filter, the noisy neighbour.
  t.same(runs.map(r => `${String(r.scenario)} ${String(r.filter)} ×${String(r.processes)} ${String(r.batching)}`).sort(), [
    'batch application ×1 on', 'batch application ×2 on', 'batch application+namespace ×1 on', 'batch none ×1 on',
    'noisy application ×1 on',
    'single application ×1 on', 'single application ×2 on', 'single application+namespace ×1 on', 'single none ×1 on'
  ])
  for (const run of runs) {
    t.match(run, { tasks: 200, completed: 200, remaining: 0, tasks_per_sec: Number, produce_per_sec: Number, rss_start_mb: Number, rss_end_mb: Number, broker_exit: '0', build: 'current' }, `${String(run.scenario)} filter ${String(run.filter)} ×${String(run.processes)}`)
  }
  t.equal(runs.find(r => r.scenario === 'noisy')?.noisy_tasks, 500, 'the noisy run had its neighbour')
  t.match(results.summary, { produce_median_tasks_per_sec: Number })
  t.equal(results.summary.throughput.length, 9, 'one summary per configuration')
  t.match(results.machine.broker_checkout, { commit: String, src_uncommitted_changes: Boolean }, 'the commit measured')

  // Issue 17's goals, with ratios from this run (none from the peers: --no-peers).
  const goal = (prefix: string) => (results.summary.goals as Array<{ goal: string, ratio?: number, met?: boolean, config: string }>).filter(g => g.goal.startsWith(prefix))
  t.equal(goal('single loop, filter').length, 3, 'single vs the ceiling for every filter shape')
  for (const g of goal('single loop, filter')) t.match(g, { ratio: Number, met: Boolean, config: /4 workers/ }, g.goal)
  for (const g of goal('batch loop, filter')) t.notOk('ratio' in g, `${g.goal}: no ratio without peers`)
  t.match(goal('single loop: 2 broker processes vs 1'), [{ ratio: Number, met: Boolean }])
  t.match(goal('batch loop: 2 broker processes vs 1'), [{ ratio: Number, met: Boolean }])
  t.match(goal('noisy neighbour'), [{ ratio: Number }])
  t.match(goal('produce→claim p50'), [{ met: Boolean, config: /filter \{application\}/ }])
  for (const run of runs) {
    t.match(run.cpu_us_per_task, { broker: Number, postgres: Number, workers: Number, total: Number }, `${String(run.scenario)}: CPU per task by process`)
    const cpu = run.cpu_us_per_task as { broker: number, postgres: number, workers: number }
    // Kernel CPU times tick in 10 ms: a 200-task run can read 0 for one process, never for all.
    t.ok(cpu.broker + cpu.workers + cpu.postgres > 0, `${String(run.scenario)}: CPU time was counted (${JSON.stringify(cpu)})`)
  }
  t.equal(results.ceiling.length, 1, 'the HTTP ceiling was measured')
  t.match(results.ceiling[0], { workers: 4, requests_per_sec: Number, errors: 0, cpu_us_per_request: { broker: Number, workers: Number } })
  t.ok(results.ceiling[0].requests_per_sec > 0, 'the trivial server answered')
  t.match(results.summary, { ceiling_median_per_sec: Number, single_of_ceiling: Number })

  t.equal(results.latency.length, 2, 'ack flushed, then flushed with fetch_next long-polling')
  const latency = results.latency[0]
  t.match(latency, { ack: 'flushed', offered_per_sec: 100, remaining: 0, broker_exit: '0', fetch_next_wait_ms: 0 })
  t.equal(latency.completed, latency.produced, 'every produced task was completed')
  const waiting = results.latency[1]
  t.match(waiting, { ack: 'flushed', offered_per_sec: 100, remaining: 0, broker_exit: '0', fetch_next_wait_ms: Number })
  t.ok(waiting.fetch_next_wait_ms > 0, 'its fetch_next long-polls')
  t.equal(waiting.completed, waiting.produced, 'every produced task was completed with fetch_next long-polling')
  t.equal(waiting.status_ack_ms.count, 0, 'no status ack measured when the answer includes the wait')
  // Samples are taken inside the measured window only: on a machine busy enough that the first
  // reports end after it, a figure can have no samples (count 0). The fields must still be there,
  // and every figure that has samples must have its percentiles.
  let sampled = 0
  for (const key of ['produce_to_claim_ms', 'status_ack_ms', 'produce_request_ms']) {
    t.match(latency[key], { count: Number }, key)
    if (latency[key].count > 0) {
      sampled++
      t.match(latency[key], { p50: Number, p95: Number, p99: Number }, `${key}: percentiles of ${String(latency[key].count)} samples`)
    }
  }
  t.ok(sampled > 0, 'the latency run measured something')

  t.match(results.sustained, { seconds: 2, rss_min_mb: Number, rss_max_mb: Number, flat: Boolean, broker_exit: '0' })
  t.ok(results.sustained.samples.length >= 2, 'sustained: RSS sampled over time')
  t.ok(results.summary.goals.length >= 5, 'the goals table is filled')
  t.match(readFileSync(join(out, 'latest.md'), 'utf8'), /\| goal \| target \| measured \| ratio \| met \| configuration \|[\s\S]*## Throughput[\s\S]*HTTP ceiling[\s\S]*noisy neighbour[\s\S]*Where the CPU goes[\s\S]*## Latency[\s\S]*## Sustained/, 'the Markdown has every section')
})

t.test('npm run bench --baseline COMMIT: that commit\'s broker runs beside this one, rep by rep, and the cost of unused features is a ratio', { skip: needsDatabase, timeout: 300_000 }, async (t) => {
  // HEAD as the baseline: the mechanics (a worktree of the commit, node_modules linked), not a
  // comparison. From source: the worktree has no dist/.
  const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim()
  const worktree = join(tmpdir(), `taskbroker-bench-${head.slice(0, 12)}`)
  const existed = existsSync(worktree)
  t.teardown(() => {
    if (!existed) execFileSync('git', ['worktree', 'remove', '--force', worktree], { cwd: root })
  })
  const { code, stderr, out } = await runBench(t, 'base', [
    'single', '--tasks', '100', '--workers', '2', '--reps', '1', '--warmup-tasks', '0', '--filters', 'application', '--processes', '1',
    '--ceiling-seconds', '0', '--no-peers', '--baseline', 'HEAD', '--from-source'
  ], 290_000)
  t.equal(code, 0, `exits 0\n${stderr.slice(-3000)}`)
  const results = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8'))
  t.same((results.throughput as Array<{ build: string }>).map(r => r.build), ['current', 'baseline'])
  t.match(results.machine.baseline_checkout, { dir: worktree, commit: new RegExp(`^${head.slice(0, 7)}`) })
  t.match(results.machine.broker_checkout, { dir: root.replace(/\/$/, '') })
  const [cost] = (results.summary.goals as Array<{ goal: string }>).filter(g => g.goal.startsWith('single loop: cost of features not used'))
  t.match(cost, { ratio: Number, met: Boolean })
})

t.test('npm run bench roundtrip: one client, one statement at a time, every statement timed', { skip: needsDatabase, timeout: 120_000 }, async (t) => {
  const { code, stderr, out } = await runBench(t, 'rt', ['roundtrip', '--iterations', '5'], 100_000)
  t.equal(code, 0, `npm run bench roundtrip exits 0\n${stderr.slice(-3000)}`)
  const files = readdirSync(out).filter(f => f.startsWith('roundtrip-') && f.endsWith('.json'))
  t.equal(files.length, 1, 'writes its results')
  t.notOk(existsSync(join(out, 'latest.json')), 'leaves latest to the HTTP suite')
  const results = JSON.parse(readFileSync(join(out, files[0] as string), 'utf8'))
  for (const key of ['select_1', 'produce_3', 'claim_3', 'report_3_and_claim_3']) {
    t.match(results.roundtrip.ms[key], { count: 5, p50: Number, p99: Number }, key)
  }
})
