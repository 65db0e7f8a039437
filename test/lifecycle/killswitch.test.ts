/** The killswitch from the runtime config file: dropped at produce, removed by upkeep, reloaded live. */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { buildTestApp, task, testConfig } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'

eachBackend(t, 'killswitched task names are dropped at produce and removed by upkeep after a reload', async (t, backend) => {
  const file = join(mkdtempSync(join(tmpdir(), 'tb-runtime-')), 'runtime.yaml')
  writeFileSync(file, 'drop_task_killswitch:\n  - shop.spam\n')
  const { app } = await buildTestApp(t, backend, { TASKBROKER_RUNTIME_CONFIG: file, TASKBROKER_UPKEEP_ENABLED: 'false' })

  const produced = await app.inject({
    method: 'POST',
    url: '/v1/tasks',
    payload: { tasks: [task({ id: 'spam', taskname: 'shop.spam' }), task({ id: 'mail', taskname: 'shop.mail' }), task({ id: 'mail2', taskname: 'shop.mail' })] }
  })
  t.equal(produced.statusCode, 201)
  t.same(produced.json().killswitched, ['spam'])
  t.equal(produced.json().inserted, 2)
  t.equal((await app.inject('/v1/tasks/spam')).statusCode, 404, 'the killswitched task was never stored')

  // One task of the name now being killswitched is being processed: it goes too.
  await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: {} })
  writeFileSync(file, 'drop_task_killswitch: [shop.spam, shop.mail]\n')
  t.equal(await app.broker.runtimeConfig.reload(), true, 'SIGHUP-style reload picks up the edit')
  const pass = await app.broker.upkeep.runOnce(new Date())
  t.equal(pass.counts['killswitch.removed'], 2)
  t.equal((await app.inject('/v1/tasks/mail')).statusCode, 404)
  t.equal((await app.inject('/v1/tasks/mail2')).statusCode, 404)

  writeFileSync(file, 'drop_task_killswitch: [oops\n')
  t.equal(await app.broker.runtimeConfig.reload(), false, 'a broken edit is refused')
  t.same(app.broker.runtimeConfig.current().dropTaskKillswitch, ['shop.spam', 'shop.mail'], 'the last good config stays')
})

t.test('a broken runtime config file stops the broker at start, naming the file', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'tb-runtime-')), 'runtime.yaml')
  writeFileSync(file, 'drop_task_killswich: [a]\n')
  await t.rejects(buildApp(testConfig({ TASKBROKER_RUNTIME_CONFIG: file }), { logger: pino({ level: 'silent' }) }),
    { message: new RegExp(`Invalid runtime config ${file}.*drop_task_killswich`) })
})
