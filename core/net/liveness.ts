import { randomBytes } from 'node:crypto'
import { serviceCapabilities, type AbortOptions, type ComponentLogger, type Connection, type Libp2pEvents, type Logger, type Startable, type Stream, type TypedEventTarget } from '@libp2p/interface'
import { PING_PROTOCOL } from '@libp2p/ping'
import { byteStream } from '@libp2p/utils'
import { ParleyError } from '../errors.js'

const PING_BYTES = 32

/** Every connection pinged about every 30 s; 20 s to answer; due pings looked for every second. */
export const DEFAULT_LIVENESS = { intervalMs: 30_000, timeoutMs: 20_000, tickMs: 1_000 }

export interface LivenessInit {
  /** Each connection is pinged about this often (±25%). */
  intervalMs?: number
  /** A ping not answered within this aborts the connection. */
  timeoutMs?: number
  /** How often due pings are looked for. */
  tickMs?: number
}

export interface LivenessComponents {
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

interface Tracked {
  conn: Connection
  dueAt: number
  pinging: boolean
}

/**
 * Finds dead connections: each open connection is pinged (@libp2p/ping's PING_PROTOCOL,
 * `/ipfs/ping/1.0.0`, answered by `ping()` in core/net/node.ts, on a new stream,
 * as libp2p's own connection monitor does) about every `intervalMs`, and one whose ping fails
 * or is not answered within `timeoutMs` is aborted, so the outbox and the group dials see at
 * once that the peer is gone. A ping the peer does not support still proves it alive.
 *
 * It replaces libp2p's connection monitor, which pings every connection of the node in one
 * timer tick. The connections of a group are opened together, so those pings came in bursts:
 * in the 50-member bench each member process (10 nodes, about 570 connections) opened 570
 * streams at once, both ends, and its event loop stalled for a second or more every 20 s;
 * every message sent in such a stall was late. Here each connection has its own phase (a
 * random first delay, then the interval with jitter), so the same pings are spread evenly.
 *
 * @example
 * const node = await createLibp2p({ connectionMonitor: { enabled: false }, services: { ping: ping(), liveness: liveness() } })
 */
export class Liveness implements Startable {
  readonly [Symbol.toStringTag] = 'parley:liveness'
  readonly [serviceCapabilities] = ['@libp2p/connection-monitor']
  private readonly intervalMs: number
  private readonly timeoutMs: number
  private readonly tickMs: number
  private readonly log: Logger
  private readonly tracked = new Map<string, Tracked>()
  private timer: ReturnType<typeof setInterval> | undefined
  private running = false
  /** Pings in flight, aborted by stop(). */
  private readonly inflight = new Set<AbortController>()

  private readonly onOpen = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    this.tracked.set(conn.id, { conn, dueAt: Date.now() + Math.random() * this.intervalMs, pinging: false })
  }

  private readonly onClose = (evt: CustomEvent<Connection>): void => {
    this.tracked.delete(evt.detail.id)
  }

  constructor (private readonly components: LivenessComponents, init: LivenessInit = {}) {
    this.intervalMs = init.intervalMs ?? DEFAULT_LIVENESS.intervalMs
    this.timeoutMs = init.timeoutMs ?? DEFAULT_LIVENESS.timeoutMs
    this.tickMs = init.tickMs ?? DEFAULT_LIVENESS.tickMs
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
      t.pinging = true
      void this.ping(t.conn).finally(() => {
        t.pinging = false
        t.dueAt = Date.now() + this.intervalMs * (0.75 + Math.random() / 2)
      })
    }
  }

  /** Ping one connection; abort it if the ping fails (its rtt is set if it answers). */
  private async ping (conn: Connection): Promise<void> {
    const ac = new AbortController()
    const timer = setTimeout(() => { ac.abort(new PingTimeoutError(`ping not answered within ${this.timeoutMs} ms`)) }, this.timeoutMs)
    this.inflight.add(ac)
    const options: AbortOptions = { signal: ac.signal }
    let stream: Stream | undefined
    try {
      stream = await conn.newStream(PING_PROTOCOL, { ...options, runOnLimitedConnection: true })
      const bytes = byteStream(stream)
      const sent = randomBytes(PING_BYTES)
      const start = Date.now()
      const [, echoed] = await Promise.all([bytes.write(sent, options), bytes.read({ ...options, bytes: PING_BYTES })])
      if (!Buffer.from(echoed.subarray()).equals(sent)) throw new Error('ping answer does not match')
      conn.rtt = Date.now() - start
      await stream.close(options)
    } catch (err) {
      stream?.abort(err as Error)
      // Stopping, or the connection closed meanwhile: nothing to judge.
      if (!this.running || conn.status !== 'open') return
      // It ran multistream-select with us, so it is alive.
      if ((err as Error).name === 'UnsupportedProtocolError') return
      this.log('ping to %p failed, aborting the connection: %s', conn.remotePeer, (err as Error).message)
      conn.abort(err as Error)
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
