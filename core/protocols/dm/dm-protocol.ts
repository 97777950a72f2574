import { peerIdFromString } from '@libp2p/peer-id'
import type { AbortOptions, Connection, Libp2p, Startable, Stream } from '@libp2p/interface'
import type { MessageId, PeerIdString } from '../../ids.js'
import { forComponent } from '../../logger.js'
import { FrameDecoder, sendFrames } from '../framing.js'
import { ProtocolLimitError } from '../errors.js'
import { readAck, readSealed, writeAck, type Rejection, type SealedFrame } from './codec.js'
import { DM_PROTOCOL, MAX_ACK_BYTES, MAX_ACK_IDS, MAX_DM_STREAMS, MAX_PENDING_BYTES, MAX_SEALED_BYTES, SEND_WINDOW } from './constants.js'
import { DmStreamClosedError } from './errors.js'

const log = forComponent('dm')

/** The part of libp2p the DM protocol needs. */
export type DmHost = Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol'>

/**
 * Where received frames go. It must store them durably before it resolves: the ack goes
 * out only after, so a crash before the write means the sender sends again. It answers
 * with the frames it could not take (e.g. that do not decrypt); the rest are acked.
 */
export type EnvelopeSink = (from: PeerIdString, frames: SealedFrame[]) => Promise<Rejection[]>

/**
 * `/parley/dm/1.0.0`: long-lived streams carrying batches of envelopes one way and acks
 * the other. Inbound: frames are decoded with a hard size bound, validated, handed to the
 * sink in batches, then acknowledged. Any bad frame resets the stream with a named error.
 *
 * @example
 * const dm = new DmProtocol(libp2p, async (from, envs) => { await store.save(from, envs) })
 * await dm.start()
 * const ch = await dm.open(peerId)
 * ch.onAck = (ids) => console.log('delivered', ids)
 * await ch.write([envelopeBytes])
 */
export class DmProtocol implements Startable {
  private readonly inbound = new Set<Stream>()
  private running = false
  /** Inbound streams reset, by error name (bad frames, limits): for tests and metrics. The sink counts what it rejects. */
  readonly rejections = new Map<string, number>()

  constructor (private readonly host: DmHost, private readonly sink: EnvelopeSink) {}

  async start (): Promise<void> {
    await this.host.handle(DM_PROTOCOL, (stream, connection) => {
      this.handleInbound(stream, connection).catch((err: unknown) => { log.error('inbound stream failed: %e', err) })
    }, {
      maxInboundStreams: MAX_DM_STREAMS,
      maxOutboundStreams: MAX_DM_STREAMS,
      // Chat runs over relayed (limited) connections too; envelopes are small.
      runOnLimitedConnection: true
    })
    this.running = true
  }

  async stop (): Promise<void> {
    this.running = false
    await this.host.unhandle(DM_PROTOCOL)
    for (const s of this.inbound) s.abort(new DmStreamClosedError('node stopping'))
    this.inbound.clear()
  }

  /** Open an outbound channel to a peer, dialling it if needed. */
  async open (peer: PeerIdString, options: AbortOptions = {}): Promise<DmChannel> {
    const stream = await this.host.dialProtocol(peerIdFromString(peer), DM_PROTOCOL, {
      ...options,
      runOnLimitedConnection: true
    })
    return new DmChannel(stream)
  }

  /**
   * Receiver-side group commit: frames are decoded as they arrive; while one batch is being
   * stored, everything that arrives meanwhile gathers into the next batch (one store write,
   * one ack), so the receiver keeps up however small the sender's writes are.
   */
  private async handleInbound (stream: Stream, connection: Connection): Promise<void> {
    if (!this.running) { stream.abort(new DmStreamClosedError('node stopping')); return }
    const from = connection.remotePeer.toString() as PeerIdString
    const decoder = new FrameDecoder(MAX_SEALED_BYTES)
    const pending: SealedFrame[] = []
    let pendingBytes = 0
    let busy = false
    let failed = false
    let remoteDone = false
    this.inbound.add(stream)

    const fail = (err: Error): void => {
      if (failed) return
      failed = true
      log('resetting dm stream from %s: %s', from, err.name)
      this.rejections.set(err.name, (this.rejections.get(err.name) ?? 0) + 1)
      stream.abort(err)
    }
    const finishIfDone = (): void => {
      if (!remoteDone || busy || failed || pending.length > 0) return
      stream.close().catch((err: unknown) => { stream.abort(err as Error) })
    }
    const drain = async (): Promise<void> => {
      busy = true
      try {
        while (pending.length > 0 && !failed) {
          const batch = pending.splice(0, MAX_ACK_IDS)
          pendingBytes = 0
          const rejected = await this.sink(from, batch)
          const refused = new Set(rejected.map((r) => r.id))
          await sendFrames(stream, [writeAck(batch.filter((e) => !refused.has(e.id)).map((e) => e.id), rejected)])
        }
      } catch (err) {
        fail(err as Error)
      } finally {
        busy = false
      }
      finishIfDone()
    }

    stream.addEventListener('message', (evt) => {
      if (failed) return
      try {
        for (const frame of decoder.push(evt.data)) {
          pending.push(readSealed(frame))
          pendingBytes += frame.byteLength
        }
        if (pending.length > SEND_WINDOW * 2 || pendingBytes > MAX_PENDING_BYTES) {
          throw new ProtocolLimitError(`${pending.length} envelopes (${pendingBytes} bytes) outstanding exceeds the window`)
        }
      } catch (err) {
        fail(err as Error)
        return
      }
      if (!busy && pending.length > 0) void drain()
    })
    stream.addEventListener('remoteCloseWrite', () => {
      remoteDone = true
      try {
        decoder.end()
      } catch (err) {
        fail(err as Error)
        return
      }
      finishIfDone()
    })
    await new Promise<void>((resolve) => {
      stream.addEventListener('close', () => { resolve() }, { once: true })
    })
    this.inbound.delete(stream)
  }
}

/**
 * The sending end of one DM stream. `write` resolves once the bytes are handed to the
 * transport (respecting backpressure); `onAck` fires as the receiver confirms storage and
 * `onReject` for envelopes it could not take; `closed` resolves when the stream is gone,
 * with the reason if it failed.
 */
export class DmChannel {
  onAck: (ids: MessageId[]) => void = () => {}
  onReject: (rejected: Rejection[]) => void = () => {}
  readonly closed: Promise<Error | undefined>

  constructor (private readonly stream: Stream) {
    this.closed = this.readAcks()
  }

  async write (envelopes: readonly Uint8Array[]): Promise<void> {
    await sendFrames(this.stream, envelopes)
  }

  async close (): Promise<void> {
    await this.stream.close().catch(() => { this.stream.abort(new DmStreamClosedError('close failed')) })
  }

  abort (err: Error): void {
    this.stream.abort(err)
  }

  private async readAcks (): Promise<Error | undefined> {
    const decoder = new FrameDecoder(MAX_ACK_BYTES)
    try {
      for await (const chunk of this.stream) {
        for (const frame of decoder.push(chunk)) {
          const ack = readAck(frame)
          if (ack.rejected.length > 0) this.onReject(ack.rejected)
          if (ack.ids.length > 0) this.onAck(ack.ids)
        }
      }
      decoder.end()
      return new DmStreamClosedError('receiver closed the stream')
    } catch (err) {
      this.stream.abort(err as Error)
      return err as Error
    }
  }
}
