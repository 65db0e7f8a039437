// drizzle-kit settings: `npm run db:generate` writes migrations from src/db/schema.ts;
// `npm run db:migrate` applies them to the PostgreSQL named by TASKBROKER_DATABASE_URL or DATABASE_URL.
import { defineConfig } from 'drizzle-kit'

const url = process.env.TASKBROKER_DATABASE_URL ?? process.env.DATABASE_URL
// No default URL: one would quietly migrate whatever database it happens to reach (the `postgres`
// database on localhost). Commands that talk to a database need it set; generate and check do not.
const DATABASE_COMMANDS = ['migrate', 'push', 'pull', 'introspect', 'studio']
if ((url === undefined || url === '') && process.argv.slice(2).some(arg => DATABASE_COMMANDS.includes(arg))) {
  throw new Error('drizzle-kit: set TASKBROKER_DATABASE_URL (or DATABASE_URL) to the PostgreSQL URL of the database to migrate, e.g. TASKBROKER_DATABASE_URL=postgres://user@host:5432/taskbroker npm run db:migrate')
}

export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema.ts',
  out: './migrations',
  ...(url !== undefined && url !== '' ? { dbCredentials: { url } } : {})
})
