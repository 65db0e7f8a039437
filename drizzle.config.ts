// drizzle-kit settings: `npm run db:generate` writes migrations from src/db/schema.ts;
// `npx drizzle-kit migrate` applies them to the PostgreSQL named by TASKBROKER_DATABASE_URL or DATABASE_URL.
import { defineConfig } from 'drizzle-kit'

export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema.ts',
  out: './migrations',
  dbCredentials: {
    url: process.env.TASKBROKER_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
  }
})
