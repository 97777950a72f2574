/**
 * The floor: what the bare libp2p stack (TCP + Noise + Yamux, as in core/net/node.ts) does
 * on loopback with a warm long-lived stream and no Parley code in the path except the
 * length-prefix decoder. Parley's DM figures are compared against these.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import { createNode, type ParleyLibp2p } from '../../../core/net/node.js'
import { encodeFrames, FrameDecoder } from '../../../core/protocols/framing.js'
import { rate, scaleSummary, summarize, type LatencySummary } from '../stats.js'
import { now, withTimeout } from '../util.js'

const ECHO = '/parley-bench/echo/1.0.0'
const SINK = '/parley-bench/sink/1.0.0'

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
  elapsedMs: number
  msgsPerSec: number
  /** stream.send returned false this many times (the sender then awaited onDrain). */
  drainWaits: number
}

export interface FloorResult {
  messageBytes: number
  echoRtt: LatencySummary
  /** RTT / 2: an estimate of one-way latency on the bare stream. */
  oneWayEstimate: LatencySummary
  throughput: FloorThroughput
  throughputCoalesced: FloorThroughput
}

/** Send, then wait for the transport to drain if it asked us to. Returns true if it had to wait. */
async function send (stream: Stream, data: Uint8Array): Promise<boolean> {
  if (stream.send(data)) return false
  await stream.onDrain()
  return true
}

async function echoHandler (stream: Stream): Promise<void> {
  try {
    for await (const chunk of stream) await send(stream, chunk instanceof Uint8Array ? chunk : chunk.subarray())
    await stream.close()
  } catch (err) {
    stream.abort(err as Error)
  }
}

/** Counts length-prefixed frames on every sink stream and reports progress. */
class SinkCounter {
  received = 0
  lastAt = 0
  onFrame: () => void = () => {}

  readonly handler = async (stream: Stream): Promise<void> => {
    const decoder = new FrameDecoder(64 * 1024)
    try {
      for await (const chunk of stream) {
        const frames = decoder.push(chunk)
        while (frames.next().done !== true) {
          this.received++
          this.lastAt = now()
        }
        this.onFrame()
      }
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    }
  }
}

async function newNode (): Promise<ParleyLibp2p> {
  const node = await createNode({
    privateKey: await generateKeyPair('Ed25519'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
    inboundConnectionThreshold: 1000
  })
  await node.start()
  return node
}

/** Read from the iterator until `bytes` bytes have arrived. */
async function readBytes (it: AsyncIterator<Uint8Array | Uint8ArrayList>, bytes: number): Promise<void> {
  let got = 0
  while (got < bytes) {
    const r = await it.next()
    if (r.done === true) throw new Error('echo stream ended early')
    got += r.value.byteLength
  }
}

async function measureEcho (a: ParleyLibp2p, b: ParleyLibp2p, o: FloorOptions): Promise<LatencySummary> {
  const stream = await a.dialProtocol(b.getMultiaddrs(), ECHO)
  const it = stream[Symbol.asyncIterator]()
  const msg = new Uint8Array(o.messageBytes).fill(0x61)
  const samples: number[] = []
  for (let i = 0; i < o.echoWarmup + o.echoSamples; i++) {
    msg[0] = i & 0xff
    const t0 = now()
    await send(stream, msg)
    await readBytes(it, msg.byteLength)
    const t1 = now()
    if (i >= o.echoWarmup) samples.push(t1 - t0)
  }
  await stream.close()
  return summarize(samples)
}

async function measureThroughput (a: ParleyLibp2p, b: ParleyLibp2p, sink: SinkCounter, o: FloorOptions, framesPerSend: number): Promise<FloorThroughput> {
  const stream = await a.dialProtocol(b.getMultiaddrs(), SINK)
  // Warm the stream (and JIT) with a few frames before timing.
  const warm = 1000
  const start0 = sink.received
  const body = new Uint8Array(o.messageBytes).fill(0x62)
  for (let i = 0; i < warm; i++) await send(stream, encodeFrames([body]))
  await waitForCount(sink, start0 + warm, o.timeoutMs)

  const base = sink.received
  const n = o.throughputMessages
  let drainWaits = 0
  const done = waitForCount(sink, base + n, o.timeoutMs)
  const t0 = now()
  for (let i = 0; i < n; i += framesPerSend) {
    const frames: Uint8Array[] = []
    for (let j = i; j < Math.min(n, i + framesPerSend); j++) {
      const m = new Uint8Array(o.messageBytes)
      m.fill(0x62)
      m[0] = j & 0xff
      frames.push(m)
    }
    if (await send(stream, encodeFrames(frames))) drainWaits++
  }
  await done
  const elapsedMs = sink.lastAt - t0
  await stream.close()
  return { messages: n, framesPerSend, elapsedMs, msgsPerSec: rate(n, elapsedMs), drainWaits }
}

async function waitForCount (sink: SinkCounter, target: number, timeoutMs: number): Promise<void> {
  if (sink.received >= target) return
  await withTimeout(new Promise<void>((resolve) => {
    sink.onFrame = () => {
      if (sink.received >= target) {
        sink.onFrame = () => {}
        resolve()
      }
    }
  }), timeoutMs, `${target} frames at the sink`)
}

function logError (err: unknown): void {
  console.error('floor stream handler failed:', err)
}

export async function runFloor (o: FloorOptions): Promise<FloorResult> {
  const a = await newNode()
  const b = await newNode()
  try {
    const sink = new SinkCounter()
    await b.handle(ECHO, (stream) => { echoHandler(stream).catch(logError) })
    await b.handle(SINK, (stream) => { sink.handler(stream).catch(logError) })
    await a.dial(b.getMultiaddrs())

    const echoRtt = await measureEcho(a, b, o)
    const throughput = await measureThroughput(a, b, sink, o, 1)
    const throughputCoalesced = await measureThroughput(a, b, sink, o, o.coalesce)
    return { messageBytes: o.messageBytes, echoRtt, oneWayEstimate: scaleSummary(echoRtt, 0.5), throughput, throughputCoalesced }
  } finally {
    await a.stop()
    await b.stop()
  }
}
