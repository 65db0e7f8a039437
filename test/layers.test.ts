/**
 * The layer rules (.dependency-cruiser.cjs, `npm run lint:layers`) bite: run on a small tree with one
 * violation of each rule, the check names every one (file and rule) and fails; run on a clean tree
 * with every allowed kind of import, it passes.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

const ROOT = new URL('..', import.meta.url).pathname
const CONFIG = join(ROOT, '.dependency-cruiser.cjs')
const DEPCRUISE = join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs')
const FIXTURES = join(ROOT, 'test/fixtures/layers')

/** Runs the check the way `npm run lint:layers` does, on `<fixture>/src`. */
function checkLayers (fixture: string): { status: number | null, output: string, violations: string[] } {
  const run = spawnSync(process.execPath, [DEPCRUISE, '--config', CONFIG, '--output-type', 'err-long', 'src'], {
    cwd: join(FIXTURES, fixture),
    encoding: 'utf8'
  })
  const output = run.stdout + run.stderr
  // One line per violation: "error <rule>: <from> → <to>"; a cycle's path runs over several lines.
  const violations = output.replace(/→ *\n\s*/g, '→ ').split('\n')
    .map(line => line.trim())
    .filter(line => line.startsWith('error '))
    .map(line => line.replace(/ +$/, ''))
    .sort()
  return { status: run.status, output, violations }
}

t.test('the lint:layers script runs this check on src/', async (t) => {
  const scripts = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts
  t.match(scripts['lint:layers'], /^depcruise --config \.dependency-cruiser\.cjs --output-type err-long src$/)
})

t.test('a tree with an upward import, a cycle and every other forbidden import fails, naming each', async (t) => {
  const { status, output, violations } = checkLayers('violating')
  t.not(status, 0, 'the check exits non-zero')
  t.strictSame(violations, [
    // Type-only imports count: src/db/database.ts only imports a type from the store.
    'error db-imports-no-layer-above: src/db/database.ts → src/store/rows.ts',
    'error store-imports-no-layer-above: src/store/task-store.ts → src/core/claims/task-signal.ts',
    'error core-imports-no-layer-above: src/core/broker.ts → src/http/reply.ts',
    'error http-reaches-only-core: src/http/app.ts → src/store/index.ts',
    'error http-reaches-only-core: src/http/app.ts → src/db/database.ts',
    'error core-not-to-db: src/core/broker.ts → src/db/database.ts',
    // A value from a store file other than the entrance; the type from src/store/rows.ts is allowed.
    'error core-through-store-entrance: src/core/broker.ts → src/store/task-store.ts',
    // A cycle closed by a type-only import.
    'error no-circular: src/core/cycle-a.ts → src/core/cycle-b.ts → src/core/cycle-a.ts',
    'error domain-imports-only-domain: src/domain/types.ts → src/http/schemas.ts',
    'error config-imports-only-domain: src/config/config.ts → src/core/push/workers.ts',
    'error shared-leaf-imports-no-layer: src/auth/signing.ts → src/store/index.ts',
    'error entry-not-to-store-or-db: src/server.ts → src/store/index.ts',
    'error nothing-imports-the-entry: src/http/restart.ts → src/server.ts',
    'error src-not-to-test-bench-scripts: src/core/broker.ts → test/helper.ts',
    'error src-only-known-places: src/core/broker.ts → src/misc/util.ts',
    'error not-to-unresolvable: src/core/broker.ts → ./not-there.js',
    // The SDK and CLI talk to a broker over HTTP: no broker code in them, and none of them in the broker.
    'error sdk-not-to-server: src/client/client.ts → src/core/broker.ts',
    'error sdk-wire-types-only: src/client/client.ts → src/http/schemas.ts',
    'error sdk-http-type-only: src/client/client.ts → src/http/routes/v1/schemas.ts',
    'error client-through-worker-entrance: src/client/client.ts → src/worker/worker.ts',
    'error cli-through-client: src/cli/main.ts → src/core/broker.ts',
    'error broker-not-to-sdk: src/core/uses-client.ts → src/worker/worker.ts'
  ].sort(), output)
  t.match(output, /22 dependency violations \(22 errors/)
})

t.test('a tree whose imports all point one way passes', async (t) => {
  const { status, output, violations } = checkLayers('clean')
  t.strictSame(violations, [], output)
  t.equal(status, 0, output)
  t.match(output, /no dependency violations found \(15 modules/, 'every module of the clean tree was cruised')
})
