import type { MessageId, PeerIdString } from '../ids.js'
import { checkGroupChanges, checkGroupListOptions, compareKeys, groupListStart, messageSortKey, outboxKey } from './keys.js'
import type {
  Contact, ConversationSummary, CryptoChanges, GroupChanges, GroupListOptions, HistoryQuery, MessageRecord, OutboxRecord, Store, SettledStatus
} from './types.js'

/**
 * The in-memory Store: same contract as LevelStore (the shared suite proves it), for
 * simulations and tests that do not need a disk. Records are copied in and out so callers
 * can never mutate what is "stored".
 */
export class MemoryStore implements Store {
  private clock = 0
  private readonly settings = new Map<string, string>()
  private readonly contacts = new Map<PeerIdString, Contact>()
  private readonly messages = new Map<MessageId, MessageRecord>()
  private readonly sortKeys = new Map<MessageId, string>()
  private readonly conversations = new Map<PeerIdString, Map<MessageId, string>>()
  private readonly outbox = new Map<string, OutboxRecord>()
  private readonly crypto = new Map<string, Uint8Array>()
  private readonly groups = new Map<string, Uint8Array>()
  private readonly avatars = new Map<PeerIdString, Uint8Array>()

  async open (): Promise<void> {}
  async close (): Promise<void> {}

  async getClock (): Promise<number> { return this.clock }
  async getSetting (key: string): Promise<string | undefined> { return this.settings.get(key) }
  async putSetting (key: string, value: string): Promise<void> { this.settings.set(key, value) }

  async listContacts (): Promise<Contact[]> {
    return [...this.contacts.values()].sort((a, b) => a.peerId < b.peerId ? -1 : 1).map(copy)
  }

  async getContact (peerId: PeerIdString): Promise<Contact | undefined> {
    const c = this.contacts.get(peerId)
    return c === undefined ? undefined : copy(c)
  }

  async putContact (contact: Contact, avatar?: Uint8Array | null): Promise<void> {
    this.contacts.set(contact.peerId, copy(contact))
    if (avatar === null) this.avatars.delete(contact.peerId)
    else if (avatar !== undefined) this.avatars.set(contact.peerId, avatar.slice())
  }

  async deleteContact (peerId: PeerIdString): Promise<void> {
    this.contacts.delete(peerId)
    this.avatars.delete(peerId)
  }

  async getAvatar (peerId: PeerIdString): Promise<Uint8Array | undefined> {
    return this.avatars.get(peerId)?.slice()
  }

  async queueOutbox (outbox: OutboxRecord): Promise<void> {
    this.outbox.set(outboxKey(outbox.to, outbox.id), { ...outbox, frame: outbox.frame.slice() })
  }

  async saveOutgoing (message: MessageRecord, outbox: OutboxRecord, clock: number): Promise<void> {
    this.putMessage(message)
    this.outbox.set(outboxKey(outbox.to, outbox.id), { ...outbox, frame: outbox.frame.slice() })
    this.clock = Math.max(this.clock, clock)
  }

  async saveIncoming (messages: MessageRecord[], clock: number, crypto?: CryptoChanges): Promise<MessageRecord[]> {
    if (crypto !== undefined) apply(this.crypto, crypto)
    const fresh: MessageRecord[] = []
    for (const m of messages) {
      if (this.messages.has(m.id)) continue
      this.putMessage(m)
      fresh.push(m)
    }
    this.clock = Math.max(this.clock, clock)
    return fresh
  }

  async settleOutgoing (updates: ReadonlyArray<{ id: MessageId, to: PeerIdString, status: SettledStatus }>): Promise<void> {
    for (const u of updates) {
      const m = this.messages.get(u.id)
      if (m !== undefined) m.status = u.status
      this.outbox.delete(outboxKey(u.to, u.id))
    }
  }

  async getMessage (id: MessageId): Promise<MessageRecord | undefined> {
    const m = this.messages.get(id)
    return m === undefined ? undefined : copy(m)
  }

  async history (conversation: PeerIdString, query: HistoryQuery): Promise<MessageRecord[]> {
    const conv = this.conversations.get(conversation)
    if (conv === undefined) return []
    let entries = [...conv.entries()].sort((a, b) => a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)
    if (query.before !== undefined) {
      const beforeKey = this.sortKeys.get(query.before)
      if (beforeKey === undefined || this.messages.get(query.before)?.conversation !== conversation) return []
      entries = entries.filter(([, key]) => key < beforeKey)
    }
    return entries.slice(Math.max(0, entries.length - query.limit)).map(([id]) => copy(this.messages.get(id) as MessageRecord))
  }

  async listConversations (): Promise<ConversationSummary[]> {
    const out: ConversationSummary[] = []
    for (const peerId of [...this.conversations.keys()].sort()) {
      const last = (await this.history(peerId, { limit: 1 }))[0]
      out.push({ peerId, ...(last !== undefined ? { last } : {}) })
    }
    return out
  }

  async listOutbox (): Promise<OutboxRecord[]> {
    return [...this.outbox.entries()]
      .sort((a, b) => a[0] < b[0] ? -1 : 1)
      .map(([, r]) => ({ ...r, frame: r.frame.slice() }))
  }

  async getCrypto (key: string): Promise<Uint8Array | undefined> {
    return this.crypto.get(key)?.slice()
  }

  async listCrypto (prefix: string): Promise<Array<{ key: string, value: Uint8Array }>> {
    return [...this.crypto.entries()]
      .filter(([key]) => key.startsWith(prefix))
      .sort((a, b) => a[0] < b[0] ? -1 : 1)
      .map(([key, value]) => ({ key, value: value.slice() }))
  }

  async putCrypto (changes: CryptoChanges): Promise<void> {
    apply(this.crypto, changes)
  }

  async getGroupEntry (key: string): Promise<Uint8Array | undefined> {
    return this.groups.get(key)?.slice()
  }

  async listGroupEntries (prefix: string, options: GroupListOptions = {}): Promise<Array<{ key: string, value: Uint8Array }>> {
    checkGroupListOptions(options)
    const start = groupListStart(prefix, options)
    return [...this.groups.entries()]
      .filter(([key]) => key.startsWith(prefix) && compareKeys(key, start) >= 0)
      .sort((a, b) => compareKeys(a[0], b[0]))
      .slice(0, options.limit)
      .map(([key, value]) => ({ key, value: value.slice() }))
  }

  async putGroupEntries (changes: GroupChanges, crypto?: CryptoChanges): Promise<void> {
    checkGroupChanges(changes)
    // Both maps change in one synchronous step: nobody can see one without the other.
    apply(this.groups, changes)
    if (crypto !== undefined) apply(this.crypto, crypto)
  }

  private putMessage (m: MessageRecord): void {
    const key = messageSortKey(m.conversation, m.lamport, m.from, m.id)
    this.messages.set(m.id, copy(m))
    this.sortKeys.set(m.id, key)
    let conv = this.conversations.get(m.conversation)
    if (conv === undefined) {
      conv = new Map()
      this.conversations.set(m.conversation, conv)
    }
    conv.set(m.id, key)
  }
}

/** Put or (for null) delete each change, copying the bytes in. */
function apply (area: Map<string, Uint8Array>, changes: ReadonlyMap<string, Uint8Array | null>): void {
  for (const [key, value] of changes) {
    if (value === null) area.delete(key)
    else area.set(key, value.slice())
  }
}

function copy<T> (value: T): T {
  return structuredClone(value)
}
