/**
 * The relay scenarios, every node in its own OS process (relay-peer.ts and dm-peer.ts behind
 * PeerHandles):
 *   - mailbox: a relay process (relay-node.ts + MailboxStore + MailboxService, limits raised),
 *     a sender process depositing N envelopes in batches with a few requests in flight, then
 *     the recipient process fetching and acknowledging until its mailbox is empty;
 *   - relayed DM: two Messengers that listen only on '/p2p-circuit' through that relay, one-way
 *     latency of sequential messages (sendText -> the receiver's message event, shared clock);
 *   - memory: a fresh relay process and swarm processes opening many connections to it; the
 *     relay's RSS (after a GC) before and after, and the cost per connection.
 */
import { join } from 'node:path'
import type { MemorySnapshot } from '../memory.js'
import type { PeerHandle } from '../peer.js'
import { rate, summarize, type LatencySummary } from '../stats.js'
import { pairs } from './dm.js'
import type { RelayStarted } from './relay-peer.js'

export interface RelayOptions {
  deposits: number
  /** Envelopes per deposit request (the protocol allows 32). */
  batchSize: number
  envelopeBytes: number
  /** Deposit requests in flight at once. */
  depositParallel: number
  /** Items per FETCH while draining. */
  drainLimit: number
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
  timeoutMs: number
}

export interface MailboxBench {
  deposits: number
  accepted: number
  refused: number
  refusals: Record<string, number>
  requests: number
  /** Sender: first deposit request -> last answer (its own clock). */
  depositMs: number
  depositsPerSec: number
  drain: {
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
  pids: Record<string, number[]>
}

function firstAddr (r: RelayStarted): string {
  const a = r.addrs[0]
  if (a === undefined) throw new Error('the relay reported no TCP address')
  return a
}

export type Spawn = (name: string) => Promise<PeerHandle>

/** Spawn through `spawn`, keeping every handle so `closeAll` can stop them. */
class Group {
  readonly peers: PeerHandle[] = []
  constructor (private readonly spawn: Spawn) {}

  async add (name: string): Promise<PeerHandle> {
    const p = await this.spawn(name)
    this.peers.push(p)
    return p
  }

  async closeAll (): Promise<void> {
    await Promise.allSettled(this.peers.map(async (p) => { await p.close() }))
  }
}

async function mailbox (relay: PeerHandle, relayAddr: string, relayId: string, sender: PeerHandle, recipient: PeerHandle, o: RelayOptions): Promise<MailboxBench> {
  const callTimeout = o.timeoutMs + 10_000
  const rcpt = await recipient.call('mailbox.start', { relayAddr })
  await sender.call('mailbox.start', { relayAddr })
  const dep = await sender.call('mailbox.deposit', {
    relayId,
    recipient: rcpt.peerId,
    deposits: o.deposits,
    batchSize: o.batchSize,
    envelopeBytes: o.envelopeBytes,
    parallel: o.depositParallel
  }, callTimeout)
  const drain = await recipient.call('mailbox.drain', { relayId, limit: o.drainLimit, timeoutMs: o.timeoutMs }, callTimeout)
  await Promise.allSettled([sender.call('mailbox.stop', {}), recipient.call('mailbox.stop', {})])
  const depositMs = dep.doneAt - dep.startedAt
  const drainMs = drain.doneAt - drain.startedAt
  return {
    deposits: o.deposits,
    accepted: dep.accepted,
    refused: dep.refused,
    refusals: dep.refusals,
    requests: dep.requests,
    depositMs,
    depositsPerSec: rate(dep.accepted, depositMs),
    drain: { fetched: drain.fetched, acked: drain.acked, fetches: drain.fetches, complete: drain.complete, elapsedMs: drainMs, perSec: rate(drain.fetched, drainMs) }
  }
}

async function relayedDm (relayAddr: string, a: PeerHandle, b: PeerHandle, o: RelayOptions, dataRoot: string): Promise<RelayedDm> {
  try {
    const infoB = await b.call('dm.start', { dataDir: join(dataRoot, 'relay-dm-B'), relays: [relayAddr] })
    const infoA = await a.call('dm.start', { dataDir: join(dataRoot, 'relay-dm-A'), relays: [relayAddr] })
    await a.call('dm.addContact', { invite: infoB.invite, name: 'bench-b' })
    await b.call('dm.addContact', { invite: infoA.invite, name: 'bench-a' })
    const callTimeout = (o.dmWarmup + o.dmSamples) * 100 + o.timeoutMs
    const run = await a.call('dm.latency', {
      to: infoB.peerId,
      mode: 'one-way',
      messageBytes: o.dmMessageBytes,
      warmup: o.dmWarmup,
      samples: o.dmSamples,
      timeoutMs: o.timeoutMs
    }, callTimeout)
    const { arrivals } = await b.call('dm.arrivals', {})
    const toReceived = pairs(run, o.dmWarmup, (i) => {
      const tag = run.tags[i] as string
      const t = arrivals[tag]
      if (t === undefined) throw new Error(`relayed dm: B has no arrival time for ${tag}`)
      return t
    })
    return {
      messageBytes: o.dmMessageBytes,
      toReceived: summarize(toReceived),
      toDelivered: summarize(pairs(run, o.dmWarmup, (i) => run.deliveredAt[i] as number))
    }
  } finally {
    await Promise.allSettled([a.call('dm.stop', {}), b.call('dm.stop', {})])
  }
}

async function memory (group: Group, o: RelayOptions, dataRoot: string, pids: Record<string, number[]>): Promise<RelayMemory> {
  const relay = await group.add('relay-memory-R')
  const started = await relay.call('relay.start', { dataDir: join(dataRoot, 'relay-memory-mailbox') })
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
    const started = await relay.call('relay.start', { dataDir: join(dataRoot, 'relay-mailbox') })
    const relayAddr = firstAddr(started)
    const sender = await first.add('relay-mailbox-sender')
    const recipient = await first.add('relay-mailbox-recipient')
    pids.mailbox = [relay.pid, sender.pid, recipient.pid]
    log(`relay mailbox: ${o.deposits} deposits (${o.batchSize} x ${o.envelopeBytes} B per request, ${o.depositParallel} in flight), then drain...`)
    mb = await mailbox(relay, relayAddr, started.peerId, sender, recipient, o)
    log(`relayed dm: two Messengers on /p2p-circuit (${o.dmSamples} one-way samples)...`)
    const a = await first.add('relay-dm-A')
    const b = await first.add('relay-dm-B')
    pids.dm = [relay.pid, a.pid, b.pid]
    dm = await relayedDm(relayAddr, a, b, o, dataRoot)
  } finally {
    await first.closeAll()
  }
  log(`relay memory: ${o.swarmPeers} connections from ${o.swarmProcesses} processes...`)
  const second = new Group(spawn)
  let mem: RelayMemory
  try {
    mem = await memory(second, o, dataRoot, pids)
  } finally {
    await second.closeAll()
  }
  return { mailbox: mb, dm, memory: mem, pids }
}
