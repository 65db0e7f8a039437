/**
 * The storable-body check every request passes before validation (src/http/plugins/validation.ts):
 * the first value PostgreSQL cannot take, by path, and JSON nested too deeply, at any depth of input.
 */
import t from 'tap'
import { findUnstorable, MAX_JSON_DEPTH } from '../../src/http/plugins/validation.js'

const nested = (depth: number, leaf: unknown): unknown => {
  let value = leaf
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { k: value }
  return value
}

t.test('clean values pass, whatever their shape', async (t) => {
  t.equal(findUnstorable({ tasks: [{ id: 'a', parameters: { n: 1, ok: true, none: null, list: ['x', 2, {}] } }] }, 'body'), null)
  t.equal(findUnstorable('text with ünïcødé and a pair 🎉', 'body'), null)
  t.equal(findUnstorable(undefined, 'querystring'), null)
  t.equal(findUnstorable(Object.assign(Object.create(null) as object, { id: 'x' }), 'params'), null)
  t.equal(findUnstorable(nested(MAX_JSON_DEPTH, 'leaf'), 'body'), null, `${MAX_JSON_DEPTH} levels are allowed`)
})

t.test('a NUL or an unpaired surrogate is named by the path of its value', async (t) => {
  const because = 'contains a NUL character or an unpaired surrogate, which cannot be stored'
  t.equal(findUnstorable({ tasks: [{ a: 1 }, { b: { c: ['ok', 'x\u0000y'] } }] }, 'body'), `body/tasks/1/b/c/1 ${because}`)
  t.equal(findUnstorable({ id: '\uD800' }, 'params'), `params/id ${because}`)
  t.equal(findUnstorable({ id: 'a\uDC00' }, 'params'), `params/id ${because}`)
  t.equal(findUnstorable('\u0000', 'body'), `body ${because}`)
})

t.test('a bad key is named by the path of the object that holds it', async (t) => {
  t.equal(findUnstorable({ tasks: [{ parameters: { 'k\u0000': 1 } }] }, 'body'),
    'body/tasks/0/parameters has a key with a NUL character or an unpaired surrogate, which cannot be stored')
})

t.test('nesting beyond the limit is refused at the level where it crosses it, even thousands deep', async (t) => {
  const tooDeep = `is nested more than ${MAX_JSON_DEPTH} levels deep`
  const problem = findUnstorable(nested(MAX_JSON_DEPTH + 1, 1), 'body')
  t.ok(problem?.endsWith(tooDeep), problem ?? 'no problem found')
  t.equal(problem?.split('/').length, MAX_JSON_DEPTH + 1, 'the path names every level down to the limit')
  const deep = JSON.parse('['.repeat(20_000) + '1' + ']'.repeat(20_000)) as unknown
  t.equal(findUnstorable({ parameters: deep }, 'body'), `body/parameters${'/0'.repeat(MAX_JSON_DEPTH - 1)} ${tooDeep}`)
})

t.test('only own properties are looked at', async (t) => {
  const child = Object.create({ inherited: '\u0000' }) as Record<string, unknown>
  child.own = 'fine'
  t.equal(findUnstorable(child, 'body'), null)
})
