import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, identifyPush, type Identify, type IdentifyPush } from '@libp2p/identify'
import { ping, type Ping } from '@libp2p/ping'
import { mdns } from '@libp2p/mdns'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { autoNAT } from '@libp2p/autonat'
import { dcutr } from '@libp2p/dcutr'
import type { PrivateKey } from '@libp2p/interface'

export interface NodeOptions {
  privateKey: PrivateKey
  /** Multiaddrs to listen on; `/ip4/0.0.0.0/tcp/0` style. */
  listen: string[]
  /** Find peers on the LAN with mDNS (on by default in the CLI, `--no-mdns` turns it off). */
  mdns: boolean
  /**
   * Inbound connections per second accepted from one host. libp2p's default (5/s) resets
   * back-to-back loopback dials in tests and simulations, so those raise it.
   */
  inboundConnectionThreshold?: number
}

export interface ParleyServices extends Record<string, unknown> {
  identify: Identify
  identifyPush: IdentifyPush
  ping: Ping
}

export type ParleyLibp2p = Libp2p<ParleyServices>

export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/0', '/ip4/0.0.0.0/tcp/0/ws']

/**
 * The one place a Parley libp2p node is configured: TCP, WebSockets and circuit relay,
 * Noise, Yamux, identify, ping, autonat and DCUtR, and mDNS discovery when asked.
 *
 * The node is returned stopped so callers can attach listeners first.
 *
 * @example
 * const node = await createNode({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
 * await node.start()
 * console.log(node.getMultiaddrs())
 */
export async function createNode (options: NodeOptions): Promise<ParleyLibp2p> {
  return await createLibp2p<ParleyServices>({
    start: false,
    privateKey: options.privateKey,
    addresses: { listen: options.listen },
    // The circuit transport dials /p2p-circuit addresses and, when `listen` holds
    // '/p2p-circuit', reserves a slot on connected relays so others can reach us through them.
    transports: [tcp(), webSockets(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: options.mdns ? [mdns()] : [],
    connectionManager: {
      inboundConnectionThreshold: options.inboundConnectionThreshold ?? 5
    },
    services: {
      identify: identify(),
      // Tells connected peers (relays' directories) when our addresses change, e.g. once a
      // relay reservation gives us a circuit address.
      identifyPush: identifyPush(),
      ping: ping(),
      // autonat: peers tell us whether our addresses are dialable from outside; dcutr: a
      // relayed connection to a peer is upgraded to a direct one (hole punch) where possible.
      autoNAT: autoNAT(),
      dcutr: dcutr()
    }
  })
}

/** The TCP ports a node is listening on, plain and WebSocket (first of each). */
export interface ListenPorts { tcp?: number, ws?: number }

export function listenPorts (addrs: readonly string[]): ListenPorts {
  const out: ListenPorts = {}
  for (const a of addrs) {
    const m = /\/tcp\/(\d+)(\/ws)?(\/|$)/.exec(a)
    if (m === null || a.includes('/p2p-circuit')) continue
    const port = Number(m[1])
    if (m[2] !== undefined) out.ws ??= port
    else out.tcp ??= port
  }
  return out
}

/**
 * Listen on the ports of the last run where the configuration says "any port" (tcp/0), so
 * contacts holding our old address can still reach us after a restart.
 */
export function reusePorts (listen: readonly string[], last: ListenPorts): string[] {
  return listen.map((a) => {
    if (a.endsWith('/tcp/0/ws') && last.ws !== undefined) return a.replace(/\/tcp\/0\/ws$/, `/tcp/${last.ws}/ws`)
    if (a.endsWith('/tcp/0') && last.tcp !== undefined) return a.replace(/\/tcp\/0$/, `/tcp/${last.tcp}`)
    return a
  })
}
