import type { Connection, Libp2p, Startable, Stream } from '@libp2p/interface'
import { InvalidRequestError } from '../../core/errors.js'
import { isMessageId, type PeerIdString } from '../../core/ids.js'
import { parsePeerId } from '../../core/identity/invite.js'
import { TokenBuckets } from '../../core/token-bucket.js'
import { forComponent } from '../../core/logger.js'
import { MalformedFrameError } from '../../core/protocols/errors.js'
import { readOneFrame, writeOneFrame } from '../../core/protocols/request.js'
import {
  MAILBOX_PROTOCOL, MAILBOX_TIMEOUT_MS, MAX_ACK_IDS, MAX_DEPOSITS_PER_REQUEST, MAX_FETCH_ITEMS,
  MAX_MAILBOX_ENVELOPE_BYTES, MAX_MAILBOX_REQUEST_BYTES, MAX_MAILBOX_RESPONSE_BYTES
} from '../../core/protocols/mailbox/constants.js'
import { EnvelopeTooLargeError, MailboxFullError, RateLimitedError } from '../../core/protocols/mailbox/errors.js'
import { MailboxRequest, MailboxResponse, type Deposit, type DepositResult } from '../../core/protocols/mailbox/pb/mailbox.js'
import type { MailboxStore, StoredMail } from './store.js'

const log = forComponent('relay:mailbox')

export interface MailboxLimits {
  /** Largest envelope stored. */
  maxEnvelopeBytes: number
  /** Items and bytes one recipient's mailbox may hold. */
  quotaCount: number
  quotaBytes: number
  /** Deposits per second one sender may make, sustained, and in a burst. */
  depositsPerSecond: number
  depositBurst: number
  /** How long mail waits before it is deleted unread. */
  ttlMs: number
}

export const DEFAULT_MAILBOX_LIMITS: MailboxLimits = {
  maxEnvelopeBytes: MAX_MAILBOX_ENVELOPE_BYTES,
  quotaCount: 10_000,
  quotaBytes: 64 * 1024 * 1024,
  depositsPerSecond: 100,
  depositBurst: 1000,
  ttlMs: 30 * 24 * 60 * 60 * 1000
}

/** Counters for /metrics. */
export interface MailboxStats {
  deposits: number
  fetches: number
  acked: number
  expired: number
  refused: Map<string, number>
}

/**
 * `/parley/mailbox/1.0.0` on a relay. Anyone may deposit for a recipient (within size,
 * quota and rate limits); only the recipient, identified by its connection's Noise-verified
 * peer id, can fetch or acknowledge (delete) its own mail: there is no way to name another
 * mailbox in FETCH or ACK. A deposit is acknowledged only after the store's batch resolved.
 * Bad frames reset the stream with a named error.
 *
 * @example
 * const mailbox = new MailboxService(libp2p, store, DEFAULT_MAILBOX_LIMITS)
 * await mailbox.start()
 */
export class MailboxService implements Startable {
  readonly stats: MailboxStats = { deposits: 0, fetches: 0, acked: 0, expired: 0, refused: new Map() }
  /** Per-sender deposit budget (memory bounded under a Sybil flood). */
  private readonly buckets: TokenBuckets
  private depositLock: Promise<unknown> = Promise.resolve()
  private sweeper: ReturnType<typeof setInterval> | undefined

  constructor (
    private readonly host: Pick<Libp2p, 'handle' | 'unhandle'>,
    private readonly store: MailboxStore,
    private readonly limits: MailboxLimits,
    private readonly now: () => number = Date.now,
    /** Called with the recipients of every accepted deposit (after the durable write). */
    private readonly onDeposited: (recipients: Set<string>) => void = () => {}
  ) {
    this.buckets = new TokenBuckets(limits.depositBurst, limits.depositsPerSecond)
  }

  async start (): Promise<void> {
    await this.host.handle(MAILBOX_PROTOCOL, (stream, connection) => {
      this.handle(stream, connection).catch((err: unknown) => { log.error('mailbox stream failed: %e', err) })
    }, { maxInboundStreams: 8, maxOutboundStreams: 1, runOnLimitedConnection: true })
    // A failed sweep (e.g. a disk error) is logged and tried again next minute, never thrown.
    this.sweeper = setInterval(() => { this.sweep().catch((err: unknown) => { log.error('mailbox sweep failed: %e', err) }) }, 60_000)
    this.sweeper.unref?.()
  }

  async stop (): Promise<void> {
    clearInterval(this.sweeper)
    await this.host.unhandle(MAILBOX_PROTOCOL)
  }

  /** Delete expired mail now (also runs every minute). */
  async sweep (): Promise<number> {
    const gone = await this.store.sweep(this.now())
    this.stats.expired += gone.length
    return gone.length
  }

  private async handle (stream: Stream, connection: Connection): Promise<void> {
    const caller = connection.remotePeer.toString() as PeerIdString
    const timer = setTimeout(() => { stream.abort(new MalformedFrameError('mailbox request timed out')) }, MAILBOX_TIMEOUT_MS)
    try {
      const frame = await readOneFrame(stream, MAX_MAILBOX_REQUEST_BYTES)
      let req: MailboxRequest
      try {
        req = MailboxRequest.decode(frame, { limits: { deposits: MAX_DEPOSITS_PER_REQUEST, ids: MAX_ACK_IDS } })
      } catch (err) {
        throw new MalformedFrameError(`mailbox request does not decode: ${(err as Error).message}`)
      }
      const res = await this.answer(caller, req)
      await writeOneFrame(stream, MailboxResponse.encode(res))
    } catch (err) {
      this.count((err as Error).name)
      log('resetting mailbox stream from %s: %s', caller, (err as Error).name)
      stream.abort(err as Error)
    } finally {
      clearTimeout(timer)
    }
  }

  private async answer (caller: PeerIdString, req: MailboxRequest): Promise<MailboxResponse> {
    const base: MailboxResponse = { ok: true, errorName: '', errorMessage: '', results: [], items: [], more: false, acked: 0, expired: [] }
    try {
      switch (req.kind) {
        case MailboxRequest.Kind.DEPOSIT:
          return { ...base, results: await this.deposit(caller, req.deposits) }
        case MailboxRequest.Kind.FETCH: {
          const limit = Math.min(Math.max(req.limit, 1), MAX_FETCH_ITEMS)
          const { items, more } = await this.store.list(caller, limit, MAX_MAILBOX_RESPONSE_BYTES - 64 * 1024, this.now())
          this.stats.fetches++
          return {
            ...base,
            more,
            items: items.map((m) => ({ id: m.id, sender: m.sender, envelope: m.envelope, depositedAt: m.depositedAt, expiresAt: m.expiresAt }))
          }
        }
        case MailboxRequest.Kind.ACK: {
          const acked = await this.store.remove(caller, req.ids)
          this.stats.acked += acked
          return { ...base, acked }
        }
        case MailboxRequest.Kind.EXPIRED:
          return { ...base, expired: await this.store.takeExpired(caller, MAX_ACK_IDS) }
        default:
          throw new InvalidRequestError('unknown mailbox request kind')
      }
    } catch (err) {
      if (!(err instanceof InvalidRequestError)) throw err
      this.count(err.name)
      return { ...base, ok: false, errorName: err.name, errorMessage: err.message }
    }
  }

  /** Checks and stores deposits one request at a time, so quotas hold under concurrency. */
  private async deposit (caller: PeerIdString, deposits: Deposit[]): Promise<DepositResult[]> {
    const run = this.depositLock.then(async () => await this.depositNow(caller, deposits))
    this.depositLock = run.catch(() => {})
    return await run
  }

  private async depositNow (caller: PeerIdString, deposits: Deposit[]): Promise<DepositResult[]> {
    const now = this.now()
    const results: DepositResult[] = []
    const accepted: StoredMail[] = []
    const pending = new Map<string, { count: number, bytes: number }>()
    const inThisRequest = new Map<string, DepositResult>()
    const refused = (d: Deposit, name: string): DepositResult => {
      this.count(name)
      return { id: d.id, ok: false, errorName: name, expiresAt: 0 }
    }
    // Validate everything first, then look all survivors up in one read.
    const checked = deposits.map((d): { d: Deposit, recipient?: PeerIdString, error?: string } => {
      let recipient: PeerIdString
      try {
        recipient = parsePeerId(d.recipient)
      } catch (err) {
        return { d, error: (err as Error).name }
      }
      if (!isMessageId(d.id) || d.envelope.byteLength === 0) return { d, error: InvalidRequestError.name }
      if (d.envelope.byteLength > this.limits.maxEnvelopeBytes) return { d, error: EnvelopeTooLargeError.name }
      return { d, recipient }
    })
    const lookups = checked.filter((c) => c.recipient !== undefined).map((c) => ({ recipient: c.recipient as string, id: c.d.id }))
    const stored = await this.store.existing(lookups)
    let li = 0
    for (const { d, recipient, error } of checked) {
      if (recipient === undefined) { results.push(refused(d, error ?? InvalidRequestError.name)); continue }
      const alreadyExpiresAt = stored[li++]
      const key = `${recipient}\x00${d.id}`
      const repeat = inThisRequest.get(key)
      if (repeat !== undefined) { results.push({ ...repeat }); continue } // the same deposit twice in one request
      if (alreadyExpiresAt !== undefined) {
        results.push({ id: d.id, ok: true, errorName: '', expiresAt: alreadyExpiresAt }) // a retry: already safe
        continue
      }
      if (!this.buckets.take(caller, now)) { results.push(refused(d, RateLimitedError.name)); continue }
      const used = this.store.usageOf(recipient)
      const add = pending.get(recipient) ?? { count: 0, bytes: 0 }
      if (used.count + add.count + 1 > this.limits.quotaCount || used.bytes + add.bytes + d.envelope.byteLength > this.limits.quotaBytes) {
        results.push(refused(d, MailboxFullError.name))
        continue
      }
      pending.set(recipient, { count: add.count + 1, bytes: add.bytes + d.envelope.byteLength })
      const expiresAt = now + this.limits.ttlMs
      accepted.push({ id: d.id, recipient, sender: caller, envelope: d.envelope, depositedAt: now, expiresAt })
      const result = { id: d.id, ok: true, errorName: '', expiresAt }
      inThisRequest.set(key, result)
      results.push(result)
    }
    if (accepted.length > 0) {
      await this.store.put(accepted) // durable before any "ok" leaves
      this.stats.deposits += accepted.length
      this.onDeposited(new Set(accepted.map((m) => m.recipient)))
    }
    return results
  }

  private count (name: string): void {
    this.stats.refused.set(name, (this.stats.refused.get(name) ?? 0) + 1)
  }
}
