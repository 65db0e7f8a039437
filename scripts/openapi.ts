/**
 * Writes openapi/openapi.json from the route schemas (`npm run openapi`). test/openapi.test.ts
 * fails when the committed file is stale.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pino from 'pino'
import { buildApp } from '../src/http/app.js'
import { loadConfig } from '../src/config/config.js'
import { packageRoot } from '../src/paths.js'

export async function renderOpenApi (): Promise<string> {
  const config = loadConfig({ LOG_LEVEL: 'silent', TASKBROKER_DATA_DIR: 'memory://' })
  const app = await buildApp(config, { logger: pino({ level: 'silent' }) })
  try {
    await app.ready()
    return JSON.stringify(app.swagger(), null, 2) + '\n'
  } finally {
    await app.close()
  }
}

export const OPENAPI_FILE = join(packageRoot(), 'openapi', 'openapi.json')

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(OPENAPI_FILE, await renderOpenApi())
  process.stdout.write(`wrote ${OPENAPI_FILE}\n`)
}
