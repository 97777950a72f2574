import type { MessageId, PeerIdString } from '../ids.js'
import { forComponent } from '../logger.js'
import { readSealed, type Rejection, type SealedFrame } from '../protocols/dm/codec.js'
import type { MailboxClient } from '../protocols/mailbox/client.js'
import { MAX_DEPOSITS_PER_REQUEST, MAX_FETCH_ITEMS } from '../protocols/mailbox/constants.js'
import type { MessageRecord, OutboxRecord, SettledStatus } from '../store/types.js'

const log = forComponent('mailbox')

/** Decryption failures a new session can fix (not forgeries: those are just dropped). */
const RETRYABLE = new Set(['NoSessionError', 'DecryptionError', 'MissingPreKeyError'])

/** What the courier needs from the node that owns it. */
export interface CourierHost {
  /** Connect to a relay by multiaddr (with /p2p/<id>). */
  dial(addr: string): Promise<void>
  /** A contact's known addresses (its circuit addresses name its relays). */
  addrsOf(peer: PeerIdString): readonly string[] | undefined
  /**
   * Decrypt and store received frames exactly like direct mail (validation, dedupe, events).
   * Resolves with the ids of the text messages among them (for the delivery receipt) and
   * the frames it could not decrypt.
   */
  receive(from: PeerIdString, frames: SealedFrame[]): Promise<{ texts: MessageId[], rejected: Rejection[] }>
  /** Queue a delivery receipt for `to`. */
  sendReceipt(to: PeerIdString, ids: MessageId[]): Promise<void>
  /** Queue a retry request for `to`: "send these again, I could not decrypt them". */
  requestRetry(to: PeerIdString, ids: MessageId[]): Promise<void>
  /** Record a status for our outgoing messages and tell the user. */
  settle(peer: PeerIdString, ids: MessageId[], status: SettledStatus): Promise<void>
  getMessage(id: MessageId): Promise<MessageRecord | undefined>
}

/**
 * The node's side of relay mailboxes: deposits envelopes for a contact that cannot be
 * reached (at the relays its circuit addresses name, in order), drains our own mail from a
 * relay (stored like direct mail, acked at the relay only afterwards, then a receipt to each
 * sender), and collects notices of our deposits that expired unread.
 *
 * @example
 * const courier = new MailboxCourier(new MailboxClient(libp2p), host)
 * const stored = await courier.deposit(bob, outboxRecords) // ids now safe at Bob's relay
 * courier.drain(relayPeerId)
 */
export class MailboxCourier {
  private readonly draining = new Set<string>()
  /** Relays asked to drain again while a drain of theirs ran (it may have fetched too early). */
  private readonly again = new Set<string>()

  constructor (private readonly client: MailboxClient, private readonly host: CourierHost) {}

  /** Deposit, 32 per request; stops at the first refusal so order holds. Returns stored ids. */
  async deposit (peer: PeerIdString, records: OutboxRecord[]): Promise<MessageId[]> {
    const stored: MessageId[] = []
    let rest = records
    for (const relay of relaysOf(this.host.addrsOf(peer) ?? [])) {
      try {
        await this.host.dial(relay.addr)
        while (rest.length > 0) {
          const chunk = rest.slice(0, MAX_DEPOSITS_PER_REQUEST)
          const results = await this.client.deposit(relay.peerId, chunk.map((r) => ({ recipient: peer, id: r.id, envelope: r.frame })))
          const ok = results.filter((r) => r.ok).map((r) => r.id as MessageId)
          stored.push(...ok)
          rest = rest.slice(chunk.length)
          if (ok.length < chunk.length) {
            log('relay %s refused %d deposits for %s: %s', relay.peerId, chunk.length - ok.length, peer, results.find((r) => !r.ok)?.errorName)
            break // keep order: the refused ones wait for the next try
          }
        }
      } catch (err) {
        log('depositing for %s at %s failed: %s', peer, relay.peerId, (err as Error).message)
      }
      if (rest.length === 0) break
    }
    if (stored.length > 0) await this.host.settle(peer, stored, 'sent')
    return stored
  }

  /**
   * Fetch our mail from a relay (one drain per relay at a time), then collect expiry notices.
   * Asked again while a drain runs (a relay's notice of new mail), it drains once more when
   * that one ends: the running drain's last fetch may have come before the new mail.
   */
  drain (relay: string): void {
    if (this.draining.has(relay)) {
      this.again.add(relay)
      return
    }
    this.draining.add(relay)
    this.drainNow(relay as PeerIdString)
      .then(async () => { await this.collectExpired(relay as PeerIdString) })
      .catch((err: unknown) => { log('draining mailbox at %s failed: %s', relay, (err as Error).message) })
      .finally(() => {
        this.draining.delete(relay)
        if (this.again.delete(relay)) this.drain(relay)
      })
  }

  private async drainNow (relay: PeerIdString): Promise<void> {
    for (;;) {
      const { items, more } = await this.client.fetch(relay, MAX_FETCH_ITEMS)
      if (items.length === 0) return
      // Consecutive items from one sender form one batch, keeping the mailbox's order.
      let batch: SealedFrame[] = []
      let from: PeerIdString | undefined
      const flush = async (): Promise<void> => {
        if (from !== undefined && batch.length > 0) {
          const { texts, rejected } = await this.host.receive(from, batch)
          // The sender cannot see this delivery (no ack crossed): tell it with a receipt.
          if (texts.length > 0) await this.host.sendReceipt(from, texts)
          // Frames that do not decrypt leave the mailbox too (they would block it). If a new
          // session could fix them (we lost ours), ask the sender to send them again.
          const retry = rejected.filter((r) => RETRYABLE.has(r.error)).map((r) => r.id)
          if (retry.length > 0) await this.host.requestRetry(from, retry)
        }
        batch = []
      }
      for (const item of items) {
        let env: SealedFrame
        try {
          env = readSealed(item.envelope)
        } catch (err) {
          log('dropping a malformed envelope from %s in the mailbox: %s', item.sender, (err as Error).name)
          continue
        }
        if (item.sender !== from) await flush()
        from = item.sender as PeerIdString
        batch.push(env)
      }
      await flush()
      await this.client.ack(relay, items.map((i) => i.id)) // only after our write
      if (!more) return
    }
  }

  /** Our deposits at this relay that expired unread become failed. */
  private async collectExpired (relay: PeerIdString): Promise<void> {
    const byPeer = new Map<PeerIdString, MessageId[]>()
    for (const e of await this.client.expired(relay)) {
      const m = await this.host.getMessage(e.id as MessageId)
      if (m === undefined || m.direction !== 'out' || m.conversation !== e.recipient || m.status !== 'sent') continue
      byPeer.set(m.conversation, [...(byPeer.get(m.conversation) ?? []), m.id])
    }
    for (const [peer, ids] of byPeer) await this.host.settle(peer, ids, 'failed')
  }
}

/** The relays a contact listens through: from `<relay addr>/p2p/<relay id>/p2p-circuit` addresses. */
export function relaysOf (addrs: readonly string[]): Array<{ peerId: PeerIdString, addr: string }> {
  const out = new Map<string, string>()
  for (const a of addrs) {
    const i = a.indexOf('/p2p-circuit')
    if (i === -1) continue
    const relayAddr = a.slice(0, i)
    const m = /\/p2p\/([^/]+)$/.exec(relayAddr)
    if (m?.[1] !== undefined && !out.has(m[1])) out.set(m[1], relayAddr)
  }
  return [...out].map(([peerId, addr]) => ({ peerId: peerId as PeerIdString, addr }))
}
