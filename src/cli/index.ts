/** The entry bin/taskbroker.js loads for every command but `serve`. */
export { run, type CliIo } from './main.js'
export { migrateStore } from './migrate.js'
export { EXIT } from './exit-codes.js'
