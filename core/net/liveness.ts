import type { AbortOptions, ComponentLogger, Connection, Libp2pEvents, Logger, PeerId, Startable, TypedEventTarget } from '@libp2p/interface'
import { serviceCapabilities } from '@libp2p/interface'
import { ParleyError } from '../errors.js'

/** Every connection pinged about every 30 s; 20 s to answer; due pings looked for every second. */
export const DEFAULT_LIVENESS = { intervalMs: 30_000, timeoutMs: 20_000, tickMs: 1_000 }

/** One ping's outcome, for observers (tests, diagnostics). */
export interface LivenessPing {
  peer: PeerId
  connectionId: string
  /** When the ping was sent (Date.now()). */
  at: number
  /** Round trip in ms when answered. */
  rttMs?: number
  /** Why it failed (the connection was aborted with it). */
  error?: Error
}

export interface LivenessInit {
  /** Each connection is pinged about this often (±25%). */
  intervalMs?: number
  /** A ping not answered within this aborts the connection. */
  timeoutMs?: number
  /** How often due pings are looked for. */
  tickMs?: number
  /** Called when a ping ends (answered or not); stopping or a closed connection is not reported. */
  onPing?: (ping: LivenessPing) => void
}

export interface LivenessComponents {
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

/** What liveness asks of a connection's stream muxer: a PING frame the remote muxer answers (Yamux's ping). */
interface PingingMuxer {
  ping: (options?: AbortOptions) => Promise<number>
}

interface Tracked {
  conn: Connection
  muxer: PingingMuxer
  dueAt: number
  pinging: boolean
  /** The muxer read from the connection since this was last reset (see hear). */
  heard: boolean
}

/**
 * Set `t.heard` whenever `muxer` reads from its connection. Yamux's muxer handles each chunk
 * read in `onData` (called as a method by libp2p's AbstractStreamMuxer for every message of
 * the connection), so this wraps that one method on this one muxer. A muxer without it is
 * pinged on schedule as before.
 */
function hear (muxer: PingingMuxer, t: Tracked): void {
  const m = muxer as PingingMuxer & { onData?: (data: unknown) => void }
  const onData = m.onData
  if (typeof onData !== 'function') return
  m.onData = function (this: unknown, data: unknown): void {
    t.heard = true
    onData.call(this, data)
  }
}

/**
 * The stream muxer of a libp2p connection if it can ping: Yamux can (a PING frame, answered
 * by the remote muxer itself). libp2p's Connection keeps its muxer in a field its types mark
 * private; this reads it at runtime and checks for `ping`.
 */
function pingingMuxer (conn: Connection): PingingMuxer | undefined {
  const muxer = (conn as unknown as { muxer?: Partial<PingingMuxer> }).muxer
  return typeof muxer?.ping === 'function' ? muxer as PingingMuxer : undefined
}

/**
 * Finds dead connections: each open connection is pinged about every `intervalMs`, and one
 * whose ping fails or is not answered within `timeoutMs` is aborted, so the outbox and the
 * group dials see at once that the peer is gone. A connection that brought anything in since
 * the last look (data, or the peer's own ping) is not pinged that round: the peer was alive
 * then. So busy connections cost no pings, and of an idle one's two ends only the one due
 * first pings (the other hears it). A peer that hangs right after it last sent is found one
 * interval later than otherwise (within about 1.5 minutes at the defaults).
 *
 * The ping is Yamux's PING frame (12 bytes, one Noise frame each way), answered by the remote
 * muxer in its frame loop, so a peer whose process hangs does not answer, just as with a ping
 * stream. libp2p's own connection monitor opens a `/ipfs/ping/1.0.0` stream per ping instead:
 * a Yamux SYN, multistream-select, 32 bytes each way and a close, about eight frames per side,
 * each a Noise encryption and a socket write. In the 50-member group bench (about 2,900
 * connections) those streams were a third of all socket writes. A connection whose muxer
 * cannot ping (none of Parley's: TCP, WebSockets and circuits all run Yamux) is not watched.
 *
 * It also replaces the connection monitor's timing, which pings every connection of the node
 * in one timer tick. The connections of a group are opened together, so those pings came in
 * bursts: in the same bench each member process (10 nodes, about 570 connections) stalled for
 * a second or more every 20 s, and every message sent in such a stall was late. Here each
 * connection has its own phase (a random first delay, then the interval with jitter).
 *
 * @example
 * const node = await createLibp2p({ streamMuxers: [yamux({ enableKeepAlive: false })], connectionMonitor: { enabled: false }, services: { liveness: liveness() } })
 */
export class Liveness implements Startable {
  readonly [Symbol.toStringTag] = 'parley:liveness'
  readonly [serviceCapabilities] = ['@libp2p/connection-monitor']
  private readonly intervalMs: number
  private readonly timeoutMs: number
  private readonly tickMs: number
  private readonly onPing: ((ping: LivenessPing) => void) | undefined
  private readonly log: Logger
  private readonly tracked = new Map<string, Tracked>()
  private timer: ReturnType<typeof setInterval> | undefined
  private running = false
  /** Pings in flight, aborted by stop(). */
  private readonly inflight = new Set<AbortController>()

  private readonly onOpen = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    const muxer = pingingMuxer(conn)
    if (muxer === undefined) {
      this.log('connection %s to %p has no muxer that can ping; not watched', conn.id, conn.remotePeer)
      return
    }
    const t: Tracked = { conn, muxer, dueAt: Date.now() + Math.random() * this.intervalMs, pinging: false, heard: false }
    hear(muxer, t)
    this.tracked.set(conn.id, t)
  }

  private readonly onClose = (evt: CustomEvent<Connection>): void => {
    this.tracked.delete(evt.detail.id)
  }

  constructor (private readonly components: LivenessComponents, init: LivenessInit = {}) {
    this.intervalMs = init.intervalMs ?? DEFAULT_LIVENESS.intervalMs
    this.timeoutMs = init.timeoutMs ?? DEFAULT_LIVENESS.timeoutMs
    this.tickMs = init.tickMs ?? DEFAULT_LIVENESS.tickMs
    this.onPing = init.onPing
    this.log = components.logger.forComponent('parley:liveness')
  }

  start (): void {
    this.running = true
    this.components.events.addEventListener('connection:open', this.onOpen)
    this.components.events.addEventListener('connection:close', this.onClose)
    this.timer = setInterval(() => { this.tick() }, this.tickMs)
    this.timer.unref?.()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.running = false
    for (const ac of this.inflight) ac.abort()
    this.components.events.removeEventListener('connection:open', this.onOpen)
    this.components.events.removeEventListener('connection:close', this.onClose)
    this.tracked.clear()
  }

  /** Connections being watched (open ones). */
  get size (): number {
    return this.tracked.size
  }

  private tick (): void {
    const now = Date.now()
    for (const t of this.tracked.values()) {
      if (t.pinging || t.dueAt > now) continue
      if (t.conn.status !== 'open') {
        this.tracked.delete(t.conn.id)
        continue
      }
      if (t.heard) {
        // The peer sent something (data, or its own ping) since the last look: it was alive
        // this interval. No ping of ours needed, so an idle connection is pinged by one side.
        t.heard = false
        t.dueAt = now + this.nextInterval()
        continue
      }
      t.pinging = true
      void this.ping(t).finally(() => {
        t.pinging = false
        // The answer itself was a read; only what comes after it counts for the next look.
        t.heard = false
        t.dueAt = Date.now() + this.nextInterval()
      })
    }
  }

  private nextInterval (): number {
    return this.intervalMs * (0.75 + Math.random() / 2)
  }

  /** Ping one connection; abort it if the ping fails (its rtt is set if it answers). */
  private async ping ({ conn, muxer }: Tracked): Promise<void> {
    const ac = new AbortController()
    const timer = setTimeout(() => { ac.abort(new PingTimeoutError(`ping not answered within ${this.timeoutMs} ms`)) }, this.timeoutMs)
    this.inflight.add(ac)
    const at = Date.now()
    try {
      const rttMs = await muxer.ping({ signal: ac.signal })
      conn.rtt = rttMs
      this.onPing?.({ peer: conn.remotePeer, connectionId: conn.id, at, rttMs })
    } catch (err) {
      // Stopping, or the connection closed meanwhile: nothing to judge.
      if (!this.running || conn.status !== 'open') return
      const error = err instanceof Error ? err : new Error(String(err))
      this.log('ping to %p failed, aborting the connection: %s', conn.remotePeer, error.message)
      conn.abort(error)
      this.onPing?.({ peer: conn.remotePeer, connectionId: conn.id, at, error })
    } finally {
      clearTimeout(timer)
      this.inflight.delete(ac)
    }
  }
}

/** A liveness ping was not answered in time (the reason its connection was aborted). */
export class PingTimeoutError extends ParleyError {
  static override name = 'PingTimeoutError'
  override name = 'PingTimeoutError'
}

export function liveness (init: LivenessInit = {}): (components: LivenessComponents) => Liveness {
  return (components) => new Liveness(components, init)
}
