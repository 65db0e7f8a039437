/** Push-mode settings: the worker map, the public URL and their validation. */
import t from 'tap'
import { loadConfig } from '../../src/config/config.js'
import { derivedPublicUrl } from '../../src/http/public-url.js'

const push = { TASKBROKER_DELIVERY_MODE: 'push' }

t.test('the worker map is application=url pairs', async (t) => {
  const config = loadConfig({ ...push, TASKBROKER_WORKER_MAP: ' shop = http://10.0.0.5:9000/push , mail=https://mail.internal/tasks?x=1 ,' })
  t.same(config.push.workers, [
    { application: 'shop', url: 'http://10.0.0.5:9000/push' },
    { application: 'mail', url: 'https://mail.internal/tasks?x=1' }
  ])
  t.same(loadConfig({}).push.workers, [], 'empty by default (pull mode needs none)')
})

t.test('push defaults', async (t) => {
  const { push: p } = loadConfig({ ...push, TASKBROKER_WORKER_MAP: 'shop=http://127.0.0.1:9000/push' })
  t.same({ ...p, workers: undefined }, {
    workers: undefined,
    fetchLoops: 2,
    fetchBatchSize: 32,
    fetchBackoffMs: 100,
    concurrency: 64,
    queueSize: 64,
    timeoutMs: 10_000,
    workerBackoffMs: 100,
    workerBackoffMaxMs: 10_000,
    updateBatching: true,
    updateBatchSize: 256,
    updateFlushIntervalMs: 5
  })
})

t.test('a bad worker map or public URL stops the broker with a message naming the variable', async (t) => {
  const bad = (env: Record<string, string>, message: RegExp) => t.throws(() => loadConfig(env), { name: 'ConfigError', message }, JSON.stringify(env))
  bad(push, /^Invalid configuration: TASKBROKER_WORKER_MAP must name at least one application=url/)
  bad({ ...push, TASKBROKER_WORKER_MAP: 'shop' }, /TASKBROKER_WORKER_MAP entry "shop" is not application=url/)
  bad({ TASKBROKER_WORKER_MAP: '=http://x/push' }, /TASKBROKER_WORKER_MAP entry .* names no application/)
  bad({ TASKBROKER_WORKER_MAP: 'shop=ftp://x/push' }, /TASKBROKER_WORKER_MAP the URL of "shop" must be an http\(s\) URL/)
  bad({ TASKBROKER_WORKER_MAP: 'shop=http://a/push,shop=http://b/push' }, /TASKBROKER_WORKER_MAP application "shop" is mapped twice/)
  bad({ TASKBROKER_PUBLIC_URL: 'broker:8080' }, /TASKBROKER_PUBLIC_URL must be an http\(s\) URL/)
  bad({ TASKBROKER_PUSH_WORKER_BACKOFF_MS: '500', TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS: '100' }, /TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS must be at least/)
  bad({ TASKBROKER_PUSH_FETCH_LOOPS: '0' }, /TASKBROKER_PUSH_FETCH_LOOPS/)
  bad({ TASKBROKER_PUSH_UPDATE_BATCHING: 'maybe' }, /TASKBROKER_PUSH_UPDATE_BATCHING/)
})

t.test('the public URL: as configured (without a trailing slash), else the listening address', async (t) => {
  t.equal(loadConfig({ TASKBROKER_PUBLIC_URL: 'https://broker.example.com/base/' }).push.publicUrl, 'https://broker.example.com/base')
  t.equal(loadConfig({}).push.publicUrl, undefined)
  const address = { address: '127.0.0.1', family: 'IPv4', port: 8123 }
  t.equal(derivedPublicUrl('127.0.0.1', address), 'http://127.0.0.1:8123')
  t.equal(derivedPublicUrl('0.0.0.0', address), 'http://127.0.0.1:8123', 'a wildcard bind becomes loopback')
  t.equal(derivedPublicUrl('::', address), 'http://[::1]:8123')
  t.equal(derivedPublicUrl('fe80::1', address), 'http://[fe80::1]:8123')
  t.equal(derivedPublicUrl('broker.local', address), 'http://broker.local:8123')
})
