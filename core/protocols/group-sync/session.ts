import type { Stream } from '@libp2p/interface'
import { ParleyError } from '../../errors.js'
import { forComponent } from '../../logger.js'
import { MalformedFrameError, ProtocolLimitError } from '../errors.js'
import { encodeFrames, FrameDecoder, sendFrames } from '../framing.js'
import { chunkRecords, decodeSyncMessage, encodeSyncMessage, isSendableRecord, refusalError, refusalOf, type SyncKind, type SyncMessage } from './codec.js'
import { MAX_SYNC_FRAME_BYTES, SYNC_WINDOW } from './constants.js'
import { GroupSyncClosedError, GroupSyncTimeoutError } from './errors.js'

const log = forComponent('group-sync')

/**
 * Frames one side may hold decoded but not yet read: at most SYNC_WINDOW unacknowledged
 * STEP2 frames (the sender may not have more in flight), plus as many ACKs for our own
 * STEP2 frames, a STEP1, a DONE and a REFUSAL.
 */
const MAX_QUEUED_FRAMES = 2 * SYNC_WINDOW + 3
/** How long a failing side waits for its refusal to reach the transport before it resets the stream. */
const REFUSAL_FLUSH_MS = 1_000

type Of<K extends SyncKind> = Extract<SyncMessage, { kind: K }>

/**
 * One side of a group-sync stream, client or server: a bounded frame reader with an idle
 * timeout per read, and the two halves of step 2 both sides run (send records in chunks
 * under a window of acknowledgements; receive chunks, apply each, acknowledge it).
 *
 * Inbound bytes are decoded as they arrive (a listener, not an async iterator, so nothing
 * queues unbounded); a peer that sends more than the window allows is refused
 * (ProtocolLimitError). A refusal from the other side is thrown as its named error.
 *
 * @example
 * const session = new SyncSession(stream, SYNC_IDLE_TIMEOUT_MS)
 * await session.send({ kind: 'step1', group, stateVector })
 * const theirs = await session.expect('step1')
 * const received = await session.receiveRecords(async (records) => { await apply(records) })
 */
export class SyncSession {
  /** The other side's refusal, once one arrived (it may be read before or after a reset). */
  remoteRefusal: ParleyError | undefined
  private readonly decoder = new FrameDecoder(MAX_SYNC_FRAME_BYTES)
  private readonly queue: SyncMessage[] = []
  private queuedChunks = 0
  private waiter: { resolve: (msg: SyncMessage) => void, reject: (err: Error) => void, timer: ReturnType<typeof setTimeout> } | undefined
  /** Thrown by `next` once the queue is empty: how the stream ended, or the frame that broke it. */
  private terminal: Error | undefined
  private failed = false

  constructor (readonly stream: Stream, private readonly idleTimeoutMs: number) {
    stream.addEventListener('message', (evt) => { this.onData(evt.data) })
    stream.addEventListener('remoteCloseWrite', () => {
      try {
        this.decoder.end()
        this.end(new GroupSyncClosedError('the peer closed the stream before the sync was done'))
      } catch (err) {
        this.broken(err as Error)
      }
    })
    stream.addEventListener('close', (evt) => { this.end(evt.error ?? new GroupSyncClosedError('the stream closed before the sync was done')) })
  }

  /** The next frame from the other side; throws on a bad frame, the stream's end, or GroupSyncTimeoutError. */
  async next (): Promise<SyncMessage> {
    const queued = this.queue.shift()
    if (queued !== undefined) {
      if (queued.kind === 'step2') this.queuedChunks--
      return queued
    }
    if (this.terminal !== undefined) throw this.terminal
    return await new Promise<SyncMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined
        reject(new GroupSyncTimeoutError(`no frame from the peer for ${this.idleTimeoutMs} ms`))
      }, this.idleTimeoutMs)
      this.waiter = { resolve, reject, timer }
    })
  }

  /** The next frame, which must be of `kind` (MalformedFrameError otherwise; a refusal is thrown as its error). */
  async expect<K extends SyncKind> (...kinds: K[]): Promise<Of<K>> {
    const msg = await this.next()
    if (msg.kind === 'refusal') throw this.remoteRefusal ?? refusalError(msg.name, msg.message)
    if (!(kinds as SyncKind[]).includes(msg.kind)) throw new MalformedFrameError(`expected ${kinds.join(' or ')}, got ${msg.kind}`)
    return msg as Of<K>
  }

  /** Write one frame; throws how the stream ended if it did (the peer went away, or we gave up). */
  async send (msg: SyncMessage): Promise<void> {
    if (this.terminal !== undefined) throw this.terminal
    await sendFrames(this.stream, [encodeSyncMessage(msg)])
  }

  /**
   * Step 2, sending: `records` in STEP2 chunks with at most SYNC_WINDOW unacknowledged, then
   * DONE, then the remaining ACKs. Records that cannot travel (empty, over MAX_RECORD_BYTES)
   * are skipped. Returns how many records went.
   */
  async sendRecords (records: readonly Uint8Array[]): Promise<number> {
    const sendable = records.filter(isSendableRecord)
    if (sendable.length < records.length) log('skipping %d records that are empty or too large to send', records.length - sendable.length)
    let inflight = 0
    for (const chunk of chunkRecords(sendable)) {
      for (; inflight >= SYNC_WINDOW; inflight--) await this.expect('ack')
      await this.send({ kind: 'step2', records: chunk })
      inflight++
    }
    await this.send({ kind: 'done', count: sendable.length })
    for (; inflight > 0; inflight--) await this.expect('ack')
    return sendable.length
  }

  /**
   * Step 2, receiving: hand each STEP2 chunk to `apply` as it arrives and acknowledge it once
   * `apply` resolves (so acknowledged means durable); stop at DONE, whose count must match.
   * Returns how many records arrived.
   */
  async receiveRecords (apply: (records: Uint8Array[]) => Promise<void>): Promise<number> {
    let received = 0
    while (true) {
      const msg = await this.expect('step2', 'done')
      if (msg.kind === 'done') {
        if (msg.count !== received) throw new MalformedFrameError(`the peer announced ${msg.count} records but sent ${received}`)
        return received
      }
      await apply(msg.records)
      received += msg.records.length
      await this.send({ kind: 'ack' })
    }
  }

  /** Close our side gracefully: everything written reaches the peer. */
  async finish (): Promise<void> {
    await this.stream.close()
  }

  /**
   * Give up: unless the peer refused first, tell it why (a REFUSAL naming the error, when
   * it is a ParleyError), let that reach the transport, then reset the stream.
   */
  async fail (err: Error): Promise<void> {
    if (this.failed) return
    this.failed = true
    this.broken(err)
    if (err instanceof ParleyError && this.remoteRefusal === undefined && this.stream.writeStatus === 'writable') {
      try {
        this.stream.send(encodeFrames([encodeSyncMessage(refusalOf(err))]))
        await this.stream.close({ signal: AbortSignal.timeout(REFUSAL_FLUSH_MS) })
      } catch {
        // the peer is gone or stalled: the reset below is all it gets
      }
    }
    this.stream.abort(err)
  }

  private onData (data: Parameters<FrameDecoder['push']>[0]): void {
    if (this.terminal !== undefined) return
    try {
      for (const frame of this.decoder.push(data)) {
        const msg = decodeSyncMessage(frame)
        if (msg.kind === 'refusal') this.remoteRefusal ??= refusalError(msg.name, msg.message)
        if (msg.kind === 'step2' && ++this.queuedChunks > SYNC_WINDOW) {
          throw new ProtocolLimitError(`more than ${SYNC_WINDOW} unacknowledged step 2 frames`)
        }
        this.deliver(msg)
      }
    } catch (err) {
      this.broken(err as Error)
    }
  }

  private deliver (msg: SyncMessage): void {
    const waiter = this.waiter
    if (waiter !== undefined) {
      this.waiter = undefined
      clearTimeout(waiter.timer)
      if (msg.kind === 'step2') this.queuedChunks--
      waiter.resolve(msg)
      return
    }
    this.queue.push(msg)
    if (this.queue.length > MAX_QUEUED_FRAMES) throw new ProtocolLimitError(`more than ${MAX_QUEUED_FRAMES} frames unread`)
  }

  /** The stream ended: what is queued is still read, then `err`. */
  private end (err: Error): void {
    this.terminal ??= err
    this.wake()
  }

  /** A frame broke the rules (or we gave up): nothing queued is read any more. */
  private broken (err: Error): void {
    this.terminal ??= err
    this.queue.length = 0
    this.queuedChunks = 0
    this.wake()
  }

  private wake (): void {
    const waiter = this.waiter
    if (waiter === undefined || this.terminal === undefined) return
    this.waiter = undefined
    clearTimeout(waiter.timer)
    waiter.reject(this.terminal)
  }
}
