/** The CLI's exit codes (sysexits.h where one fits), documented in `taskbroker --help`. */
import { TaskbrokerError, TaskbrokerUnreachableError } from '../client/errors.js'
import { ConfigError, StartupRefusedError } from '../config/errors.js'

export const EXIT = {
  ok: 0,
  /** The broker answered with an error (4xx, or a 5xx that is not temporary). */
  brokerError: 1,
  /** Bad command line or input (unknown command, missing argument, invalid JSON). */
  usage: 2,
  /** EX_UNAVAILABLE: the broker (for `migrate`, the database) could not be reached. */
  unreachable: 69,
  /** EX_TEMPFAIL: the broker is busy or unavailable (503/429) after the retries; try again later. */
  temporary: 75,
  /** EX_CONFIG: `migrate` found the store's settings wrong (no such database, a refused role), as the broker's start would. */
  config: 78
} as const

export const EXIT_CODES_HELP = `
Exit codes:
  0   ok
  1   the broker answered with an error (its TASKBROKER_* code is printed)
  2   usage: unknown command or option, missing or invalid argument
  69  the broker (migrate: the database) could not be reached (EX_UNAVAILABLE)
  75  the broker is busy or unavailable (503/429) after the retries (EX_TEMPFAIL)
  78  migrate: the store's settings are wrong (EX_CONFIG, as the broker's start)`

export class UsageError extends Error {}

/** `migrate` could not reach the database (refused, unknown host, timed out). */
export class DatabaseUnreachableError extends Error {}

export function exitCodeOf (error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage
  if (error instanceof ConfigError || error instanceof StartupRefusedError) return EXIT.config
  if (error instanceof TaskbrokerUnreachableError || error instanceof DatabaseUnreachableError) return EXIT.unreachable
  if (error instanceof TaskbrokerError) return error.temporary ? EXIT.temporary : EXIT.brokerError
  return EXIT.brokerError
}
