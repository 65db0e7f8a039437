#!/usr/bin/env node
/**
 * Compiles src/ to dist/ only when a source is newer than the last build: `npm start` used to run
 * tsc every time (20 s on a quiet machine). Run by `npm start` (with --start: then the broker runs in
 * this same process, one Node start fewer) and by `prepare` (after npm install/ci).
 * Plain JavaScript so it runs before anything is compiled. A failed build removes its marker file,
 * so the next start tries again instead of running what the failed build emitted.
 * --no-fail (prepare): a failed build is reported but does not fail `npm ci`; the type check reports
 * it, and `npm start` tries again.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
// tsc rewrites every output file on each build, so this one's time is the last build's.
const marker = join(root, 'dist', 'src', 'server.js')
const inputs = [join(root, 'src'), join(root, 'tsconfig.json'), join(root, 'tsconfig.build.json')]

function newestMtime (path) {
  if (!existsSync(path)) return 0
  const stat = statSync(path)
  if (!stat.isDirectory()) return stat.mtimeMs
  // A directory's own time changes when a file in it is added, renamed or deleted.
  let newest = stat.mtimeMs
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, entry)))
  return newest
}

/** True when dist/ is older than a source (false for an installed package: dist/ is all there is). */
function stale () {
  if (!existsSync(join(root, 'src'))) return false
  const builtAt = existsSync(marker) ? statSync(marker).mtimeMs : 0
  return builtAt < Math.max(...inputs.map(newestMtime))
}

if (stale()) build()
if (process.argv.includes('--tap')) buildTap()
if (process.argv.includes('--start')) await import(pathToFileURL(marker).href)

function build () {
  let tsc
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  } catch {
    process.stderr.write('dist/ is missing or older than src/, and TypeScript is not installed: run `npm install`\n')
    process.exit(1)
  }
  const why = existsSync(marker) ? 'sources changed since the last build' : 'no build yet'
  process.stderr.write(`compiling src/ to dist/ (${why})\n`)
  const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })
  if (result.status === 0) return
  rmSync(marker, { force: true })
  if (!process.argv.includes('--no-fail')) process.exit(result.status ?? 1)
  process.stderr.write('build failed (see above); `npm start` will try again\n')
}

/**
 * tap compiles its Test class with the plugins .taprc names (ours drops ts-node for tsx); after an
 * install it still has the defaults, and a run only rebuilds it for the runs after. Done here, at
 * install (`prepare`), so the first `npm test` runs as configured. Skipped when tap is not installed.
 */
function buildTap () {
  const tap = join(root, 'node_modules', '.bin', 'tap')
  if (!existsSync(tap) || !existsSync(join(root, '.taprc'))) return
  const result = spawnSync(tap, ['build'], { cwd: root, stdio: 'inherit' })
  if (result.status !== 0) process.stderr.write('tap build failed (see above); the first test run rebuilds it\n')
}
