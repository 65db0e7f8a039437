/** Shared by the peer scripts: options from argv, a pg client, timing, the JSON result line. */
import pg from 'pg'

export interface PeerOptions {
  url: string
  jobs: number
  schema: string
  [key: string]: unknown
}

export function readOptions (): PeerOptions {
  const raw = process.argv[2]
  if (raw === undefined) {
    process.stderr.write('usage: node --import tsx bench/peers/<peer>.ts \'{"url": …, "jobs": …, "schema": …}\' (started by npm run bench)\n')
    process.exit(2)
  }
  const options = JSON.parse(raw) as PeerOptions
  if (!/^[a-z_][a-z0-9_]*$/.test(options.schema)) throw new Error(`bad schema name ${options.schema}`)
  return options
}

export async function connect (url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  return client
}

export const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms))

/** Polls `count` every 20 ms until it reaches `target` (or `timeoutMs` passes); the time it took, in ms. */
export async function waitFor (count: () => Promise<number>, target: number, timeoutMs: number): Promise<{ ms: number, reached: number }> {
  const started = performance.now()
  for (;;) {
    const reached = await count()
    if (reached >= target || performance.now() - started > timeoutMs) return { ms: performance.now() - started, reached }
    await sleep(20)
  }
}

/** The result, as the last line of stdout (bench/lib/peers.ts reads it). */
export function report (result: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(result) + '\n')
}
