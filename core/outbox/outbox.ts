import { ParleyError } from '../errors.js'
import type { MessageId, PeerIdString } from '../ids.js'
import { forComponent } from '../logger.js'
import type { Rejection } from '../protocols/dm/codec.js'
import type { OutboxRecord } from '../store/types.js'
import { Fifo } from './fifo.js'

const log = forComponent('outbox')

/** The receiver refused envelopes on this stream; it is closed and they are sent again. */
export class EnvelopesRejectedError extends ParleyError {
  static override name = 'EnvelopesRejectedError'
  override name = 'EnvelopesRejectedError'
}

/** An entry is given up (status failed) after the receiver rejected it this many times. */
export const MAX_REJECTIONS = 3

/** One outbound stream, as the outbox needs it (DmChannel implements it). */
export interface OutboundChannel {
  onAck: (ids: MessageId[]) => void
  onReject: (rejected: Rejection[]) => void
  readonly closed: Promise<Error | undefined>
  write(frames: readonly Uint8Array[]): Promise<void>
  abort(err: Error): void
  close(): Promise<void>
}

export interface OutboxHooks {
  /** Open a channel to the peer (dial if needed). Rejects if it cannot be reached. */
  open(peer: PeerIdString, signal: AbortSignal): Promise<OutboundChannel>
  /** Frames were handed to the transport. */
  sent(peer: PeerIdString, ids: MessageId[]): void
  /** The peer acknowledged durable storage: persist and tell the user. */
  delivered(peer: PeerIdString, ids: MessageId[]): Promise<void>
  /** These are given up: past their expiry without an ack, or rejected MAX_REJECTIONS times. */
  failed(peer: PeerIdString, ids: MessageId[]): Promise<void>
  /**
   * Turn queued entries into the frames that go on the wire (encryption), in order, just
   * before they are written or deposited. Without it an entry's `frame` is sent as is.
   */
  seal?(peer: PeerIdString, records: OutboxRecord[]): Promise<Uint8Array[]>
  /**
   * The receiver could not take these (e.g. it cannot decrypt them). Called before they are
   * sent again (so the hook can, say, reset the session).
   */
  rejected?(peer: PeerIdString, rejected: Rejection[]): Promise<void>
  /** True for errors (from open, seal or deposit) after which the queue waits for `kick` instead of retrying. */
  holds?(err: Error): boolean
  /**
   * The peer cannot be reached directly: hand these (oldest first) to a store-and-forward
   * path (the peer's relay mailboxes). Resolves with the ids now safely stored there, which
   * leave the queue; the rest are retried as usual. The hook seals them itself. Optional.
   */
  deposit?(peer: PeerIdString, records: OutboxRecord[]): Promise<MessageId[]>
}

export interface OutboxOptions {
  /** First retry delay; doubles per failed attempt up to maxBackoffMs, with jitter. */
  initialBackoffMs?: number
  maxBackoffMs?: number
  /** Frames unacknowledged on one stream at most. */
  window?: number
  /** Bytes per write at most (several frames are coalesced into one write). */
  maxWriteBytes?: number
  /**
   * Unacknowledged bytes on one stream at most, so a receiver busy storing a batch never
   * has to buffer more than this (libp2p resets streams whose read buffer overflows).
   */
  maxInflightBytes?: number
  now?: () => number
}

/**
 * The persisted job queue for direct messages. Entries come in only after the durable write
 * (the store's saveOutgoing); each recipient has its own ordered queue, one long-lived
 * stream, and a send window. Unacked envelopes go back to the head of the queue when a
 * stream dies and are retried with exponential backoff until acked or expired; a peer that
 * connects (`kick`) is retried at once. Delivery is at-least-once: the receiver dedupes.
 *
 * @example
 * const outbox = new Outbox(hooks)
 * outbox.enqueue(record)       // after store.saveOutgoing(...) resolved
 * outbox.kick(peerId)          // e.g. on libp2p 'peer:connect'
 */
export class Outbox {
  private readonly queues = new Map<PeerIdString, PeerQueue>()
  private stopped = false
  readonly options: Required<OutboxOptions>

  constructor (private readonly hooks: OutboxHooks, options: OutboxOptions = {}) {
    this.options = {
      initialBackoffMs: options.initialBackoffMs ?? 500,
      maxBackoffMs: options.maxBackoffMs ?? 30_000,
      window: options.window ?? 512,
      maxWriteBytes: options.maxWriteBytes ?? 256 * 1024,
      maxInflightBytes: options.maxInflightBytes ?? 1024 * 1024,
      now: options.now ?? Date.now
    }
  }

  enqueue (record: OutboxRecord): void {
    if (this.stopped) return
    this.queue(record.to).add(record)
  }

  /**
   * Drop an entry that has not been written to a stream yet (its record failed to save, or
   * a newer one supersedes it). True if it was still queued; false if it is already on its
   * way (or unknown).
   */
  cancel (peer: PeerIdString, id: MessageId): boolean {
    return this.queues.get(peer)?.cancel(id) ?? false
  }

  /** Retry this peer now (it just connected, the user accepted its new key, or asked). */
  kick (peer: PeerIdString): void {
    this.queues.get(peer)?.kick()
  }

  /** How many entries wait (queued or unacked) for a peer, or for everyone. */
  pending (peer?: PeerIdString): number {
    if (peer !== undefined) return this.queues.get(peer)?.size ?? 0
    let n = 0
    for (const q of this.queues.values()) n += q.size
    return n
  }

  async stop (): Promise<void> {
    this.stopped = true
    await Promise.all([...this.queues.values()].map(async (q) => { await q.stop() }))
  }

  private queue (peer: PeerIdString): PeerQueue {
    let q = this.queues.get(peer)
    if (q === undefined) {
      q = new PeerQueue(peer, this.hooks, this.options)
      this.queues.set(peer, q)
    }
    return q
  }
}

/** 'held': waiting for `kick` only (e.g. an identity change the user has to accept). */
type State = 'idle' | 'opening' | 'open' | 'waiting' | 'held' | 'stopped'

class PeerQueue {
  private state: State = 'idle'
  private readonly queued = new Fifo<OutboxRecord>()
  private readonly inflight = new Map<MessageId, OutboxRecord>()
  private inflightBytes = 0
  private channel: OutboundChannel | undefined
  private attempts = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private writing = false
  private held = false
  /** Rejections so far per entry (in memory: a restart gives each entry a fresh budget). */
  private readonly rejections = new Map<MessageId, number>()
  /** The rejected hook's work, which the next attempt waits for. */
  private recovering: Promise<void> = Promise.resolve()
  private readonly abort = new AbortController()

  constructor (
    private readonly peer: PeerIdString,
    private readonly hooks: OutboxHooks,
    private readonly options: Required<OutboxOptions>
  ) {}

  get size (): number {
    return this.queued.length + this.inflight.size
  }

  add (record: OutboxRecord): void {
    this.queued.push(record)
    if (this.state === 'idle') this.connect()
    else if (this.state === 'open') this.pump()
  }

  cancel (id: MessageId): boolean {
    return this.queued.removeWhere((r) => r.id === id).length > 0
  }

  kick (): void {
    if (this.state !== 'waiting' && this.state !== 'held') return
    clearTimeout(this.timer)
    this.held = false
    this.state = 'idle'
    if (this.size > 0) this.connect()
  }

  async stop (): Promise<void> {
    this.state = 'stopped'
    clearTimeout(this.timer)
    this.abort.abort()
    const ch = this.channel
    this.channel = undefined
    if (ch !== undefined) await ch.close().catch(() => {})
  }

  private connect (): void {
    this.state = 'opening'
    this.dropExpired()
    if (this.queued.length === 0) { this.state = 'idle'; return }
    this.recovering.then(async () => await this.hooks.open(this.peer, this.abort.signal)).then((ch) => {
      if (this.state !== 'opening') { ch.abort(new Error('outbox stopped')); return }
      this.channel = ch
      this.state = 'open'
      ch.onAck = (ids) => { this.onAck(ch, ids) }
      ch.onReject = (rejected) => { this.onReject(ch, rejected) }
      ch.closed.then((reason) => { this.onClosed(ch, reason) }, (err: unknown) => { this.onClosed(ch, err as Error) })
      this.pump()
    }, (err: unknown) => {
      if (this.state !== 'opening') return
      log('cannot reach %s: %s', this.peer, (err as Error).message)
      if (this.hooks.holds?.(err as Error) === true) { this.hold(); return }
      this.depositThenRetry()
    })
  }

  /** Unreachable: give what is queued to the deposit hook, keep the rest for the next try. */
  private depositThenRetry (): void {
    if (this.hooks.deposit === undefined || this.queued.length === 0) { this.retryLater(); return }
    const records = this.queued.removeWhere(() => true)
    this.hooks.deposit(this.peer, records).then((ids) => {
      const stored = new Set(ids)
      this.queued.unshiftAll(records.filter((r) => !stored.has(r.id)))
    }, (err: unknown) => {
      log('deposit for %s failed: %s', this.peer, (err as Error).message)
      this.queued.unshiftAll(records)
      if (this.hooks.holds?.(err as Error) === true) this.held = true
    }).finally(() => {
      if (this.state !== 'opening') return
      if (this.queued.length === 0) this.state = 'idle'
      else if (this.held) this.hold()
      else this.retryLater()
    })
  }

  private pump (): void {
    if (this.writing || this.state !== 'open' || this.channel === undefined) return
    const ch = this.channel
    const records: OutboxRecord[] = []
    const ids: MessageId[] = []
    let bytes = 0
    while (this.queued.length > 0 && this.inflight.size < this.options.window && bytes < this.options.maxWriteBytes &&
      (this.inflight.size === 0 || this.inflightBytes + (this.queued.peek()?.frame.byteLength ?? 0) <= this.options.maxInflightBytes)) {
      const rec = this.queued.shift() as OutboxRecord
      this.inflight.set(rec.id, rec)
      this.inflightBytes += rec.frame.byteLength
      records.push(rec)
      ids.push(rec.id)
      bytes += rec.frame.byteLength
    }
    if (records.length === 0) return
    this.writing = true
    const sealed = this.hooks.seal !== undefined ? this.hooks.seal(this.peer, records) : Promise.resolve(records.map((r) => r.frame))
    sealed.then(async (frames) => { await ch.write(frames) }).then(() => {
      this.writing = false
      this.hooks.sent(this.peer, ids)
      this.pump()
    }, (err: unknown) => {
      this.writing = false
      // Unacked entries go back to the queue when the channel closes (onClosed).
      if (this.hooks.holds?.(err as Error) === true) this.held = true
      ch.abort(err as Error)
    })
  }

  /** Wait for `kick` (the user must act first); what is queued stays queued. */
  private hold (): void {
    clearTimeout(this.timer)
    this.held = false
    this.state = 'held'
    log('queue for %s held until the user acts', this.peer)
  }

  /**
   * The receiver refused some envelopes: the stream is closed (everything unacked goes back
   * in order), the rejected hook runs (e.g. a session reset), then a normal retry. An entry
   * rejected MAX_REJECTIONS times is given up.
   */
  private onReject (ch: OutboundChannel, rejected: Rejection[]): void {
    if (ch !== this.channel) return
    const givenUp: MessageId[] = []
    for (const r of rejected) {
      const rec = this.inflight.get(r.id)
      if (rec === undefined) continue
      const n = (this.rejections.get(r.id) ?? 0) + 1
      if (n < MAX_REJECTIONS) { this.rejections.set(r.id, n); continue }
      this.rejections.delete(r.id)
      this.inflight.delete(r.id)
      this.inflightBytes -= rec.frame.byteLength
      givenUp.push(r.id)
    }
    if (givenUp.length > 0) {
      log('%s rejected %d entries %d times: giving up on them', this.peer, givenUp.length, MAX_REJECTIONS)
      this.hooks.failed(this.peer, givenUp).catch((err: unknown) => { log.error('recording failure for %s failed: %e', this.peer, err) })
    }
    const recovering = this.hooks.rejected?.(this.peer, rejected)
    if (recovering !== undefined) {
      this.recovering = recovering.catch((err: unknown) => { log('recovering from rejection by %s failed: %s', this.peer, (err as Error).message) })
    }
    ch.abort(new EnvelopesRejectedError(`${this.peer} rejected ${rejected.length} envelopes: ${rejected[0]?.error ?? ''}`))
  }

  private onAck (ch: OutboundChannel, ids: MessageId[]): void {
    if (ch !== this.channel) return
    const done: MessageId[] = []
    for (const id of ids) {
      const rec = this.inflight.get(id)
      if (rec === undefined) continue
      this.inflight.delete(id)
      this.inflightBytes -= rec.frame.byteLength
      this.rejections.delete(id)
      done.push(id)
    }
    if (done.length === 0) return
    this.attempts = 0
    this.hooks.delivered(this.peer, done).catch((err: unknown) => {
      // The outbox entries stay on disk; after a restart they are sent again and deduped.
      log.error('recording delivery to %s failed: %e', this.peer, err)
    })
    this.pump()
  }

  private onClosed (ch: OutboundChannel, reason: Error | undefined): void {
    if (ch !== this.channel) return
    this.channel = undefined
    if (this.state === 'stopped') return
    // Unacked envelopes go back in front, in their original order.
    this.queued.unshiftAll(this.inflight.values())
    this.inflight.clear()
    this.inflightBytes = 0
    if (this.queued.length === 0) {
      this.state = 'idle'
      return
    }
    log('stream to %s closed with %d unacked: %s', this.peer, this.queued.length, reason?.message ?? 'closed')
    if (this.held) this.hold()
    else this.retryLater()
  }

  private retryLater (): void {
    this.attempts++
    const base = Math.min(this.options.maxBackoffMs, this.options.initialBackoffMs * 2 ** (this.attempts - 1))
    const delay = Math.round(base * (0.5 + Math.random() * 0.5))
    this.state = 'waiting'
    this.timer = setTimeout(() => {
      this.state = 'idle'
      this.connect()
    }, delay)
    this.timer.unref?.()
  }

  private dropExpired (): void {
    const now = this.options.now()
    const expired = this.queued.removeWhere((r) => r.expiresAt <= now)
    if (expired.length === 0) return
    this.hooks.failed(this.peer, expired.map((r) => r.id)).catch((err: unknown) => {
      log.error('recording expiry for %s failed: %e', this.peer, err)
    })
  }
}
