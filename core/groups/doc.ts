import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { CorruptRecordError, InvalidPeerIdError, InvalidRequestError, MessageTooLargeError } from '../errors.js'
import { isMessageId, type GroupId, type MessageId, type PeerIdString } from '../ids.js'
import { forComponent } from '../logger.js'
import {
  GroupUpdateRefusedError, InvalidGroupRecordError, InvalidStateVectorError, MissingDependencyError,
  NotGroupAdminError, NotGroupMemberError, UnknownGroupMemberError
} from './errors.js'
import {
  checkRecordShape, clientIdOf, compactRecord, isEd25519PeerId, recordHash, recordSpan, signRecordNow, verifyRecord, verifyRecords,
  type GroupRecord, type RecordSpan
} from './record.js'

export { recordKey, type RecordKey } from './record.js'

const log = forComponent('groups:doc')

/** Longest group name, in characters (code points). */
export const MAX_GROUP_NAME_CHARS = 100
/** Largest message text, in UTF-8 bytes. */
export const MAX_GROUP_TEXT_BYTES = 64 * 1024
/** Most current members a local change may lead to (remote records are not held to it). */
export const MAX_GROUP_MEMBERS = 256

/** Transaction origin of records applied by apply/applyMany (observers can tell them apart). */
export const GROUP_RECORD_ORIGIN = Symbol('parley:group-record')
/** Transaction origin of this node's own changes. */
export const GROUP_LOCAL_ORIGIN = Symbol('parley:group-local')
/** Transaction origin of open() (snapshot and stored records). */
export const GROUP_LOAD_ORIGIN = Symbol('parley:group-load')

/**
 * yjs gives a document a new random clientID when a remote update (Y.applyUpdate always runs
 * as remote) brings structs of its own clientID, as this node's own records do when they come
 * back (open() without a snapshot, a sync after data loss). Our clientID is fixed, so while
 * records are applied the document holds this one, which no member has (clientIdOf clears
 * the top bit), and gets its own back afterwards.
 */
const PARKED_CLIENT = 0xffffffff

type RootName = 'meta' | 'members' | 'messages'
const ROOTS: readonly RootName[] = ['meta', 'members', 'messages']

export type MemberRole = 'admin' | 'member'
export type MemberState = MemberRole | 'removed' | 'left'

export interface GroupMember {
  peerId: PeerIdString
  role: MemberRole
  addedBy: PeerIdString
  addedAt: number
}

export interface GroupMessageView {
  readonly id: MessageId
  readonly from: PeerIdString
  readonly text: string
  readonly sentAt: number
  readonly lamport: number
}

/** What one accepted record changed. `messages`: messages new to this document, in order. */
export interface ApplyResult {
  applied: boolean
  members: boolean
  meta: boolean
  messages: GroupMessageView[]
}

/** What a batch changed: counts, the refusals (each with its named error), and the changes. */
export interface ApplyManyResult {
  applied: number
  duplicates: number
  refused: Array<{ record: GroupRecord, error: Error }>
  members: boolean
  meta: boolean
  messages: GroupMessageView[]
}

/** One key set by a record (or a local change): the unit the rules are checked on. */
interface SetOp {
  root: RootName
  key: string
  value: unknown
}

/** A record that decoded and whose shape is checked (signature not yet). */
interface Parsed {
  record: GroupRecord
  span: RecordSpan
  structs: Array<Y.Item | Y.GC | Y.Skip>
  ds: Map<number, Array<{ clock: number, len: number }>>
}

interface StoredRecord {
  record: GroupRecord
  clock: number
  end: number
  seq: number
}

type MemberValue =
  | { role: MemberRole, addedBy: string, addedAt: number }
  | { role: 'removed', by: string, at: number, clock: number }
  | { role: 'left', at: number }

interface MessageValue {
  from: string
  text: string
  sentAt: number
  lamport: number
}

export interface GroupDocInit {
  group: GroupId
  self: PeerIdString
  /** self's libp2p Ed25519 key: it signs this node's records. */
  privateKey: PrivateKey
  /** Wall clock for the times written into member entries (default Date.now). */
  clock?: () => number
  /**
   * If known, the peer that created the group: a creation record from anyone else is refused
   * (protects an empty document from a forged creation).
   */
  creator?: PeerIdString
}

export interface CreateGroupInit extends GroupDocInit {
  name: string
  members: PeerIdString[]
  /** Creation time (default clock()). */
  now?: number
}

export interface OpenGroupInit extends GroupDocInit {
  /** Y.encodeStateAsUpdate bytes this node wrote itself (trusted). */
  snapshot?: Uint8Array
  /**
   * The stored records (accepted once already: not verified again), best in the order they
   * were accepted: that order is kept as the order recordsSince serves them in.
   */
  records: Iterable<GroupRecord>
}

/**
 * One group's state: a Y.Doc with three root maps (`meta`, `members`, `messages`), written by
 * this node with the yjs clientID `clientIdOf(self)`, and the log of signed records it holds.
 * Every record is checked against the group's rules before yjs sees it; a refusal (a named
 * error) leaves the document byte-for-byte unchanged. apply/applyMany are async (signatures
 * are verified first); all checks and the yjs apply then run synchronously, so concurrent
 * calls never interleave inside a check.
 *
 * @example
 * const { doc, record } = await GroupDoc.create({ group, self, privateKey, name: 'Hikers', members: [bob] })
 * const sent = await doc.addMessage({ id: newMessageId(), text: 'hi', sentAt: Date.now(), lamport: 1 })
 * // on Bob's side:
 * const bobs = GroupDoc.open({ group, self: bob, privateKey: bobKey, records: [] })
 * await bobs.applyMany([record, sent]) // { applied: 2, ... }
 * bobs.messages() // [{ id, from: alice, text: 'hi', ... }]
 */
export class GroupDoc {
  readonly group: GroupId
  readonly self: PeerIdString
  private readonly privateKey: PrivateKey
  private readonly clock: () => number
  private readonly creator: PeerIdString | undefined
  private readonly selfClient: number
  private readonly ydoc: Y.Doc
  private readonly meta: Y.Map<unknown>
  private readonly membersMap: Y.Map<unknown>
  private readonly messagesMap: Y.Map<unknown>
  private readonly roots: Map<unknown, RootName>
  /** The signed log: per client, records in clock order. */
  private readonly log = new Map<number, StoredRecord[]>()
  private seq = 0
  private recordCount = 0
  /** Messages in (lamport, from, id) order, and by id. */
  private readonly sorted: GroupMessageView[] = []
  private readonly byId = new Map<string, GroupMessageView>()
  /** yjs client id -> the peer in the member list that writes with it. */
  private readonly clientOwners = new Map<number, string>()
  private readonly clients = new Map<string, number>()
  private highestLamport = 0

  private constructor (init: GroupDocInit, ydoc: Y.Doc) {
    const owner = peerIdFromPrivateKey(init.privateKey).toString()
    if (owner !== init.self) throw new InvalidRequestError('the private key is not self\'s')
    this.group = init.group
    this.self = init.self
    this.privateKey = init.privateKey
    this.clock = init.clock ?? Date.now
    this.creator = init.creator
    this.selfClient = clientIdOf(init.self)
    this.ydoc = ydoc
    this.meta = ydoc.getMap('meta')
    this.membersMap = ydoc.getMap('members')
    this.messagesMap = ydoc.getMap('messages')
    this.roots = new Map<unknown, RootName>([[this.meta, 'meta'], [this.membersMap, 'members'], [this.messagesMap, 'messages']])
  }

  /** A new group: meta, self as admin and the others as members, in one signed record. */
  static async create (init: CreateGroupInit): Promise<{ doc: GroupDoc, record: GroupRecord }> {
    const doc = new GroupDoc(init, newYDoc(init.self))
    const now = init.now ?? doc.clock()
    checkName(init.name)
    const others = [...new Set(init.members)].filter(peer => peer !== init.self)
    for (const peer of others) checkPeer(peer)
    if (others.length + 1 > MAX_GROUP_MEMBERS) throw new InvalidRequestError(`a group has at most ${MAX_GROUP_MEMBERS} members`)
    const ops: SetOp[] = [
      { root: 'meta', key: 'name', value: init.name },
      { root: 'meta', key: 'createdBy', value: init.self },
      { root: 'meta', key: 'createdAt', value: now },
      { root: 'members', key: init.self, value: { role: 'admin', addedBy: init.self, addedAt: now } },
      ...others.map((peer): SetOp => ({ root: 'members', key: peer, value: { role: 'member', addedBy: init.self, addedAt: now } }))
    ]
    const record = await doc.write(ops)
    return { doc, record }
  }

  /**
   * Rebuild a group from this node's own snapshot and stored records. Records are applied in
   * an order yjs can integrate; one whose dependencies never arrive is dropped (logged).
   */
  static open (init: OpenGroupInit): GroupDoc {
    const records = [...init.records]
    for (const r of records) {
      checkRecordShape(r)
      if (r.group !== init.group) throw new InvalidGroupRecordError(`a record of group ${r.group} in group ${init.group}`)
    }
    const spans = records.map(r => recordSpan(r.update))
    let ydoc = loadYDoc(init.self, init.snapshot, records, spans, false)
    if (ydoc.store.pendingStructs !== null || ydoc.store.pendingDs !== null) {
      ydoc.destroy()
      ydoc = loadYDoc(init.self, init.snapshot, records, spans, true)
    }
    const doc = new GroupDoc(init, ydoc)
    doc.indexLoaded(records, spans)
    return doc
  }

  // ---- views ----

  get name (): string {
    const v = this.meta.get('name')
    return typeof v === 'string' ? v : ''
  }

  get createdBy (): PeerIdString | undefined {
    const v = this.meta.get('createdBy')
    return typeof v === 'string' ? v as PeerIdString : undefined
  }

  get createdAt (): number | undefined {
    const v = this.meta.get('createdAt')
    return typeof v === 'number' ? v : undefined
  }

  /** Current members (admins and members), ordered by addedAt then peer id. */
  members (): GroupMember[] {
    const out: GroupMember[] = []
    for (const [peer, value] of this.membersMap.entries()) {
      const v = value as MemberValue
      if (v.role === 'admin' || v.role === 'member') {
        out.push({ peerId: peer as PeerIdString, role: v.role, addedBy: v.addedBy as PeerIdString, addedAt: v.addedAt })
      }
    }
    return out.sort((a, b) => a.addedAt - b.addedAt || compareStrings(a.peerId, b.peerId))
  }

  memberState (peer: string): MemberState | undefined {
    const v = this.membersMap.get(peer) as MemberValue | undefined
    return v?.role
  }

  isMember (peer: string): boolean {
    const state = this.memberState(peer)
    return state === 'admin' || state === 'member'
  }

  isAdmin (peer: string): boolean {
    return this.memberState(peer) === 'admin'
  }

  /**
   * Messages oldest to newest in (lamport, from, id) order: the newest `limit` (all if
   * undefined) before the message `before` (an unknown id gives none).
   */
  messages (limit?: number, before?: MessageId): GroupMessageView[] {
    let end = this.sorted.length
    if (before !== undefined) {
      const pivot = this.byId.get(before)
      if (pivot === undefined) return []
      end = this.position(pivot)
    }
    const start = limit === undefined ? 0 : Math.max(0, end - Math.max(0, limit))
    return this.sorted.slice(start, end)
  }

  message (id: string): GroupMessageView | undefined {
    return this.byId.get(id)
  }

  get messageCount (): number {
    return this.sorted.length
  }

  /** The highest Lamport clock of any message here (0 if none): send with one more. */
  get lamport (): number {
    return this.highestLamport
  }

  /** How many signed records the document holds. */
  get size (): number {
    return this.recordCount
  }

  // ---- sync support ----

  stateVector (): Uint8Array {
    return Y.encodeStateVector(this.ydoc)
  }

  /**
   * Every stored record with a struct at or beyond `stateVector`'s clock for its client, in the
   * order this document accepted them (an order in which they apply). InvalidStateVectorError
   * if the state vector does not decode.
   */
  recordsSince (stateVector: Uint8Array): GroupRecord[] {
    const vector = decodeStateVector(stateVector)
    const out: StoredRecord[] = []
    for (const [client, list] of this.log) {
      const since = vector.get(client) ?? 0
      for (let i = firstEndingAfter(list, since); i < list.length; i++) out.push(list[i] as StoredRecord)
    }
    return out.sort((a, b) => a.seq - b.seq).map(s => s.record)
  }

  /** The whole state (Y.encodeStateAsUpdate), for this node's own storage. */
  snapshot (): Uint8Array {
    return Y.encodeStateAsUpdate(this.ydoc)
  }

  // ---- remote records ----

  /**
   * Verify, check and apply one record. A record already here gives `{ applied: false }`.
   * Throws InvalidGroupRecordError, GroupSignatureError, MissingDependencyError or a
   * GroupUpdateRefusedError (NotGroupAdminError, NotGroupMemberError); the document is then
   * unchanged.
   *
   * `authorVerified`: the caller has already proven that `record.author` made this record by
   * other means (GroupManager: it came out of that member's own sender-key ciphertext, whose
   * signature libsignal checked), so its record signature is not checked again.
   */
  async apply (record: GroupRecord, options: { authorVerified?: boolean } = {}): Promise<ApplyResult> {
    const parsed = this.parse(record)
    if (parsed === undefined) return { applied: false, members: false, meta: false, messages: [] }
    if (options.authorVerified !== true) await verifyRecord(record)
    const changes: ApplyResult = { applied: false, members: false, meta: false, messages: [] }
    this.transactRemote(() => {
      changes.applied = this.integrate(parsed, changes)
    })
    return changes
  }

  /**
   * apply() for many records at once (sync catch-up): signatures verified together (a large
   * batch partly on verification workers: verifyRecords), then one
   * yjs transaction. Records may come in any order: one refused for a missing dependency (or an
   * author not yet in the member list) is tried again after the others. Never throws for a
   * record; each refusal is listed with its error.
   */
  async applyMany (records: Iterable<GroupRecord>): Promise<ApplyManyResult> {
    const result: ApplyManyResult = { applied: 0, duplicates: 0, refused: [], members: false, meta: false, messages: [] }
    const candidates: Parsed[] = []
    for (const record of records) {
      try {
        const parsed = this.parse(record)
        if (parsed === undefined) result.duplicates++
        else candidates.push(parsed)
      } catch (err) {
        result.refused.push({ record, error: err as Error })
      }
    }
    const signatureErrors = await verifyRecords(candidates.map(p => p.record))
    const verified = candidates.filter((p, i) => {
      const error = signatureErrors[i]
      if (error === undefined) return true
      result.refused.push({ record: p.record, error })
      return false
    })
    let queue = inClockOrder(verified, p => p.span)
    this.transactRemote(() => {
      while (queue.length > 0) {
        const retry: Array<{ p: Parsed, error: Error }> = []
        let progress = false
        for (const p of queue) {
          try {
            if (this.integrate(p, result)) {
              result.applied++
              progress = true
            } else {
              result.duplicates++
            }
          } catch (err) {
            if (mayResolveLater(err)) retry.push({ p, error: err as Error })
            else result.refused.push({ record: p.record, error: err as Error })
          }
        }
        if (!progress) {
          for (const { p, error } of retry) result.refused.push({ record: p.record, error })
          break
        }
        queue = retry.map(r => r.p)
      }
    })
    result.messages.sort(compareMessages)
    return result
  }

  // ---- local changes ----

  /** Post a message as self (a current member). Returns the signed record to send. */
  async addMessage (m: { id: MessageId, text: string, sentAt: number, lamport: number }): Promise<GroupRecord> {
    if (!isMessageId(m.id)) throw new InvalidRequestError('message id is not a ULID')
    if (typeof m.text !== 'string') throw new InvalidRequestError('message text must be a string')
    if (Buffer.byteLength(m.text, 'utf8') > MAX_GROUP_TEXT_BYTES) throw new MessageTooLargeError(`message text over ${MAX_GROUP_TEXT_BYTES} bytes`)
    if (!isTimestamp(m.sentAt) || !isLamport(m.lamport)) throw new InvalidRequestError('sentAt and lamport must be non-negative integers (lamport >= 1)')
    if (this.messagesMap.has(m.id)) throw new InvalidRequestError(`message ${m.id} is already in the group`)
    return await this.write([{ root: 'messages', key: m.id, value: { from: this.self, text: m.text, sentAt: m.sentAt, lamport: m.lamport } }])
  }

  /** Add a peer, or change a member's role (self must be an admin). */
  async setMember (peer: PeerIdString, role: MemberRole): Promise<GroupRecord> {
    checkPeer(peer)
    if (role !== 'admin' && role !== 'member') throw new InvalidRequestError('role must be admin or member')
    if (!this.isMember(peer) && this.members().length >= MAX_GROUP_MEMBERS) throw new InvalidRequestError(`a group has at most ${MAX_GROUP_MEMBERS} members`)
    return await this.write([{ root: 'members', key: peer, value: { role, addedBy: this.self, addedAt: this.clock() } }])
  }

  /** Remove a current member (self must be an admin). */
  async removeMember (peer: PeerIdString): Promise<GroupRecord> {
    if (this.isMember(this.self) && !this.isAdmin(this.self)) throw new NotGroupAdminError(`${this.self} may not change the member list`)
    if (!this.isMember(peer)) throw new UnknownGroupMemberError(`${peer} is not a member of the group`)
    const clock = Y.getState(this.ydoc.store, this.clientOf(peer))
    return await this.write([{ root: 'members', key: peer, value: { role: 'removed', by: this.self, at: this.clock(), clock } }])
  }

  /** Leave the group (or decline an invite): self's own entry becomes 'left'. */
  async leave (): Promise<GroupRecord> {
    return await this.write([{ root: 'members', key: this.self, value: { role: 'left', at: this.clock() } }])
  }

  /** Rename the group (self must be an admin). */
  async rename (name: string): Promise<GroupRecord> {
    checkName(name)
    return await this.write([{ root: 'meta', key: 'name', value: name }])
  }

  // ---- internals ----

  /** One yjs transaction for records of others (see PARKED_CLIENT). */
  private transactRemote (fn: () => void): void {
    this.ydoc.clientID = PARKED_CLIENT
    try {
      this.ydoc.transact(fn, GROUP_RECORD_ORIGIN)
    } finally {
      this.ydoc.clientID = this.selfClient
    }
  }

  private rootMap (root: RootName): Y.Map<unknown> {
    return root === 'meta' ? this.meta : root === 'members' ? this.membersMap : this.messagesMap
  }

  private clientOf (peer: string): number {
    let client = this.clients.get(peer)
    if (client === undefined) {
      client = clientIdOf(peer)
      if (this.clients.size > 4096) this.clients.clear()
      this.clients.set(peer, client)
    }
    return client
  }

  /**
   * Check the ops against the rules, apply them in one local transaction, sign the update and
   * keep it in the log.
   */
  private async write (ops: SetOp[]): Promise<GroupRecord> {
    const creation = ops.some(op => op.root === 'meta' && op.key === 'createdBy')
    if (!creation && this.ydoc.store.clients.size === 0) throw notMember(this.self, undefined)
    this.checkOps(this.self, ops)
    let update: Uint8Array | undefined
    const onUpdate = (bytes: Uint8Array, origin: unknown): void => {
      if (origin === GROUP_LOCAL_ORIGIN) update = bytes
    }
    const sets: Array<SetOp & { id: Y.ID }> = []
    this.ydoc.on('update', onUpdate)
    try {
      this.ydoc.transact(() => {
        for (const op of ops) {
          this.rootMap(op.root).set(op.key, op.value)
          sets.push({ ...op, id: Y.createID(this.selfClient, Y.getState(this.ydoc.store, this.selfClient) - 1) })
        }
      }, GROUP_LOCAL_ORIGIN)
    } finally {
      this.ydoc.off('update', onUpdate)
    }
    if (update === undefined) throw new Error('a local change produced no update')
    // Signed and logged at once: the state vector never claims a record the log lacks.
    // Chained to self's previous record (see GroupRecord.prev).
    const last = this.log.get(this.selfClient)?.at(-1)
    const record = signRecordNow(this.privateKey, this.group, update, last === undefined ? undefined : recordHash(last.record))
    this.effects(sets, { members: false, meta: false, messages: [] })
    this.store(record, recordSpan(update))
    return record
  }

  /**
   * Decode a record and check its form; nothing here depends on the document's state.
   * Returns undefined for an exact copy of a stored record (not decoded further).
   */
  private parse (record: GroupRecord): Parsed | undefined {
    checkRecordShape(record)
    if (record.group !== this.group) throw new GroupUpdateRefusedError('wrong-group', `a record of group ${record.group}`)
    const span = recordSpan(record.update)
    if (this.isStoredCopy(record, span)) return undefined
    let decoded: ReturnType<typeof Y.decodeUpdate>
    try {
      decoded = Y.decodeUpdate(record.update)
    } catch (err) {
      throw new InvalidGroupRecordError(`group record update does not decode: ${(err as Error).message}`)
    }
    if (decoded.structs.length !== span.count) throw new InvalidGroupRecordError('group record update holds another number of structs than it says')
    return { record, span, structs: decoded.structs, ds: decoded.ds.clients }
  }

  /** True if the log holds exactly this record (same update and signature). */
  private isStoredCopy (record: GroupRecord, span: RecordSpan): boolean {
    const stored = this.stored(span.client, span.clock)
    return stored !== undefined && bytesEqual(stored.record.update, record.update) && bytesEqual(stored.record.signature, record.signature)
  }

  private stored (client: number, clock: number): StoredRecord | undefined {
    const list = this.log.get(client)
    if (list === undefined) return undefined
    let lo = 0
    let hi = list.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((list[mid] as StoredRecord).clock < clock) lo = mid + 1
      else hi = mid
    }
    const found = list[lo]
    return found?.clock === clock ? found : undefined
  }

  /**
   * Check a verified record against the current state and apply it (inside the caller's
   * transaction). Returns false for a duplicate; throws a named error, before yjs sees
   * anything, for every refusal.
   */
  private integrate (p: Parsed, changes: Omit<ApplyResult, 'applied'>): boolean {
    const { record, span } = p
    const author = record.author
    const authorClient = this.clientOf(author)
    if (span.client !== authorClient) throw new GroupUpdateRefusedError('invalid-struct', `structs of client ${span.client}, not of the author's ${authorClient}`)
    const state = Y.getState(this.ydoc.store, span.client)
    if (span.clock > state) throw new MissingDependencyError(`the author's structs ${state}..${span.clock - 1} are missing`)
    if (span.clock < state) {
      const stored = this.stored(span.client, span.clock)
      if (stored !== undefined ? bytesEqual(stored.record.update, record.update) : span.clock + span.count <= state) return false
      throw new GroupUpdateRefusedError('conflict', `structs ${span.clock}.. of ${author} differ from the ones stored here`)
    }
    const sets = this.resolveStructs(p)
    this.checkOps(author, sets, span.clock + span.count)
    this.checkDeletes(p, sets)
    Y.applyUpdate(this.ydoc, record.update, GROUP_RECORD_ORIGIN)
    if (Y.getState(this.ydoc.store, span.client) !== span.clock + span.count || this.ydoc.store.pendingStructs !== null) {
      // Not reachable when the checks above hold; say so loudly rather than keep quiet.
      log.error('record %s:%d did not integrate fully', span.client, span.clock)
    }
    this.effects(sets, changes)
    this.store(record, span)
    return true
  }

  /** Every struct as a key set on a root map; refuses anything else. */
  private resolveStructs (p: Parsed): Array<SetOp & { id: Y.ID, origin: Y.ID | null }> {
    const { span } = p
    const sets: Array<SetOp & { id: Y.ID, origin: Y.ID | null }> = []
    for (let i = 0; i < p.structs.length; i++) {
      const s = p.structs[i]
      if (!(s instanceof Y.Item)) throw new GroupUpdateRefusedError('invalid-struct', 'GC and Skip structs are not accepted')
      if (s.id.client !== span.client || s.id.clock !== span.clock + i) throw new GroupUpdateRefusedError('invalid-struct', 'structs out of sequence')
      if (!(s.content instanceof Y.ContentAny) || s.content.arr.length !== 1) throw new GroupUpdateRefusedError('invalid-struct', 'only single plain values are accepted')
      if (s.rightOrigin !== null) throw new GroupUpdateRefusedError('invalid-struct', 'map entries have no right origin')
      let root: RootName
      let key: string
      if (s.origin === null) {
        const parent: unknown = s.parent
        if (typeof parent !== 'string' || !(ROOTS as readonly string[]).includes(parent)) throw new GroupUpdateRefusedError('invalid-struct', 'a struct outside the meta, members and messages maps')
        if (typeof s.parentSub !== 'string') throw new GroupUpdateRefusedError('invalid-struct', 'a struct that is not a map entry')
        root = parent as RootName
        key = s.parentSub
      } else {
        const o = s.origin
        if (o.client === span.client && o.clock >= span.clock) {
          const earlier = sets[o.clock - span.clock]
          if (earlier === undefined || o.clock - span.clock >= i) throw new GroupUpdateRefusedError('invalid-struct', 'a struct after itself')
          root = earlier.root
          key = earlier.key
        } else {
          if (Y.getState(this.ydoc.store, o.client) <= o.clock) throw new MissingDependencyError(`the overwritten item ${o.client}:${o.clock} is missing`)
          const item = Y.getItem(this.ydoc.store, o)
          const parentRoot = item instanceof Y.Item && item.parent instanceof Y.AbstractType ? this.roots.get(item.parent) : undefined
          if (parentRoot === undefined || typeof item.parentSub !== 'string') throw new GroupUpdateRefusedError('invalid-struct', 'a struct after an item outside the root maps')
          root = parentRoot
          key = item.parentSub
        }
      }
      sets.push({ root, key, value: s.content.arr[0], id: s.id, origin: s.origin })
    }
    return sets
  }

  /**
   * The rules of "who may change what", for `author` setting `ops` against the current
   * state. The empty document takes only a creation record.
   */
  private checkOps (author: PeerIdString, ops: SetOp[], end?: number): void {
    const creating = this.ydoc.store.clients.size === 0
    if (creating) this.checkCreation(author, ops)
    const role = creating ? 'admin' : this.roleFor(author, end)
    const newClients = new Map<number, string>()
    for (const op of ops) {
      if (op.root === 'meta') {
        if (role !== 'admin') throw new NotGroupAdminError(`${author} may not change the group's ${op.key}`)
        checkMetaValue(author, op.key, op.value, creating)
      } else if (op.root === 'members') {
        const v = memberValue(op.value)
        if (v === undefined) throw new GroupUpdateRefusedError('invalid-value', `not a member entry for ${op.key}`)
        if (v.role === 'left') {
          if (op.key !== author) throw new GroupUpdateRefusedError('invalid-value', 'only a member itself may leave')
          if (role !== 'admin' && role !== 'member') throw notMember(author, role)
          continue
        }
        if (role !== 'admin') throw new NotGroupAdminError(`${author} may not change the member list`)
        if ((v.role === 'removed' ? v.by : v.addedBy) !== author) throw new GroupUpdateRefusedError('invalid-value', 'a member entry names another author')
        if (!isEd25519PeerId(op.key)) throw new GroupUpdateRefusedError('invalid-value', `${op.key} is not an Ed25519 peer id`)
        const client = this.clientOf(op.key)
        const owner = this.clientOwners.get(client) ?? newClients.get(client)
        if (owner !== undefined && owner !== op.key) throw new GroupUpdateRefusedError('client-collision', `${op.key} writes with the client id of ${owner}`)
        newClients.set(client, op.key)
      } else {
        if (role !== 'admin' && role !== 'member') throw notMember(author, role)
        if (!isMessageId(op.key)) throw new GroupUpdateRefusedError('invalid-value', 'a message key that is not a ULID')
        const v = messageValue(op.value)
        if (v === undefined || v.from !== author) throw new GroupUpdateRefusedError('invalid-value', `not a message of ${author}`)
        const current = this.messagesMap._map.get(op.key)
        if (current !== undefined && (current.id.client !== this.clientOf(author) || (this.messagesMap.get(op.key) as MessageValue | undefined)?.from !== author)) {
          throw new GroupUpdateRefusedError('foreign-message', `${author} may not change another member's message ${op.key}`)
        }
      }
    }
  }

  /**
   * The author's role for a record ending at clock `end`. A removal entry holds how many of
   * the removed peer's structs the admin had (`clock`): records within them were written while
   * a member and count as a member's wherever they arrive, before or after the removal.
   */
  private roleFor (author: PeerIdString, end: number | undefined): MemberState | undefined {
    const v = this.membersMap.get(author) as MemberValue | undefined
    if (v?.role === 'removed' && end !== undefined && end <= v.clock) return 'member'
    return v?.role
  }

  private checkCreation (author: PeerIdString, ops: SetOp[]): void {
    const last = (root: RootName, key: string): unknown => ops.findLast(op => op.root === root && op.key === key)?.value
    if (last('meta', 'createdBy') === undefined) throw new MissingDependencyError('the group\'s creation record is missing')
    if (this.creator !== undefined && author !== this.creator) throw new GroupUpdateRefusedError('not-creation', `the group is created by ${this.creator}, not ${author}`)
    if (last('meta', 'name') === undefined || last('meta', 'createdAt') === undefined || memberValue(last('members', author))?.role !== 'admin') {
      throw new GroupUpdateRefusedError('not-creation', 'a creation record sets name, createdBy, createdAt and makes its author an admin')
    }
  }

  /** Each deleted id must be an item one of the record's structs overwrites (its origin). */
  private checkDeletes (p: Parsed, sets: Array<{ origin: Y.ID | null }>): void {
    const overwritten = new Set<string>()
    for (const s of sets) if (s.origin !== null) overwritten.add(`${s.origin.client}:${s.origin.clock}`)
    let total = 0
    for (const [client, ranges] of p.ds) {
      for (const { clock, len } of ranges) {
        total += len
        if (len < 1 || total > overwritten.size) throw new GroupUpdateRefusedError('invalid-delete', 'a delete set larger than what the record overwrites')
        for (let c = clock; c < clock + len; c++) {
          if (!overwritten.has(`${client}:${c}`)) throw new GroupUpdateRefusedError('invalid-delete', `deletes ${client}:${c}, which the record does not overwrite`)
        }
      }
    }
  }

  /** Bring the views up to date with sets just applied (only those that won their key). */
  private effects (sets: Array<SetOp & { id: Y.ID }>, changes: Omit<ApplyResult, 'applied'>): void {
    for (const set of sets) {
      if (set.root === 'meta') {
        changes.meta = true
      } else if (set.root === 'members') {
        changes.members = true
        this.clientOwners.set(this.clientOf(set.key), set.key)
      } else {
        const current = this.messagesMap._map.get(set.key)
        if (current === undefined || current.deleted || !Y.compareIDs(current.id, set.id)) continue
        const view = toView(set.key, this.messagesMap.get(set.key) as MessageValue)
        const old = this.byId.get(set.key)
        if (old !== undefined) this.sorted.splice(this.position(old), 1)
        else changes.messages.push(view)
        this.insertView(view)
      }
    }
  }

  private insertView (view: GroupMessageView): void {
    this.byId.set(view.id, view)
    if (view.lamport > this.highestLamport) this.highestLamport = view.lamport
    const last = this.sorted[this.sorted.length - 1]
    if (last === undefined || compareMessages(last, view) < 0) this.sorted.push(view)
    else this.sorted.splice(this.position(view), 0, view)
  }

  /** Index of the first message not before `view`. */
  private position (view: GroupMessageView): number {
    let lo = 0
    let hi = this.sorted.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (compareMessages(this.sorted[mid] as GroupMessageView, view) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  private store (record: GroupRecord, span: RecordSpan): void {
    let list = this.log.get(span.client)
    if (list === undefined) {
      list = []
      this.log.set(span.client, list)
    }
    list.push({ record: compactRecord(record), clock: span.clock, end: span.clock + span.count, seq: this.seq++ })
    this.recordCount++
  }

  /** After open(): the log of records yjs holds, and the views built once. */
  private indexLoaded (records: GroupRecord[], spans: RecordSpan[]): void {
    const seen = new Set<string>()
    for (let i = 0; i < records.length; i++) {
      const span = spans[i] as RecordSpan
      const key = `${span.client}:${span.clock}`
      if (seen.has(key)) continue
      if (span.clock + span.count > Y.getState(this.ydoc.store, span.client)) {
        log('dropping stored record %s: its dependencies are missing', key)
        continue
      }
      seen.add(key)
      this.store(records[i] as GroupRecord, span)
    }
    for (const list of this.log.values()) list.sort((a, b) => a.clock - b.clock)
    for (const peer of this.membersMap.keys()) this.clientOwners.set(this.clientOf(peer), peer)
    for (const [id, value] of this.messagesMap.entries()) {
      const view = toView(id, value as MessageValue)
      this.byId.set(id, view)
      this.sorted.push(view)
      if (view.lamport > this.highestLamport) this.highestLamport = view.lamport
    }
    this.sorted.sort(compareMessages)
  }
}

function newYDoc (self: string): Y.Doc {
  const ydoc = new Y.Doc({ gc: true })
  ydoc.clientID = clientIdOf(self)
  return ydoc
}

/**
 * Build the yjs state from a snapshot and stored records. The fast way applies them all and
 * lets yjs order them; `careful` applies only records whose dependencies are present, round
 * after round, so nothing stays pending.
 */
function loadYDoc (self: string, snapshot: Uint8Array | undefined, records: GroupRecord[], spans: RecordSpan[], careful: boolean): Y.Doc {
  const ydoc = newYDoc(self)
  ydoc.clientID = PARKED_CLIENT
  ydoc.transact(() => {
    if (snapshot !== undefined) {
      try {
        Y.applyUpdate(ydoc, snapshot, GROUP_LOAD_ORIGIN)
      } catch (err) {
        throw new CorruptRecordError(`group snapshot does not load: ${(err as Error).message}`)
      }
    }
    let todo = inClockOrder(records.map((r, i) => ({ r, span: spans[i] as RecordSpan })), t => t.span)
    while (todo.length > 0) {
      const later: typeof todo = []
      for (const { r, span } of todo) {
        const state = Y.getState(ydoc.store, span.client)
        if (span.clock + span.count <= state) continue
        if (careful && (span.clock > state || !dependenciesPresent(ydoc, r.update))) {
          later.push({ r, span })
          continue
        }
        try {
          Y.applyUpdate(ydoc, r.update, GROUP_LOAD_ORIGIN)
        } catch (err) {
          throw new CorruptRecordError(`stored group record does not load: ${(err as Error).message}`)
        }
      }
      if (!careful || later.length === todo.length) break
      todo = later
    }
  }, GROUP_LOAD_ORIGIN)
  ydoc.clientID = clientIdOf(self)
  return ydoc
}

function dependenciesPresent (ydoc: Y.Doc, update: Uint8Array): boolean {
  const { structs } = Y.decodeUpdate(update)
  const first = structs[0]
  return structs.every(s => !(s instanceof Y.Item) || s.origin === null ||
    (first !== undefined && s.origin.client === first.id.client && s.origin.clock >= first.id.clock) ||
    Y.getState(ydoc.store, s.origin.client) > s.origin.clock)
}

/**
 * The same items, each client's records put in clock order among the places that client's
 * records hold (the order across clients is kept): yjs can only take a client's records in
 * clock order, and a reversed batch would otherwise cost a pass per record.
 */
function inClockOrder<T> (items: T[], spanOf: (item: T) => RecordSpan): T[] {
  const byClient = new Map<number, T[]>()
  for (const item of items) {
    const client = spanOf(item).client
    const list = byClient.get(client)
    if (list === undefined) byClient.set(client, [item])
    else list.push(item)
  }
  for (const list of byClient.values()) list.sort((x, y) => spanOf(x).clock - spanOf(y).clock)
  const next = new Map<number, number>()
  return items.map(item => {
    const client = spanOf(item).client
    const i = next.get(client) ?? 0
    next.set(client, i + 1)
    return (byClient.get(client) as T[])[i] as T
  })
}

function mayResolveLater (err: unknown): boolean {
  return err instanceof MissingDependencyError || (err instanceof NotGroupMemberError && err.reason === 'unknown-author')
}

function notMember (author: string, role: MemberState | undefined): NotGroupMemberError {
  return role === undefined
    ? new NotGroupMemberError('unknown-author', `${author} is not in the member list`)
    : new NotGroupMemberError('not-member', `${author} is no longer a member (${role})`)
}

function checkMetaValue (author: string, key: string, value: unknown, creating: boolean): void {
  if (key === 'name') {
    if (!isValidName(value)) throw new GroupUpdateRefusedError('invalid-value', `a group name is 1..${MAX_GROUP_NAME_CHARS} characters`)
  } else if (creating && key === 'createdBy') {
    if (value !== author) throw new GroupUpdateRefusedError('not-creation', 'createdBy must be the creation record\'s author')
  } else if (creating && key === 'createdAt') {
    if (!isTimestamp(value)) throw new GroupUpdateRefusedError('invalid-value', 'createdAt must be a timestamp')
  } else {
    throw new GroupUpdateRefusedError('invalid-value', `the group's ${key} cannot be set`)
  }
}

function isValidName (value: unknown): value is string {
  if (typeof value !== 'string' || value.trim().length === 0) return false
  return value.length <= MAX_GROUP_NAME_CHARS || [...value].length <= MAX_GROUP_NAME_CHARS
}

function checkName (name: string): void {
  if (!isValidName(name)) throw new InvalidRequestError(`a group name is 1..${MAX_GROUP_NAME_CHARS} characters`)
}

function checkPeer (peer: string): void {
  if (!isEd25519PeerId(peer)) throw new InvalidPeerIdError(`${peer} is not an Ed25519 peer id`)
}

function isTimestamp (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function isLamport (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1
}

/** A plain object (as lib0's readAny builds them) with exactly these keys. */
function hasExactly (v: unknown, keys: readonly string[]): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Object.getPrototypeOf(v) !== Object.prototype) return false
  const own = Object.keys(v)
  return own.length === keys.length && keys.every(k => Object.prototype.hasOwnProperty.call(v, k))
}

function memberValue (v: unknown): MemberValue | undefined {
  if (hasExactly(v, ['role', 'addedBy', 'addedAt'])) {
    return (v.role === 'admin' || v.role === 'member') && typeof v.addedBy === 'string' && isTimestamp(v.addedAt)
      ? { role: v.role, addedBy: v.addedBy, addedAt: v.addedAt }
      : undefined
  }
  if (hasExactly(v, ['role', 'by', 'at', 'clock'])) {
    return v.role === 'removed' && typeof v.by === 'string' && isTimestamp(v.at) && isTimestamp(v.clock) ? { role: 'removed', by: v.by, at: v.at, clock: v.clock } : undefined
  }
  if (hasExactly(v, ['role', 'at'])) {
    return v.role === 'left' && isTimestamp(v.at) ? { role: 'left', at: v.at } : undefined
  }
  return undefined
}

function messageValue (v: unknown): MessageValue | undefined {
  if (!hasExactly(v, ['from', 'text', 'sentAt', 'lamport'])) return undefined
  if (typeof v.from !== 'string' || typeof v.text !== 'string' || !isTimestamp(v.sentAt) || !isLamport(v.lamport)) return undefined
  if (Buffer.byteLength(v.text, 'utf8') > MAX_GROUP_TEXT_BYTES) return undefined
  return { from: v.from, text: v.text, sentAt: v.sentAt, lamport: v.lamport }
}

function toView (id: string, v: MessageValue): GroupMessageView {
  return Object.freeze({ id: id as MessageId, from: v.from as PeerIdString, text: v.text, sentAt: v.sentAt, lamport: v.lamport })
}

function compareStrings (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function compareMessages (a: GroupMessageView, b: GroupMessageView): number {
  return a.lamport - b.lamport || compareStrings(a.from, b.from) || compareStrings(a.id, b.id)
}

function bytesEqual (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0
}

/** Index of the first record holding a clock at or beyond `since`. */
function firstEndingAfter (list: StoredRecord[], since: number): number {
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((list[mid] as StoredRecord).end <= since) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** A yjs state vector, read strictly: no trailing bytes, sane counts. Zero bytes: "has nothing" (group-sync's empty vector). */
function decodeStateVector (bytes: Uint8Array): Map<number, number> {
  const out = new Map<number, number>()
  if (bytes.byteLength === 0) return out
  try {
    const decoder = decoding.createDecoder(bytes)
    const count = decoding.readVarUint(decoder)
    if (count > bytes.byteLength) throw new Error('more entries than bytes')
    for (let i = 0; i < count; i++) {
      const client = decoding.readVarUint(decoder)
      const clock = decoding.readVarUint(decoder)
      if (client > 0xffffffff) throw new Error('client id out of range')
      out.set(client, clock)
    }
    if (decoding.hasContent(decoder)) throw new Error('trailing bytes')
  } catch (err) {
    throw new InvalidStateVectorError(`state vector does not decode: ${(err as Error).message}`)
  }
  return out
}
