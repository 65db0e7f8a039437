/** The driver's handle on the worker process (bench/worker.ts, forked with tsx and an IPC channel). */
import { fork, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { ROOT } from './broker.js'
import type { DriverMessage, RunCommand, RunResult, WorkerMessage } from './protocol.js'

export class WorkerProcess {
  private progressListener: ((done: number, errors: number) => void) | undefined
  private pending: { resolve: (r: RunResult) => void, reject: (e: Error) => void } | undefined
  private exited = false
  private readonly exit: Promise<void>

  private constructor (private readonly child: ChildProcess) {
    this.exit = new Promise(resolve => child.once('exit', (code, signal) => {
      this.exited = true
      this.pending?.reject(new Error(`the worker process exited (${signal ?? String(code)})`))
      this.pending = undefined
      resolve()
    }))
    child.on('message', (message: WorkerMessage) => {
      if (message.type === 'progress') this.progressListener?.(message.done, message.errors)
      else if (message.type === 'result') { this.pending?.resolve(message); this.pending = undefined } else if (message.type === 'failed') { this.pending?.reject(new Error(`worker process: ${message.message}`)); this.pending = undefined }
    })
  }

  get pid (): number | undefined { return this.child.pid }

  static async start (): Promise<WorkerProcess> {
    const child = fork(join(ROOT, 'bench', 'worker.ts'), [], {
      cwd: ROOT,
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    const handle = new WorkerProcess(child)
    await new Promise<void>((resolve, reject) => {
      const onMessage = (message: WorkerMessage) => {
        if (message.type === 'ready') { child.off('message', onMessage); resolve() }
      }
      child.on('message', onMessage)
      child.once('exit', code => reject(new Error(`the worker process exited before it was ready (${String(code)})`)))
    })
    return handle
  }

  private post (message: DriverMessage): void {
    if (!this.exited) this.child.send(message)
  }

  /** Runs one command; `onProgress` gets the completed count about every 250 ms. */
  run (command: Omit<RunCommand, 'type'>, onProgress?: (done: number, errors: number) => void): Promise<RunResult> {
    if (this.pending !== undefined) throw new Error('a run is already in progress')
    this.progressListener = onProgress
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject }
      this.post({ type: 'run', ...command })
    })
  }

  /** Stream mode: the loops end once their current long-poll returns. */
  stop (): void {
    this.post({ type: 'stop' })
  }

  async close (): Promise<void> {
    if (this.exited) return
    this.post({ type: 'exit' })
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000)
    await this.exit
    clearTimeout(timer)
  }
}
