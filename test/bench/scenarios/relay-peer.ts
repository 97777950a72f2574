/**
 * The per-process side of the relay scenarios (relay.ts). One peer process may play:
 *   - the relay: relay/relay-node.ts with generous limits, plus a MailboxStore and a
 *     PrekeyStore (in its own temp dir, as relay/cli.ts lays them out), the prekey directory
 *     (createRelayNode's `prekeys`) and a MailboxService whose rate and quota limits are
 *     raised out of the way;
 *   - a mailbox client: a core/net/node.ts node connected to the relay, fetching and
 *     acknowledging with MailboxClient until its mailbox is empty, as a given node's identity
 *     (a stopped Messenger's); depositAll is shared with the sealed-frame deposits (dm-peer.ts);
 *   - a swarm: many minimal libp2p nodes (TCP + Noise + Yamux + identify), each connected to
 *     the relay, so the relay process's memory per connection can be measured;
 *   - a flood: until told to stop, sockets that connect to the relay and never handshake
 *     (replaced as the relay closes them) and fresh libp2p identities dialling it one after
 *     another; each one let in opens more mailbox streams than a connection may have and
 *     holds them (and its connection) until the flood stops.
 * Every timestamp is on the shared clock (sharedNow).
 */
import { mkdir } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import type { Libp2p, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { loadOrCreateIdentity } from '../../../core/identity/identity.js'
import type { PeerIdString } from '../../../core/ids.js'
import { createNode, type ParleyLibp2p } from '../../../core/net/node.js'
import { MailboxClient, type Deposit } from '../../../core/protocols/mailbox/client.js'
import { MAILBOX_PROTOCOL } from '../../../core/protocols/mailbox/constants.js'
import { DirectoryService } from '../../../relay/directory/service.js'
import { DEFAULT_MAILBOX_LIMITS, MailboxService } from '../../../relay/mailbox/service.js'
import { MailboxStore } from '../../../relay/mailbox/store.js'
import { DEFAULT_PREKEY_LIMITS } from '../../../relay/prekeys/service.js'
import { PrekeyStore } from '../../../relay/prekeys/store.js'
import { createRelayNode, DEFAULT_RELAY_LIMITS, type RelayLibp2p } from '../../../relay/relay-node.js'
import { sharedNow } from '../util.js'

export interface RelayStarted {
  peerId: string
  /** TCP addresses, each ending in /p2p/<relay id>. */
  addrs: string[]
}

export interface MailboxClientStarted {
  peerId: string
}

export interface MailboxClientParams {
  relayAddr: string
  /** Use the identity.key in this data directory (e.g. a stopped Messenger's); a fresh key otherwise. */
  identityDir?: string
}

export interface DepositRun {
  startedAt: number
  doneAt: number
  accepted: number
  refused: number
  requests: number
  /** Refusal names seen, with counts. */
  refusals: Record<string, number>
}

export interface DrainParams {
  relayId: string
  limit: number
  timeoutMs: number
}

export interface DrainRun {
  startedAt: number
  doneAt: number
  fetched: number
  acked: number
  fetches: number
  complete: boolean
}

export interface SwarmParams {
  relayAddr: string
  nodes: number
  /** Dials in flight at once (the relay accepts only a few pending inbound connections). */
  parallel: number
  timeoutMs: number
}

export interface SwarmRun {
  connected: number
  failed: number
  elapsedMs: number
  firstError?: string
}

export interface FloodParams {
  relayAddr: string
  /** libp2p dials in flight at once, each from a new identity. */
  dialers: number
  /** Silent sockets kept open at once. */
  silentSockets: number
  /** Mailbox streams each admitted connection opens (the relay allows 8 per connection). */
  streamsPerConnection: number
  /** Admitted connections held open at once (the oldest is closed beyond this). */
  hold: number
}

export interface FloodRun {
  elapsedMs: number
  dials: number
  /** Dials that ended with a connection to the relay. */
  admitted: number
  refused: number
  streamsOpened: number
  /** Streams the relay refused or reset (tried on admitted connections), as the flood stopped. */
  streamsRefused: number
  /** Admitted connections still open as the flood stopped (of the newest `hold`). */
  held: number
  socketsOpened: number
  /** Silent sockets the relay closed (the others were still waiting in the handshake). */
  socketsClosedByRelay: number
}

/** Streams of a flood connection that are no longer open (the relay reset them, or the connection ended). */
function unopened (streams: Stream[]): number {
  return streams.filter((st) => st.status !== 'open').length
}

/** Generous limits: nothing in the benchmark should hit them. */
const BENCH_RELAY_LIMITS = {
  ...DEFAULT_RELAY_LIMITS,
  maxReservations: 100_000,
  circuitDataLimit: 1024 * 1024 * 1024,
  circuitDurationLimit: 60 * 60 * 1000,
  maxConnections: 100_000,
  inboundConnectionThreshold: 100_000,
  maxIncomingPendingConnections: 100_000
}

const BENCH_MAILBOX_LIMITS = {
  ...DEFAULT_MAILBOX_LIMITS,
  depositsPerSecond: 1e6,
  depositBurst: 1e6,
  quotaCount: 1e6,
  quotaBytes: 1024 * 1024 * 1024
}

/**
 * Deposit `count` envelopes (`make(i)`) at a relay, `batchSize` per request with `parallel`
 * requests in flight, timed from the first request to the last answer (shared clock).
 */
export async function depositAll (mb: MailboxClient, relay: PeerIdString, count: number, batchSize: number, parallel: number, make: (i: number) => Deposit): Promise<DepositRun> {
  const run: DepositRun = { startedAt: 0, doneAt: 0, accepted: 0, refused: 0, requests: 0, refusals: {} }
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      const batch: Deposit[] = []
      while (batch.length < batchSize && next < count) batch.push(make(next++))
      const results = await mb.deposit(relay, batch)
      run.requests++
      for (const r of results) {
        if (r.ok) {
          run.accepted++
        } else {
          run.refused++
          run.refusals[r.errorName] = (run.refusals[r.errorName] ?? 0) + 1
        }
      }
    }
  }
  run.startedAt = sharedNow()
  const workers: Array<Promise<void>> = []
  for (let w = 0; w < parallel; w++) workers.push(worker())
  await Promise.all(workers)
  run.doneAt = sharedNow()
  return run
}

export class RelayPeer {
  private relay: { node: RelayLibp2p, store: MailboxStore, prekeys: PrekeyStore, mailbox: MailboxService, directory?: DirectoryService } | undefined
  private client: ParleyLibp2p | undefined
  private swarm: Libp2p[] = []
  private flood: { run: FloodRun, startedAt: number, stopping: boolean, workers: Array<Promise<void>>, held: Array<{ node: Libp2p, streams: Stream[] }>, sockets: Set<Socket> } | undefined

  /**
   * A relay with its stores under `dataDir` (`mailbox/`, `prekeys/`, as relay/cli.ts lays them
   * out); with `directory`, the peer directory too (members of a group find each other there).
   * With `operatorLimits`, the limits `parley relay` runs with by default (DEFAULT_RELAY_LIMITS,
   * DEFAULT_MAILBOX_LIMITS) instead of ones raised out of the benchmark's way.
   */
  async startRelay (dataDir: string, directory = false, operatorLimits = false): Promise<RelayStarted> {
    if (this.relay !== undefined) throw new Error('relay already started')
    await mkdir(dataDir, { recursive: true })
    const store = new MailboxStore(join(dataDir, 'mailbox'))
    await store.open()
    const prekeys = new PrekeyStore(join(dataDir, 'prekeys'))
    await prekeys.open()
    const node = await createRelayNode({
      privateKey: await generateKeyPair('Ed25519'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      limits: operatorLimits ? DEFAULT_RELAY_LIMITS : BENCH_RELAY_LIMITS,
      prekeys: { store: prekeys, limits: DEFAULT_PREKEY_LIMITS }
    })
    const mailbox = new MailboxService(node, store, operatorLimits ? DEFAULT_MAILBOX_LIMITS : BENCH_MAILBOX_LIMITS)
    const dir = directory ? new DirectoryService(node) : undefined
    await dir?.start()
    await node.start()
    await mailbox.start()
    this.relay = { node, store, prekeys, mailbox, ...(dir !== undefined ? { directory: dir } : {}) }
    const peerId = node.peerId.toString()
    const addrs = node.getMultiaddrs().map(String)
      .filter((a) => a.includes('/tcp/') && !a.includes('/ws'))
      .map((a) => a.includes('/p2p/') ? a : `${a}/p2p/${peerId}`)
    return { peerId, addrs }
  }

  relayConnections (): number {
    if (this.relay === undefined) throw new Error('relay not started')
    return this.relay.node.getConnections().length
  }

  async stopRelay (): Promise<void> {
    const r = this.relay
    this.relay = undefined
    if (r === undefined) return
    await r.mailbox.stop()
    await r.directory?.stop()
    await r.node.stop()
    await r.store.close()
    await r.prekeys.close()
  }

  /** A Parley node connected to the relay, for MailboxClient calls. */
  async startClient (p: MailboxClientParams): Promise<MailboxClientStarted> {
    if (this.client !== undefined) throw new Error('mailbox client already started')
    const privateKey = p.identityDir !== undefined ? await loadOrCreateIdentity(p.identityDir) : await generateKeyPair('Ed25519')
    const node = await createNode({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
    await node.start()
    this.client = node
    await node.dial(multiaddr(p.relayAddr))
    return { peerId: node.peerId.toString() }
  }

  /** Fetch (up to `limit` a time) and acknowledge until the relay says the mailbox is empty. */
  async drain (p: DrainParams): Promise<DrainRun> {
    const mb = new MailboxClient(this.requireClient())
    const relay = p.relayId as PeerIdString
    const run: DrainRun = { startedAt: sharedNow(), doneAt: 0, fetched: 0, acked: 0, fetches: 0, complete: false }
    const deadline = run.startedAt + p.timeoutMs
    while (sharedNow() < deadline) {
      const { items, more } = await mb.fetch(relay, p.limit)
      run.fetches++
      run.fetched += items.length
      if (items.length > 0) run.acked += await mb.ack(relay, items.map((i) => i.id))
      if (items.length === 0 || !more) {
        run.complete = true
        break
      }
    }
    run.doneAt = sharedNow()
    return run
  }

  async stopClient (): Promise<void> {
    const c = this.client
    this.client = undefined
    await c?.stop()
  }

  /** `nodes` minimal libp2p nodes (no listen address), each dialling the relay once. */
  async startSwarm (p: SwarmParams): Promise<SwarmRun> {
    const addr = multiaddr(p.relayAddr)
    const t0 = sharedNow()
    const deadline = t0 + p.timeoutMs
    let next = 0
    let connected = 0
    let failed = 0
    let firstError: string | undefined
    const worker = async (): Promise<void> => {
      while (next < p.nodes && sharedNow() < deadline) {
        next++
        const node = await createLibp2p({
          privateKey: await generateKeyPair('Ed25519'),
          transports: [tcp()],
          connectionEncrypters: [noise()],
          streamMuxers: [yamux()],
          services: { identify: identify() }
        })
        this.swarm.push(node)
        try {
          await node.dial(addr, { signal: AbortSignal.timeout(10_000) })
          connected++
        } catch (err) {
          failed++
          firstError ??= (err as Error).message
        }
      }
    }
    const workers: Array<Promise<void>> = []
    for (let w = 0; w < p.parallel; w++) workers.push(worker())
    await Promise.all(workers)
    return { connected, failed, elapsedMs: sharedNow() - t0, ...(firstError !== undefined ? { firstError } : {}) }
  }

  async stopSwarm (): Promise<void> {
    const nodes = this.swarm
    this.swarm = []
    await Promise.allSettled(nodes.map(async (n) => { await n.stop() }))
  }

  /** Start flooding the relay (see the file comment); runs until stopFlood. */
  startFlood (p: FloodParams): void {
    if (this.flood !== undefined) throw new Error('flood already running')
    const addr = multiaddr(p.relayAddr)
    const port = Number(/\/tcp\/(\d+)/.exec(p.relayAddr)?.[1])
    const run: FloodRun = { elapsedMs: 0, dials: 0, admitted: 0, refused: 0, streamsOpened: 0, streamsRefused: 0, held: 0, socketsOpened: 0, socketsClosedByRelay: 0 }
    const f = { run, startedAt: sharedNow(), stopping: false, workers: [] as Array<Promise<void>>, held: [] as Array<{ node: Libp2p, streams: Stream[] }>, sockets: new Set<Socket>() }
    this.flood = f
    const dialer = async (): Promise<void> => {
      while (!f.stopping) {
        const node = await createLibp2p({ privateKey: await generateKeyPair('Ed25519'), transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
        run.dials++
        try {
          await node.dial(addr, { signal: AbortSignal.timeout(5_000) })
          run.admitted++
        } catch {
          run.refused++
          await node.stop()
          continue
        }
        const entry = { node, streams: [] as Stream[] }
        f.held.push(entry)
        // Hold the newest connections only (this process's memory, not the relay's limits, would
        // run out first). An evicted one's streams are counted now: closing it ourselves is no refusal.
        const oldest = f.held.length > p.hold ? f.held.shift() : undefined
        if (oldest !== undefined) {
          run.streamsRefused += unopened(oldest.streams)
          void Promise.resolve(oldest.node.stop()).catch(() => {})
        }
        const streams = await Promise.allSettled(Array.from({ length: p.streamsPerConnection }, async () => await node.dialProtocol(addr, MAILBOX_PROTOCOL, { signal: AbortSignal.timeout(5_000) })))
        for (const st of streams) {
          if (st.status === 'rejected') { run.streamsRefused++; continue }
          run.streamsOpened++
          entry.streams.push(st.value)
        }
      }
    }
    const silent = (): void => {
      if (f.stopping) return
      const sock = connect(port, '127.0.0.1')
      run.socketsOpened++
      f.sockets.add(sock)
      sock.on('error', () => {})
      sock.once('close', () => {
        f.sockets.delete(sock)
        if (f.stopping) return
        run.socketsClosedByRelay++
        // Replace it, a little later (a closed socket is not an invitation to spin).
        setTimeout(silent, 10)
      })
    }
    for (let i = 0; i < p.silentSockets; i++) silent()
    for (let i = 0; i < p.dialers; i++) f.workers.push(dialer())
  }

  /** Stop the flood and close everything it opened; what it did. */
  async stopFlood (): Promise<FloodRun> {
    const f = this.flood
    this.flood = undefined
    if (f === undefined) throw new Error('no flood running')
    f.stopping = true
    f.run.elapsedMs = sharedNow() - f.startedAt
    await Promise.allSettled(f.workers)
    // Streams the relay reset (over the per-connection limit) or that ended with their connection.
    for (const h of f.held) f.run.streamsRefused += unopened(h.streams)
    f.run.held = f.held.filter((h) => h.node.getConnections().some((c) => c.status === 'open')).length
    for (const s of f.sockets) s.destroy()
    await Promise.allSettled(f.held.map(async (h) => { await h.node.stop() }))
    return f.run
  }

  async stop (): Promise<void> {
    if (this.flood !== undefined) await this.stopFlood()
    const results = await Promise.allSettled([this.stopSwarm(), this.stopClient(), this.stopRelay()])
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
  }

  private requireClient (): ParleyLibp2p {
    if (this.client === undefined) throw new Error('mailbox client not started')
    return this.client
  }
}
