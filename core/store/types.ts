import type { MessageId, PeerIdString } from '../ids.js'
import type { AvatarMime } from '../profile.js'

/**
 * Someone this node can message. `origin` says whether the user added them or they wrote
 * first. `name` is ours for them; `profile` is what they call themselves (their PROFILE
 * envelope; its avatar's bytes are stored beside the contact, see Store.getAvatar).
 */
export interface Contact {
  peerId: PeerIdString
  name: string
  addrs: string[]
  origin: 'invite' | 'inbound'
  addedAt: number
  /** The user chose `name` (contact.add with a name, contact.rename): it wins over the profile name. */
  named?: boolean
  /** The contact's own profile, as last received. */
  profile?: ContactProfile
  /** The version of our profile last queued to this contact (it is not sent again). */
  profileSent?: number
}

/** A contact's profile as they sent it. */
export interface ContactProfile {
  version: number
  /** '' if they set none. */
  name: string
  avatar?: { mime: AvatarMime, hash: string }
}

import type { MessageStatus, SettledStatus } from './status.js'
export type { MessageStatus, OutgoingStatus, SettledStatus } from './status.js'

/** One message in a conversation, as stored. */
export interface MessageRecord {
  id: MessageId
  /** The other peer of the 1:1 conversation. */
  conversation: PeerIdString
  from: PeerIdString
  direction: 'in' | 'out'
  text: string
  lamport: number
  sentAt: number
  receivedAt?: number
  status: MessageStatus
}

/** An envelope waiting for the recipient's ack. `frame` is the exact bytes sent each try. */
export interface OutboxRecord {
  id: MessageId
  to: PeerIdString
  frame: Uint8Array<ArrayBuffer>
  createdAt: number
  expiresAt: number
}

/**
 * Changes to the Signal protocol state (sessions, keys, identities), by key; `null`
 * deletes. Written together with the messages they belong to, so a crash never leaves a
 * ratchet that moved without the message it decrypted (see core/crypto/signal-state.ts).
 */
export type CryptoChanges = ReadonlyMap<string, Uint8Array | null>

/**
 * Changes to the group area, by key; `null` deletes. The keys are the caller's (the group
 * manager's records, snapshots and indexes); the area is a namespace of its own, so no key
 * can ever collide with another area's.
 */
export type GroupChanges = ReadonlyMap<string, Uint8Array | null>

export interface GroupListOptions {
  /** Start at this key (a whole key, not a suffix of the prefix), inclusive. */
  gte?: string
  /** At most this many entries. */
  limit?: number
}

export interface HistoryQuery {
  limit: number
  /** Return messages ordered before this one (for scrolling up). */
  before?: MessageId
}

export interface ConversationSummary {
  peerId: PeerIdString
  last?: MessageRecord
}

/**
 * Everything core persists, behind one interface with two implementations (level and
 * memory) that pass one shared suite (test/unit/store-suite.ts). Methods that change
 * several records do so atomically: after a crash either all of it is there or none.
 *
 * @example
 * const store = new LevelStore('/tmp/parley/db')
 * await store.open()
 * await store.saveOutgoing(message, outboxEntry, clock)
 * const page = await store.history(peerId, { limit: 50 })
 */
export interface Store {
  open(): Promise<void>
  close(): Promise<void>

  /** The node's Lamport clock as last persisted (0 for a new store). */
  getClock(): Promise<number>
  /** A small key/value area for settings (display name...). */
  getSetting(key: string): Promise<string | undefined>
  putSetting(key: string, value: string): Promise<void>

  listContacts(): Promise<Contact[]>
  getContact(peerId: PeerIdString): Promise<Contact | undefined>
  /**
   * Write a contact and, if `avatar` is given, its avatar bytes (null deletes them) in one
   * write; `undefined` leaves a stored avatar as it is.
   */
  putContact(contact: Contact, avatar?: Uint8Array | null): Promise<void>
  /** A contact and its avatar. */
  deleteContact(peerId: PeerIdString): Promise<void>
  /** A contact's avatar bytes (undefined if none is stored). */
  getAvatar(peerId: PeerIdString): Promise<Uint8Array | undefined>

  /** An outbox entry with no message record (control envelopes such as receipts). */
  queueOutbox(outbox: OutboxRecord): Promise<void>
  /** The local copy and its outbox entry, in one write, with the clock. */
  saveOutgoing(message: MessageRecord, outbox: OutboxRecord, clock: number): Promise<void>
  /**
   * Store received messages not seen before (by id) with the clock, in one write. Returns
   * the ones that were new, in input order; duplicates are dropped. `crypto` (the ratchet
   * state that decrypting them produced) goes into the same write.
   */
  saveIncoming(messages: MessageRecord[], clock: number, crypto?: CryptoChanges): Promise<MessageRecord[]>
  /**
   * Set the status of outgoing messages and drop their outbox entries, in one write:
   * 'sent' (handed to a relay mailbox, awaiting the recipient), 'delivered' or 'failed'.
   */
  settleOutgoing(updates: ReadonlyArray<{ id: MessageId, to: PeerIdString, status: SettledStatus }>): Promise<void>

  getMessage(id: MessageId): Promise<MessageRecord | undefined>
  /** The newest `limit` messages (before `before`), returned oldest to newest. */
  history(conversation: PeerIdString, query: HistoryQuery): Promise<MessageRecord[]>
  /** Conversations with at least one message, each with its newest message. */
  listConversations(): Promise<ConversationSummary[]>
  /** Every outbox entry, oldest first per recipient. */
  listOutbox(): Promise<OutboxRecord[]>

  /** Signal protocol state: one value, or every key/value under a prefix (in key order). */
  getCrypto(key: string): Promise<Uint8Array | undefined>
  listCrypto(prefix: string): Promise<Array<{ key: string, value: Uint8Array }>>
  /** Apply Signal state changes in one durable write. */
  putCrypto(changes: CryptoChanges): Promise<void>

  /** The group area: one value by key (undefined if there is none). */
  getGroupEntry(key: string): Promise<Uint8Array | undefined>
  /**
   * The group area's entries whose key starts with `prefix`, from `options.gte` on, at most
   * `options.limit` of them, in key order (UTF-8 byte order, which is code point order).
   */
  listGroupEntries(prefix: string, options?: GroupListOptions): Promise<Array<{ key: string, value: Uint8Array }>>
  /**
   * Apply group-area changes and, if given, Signal state changes (e.g. the sender-key step
   * that decrypted a record) in one durable write: after a crash both are there or neither.
   * A key that is empty, longer than MAX_GROUP_KEY_LENGTH or not well-formed Unicode, or a
   * value that is not bytes, is refused with InvalidRequestError and nothing is written.
   */
  putGroupEntries(changes: GroupChanges, crypto?: CryptoChanges): Promise<void>
}
