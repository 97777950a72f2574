/**
 * Parley direct messages end to end: two Messengers in this process, each with its own
 * level database in a temp dir, talking over loopback TCP. Every figure includes both
 * store writes (sender's saveOutgoing, receiver's saveIncoming) and the framing/validation.
 */
import type { MessengerEvent } from '../../../core/api/contract.js'
import { Messenger } from '../../../core/messenger.js'
import { collectGarbage, PeakSampler, snapshot, type MemorySnapshot } from '../memory.js'
import { rate, summarize, type LatencySummary } from '../stats.js'
import { Arrivals, Countdown, now, payload, tempDir, withTimeout } from '../util.js'

export interface DmOptions {
  messageBytes: number
  latencyWarmup: number
  latencySamples: number
  throughputMessages: number
  /** sendText promises kept outstanding at once during the throughput run. */
  maxOutstanding: number
  timeoutMs: number
}

export interface DmLatency {
  /** sendText called -> B's 'message' event for that text. */
  toReceived: LatencySummary
  /** sendText called -> its promise resolved (local durable write + enqueue). */
  toSendResolved: LatencySummary
  /** sendText called -> A's 'delivered' status event (ack back and persisted). */
  toDelivered: LatencySummary
}

export interface DmThroughput {
  messages: number
  maxOutstanding: number
  /** Whether every message arrived / was acknowledged before the timeout. */
  complete: boolean
  received: number
  delivered: number
  /** First sendText call -> last sendText promise resolved. */
  enqueueMs: number
  enqueuePerSec: number
  /** First sendText call -> B has all messages. */
  receivedMs: number
  receivedPerSec: number
  /** First sendText call -> A has seen every 'delivered' status. */
  deliveredMs: number
  deliveredPerSec: number
}

export interface DmMemory {
  /** Both Messengers live in this one process: the figures cover the pair. */
  note: string
  gcAvailable: boolean
  /** After start, warm-up and the latency run, after a GC. */
  before: MemorySnapshot
  /** Right after the throughput run completes, before any GC. */
  afterNoGc: MemorySnapshot
  /** After the throughput run, after a GC (what is retained). */
  after: MemorySnapshot
  peakRssBytes: number
  peakHeapUsedBytes: number
  deltaRssBytes: number
  deltaHeapUsedBytes: number
}

export interface DmResult {
  messageBytes: number
  latency: DmLatency
  throughput: DmThroughput
  memory: DmMemory
}

export async function runDm (o: DmOptions): Promise<DmResult> {
  const dirA = await tempDir('a')
  const dirB = await tempDir('b')
  const common = { listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, inboundConnectionThreshold: 1000 }
  const a = new Messenger({ dataDir: dirA.path, ...common })
  const b = new Messenger({ dataDir: dirB.path, ...common })
  const started: Messenger[] = []
  try {
    await a.start()
    started.push(a)
    await b.start()
    started.push(b)
    const bId = b.peerId
    await a.addContact(b.whoami().invite, 'bench-b')

    const received = new Arrivals()
    const delivered = new Arrivals()
    let tpReceived = 0
    let tpDelivered = 0
    let countDelivered = false
    const n = o.throughputMessages
    const recvDone = new Countdown(n, () => tpReceived)
    const delivDone = new Countdown(n, () => tpDelivered)

    b.on((e: MessengerEvent) => {
      if (e.event !== 'message') return
      if (e.text.startsWith('tp-')) {
        tpReceived++
        recvDone.poke()
      } else {
        received.record(e.text, now())
      }
    })
    a.on((e: MessengerEvent) => {
      if (e.event !== 'status' || e.status !== 'delivered') return
      if (countDelivered) {
        tpDelivered++
        delivDone.poke()
      } else {
        delivered.record(e.id, now())
      }
    })

    // Latency: one message at a time; each waits for receipt and delivery before the next,
    // so samples do not overlap. The first latencyWarmup are discarded (connection set-up,
    // stream open, JIT).
    const toReceived: number[] = []
    const toSendResolved: number[] = []
    const toDelivered: number[] = []
    for (let i = 0; i < o.latencyWarmup + o.latencySamples; i++) {
      const text = payload(`lat-${i}`, o.messageBytes)
      const t0 = now()
      const view = await a.sendText(bId, text)
      const tSent = now()
      const tRecv = await received.wait(text, o.timeoutMs)
      const tDeliv = await delivered.wait(view.id, o.timeoutMs)
      if (i >= o.latencyWarmup) {
        toReceived.push(tRecv - t0)
        toSendResolved.push(tSent - t0)
        toDelivered.push(tDeliv - t0)
      }
    }
    const latency: DmLatency = { toReceived: summarize(toReceived), toSendResolved: summarize(toSendResolved), toDelivered: summarize(toDelivered) }

    // Throughput: N sends, at most maxOutstanding sendText promises pending at once.
    const gcAvailable = collectGarbage()
    const before = snapshot()
    const peak = new PeakSampler()
    peak.start()
    countDelivered = true
    let next = 0
    const t0 = now()
    const worker = async (): Promise<void> => {
      while (next < n) {
        const i = next++
        await a.sendText(bId, payload(`tp-${i}`, o.messageBytes))
      }
    }
    const workers: Array<Promise<void>> = []
    for (let w = 0; w < Math.min(o.maxOutstanding, n); w++) workers.push(worker())
    await withTimeout(Promise.all(workers), o.timeoutMs, 'sendText calls')
    const enqueuedAt = now()
    const recvComplete = await recvDone.wait(o.timeoutMs)
    const delivComplete = await delivDone.wait(o.timeoutMs)
    const tEnd = now()
    peak.stop()
    const afterNoGc = snapshot()
    collectGarbage()
    const after = snapshot()

    const receivedMs = (recvDone.doneAt ?? tEnd) - t0
    const deliveredMs = (delivDone.doneAt ?? tEnd) - t0
    const throughput: DmThroughput = {
      messages: n,
      maxOutstanding: o.maxOutstanding,
      complete: recvComplete && delivComplete,
      received: tpReceived,
      delivered: tpDelivered,
      enqueueMs: enqueuedAt - t0,
      enqueuePerSec: rate(n, enqueuedAt - t0),
      receivedMs,
      receivedPerSec: rate(tpReceived, receivedMs),
      deliveredMs,
      deliveredPerSec: rate(tpDelivered, deliveredMs)
    }
    const memory: DmMemory = {
      note: 'both Messengers (two libp2p nodes, two level DBs) run in this one process; figures are for the pair',
      gcAvailable,
      before,
      afterNoGc,
      after,
      peakRssBytes: peak.peakRssBytes,
      peakHeapUsedBytes: peak.peakHeapUsedBytes,
      deltaRssBytes: after.rssBytes - before.rssBytes,
      deltaHeapUsedBytes: after.heapUsedBytes - before.heapUsedBytes
    }
    return { messageBytes: o.messageBytes, latency, throughput, memory }
  } finally {
    for (const m of started.reverse()) await m.stop()
    await dirA.remove()
    await dirB.remove()
  }
}
