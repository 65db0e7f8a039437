import type { AddressInfo } from 'node:net'

/** http://HOST:PORT as the server listens; a wildcard bind address becomes loopback. */
export function derivedPublicUrl (host: string, address: AddressInfo | string | null): string {
  const port = address !== null && typeof address === 'object' ? address.port : 0
  let name = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host
  if (name.includes(':') && !name.startsWith('[')) name = `[${name}]`
  return `http://${name}:${port}`
}
