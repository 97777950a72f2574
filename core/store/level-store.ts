import { Level } from 'level'
import type { AbstractBatchOperation, AbstractSublevel } from 'abstract-level'
import { CorruptRecordError, DataDirLockedError } from '../errors.js'
import type { MessageId, PeerIdString } from '../ids.js'
import { IdFilter } from './id-filter.js'
import { Journal, type JournalOp } from './journal.js'
import { forComponent } from '../logger.js'
import { checkGroupChanges, checkGroupListOptions, conversationRange, groupListStart, messageSortKey, outboxKey } from './keys.js'
import type {
  Contact, ConversationSummary, CryptoChanges, GroupChanges, GroupListOptions, HistoryQuery, MessageRecord, MessageStatus, OutboxRecord, Store,
  SettledStatus
} from './types.js'

type Db = Level<string, string>
type Sub = AbstractSublevel<Db, string | Uint8Array | Buffer, string, string>
type BinSub = AbstractSublevel<Db, string | Uint8Array | Buffer, string, Uint8Array>
/** A root-database operation (binary values name their encoding per operation). */
type RootOp = { type: 'del', key: string } | { type: 'put', key: string, value: string } | { type: 'put', key: string, value: Uint8Array, valueEncoding: 'view' }

/** One write: a put, or a delete when `value` is undefined. */
type Op = { sub: Sub, key: string, value?: string } | { sub: BinSub, key: string, value?: Uint8Array }

const log = forComponent('store')

/** Outbox values: createdAt and expiresAt (8 bytes each, big-endian) then the frame. */
const OUTBOX_HEADER = 16

export interface LevelStoreOptions {
  /**
   * fsync every journal record and level batch. Off by default: a batch then survives a
   * crash of the process (kill -9) but not of the OS or a power cut.
   */
  sync?: boolean
}

/**
 * The level-backed Store: one database, one sublevel per kind of record, every multi-record
 * change one atomic batch. Writes are group-committed into a write-ahead journal (one
 * synchronous append, no thread-pool round trip) and applied to level in the background;
 * reads wait for that. See docs/architecture.md, "Write path".
 */
export class LevelStore implements Store {
  private readonly db: Db
  private readonly meta: Sub
  private readonly contacts: Sub
  private readonly msgs: Sub
  private readonly idx: Sub
  private readonly status: Sub
  private readonly outbox: BinSub
  private readonly convs: Sub
  private readonly crypto: BinSub
  private readonly groups: BinSub
  private readonly avatars: BinSub
  private pendingOps: Op[] = []
  private waiters: Array<{ resolve: () => void, reject: (err: unknown) => void }> = []
  private flushing = false
  private readonly journal: Journal
  /** Batches journaled / applied to level so far; reads wait until applied catches up. */
  private journaled = 0
  private applied = 0
  private applyQueue: Array<{ seq: number, ops: JournalOp[] }> = []
  private queuedOps = 0
  private applyTimer: ReturnType<typeof setTimeout> | undefined
  private applying = false
  private applyWaiters: Array<{ seq: number, resolve: () => void, reject: (err: unknown) => void }> = []
  private broken: Error | undefined
  private incomingLock: Promise<unknown> = Promise.resolve()
  /** Highest clock handed to any write; the persisted clock never moves backwards. */
  private clock = 0
  private clockDirty = false
  /** Conversations that have a `convs` marker, so the marker is written once, not per message. */
  private readonly knownConvs = new Set<string>()
  /** Every stored message id, so most incoming messages dedupe without a read. */
  private readonly ids = new IdFilter()

  constructor (location: string, private readonly options: LevelStoreOptions = {}) {
    this.db = new Level<string, string>(location, { valueEncoding: 'utf8' })
    this.journal = new Journal(`${location}.journal`, options.sync === true)
    const sub = (name: string): Sub => this.db.sublevel<string, string>(name, { valueEncoding: 'utf8' })
    this.meta = sub('meta')
    this.contacts = sub('contacts')
    this.msgs = sub('msgs')
    this.idx = sub('idx')
    this.status = sub('status')
    this.outbox = this.db.sublevel<string, Uint8Array>('outbox', { valueEncoding: 'view' })
    this.convs = sub('convs')
    this.crypto = this.db.sublevel<string, Uint8Array>('crypto', { valueEncoding: 'view' })
    this.groups = this.db.sublevel<string, Uint8Array>('group', { valueEncoding: 'view' })
    this.avatars = this.db.sublevel<string, Uint8Array>('avatars', { valueEncoding: 'view' })
  }

  async open (): Promise<void> {
    try {
      await this.db.open()
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause
      if (cause?.code === 'LEVEL_LOCKED') throw new DataDirLockedError('the data directory is in use by another Parley process')
      throw err
    }
    // Batches journaled before a crash but not yet in level: apply them, in order, now.
    const unapplied = this.journal.open()
    if (unapplied.length > 0) {
      await this.db.batch(unapplied.flat().map(toRootOp) as Array<AbstractBatchOperation<Db, string, string>>, { sync: this.options.sync === true })
    }
    this.journal.reset()
    await this.getClock() // later writes never store a clock below the persisted one
    for await (const conv of this.convs.keys()) this.knownConvs.add(conv)
    for await (const id of this.idx.keys()) this.ids.add(id)
  }

  async close (): Promise<void> {
    while (this.flushing) await new Promise((resolve) => setImmediate(resolve))
    await this.ready().catch(() => {})
    clearTimeout(this.applyTimer)
    if (this.broken === undefined) this.journal.reset()
    this.journal.close()
    await this.db.close()
  }

  /** Resolves once every batch journaled so far is in level, so reads see all writes. */
  private async ready (): Promise<void> {
    if (this.broken !== undefined) throw this.broken
    const seq = this.journaled
    if (this.applied >= seq) return
    await new Promise<void>((resolve, reject) => {
      this.applyWaiters.push({ seq, resolve, reject })
      this.startApply()
    })
  }

  async getClock (): Promise<number> {
    await this.ready()
    const v = await this.meta.get('clock')
    this.clock = Math.max(this.clock, v === undefined ? 0 : Number(v))
    return this.clock
  }

  async getSetting (key: string): Promise<string | undefined> {
    await this.ready()
    return await this.meta.get(`setting:${key}`)
  }

  async putSetting (key: string, value: string): Promise<void> {
    await this.commit([{ sub: this.meta, key: `setting:${key}`, value }])
  }

  async listContacts (): Promise<Contact[]> {
    await this.ready()
    const out: Contact[] = []
    for await (const value of this.contacts.values()) out.push(parse<Contact>(value))
    return out
  }

  async getContact (peerId: PeerIdString): Promise<Contact | undefined> {
    await this.ready()
    const v = await this.contacts.get(peerId)
    return v === undefined ? undefined : parse<Contact>(v)
  }

  async putContact (contact: Contact, avatar?: Uint8Array | null): Promise<void> {
    const ops: Op[] = [{ sub: this.contacts, key: contact.peerId, value: JSON.stringify(contact) }]
    if (avatar === null) ops.push({ sub: this.avatars, key: contact.peerId })
    else if (avatar !== undefined) ops.push({ sub: this.avatars, key: contact.peerId, value: avatar.slice() })
    await this.commit(ops)
  }

  async deleteContact (peerId: PeerIdString): Promise<void> {
    await this.commit([{ sub: this.contacts, key: peerId }, { sub: this.avatars, key: peerId }])
  }

  async getAvatar (peerId: PeerIdString): Promise<Uint8Array | undefined> {
    await this.ready()
    const v = await this.avatars.get(peerId)
    return v === undefined ? undefined : plain(v)
  }

  async queueOutbox (outbox: OutboxRecord): Promise<void> {
    await this.commit([this.outboxOp(outbox)])
  }

  private outboxOp (outbox: OutboxRecord): Op {
    const value = new Uint8Array(OUTBOX_HEADER + outbox.frame.byteLength)
    const view = new DataView(value.buffer)
    view.setFloat64(0, outbox.createdAt)
    view.setFloat64(8, outbox.expiresAt)
    value.set(outbox.frame, OUTBOX_HEADER)
    return { sub: this.outbox, key: outboxKey(outbox.to, outbox.id), value }
  }

  async saveOutgoing (message: MessageRecord, outbox: OutboxRecord, clock: number): Promise<void> {
    this.advanceClock(clock)
    const ops = this.messageOps(message)
    ops.push(this.outboxOp(outbox))
    await this.commit(ops)
  }

  async saveIncoming (messages: MessageRecord[], clock: number, crypto?: CryptoChanges): Promise<MessageRecord[]> {
    // Serialised so two copies of one message arriving at once (direct and mailbox) dedupe.
    const run = this.incomingLock.then(async () => await this.saveIncomingNow(messages, clock, crypto))
    this.incomingLock = run.catch(() => {})
    return await run
  }

  private async saveIncomingNow (messages: MessageRecord[], clock: number, crypto: CryptoChanges | undefined): Promise<MessageRecord[]> {
    // Ids are one namespace: an id already stored (from anyone, or our own) is a duplicate.
    // Only ids the filter cannot rule out cost a read.
    const maybe = messages.filter((m) => this.ids.mightContain(m.id))
    const stored = new Set<string>()
    if (maybe.length > 0) {
      await this.ready()
      const found = await this.idx.getMany(maybe.map((m) => m.id))
      maybe.forEach((m, i) => { if (found[i] !== undefined) stored.add(m.id) })
    }
    const fresh: MessageRecord[] = []
    const ops: Op[] = []
    for (const m of messages) {
      if (stored.has(m.id)) continue
      stored.add(m.id) // a second copy in this batch is a duplicate too
      fresh.push(m)
      for (const op of this.messageOps(m)) ops.push(op)
    }
    if (crypto !== undefined) ops.push(...binaryOps(this.crypto, crypto))
    this.advanceClock(clock)
    await this.commit(ops)
    return fresh
  }

  async settleOutgoing (updates: ReadonlyArray<{ id: MessageId, to: PeerIdString, status: SettledStatus }>): Promise<void> {
    const ops: Op[] = []
    for (const u of updates) {
      // Delivered needs no row of its own: an outgoing message without an outbox entry or
      // a status row is delivered (see withStatus); a 'sent' row from a mailbox deposit goes.
      if (u.status === 'delivered') ops.push({ sub: this.status, key: u.id })
      else ops.push({ sub: this.status, key: u.id, value: u.status })
      ops.push({ sub: this.outbox, key: outboxKey(u.to, u.id) })
    }
    await this.commit(ops)
  }

  async getMessage (id: MessageId): Promise<MessageRecord | undefined> {
    await this.ready()
    const key = await this.idx.get(id)
    if (key === undefined) return undefined
    const value = await this.msgs.get(key)
    if (value === undefined) return undefined
    return (await this.withStatus([parse<MessageRecord>(value)]))[0]
  }

  async history (conversation: PeerIdString, query: HistoryQuery): Promise<MessageRecord[]> {
    await this.ready()
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
    await this.ready()
    const out: ConversationSummary[] = []
    for await (const conv of this.convs.keys()) {
      const last = await this.history(conv as PeerIdString, { limit: 1 })
      out.push({ peerId: conv as PeerIdString, ...(last[0] !== undefined ? { last: last[0] } : {}) })
    }
    return out
  }

  async listOutbox (): Promise<OutboxRecord[]> {
    await this.ready()
    const out: OutboxRecord[] = []
    for await (const [key, value] of this.outbox.iterator()) {
      const [to, id] = key.split('\x00') as [PeerIdString, MessageId]
      if (value.byteLength < OUTBOX_HEADER || id === undefined) throw new CorruptRecordError(`outbox entry ${key} is malformed`)
      const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
      out.push({ id, to, createdAt: view.getFloat64(0), expiresAt: view.getFloat64(8), frame: new Uint8Array(value.subarray(OUTBOX_HEADER)) })
    }
    return out
  }

  async getCrypto (key: string): Promise<Uint8Array | undefined> {
    await this.ready()
    const v = await this.crypto.get(key)
    return v === undefined ? undefined : plain(v)
  }

  async listCrypto (prefix: string): Promise<Array<{ key: string, value: Uint8Array }>> {
    await this.ready()
    const out: Array<{ key: string, value: Uint8Array }> = []
    for await (const [key, value] of this.crypto.iterator({ gte: prefix, lt: prefix + '\xff' })) out.push({ key, value: plain(value) })
    return out
  }

  async putCrypto (changes: CryptoChanges): Promise<void> {
    if (changes.size === 0) return
    await this.commit(binaryOps(this.crypto, changes))
  }

  async getGroupEntry (key: string): Promise<Uint8Array | undefined> {
    await this.ready()
    const v = await this.groups.get(key)
    return v === undefined ? undefined : plain(v)
  }

  async listGroupEntries (prefix: string, options: GroupListOptions = {}): Promise<Array<{ key: string, value: Uint8Array }>> {
    checkGroupListOptions(options)
    await this.ready()
    const out: Array<{ key: string, value: Uint8Array }> = []
    if (options.limit === 0) return out
    // Keys under a prefix are one contiguous run in byte order: the first key past it ends the
    // listing (no upper bound to compute, which '\xff' would get wrong for non-Latin keys).
    for await (const [key, value] of this.groups.iterator({ gte: groupListStart(prefix, options) })) {
      if (!key.startsWith(prefix)) break
      out.push({ key, value: plain(value) })
      if (out.length === options.limit) break
    }
    return out
  }

  async putGroupEntries (changes: GroupChanges, crypto?: CryptoChanges): Promise<void> {
    checkGroupChanges(changes)
    // Values are copied: the batch waits in memory for level, and the caller may reuse its buffers.
    const ops = binaryOps(this.groups, changes, true)
    if (crypto !== undefined) ops.push(...binaryOps(this.crypto, crypto))
    if (ops.length === 0) return
    await this.commit(ops)
  }

  private advanceClock (clock: number): void {
    if (clock <= this.clock) return
    this.clock = clock
    this.clockDirty = true
  }

  /** The message, its id index and (first time only) its conversation marker. */
  private messageOps (m: MessageRecord): Op[] {
    const key = messageSortKey(m.conversation, m.lamport, m.from, m.id)
    this.ids.add(m.id) // before the write lands: a false "maybe" only costs a read
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
    const [statuses, queued] = await Promise.all([
      this.status.getMany(outgoing.map((r) => r.id)),
      this.outbox.getMany(outgoing.map((r) => outboxKey(r.conversation, r.id)))
    ])
    outgoing.forEach((r, i) => {
      const s = statuses[i]
      r.status = s !== undefined ? s as MessageStatus : queued[i] !== undefined ? 'pending' : 'delivered'
    })
    return records
  }

  /**
   * Group commit: every caller's ops in this tick go into one journal record (one
   * synchronous write: durable against a process crash when the callers resume), then
   * into level in the background. Each caller's ops stay in one batch, so they stay atomic.
   */
  private async commit (ops: Op[]): Promise<void> {
    if (this.broken !== undefined) throw this.broken
    await new Promise<void>((resolve, reject) => {
      for (const op of ops) this.pendingOps.push(op)
      this.waiters.push({ resolve, reject })
      if (!this.flushing) {
        // In a microtask: the caller's synchronous work (e.g. putting an envelope on the
        // wire) goes first, and every write issued in this tick joins one record.
        this.flushing = true
        queueMicrotask(() => { this.flush() })
      }
    })
  }

  private flush (): void {
    const ops = this.pendingOps
    const waiters = this.waiters
    this.pendingOps = []
    this.waiters = []
    this.flushing = false
    const batch: JournalOp[] = []
    for (const op of ops) batch.push({ key: op.sub.prefix + op.key, ...(op.value !== undefined ? { value: op.value } : {}) })
    const withClock = this.clockDirty
    if (withClock) {
      // One clock write per batch, whatever number of messages moved it.
      batch.push({ key: this.meta.prefix + 'clock', value: String(this.clock) })
      this.clockDirty = false
    }
    try {
      this.journal.append(batch)
    } catch (err) {
      if (withClock) this.clockDirty = true
      for (const w of waiters) w.reject(err)
      return
    }
    const seq = ++this.journaled
    this.applyQueue.push({ seq, ops: batch })
    this.queuedOps += batch.length
    for (const w of waiters) w.resolve()
    this.scheduleApply()
  }

  /**
   * Level's own work per batch (memtable, its log, compaction threads) is what slows the
   * node, and some values change with every message (a Signal session is 4-6 KiB). So
   * batches gather for APPLY_DELAY_MS and each key's last value is written once; a reader
   * never waits for the timer (ready() applies at once), nor does a big backlog.
   */
  private scheduleApply (): void {
    if (this.applying) return
    if (this.queuedOps >= APPLY_NOW_OPS) { this.startApply(); return }
    if (this.applyTimer !== undefined) return
    this.applyTimer = setTimeout(() => { this.applyTimer = undefined; this.startApply() }, APPLY_DELAY_MS)
  }

  private startApply (): void {
    clearTimeout(this.applyTimer)
    this.applyTimer = undefined
    if (this.applying || this.applyQueue.length === 0) return
    this.applying = true
    void this.apply()
  }

  /**
   * Move journaled batches into level, many at a time; then the journal can be emptied.
   * What was journaled meanwhile goes at once only if a reader waits for it (or a lot is
   * queued); otherwise it gathers for the next timer, so steady traffic is coalesced too.
   */
  private async apply (): Promise<void> {
    while (this.applyQueue.length > 0) {
      const batches = this.applyQueue
      this.applyQueue = []
      this.queuedOps = 0
      const upTo = batches[batches.length - 1]?.seq ?? this.applied
      try {
        // Only the last operation on each key matters (the journal keeps the history).
        const last = new Map<string, JournalOp>()
        for (const b of batches) for (const op of b.ops) last.set(op.key, op)
        // Keys already carry the sublevels' prefixes, so this writes the root database
        // directly. Small: an array batch (cheapest per call). Large: a chained batch (cheapest
        // per operation; abstract-level copies every array operation).
        if (last.size <= 64) {
          const rootOps = [...last.values()].map(toRootOp)
          await this.db.batch(rootOps as Array<AbstractBatchOperation<Db, string, string>>, { sync: this.options.sync === true })
        } else {
          const chained = this.db.batch()
          for (const op of last.values()) {
            if (op.value === undefined) chained.del(op.key)
            else if (typeof op.value === 'string') chained.put(op.key, op.value)
            // Typed for string values; the per-operation 'view' encoding takes the bytes.
            else chained.put(op.key, op.value as unknown as string, { valueEncoding: 'view' })
          }
          await chained.write({ sync: this.options.sync === true })
        }
      } catch (err) {
        // The journal still holds these batches; they are applied on the next open.
        this.broken = new CorruptRecordError(`writing to the database failed: ${(err as Error).message}`)
        log.error('applying journal to level failed: %e', err)
        for (const w of this.applyWaiters) w.reject(this.broken)
        this.applyWaiters = []
        this.applying = false
        return
      }
      this.applied = upTo
      const waiting = this.applyWaiters
      this.applyWaiters = []
      for (const w of waiting) {
        if (w.seq <= this.applied) w.resolve()
        else this.applyWaiters.push(w)
      }
      if (this.applyWaiters.length === 0 && this.queuedOps < APPLY_NOW_OPS) break
    }
    this.applying = false
    if (this.applyQueue.length > 0) this.scheduleApply()
    else if (this.journal.size > JOURNAL_RESET_BYTES) this.journal.reset()
  }
}

/** How long journaled batches gather before they go into level (unless read or many). */
const APPLY_DELAY_MS = 25
const APPLY_NOW_OPS = 4096

/** Empty the journal when it is all applied and bigger than this. */
const JOURNAL_RESET_BYTES = 1024 * 1024

/** Puts and (for null) deletes in one binary sublevel; `copy` takes the bytes out of the caller's hands. */
function binaryOps (sub: BinSub, changes: ReadonlyMap<string, Uint8Array | null>, copy = false): Op[] {
  const ops: Op[] = []
  for (const [key, value] of changes) ops.push(value === null ? { sub, key } : { sub, key, value: copy ? value.slice() : value })
  return ops
}

function toRootOp (op: JournalOp): RootOp {
  if (op.value === undefined) return { type: 'del', key: op.key }
  if (typeof op.value === 'string') return { type: 'put', key: op.key, value: op.value }
  return { type: 'put', key: op.key, value: op.value, valueEncoding: 'view' }
}

/** level hands out Buffers; callers get plain Uint8Arrays (same memory, no copy). */
function plain (v: Uint8Array): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
}

function parse<T> (value: string): T {
  try {
    return JSON.parse(value) as T
  } catch {
    throw new CorruptRecordError('a stored record is not valid JSON')
  }
}
