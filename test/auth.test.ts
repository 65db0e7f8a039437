import { createHmac } from 'node:crypto'
import t from 'tap'
import { signRequest, verifySignature } from '../src/auth/signing.js'
import { buildTestApp, task } from './helpers/app.js'

t.test('the signature is hex HMAC-SHA256 over "METHOD path:timestamp:body"', async (t) => {
  const body = '{"tasks":[]}'
  const headers = signRequest('s3cret', { method: 'post', path: '/v1/tasks?x=1', body, timestamp: 1700000000 })
  const expected = createHmac('sha256', 's3cret').update('POST /v1/tasks?x=1:1700000000:' + body).digest('hex')
  t.same(headers, { 'taskbroker-signature': expected, 'taskbroker-timestamp': '1700000000' })
})

t.test('verification: any listed secret, within the skew, nothing else', async (t) => {
  const input = { method: 'POST', path: '/v1/tasks', body: 'abc', timestamp: 1000 }
  const signature = signRequest('old', input)['taskbroker-signature'] as string
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
  t.equal((await app.inject({ method: 'GET', url: '/v1/tasks/signed', headers: signRequest('new', { method: 'GET', path: '/v1/tasks/signed' }) })).statusCode, 200)
  for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
    t.equal((await app.inject(path)).statusCode, 200, `${path} is exempt`)
  }
})
