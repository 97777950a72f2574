import { createHash } from 'node:crypto'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, identifyPush, type Identify, type IdentifyPush } from '@libp2p/identify'
import { ping, type Ping } from '@libp2p/ping'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { autoNAT } from '@libp2p/autonat'
import { dcutr } from '@libp2p/dcutr'
import { gossipsub, StrictNoSign, type GossipSub, type GossipSubComponents, type GossipsubOpts } from '@libp2p/gossipsub'
import { createTopicScoreParams, validateTopicScoreParams, type TopicScoreParams } from '@libp2p/gossipsub/score'
import type { ConnectionGater, PrivateKey } from '@libp2p/interface'
import { lanDiscovery, type LanDiscovery } from './lan-discovery.js'
import { liveness, type Liveness } from './liveness.js'
import { quietFrameLengths, singleWriteFrames } from './noise-frames.js'
import { lazyYamuxWindowUpdates } from './yamux-window.js'

export interface NodeOptions {
  privateKey: PrivateKey
  /** Multiaddrs to listen on; `/ip4/0.0.0.0/tcp/0` style. */
  listen: string[]
  /**
   * Find peers on the LAN with mDNS. `false`: no mDNS at all (`--no-mdns`); otherwise the
   * node has the `lan` service (see LanDiscovery), running from the start unless
   * `mdnsPaused` (the `lanDiscovery` setting is off), switchable while the node runs.
   */
  mdns: boolean
  mdnsPaused?: boolean
  /**
   * Inbound connections per second accepted from one host. libp2p's default (5/s) resets
   * back-to-back loopback dials in tests and simulations, so those raise it.
   */
  inboundConnectionThreshold?: number
  /** Refuse some peers (tests and simulations: partitions). */
  connectionGater?: ConnectionGater
  /**
   * Run gossipsub (`node.services.pubsub`, group fan-out). On unless `false`; relays have their
   * own node (relay/relay-node.ts) and never carry group gossip.
   */
  pubsub?: boolean
}

/**
 * The gossipsub service as Parley uses it. `@libp2p/gossipsub` types its factory with the
 * `GossipSub` interface, but the instance is its `GossipSub` class, which also has these
 * members; `createNode` checks they are there, so a library update that drops one fails at
 * start-up instead of deep inside group code.
 */
export interface ParleyPubSub extends GossipSub {
  isStarted (): boolean
  /** The peer's current score (cached for up to one heartbeat). */
  getScore (peerId: string): number
  getMeshPeers (topic: string): string[]
  /** Score parameters per topic; group topics are added as they are joined (`scoreTopic`). */
  readonly score: { readonly params: { readonly topics: Record<string, TopicScoreParams> } }
}

export interface ParleyServices extends Record<string, unknown> {
  identify: Identify
  identifyPush: IdentifyPush
  ping: Ping
  /** Pings each connection on its own phase and aborts dead ones (replaces libp2p's connection monitor). */
  liveness: Liveness
  /** Gossipsub; absent only when `createNode` was given `pubsub: false`. */
  pubsub?: ParleyPubSub
  /** mDNS LAN discovery, switchable at runtime; absent when `createNode` was given `mdns: false`. */
  lan?: LanDiscovery
}

export type ParleyLibp2p = Libp2p<ParleyServices>

/**
 * TCP and WebSocket on every interface, and `/p2p-circuit`: a slot on each of the node's
 * relays, so a node behind NAT is reachable through them and senders know where to leave its
 * mail (relays added later in Settings included). With no relay it does nothing.
 */
export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/0', '/ip4/0.0.0.0/tcp/0/ws', '/p2p-circuit']

/**
 * Peer-score thresholds. With `GROUP_TOPIC_SCORE` below (P4 weight -10, positive score capped
 * at +10) a peer is below `gossipThreshold` after 2 rejected messages (no IHAVE/IWANT with it),
 * below `publishThreshold` after 3 (we stop flood-publishing to it) and graylisted (every RPC
 * from it dropped unread) after 3-4 in quick succession. The counter decays by 1% a second,
 * so one stray rejection (a member whose state briefly differs from ours) is forgotten within
 * minutes, while a peer that keeps sending invalid gossip stays graylisted.
 */
export const GOSSIP_SCORE_THRESHOLDS = {
  gossipThreshold: -10,
  publishThreshold: -50,
  graylistThreshold: -80,
  // Peer exchange is off (doPX false), so no peer is trusted for PX.
  acceptPXThreshold: 100,
  opportunisticGraftThreshold: 5
} as const

/**
 * Score parameters for every group topic (`/parley/group/3/<id>`), registered when the topic
 * is joined (gossipsub only knows topic parameters by exact name).
 * - P1 time in mesh and P2 first deliveries: small positive credit, capped (topicScoreCap 10),
 *   so a peer cannot bank enough good behaviour to hide many invalid messages.
 * - P3/P3b mesh delivery rate: off. Chat traffic is sparse and bursty; a rate threshold would
 *   punish honest members of a quiet group.
 * - P4 invalid messages: weight -10, squared counter, decay 0.99 per second (half-life ~70 s).
 *   Our topic validator's 'reject' (and gossipsub's own signature-policy checks) feed it.
 */
export const GROUP_TOPIC_SCORE: Readonly<TopicScoreParams> = Object.freeze(createTopicScoreParams({
  topicWeight: 1,
  timeInMeshWeight: 0.01,
  timeInMeshQuantum: 1000,
  timeInMeshCap: 300,
  firstMessageDeliveriesWeight: 0.5,
  firstMessageDeliveriesDecay: 0.9,
  firstMessageDeliveriesCap: 10,
  meshMessageDeliveriesWeight: 0,
  meshFailurePenaltyWeight: 0,
  invalidMessageDeliveriesWeight: -10,
  invalidMessageDeliveriesDecay: 0.99
}))
validateTopicScoreParams(GROUP_TOPIC_SCORE)

/** Score a topic with `GROUP_TOPIC_SCORE` from now on (idempotent). */
export function scoreTopic (pubsub: ParleyPubSub, topic: string): void {
  pubsub.score.params.topics[topic] ??= GROUP_TOPIC_SCORE
}

/**
 * Mesh and gossip degrees for group topics. The author flood-publishes to every member it is
 * connected to (and GroupManager keeps members directly connected), so in the common case
 * every copy a member forwards along the mesh, and every IHAVE it gossips, is a duplicate
 * that costs an RPC (encode, Noise, Yamux, a socket write, and the same again to read it) on
 * both sides. Gossipsub's defaults (D 6, Dlo 4, Dhi 12, Dlazy 6, gossipFactor 0.25) made that
 * about 370 RPCs per message in a group of 50 on loopback, more than the deliveries themselves
 * cost. A mesh of 3 (2-5) still reaches members the author has no connection to (within a
 * hop or two of it), and lost messages are repaired by group-sync; IHAVE gossip goes to 2 peers
 * per heartbeat instead of a quarter of all non-mesh subscribers. When the author reaches every
 * member itself, receivers do not forward at all (GroupManager's direct gossip body).
 */
export const GOSSIP_MESH = Object.freeze({
  D: 3,
  Dlo: 2,
  Dhi: 5,
  Dscore: 2,
  Dout: 1,
  Dlazy: 2,
  gossipFactor: 0
})

/** Messages this large or larger get IDONTWANT notices (see GOSSIP_OPTIONS). */
export const IDONTWANT_MIN_BYTES = 16 * 1024

/**
 * Gossipsub as a messenger runs it (group fan-out, docs/architecture.md).
 * - StrictNoSign: messages carry no libp2p signature, author or seqno, and their id is the
 *   SHA-256 of their data. Group payloads name their author themselves and are proven by
 *   their sender-key signature (core/groups/gossip.ts); the
 *   libp2p signature on top cost an Ed25519 verify and a key import per copy received. Signed
 *   messages are rejected (and penalised) by gossipsub before any validator runs.
 * - emitSelf false: our own publishes are applied locally by the caller, never echoed back.
 * - allowPublishToZeroTopicPeers: a lone online member can still write; offline members get
 *   records through their mailboxes and group-sync.
 * - floodPublish: the author sends to every subscribed peer above publishThreshold, not just
 *   its mesh; groups are small (<= 256) so this is the lowest-latency path and needs no warm
 *   mesh. Forwarding by others follows the mesh, kept small (GOSSIP_MESH).
 * - fallbackToFloodsub false: every Parley node speaks gossipsub; floodsub would be an
 *   unscored side door.
 * - runOnLimitedConnection false: relayed circuits are data- and time-limited (relay limits,
 *   relay/relay-node.ts); gossip, with its heartbeats and control traffic, would eat that
 *   budget. Members only reachable through a relay get records via the 1:1 outbox/mailbox or
 *   once DCUtR upgrades the connection.
 * - Scoring: IP colocation (P6) off. It fights Sybils that share an IP, but group traffic is
 *   gated by membership and sender keys, and honest members legitimately share an address
 *   (one household behind NAT, a LAN, and every node in loopback tests: 50 nodes on 127.0.0.1
 *   would all be graylisted with the default weight). Behaviour penalties (P7) keep defaults.
 * - IDONTWANT only for messages of 16 KiB or more (gossipsub's default: 512 B). On receiving a
 *   message a node tells its mesh peers it has it, so they skip forwarding it. For a chat
 *   record of a few hundred bytes that notice costs what the duplicate it may save costs (an
 *   RPC: encode, Noise, a socket write, and a read on the other side), and it goes to every
 *   mesh peer, in time or not: in the 50-member bench a message caused about 130 IDONTWANTs
 *   and still about 126 forwards. Without them, about 156 forwards and nothing else; socket
 *   writes fell from about 1,010 to 785 per second, CPU per delivery from 5.9 to 5.4-5.5 ms
 *   and the all-members p50 from 79 to 59-64 ms (fanout.js, one run against two). For large
 *   payloads the duplicate's bytes matter more than the notice, so those still get one.
 * - Inbound RPC frames keep gossipsub's 4 MiB length-prefix limit (an IWANT answer may carry
 *   several ~100 KiB records); each message's size is checked by the topic validator.
 */
export const GOSSIP_OPTIONS: Readonly<Partial<GossipsubOpts>> = Object.freeze({
  globalSignaturePolicy: StrictNoSign,
  msgIdFn: contentMsgId,
  emitSelf: false,
  idontwantMinDataSize: IDONTWANT_MIN_BYTES,
  allowPublishToZeroTopicPeers: true,
  floodPublish: true,
  ...GOSSIP_MESH,
  fallbackToFloodsub: false,
  doPX: false,
  runOnLimitedConnection: false,
  scoreParams: {
    topics: {},
    topicScoreCap: 10,
    appSpecificWeight: 0,
    IPColocationFactorWeight: 0
  },
  scoreThresholds: GOSSIP_SCORE_THRESHOLDS
})

/** A gossipsub message's id: the SHA-256 of its data (StrictNoSign messages have nothing else). */
function contentMsgId (msg: { data: Uint8Array }): Uint8Array {
  return createHash('sha256').update(msg.data).digest()
}

function isParleyPubSub (service: GossipSub): service is ParleyPubSub {
  const s = service as Partial<ParleyPubSub>
  return typeof s.isStarted === 'function' && typeof s.getScore === 'function' &&
    typeof s.getMeshPeers === 'function' && typeof s.score?.params?.topics === 'object'
}

function parleyPubSub (): (components: GossipSubComponents) => ParleyPubSub {
  const factory = gossipsub(GOSSIP_OPTIONS)
  return (components) => {
    const service = factory(components)
    if (!isParleyPubSub(service)) throw new Error('@libp2p/gossipsub lacks getScore/getMeshPeers/score.params')
    return service
  }
}

/**
 * The one place a Parley libp2p node is configured: TCP, WebSockets and circuit relay,
 * Noise (one socket write per frame: singleWriteFrames; no exception per read: quietFrameLengths), Yamux (window updates at half a
 * window: lazyYamuxWindowUpdates), identify, ping,
 * autonat and DCUtR, gossipsub (`GOSSIP_OPTIONS`) unless `pubsub: false`, and mDNS discovery
 * when asked.
 *
 * Dead connections are found by `liveness` (core/net/liveness.ts), not libp2p's connection
 * monitor. The monitor's defaults (every 10 s, timeout from 5 s) aborted healthy connections
 * whenever an event loop was busy for a few seconds (a 50-member group lost most of its
 * member connections that way: 1,017 aborts in one run), and it pings all of a node's
 * connections in one burst, each ping a new stream. Liveness sends a Yamux PING frame on each
 * connection on its own phase about every 30 s and gives a busy peer 20 s to answer: a dead
 * connection is found within about a minute (a reset or failed write ends it sooner).
 *
 * The node is returned stopped so callers can attach listeners first.
 *
 * @example
 * const node = await createNode({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
 * await node.start()
 * console.log(node.getMultiaddrs())
 */
export async function createNode (options: NodeOptions): Promise<ParleyLibp2p> {
  lazyYamuxWindowUpdates()
  return await createLibp2p<ParleyServices>({
    start: false,
    privateKey: options.privateKey,
    addresses: { listen: options.listen },
    // The circuit transport dials /p2p-circuit addresses and, when `listen` holds
    // '/p2p-circuit', reserves a slot on connected relays so others can reach us through them.
    transports: [tcp(), webSockets(), circuitRelayTransport()],
    connectionEncrypters: [quietFrameLengths(singleWriteFrames(noise()))],
    // Yamux's own keep-alive pings every connection 30 s after it opened and every 30 s after
    // that: a group's connections open together, so those frames came in bursts too. Liveness
    // already puts a ping on every connection about every 30 s.
    streamMuxers: [yamux({ enableKeepAlive: false })],
    connectionManager: {
      inboundConnectionThreshold: options.inboundConnectionThreshold ?? 5
    },
    connectionMonitor: { enabled: false },
    ...(options.connectionGater !== undefined ? { connectionGater: options.connectionGater } : {}),
    services: {
      identify: identify(),
      // Tells connected peers (relays' directories) when our addresses change, e.g. once a
      // relay reservation gives us a circuit address.
      identifyPush: identifyPush(),
      ping: ping(),
      liveness: liveness(),
      // autonat: peers tell us whether our addresses are dialable from outside; dcutr: a
      // relayed connection to a peer is upgraded to a direct one (hole punch) where possible.
      autoNAT: autoNAT(),
      dcutr: dcutr(),
      ...(options.pubsub === false ? {} : { pubsub: parleyPubSub() }),
      ...(options.mdns ? { lan: lanDiscovery({ enabled: options.mdnsPaused !== true }) } : {})
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
