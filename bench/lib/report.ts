/** The results of one `npm run bench` invocation: summaries, the goals check, and Markdown tables. */
import type { CeilingRun, LatencyCounts, LatencyRun, ProduceRun, SustainedRun, ThroughputRun } from '../http.js'
import type { RoundtripResult } from '../roundtrip.js'
import type { CpuPerTask } from './cpu.js'
import { FEATURES, featuresLabel, featuresOf, type Features } from './protocol.js'
import { PEER_CONFIGS, type PeerRun } from './peers.js'
import { fmt, median } from './stats.js'

export interface Results {
  scenario: string
  command: string
  started_at: string
  finished_at?: string
  duration_sec?: number
  options: Record<string, unknown>
  broker_env: Record<string, string>
  machine: Record<string, unknown>
  throughput?: ThroughputRun[]
  /** the HTTP ceiling of the machine, one per rep (single scenarios) */
  ceiling?: CeilingRun[]
  produce?: ProduceRun[]
  /** the single peak the latency runs took half of */
  latency_peak_per_sec?: number
  latency?: LatencyRun[]
  sustained?: SustainedRun
  peers?: PeerRun[]
  peer_versions?: Record<string, string>
  complete_mode?: Record<string, unknown>
  roundtrip?: RoundtripResult
  /** runs that failed once and were retried */
  retries?: Array<{ run: string, error: string }>
  /** why the benchmark stopped early */
  error?: string
  summary?: Summary
}

export interface ThroughputSummary {
  scenario: string
  batching: string
  filter: string
  processes: number
  build: string
  /** used: leases, heartbeats, priorities and queue controls active (not binding); leases etc.: that one alone */
  features: string
  noisy_tasks?: number
  median_tasks_per_sec: number
  runs: number[]
  capped: boolean[]
  /** heartbeat requests of each run (any features used) */
  heartbeats?: number[]
  /** claims of each run that came back empty while tasks were pending, made again (any features used) */
  empty_claims?: number[]
  rss_start_mb: Array<number | undefined>
  rss_end_mb: Array<number | undefined>
  errors: number
  incomplete: number
  cpu_us_per_task?: CpuPerTask
}
export interface PeerSummary { key: string, version: string, settings: string, median_jobs_per_sec: number, median_enqueue_per_sec: number, runs: number[], single_ratio?: number, batch_ratio?: number }
export interface Goal { goal: string, target: string, measured: string, ratio?: number, met: boolean | undefined, config: string }

export interface Summary {
  throughput: ThroughputSummary[]
  produce_median_tasks_per_sec?: number
  produce_runs?: number[]
  ratio_single_on_off?: number
  ratio_batch_on_off?: number
  ceiling_median_per_sec?: number
  ceiling_runs?: number[]
  ceiling_cpu_us_per_request?: CpuPerTask
  /** single (batching on, unfiltered, one process) as a fraction of the HTTP ceiling, same run */
  single_of_ceiling?: number
  peers: PeerSummary[]
  goals: Goal[]
}

const round2 = (n: number) => Math.round(n * 100) / 100

/** The produce figure's requests: tasks per request and requests at once. */
function produceLabel (o: Record<string, unknown>): string {
  return `produce (POST /v1/tasks × ${String(o.produceBatch ?? 1000)}, ${String(o.produceConcurrency)} concurrent)`
}

/** Median CPU per task of the runs that have it, group by group. */
function medianCpu (runs: Array<CpuPerTask | undefined>): CpuPerTask | undefined {
  const known = runs.filter((c): c is CpuPerTask => c !== undefined)
  if (known.length === 0) return undefined
  const of = (k: keyof CpuPerTask) => Math.round(median(known.map(c => c[k])))
  return { broker: of('broker'), postgres: of('postgres'), workers: of('workers'), total: of('total') }
}

/** The runs of one configuration: scenario, filter, status batching, processes, checkout, features. */
const keyOf = (t: { scenario: string, filter?: string, batching: string, processes?: number, build?: string, features?: string }) =>
  `${t.scenario}|${t.filter ?? 'none'}|${t.batching}|${t.processes ?? 1}|${t.build ?? 'current'}|${t.features ?? 'unused'}`

export function summarize (r: Results): Summary {
  const throughput: ThroughputSummary[] = []
  const groups = new Map<string, ThroughputRun[]>()
  for (const t of r.throughput ?? []) {
    const key = keyOf(t)
    groups.set(key, [...(groups.get(key) ?? []), t])
  }
  for (const runs of groups.values()) {
    const first = runs[0] as ThroughputRun
    throughput.push({
      scenario: first.scenario,
      batching: first.batching,
      filter: first.filter ?? 'none',
      processes: first.processes ?? 1,
      build: first.build ?? 'current',
      features: first.features ?? 'unused',
      ...(first.noisy_tasks === undefined ? {} : { noisy_tasks: first.noisy_tasks }),
      median_tasks_per_sec: Math.round(median(runs.map(t => t.tasks_per_sec))),
      runs: runs.map(t => Math.round(t.tasks_per_sec)),
      capped: runs.map(t => t.capped),
      ...((first.features ?? 'unused') !== 'unused' ? { heartbeats: runs.map(t => t.heartbeats ?? 0), empty_claims: runs.map(t => t.empty_claims ?? 0) } : {}),
      rss_start_mb: runs.map(t => t.rss_start_mb),
      rss_end_mb: runs.map(t => t.rss_end_mb),
      errors: runs.reduce((n, t) => n + t.errors, 0),
      incomplete: runs.reduce((n, t) => n + (t.capped ? 0 : t.remaining + (t.tasks - t.completed)), 0),
      cpu_us_per_task: medianCpu(runs.map(t => t.cpu_us_per_task))
    })
  }
  const get = (scenario: string, batching: string, filter = 'none') => findRun(throughput, { scenario, batching, filter })?.median_tasks_per_sec
  const ratio = (a: number | undefined, b: number | undefined) => a === undefined || b === undefined ? undefined : round2(a / b)
  const produceRuns = [...(r.throughput ?? []).map(t => t.produce_per_sec), ...(r.produce ?? []).map(p => p.tasks_per_sec)].map(Math.round)
  const single = get('single', 'on')
  const batch = get('batch', 'on')
  const peers: PeerSummary[] = []
  for (const config of PEER_CONFIGS) {
    const runs = (r.peers ?? []).filter(p => p.key === config.key)
    if (runs.length === 0) continue
    const jobs = median(runs.map(p => p.jobs_per_sec))
    peers.push({
      key: config.key,
      version: r.peer_versions?.[config.pkg] ?? '?',
      settings: config.settings,
      median_jobs_per_sec: Math.round(jobs),
      median_enqueue_per_sec: Math.round(median(runs.map(p => p.enqueue_per_sec))),
      runs: runs.map(p => Math.round(p.jobs_per_sec)),
      single_ratio: ratio(single, jobs),
      batch_ratio: ratio(batch, jobs)
    })
  }
  const ceilingRuns = (r.ceiling ?? []).map(c => Math.round(c.requests_per_sec))
  const ceiling = ceilingRuns.length > 0 ? Math.round(median(ceilingRuns)) : undefined
  const summary: Summary = {
    throughput,
    ceiling_median_per_sec: ceiling,
    ceiling_runs: ceilingRuns.length > 0 ? ceilingRuns : undefined,
    ceiling_cpu_us_per_request: medianCpu((r.ceiling ?? []).map(c => c.cpu_us_per_request)),
    single_of_ceiling: ratio(single, ceiling),
    produce_median_tasks_per_sec: produceRuns.length > 0 ? Math.round(median(produceRuns)) : undefined,
    produce_runs: produceRuns,
    ratio_single_on_off: ratio(single, get('single', 'off')),
    ratio_batch_on_off: ratio(batch, get('batch', 'off')),
    peers,
    goals: []
  }
  summary.goals = goals(r, summary)
  return summary
}

/** The summary of one configuration; unset fields mean batching on, one process, this checkout, features unused. */
function findRun (throughput: ThroughputSummary[], want: { scenario: string, filter?: string, batching?: string, processes?: number, build?: string, features?: string }): ThroughputSummary | undefined {
  return throughput.find(t => t.scenario === want.scenario && t.filter === (want.filter ?? t.filter) && t.batching === (want.batching ?? 'on') &&
    t.processes === (want.processes ?? 1) && t.build === (want.build ?? 'current') && t.features === (want.features ?? 'unused'))
}

const FILTER_TEXT: Record<string, string> = { none: '{}', application: '{application}', 'application+namespace': '{application, namespace}' }

/**
 * The goals: issue 17's first (ratios measured in this run, default settings, the filters workers
 * use), then the absolute figures of the earlier goals (unfiltered).
 */
function goals (r: Results, s: Summary): Goal[] {
  const out: Goal[] = []
  const o = r.options
  const round = (n: number) => Math.round(n * 100) / 100
  const ceiling = s.ceiling_median_per_sec
  const singleConfig = `${String(o.workers)} workers: claim 1, then status complete + fetch_next; ceiling: the same worker process and client against a trivial route`
  const batchConfig = `${String(o.batchWorkers)} workers: claim ${String(o.limit)} + one batch status`
  for (const filter of ['application', 'application+namespace', 'none']) {
    const single = findRun(s.throughput, { scenario: 'single', filter })
    if (single === undefined) continue
    const ratio = ceiling === undefined ? undefined : round(single.median_tasks_per_sec / ceiling)
    out.push({
      goal: `single loop, filter ${FILTER_TEXT[filter] ?? filter}, vs the HTTP ceiling`,
      target: '≥ 0.5 × ceiling',
      measured: `${fmt(single.median_tasks_per_sec)} tasks/s; ceiling ${ceiling === undefined ? 'not measured' : `${fmt(ceiling)} requests/s`}`,
      ...(ratio === undefined ? {} : { ratio }),
      met: ratio === undefined ? undefined : ratio >= 0.5,
      config: singleConfig
    })
  }
  const graphile = s.peers.find(p => p.key === 'graphile-worker batched')
  for (const filter of ['application', 'application+namespace', 'none']) {
    const batch = findRun(s.throughput, { scenario: 'batch', filter })
    if (batch === undefined) continue
    const ratio = graphile === undefined ? undefined : round(batch.median_tasks_per_sec / graphile.median_jobs_per_sec)
    out.push({
      goal: `batch loop, filter ${FILTER_TEXT[filter] ?? filter}, vs graphile-worker's best mode`,
      target: '≥ 1.2 × graphile-worker batched',
      measured: `${fmt(batch.median_tasks_per_sec)} tasks/s; graphile-worker ${graphile === undefined ? 'not run (--no-peers)' : `${graphile.version} ${fmt(graphile.median_jobs_per_sec)} jobs/s`}`,
      ...(ratio === undefined ? {} : { ratio }),
      met: ratio === undefined ? undefined : ratio >= 1.2,
      config: `${batchConfig}; graphile-worker: ${graphile?.settings ?? PEER_CONFIGS.find(c => c.key === 'graphile-worker batched')?.settings ?? ''}`
    })
  }
  const waits = (l: LatencyRun) => (l.fetch_next_wait_ms ?? 0) > 0
  for (const l of r.latency ?? []) {
    out.push({
      goal: `produce→claim p50 at half of peak, long-poll (ack=${l.ack}${waits(l) ? ', fetch_next.wait_ms' : ''})`,
      target: '≤ 5 ms',
      measured: `${l.produce_to_claim_ms.p50} ms (p95 ${l.produce_to_claim_ms.p95}, p99 ${l.produce_to_claim_ms.p99})`,
      met: l.produce_to_claim_ms.p50 <= 5,
      config: `${fmt(l.offered_per_sec)} tasks/s offered for ${l.duration_sec} s; ${l.workers} workers long-poll filter ${FILTER_TEXT[l.filter ?? 'none'] ?? ''} wait_ms ${l.wait_ms}${l.fetch_next ? `, report with fetch_next${waits(l) ? ` (wait_ms ${String(l.fetch_next_wait_ms)}: one request per task)` : ''}` : ''}`
    })
  }
  const baseline = r.machine.baseline_checkout as { commit?: string } | undefined
  const current = r.machine.broker_checkout as { commit?: string } | undefined
  for (const scenario of ['single', 'batch']) {
    const base = findRun(s.throughput, { scenario, filter: String(o.latencyFilter), build: 'baseline' })
    const now = findRun(s.throughput, { scenario, filter: String(o.latencyFilter) })
    if (now === undefined) continue
    const ratio = base === undefined ? undefined : round(now.median_tasks_per_sec / base.median_tasks_per_sec)
    out.push({
      goal: `${scenario} loop: cost of features not used (this checkout vs the baseline)`,
      target: '≥ 0.9 × baseline',
      measured: base === undefined ? 'no baseline in this run (--baseline COMMIT|DIR)' : `${fmt(now.median_tasks_per_sec)} vs ${fmt(base.median_tasks_per_sec)} tasks/s`,
      ...(ratio === undefined ? {} : { ratio }),
      met: ratio === undefined ? undefined : ratio >= 0.9,
      config: `${scenario === 'single' ? singleConfig.split(';')[0] ?? '' : batchConfig}, filter ${FILTER_TEXT[String(o.latencyFilter)] ?? ''}; ${current?.commit ?? '?'} vs ${baseline?.commit ?? '–'}`
    })
  }
  // What each variant does, for the configuration column.
  const usedText = (features: Features, scenario: string): string => {
    const uses = featuresOf(features)
    const parts: string[] = []
    if (uses.priorities) parts.push('priority i % 4')
    if (uses.queues) parts.push('queue settings on the measured queue (max_processing and rate limit far above the load) and on other applications\' queues, claims made again after an empty one')
    if (uses.heartbeats) parts.push(`a heartbeat per ${scenario === 'single' ? 'task' : 'claimed batch'} under its lease${uses.leases ? '' : ', reports without it'}`)
    if (uses.leases) parts.push('the lease with every report')
    return parts.join(', ')
  }
  for (const scenario of ['single', 'batch']) {
    // One line per variant that ran: each feature alone, then all of them together (used), so the single costs can be set against the whole.
    for (const features of [...FEATURES.filter(f => f !== 'unused' && f !== 'used'), 'used'] as Features[]) {
      // The latency filter's pair when it ran, else the first filter shape that has both.
      const pairs = s.throughput.filter(t => t.scenario === scenario && t.features === features && t.build === 'current' && t.processes === 1 && t.batching === 'on')
        .map(used => ({ used, unused: findRun(s.throughput, { scenario, filter: used.filter }) }))
        .filter((p): p is { used: ThroughputSummary, unused: ThroughputSummary } => p.unused !== undefined)
      const pair = pairs.find(p => p.used.filter === String(o.latencyFilter)) ?? pairs[0]
      if (pair === undefined) continue
      const { used, unused } = pair
      const uses = featuresOf(features)
      const counts = [
        ...(uses.heartbeats ? [`${fmt(median(used.heartbeats ?? []))} heartbeat requests`] : []),
        ...(uses.queues ? [`${fmt(median(used.empty_claims ?? []))} empty claims made again`] : [])
      ]
      out.push({
        goal: features === 'used'
          ? `${scenario} loop: features used vs unused (leases, heartbeats, priorities, queue controls), same run`
          : `${scenario} loop: ${featuresLabel(features)} vs unused, same run`,
        target: 'measured (ratio to the same loop with them unused)',
        measured: `${fmt(used.median_tasks_per_sec)} vs ${fmt(unused.median_tasks_per_sec)} tasks/s${counts.length > 0 ? `; per run ${counts.join(', ')}` : ''}`,
        ratio: round(used.median_tasks_per_sec / unused.median_tasks_per_sec),
        met: undefined,
        config: `${scenario === 'single' ? singleConfig.split(';')[0] ?? '' : batchConfig}, filter ${FILTER_TEXT[used.filter] ?? used.filter}; ${featuresLabel(features)}: ${usedText(features, scenario)}`
      })
    }
  }
  for (const scenario of ['single', 'batch']) {
    const one = findRun(s.throughput, { scenario, filter: String(o.latencyFilter) })
    for (const t of s.throughput.filter(x => x.scenario === scenario && x.processes > 1 && x.build === 'current')) {
      const ratio = one === undefined ? undefined : round(t.median_tasks_per_sec / one.median_tasks_per_sec)
      out.push({
        goal: `${scenario} loop: ${t.processes} broker processes vs 1 (TASKBROKER_PROCESSES)`,
        target: '> 1 × (more cores used)',
        measured: `${fmt(t.median_tasks_per_sec)} vs ${one === undefined ? '–' : fmt(one.median_tasks_per_sec)} tasks/s`,
        ...(ratio === undefined ? {} : { ratio }),
        met: ratio === undefined ? undefined : ratio > 1,
        config: `filter ${FILTER_TEXT[t.filter] ?? ''}; ${r.machine.cores as number} cores shared with PostgreSQL and the load generator`
      })
    }
  }
  const noisy = s.throughput.find(t => t.scenario === 'noisy')
  if (noisy !== undefined) {
    const quiet = findRun(s.throughput, { scenario: 'single', filter: noisy.filter })
    const ratio = quiet === undefined ? undefined : round(noisy.median_tasks_per_sec / quiet.median_tasks_per_sec)
    out.push({
      goal: `noisy neighbour: single loop, filter ${FILTER_TEXT[noisy.filter] ?? ''}, behind ${fmt(noisy.noisy_tasks ?? 0)} older pending tasks of another application`,
      target: 'measured (ratio to the same loop without them)',
      measured: `${fmt(noisy.median_tasks_per_sec)} vs ${quiet === undefined ? '–' : fmt(quiet.median_tasks_per_sec)} tasks/s`,
      ...(ratio === undefined ? {} : { ratio }),
      met: undefined,
      config: singleConfig.split(';')[0] ?? ''
    })
  }
  // The earlier goals: absolute figures, unfiltered.
  const single = findRun(s.throughput, { scenario: 'single', filter: 'none' })
  const batch = findRun(s.throughput, { scenario: 'batch', filter: 'none' })
  if (single !== undefined) out.push({ goal: 'one task per request (claim, then status + fetch_next), filter {}', target: '≥ 15,000 tasks/s', measured: `${fmt(single.median_tasks_per_sec)} tasks/s`, met: single.median_tasks_per_sec >= 15_000, config: singleConfig.split(';')[0] ?? '' })
  if (batch !== undefined) out.push({ goal: 'batch APIs, filter {}', target: '≥ 40,000 tasks/s', measured: `${fmt(batch.median_tasks_per_sec)} tasks/s`, met: batch.median_tasks_per_sec >= 40_000, config: batchConfig })
  if (s.ratio_single_on_off !== undefined) out.push({ goal: 'status batching on vs off, same run (single, filter {})', target: '≥ 3×', measured: `${fmt(get(s, 'on'))} vs ${fmt(get(s, 'off'))} tasks/s`, ratio: s.ratio_single_on_off, met: s.ratio_single_on_off >= 3, config: singleConfig.split(';')[0] ?? '' })
  for (const l of (r.latency ?? []).filter(l => (l.fetch_next_wait_ms ?? 0) === 0)) {
    out.push({ goal: `status report p99 at half of peak (ack=${l.ack})`, target: '≤ 25 ms', measured: `${l.status_ack_ms.p99} ms`, met: l.status_ack_ms.p99 <= 25, config: `${fmt(l.offered_per_sec)} tasks/s offered` })
  }
  if (r.sustained !== undefined) {
    const u = r.sustained
    out.push({ goal: `memory flat under sustained load (${u.seconds} s)`, target: 'flat', measured: `RSS ${u.rss_start_mb ?? '?'} → ${u.rss_end_mb ?? '?'} MB (min ${u.rss_min_mb}, max ${u.rss_max_mb}, ${u.rss_slope_mb_per_min} MB/min in the 2nd half)`, met: u.flat, config: `${u.workers} workers, ≤ ${fmt(u.window)} tasks queued` })
  }
  return out
}

const get = (s: Summary, batching: string) => findRun(s.throughput, { scenario: 'single', filter: 'none', batching })?.median_tasks_per_sec ?? Number.NaN

function table (headers: string[], rows: Array<Array<string | number | undefined>>): string {
  const cell = (v: string | number | undefined) => v === undefined ? '–' : typeof v === 'number' ? fmt(v) : v
  return [
    `| ${headers.join(' | ')} |`,
    `|${headers.map(() => '---').join('|')}|`,
    ...rows.map(row => `| ${row.map(cell).join(' | ')} |`)
  ].join('\n') + '\n'
}

const mb = (values: Array<number | undefined>) => values.map(v => v === undefined ? '?' : String(v)).join(', ')
const ms = (v: number) => Number.isFinite(v) ? String(v) : '–'

/** A run configuration as the tables name it. */
function runLabel (t: ThroughputSummary, o: Record<string, unknown>): string {
  const loop = t.scenario === 'batch'
    ? `batch (${String(o.batchWorkers)} workers, claim ${String(o.limit)} + batch status)`
    : t.scenario === 'noisy'
      ? `noisy neighbour: single behind ${fmt(t.noisy_tasks ?? 0)} older tasks of another application (${String(o.workers)} workers)`
      : `single (${String(o.workers)} workers, claim + status/fetch_next)`
  const extra = [`filter ${FILTER_TEXT[t.filter] ?? t.filter}`]
  if (t.processes > 1) extra.push(`${t.processes} processes`)
  if (t.features !== 'unused') extra.push(`**${featuresLabel(t.features as Features)}**`)
  if (t.build === 'baseline') extra.push('**baseline checkout**')
  return `${loop}, ${extra.join(', ')}`
}

export function markdown (r: Results): string {
  const s = r.summary ?? summarize(r)
  const o = r.options
  const parts: string[] = []
  parts.push(`# taskbroker benchmark: ${r.scenario}\n`)
  parts.push(`\`${r.command}\` — ${r.started_at}${r.duration_sec === undefined ? '' : `, took ${Math.round(r.duration_sec)} s`}\n`)
  parts.push(table(['machine', ''], Object.entries(r.machine).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])))
  parts.push(table(['option', 'value'], Object.entries(o).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])))
  parts.push(table(['broker env', 'value'], Object.entries(r.broker_env).map(([k, v]) => [k, v])))

  if (s.goals.length > 0) {
    parts.push('## Goals\n')
    parts.push(table(['goal', 'target', 'measured', 'ratio', 'met', 'configuration'], s.goals.map(g => [g.goal, g.target, g.measured, g.ratio === undefined ? undefined : `${g.ratio}×`, g.met === undefined ? '–' : g.met ? 'yes' : '**no**', g.config])))
  }
  if (s.throughput.length > 0 || s.produce_median_tasks_per_sec !== undefined) {
    parts.push(`## Throughput (median of ${String(o.reps)}; configurations interleaved rep by rep; ${fmt(Number(o.tasks))} tasks per run)\n`)
    // The heartbeat column only when some run used any of the features.
    const beats = s.throughput.some(t => t.heartbeats !== undefined)
    const beatCell = (t?: ThroughputSummary) => beats ? [t?.heartbeats === undefined ? undefined : t.heartbeats.map((h, i) => `${fmt(h)} / ${fmt(t.empty_claims?.[i] ?? 0)}`).join(', ')] : []
    const rows: Array<Array<string | number | undefined>> = s.throughput.map(t => [
      runLabel(t, o),
      t.batching, t.median_tasks_per_sec, t.runs.map((v, i) => `${fmt(v)}${t.capped[i] === true ? '*' : ''}`).join(', '), ...beatCell(t), mb(t.rss_start_mb), mb(t.rss_end_mb), t.errors, t.incomplete
    ])
    if (s.ceiling_median_per_sec !== undefined) {
      rows.unshift([`HTTP ceiling: the single workers against a trivial Fastify route, no database (${String(o.workers)} workers, requests/s)`, '', s.ceiling_median_per_sec, (s.ceiling_runs ?? []).map(fmt).join(', '), ...beatCell(), undefined, undefined, (r.ceiling ?? []).reduce((n, c) => n + c.errors, 0), undefined])
    }
    if (s.produce_median_tasks_per_sec !== undefined) {
      rows.unshift([produceLabel(o), '', s.produce_median_tasks_per_sec, (s.produce_runs ?? []).map(fmt).join(', '), ...beatCell(), mb((r.produce ?? []).map(p => p.rss_start_mb)), mb((r.produce ?? []).map(p => p.rss_end_mb)), (r.produce ?? []).reduce((n, p) => n + p.errors, 0), undefined])
    }
    parts.push(table(['scenario', 'status batching', 'tasks/s (median)', 'runs', ...(beats ? ['heartbeat requests / empty claims made again (runs)'] : []), 'broker RSS start (MB)', 'broker RSS end (MB)', 'errors', 'incomplete'], rows))
    if (s.throughput.some(t => t.capped.includes(true))) parts.push(`\\* stopped by --max-run-seconds ${String(o.maxRunSeconds)} before all ${fmt(Number(o.tasks))} tasks were done; tasks/s over that time.\n`)
    const ratios: string[] = []
    if (s.ratio_single_on_off !== undefined) ratios.push(`single: status batching on/off = **${s.ratio_single_on_off}×**`)
    if (s.ratio_batch_on_off !== undefined) ratios.push(`batch: on/off = **${s.ratio_batch_on_off}×**`)
    if (s.single_of_ceiling !== undefined) ratios.push(`single (filter {}) ÷ HTTP ceiling = **${s.single_of_ceiling}**`)
    if (ratios.length > 0) parts.push(ratios.join('; ') + '\n')
    const cpuRows: Array<Array<string | number | undefined>> = []
    const cpuRow = (label: string, c: CpuPerTask | undefined) => { if (c !== undefined) cpuRows.push([label, c.broker, c.postgres, c.workers, c.total]) }
    cpuRow('HTTP ceiling (the trivial server in the broker column)', s.ceiling_cpu_us_per_request)
    cpuRow(`${produceLabel(o)}, no workers running`, medianCpu((r.produce ?? []).map(p => p.cpu_us_per_task)))
    for (const t of s.throughput) cpuRow(`${runLabel(t, o)}, status batching ${t.batching}`, t.cpu_us_per_task)
    if (cpuRows.length > 0) {
      const cores = Number(r.machine.cores)
      parts.push(`Where the CPU goes (median of the runs; user + system time from /proc while the workers ran, divided by the tasks done; PostgreSQL = every postgres process; ${cores} cores give ${fmt(cores * 1_000_000)} µs per second in all):\n`)
      parts.push(table(['run', 'broker µs/task', 'PostgreSQL µs/task', 'workers (load generator) µs/task', 'total µs/task'], cpuRows))
    }
  }
  if ((r.latency ?? []).length > 0) {
    const offered = fmt(r.latency?.[0]?.offered_per_sec ?? Number.NaN)
    parts.push(`## Latency ${r.latency_peak_per_sec === undefined ? `at a fixed offered load (--rate): ${offered}` : `at half of peak (${fmt(r.latency_peak_per_sec)} tasks/s single peak → offered ${offered}`} tasks/s for ${String(o.duration)} s after ${String(o.warmup)} s warm-up; ${String(o.latencyWorkers)} workers long-poll wait_ms ${String(o.waitMs)}, report ${o.fetchNext === true ? 'with fetch_next (a row with fetch_next.wait_ms: the report long-polls for the next task, its status ack not measured)' : 'without fetch_next'}; producer sends what is due every ${String(o.tickMs)} ms)\n`)
    parts.push(table(['ack', 'achieved tasks/s', 'produce→claim p50 / p95 / p99 ms', 'status ack p50 / p95 / p99 ms', 'produce request p50 / p99 ms', 'producer stalled (ticks)', 'CPU µs/task: broker / PostgreSQL / workers', 'handed off by produce / claim statements / status flushes (per 100 tasks)', 'errors', 'broker RSS start → end (MB)'],
      (r.latency ?? []).map(l => [(l.fetch_next_wait_ms ?? 0) > 0 ? `${l.ack}, fetch_next.wait_ms ${String(l.fetch_next_wait_ms)}` : l.ack, l.achieved_per_sec,
        `${ms(l.produce_to_claim_ms.p50)} / ${ms(l.produce_to_claim_ms.p95)} / ${ms(l.produce_to_claim_ms.p99)}`,
        `${ms(l.status_ack_ms.p50)} / ${ms(l.status_ack_ms.p95)} / ${ms(l.status_ack_ms.p99)}`,
        `${ms(l.produce_request_ms.p50)} / ${ms(l.produce_request_ms.p99)}`, l.producer_skipped_ticks,
        l.cpu_us_per_task === undefined ? '–' : `${l.cpu_us_per_task.broker} / ${l.cpu_us_per_task.postgres} / ${l.cpu_us_per_task.workers}`,
        latencyCounts(l.broker_counts), l.errors, `${l.rss_start_mb ?? '?'} → ${l.rss_end_mb ?? '?'}`])))
  }
  if (r.sustained !== undefined) {
    const u = r.sustained
    parts.push(`## Sustained single for ${u.seconds} s (${u.workers} workers, producer keeps ≤ ${fmt(u.window)} tasks queued)\n`)
    const every = Math.max(1, Math.round(u.samples.length / 12))
    parts.push(`${fmt(u.tasks_per_sec)} tasks/s, ${fmt(u.completed)} completed, ${u.errors} errors. Broker RSS ${u.rss_start_mb ?? '?'} → ${u.rss_end_mb ?? '?'} MB, min ${u.rss_min_mb}, max ${u.rss_max_mb}, slope in the second half ${u.rss_slope_mb_per_min} MB/min: **${u.flat ? 'flat' : 'not flat'}**.\n`)
    parts.push(table(['t (s)', 'RSS (MB)', 'completed'], u.samples.filter((_, i) => i % every === 0 || i === u.samples.length - 1).map(x => [String(x.t), x.rss_mb === undefined ? '?' : String(x.rss_mb), x.done])))
  }
  if (s.peers.length > 0) {
    parts.push(`## Peers on the same PostgreSQL (in process, no HTTP; ${fmt(Number(o.peerJobs))} no-op jobs, median of ${String(o.peerReps)}; timed from starting the workers until all are done)\n`)
    parts.push(table(['peer', 'settings', 'jobs/s (median)', 'runs', 'enqueue jobs/s', 'ours single ÷ peer', 'ours batch ÷ peer'],
      s.peers.map(p => [`${p.key.replace(/ .*/, '')} ${p.version}${p.key.includes(' ') ? ` (${p.key.replace(/^\S+ /, '')})` : ''}`, p.settings, p.median_jobs_per_sec, p.runs.map(fmt).join(', '), p.median_enqueue_per_sec,
        p.single_ratio === undefined ? undefined : `${p.single_ratio}×`, p.batch_ratio === undefined ? undefined : `${p.batch_ratio}×`])))
    if (s.produce_median_tasks_per_sec !== undefined) parts.push(`Our produce: ${fmt(s.produce_median_tasks_per_sec)} tasks/s over HTTP, against the peers' bulk enqueue above.\n`)
  }
  if ((r.retries ?? []).length > 0 || r.error !== undefined) {
    parts.push('## Failures\n')
    for (const f of r.retries ?? []) parts.push(`- retried once: ${f.run}: ${f.error.split('\n')[0] ?? ''}`)
    if (r.error !== undefined) parts.push(`- **stopped**: ${r.error.split('\n')[0] ?? ''}`)
    parts.push('')
  }
  if (r.roundtrip !== undefined) {
    const rows = Object.entries(r.roundtrip.ms)
      .map(([k, v]) => [k.replace(/_/g, ' '), v.count, `${ms(v.p50)} / ${ms(v.p95)} / ${ms(v.p99)}`, ms(v.max)])
    parts.push('## Round trips (one client, one statement at a time, ms)\n')
    parts.push(table(['statement', 'samples', 'p50 / p95 / p99', 'max'], rows))
  }
  if (r.complete_mode !== undefined) {
    parts.push('## complete-mode\n')
    parts.push('```json\n' + JSON.stringify(r.complete_mode, null, 2) + '\n```\n')
  }
  return parts.join('\n')
}

/** Per 100 tasks produced in the window: tasks handed off by produce, claim statements, status flushes. */
function latencyCounts (c: LatencyCounts | undefined): string {
  if (c === undefined || c.produced <= 0) return '–'
  const per100 = (n: number) => (100 * n / c.produced).toFixed(1)
  return `${per100(c.handed_off)} / ${per100(c.claim_statements)} / ${per100(c.status_flushes)}`
}
