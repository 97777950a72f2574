import { mdns, type MulticastDNSComponents, type MulticastDNSInit } from '@libp2p/mdns'
import { peerDiscoverySymbol, serviceCapabilities, TypedEventEmitter, type PeerDiscovery, type PeerDiscoveryEvents, type PeerInfo, type Startable } from '@libp2p/interface'

/**
 * mDNS LAN discovery that can be switched on and off while the node runs (the `lanDiscovery`
 * privacy setting). libp2p starts and stops every service with the node; this one starts
 * @libp2p/mdns only while it is enabled, so a node that has it off neither asks the LAN who
 * is there nor answers others' questions (which would tell them our addresses), not even for
 * a moment at start. Peers it finds are passed on as libp2p peer discovery events.
 *
 * @example
 * const node = await createLibp2p({ services: { lan: lanDiscovery({ enabled: false }) } })
 * await node.start()
 * await node.services.lan.setEnabled(true) // announces and listens from now on
 */
export interface LanDiscovery extends PeerDiscovery {
  /** mDNS is running now (enabled and the node started). */
  readonly active: boolean
  setEnabled (enabled: boolean): Promise<void>
}

export interface LanDiscoveryInit extends MulticastDNSInit {
  /** Run mDNS from the start; default true. */
  enabled?: boolean
}

type Inner = PeerDiscovery & Startable

class LanDiscoveryService extends TypedEventEmitter<PeerDiscoveryEvents> implements LanDiscovery, Startable {
  readonly [peerDiscoverySymbol] = this
  readonly [Symbol.toStringTag] = 'parley:lan-discovery'
  readonly [serviceCapabilities] = ['@libp2p/peer-discovery']
  private readonly inner: Inner
  private enabled: boolean
  private started = false
  private running = false
  /** Start/stop calls run one after another. */
  private queue: Promise<void> = Promise.resolve()
  private readonly forward = (evt: CustomEvent<PeerInfo>): void => {
    if (this.running) this.safeDispatchEvent('peer', { detail: evt.detail })
  }

  constructor (components: MulticastDNSComponents, init: LanDiscoveryInit) {
    super()
    const { enabled, ...mdnsInit } = init
    this.enabled = enabled !== false
    // @libp2p/mdns's MulticastDNS is Startable (its factory is typed as PeerDiscovery only).
    this.inner = mdns(mdnsInit)(components) as Inner
    this.inner.addEventListener('peer', this.forward)
  }

  get active (): boolean {
    return this.running
  }

  async start (): Promise<void> {
    this.started = true
    await this.apply()
  }

  async stop (): Promise<void> {
    this.started = false
    await this.apply()
  }

  async setEnabled (enabled: boolean): Promise<void> {
    this.enabled = enabled
    await this.apply()
  }

  private async apply (): Promise<void> {
    const next = this.queue.then(async () => {
      const want = this.started && this.enabled
      if (want === this.running) return
      if (want) await this.inner.start()
      else await this.inner.stop()
      this.running = want
    })
    this.queue = next.catch(() => {})
    await next
  }
}

export function lanDiscovery (init: LanDiscoveryInit = {}): (components: MulticastDNSComponents) => LanDiscovery {
  return (components) => new LanDiscoveryService(components, init)
}
