import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import type { MessageId, PeerIdString } from '../../ids.js'
import { MalformedFrameError } from '../errors.js'
import { requestResponse } from '../request.js'
import { MAILBOX_PROTOCOL, MAILBOX_TIMEOUT_MS, MAX_MAILBOX_RESPONSE_BYTES } from './constants.js'
import { MailboxError } from './errors.js'
import { MailboxRequest, MailboxResponse, type Deposit, type DepositResult, type MailItem } from './pb/mailbox.js'

export type { Deposit, DepositResult, MailItem }

/**
 * The client side of `/parley/mailbox/1.0.0`: deposit envelopes for an offline recipient on
 * one of its relays, and (as the recipient) fetch and acknowledge one's own mail.
 *
 * @example
 * const mb = new MailboxClient(libp2p)
 * const [r] = await mb.deposit(relayId, [{ recipient: bob, id, envelope }])
 * const { items } = await mb.fetch(relayId, 100)
 * await mb.ack(relayId, items.map((i) => i.id))
 */
export class MailboxClient {
  constructor (private readonly host: Pick<Libp2p, 'dialProtocol'>) {}

  async deposit (relay: PeerIdString, deposits: Deposit[]): Promise<DepositResult[]> {
    const res = await this.call(relay, { kind: MailboxRequest.Kind.DEPOSIT, deposits, limit: 0, ids: [] })
    if (res.results.length !== deposits.length) throw new MalformedFrameError('relay answered a different number of deposits')
    return res.results
  }

  async fetch (relay: PeerIdString, limit: number): Promise<{ items: MailItem[], more: boolean }> {
    const res = await this.call(relay, { kind: MailboxRequest.Kind.FETCH, deposits: [], limit, ids: [] })
    return { items: res.items, more: res.more }
  }

  /** My deposits at this relay that expired unread since I last asked (told once). */
  async expired (relay: PeerIdString): Promise<Array<{ id: string, recipient: string }>> {
    const res = await this.call(relay, { kind: MailboxRequest.Kind.EXPIRED, deposits: [], limit: 0, ids: [] })
    return res.expired
  }

  async ack (relay: PeerIdString, ids: readonly MessageId[] | readonly string[]): Promise<number> {
    const res = await this.call(relay, { kind: MailboxRequest.Kind.ACK, deposits: [], limit: 0, ids: [...ids] })
    return res.acked
  }

  private async call (relay: PeerIdString, req: MailboxRequest): Promise<MailboxResponse> {
    const stream = await this.host.dialProtocol(peerIdFromString(relay), MAILBOX_PROTOCOL, {
      signal: AbortSignal.timeout(MAILBOX_TIMEOUT_MS),
      runOnLimitedConnection: true
    })
    let frame: Uint8Array
    try {
      frame = await requestResponse(stream, MailboxRequest.encode(req), MAX_MAILBOX_RESPONSE_BYTES)
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
    let res: MailboxResponse
    try {
      res = MailboxResponse.decode(frame, { limits: { results: 1024, items: 1024, expired: 1024 } })
    } catch (err) {
      throw new MalformedFrameError(`bad mailbox response: ${(err as Error).message}`)
    }
    if (!res.ok) throw new MailboxError(res.errorName, res.errorMessage)
    return res
  }
}
