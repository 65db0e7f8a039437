import { connect, createServer, type Server, type Socket } from 'node:net'

/**
 * A TCP proxy in front of PostgreSQL for fault tests: it forwards both ways, or goes silent (every
 * socket held open, nothing forwarded: a vanished host), cuts a result off mid-stream, or holds the
 * server's answers back until released (a statement that ran, answered too late).
 */
export class PgProxy {
  private readonly sockets = new Set<Socket>()
  private readonly server: Server
  private silent = false
  private holding = false
  private held: Array<[Socket, Buffer]> = []
  port = 0

  /** `silentOnceReady`: goes silent as soon as a connection's first ReadyForQuery has passed. */
  private constructor (private readonly target: URL, private readonly silentOnceReady: boolean) {
    this.server = createServer(client => this.accept(client))
  }

  static async start (target: string, options: { silentOnceReady?: boolean } = {}): Promise<PgProxy> {
    const proxy = new PgProxy(new URL(target), options.silentOnceReady ?? false)
    await new Promise<void>(resolve => proxy.server.listen(0, '127.0.0.1', resolve))
    proxy.port = (proxy.server.address() as { port: number }).port
    return proxy
  }

  private accept (client: Socket): void {
    client.on('error', () => {})
    this.sockets.add(client)
    client.on('close', () => this.sockets.delete(client))
    if (this.silent) return // held open, never answered
    const upstream = connect(Number(this.target.port || 5432), this.target.hostname)
    upstream.on('error', () => {})
    this.sockets.add(upstream)
    upstream.on('close', () => { this.sockets.delete(upstream); client.destroy() })
    client.on('close', () => upstream.destroy())
    client.pipe(upstream)
    let sent = 0
    upstream.on('data', (chunk: Buffer) => {
      sent += chunk.length
      if (this.cutAfter !== undefined && sent > this.cutAfter) {
        this.cutAfter = undefined
        client.destroy()
        upstream.destroy()
      }
    })
    // ReadyForQuery, idle: 'Z', length 5, 'I'. With silentOnceReady the startup exchange gets
    // through, nothing after it.
    const ready = Buffer.from([0x5a, 0, 0, 0, 5, 0x49])
    upstream.on('data', (chunk: Buffer) => {
      if (this.silent) return
      if (this.holding) {
        this.held.push([client, chunk])
        return
      }
      client.write(chunk)
      if (this.silentOnceReady && chunk.includes(ready)) this.goSilent()
    })
  }

  /** The server's answers wait in the proxy until `release()`. */
  hold (): void { this.holding = true }

  release (): void {
    this.holding = false
    for (const [client, chunk] of this.held) client.write(chunk)
    this.held = []
  }

  /**
   * Cuts the next connection whose server side sends more than `bytes` (a result cut off in the
   * middle, as when the server or the network goes away); later connections are forwarded.
   */
  cutOnceAfter (bytes: number): void {
    this.cutAfter = bytes
  }

  private cutAfter: number | undefined

  /** Stops forwarding in both directions; every socket stays open. */
  goSilent (): void {
    this.silent = true
    for (const socket of this.sockets) {
      socket.unpipe()
      socket.pause()
    }
  }

  /** The partition ends: the held sockets are dropped (as their peers would), new ones are forwarded. */
  restore (): void {
    this.silent = false
    for (const socket of this.sockets) socket.destroy()
  }

  url (databaseUrl: string): string {
    const url = new URL(databaseUrl)
    url.host = `127.0.0.1:${this.port}`
    return url.toString()
  }

  async close (): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    await new Promise<void>(resolve => this.server.close(() => resolve()))
  }
}
