import type { MessageId, PeerIdString } from '../ids.js'

/**
 * A conversation's messages sort by (lamport, sender, id): every replica orders the same
 * set the same way whatever order it arrived in. Lamport is fixed-width hex so string
 * order is numeric order.
 */
export function messageSortKey (conversation: PeerIdString, lamport: number, from: PeerIdString, id: MessageId): string {
  return `${conversation}\x00${lamport.toString(16).padStart(14, '0')}\x00${from}\x00${id}`
}

export function conversationRange (conversation: PeerIdString): { gt: string, lt: string } {
  return { gt: `${conversation}\x00`, lt: `${conversation}\x01` }
}

export function outboxKey (to: PeerIdString, id: MessageId): string {
  return `${to}\x00${id}`
}
