import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, identifyPush, type Identify, type IdentifyPush } from '@libp2p/identify'
import { ping, type Ping } from '@libp2p/ping'
import { circuitRelayServer, type CircuitRelayService } from '@libp2p/circuit-relay-v2'
import { autoNAT } from '@libp2p/autonat'
import type { PrivateKey } from '@libp2p/interface'
import { liveness, type Liveness } from '../core/net/liveness.js'
import { quietFrameLengths, singleWriteFrames } from '../core/net/noise-frames.js'
import type { ProtocolHost } from '../core/protocols/prekeys/server.js'
import { DEFAULT_PREKEY_LIMITS, PrekeyService, type PrekeyLimits } from './prekeys/service.js'
import type { PrekeyStore } from './prekeys/store.js'

/** Limits an operator can set; every one has a default sized for chat (docs/relay.md). */
export interface RelayLimits {
  /** Peers holding a reservation at once. */
  maxReservations: number
  /** Bytes one relayed connection may carry (each direction counted) before it is reset. */
  circuitDataLimit: number
  /** Milliseconds one relayed connection may stay open. */
  circuitDurationLimit: number
  /** Connections in total. */
  maxConnections: number
  /** New inbound connections per second from one host. */
  inboundConnectionThreshold: number
  /**
   * Inbound connections still in their handshake at once; more are refused until some
   * finish. libp2p's default (10) is for a node, not for a relay whose clients all come
   * back together after it restarts.
   */
  maxIncomingPendingConnections: number
}

export const DEFAULT_RELAY_LIMITS: RelayLimits = {
  maxReservations: 1024,
  // libp2p's defaults (128 KiB, 2 min) stall a chat after ~250 short messages; chat over a
  // circuit is small but long-lived. Bulk data never goes over circuits (docs/architecture.md).
  circuitDataLimit: 4 * 1024 * 1024,
  circuitDurationLimit: 30 * 60 * 1000,
  maxConnections: 4096,
  inboundConnectionThreshold: 20,
  maxIncomingPendingConnections: 128
}

export interface RelayServices extends Record<string, unknown> {
  identify: Identify
  identifyPush: IdentifyPush
  ping: Ping
  /** Pings each client connection on its own phase and aborts dead ones (core/net/liveness.ts). */
  liveness: Liveness
  relay: CircuitRelayService
  /** The prekey directory, when createRelayNode was given a store. */
  prekeys?: PrekeyService
}

export type RelayLibp2p = Libp2p<RelayServices>

export interface RelayNodeOptions {
  privateKey: PrivateKey
  listen: string[]
  limits: RelayLimits
  /**
   * Run the prekey directory (`/parley/prekeys/1.0.0`) on this open store; it starts and
   * stops with the node (`node.services.prekeys`). The caller opens and closes the store.
   */
  prekeys?: { store: PrekeyStore, limits?: PrekeyLimits, now?: () => number }
}

/**
 * The relay's libp2p node: TCP and WebSockets, Noise, Yamux, identify, ping, a
 * circuit-relay-v2 server with explicit limits and, given a store, the prekey directory.
 * Returned stopped.
 *
 * @example
 * const relay = await createRelayNode({ privateKey, listen: ['/ip4/0.0.0.0/tcp/4001'], limits: DEFAULT_RELAY_LIMITS, prekeys: { store } })
 * await relay.start()
 */
export async function createRelayNode (options: RelayNodeOptions): Promise<RelayLibp2p> {
  const { limits, prekeys } = options
  return await createLibp2p<RelayServices>({
    start: false,
    privateKey: options.privateKey,
    addresses: { listen: options.listen },
    transports: [tcp(), webSockets()],
    connectionEncrypters: [quietFrameLengths(singleWriteFrames(noise()))],
    // Liveness pings each connection; Yamux's keep-alive would ping them all again (see core/net/node.ts).
    streamMuxers: [yamux({ enableKeepAlive: false })],
    connectionManager: {
      maxConnections: limits.maxConnections,
      inboundConnectionThreshold: limits.inboundConnectionThreshold,
      maxIncomingPendingConnections: limits.maxIncomingPendingConnections
    },
    // libp2p's monitor pings every connection in one burst (a thousand clients: a thousand
    // streams at once, every 10 s); liveness spreads them out, as Yamux PING frames.
    connectionMonitor: { enabled: false },
    services: {
      identify: identify(),
      // Tells connected peers (relays' directories) when our addresses change, e.g. once a
      // relay reservation gives us a circuit address.
      identifyPush: identifyPush(),
      ping: ping(),
      liveness: liveness(),
      // Answers nodes' autonat dial-back requests, so they learn whether they are reachable.
      autoNAT: autoNAT(),
      relay: circuitRelayServer({
        reservations: {
          maxReservations: limits.maxReservations,
          applyDefaultLimit: true,
          defaultDataLimit: BigInt(limits.circuitDataLimit),
          defaultDurationLimit: limits.circuitDurationLimit
        }
      }),
      ...(prekeys === undefined
        ? {}
        : { prekeys: (components: { registrar: ProtocolHost }) => new PrekeyService(components.registrar, prekeys.store, prekeys.limits ?? DEFAULT_PREKEY_LIMITS, prekeys.now) })
    }
  })
}
