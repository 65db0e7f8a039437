/** `taskbroker tail`: the task counts, redrawn in place on a terminal (a line per refresh otherwise, or with --json). */
import type { TaskbrokerClient } from '../client/client.js'
import { sleep } from '../client/retry.js'
import { table } from './format.js'

export async function tail (client: TaskbrokerClient, o: {
  intervalMs: number
  count?: number | undefined
  json: boolean
  stdout: { write: (text: string) => unknown, isTTY?: boolean }
  signal?: AbortSignal | undefined
}): Promise<void> {
  const inPlace = o.stdout.isTTY === true && !o.json
  for (let n = 1; o.count === undefined || n <= o.count; n++) {
    const s = await client.stats()
    if (o.json) o.stdout.write(`${JSON.stringify({ at: new Date().toISOString(), ...s })}\n`)
    else {
      const counts = Object.entries(s.by_status).map(([k, v]) => `${k} ${v}`).join('  ')
      const summary = `${new Date().toISOString()}  ${counts}  deadletters ${s.deadletters}  oldest pending ${s.oldest_pending_age_sec.toFixed(1)} s\n`
      // Home and clear-to-end: the screen is redrawn, not scrolled.
      o.stdout.write(inPlace ? `\x1b[H\x1b[J${summary}\n${table(s.queues, ['application', 'namespace', 'status', 'count'])}` : summary)
    }
    if (o.count !== undefined && n === o.count) break
    try {
      await sleep(o.intervalMs, o.signal)
    } catch {
      return
    }
  }
}
