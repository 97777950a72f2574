/**
 * The relay scenarios, every node in its own OS process (relay-peer.ts and dm-peer.ts behind
 * PeerHandles):
 *   - mailbox: a relay process (relay-node.ts with its prekey directory + MailboxStore +
 *     MailboxService, limits raised), a sender Messenger and a recipient Messenger (circuit
 *     only, through the relay). The recipient publishes its prekey bundle at the relay and
 *     goes offline; the sender seals 2N text envelopes for it with Messenger.sealEnvelopes
 *     (a session from the relay's bundle, as for any offline contact; untimed), then deposits
 *     the first N in batches with a few requests in flight (timed). The recipient Messenger
 *     comes back and drains them: fetch, decrypt, store, ack, receipts (timed until its
 *     last 'message' event). Then the other N are deposited and drained at the protocol level
 *     by a bare MailboxClient with the recipient's identity: fetch and ack until the mailbox
 *     is empty, nothing decrypted (timed, the relay's share of a drain);
 *   - relayed DM: two Messengers that listen only on '/p2p-circuit' through that relay, one-way
 *     latency of sequential messages (sendText -> the receiver's message event, shared clock);
 *   - memory: a fresh relay process and swarm processes opening many connections to it; the
 *     relay's RSS (after a GC) before and after, and the cost per connection;
 *   - flood: a fresh relay process with the limits `parley relay` runs with by default, two
 *     Messengers on '/p2p-circuit' through it, and relayed one-way DM latency measured twice in
 *     a row: without, then during a flood from flood processes (relay-peer.ts: silent
 *     sockets, fresh identities dialling, each admitted one holding more mailbox streams than
 *     allowed). RELIABILITY.md: honest peers' latency within 2x of baseline.
 */
import { join } from 'node:path'
import type { MemorySnapshot } from '../memory.js'
import type { PeerHandle } from '../peer.js'
import { rate, summarize, type LatencySummary } from '../stats.js'
import { now } from '../util.js'
import { arrivalLatencies, pairs } from './dm.js'
import type { DepositRun, FloodRun, RelayStarted } from './relay-peer.js'

export interface RelayOptions {
  /** Sealed envelopes per deposit round (two rounds: Messenger drain, then protocol-level drain). */
  deposits: number
  /** Envelopes per deposit request (the protocol allows 32). */
  batchSize: number
  /** Envelopes per Messenger.sealEnvelopes call while preparing the deposits. */
  sealBatch: number
  /** Deposit requests in flight at once. */
  depositParallel: number
  /** Items per FETCH while draining at the protocol level (the Messenger's courier asks for 1024). */
  drainLimit: number
  /** Text bytes of every message (relayed DM and the sealed mailbox envelopes). */
  dmMessageBytes: number
  dmWarmup: number
  dmSamples: number
  /** Connections opened to the relay in the memory run, spread over swarmProcesses. */
  swarmPeers: number
  swarmProcesses: number
  /** Dials in flight per swarm process. */
  swarmParallel: number
  /** The figure the RSS target is about; if swarmPeers is smaller, the RSS is extrapolated. */
  rssPeers: number
  /** Flood processes, and per process: dials in flight, silent sockets, streams per admitted connection, connections held. */
  floodProcesses: number
  floodDialers: number
  floodSilentSockets: number
  floodStreams: number
  floodHold: number
  timeoutMs: number
}

export interface RelayFlood {
  /** One-way relayed DM latency, sendText (A) -> message event (B), shared clock. */
  baseline: LatencySummary
  flooded: LatencySummary
  /** The flood processes' counts, summed. */
  flood: FloodRun
  /** The relay's connections as the flooded measurement ended. */
  relayConnections: number
}

export interface DepositFigures {
  accepted: number
  refused: number
  refusals: Record<string, number>
  requests: number
  /** Sender: first deposit request -> last answer (its own clock). */
  depositMs: number
  depositsPerSec: number
}

export interface MailboxBench extends DepositFigures {
  /** Per round. */
  deposits: number
  /** The frames the sender sealed for both rounds (set-up, not part of any timed figure). */
  sealed: { frames: number, kinds: Record<string, number>, meanBytes: number, elapsedMs: number }
  /** Round 1: the recipient Messenger restarts and drains its mailbox. */
  messengerDrain: {
    received: number
    complete: boolean
    /** Given up before the timeout: no message arrived for `stallMs`. */
    stalled: boolean
    stallMs: number
    /** Envelopes the recipient refused (should be none), by error name. */
    rejections: Record<string, number>
    /** Messenger.start called -> its connection to the relay is up (the drain starts then). */
    startToConnectedMs: number
    /** Connected to the relay -> the last 'message' event (every message decrypted and stored). */
    elapsedMs: number
    perSec: number
    /** Messenger.start called -> the last 'message' event. */
    totalMs: number
  }
  /**
   * Round 2's deposits (filling the mailbox for the protocol-level drain); skipped if the
   * Messenger drain left round 1's frames there (they are drained instead).
   */
  secondDeposit?: DepositFigures
  /** Round 2: a bare MailboxClient with the recipient's key fetches and acks until empty. */
  drain: {
    /** What the mailbox should hold: round 2's deposits, or what round 1 left. */
    expected: number
    fetched: number
    acked: number
    fetches: number
    complete: boolean
    /** Recipient: first FETCH -> the FETCH that came back empty / without more (its own clock). */
    elapsedMs: number
    perSec: number
  }
}

export interface RelayedDm {
  messageBytes: number
  /** sendText (A) -> message event (B), shared clock, through the relay. */
  toReceived: LatencySummary
  /** sendText -> 'delivered' status event on A. */
  toDelivered: LatencySummary
}

export interface RelayMemory {
  /** Connections asked for and actually made. */
  peers: number
  connected: number
  failed: number
  firstError?: string
  /** The relay's own count of open connections once every swarm process was done. */
  relayConnections: number
  /** Slowest swarm process's time to open its connections. */
  connectMs: number
  /** Relay process, started and idle, after a GC. */
  before: MemorySnapshot
  /** Relay process with the connections open, after a GC. */
  after: MemorySnapshot
  perConnectionBytes: number
  /** The RSS with rssPeers connections: measured if connected >= rssPeers, else before + per connection x rssPeers. */
  rssAtTargetBytes: number
  rssPeers: number
  extrapolated: boolean
}

export interface RelayResult {
  mailbox: MailboxBench
  dm: RelayedDm
  memory: RelayMemory
  flood: RelayFlood
  pids: Record<string, number[]>
}

function firstAddr (r: RelayStarted): string {
  const a = r.addrs[0]
  if (a === undefined) throw new Error('the relay reported no TCP address')
  return a
}

export type Spawn = (name: string) => Promise<PeerHandle>

/** Spawn through `spawn`, keeping every handle so `closeAll` can stop them. */
export class Group {
  readonly peers: PeerHandle[] = []
  constructor (private readonly spawn: Spawn) {}

  async add (name: string): Promise<PeerHandle> {
    const p = await this.spawn(name)
    this.peers.push(p)
    return p
  }

  async closeAll (): Promise<void> {
    await Promise.allSettled(this.peers.map(async (p) => { await p.close() }))
    this.peers.length = 0
  }
}

function depositFigures (dep: DepositRun): DepositFigures {
  const depositMs = dep.doneAt - dep.startedAt
  return { accepted: dep.accepted, refused: dep.refused, refusals: dep.refusals, requests: dep.requests, depositMs, depositsPerSec: rate(dep.accepted, depositMs) }
}

/** Poll a Messenger until its bundle is published at `relayId` (it then is connected there too). */
async function publishedAt (peer: PeerHandle, relayId: string, timeoutMs: number): Promise<void> {
  const deadline = now() + timeoutMs
  for (;;) {
    const { relays } = await peer.call('dm.prekeysAtRelay', {})
    if ((relays[relayId] ?? 0) > 0) return
    if (now() > deadline) throw new Error(`${peer.name} did not publish its prekeys at the relay within ${timeoutMs} ms`)
    await new Promise<void>((resolve) => { setTimeout(resolve, 50) })
  }
}

/** The Messenger drain gives up if no message arrives for this long. */
const DRAIN_STALL_MS = 10_000

async function mailbox (relayAddr: string, relayId: string, sender: PeerHandle, recipient: PeerHandle, o: RelayOptions, dataRoot: string): Promise<MailboxBench> {
  const callTimeout = o.timeoutMs + 10_000
  const n = o.deposits
  const senderDir = join(dataRoot, 'relay-mailbox-sender')
  const recipientDir = join(dataRoot, 'relay-mailbox-recipient')
  try {
    // The sender listens on TCP too, so the recipient's receipts reach it directly.
    const infoA = await sender.call('dm.start', { dataDir: senderDir, relays: [relayAddr], circuitOnly: false })
    const infoB = await recipient.call('dm.start', { dataDir: recipientDir, relays: [relayAddr] })
    await recipient.call('dm.addContact', { invite: infoA.invite, name: 'bench-sender' })
    await Promise.all([publishedAt(recipient, relayId, o.timeoutMs), publishedAt(sender, relayId, o.timeoutMs)])
    await recipient.call('dm.stop', {})
    // The recipient is offline now: the sender's session comes from the relay's bundle.
    await sender.call('dm.addContact', { invite: infoB.invite, name: 'bench-recipient' })
    const seal = await sender.call('dm.seal', { to: infoB.peerId, count: 2 * n, batch: o.sealBatch, messageBytes: o.dmMessageBytes }, 2 * n * 5 + callTimeout)
    const deposit = { relayId, recipient: infoB.peerId, count: n, batchSize: o.batchSize, parallel: o.depositParallel }
    const first = await sender.call('dm.deposit', { ...deposit, from: 0 }, callTimeout)

    // Round 1: the recipient Messenger comes back; its courier drains on connecting to the relay.
    const back = await recipient.call('dm.start', { dataDir: recipientDir, relays: [relayAddr], expect: n })
    const recv = await recipient.call('dm.waitReceived', { timeoutMs: o.timeoutMs, stallMs: DRAIN_STALL_MS }, callTimeout)
    const { t: connectedAt } = await recipient.call('dm.connectedAt', { peer: relayId })
    const { rejections } = await recipient.call('dm.rejections', {})
    await recipient.call('dm.stop', {})
    const connected = connectedAt ?? back.startCalledAt
    const drainMs = recv.doneAt - connected

    // Round 2: the protocol-level drain, as the recipient but without its Messenger (of
    // what round 1 left, if the Messenger did not drain it all).
    const emptied = recv.complete && recv.received === first.accepted
    const second = emptied ? depositFigures(await sender.call('dm.deposit', { ...deposit, from: n }, callTimeout)) : undefined
    await recipient.call('mailbox.start', { relayAddr, identityDir: recipientDir })
    const drain = await recipient.call('mailbox.drain', { relayId, limit: o.drainLimit, timeoutMs: o.timeoutMs }, callTimeout)
    const rawMs = drain.doneAt - drain.startedAt
    return {
      deposits: n,
      sealed: { frames: seal.sealed, kinds: seal.kinds, meanBytes: seal.meanBytes, elapsedMs: seal.elapsedMs },
      ...depositFigures(first),
      messengerDrain: {
        received: recv.received,
        complete: recv.complete,
        stalled: recv.stalled,
        stallMs: DRAIN_STALL_MS,
        rejections,
        startToConnectedMs: connected - back.startCalledAt,
        elapsedMs: drainMs,
        perSec: rate(recv.received, drainMs),
        totalMs: recv.doneAt - back.startCalledAt
      },
      ...(second !== undefined ? { secondDeposit: second } : {}),
      drain: { expected: second?.accepted ?? first.accepted - recv.received, fetched: drain.fetched, acked: drain.acked, fetches: drain.fetches, complete: drain.complete, elapsedMs: rawMs, perSec: rate(drain.fetched, rawMs) }
    }
  } finally {
    await Promise.allSettled([sender.call('dm.stop', {}), recipient.call('dm.stop', {}), recipient.call('mailbox.stop', {})])
  }
}

/** Start Messengers A and B on '/p2p-circuit' through the relay, contacts of each other; B's peer id. */
async function relayedPair (relayAddr: string, a: PeerHandle, b: PeerHandle, dataRoot: string, prefix: string): Promise<string> {
  const infoB = await b.call('dm.start', { dataDir: join(dataRoot, `${prefix}-B`), relays: [relayAddr] })
  const infoA = await a.call('dm.start', { dataDir: join(dataRoot, `${prefix}-A`), relays: [relayAddr] })
  await a.call('dm.addContact', { invite: infoB.invite, name: 'bench-b' })
  await b.call('dm.addContact', { invite: infoA.invite, name: 'bench-a' })
  return infoB.peerId
}

/** One-way latency of sequential messages A -> B (after warm-up), and A's delivered events. */
async function oneWay (a: PeerHandle, b: PeerHandle, to: string, o: RelayOptions): Promise<RelayedDm> {
  const callTimeout = (o.dmWarmup + o.dmSamples) * 100 + o.timeoutMs
  const run = await a.call('dm.latency', {
    to,
    mode: 'one-way',
    messageBytes: o.dmMessageBytes,
    warmup: o.dmWarmup,
    samples: o.dmSamples,
    timeoutMs: o.timeoutMs
  }, callTimeout)
  const toReceived = await arrivalLatencies(run, b, o.dmWarmup, 'relayed dm')
  return {
    messageBytes: o.dmMessageBytes,
    toReceived: summarize(toReceived),
    toDelivered: summarize(pairs(run, o.dmWarmup, (i) => run.deliveredAt[i] as number))
  }
}

async function relayedDm (relayAddr: string, a: PeerHandle, b: PeerHandle, o: RelayOptions, dataRoot: string): Promise<RelayedDm> {
  try {
    return await oneWay(a, b, await relayedPair(relayAddr, a, b, dataRoot, 'relay-dm'), o)
  } finally {
    await Promise.allSettled([a.call('dm.stop', {}), b.call('dm.stop', {})])
  }
}

async function flooded (group: Group, o: RelayOptions, dataRoot: string, pids: Record<string, number[]>): Promise<RelayFlood> {
  const relay = await group.add('relay-flood-R')
  const started = await relay.call('relay.start', { dataDir: join(dataRoot, 'relay-flood'), operatorLimits: true })
  const relayAddr = firstAddr(started)
  const a = await group.add('relay-flood-A')
  const b = await group.add('relay-flood-B')
  const floods: PeerHandle[] = []
  for (let i = 0; i < o.floodProcesses; i++) floods.push(await group.add(`relay-flood-${i}`))
  pids.flood = [relay.pid, a.pid, b.pid, ...floods.map((f) => f.pid)]
  try {
    const to = await relayedPair(relayAddr, a, b, dataRoot, 'relay-flood')
    const baseline = await oneWay(a, b, to, o)
    await Promise.all(floods.map(async (f) => await f.call('flood.start', { relayAddr, dialers: o.floodDialers, silentSockets: o.floodSilentSockets, streamsPerConnection: o.floodStreams, hold: o.floodHold })))
    // Let the flood reach its pace before measuring.
    await new Promise<void>((resolve) => { setTimeout(resolve, 2000) })
    const during = await oneWay(a, b, to, o)
    const { connections } = await relay.call('relay.connections', {})
    const runs = await Promise.all(floods.map(async (f) => await f.call('flood.stop', {}, 60_000)))
    const flood: FloodRun = { elapsedMs: Math.max(...runs.map((r) => r.elapsedMs)), dials: 0, admitted: 0, refused: 0, streamsOpened: 0, streamsRefused: 0, held: 0, socketsOpened: 0, socketsClosedByRelay: 0 }
    for (const r of runs) {
      for (const k of ['dials', 'admitted', 'refused', 'streamsOpened', 'streamsRefused', 'held', 'socketsOpened', 'socketsClosedByRelay'] as const) flood[k] += r[k]
    }
    return { baseline: baseline.toReceived, flooded: during.toReceived, flood, relayConnections: connections }
  } finally {
    await Promise.allSettled([a.call('dm.stop', {}), b.call('dm.stop', {})])
  }
}

async function memory (group: Group, o: RelayOptions, dataRoot: string, pids: Record<string, number[]>): Promise<RelayMemory> {
  const relay = await group.add('relay-memory-R')
  const started = await relay.call('relay.start', { dataDir: join(dataRoot, 'relay-memory') })
  const relayAddr = firstAddr(started)
  const swarms: PeerHandle[] = []
  for (let i = 0; i < o.swarmProcesses; i++) swarms.push(await group.add(`relay-memory-swarm-${i}`))
  pids.memory = [relay.pid, ...swarms.map((s) => s.pid)]
  const before = (await relay.call('mem.snapshot', { gc: true })).memory
  const per = Math.ceil(o.swarmPeers / o.swarmProcesses)
  const runs = await Promise.all(swarms.map(async (s, i) => await s.call('swarm.start', {
    relayAddr,
    nodes: Math.max(0, Math.min(per, o.swarmPeers - i * per)),
    parallel: o.swarmParallel,
    timeoutMs: o.timeoutMs
  }, o.timeoutMs + 30_000)))
  // Let identify and the relay's own bookkeeping for the last connections settle.
  await new Promise<void>((resolve) => { setTimeout(resolve, 1000) })
  const { connections } = await relay.call('relay.connections', {})
  const after = (await relay.call('mem.snapshot', { gc: true })).memory
  await Promise.allSettled(swarms.map(async (s) => await s.call('swarm.stop', {}, 30_000)))
  const connected = runs.reduce((n, r) => n + r.connected, 0)
  const perConnectionBytes = connected > 0 ? (after.rssBytes - before.rssBytes) / connected : Number.NaN
  const extrapolated = connected < o.rssPeers
  const firstError = runs.find((r) => r.firstError !== undefined)?.firstError
  return {
    peers: o.swarmPeers,
    connected,
    failed: runs.reduce((n, r) => n + r.failed, 0),
    ...(firstError !== undefined ? { firstError } : {}),
    relayConnections: connections,
    connectMs: Math.max(...runs.map((r) => r.elapsedMs)),
    before,
    after,
    perConnectionBytes,
    rssAtTargetBytes: extrapolated ? before.rssBytes + perConnectionBytes * o.rssPeers : after.rssBytes,
    rssPeers: o.rssPeers,
    extrapolated
  }
}

export async function runRelay (spawn: Spawn, o: RelayOptions, dataRoot: string, log: (line: string) => void): Promise<RelayResult> {
  const pids: Record<string, number[]> = {}
  let mb: MailboxBench
  let dm: RelayedDm
  const first = new Group(spawn)
  try {
    const relay = await first.add('relay-R')
    const started = await relay.call('relay.start', { dataDir: join(dataRoot, 'relay') })
    const relayAddr = firstAddr(started)
    const sender = await first.add('relay-mailbox-sender')
    const recipient = await first.add('relay-mailbox-recipient')
    pids.mailbox = [relay.pid, sender.pid, recipient.pid]
    log(`relay mailbox: seal 2 x ${o.deposits} envelopes, deposit ${o.deposits} (${o.batchSize} per request, ${o.depositParallel} in flight), Messenger drain; again, protocol-level drain...`)
    mb = await mailbox(relayAddr, started.peerId, sender, recipient, o, dataRoot)
    log(`relayed dm: two Messengers on /p2p-circuit (${o.dmSamples} one-way samples)...`)
    const a = await first.add('relay-dm-A')
    const b = await first.add('relay-dm-B')
    pids.dm = [relay.pid, a.pid, b.pid]
    dm = await relayedDm(relayAddr, a, b, o, dataRoot)
  } finally {
    await first.closeAll()
  }
  log(`relay memory: ${o.swarmPeers} connections from ${o.swarmProcesses} processes...`)
  const mem = await inGroup(spawn, async (g) => await memory(g, o, dataRoot, pids))
  log(`relay flood: relayed DM latency (${o.dmSamples} samples) without, then during a flood from ${o.floodProcesses} processes...`)
  const flood = await inGroup(spawn, async (g) => await flooded(g, o, dataRoot, pids))
  return { mailbox: mb, dm, memory: mem, flood, pids }
}

/** Run `fn` with a fresh Group of processes, closed afterwards however it ends. */
async function inGroup<T> (spawn: Spawn, fn: (g: Group) => Promise<T>): Promise<T> {
  const g = new Group(spawn)
  try {
    return await fn(g)
  } finally {
    await g.closeAll()
  }
}
