/**
 * Planner settings of every broker session, PostgreSQL and PGlite alike.
 *
 * `enable_sort = off`: the claim statements must walk their claim index in order (oldest first,
 * LIMIT n) whatever the statistics say. A queue table's statistics go stale by nature: analysed
 * while every task was processing (or the table empty), they put the share of pending tasks near
 * zero, and the cached plan of a prepared claim then fetched every pending task of the queue and
 * sorted them, on every claim, until autovacuum analysed the table again (60,000 pending tasks:
 * ~180 ms a claim, the single loop at 244 tasks/s instead of 7,000). With sorts off the planner
 * takes a Sort only where no index gives the order; the broker's other ordered statements either
 * have such an index or sort a handful of rows (test/db/stale-statistics.test.ts).
 */
export const PLANNER_SETTINGS = { enable_sort: 'off' } as const

/** The same as SET statements, for a session opened without connection parameters (PGlite). */
export const PLANNER_SETTINGS_SQL = Object.entries(PLANNER_SETTINGS).map(([name, value]) => `set ${name} = ${value}`).join('; ')
