import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from '@libp2p/interface'
import { forComponent } from '../logger.js'

const log = forComponent('relays')

/**
 * Keeps this node connected to its relays: dials each on start, and when a relay's
 * connection drops (the relay restarted, the network blipped) dials it again with backoff,
 * so the circuit reservation held there (when listening on /p2p-circuit) is renewed.
 *
 * @example
 * const keeper = new RelayKeeper(libp2p, ['/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...'])
 * keeper.start()
 */
export class RelayKeeper {
  private readonly addrs: Multiaddr[]
  private readonly peers = new Map<string, Multiaddr>()
  private readonly timers = new Map<Multiaddr, ReturnType<typeof setTimeout>>()
  private readonly attempts = new Map<Multiaddr, number>()
  private running = false
  private readonly onDisconnect = (evt: CustomEvent<{ toString: () => string }>): void => {
    const addr = this.peers.get(evt.detail.toString())
    if (addr !== undefined && this.running) this.schedule(addr, 1000)
  }

  constructor (private readonly node: Pick<Libp2p, 'dial' | 'addEventListener' | 'removeEventListener'>, relays: readonly string[],
    private readonly onConnected: (relay: string) => void = () => {}, private readonly maxBackoffMs = 30_000) {
    this.addrs = relays.map((r) => multiaddr(r))
  }

  start (): void {
    this.running = true
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    for (const a of this.addrs) this.dial(a)
  }

  /** Peer ids of the relays connected at least once. */
  get relayPeers (): string[] {
    return [...this.peers.keys()]
  }

  stop (): void {
    this.running = false
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
  }

  private dial (addr: Multiaddr): void {
    this.timers.delete(addr)
    if (!this.running) return
    this.node.dial(addr).then((conn) => {
      this.peers.set(conn.remotePeer.toString(), addr)
      this.attempts.set(addr, 0)
      log('connected to relay %a', addr)
      this.onConnected(conn.remotePeer.toString())
    }, (err: unknown) => {
      const n = (this.attempts.get(addr) ?? 0) + 1
      this.attempts.set(addr, n)
      log('relay %a unreachable (attempt %d): %s', addr, n, (err as Error).message)
      this.schedule(addr, Math.min(this.maxBackoffMs, 1000 * 2 ** (n - 1)))
    })
  }

  private schedule (addr: Multiaddr, delayMs: number): void {
    if (!this.running || this.timers.has(addr)) return
    const t = setTimeout(() => { this.dial(addr) }, delayMs)
    t.unref?.()
    this.timers.set(addr, t)
  }
}
