/**
 * The renderer's view model: conversations (1:1 and groups) and loaded message threads.
 * Plain functions without DOM access, so unit tests run them under node (test/unit/renderer-model.test.ts).
 */
import type { ContactView, ConversationView, GroupMessageView, GroupView, MessageView } from '../../../core/api/contract.js'

/** Per conversation key: unread count and when the conversation was last read (ms since epoch). */
export interface ReadState { unread: number, readUpTo: number }

export type ConversationKey = `dm:${string}` | `group:${string}`

export function dmKey (peerId: string): ConversationKey {
  return `dm:${peerId}`
}

export function groupKey (group: string): ConversationKey {
  return `group:${group}`
}

/** One row of the conversation list. */
export interface ConversationItem {
  key: ConversationKey
  kind: 'dm' | 'group'
  /** The contact's peer id or the group id. */
  id: string
  name: string
  last: MessageView | undefined
  unread: number
  /** 1:1 only: a live connection to the contact. */
  connected?: boolean
  contact?: ContactView
  group?: GroupView
}

/** A conversation's messages as far as loaded: oldest first. */
export interface Thread {
  messages: Array<MessageView | GroupMessageView>
  /** Older messages may exist (the last page was full). */
  hasMore: boolean
  loading: boolean
}

export const PAGE_SIZE = 50

/** Merges messages by id (a later copy wins, for its status) and keeps them in time order. */
export function mergeMessages<M extends MessageView> (a: readonly M[], b: readonly M[]): M[] {
  const byId = new Map<string, M>()
  for (const m of a) byId.set(m.id, m)
  for (const m of b) byId.set(m.id, { ...byId.get(m.id), ...m })
  // ids are ULIDs, time-sortable; sentAt first so a clock skew between peers reads naturally
  return [...byId.values()].sort((x, y) => x.sentAt - y.sentAt || x.lamport - y.lamport || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0))
}

/** How many messages the list shows as unread: counted live, at least 1 if the newest is unseen. */
export function unreadOf (read: ReadState | undefined, last: MessageView | undefined): number {
  const counted = read?.unread ?? 0
  if (counted > 0) return counted
  if (last !== undefined && last.direction === 'in' && last.sentAt > (read?.readUpTo ?? 0)) return 1
  return 0
}

/** The list's rows: groups we are in or invited to, conversations, and contacts not written to yet; newest first. */
export function conversationItems (
  contacts: readonly ContactView[], dms: readonly ConversationView[], groups: readonly GroupView[], read: Record<string, ReadState>
): ConversationItem[] {
  const byPeer = new Map(contacts.map((c) => [c.peerId, c]))
  const items: ConversationItem[] = []
  const seen = new Set<string>()
  for (const d of dms) {
    const key = dmKey(d.peerId)
    seen.add(d.peerId)
    const contact = byPeer.get(d.peerId)
    items.push({ key, kind: 'dm', id: d.peerId, name: contact?.name ?? d.name, last: d.last, unread: unreadOf(read[key], d.last), connected: contact?.connected ?? false, ...(contact !== undefined ? { contact } : {}) })
  }
  for (const c of contacts) {
    if (seen.has(c.peerId)) continue
    items.push({ key: dmKey(c.peerId), kind: 'dm', id: c.peerId, name: c.name, last: undefined, unread: 0, connected: c.connected, contact: c })
  }
  for (const g of groups) {
    const key = groupKey(g.group)
    items.push({ key, kind: 'group', id: g.group, name: g.name, last: g.last, unread: unreadOf(read[key], g.last), group: g })
  }
  const rank = (i: ConversationItem): number => i.group?.state === 'invited' ? Number.MAX_SAFE_INTEGER : i.last?.sentAt ?? i.contact?.addedAt ?? 0
  return items.sort((x, y) => rank(y) - rank(x))
}
