/** Small helpers shared by the benchmark scenarios. */
export function median (values: number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export const fmt = (n: number) => Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–'

/** Latency summary in milliseconds (nearest-rank percentiles). */
export interface LatencySummary { count: number, mean: number, p50: number, p95: number, p99: number, max: number }

export function summarize (samples: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(samples).sort()
  const n = sorted.length
  if (n === 0) return { count: 0, mean: Number.NaN, p50: Number.NaN, p95: Number.NaN, p99: Number.NaN, max: Number.NaN }
  const at = (q: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!
  let sum = 0
  for (const v of sorted) sum += v
  const round = (v: number) => Math.round(v * 100) / 100
  return { count: n, mean: round(sum / n), p50: round(at(0.5)), p95: round(at(0.95)), p99: round(at(0.99)), max: round(sorted[n - 1]!) }
}

/** Least-squares slope of y over x (per unit of x). */
export function slope (points: Array<[number, number]>): number {
  const n = points.length
  if (n < 2) return 0
  let sx = 0; let sy = 0; let sxx = 0; let sxy = 0
  for (const [x, y] of points) { sx += x; sy += y; sxx += x * x; sxy += x * y }
  const d = n * sxx - sx * sx
  return d === 0 ? 0 : (n * sxy - sx * sy) / d
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes on one machine. */
export const wallMs = () => performance.timeOrigin + performance.now()

export const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms))
