/**
 * Summarises a V8 CPU profile written by `npm run bench -- <scenario> --cpu-prof DIR`:
 * where the broker's busy time went, by function (self and inclusive) and by package.
 *
 *   npx tsx bench/profile-summary.ts DIR/CPU.….cpuprofile [--from 0.5] [--top 40]
 *
 * `--from F` skips the first fraction F of the profile (start-up, produce) so the numbers are
 * those of the measured phase. Idle time is left out of the percentages and reported apart.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { from: { type: 'string', default: '0' }, top: { type: 'string', default: '40' } } })
const file = positionals[0]
if (file === undefined) {
  process.stderr.write('usage: npx tsx bench/profile-summary.ts <file.cpuprofile> [--from 0.5] [--top 40]\n')
  process.exit(2)
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
const from = Number(values.from)
const top = Number(values.top)

const byId = new Map(profile.nodes.map(n => [n.id, n]))
const parent = new Map<number, number>()
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
const label = (n: ProfileNode) => {
  const url = n.callFrame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(dist|src)\//, '$1/')
  return `${n.callFrame.functionName === '' ? '(anonymous)' : n.callFrame.functionName} ${url}${url === '' ? '' : `:${n.callFrame.lineNumber + 1}`}`
}
const packageOf = (n: ProfileNode) => {
  const url = n.callFrame.url
  if (url === '') return n.callFrame.functionName
  const pkg = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg !== null) return pkg[1] as string
  if (url.startsWith('node:')) return 'node (core)'
  return url.includes('/dist/') || url.includes('/src/') ? 'taskbroker' : url
}

const total = profile.timeDeltas.reduce((a, b) => a + b, 0)
const self = new Map<string, number>()
const inclusive = new Map<string, number>()
const packages = new Map<string, number>()
let busy = 0
let idle = 0
let elapsed = 0
profile.samples.forEach((sample, i) => {
  const dt = profile.timeDeltas[i] ?? 0
  elapsed += dt
  if (elapsed < from * total) return
  const leaf = byId.get(sample) as ProfileNode
  if (leaf.callFrame.functionName === '(idle)') { idle += dt; return }
  busy += dt
  self.set(label(leaf), (self.get(label(leaf)) ?? 0) + dt)
  packages.set(packageOf(leaf), (packages.get(packageOf(leaf)) ?? 0) + dt)
  const seen = new Set<string>()
  for (let id: number | undefined = sample; id !== undefined; id = parent.get(id)) {
    const name = label(byId.get(id) as ProfileNode)
    if (seen.has(name)) continue
    seen.add(name)
    inclusive.set(name, (inclusive.get(name) ?? 0) + dt)
  }
})

const pct = (v: number) => `${(v / busy * 100).toFixed(1).padStart(5)}%`
const table = (title: string, m: Map<string, number>) => {
  process.stdout.write(`\n${title}\n`)
  for (const [name, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(v)}  ${name}\n`)
}
process.stdout.write(`${file}: busy ${(busy / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s (from ${from * 100}% of the profile)\n`)
table('by package (self time)', packages)
table('by function (self time)', self)
table('by function (inclusive time)', inclusive)
