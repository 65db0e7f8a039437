/**
 * Heap taken by the replay cache (src/http/plugins/replay-cache.ts) per remembered signature, for the
 * README's sizing of TASKBROKER_AUTH_REPLAY_CACHE_SIZE:
 *   node --expose-gc --import tsx bench/replay-cache-memory.ts [entries]
 */
import { randomBytes } from 'node:crypto'
import { createReplayCache } from '../src/http/plugins/replay-cache.js'

const entries = Number(process.argv[2] ?? 1_000_000)
const gc = (globalThis as { gc?: () => void }).gc ?? (() => { throw new Error('run with node --expose-gc') })
const now = 1_700_000_000
gc()
const before = process.memoryUsage().heapUsed
const cache = createReplayCache(entries)
// Timestamps spread over a 300 s window, as under steady load.
for (let i = 0; i < entries; i++) cache.check(randomBytes(32).toString('hex'), now + 300 - (i % 300), now)
gc()
const used = process.memoryUsage().heapUsed - before
console.log(`${cache.size} signatures: ${(used / cache.size).toFixed(0)} bytes each, ${(used / 1048576).toFixed(0)} MiB in all`)
