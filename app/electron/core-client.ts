import type { ParleyBridge } from '../../core/api/bridge.js'
import type { ErrorShape } from '../../core/api/contract.js'
import { describeError, NotRunningError, ParleyError } from '../../core/errors.js'
import type { KeyProtector } from '../../core/identity/key-protector.js'
import { isMessage, notRunningResponse, type CoreStartOptions, type Port } from './core-channel.js'

/** Core could not start in its process; `name` and `message` are the Messenger's error. */
export class CoreStartError extends ParleyError {
  static override name = 'CoreStartError'
  override name = 'CoreStartError'
  constructor (readonly error: ErrorShape) {
    super(`${error.name}: ${error.message}`)
  }
}

/**
 * The main process's side of the utility process hosting core: a ParleyBridge (request
 * frames in, response frames out, event frames to listeners) over a Port, plus start/stop,
 * and the key protector core asks to seal or open the identity key (safeStorage lives only
 * in the main process). If the process dies, requests in flight and later ones are answered
 * with NotRunningError frames: the renderer sees an error, never a hang.
 *
 * @example
 * const core = new CoreClient(portOf(utilityProcess.fork(CORE_PROCESS)), protector)
 * await core.start({ dataDir, listen, relays: [], mdns: true, protector: protector?.name })
 * await core.request('{"id":1,"cmd":"whoami"}')
 */
export class CoreClient implements ParleyBridge {
  private seq = 0
  private readonly pending = new Map<number, { resolve: (frame: string) => void, request: string }>()
  private readonly listeners = new Set<(frame: string) => void>()
  private starting: { resolve: () => void, reject: (err: Error) => void } | undefined
  private stopped: (() => void) | undefined
  private gone = false

  constructor (private readonly port: Port, private readonly protector: KeyProtector | undefined) {
    port.onMessage((m) => { this.onMessage(m) })
  }

  async start (options: CoreStartOptions): Promise<void> {
    if (this.gone) throw new NotRunningError('the core process has exited')
    await new Promise<void>((resolve, reject) => {
      this.starting = { resolve, reject }
      this.port.post({ type: 'start', options })
    })
  }

  async request (frame: string): Promise<string> {
    if (this.gone) return await notRunningResponse(frame, 'Parley\'s core process is not running')
    const seq = ++this.seq
    return await new Promise<string>((resolve) => {
      this.pending.set(seq, { resolve, request: frame })
      this.port.post({ type: 'request', seq, frame })
    })
  }

  onEvent (listener: (frame: string) => void): () => void {
    const l = (frame: string): void => { listener(frame) }
    this.listeners.add(l)
    return () => { this.listeners.delete(l) }
  }

  /** Asks core to stop (Messenger.stop) and waits for it, at most `timeoutMs`. */
  async stop (timeoutMs: number): Promise<void> {
    if (this.gone) return
    let timer: NodeJS.Timeout | undefined
    await new Promise<void>((resolve) => {
      this.stopped = resolve
      timer = setTimeout(resolve, timeoutMs)
      this.port.post({ type: 'stop' })
    })
    clearTimeout(timer)
  }

  /** The core process exited: fail whatever waits on it. */
  exited (code: number): void {
    this.gone = true
    this.starting?.reject(new CoreStartError({ name: 'CoreExitedError', message: `the core process exited (code ${code})` }))
    this.starting = undefined
    for (const [seq, p] of this.pending) {
      this.pending.delete(seq)
      void notRunningResponse(p.request, 'Parley\'s core process exited').then(p.resolve)
    }
    this.stopped?.()
  }

  private onMessage (m: unknown): void {
    if (!isMessage(m)) return
    switch (m.type) {
      case 'started':
        this.starting?.resolve()
        this.starting = undefined
        break
      case 'failed':
        this.starting?.reject(new CoreStartError(m.error as ErrorShape))
        this.starting = undefined
        break
      case 'response': {
        const p = typeof m.seq === 'number' ? this.pending.get(m.seq) : undefined
        if (p === undefined || typeof m.frame !== 'string') break
        this.pending.delete(m.seq as number)
        p.resolve(m.frame)
        break
      }
      case 'event':
        if (typeof m.frame === 'string') for (const l of this.listeners) l(m.frame)
        break
      case 'key':
        if (typeof m.seq === 'number' && (m.op === 'seal' || m.op === 'open') && m.bytes instanceof Uint8Array) void this.keyCall(m.seq, m.op, m.bytes)
        break
      case 'stopped':
        this.stopped?.()
        this.stopped = undefined
        break
    }
  }

  private async keyCall (seq: number, op: 'seal' | 'open', bytes: Uint8Array): Promise<void> {
    try {
      if (this.protector === undefined) throw new Error('no key protector in the main process')
      const out = op === 'seal' ? await this.protector.seal(bytes) : await this.protector.open(bytes)
      this.port.post({ type: 'key-result', seq, ok: true, bytes: out })
    } catch (err) {
      this.port.post({ type: 'key-result', seq, ok: false, error: describeError(err).message })
    }
  }
}
