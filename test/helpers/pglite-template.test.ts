/**
 * Test stores on PGlite open a copy of a migrated template (pglite-template.ts): each copy must be
 * fully migrated, empty, independent of the others, and deleted when closed, and the copy of a
 * test process killed before its teardown must not stay behind.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { sql } from 'drizzle-orm'
import t from 'tap'
import { journal } from '../../src/db/migration-check.js'
import { COPY_PREFIX, copiesDir, openPgliteCopy } from './pglite-template.js'

/** The pid of a process that has exited. */
function deadPid (): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout)
}

t.test('a copy is migrated, empty and independent of other copies; closing it deletes it', { timeout: 180_000 }, async (t) => {
  const first = await openPgliteCopy()
  const second = await openPgliteCopy()
  t.teardown(() => Promise.all([first.close(), second.close()]))
  t.not(first.dir, second.dir)
  const migrations = await first.database.rows(sql`select count(*)::int as n from drizzle.__drizzle_migrations`)
  t.equal(migrations[0]?.n, journal().length, 'every migration applied')
  const tasks = await first.database.rows(sql`select count(*)::int as n from inflight_tasks`)
  t.equal(tasks[0]?.n, 0, 'no rows')
  await first.database.rows(sql`create table only_in_first (id int)`)
  const seen = await second.database.rows(sql`select to_regclass('only_in_first') is not null as present`)
  t.equal(seen[0]?.present, false, 'a change to one copy is not in another')
  await first.close()
  t.notOk(existsSync(first.dir), 'closed copy deleted')
  t.ok(existsSync(second.dir), 'the other copy is still there')
})

t.test('a copy left by a process that is gone is deleted when the next copy opens; a live one is kept', { timeout: 180_000 }, async (t) => {
  const orphan = join(copiesDir(), `${COPY_PREFIX}${deadPid()}-orphan`)
  const live = join(copiesDir(), `${COPY_PREFIX}${process.pid}-live`)
  mkdirSync(orphan)
  mkdirSync(live)
  t.teardown(() => rmSync(live, { recursive: true, force: true }))
  const copy = await openPgliteCopy()
  await copy.close()
  t.notOk(existsSync(orphan), 'the dead process\'s copy is gone')
  t.ok(existsSync(live), 'this process\'s own directory is kept')
})
