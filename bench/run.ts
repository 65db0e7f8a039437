/**
 * `npm run bench [-- scenario] [--flag value]`: runs benchmark scenarios against a real
 * PostgreSQL (TASKBROKER_DATABASE_URL, default the local server), prints the configuration beside
 * the results and writes them as JSON under bench/results/.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { parseArgs } from 'node:util'
import { completeMode } from './complete-mode.js'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    tasks: { type: 'string', default: '20000' },
    batch: { type: 'string', default: '256' },
    reps: { type: 'string', default: '3' }
  }
})
const url = process.env.TASKBROKER_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const scenario = positionals[0] ?? 'complete-mode'
const machine = { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version }
const config = { url: url.replace(/:[^:@/]*@/, ':***@'), tasks: Number(values.tasks), batch: Number(values.batch), reps: Number(values.reps) }

process.stdout.write(`scenario ${scenario}\nconfig ${JSON.stringify(config)}\nmachine ${JSON.stringify(machine)}\n`)
let result: Record<string, unknown>
switch (scenario) {
  case 'complete-mode':
    result = await completeMode({ ...config, url })
    break
  default:
    process.stderr.write(`unknown scenario ${scenario}; known: complete-mode\n`)
    process.exit(2)
}
process.stdout.write(JSON.stringify(result, null, 2) + '\n')
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
const file = new URL(`./results/${scenario}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url)
writeFileSync(file, JSON.stringify({ ...result, machine, at: new Date().toISOString() }, null, 2) + '\n')
process.stdout.write(`wrote ${file.pathname}\n`)
