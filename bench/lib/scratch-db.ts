/** A PostgreSQL database of its own for a focused benchmark: created, migrated, dropped after. */
import pino from 'pino'
import { connectPostgres } from './pg.js'
import { openDatabase, type Database } from '../../src/db/database.js'

export async function withScratchDatabase<T> (adminUrl: string, run: (database: Database) => Promise<T>): Promise<T> {
  const name = `tb_bench_${process.pid}`
  const admin = connectPostgres(adminUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`drop database if exists ${name}`)
  await admin.unsafe(`create database ${name}`)
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  const database = await openDatabase({ url: url.toString(), dataDir: '', poolSize: 1, log: pino({ level: 'silent' }), callTimeoutMs: 60_000 })
  try {
    await database.migrate()
    return await run(database)
  } finally {
    await database.close()
    await admin.unsafe(`drop database if exists ${name} with (force)`)
    await admin.end()
  }
}

/** `--name value` from the command line, or the default. */
export function flag (name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] as string : fallback
}
