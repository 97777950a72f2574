import type { MessageId, PeerIdString } from '../ids.js'
import { forComponent } from '../logger.js'
import type { OutboxRecord } from '../store/types.js'
import { Fifo } from './fifo.js'

const log = forComponent('outbox')

/** One outbound stream, as the outbox needs it (DmChannel implements it). */
export interface OutboundChannel {
  onAck: (ids: MessageId[]) => void
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
  /** These passed their expiry without an ack. */
  expired(peer: PeerIdString, ids: MessageId[]): Promise<void>
  /**
   * The peer cannot be reached directly: hand these (oldest first) to a store-and-forward
   * path (the peer's relay mailboxes). Resolves with the ids now safely stored there, which
   * leave the queue; the rest are retried as usual. Optional.
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

  /** Drop an entry that has not been written to a stream yet (its record failed to save). */
  cancel (peer: PeerIdString, id: MessageId): void {
    this.queues.get(peer)?.cancel(id)
  }

  /** Retry this peer now (it just connected, or the user asked). */
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

type State = 'idle' | 'opening' | 'open' | 'waiting' | 'stopped'

class PeerQueue {
  private state: State = 'idle'
  private readonly queued = new Fifo<OutboxRecord>()
  private readonly inflight = new Map<MessageId, OutboxRecord>()
  private inflightBytes = 0
  private channel: OutboundChannel | undefined
  private attempts = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private writing = false
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

  cancel (id: MessageId): void {
    this.queued.removeWhere((r) => r.id === id)
  }

  kick (): void {
    if (this.state !== 'waiting') return
    clearTimeout(this.timer)
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
    this.hooks.open(this.peer, this.abort.signal).then((ch) => {
      if (this.state !== 'opening') { ch.abort(new Error('outbox stopped')); return }
      this.channel = ch
      this.state = 'open'
      ch.onAck = (ids) => { this.onAck(ch, ids) }
      ch.closed.then((reason) => { this.onClosed(ch, reason) }, (err: unknown) => { this.onClosed(ch, err as Error) })
      this.pump()
    }, (err: unknown) => {
      if (this.state !== 'opening') return
      log('cannot reach %s: %s', this.peer, (err as Error).message)
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
    }).finally(() => {
      if (this.state !== 'opening') return
      if (this.queued.length === 0) this.state = 'idle'
      else this.retryLater()
    })
  }

  private pump (): void {
    if (this.writing || this.state !== 'open' || this.channel === undefined) return
    const ch = this.channel
    const frames: Uint8Array[] = []
    const ids: MessageId[] = []
    let bytes = 0
    while (this.queued.length > 0 && this.inflight.size < this.options.window && bytes < this.options.maxWriteBytes &&
      (this.inflight.size === 0 || this.inflightBytes + (this.queued.peek()?.frame.byteLength ?? 0) <= this.options.maxInflightBytes)) {
      const rec = this.queued.shift() as OutboxRecord
      this.inflight.set(rec.id, rec)
      this.inflightBytes += rec.frame.byteLength
      frames.push(rec.frame)
      ids.push(rec.id)
      bytes += rec.frame.byteLength
    }
    if (frames.length === 0) return
    this.writing = true
    ch.write(frames).then(() => {
      this.writing = false
      this.hooks.sent(this.peer, ids)
      this.pump()
    }, (err: unknown) => {
      this.writing = false
      ch.abort(err as Error)
    })
  }

  private onAck (ch: OutboundChannel, ids: MessageId[]): void {
    if (ch !== this.channel) return
    const done: MessageId[] = []
    for (const id of ids) {
      const rec = this.inflight.get(id)
      if (rec === undefined) continue
      this.inflight.delete(id)
      this.inflightBytes -= rec.frame.byteLength
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
    this.retryLater()
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
    this.hooks.expired(this.peer, expired.map((r) => r.id)).catch((err: unknown) => {
      log.error('recording expiry for %s failed: %e', this.peer, err)
    })
  }
}
