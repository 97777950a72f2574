/**
 * One side of the floor scenario: a bare libp2p node (TCP + Noise + Yamux, as in
 * core/net/node.ts) with no Parley code in the path except the length-prefix decoder. The
 * same class runs in a peer process (peer-process.ts) or, for the in-process figures, twice in
 * the harness's own process. Every timestamp it hands out is on the shared clock (sharedNow),
 * so the orchestrator (floor.ts) can subtract one peer's times from the other's.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Uint8ArrayList } from 'uint8arraylist'
import { createNode, type ParleyLibp2p } from '../../../core/net/node.js'
import { encodeFrames, FrameDecoder } from '../../../core/protocols/framing.js'
import { Countdown, sharedNow } from '../util.js'

const ECHO = '/parley-bench/echo/1.0.0'
const SINK = '/parley-bench/sink/1.0.0'

export interface EchoParams {
  addrs: string[]
  messageBytes: number
  warmup: number
  samples: number
}

export interface EchoRun {
  /** Per message, warm-up included: when the sender called stream.send (shared clock). */
  sentAt: number[]
  /** Per message, warm-up included: send -> whole echo read back, in ms. */
  rtt: number[]
}

export interface SinkSendParams {
  messages: number
  framesPerSend: number
  messageBytes: number
}

export interface SinkSendRun {
  /** Just before the first stream.send (shared clock). */
  startedAt: number
  /** After the last stream.send returned (or its drain). */
  sendsDoneAt: number
  /** stream.send returned false this many times (the sender then awaited onDrain). */
  drainWaits: number
}

export interface SinkWaitResult {
  /** Frames counted since sinkExpect. */
  received: number
  complete: boolean
  /** When the first and the last of those frames were decoded (shared clock). */
  firstAt: number
  lastAt: number
}

/** Send, then wait for the transport to drain if it asked us to. Returns true if it had to wait. */
async function send (stream: Stream, data: Uint8Array): Promise<boolean> {
  if (stream.send(data)) return false
  await stream.onDrain()
  return true
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

function logError (err: unknown): void {
  console.error('floor stream handler failed:', err)
}

export class FloorPeer {
  private node: ParleyLibp2p | undefined
  private messageBytes = 100
  /** Arrival time (shared clock) of each whole echo message on the latest echo stream. */
  private echoArrivals: number[] = []
  private sinkStream: Stream | undefined
  private sinkReceived = 0
  private sinkBase = 0
  private sinkFirstAt = Number.NaN
  private sinkLastAt = Number.NaN
  private sinkDone: Countdown | undefined

  async start (messageBytes: number): Promise<string[]> {
    if (this.node !== undefined) throw new Error('floor node already started')
    this.messageBytes = messageBytes
    const node = await createNode({
      privateKey: await generateKeyPair('Ed25519'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
      inboundConnectionThreshold: 1000
    })
    await node.start()
    this.node = node
    await node.handle(ECHO, (stream) => { this.echo(stream).catch(logError) })
    await node.handle(SINK, (stream) => { this.sink(stream).catch(logError) })
    return node.getMultiaddrs().map(String)
  }

  async dial (addrs: string[]): Promise<void> {
    await this.requireNode().dial(toMultiaddrs(addrs))
  }

  /** Echo whatever arrives; note when each whole message of messageBytes has arrived. */
  private async echo (stream: Stream): Promise<void> {
    const arrivals: number[] = []
    this.echoArrivals = arrivals
    const size = this.messageBytes
    let bytes = 0
    try {
      for await (const chunk of stream) {
        const t = sharedNow()
        bytes += chunk.byteLength
        while (arrivals.length < Math.floor(bytes / size)) arrivals.push(t)
        await send(stream, chunk instanceof Uint8Array ? chunk : chunk.subarray())
      }
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  /** Count length-prefixed frames on every sink stream. */
  private async sink (stream: Stream): Promise<void> {
    const decoder = new FrameDecoder(64 * 1024)
    try {
      for await (const chunk of stream) {
        const frames = decoder.push(chunk)
        let n = 0
        while (frames.next().done !== true) n++
        if (n === 0) continue
        const t = sharedNow()
        if (this.sinkReceived === this.sinkBase) this.sinkFirstAt = t
        this.sinkReceived += n
        this.sinkLastAt = t
        this.sinkDone?.poke()
      }
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  async runEcho (p: EchoParams): Promise<EchoRun> {
    const stream = await this.requireNode().dialProtocol(toMultiaddrs(p.addrs), ECHO)
    const it = stream[Symbol.asyncIterator]()
    const msg = new Uint8Array(p.messageBytes).fill(0x61)
    const sentAt: number[] = []
    const rtt: number[] = []
    for (let i = 0; i < p.warmup + p.samples; i++) {
      msg[0] = i & 0xff
      const t0 = sharedNow()
      await send(stream, msg)
      await readBytes(it, msg.byteLength)
      const t1 = sharedNow()
      sentAt.push(t0)
      rtt.push(t1 - t0)
    }
    await stream.close()
    return { sentAt, rtt }
  }

  /** The receiving side's arrival times for the last echo run (shared clock). */
  takeEchoArrivals (): number[] {
    const a = this.echoArrivals
    this.echoArrivals = []
    return a
  }

  async sinkOpen (addrs: string[]): Promise<void> {
    if (this.sinkStream !== undefined) throw new Error('sink stream already open')
    this.sinkStream = await this.requireNode().dialProtocol(toMultiaddrs(addrs), SINK)
  }

  async sinkSend (p: SinkSendParams): Promise<SinkSendRun> {
    const stream = this.sinkStream
    if (stream === undefined) throw new Error('sink stream not open')
    const n = p.messages
    let drainWaits = 0
    const startedAt = sharedNow()
    for (let i = 0; i < n; i += p.framesPerSend) {
      const frames: Uint8Array[] = []
      for (let j = i; j < Math.min(n, i + p.framesPerSend); j++) {
        const m = new Uint8Array(p.messageBytes)
        m.fill(0x62)
        m[0] = j & 0xff
        frames.push(m)
      }
      if (await send(stream, encodeFrames(frames))) drainWaits++
    }
    return { startedAt, sendsDoneAt: sharedNow(), drainWaits }
  }

  async sinkClose (): Promise<void> {
    const s = this.sinkStream
    this.sinkStream = undefined
    await s?.close()
  }

  /** Count the next `count` frames from now on. */
  sinkExpect (count: number): void {
    this.sinkBase = this.sinkReceived
    this.sinkFirstAt = Number.NaN
    this.sinkLastAt = Number.NaN
    this.sinkDone = new Countdown(this.sinkBase + count, () => this.sinkReceived)
  }

  async sinkWait (timeoutMs: number): Promise<SinkWaitResult> {
    const done = this.sinkDone
    if (done === undefined) throw new Error('sinkExpect was not called')
    const complete = await done.wait(timeoutMs)
    this.sinkDone = undefined
    return { received: this.sinkReceived - this.sinkBase, complete, firstAt: this.sinkFirstAt, lastAt: this.sinkLastAt }
  }

  async stop (): Promise<void> {
    const node = this.node
    this.node = undefined
    this.sinkStream = undefined
    await node?.stop()
  }

  private requireNode (): ParleyLibp2p {
    if (this.node === undefined) throw new Error('floor node not started')
    return this.node
  }
}

function toMultiaddrs (addrs: string[]): Multiaddr[] {
  return addrs.map((a) => multiaddr(a))
}
