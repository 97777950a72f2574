import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p, Listener, PeerId } from '@libp2p/interface'
import { InvalidRequestError } from '../errors.js'
import { forComponent } from '../logger.js'

const log = forComponent('relays')

/** At most this many relays in a node's list (each is a connection kept open and a mailbox polled). */
export const MAX_RELAYS = 16

/** A relay address as the user gave it, checked: a multiaddr ending in /p2p/<relay peer id>. */
export interface RelayAddr {
  /** The address in its canonical text form. */
  addr: string
  peerId: string
}

/**
 * Check a relay address: it must parse as a multiaddr and name the relay with a final
 * `/p2p/<peerId>` (that is how the node knows it reached the relay and not someone else), and
 * it must not be a circuit address itself. Throws InvalidRequestError saying what is wrong.
 */
export function parseRelayAddr (value: unknown): RelayAddr {
  if (typeof value !== 'string') throw new InvalidRequestError('a relay must be a string (a multiaddr)')
  const shown = value.length > 200 ? `${value.slice(0, 200)}…` : value
  let ma: Multiaddr
  try {
    ma = multiaddr(value.trim())
  } catch {
    throw new InvalidRequestError(`not a multiaddr: "${shown}"`)
  }
  const parts = ma.getComponents()
  if (parts.some((c) => c.name === 'p2p-circuit')) throw new InvalidRequestError(`a relay address cannot be a circuit address: "${shown}"`)
  const last = parts[parts.length - 1]
  if (last?.name !== 'p2p' || last.value === undefined) throw new InvalidRequestError(`a relay address must end with /p2p/<the relay's peer id>: "${shown}"`)
  if (parts.length < 2) throw new InvalidRequestError(`a relay address needs a network address before /p2p/: "${shown}"`)
  try {
    peerIdFromString(last.value)
  } catch {
    throw new InvalidRequestError(`not a peer id in relay address: "${shown}"`)
  }
  return { addr: ma.toString(), peerId: last.value }
}

/**
 * A relay list: every entry checked with parseRelayAddr, at most MAX_RELAYS, each relay (peer
 * id) once. Throws InvalidRequestError naming the first bad entry.
 */
export function parseRelayList (value: unknown): RelayAddr[] {
  if (!Array.isArray(value)) throw new InvalidRequestError('"relays" must be an array of multiaddrs')
  if (value.length > MAX_RELAYS) throw new InvalidRequestError(`at most ${MAX_RELAYS} relays`)
  const out: RelayAddr[] = []
  for (const v of value) {
    const r = parseRelayAddr(v)
    if (out.some((o) => o.peerId === r.peerId)) throw new InvalidRequestError(`relay ${r.peerId} is listed twice`)
    out.push(r)
  }
  return out
}

type KeeperNode = Pick<Libp2p, 'dial' | 'hangUp' | 'getConnections' | 'peerStore' | 'addEventListener' | 'removeEventListener'>

export interface RelayKeeperOptions {
  /** Called each time a relay is (re)connected, with its peer id. */
  onConnected?: (relay: string) => void
  /**
   * When a relay is removed: true if something else needs our connection to that peer (it is
   * also a contact), so it is not hung up on.
   */
  inUse?: (relay: string) => boolean
  /** Hold a circuit reservation on each relay (the node listens on /p2p-circuit). */
  reserve?: boolean
  maxBackoffMs?: number
}

interface Kept {
  addr: Multiaddr
  attempts: number
  timer?: ReturnType<typeof setTimeout>
  /** Connected at least once since it was added. */
  seen: boolean
}

/**
 * Keeps this node connected to its relays: dials each on start, and when a relay's
 * connection drops (the relay restarted, the network blipped) dials it again with backoff.
 * With `reserve`, it also holds a circuit reservation on each relay (so others reach us at
 * `<relay>/p2p-circuit/p2p/<us>`), renewed after each reconnect. Relays can be added and
 * removed while it runs: a new one is dialled at once; a removed one is no longer redialled,
 * and the connection to it is closed (which drops its reservation and our circuit address
 * there) unless `inUse` says something else needs it.
 *
 * @example
 * const keeper = new RelayKeeper(libp2p, ['/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...'], { reserve: true })
 * keeper.start()
 * keeper.add('/dns4/relay.example.org/tcp/4001/p2p/12D3KooW...')
 */
export class RelayKeeper {
  /** By relay peer id. */
  private readonly kept = new Map<string, Kept>()
  /** Our circuit listener per relay peer id, made once and asked to listen again after a reconnect. */
  private readonly listeners = new Map<string, Listener>()
  /** Circuit listens run one at a time (a new listener is found by comparing the lists). */
  private reserving: Promise<void> = Promise.resolve()
  private running = false
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString()
    const k = this.kept.get(peer)
    if (k === undefined) return
    if (this.running) this.schedule(peer, k, 1000)
  }

  constructor (private readonly node: KeeperNode, relays: readonly string[], private readonly options: RelayKeeperOptions = {}) {
    for (const r of relays) {
      const { addr, peerId } = parseRelayAddr(r)
      if (!this.kept.has(peerId)) this.kept.set(peerId, { addr: multiaddr(addr), attempts: 0, seen: false })
    }
  }

  start (): void {
    this.running = true
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    for (const [peer, k] of this.kept) this.dial(peer, k)
  }

  stop (): void {
    this.running = false
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
    for (const k of this.kept.values()) {
      clearTimeout(k.timer)
      delete k.timer
    }
  }

  /** Keep one more relay (dialled at once). Its address must pass parseRelayAddr. */
  add (relay: string): void {
    const { addr, peerId } = parseRelayAddr(relay)
    const existing = this.kept.get(peerId)
    if (existing !== undefined && existing.addr.toString() === addr) return
    if (existing !== undefined) clearTimeout(existing.timer)
    const k: Kept = { addr: multiaddr(addr), attempts: 0, seen: false }
    this.kept.set(peerId, k)
    if (this.running) this.dial(peerId, k)
  }

  /** Stop keeping a relay and hang up on it unless `inUse` says otherwise. */
  async remove (relay: string): Promise<void> {
    const { peerId } = parseRelayAddr(relay)
    const k = this.kept.get(peerId)
    if (k === undefined) return
    clearTimeout(k.timer)
    this.kept.delete(peerId)
    log('no longer keeping relay %a', k.addr)
    if (this.options.inUse?.(peerId) === true) return
    const id = peerIdFromString(peerId)
    await this.node.hangUp(id)
    // libp2p's relay search (listening on bare /p2p-circuit) redials relays it finds in the
    // peer store; forget this one so it is not used again behind the user's back.
    await this.node.peerStore.delete(id).catch(() => {})
  }

  /** Peer ids of the kept relays that connected at least once since they were added. */
  get relayPeers (): string[] {
    return [...this.kept].filter(([, k]) => k.seen).map(([p]) => p)
  }

  /** Addresses of the kept relays we have a connection to now. */
  connected (): string[] {
    return [...this.kept].filter(([p]) => this.node.getConnections(peerIdFromString(p)).length > 0).map(([, k]) => k.addr.toString())
  }

  private dial (peer: string, k: Kept): void {
    delete k.timer
    if (!this.running || this.kept.get(peer) !== k) return
    this.node.dial(k.addr).then((conn) => {
      if (this.kept.get(peer) !== k) return // removed (or replaced) while dialling
      k.seen = true
      k.attempts = 0
      log('connected to relay %a', k.addr)
      if (this.options.reserve === true) this.reserve(peer, k)
      this.options.onConnected?.(conn.remotePeer.toString())
    }, (err: unknown) => {
      k.attempts++
      log('relay %a unreachable (attempt %d): %s', k.addr, k.attempts, (err as Error).message)
      this.schedule(peer, k, Math.min(this.options.maxBackoffMs ?? 30_000, 1000 * 2 ** (k.attempts - 1)))
    })
  }

  private schedule (peer: string, k: Kept, delayMs: number): void {
    if (!this.running || k.timer !== undefined || this.kept.get(peer) !== k) return
    const t = setTimeout(() => { this.dial(peer, k) }, delayMs)
    t.unref?.()
    k.timer = t
  }

  /** Reserve a slot on this relay: listen on `<relay>/p2p-circuit` (one listener per relay). */
  private reserve (peer: string, k: Kept): void {
    const tm = transportManagerOf(this.node)
    if (tm === undefined) return
    const circuit = k.addr.encapsulate('/p2p-circuit')
    this.reserving = this.reserving.then(async () => {
      if (!this.running || this.kept.get(peer) !== k) return
      const mine = this.listeners.get(peer)
      if (mine !== undefined) {
        await mine.listen(circuit)
        return
      }
      const before = new Set(tm.getListeners())
      try {
        await tm.listen([circuit])
      } finally {
        const made = tm.getListeners().find((l) => !before.has(l))
        if (made !== undefined) this.listeners.set(peer, made)
      }
    }).catch((err: unknown) => { log('no reservation on relay %a: %s', k.addr, (err as Error).message) })
  }
}

interface CircuitTransportManager {
  listen (addrs: Multiaddr[]): Promise<void>
  getListeners (): Listener[]
}

/**
 * libp2p has no public way to start listening after start; its node object carries the
 * transport manager among its components (libp2p's own Libp2pNode class). Checked at runtime,
 * so a libp2p that moves it makes reservations fail with a log line instead of a crash.
 */
function transportManagerOf (node: object): CircuitTransportManager | undefined {
  const tm = (node as { components?: { transportManager?: Partial<CircuitTransportManager> } }).components?.transportManager
  if (typeof tm?.listen !== 'function' || typeof tm.getListeners !== 'function') {
    log.error('libp2p node has no components.transportManager: cannot reserve on relays added later')
    return undefined
  }
  return tm as CircuitTransportManager
}
