// Layers of src/ that point one way: src/http → src/core → src/store → src/db.
// Shared leaves any layer may import: src/domain/, src/config/, src/auth/signing.ts, src/paths.ts.
// src/server.ts is the process entry. `npm run lint:layers` checks this; test/layers.test.ts shows
// every rule firing on a small fixture tree. Type-only imports count like any other import.
const path = require('node:path')

const http = '^src/http/'
const core = '^src/core/'
const store = '^src/store/'
const db = '^src/db/'
const domain = '^src/domain/'
const config = '^src/config/'
const signing = '^src/auth/signing[.]ts$'
const paths = '^src/paths[.]ts$'
const entry = '^src/server[.]ts$'
const storeEntrance = '^src/store/index[.]ts$'
// The SDK (client, worker) and the CLI are programs of their own that talk to a broker over HTTP.
const sdk = '^src/(client|worker)/'
const cli = '^src/cli/'
const wireSchemas = '^src/http/routes/v1/(schemas|deadletter-schemas|lease-schemas|queue-schemas|schedule-schemas)[.]ts$'
const places = [http, core, store, db, domain, config, signing, paths, entry, sdk, cli]

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'An import cycle in src/: the modules in it can only be understood, loaded and tested together.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true }
    },
    {
      name: 'db-imports-no-layer-above',
      comment: 'src/db is the lowest layer: it may not import src/store, src/core or src/http.',
      severity: 'error',
      from: { path: db },
      to: { path: [store, core, http] }
    },
    {
      name: 'store-imports-no-layer-above',
      comment: 'src/store may import src/db and the shared leaves, never src/core or src/http.',
      severity: 'error',
      from: { path: store },
      to: { path: [core, http] }
    },
    {
      name: 'core-imports-no-layer-above',
      comment: 'src/core has no HTTP in it: it may not import src/http.',
      severity: 'error',
      from: { path: core },
      to: { path: http }
    },
    {
      name: 'http-reaches-only-core',
      comment: 'src/http is an adapter over src/core: it may not import src/store or src/db.',
      severity: 'error',
      from: { path: http },
      to: { path: [store, db] }
    },
    {
      name: 'core-not-to-db',
      comment: 'src/core reaches the database only through src/store/index.ts, never src/db.',
      severity: 'error',
      from: { path: core },
      to: { path: db }
    },
    {
      name: 'core-through-store-entrance',
      comment: 'src/core imports values from src/store/index.ts only; other store files it may import types from.',
      severity: 'error',
      from: { path: core },
      to: { path: store, pathNot: storeEntrance, preCompilationOnly: false }
    },
    {
      name: 'domain-imports-only-domain',
      comment: 'src/domain is a shared leaf every layer imports: it imports nothing in src/ outside itself.',
      severity: 'error',
      from: { path: domain },
      to: { path: '^src/', pathNot: domain }
    },
    {
      name: 'config-imports-only-domain',
      comment: 'src/config is a shared leaf every layer imports: outside itself it may import src/domain only.',
      severity: 'error',
      from: { path: config },
      to: { path: '^src/', pathNot: [config, domain] }
    },
    {
      name: 'shared-leaf-imports-no-layer',
      comment: 'src/auth/signing.ts and src/paths.ts are shared leaves: they import no layer.',
      severity: 'error',
      from: { path: [signing, paths] },
      to: { path: [http, core, store, db] }
    },
    {
      name: 'entry-not-to-store-or-db',
      comment: 'src/server.ts starts the process through src/http and src/core; it may not import src/store or src/db.',
      severity: 'error',
      from: { path: entry },
      to: { path: [store, db] }
    },
    {
      name: 'nothing-imports-the-entry',
      comment: 'src/server.ts is the process entry: no module in src/ imports it.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: entry }
    },
    {
      name: 'src-not-to-test-bench-scripts',
      comment: 'Shipped code may not import test/, bench/ or scripts/ (they are not in the package).',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench|scripts)/' }
    },
    {
      name: 'src-only-known-places',
      comment: 'A module in src/ outside the layers and shared leaves is checked by no rule: give it a place in .dependency-cruiser.cjs.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^src/', pathNot: places }
    },
    {
      name: 'sdk-not-to-server',
      comment: 'The client and worker SDK run in other processes than the broker: they may import src/auth/signing.ts, never broker code.',
      severity: 'error',
      from: { path: sdk },
      to: { path: [core, store, db, config, domain, paths, entry, cli] }
    },
    {
      name: 'sdk-wire-types-only',
      comment: 'The SDK takes its request and answer types from the wire schemas (type-only imports, nothing loaded); no other src/http module.',
      severity: 'error',
      from: { path: sdk },
      to: { path: http, pathNot: wireSchemas }
    },
    {
      name: 'sdk-http-type-only',
      comment: 'The SDK imports the wire schemas for their types only: a value import would load the server into every worker.',
      severity: 'error',
      from: { path: sdk },
      to: { path: http, dependencyTypesNot: ['type-only'] }
    },
    {
      name: 'client-through-worker-entrance',
      comment: 'src/worker builds on the client; the client reaches the worker only to re-export it from its index (no cycle).',
      severity: 'error',
      from: { path: '^src/client/', pathNot: '^src/client/index[.]ts$' },
      to: { path: '^src/worker/' }
    },
    {
      name: 'cli-through-client',
      comment: 'The CLI talks to a broker through the client; only `migrate` opens the database (src/db), and `serve` is started by bin/.',
      severity: 'error',
      from: { path: cli },
      to: { path: [http, core, store, entry] }
    },
    {
      name: 'broker-not-to-sdk',
      comment: 'The broker does not depend on its own client, worker SDK or CLI.',
      severity: 'error',
      from: { path: [http, core, store, db, domain, config, signing, paths, entry] },
      to: { path: [sdk, cli] }
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import the check cannot resolve is one it cannot judge.',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true }
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // 'specify' keeps type-only imports in the graph (they count for every rule and for cycles) and
    // marks them, so that core may import store types from files other than the store's entrance.
    tsPreCompilationDeps: 'specify',
    tsConfig: { fileName: path.join(__dirname, 'tsconfig.json') },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings']
    },
    reporterOptions: { text: { highlightFocused: true } }
  }
}
