/**
 * The floor: what the bare libp2p stack (TCP + Noise + Yamux, as in core/net/node.ts) does
 * on loopback with a warm long-lived stream and no Parley code in the path except the
 * length-prefix decoder. Parley's DM figures are compared against these. A dials B; each
 * side is a FloorPeer (floor-peer.ts) behind a PeerHandle, in its own process or not.
 */
import type { PeerHandle } from '../peer.js'
import { rate, scaleSummary, summarize, type LatencySummary } from '../stats.js'

export interface FloorOptions {
  messageBytes: number
  echoWarmup: number
  echoSamples: number
  throughputMessages: number
  /** Frames per stream.send in the coalesced run (the DM outbox also coalesces writes). */
  coalesce: number
  timeoutMs: number
}

export interface FloorThroughput {
  messages: number
  framesPerSend: number
  /** Frames B counted (all of them unless the run timed out). */
  received: number
  complete: boolean
  /** A's first stream.send -> B decoded the last frame (shared clock). */
  elapsedMs: number
  msgsPerSec: number
  /** stream.send returned false this many times (the sender then awaited onDrain). */
  drainWaits: number
}

export interface FloorResult {
  messageBytes: number
  /** A: send -> echo read back, on A's clock alone. */
  echoRtt: LatencySummary
  /** RTT / 2: the one-way figure the targets compare against. */
  oneWayEstimate: LatencySummary
  /** A's send -> B has the whole message, on the shared clock (cross-check of RTT / 2). */
  oneWayClock: LatencySummary
  throughput: FloorThroughput
  throughputCoalesced: FloorThroughput
}

const WARM_FRAMES = 1000

async function measureThroughput (a: PeerHandle, b: PeerHandle, addrs: string[], o: FloorOptions, framesPerSend: number): Promise<FloorThroughput> {
  const callTimeout = o.timeoutMs + 10_000
  await a.call('floor.sinkOpen', { addrs })
  try {
    // Warm the stream (and JIT) with a few frames before timing.
    await b.call('floor.sinkExpect', { count: WARM_FRAMES })
    await a.call('floor.sinkSend', { messages: WARM_FRAMES, framesPerSend, messageBytes: o.messageBytes }, callTimeout)
    const warm = await b.call('floor.sinkWait', { timeoutMs: o.timeoutMs }, callTimeout)
    if (!warm.complete) throw new Error(`floor warm-up: B counted ${warm.received}/${WARM_FRAMES} frames`)

    const n = o.throughputMessages
    await b.call('floor.sinkExpect', { count: n })
    const [recv, sent] = await Promise.all([
      b.call('floor.sinkWait', { timeoutMs: o.timeoutMs }, callTimeout),
      a.call('floor.sinkSend', { messages: n, framesPerSend, messageBytes: o.messageBytes }, callTimeout)
    ])
    const elapsedMs = recv.lastAt - sent.startedAt
    return { messages: n, framesPerSend, received: recv.received, complete: recv.complete, elapsedMs, msgsPerSec: rate(recv.received, elapsedMs), drainWaits: sent.drainWaits }
  } finally {
    await a.call('floor.sinkClose', {})
  }
}

export async function runFloor (a: PeerHandle, b: PeerHandle, o: FloorOptions): Promise<FloorResult> {
  const callTimeout = o.timeoutMs + 10_000
  try {
    const { addrs } = await b.call('floor.start', { messageBytes: o.messageBytes })
    await a.call('floor.start', { messageBytes: o.messageBytes })
    await a.call('floor.dial', { addrs })

    const echo = await a.call('floor.echo', { addrs, messageBytes: o.messageBytes, warmup: o.echoWarmup, samples: o.echoSamples }, callTimeout)
    const { arrivals } = await b.call('floor.echoArrivals', {})
    const total = o.echoWarmup + o.echoSamples
    if (arrivals.length !== total) throw new Error(`floor echo: B saw ${arrivals.length} whole messages, expected ${total}`)
    const oneWay: number[] = []
    for (let i = o.echoWarmup; i < total; i++) oneWay.push((arrivals[i] as number) - (echo.sentAt[i] as number))
    const echoRtt = summarize(echo.rtt.slice(o.echoWarmup))

    const throughput = await measureThroughput(a, b, addrs, o, 1)
    const throughputCoalesced = await measureThroughput(a, b, addrs, o, o.coalesce)
    return {
      messageBytes: o.messageBytes,
      echoRtt,
      oneWayEstimate: scaleSummary(echoRtt, 0.5),
      oneWayClock: summarize(oneWay),
      throughput,
      throughputCoalesced
    }
  } finally {
    await Promise.allSettled([a.call('floor.stop', {}), b.call('floor.stop', {})])
  }
}
