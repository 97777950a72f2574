/**
 * The harness's handle on a peer in its own OS process: child_process.fork of the compiled
 * peer-process.js with an IPC channel (structured-clone serialization). Every live child is
 * tracked so run.ts can kill them all if the harness fails or is interrupted.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { CallMessage, MethodName, Params, PeerHandle, PeerMessage, Result, WireError } from './peer.js'
import { withTimeout } from './util.js'

const SCRIPT = fileURLToPath(new URL('./peer-process.js', import.meta.url))
const DEFAULT_CALL_TIMEOUT_MS = 60_000
const READY_TIMEOUT_MS = 30_000
const EXIT_TIMEOUT_MS = 10_000

const live = new Set<ChildProcess>()

function running (child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null
}

/** SIGKILL every peer process still running (synchronous: safe in an 'exit' handler). */
export function killAllPeers (): void {
  for (const child of live) {
    if (running(child)) child.kill('SIGKILL')
  }
}

/** SIGKILL every peer process still running and wait (up to timeoutMs) until they are gone. */
export async function killAllPeersAndWait (timeoutMs = EXIT_TIMEOUT_MS): Promise<void> {
  const children = [...live].filter(running)
  const gone = children.map(async (child) => { await new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) }) })
  killAllPeers()
  await withTimeout(Promise.all(gone), timeoutMs, 'peer processes to exit')
}

interface Pending {
  method: MethodName
  resolve: (value: unknown) => void
  reject: (err: Error) => void
  timer: ReturnType<typeof setTimeout>
}

function fromWire (e: WireError, name: string, method: string): Error {
  const err = new Error(`${name} ${method}: ${e.name}: ${e.message}`)
  if (e.stack !== undefined) err.stack = `${err.message}\n  --- in peer process ---\n${e.stack}`
  return err
}

export class ProcessPeer implements PeerHandle {
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private exited: Error | undefined
  private readonly exitPromise: Promise<void>

  private constructor (readonly name: string, private readonly child: ChildProcess) {
    this.exitPromise = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child)
        this.exited = new Error(`${name} (pid ${child.pid ?? '?'}) exited with ${signal ?? `code ${code ?? '?'}`}`)
        for (const p of this.pending.values()) {
          clearTimeout(p.timer)
          p.reject(this.exited)
        }
        this.pending.clear()
        resolve()
      })
    })
    child.on('message', (msg: PeerMessage) => { this.onMessage(msg) })
    child.on('error', (err) => { console.error(`${name}: child process error:`, err) })
  }

  get pid (): number {
    return this.child.pid ?? -1
  }

  /** Fork a peer process and wait until it says it is ready. */
  static async spawn (name: string): Promise<ProcessPeer> {
    const child = fork(SCRIPT, [name], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced'
    })
    live.add(child)
    const ready = new Promise<void>((resolve, reject) => {
      const onMessage = (msg: PeerMessage): void => {
        if (msg.type !== 'ready') return
        child.off('message', onMessage)
        child.off('exit', onExit)
        resolve()
      }
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        child.off('message', onMessage)
        reject(new Error(`${name} exited during start-up with ${signal ?? `code ${code ?? '?'}`}`))
      }
      child.on('message', onMessage)
      child.once('exit', onExit)
    })
    const peer = new ProcessPeer(name, child)
    try {
      await withTimeout(ready, READY_TIMEOUT_MS, `${name} to start`)
    } catch (err) {
      child.kill('SIGKILL')
      throw err
    }
    return peer
  }

  private onMessage (msg: PeerMessage): void {
    if (msg.type !== 'result') return
    const p = this.pending.get(msg.id)
    if (p === undefined) return
    this.pending.delete(msg.id)
    clearTimeout(p.timer)
    if (msg.ok) p.resolve(msg.result)
    else p.reject(fromWire(msg.error, this.name, p.method))
  }

  async call<M extends MethodName> (method: M, params: Params<M>, timeoutMs = DEFAULT_CALL_TIMEOUT_MS): Promise<Result<M>> {
    if (this.exited !== undefined) throw this.exited
    const id = this.nextId++
    const msg: CallMessage = { type: 'call', id, method, params }
    const result = await new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${this.name} ${method}: no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, { method, resolve, reject, timer })
      this.child.send(msg, (err: Error | null) => {
        if (err === null) return
        clearTimeout(timer)
        this.pending.delete(id)
        reject(err)
      })
    })
    // The peer answers with Result<M> for a call of M (PeerHost.handlers is typed so).
    return result as Result<M>
  }

  /** Stop the peer's nodes, close the channel and wait for the process to exit (SIGKILL if it will not). */
  async close (): Promise<void> {
    if (this.exited !== undefined) return
    try {
      await this.call('stop', {}, EXIT_TIMEOUT_MS)
    } catch (err) {
      // Not worth a word if the process is already gone or being killed (a signal, a crash).
      if (this.exited === undefined && !this.child.killed && this.child.connected) console.error(`${this.name}: stop failed:`, err)
    }
    if (this.child.connected) this.child.disconnect()
    try {
      await withTimeout(this.exitPromise, EXIT_TIMEOUT_MS, `${this.name} to exit`)
    } catch {
      this.child.kill('SIGKILL')
      await this.exitPromise
    }
  }
}
