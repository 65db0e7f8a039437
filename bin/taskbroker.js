#!/usr/bin/env node
// The `taskbroker` command of the installed package. With no arguments, or `serve`, it runs the
// compiled broker, configured by environment variables (or TASKBROKER_CONFIG_FILE) as the README's
// Configuration section says; any other command is the CLI (`taskbroker --help`).
const args = process.argv.slice(2)
if (args.length === 0 || (args.length === 1 && args[0] === 'serve')) {
  await import('../dist/src/server.js')
} else {
  const { run, migrateStore } = await import('../dist/src/cli/index.js')
  process.exitCode = await run(args, {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    serve: () => import('../dist/src/server.js'),
    migrate: migrateStore
  })
}
