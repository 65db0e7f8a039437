#!/usr/bin/env node
/**
 * The fixed cost of a test process, measured in fresh processes one at a time (medians of several
 * runs; wall and CPU from process start), to check the choices in .taprc and test/helpers/ again,
 * e.g. after a PGlite or tap upgrade:
 *
 *   store: empty     an empty in-memory PGlite, then the migrations (how test stores used to start)
 *   store: template  a copy of the migrated template (test/helpers/pglite-template.ts, used now)
 *   loader: tsx      importing the API test helpers through tsx (.taprc's loader)
 *   loader: ts-node  the same through tap's default TypeScript loader (ts-node, transpile only)
 *
 * Usage: node scripts/time-test-start.mjs [runs, default 5]. Other work on the machine inflates
 * the wall times (not so much the CPU times): compare figures from one run of this script.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const runs = Number(process.argv[2] ?? 5)
const fileUrl = (path) => JSON.stringify(pathToFileURL(join(root, path)).href)
const tsx = ['--import=tsx']
const tsNodeEntry = join(root, 'node_modules/@tapjs/typescript/dist/esm/import.mjs')
const tsNode = [`--import=${pathToFileURL(tsNodeEntry).href}`]
const tsNodeEnv = { TS_NODE_TRANSPILE_ONLY: '1', TS_NODE_PROJECT: join(root, 'tsconfig.json') }

// Each child prints one line: ms since its start, and CPU ms (all its threads) since its start.
const report = 'const c = process.cpuUsage(); console.log("RESULT", performance.now(), (c.user + c.system) / 1000)'
const cases = [
  {
    name: 'store: empty',
    args: tsx,
    code: `await import('tap')
      const { openDatabase } = await import(${fileUrl('src/db/database.ts')})
      const pino = (await import('pino')).default
      const db = await openDatabase({ dataDir: 'memory://', poolSize: 1, log: pino({ level: 'silent' }) })
      await db.migrate()
      ${report}
      await db.close()`
  },
  {
    name: 'store: template',
    args: tsx,
    code: `await import('tap')
      await import(${fileUrl('src/db/database.ts')})
      const { openPgliteCopy } = await import(${fileUrl('test/helpers/pglite-template.ts')})
      const copy = await openPgliteCopy()
      ${report}
      await copy.close()`
  },
  { name: 'loader: tsx', args: tsx, code: `await import('tap'); await import(${fileUrl('test/helpers/app.ts')}); ${report}` },
  { name: 'loader: ts-node', args: tsNode, env: tsNodeEnv, code: `await import('tap'); await import(${fileUrl('test/helpers/app.ts')}); ${report}` }
]

function once ({ args, env, code }) {
  const child = spawnSync(process.execPath, [...args, '--input-type=module', '-e', code], {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: 'utf8'
  })
  const line = child.stdout.split('\n').find((l) => l.startsWith('RESULT '))
  if (child.status !== 0 || line === undefined) throw new Error(`probe failed (exit ${child.status}):\n${child.stderr}`)
  const [, wall, cpu] = line.split(' ').map(Number)
  return { wall, cpu }
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

// The template is built by the first process that needs it: not part of what is measured.
once(cases[1])
const results = new Map(cases.map((c) => [c.name, []]))
for (let run = 0; run < runs; run++) {
  // Interleaved, so a burst of other work on the machine hits every case alike.
  for (const c of cases) {
    if (c.args === tsNode && !existsSync(tsNodeEntry)) continue
    results.get(c.name).push(once(c))
  }
}
console.log(`median of ${runs} runs, ms from process start (node ${process.version}, load ${(await import('node:os')).loadavg()[0].toFixed(1)})`)
for (const [name, samples] of results) {
  if (samples.length === 0) continue
  const wall = Math.round(median(samples.map((s) => s.wall)))
  const cpu = Math.round(median(samples.map((s) => s.cpu)))
  console.log(`${name.padEnd(16)} wall ${String(wall).padStart(6)}  cpu ${String(cpu).padStart(6)}`)
}
