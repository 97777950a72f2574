import { Level } from 'level'
import type { AbstractSublevel } from 'abstract-level'
import { CorruptRecordError, DataDirLockedError } from '../errors.js'
import type { MessageId, PeerIdString } from '../ids.js'
import { conversationRange, messageSortKey, outboxKey } from './keys.js'
import type { Contact, ConversationSummary, HistoryQuery, MessageRecord, MessageStatus, OutboxRecord, Store } from './types.js'

type Db = Level<string, string>
type Sub = AbstractSublevel<Db, string | Uint8Array | Buffer, string, string>
/** One write: a put, or a delete when `value` is undefined. */
interface Op { sub: Sub, key: string, value?: string }

interface StoredOutbox { id: MessageId, to: PeerIdString, frame: string, createdAt: number, expiresAt: number }

export interface LevelStoreOptions {
  /**
   * fsync every batch. Off by default: a batch then survives a crash of the process
   * (kill -9) but not of the OS. Group commit keeps either choice affordable.
   */
  sync?: boolean
}

/**
 * The level-backed Store: one database, one sublevel per kind of record, all multi-record
 * changes in one atomic batch. Concurrent writers are group-committed: while one batch is
 * being written, the next callers' operations gather into a single following batch.
 */
export class LevelStore implements Store {
  private readonly db: Db
  private readonly meta: Sub
  private readonly contacts: Sub
  private readonly msgs: Sub
  private readonly idx: Sub
  private readonly status: Sub
  private readonly outbox: Sub
  private readonly convs: Sub
  private pendingOps: Op[] = []
  private waiters: Array<{ resolve: () => void, reject: (err: unknown) => void }> = []
  private flushing = false
  private incomingLock: Promise<unknown> = Promise.resolve()
  /** Highest clock handed to any write; the persisted clock never moves backwards. */
  private clock = 0
  private clockDirty = false
  /** Conversations that have a `convs` marker, so the marker is written once, not per message. */
  private readonly knownConvs = new Set<string>()

  constructor (location: string, private readonly options: LevelStoreOptions = {}) {
    this.db = new Level<string, string>(location, { valueEncoding: 'utf8' })
    const sub = (name: string): Sub => this.db.sublevel<string, string>(name, { valueEncoding: 'utf8' })
    this.meta = sub('meta')
    this.contacts = sub('contacts')
    this.msgs = sub('msgs')
    this.idx = sub('idx')
    this.status = sub('status')
    this.outbox = sub('outbox')
    this.convs = sub('convs')
  }

  async open (): Promise<void> {
    try {
      await this.db.open()
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause
      if (cause?.code === 'LEVEL_LOCKED') throw new DataDirLockedError('the data directory is in use by another Parley process')
      throw err
    }
    await this.getClock() // later writes never store a clock below the persisted one
    for await (const conv of this.convs.keys()) this.knownConvs.add(conv)
  }

  async close (): Promise<void> {
    while (this.flushing) await new Promise((resolve) => setImmediate(resolve))
    await this.db.close()
  }

  async getClock (): Promise<number> {
    const v = await this.meta.get('clock')
    this.clock = Math.max(this.clock, v === undefined ? 0 : Number(v))
    return this.clock
  }

  async getSetting (key: string): Promise<string | undefined> {
    return await this.meta.get(`setting:${key}`)
  }

  async putSetting (key: string, value: string): Promise<void> {
    await this.commit([{ sub: this.meta, key: `setting:${key}`, value }])
  }

  async listContacts (): Promise<Contact[]> {
    const out: Contact[] = []
    for await (const value of this.contacts.values()) out.push(parse<Contact>(value))
    return out
  }

  async getContact (peerId: PeerIdString): Promise<Contact | undefined> {
    const v = await this.contacts.get(peerId)
    return v === undefined ? undefined : parse<Contact>(v)
  }

  async putContact (contact: Contact): Promise<void> {
    await this.commit([{ sub: this.contacts, key: contact.peerId, value: JSON.stringify(contact) }])
  }

  async deleteContact (peerId: PeerIdString): Promise<void> {
    await this.commit([{ sub: this.contacts, key: peerId }])
  }

  async saveOutgoing (message: MessageRecord, outbox: OutboxRecord, clock: number): Promise<void> {
    const stored: StoredOutbox = { ...outbox, frame: Buffer.from(outbox.frame).toString('base64') }
    this.advanceClock(clock)
    const ops = this.messageOps(message)
    ops.push({ sub: this.outbox, key: outboxKey(outbox.to, outbox.id), value: JSON.stringify(stored) })
    await this.commit(ops)
  }

  async saveIncoming (messages: MessageRecord[], clock: number): Promise<MessageRecord[]> {
    // Serialised so two copies of one message arriving at once (direct and mailbox) dedupe.
    const run = this.incomingLock.then(async () => await this.saveIncomingNow(messages, clock))
    this.incomingLock = run.catch(() => {})
    return await run
  }

  private async saveIncomingNow (messages: MessageRecord[], clock: number): Promise<MessageRecord[]> {
    // Ids are one namespace: an id already stored (from anyone, or our own) is a duplicate.
    const found = await this.idx.getMany(messages.map((m) => m.id))
    const seen = new Set<string>()
    const fresh: MessageRecord[] = []
    const ops: Op[] = []
    messages.forEach((m, i) => {
      if (found[i] !== undefined || seen.has(m.id)) return
      seen.add(m.id)
      fresh.push(m)
      for (const op of this.messageOps(m)) ops.push(op)
    })
    this.advanceClock(clock)
    await this.commit(ops)
    return fresh
  }

  async settleOutgoing (updates: ReadonlyArray<{ id: MessageId, to: PeerIdString, status: 'delivered' | 'failed' }>): Promise<void> {
    const ops: Op[] = []
    for (const u of updates) {
      ops.push({ sub: this.status, key: u.id, value: u.status })
      ops.push({ sub: this.outbox, key: outboxKey(u.to, u.id) })
    }
    await this.commit(ops)
  }

  async getMessage (id: MessageId): Promise<MessageRecord | undefined> {
    const key = await this.idx.get(id)
    if (key === undefined) return undefined
    const value = await this.msgs.get(key)
    if (value === undefined) return undefined
    return (await this.withStatus([parse<MessageRecord>(value)]))[0]
  }

  async history (conversation: PeerIdString, query: HistoryQuery): Promise<MessageRecord[]> {
    const range: { gt: string, lt: string } = conversationRange(conversation)
    if (query.before !== undefined) {
      const beforeKey = await this.idx.get(query.before)
      // A cursor from another conversation lies outside this range: nothing is before it here.
      if (beforeKey === undefined || beforeKey <= range.gt || beforeKey >= range.lt) return []
      range.lt = beforeKey
    }
    const out: MessageRecord[] = []
    for await (const value of this.msgs.values({ ...range, reverse: true, limit: query.limit })) {
      out.push(parse<MessageRecord>(value))
    }
    out.reverse()
    return await this.withStatus(out)
  }

  async listConversations (): Promise<ConversationSummary[]> {
    const out: ConversationSummary[] = []
    for await (const conv of this.convs.keys()) {
      const last = await this.history(conv as PeerIdString, { limit: 1 })
      out.push({ peerId: conv as PeerIdString, ...(last[0] !== undefined ? { last: last[0] } : {}) })
    }
    return out
  }

  async listOutbox (): Promise<OutboxRecord[]> {
    const out: OutboxRecord[] = []
    for await (const value of this.outbox.values()) {
      const s = parse<StoredOutbox>(value)
      out.push({ ...s, frame: new Uint8Array(Buffer.from(s.frame, 'base64')) })
    }
    return out
  }

  private advanceClock (clock: number): void {
    if (clock <= this.clock) return
    this.clock = clock
    this.clockDirty = true
  }

  /** The message, its id index and (first time only) its conversation marker. */
  private messageOps (m: MessageRecord): Op[] {
    const key = messageSortKey(m.conversation, m.lamport, m.from, m.id)
    const ops: Op[] = [
      { sub: this.msgs, key, value: JSON.stringify(m) },
      { sub: this.idx, key: m.id, value: key }
    ]
    if (!this.knownConvs.has(m.conversation)) {
      this.knownConvs.add(m.conversation)
      ops.push({ sub: this.convs, key: m.conversation, value: '1' })
    }
    return ops
  }

  private async withStatus (records: MessageRecord[]): Promise<MessageRecord[]> {
    const outgoing = records.filter((r) => r.direction === 'out')
    if (outgoing.length === 0) return records
    const statuses = await this.status.getMany(outgoing.map((r) => r.id))
    outgoing.forEach((r, i) => {
      const s = statuses[i]
      if (s !== undefined) r.status = s as MessageStatus
    })
    return records
  }

  /** Group commit: see the class comment. Each caller's ops land in one atomic batch. */
  private async commit (ops: Op[]): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      for (const op of ops) this.pendingOps.push(op)
      this.waiters.push({ resolve, reject })
      if (!this.flushing) void this.flush()
    })
  }

  private async flush (): Promise<void> {
    this.flushing = true
    while (this.pendingOps.length > 0 || this.waiters.length > 0) {
      const ops = this.pendingOps
      const waiters = this.waiters
      this.pendingOps = []
      this.waiters = []
      try {
        const batch = this.db.batch()
        for (const op of ops) {
          if (op.value === undefined) batch.del(op.key, { sublevel: op.sub })
          else batch.put(op.key, op.value, { sublevel: op.sub })
        }
        const withClock = this.clockDirty
        if (withClock) {
          // One clock write per batch, whatever number of messages moved it.
          batch.put('clock', String(this.clock), { sublevel: this.meta })
          this.clockDirty = false
        }
        try {
          await batch.write({ sync: this.options.sync === true })
        } catch (err) {
          if (withClock) this.clockDirty = true
          throw err
        }
        for (const w of waiters) w.resolve()
      } catch (err) {
        for (const w of waiters) w.reject(err)
      }
    }
    this.flushing = false
  }
}

function parse<T> (value: string): T {
  try {
    return JSON.parse(value) as T
  } catch {
    throw new CorruptRecordError('a stored record is not valid JSON')
  }
}
