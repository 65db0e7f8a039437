/** Files shipped beside the code, found whether we run from `src/` (tsx) or `dist/src/` (compiled). */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

let root: string | undefined

/** The directory holding the broker's package.json. */
export function packageRoot (): string {
  if (root !== undefined) return root
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'migrations'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new Error('package root (package.json beside migrations/) not found')
    dir = parent
  }
  root = dir
  return dir
}

export const migrationsFolder = () => join(packageRoot(), 'migrations')

export function packageVersion (): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version
}
