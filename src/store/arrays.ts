/** Array parameters: bulk statements take their rows as parallel arrays, unnested in SQL. */

export function intText (value: number | undefined | null): string | null {
  return value === undefined || value === null ? null : String(value)
}

/**
 * An array parameter as PostgreSQL's array literal text (`{"a",NULL}`), every element quoted.
 * Drivers are not trusted with JS arrays here: postgres.js 3.4 sends a null element as the string
 * "NULL" and types the array by its first element; text is read the same by every driver.
 */
export function pgArray (values: ReadonlyArray<string | null>): string {
  let out = '{'
  for (let i = 0; i < values.length; i++) {
    const v = values[i]
    if (i > 0) out += ','
    out += v === null || v === undefined ? 'NULL' : `"${v.replace(/[\\"]/g, '\\$&')}"`
  }
  return out + '}'
}
