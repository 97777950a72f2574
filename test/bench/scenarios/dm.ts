/**
 * Parley direct messages end to end: two Messengers (A sends, B receives), each with its own
 * level database, talking over loopback TCP. Each side is a DmPeer (dm-peer.ts) behind a
 * PeerHandle, in its own process or not. Every figure includes both store writes (A's
 * saveOutgoing, B's saveIncoming), the framing/validation and (unless `plain`) the Signal
 * encryption on A and decryption on B.
 */
import { join } from 'node:path'
import type { MemorySnapshot } from '../memory.js'
import type { PeerHandle } from '../peer.js'
import { rate, scaleSummary, summarize, type LatencySummary } from '../stats.js'
import type { DmLatencyRun } from './dm-peer.js'

export interface DmOptions {
  messageBytes: number
  latencyWarmup: number
  latencySamples: number
  /** Samples (after the same warm-up) of the round-trip run. */
  roundTripSamples: number
  throughputMessages: number
  /** sendText promises kept outstanding at once during the throughput run. */
  maxOutstanding: number
  timeoutMs: number
}

export interface DmLatency {
  /** One-way run: A's sendText called -> B's 'message' event for that text (shared clock). */
  toReceived: LatencySummary
  /** One-way run: sendText called -> its promise resolved (local durable write + enqueue), on A. */
  toSendResolved: LatencySummary
  /** One-way run: sendText called -> A's 'delivered' status event (ack back and persisted), on A. */
  toDelivered: LatencySummary
  /** Round-trip run: A's sendText -> A's 'message' event for B's reply (B replies from its listener), on A. */
  roundTrip: LatencySummary
  /** roundTrip / 2: a one-way figure that needs no shared clock (cross-check of toReceived). */
  roundTripHalf: LatencySummary
}

export interface DmThroughput {
  messages: number
  maxOutstanding: number
  /** Whether every message arrived / was acknowledged before the timeout. */
  complete: boolean
  received: number
  delivered: number
  /** First sendText call -> last sendText promise resolved (on A). */
  enqueueMs: number
  enqueuePerSec: number
  /** First sendText call (A) -> B has emitted every 'message' event (shared clock). */
  receivedMs: number
  receivedPerSec: number
  /** First sendText call -> A has seen every 'delivered' status (on A). */
  deliveredMs: number
  deliveredPerSec: number
}

export interface ProcessMemory {
  /** Which peers live in this process, e.g. 'A (sender)' or 'A + B'. */
  label: string
  pid: number
  gcAvailable: boolean
  /** Messenger started and contact added, before any message (no GC). */
  started: MemorySnapshot
  /** After the latency runs, after a GC: the baseline of the throughput run. */
  before: MemorySnapshot
  /** Right after the throughput run completes, before any GC. */
  afterNoGc: MemorySnapshot
  /** After the throughput run, after a GC (what is retained). */
  after: MemorySnapshot
  /** Sampled every 50 ms during the throughput run. */
  peakRssBytes: number
  peakHeapUsedBytes: number
  /** CPU time (user + system, all threads) the process used during the throughput run, and the run's wall time. */
  cpuMs: number
  cpuWallMs: number
  deltaRssBytes: number
  deltaHeapUsedBytes: number
}

export interface DmResult {
  messageBytes: number
  /** Envelopes were end-to-end encrypted (false: benchmarkWithoutE2ee on both ends). */
  e2ee: boolean
  latency: DmLatency
  throughput: DmThroughput
  /** One entry per OS process (one if both peers share the harness's process). */
  memory: ProcessMemory[]
}

export interface DmRunOptions {
  /** Parent of the two Messengers' data directories (the caller removes it). */
  dataRoot: string
  /** A and B are the same OS process: report memory once, for the pair. */
  sharedProcess: boolean
  /**
   * Both Messengers with `benchmarkWithoutE2ee`: the same path with envelopes unencrypted,
   * to measure what E2EE adds. Data directories get a `-plain` suffix.
   */
  plain?: boolean
}

export function pairs (run: DmLatencyRun, warmup: number, end: (i: number) => number): number[] {
  const out: number[] = []
  for (let i = warmup; i < run.sentAt.length; i++) out.push(end(i) - (run.sentAt[i] as number))
  return out
}

/** Send -> arrival at `b` of each message of a one-way run after warm-up (b's arrival times by tag). */
export async function arrivalLatencies (run: DmLatencyRun, b: PeerHandle, warmup: number, what: string): Promise<number[]> {
  const { arrivals } = await b.call('dm.arrivals', {})
  return pairs(run, warmup, (i) => {
    const tag = run.tags[i] as string
    const t = arrivals[tag]
    if (t === undefined) throw new Error(`${what}: B has no arrival time for ${tag}`)
    return t
  })
}

async function latency (a: PeerHandle, b: PeerHandle, to: string, o: DmOptions): Promise<DmLatency> {
  const callTimeout = (o.latencyWarmup + Math.max(o.latencySamples, o.roundTripSamples)) * 50 + o.timeoutMs
  const common = { to, messageBytes: o.messageBytes, warmup: o.latencyWarmup, timeoutMs: o.timeoutMs }

  const oneWay = await a.call('dm.latency', { ...common, mode: 'one-way', samples: o.latencySamples }, callTimeout)
  const toReceived = await arrivalLatencies(oneWay, b, o.latencyWarmup, 'dm latency')

  const rt = await a.call('dm.latency', { ...common, mode: 'round-trip', samples: o.roundTripSamples }, callTimeout)
  await b.call('dm.arrivals', {})
  const roundTrip = summarize(pairs(rt, o.latencyWarmup, (i) => rt.replyAt[i] as number))

  return {
    toReceived: summarize(toReceived),
    toSendResolved: summarize(pairs(oneWay, o.latencyWarmup, (i) => oneWay.resolvedAt[i] as number)),
    toDelivered: summarize(pairs(oneWay, o.latencyWarmup, (i) => oneWay.deliveredAt[i] as number)),
    roundTrip,
    roundTripHalf: scaleSummary(roundTrip, 0.5)
  }
}

interface MemoryProbe {
  peer: PeerHandle
  label: string
  started: MemorySnapshot
  before?: MemorySnapshot
  gcAvailable?: boolean
}

export async function runDm (a: PeerHandle, b: PeerHandle, o: DmOptions, r: DmRunOptions): Promise<DmResult> {
  const callTimeout = o.timeoutMs * 2 + 10_000
  try {
    const plain = r.plain === true
    const suffix = plain ? '-dm-plain' : '-dm'
    const infoB = await b.call('dm.start', { dataDir: join(r.dataRoot, `${b.name}${suffix}`), plain })
    const infoA = await a.call('dm.start', { dataDir: join(r.dataRoot, `${a.name}${suffix}`), plain })
    await a.call('dm.addContact', { invite: infoB.invite, name: 'bench-b' })
    // B replies in the round-trip run; with A as an invited contact it need not wait for the
    // inbound-contact path to learn A's address.
    await b.call('dm.addContact', { invite: infoA.invite, name: 'bench-a' })

    const members: Array<[PeerHandle, string]> = r.sharedProcess
      ? [[a, 'A + B (one process)']]
      : [[a, 'A (sender)'], [b, 'B (receiver)']]
    const probes: MemoryProbe[] = []
    for (const [peer, label] of members) {
      probes.push({ peer, label, started: (await peer.call('mem.snapshot', { gc: false })).memory })
    }

    const lat = await latency(a, b, infoB.peerId, o)

    // Throughput: N sends from A, at most maxOutstanding sendText promises pending at once.
    for (const p of probes) {
      const s = await p.peer.call('mem.snapshot', { gc: true })
      p.before = s.memory
      p.gcAvailable = s.gcAvailable
    }
    for (const p of probes) await p.peer.call('usage.start', {})
    const n = o.throughputMessages
    await b.call('dm.expect', { count: n })
    const [recv, sent] = await Promise.all([
      b.call('dm.waitReceived', { timeoutMs: o.timeoutMs }, callTimeout),
      a.call('dm.blast', { to: infoB.peerId, messages: n, maxOutstanding: o.maxOutstanding, messageBytes: o.messageBytes, timeoutMs: o.timeoutMs }, callTimeout)
    ])
    const memory: ProcessMemory[] = []
    for (const p of probes) {
      const usage = await p.peer.call('usage.stop', {})
      const afterNoGc = (await p.peer.call('mem.snapshot', { gc: false })).memory
      const after = (await p.peer.call('mem.snapshot', { gc: true })).memory
      const before = p.before ?? after
      memory.push({
        label: p.label,
        pid: p.peer.pid,
        gcAvailable: p.gcAvailable === true,
        started: p.started,
        before,
        afterNoGc,
        after,
        peakRssBytes: usage.peakRssBytes,
        peakHeapUsedBytes: usage.peakHeapUsedBytes,
        cpuMs: usage.cpuUserMs + usage.cpuSystemMs,
        cpuWallMs: usage.wallMs,
        deltaRssBytes: after.rssBytes - before.rssBytes,
        deltaHeapUsedBytes: after.heapUsedBytes - before.heapUsedBytes
      })
    }

    const receivedMs = recv.doneAt - sent.startedAt
    const deliveredMs = sent.deliveredAt - sent.startedAt
    const throughput: DmThroughput = {
      messages: n,
      maxOutstanding: o.maxOutstanding,
      complete: recv.complete && sent.complete,
      received: recv.received,
      delivered: sent.delivered,
      enqueueMs: sent.enqueuedAt - sent.startedAt,
      enqueuePerSec: rate(n, sent.enqueuedAt - sent.startedAt),
      receivedMs,
      receivedPerSec: rate(recv.received, receivedMs),
      deliveredMs,
      deliveredPerSec: rate(sent.delivered, deliveredMs)
    }
    return { messageBytes: o.messageBytes, e2ee: !plain, latency: lat, throughput, memory }
  } finally {
    await Promise.allSettled([a.call('dm.stop', {}), b.call('dm.stop', {})])
  }
}
