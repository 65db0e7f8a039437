import { createHmac } from 'node:crypto'
import t from 'tap'
import { createReplayCache } from '../src/http/plugins/replay-cache.js'
import { signRequest, verifySignature } from '../src/auth/signing.js'
import { buildTestApp, task } from './helpers/app.js'

t.test('the signature is hex HMAC-SHA256 over "METHOD path:timestamp:body"', async (t) => {
  const body = '{"tasks":[]}'
  const headers = signRequest('s3cret', { method: 'post', path: '/v1/tasks?x=1', body, timestamp: 1700000000, nonce: null })
  const expected = createHmac('sha256', 's3cret').update('POST /v1/tasks?x=1:1700000000:' + body).digest('hex')
  t.same(headers, { 'taskbroker-signature': expected, 'taskbroker-timestamp': '1700000000' })
})

t.test('verification: any listed secret, within the skew, nothing else', async (t) => {
  const input = { method: 'POST', path: '/v1/tasks', body: 'abc', timestamp: 1000 }
  const signature = signRequest('old', { ...input, nonce: null })['taskbroker-signature'] as string
  const check = (over: Partial<Parameters<typeof verifySignature>[1]>, secrets = ['new', 'old']) =>
    verifySignature(secrets, { ...input, signature, timestamp: '1000', maxSkewSec: 300, nowSec: 1100, ...over })
  t.equal(check({}), true, 'the second secret verifies (rotation)')
  t.equal(check({}, ['new']), false, 'a removed secret no longer verifies')
  t.equal(check({ nowSec: 1301 }), false, 'too old: a replay later is refused')
  t.equal(check({ nowSec: 699 }), false, 'too far in the future')
  t.equal(check({ body: 'abd' }), false, 'another body')
  t.equal(check({ path: '/v1/tasks/claim' }), false, 'another path')
  t.equal(check({ method: 'GET' }), false, 'another method')
  t.equal(check({ timestamp: '1001' }), false, 'another timestamp')
  t.equal(check({ signature: undefined }), false, 'missing')
  t.equal(check({ signature: 'zz' + signature.slice(2) }), false, 'not hex')
  t.equal(check({ signature: signature.slice(0, 10) }), false, 'truncated')
})

t.test('with secrets set, the API refuses unsigned or wrongly signed requests with one code', async (t) => {
  const { app } = await buildTestApp(t, 'pglite', { TASKBROKER_AUTH_SECRETS: 'new,old', TASKBROKER_UPKEEP_ENABLED: 'false' })
  const body = JSON.stringify({ tasks: [task({ id: 'signed' })] })
  const send = (headers: Record<string, string>, payload = body, url = '/v1/tasks') =>
    app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json', ...headers } })

  const unsigned = await send({})
  t.equal(unsigned.statusCode, 401)
  t.same(unsigned.json(), { statusCode: 401, code: 'TASKBROKER_UNAUTHORIZED', error: 'Unauthorized', message: 'Authentication failed' })
  t.equal((await send(signRequest('wrong', { method: 'POST', path: '/v1/tasks', body }))).statusCode, 401)
  t.equal((await send(signRequest('old', { method: 'POST', path: '/v1/tasks', body: body + ' ' }))).statusCode, 401, 'the body is covered')
  t.equal((await send(signRequest('old', { method: 'POST', path: '/v1/tasks', body, timestamp: Math.floor(Date.now() / 1000) - 3600 }))).statusCode, 401, 'an old capture is refused')
  t.equal((await send(signRequest('old', { method: 'POST', path: '/v1/tasks', body: '{bad' }), '{bad')).statusCode, 400, 'signed but malformed JSON is a 400')
  t.equal((await app.inject('/v1/tasks/signed')).statusCode, 401, 'bodiless requests need a signature too')
  t.equal((await app.inject({ method: 'GET', url: '/v1/tasks/signed', headers: signRequest('new', { method: 'GET', path: '/v1/tasks/signed' }) })).statusCode, 404,
    'a signed GET passes (and the task was never stored by the refused requests)')

  const ok = await send(signRequest('old', { method: 'POST', path: '/v1/tasks', body }))
  t.equal(ok.statusCode, 201, 'any listed secret signs')
  // The GET above, signed again in the same second, would be its replay: a nonce makes it another request.
  t.equal((await app.inject({ method: 'GET', url: '/v1/tasks/signed', headers: signRequest('new', { method: 'GET', path: '/v1/tasks/signed', nonce: 'again' }) })).statusCode, 200)
  for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
    t.equal((await app.inject(path)).statusCode, 200, `${path} is exempt`)
  }
})

t.test('a nonce is signed in place of the timestamp as "timestamp.nonce", and cannot be moved', async (t) => {
  const input = { method: 'POST', path: '/v1/tasks/claim', body: '{"limit":1}', timestamp: 1000 }
  const headers = signRequest('k', { ...input, nonce: 'n-1' })
  const expected = createHmac('sha256', 'k').update('POST /v1/tasks/claim:1000.n-1:{"limit":1}').digest('hex')
  t.same(headers, { 'taskbroker-signature': expected, 'taskbroker-timestamp': '1000', 'taskbroker-nonce': 'n-1' })
  t.not(headers['taskbroker-signature'], signRequest('k', { ...input, nonce: null })['taskbroker-signature'], 'the same request with a nonce is another signature')
  t.notOk('taskbroker-nonce' in signRequest('k', { ...input, nonce: null }), 'nonce: null sends none')
  const a = signRequest('k', input)
  const b = signRequest('k', input)
  t.match(a['taskbroker-nonce'], /^[A-Za-z0-9_-]{1,64}$/, 'signRequest adds a nonce by default')
  t.not(a['taskbroker-signature'], b['taskbroker-signature'], 'so the same request signed twice in one second is two requests')
  const check = (over: Partial<Parameters<typeof verifySignature>[1]>) =>
    verifySignature(['k'], { ...input, signature: expected, timestamp: '1000', nonce: 'n-1', maxSkewSec: 300, nowSec: 1000, ...over })
  t.equal(check({}), true)
  t.equal(check({ nonce: 'n-2' }), false, 'another nonce')
  t.equal(check({ nonce: undefined }), false, 'the nonce left out')
  t.equal(check({ nonce: 'n:1' }), false, 'a nonce outside A-Z a-z 0-9 _ -')
  t.throws(() => signRequest('k', { ...input, nonce: 'a b' }), /nonce/, 'signRequest refuses a nonce it could not send')
})

t.test('the replay cache: one use per signature until it expires, bounded in size', async (t) => {
  const cache = createReplayCache(3)
  const sig = (n: number) => n.toString(16).padStart(64, 'a')
  t.equal(cache.check(sig(1), 1300, 1000), 'fresh')
  t.equal(cache.check(sig(1), 1300, 1100), 'replayed', 'the same signature within its window')
  t.equal(cache.check(sig(1).toUpperCase(), 1300, 1100), 'replayed', 'in capitals it is the same signature')
  t.equal(cache.check(sig(2), 1050, 1100), 'fresh')
  t.equal(cache.check(sig(3), 1400, 1100), 'fresh')
  t.equal(cache.check(sig(4), 1400, 1100), 'full', 'a fourth is refused: the cache never holds more than its size')
  t.equal(cache.size, 3)
  t.equal(cache.check(sig(4), 1400, 1200), 'fresh', 'once the second one expired there is room again')
  t.equal(cache.check(sig(2), 1050, 1200), 'full', 'an expired signature is forgotten (its timestamp check refuses it anyway), and the cache is full again')
  t.equal(cache.check(sig(1), 1601, 1301), 'fresh', 'after its window a signature is forgotten')
  t.equal(cache.size, 3, 'sig 1 (again), 3 and 4')
})

t.test('a signed request is served once: replays within the window are refused', async (t) => {
  const { app } = await buildTestApp(t, 'pglite', { TASKBROKER_AUTH_SECRETS: 'k', TASKBROKER_UPKEEP_ENABLED: 'false' })
  const body = JSON.stringify({ tasks: [task({ namespace: 'replayed' })] }) // no id: each produce served would store a new task
  const headers: Record<string, string> = { 'content-type': 'application/json', ...signRequest('k', { method: 'POST', path: '/v1/tasks', body }) }
  const answers = []
  for (let i = 0; i < 3; i++) answers.push(await app.inject({ method: 'POST', url: '/v1/tasks', payload: body, headers }))
  t.same(answers.map(a => a.statusCode), [201, 401, 401], 'the first is served, the two replays are refused')
  t.same(answers[1]?.json(), {
    statusCode: 401,
    code: 'TASKBROKER_REPLAYED',
    error: 'Unauthorized',
    message: 'This signature was already used; sign the request again (new timestamp or taskbroker-nonce)'
  })
  const upper = { ...headers, 'taskbroker-signature': (headers['taskbroker-signature'] as string).toUpperCase() }
  t.equal((await app.inject({ method: 'POST', url: '/v1/tasks', payload: body, headers: upper })).statusCode, 401, 'the signature in capitals is the same signature')
  const stats = await app.inject({ method: 'GET', url: '/v1/stats', headers: signRequest('k', { method: 'GET', path: '/v1/stats' }) })
  t.equal(stats.json().by_status.pending, 1, 'one task was created')

  const claim = (nonce?: string) => app.inject({
    method: 'POST',
    url: '/v1/tasks/claim',
    payload: '{"limit":1}',
    headers: { 'content-type': 'application/json', ...signRequest('k', { method: 'POST', path: '/v1/tasks/claim', body: '{"limit":1}', ...(nonce === undefined ? {} : { nonce }) }) }
  })
  t.same([(await claim('a')).statusCode, (await claim('b')).statusCode], [200, 200], 'identical claims with their own nonces are both served')
})

t.test('TASKBROKER_AUTH_REPLAY_CACHE_SIZE bounds the signatures remembered; beyond it, 503 with Retry-After', async (t) => {
  const { app } = await buildTestApp(t, 'pglite', { TASKBROKER_AUTH_SECRETS: 'k', TASKBROKER_AUTH_REPLAY_CACHE_SIZE: '2', TASKBROKER_UPKEEP_ENABLED: 'false' })
  const get = (nonce: string) => app.inject({ method: 'GET', url: '/v1/stats', headers: signRequest('k', { method: 'GET', path: '/v1/stats', nonce }) })
  t.equal((await get('1')).statusCode, 200)
  t.equal((await get('2')).statusCode, 200)
  const full = await get('3')
  t.equal(full.statusCode, 503, 'a third signature within the window does not fit')
  t.equal(full.json().code, 'TASKBROKER_REPLAY_CACHE_FULL')
  t.equal(full.headers['retry-after'], '1')
  t.equal((await app.inject('/v1/stats')).statusCode, 401, 'an unsigned request is still a 401 (only valid signatures take room)')
})
