/** Human output of the CLI: aligned columns and key: value lines (`--json` prints the answer as is). */

export function table (rows: Array<Record<string, unknown>>, columns: string[]): string {
  if (rows.length === 0) return '(none)\n'
  const cells = rows.map(row => columns.map(c => show(row[c])))
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map(r => (r[i] ?? '').length)))
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(columns), ...cells.map(line)].join('\n') + '\n'
}

export function fields (record: Record<string, unknown>): string {
  const width = Math.max(...Object.keys(record).map(k => k.length))
  return Object.entries(record).map(([k, v]) => `${k.padEnd(width)}  ${show(v)}`).join('\n') + '\n'
}

function show (value: unknown): string {
  if (value === undefined || value === null) return '-'
  if (typeof value === 'object') return JSON.stringify(value)
  return String(value)
}
