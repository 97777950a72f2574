import type { PrivateKey } from '@libp2p/interface'
import { SenderKeyDistributionMessage } from '@signalapp/libsignal-client'
import { owned } from '../bytes.js'
import { peerIdFromString } from '@libp2p/peer-id'
import type { GroupMessageEvent, GroupMemberView, GroupMessageView, GroupView } from '../api/contract.js'
import { distributionIdOf, type SignalCipher } from '../crypto/cipher.js'
import { CorruptRecordError, InvalidRequestError, MessageTooLargeError, NotRunningError, ParleyError } from '../errors.js'
import { isGroupId, isMessageId, newGroupId, newMessageId, type GroupId, type PeerIdString } from '../ids.js'
import { parsePeerId } from '../identity/invite.js'
import { forComponent } from '../logger.js'
import type { ParleyLibp2p } from '../net/node.js'
import { MAX_GROUP_BODY_BYTES } from '../protocols/dm/constants.js'
import { textByteLength } from '../protocols/dm/codec.js'
import { GroupSyncClient, type GroupSyncBackend } from '../protocols/group-sync/client.js'
import { GroupSyncServer } from '../protocols/group-sync/server.js'
import type { CryptoChanges, Store } from '../store/types.js'
import { GroupDoc, MAX_GROUP_MEMBERS, type ApplyResult, type GroupMessageView as DocMessage } from './doc.js'
import { GroupStateError, InvalidGroupRecordError, NotGroupMemberError, TooManyMembersError, UnknownGroupError } from './errors.js'
import { GroupGossip, type GossipVerdict } from './gossip.js'
import { GroupPayload, PayloadKind } from './pb/payload.js'
import { decodeRecord, encodeRecord, warmVerifiers, type GroupRecord } from './record.js'

const log = forComponent('groups')

/**
 * The first byte of what a member encrypts with its sender key for the topic (the gossip
 * body), before the encoded record: whether receivers forward it along the mesh.
 * - GOSSIP_FORWARD: some member was not a connected subscriber of the author's; the mesh
 *   carries it on.
 * - GOSSIP_DIRECT: the author sent it to every other member itself (all connected topic
 *   subscribers, and the publish reached each; any it did not get a 1:1 copy), so receivers
 *   deliver it without forwarding: every forward would be a duplicate (in a group of 50,
 *   about 150 of the 200 transmissions of a message). It is inside the ciphertext, so only
 *   the author sets it.
 */
export const GOSSIP_FORWARD = 1
export const GOSSIP_DIRECT = 2

/** The gossip body: [GOSSIP_FORWARD or GOSSIP_DIRECT][encoded record]. */
export function encodeGossipBody (direct: boolean, record: Uint8Array): Uint8Array {
  const body = new Uint8Array(1 + record.byteLength)
  body[0] = direct ? GOSSIP_DIRECT : GOSSIP_FORWARD
  body.set(record, 1)
  return body
}

/** Split a gossip body; InvalidGroupRecordError for an unknown first byte or a bad record. */
export function decodeGossipBody (body: Uint8Array): { direct: boolean, record: GroupRecord } {
  const kind = body[0]
  if (kind !== GOSSIP_FORWARD && kind !== GOSSIP_DIRECT) throw new InvalidGroupRecordError(`unknown gossip body kind ${String(kind)}`)
  return { direct: kind === GOSSIP_DIRECT, record: decodeRecord(body.subarray(1)) }
}

/** Longest group message, in UTF-8 bytes: its record must fit a 1:1 envelope (MAX_GROUP_BODY_BYTES) for offline members. */
export const MAX_GROUP_SEND_BYTES = 60 * 1024
const MAX_GROUP_NAME = 100
/** Room for the records an invite carries (the rest comes by group-sync). */
const INVITE_RECORD_BYTES = MAX_GROUP_BODY_BYTES - 1024
/** Room for the records of one 1:1 copy payload. */
const COPY_RECORD_BYTES = MAX_GROUP_BODY_BYTES - 1024
/** A new snapshot (the fast load path) after this many records since the last one. */
const SNAPSHOT_EVERY = 1000
/**
 * Records arriving by group-sync come in bursts (a catch-up brings thousands in a second or
 * two): the snapshot they make due is taken this long after the first of them, once, rather
 * than every SNAPSHOT_EVERY records while the burst is applied (each snapshot encodes the
 * whole document). The records themselves are stored as they arrive; stop() takes it at once.
 */
const SNAPSHOT_DEFER_MS = 2_000
/**
 * Both ends of a new connection would sync their groups with each other, moving the same
 * records twice. The peer with the smaller id syncs at once; the other waits this long and
 * syncs only if no sync of the group between the two started in the last RECENT_SYNC_MS
 * (one sync moves records both ways). Long enough for the first sync's step 1 to arrive on
 * a loaded machine (1 s was not, at a load average of 14).
 */
const CONNECT_SYNC_GRACE_MS = 3_000
const RECENT_SYNC_MS = 10_000
/** Anti-entropy: sync each joined group with one connected member this often. */
const SYNC_EVERY_MS = 30_000
/** After gossip we could not decrypt: sync with its sender after this delay (its sender key is probably on the way). */
const SYNC_AFTER_MISS_MS = 300
/**
 * Members a node keeps a direct connection to, per group: all of them up to this many, so a
 * flood-published record reaches every online member at once and 1:1 copies go only to those
 * who are offline. Members beyond it are reached through the gossip mesh (and get 1:1 copies).
 */
const MESH_DIALS = 64
/** Dials (each may need a relay directory lookup) one node runs at once to meet members: the relay's directory takes 8 streams per connection. */
const MEET_PARALLEL = 4
/** Look for unconnected members of joined groups this often (a dial that failed is tried again, see MEET_BACKOFF_MAX_MS). */
const MEET_EVERY_MS = 5_000
/**
 * A member whose dial failed is not dialled again for MEET_EVERY_MS x 2^(failures - 1), up to
 * this, with jitter. Without it every node re-dialled every unreachable member every 5 s: on
 * a loaded machine those dials timed out, and the load they made kept the rest failing (a
 * 50-member group lost its member connections for good). A connection from the member, or
 * one of our relays connecting again (relayConnected), clears it.
 */
const MEET_BACKOFF_MAX_MS = 5 * 60_000
/**
 * 1:1 copies of records are gathered per member for this long and go out as one payload, after
 * the gossip publish and off the send path (the record is already stored; if the copy is lost
 * in a crash, group-sync brings it).
 */
const COPY_DELAY_MS = 50
/** Copies held for a member being dialled are looked at again this often, and held at most this long (see flushCopies). */
const COPY_RECHECK_MS = 1_000
const COPY_HOLD_MS = 30_000
/** A member whose gossip we accepted this recently is online on the topic (through the mesh): no 1:1 copy for it. */
const HEARD_FRESH_MS = 60_000
/** Records in one 1:1 copy payload (the receiver's decode limit is 1024). */
const COPY_MAX_RECORDS = 256
/**
 * After open, the first rounds of meetAll come sooner than MEET_EVERY_MS (ms after open): the
 * first attempt runs while our relays (whose directories say where members are now) may still
 * be connecting, and a relay that connects before the groups are open cannot trigger one.
 */
const MEET_EARLY_MS = [1_000, 3_000]
/** A KEY_REQUEST to one member of one group at most this often. */
const KEY_REQUEST_EVERY_MS = 30_000

/** Sender keys kept for a group whose invite has not arrived: this many groups, this many keys each. */
const EARLY_KEY_GROUPS = 64
const EARLY_KEYS_PER_GROUP = MAX_GROUP_MEMBERS

interface EarlyKey { from: PeerIdString, distribution: Uint8Array, epoch: number }

/** What the group manager needs from the Messenger. */
export interface GroupPorts {
  self: PeerIdString
  privateKey: PrivateKey
  store: Store
  cipher: SignalCipher
  node: ParleyLibp2p
  /** Queue a payload for a peer over the 1:1 channel (outbox, Signal, relay mailbox when offline). */
  sendDirect: (to: PeerIdString, body: Uint8Array) => Promise<void>
  /** Take the next Lamport time / move the clock past one seen. */
  tick: () => number
  observe: (lamport: number) => void
  emit: (event: GroupMessageEvent) => void
  /** Best effort: get a connection to a peer (peer store, then relay directories). */
  reach: (peer: PeerIdString) => Promise<void>
  nameOf: (peer: PeerIdString) => string | undefined
}

type GroupState = 'invited' | 'joined' | 'left'

/** What this node keeps about a group besides its document. */
interface GroupInfo {
  state: GroupState
  invitedBy?: string
  /** Our sender-key epoch: bumped whenever someone leaves or is removed. */
  epoch: number
  /** Sender-key distribution ids we processed, per sender (forgotten when they go). */
  senders: Record<string, string[]>
  /** Records stored so far: the next record's key (records are kept in the order accepted). */
  seq: number
  /** Records stored since the last snapshot. */
  sinceSnapshot: number
}

/** 1:1 copies of records for one member: firm ones go whatever happens meanwhile (asked for, or the gossip publish failed). */
interface QueuedCopies {
  records: Uint8Array[]
  firm: boolean
  /** Held since (ms) while a dial to the member runs; see flushCopies. */
  heldSince?: number
}

interface Group {
  id: GroupId
  /**
   * Bumped (touchInfo) whenever a GroupInfo field other than the counters changes; persist
   * rewrites `i/<group>` only when it differs from the version last written.
   */
  infoVersion: number
  savedInfoVersion: number
  doc: GroupDoc
  info: GroupInfo
  /** Current members (admins and members), to see who came and went after each change. */
  members: Set<PeerIdString>
  /** One change at a time per group. */
  lock: Promise<unknown>
  /** 1:1 copies waiting to go out, per member, and the timer that sends them. */
  copies: Map<PeerIdString, QueuedCopies>
  copyTimer?: ReturnType<typeof setTimeout> | undefined
  /** A deferred snapshot waiting to be taken (see SNAPSHOT_DEFER_MS). */
  snapshotTimer?: ReturnType<typeof setTimeout>
}

const K = {
  info: (g: string) => `i/${g}`,
  /** `seq` and `sinceSnapshot`, which change with every record (GroupInfo's other fields rarely do). */
  counters: (g: string) => `n/${g}`,
  records: (g: string) => `r/${g}/`,
  record: (g: string, seq: number) => `r/${g}/${String(seq).padStart(10, '0')}`,
  snapshot: (g: string) => `s/${g}`
}

/**
 * Groups: one GroupDoc (yjs) per group, kept in the store's group area as the signed
 * records it was built from plus a snapshot. Records travel over the group's gossip topic
 * (Signal sender keys), to members not on the topic through their 1:1 outbox (relay
 * mailboxes), and by group-sync with any member met later. See docs/architecture.md, Groups.
 *
 * @example
 * const groups = new GroupManager(ports)
 * await groups.open()
 * const id = await groups.create('Climbing', [bob, carol])
 * await groups.send(id, 'Saturday?')
 */
export class GroupManager implements GroupSyncBackend {
  private readonly groups = new Map<GroupId, Group>()
  private readonly gossip: GroupGossip
  private readonly syncClient: GroupSyncClient
  private readonly syncServer: GroupSyncServer
  private readonly keyRequests = new Map<string, number>()
  /** Sender keys for groups we have not been invited to yet (in memory, bounded). */
  private readonly earlyKeys = new Map<GroupId, EarlyKey[]>()
  private readonly syncing = new Set<string>()
  /** When we last accepted gossip authored by each member (any group). */
  private readonly heard = new Map<PeerIdString, number>()
  /** Members to dial (MEET_PARALLEL at a time), and those being dialled. */
  private readonly meetQueue: PeerIdString[] = []
  private readonly meeting = new Set<PeerIdString>()
  /** Members whose last dials failed: how many in a row, and not before when to dial again. */
  private readonly meetFailures = new Map<PeerIdString, { failures: number, notBefore: number }>()
  /** When a sync of a group with a peer last started, either side calling (`group/peer` -> ms); forgotten if ours failed. */
  private readonly syncStarted = new Map<string, number>()
  private timer: ReturnType<typeof setInterval> | undefined
  private meetTimer: ReturnType<typeof setInterval> | undefined
  private running = false

  constructor (private readonly p: GroupPorts) {
    const pubsub = p.node.services.pubsub
    if (pubsub === undefined) throw new NotRunningError('groups need the node\'s gossipsub service')
    this.gossip = new GroupGossip(pubsub, p.node.peerId, async (group, from, data) => await this.onGossip(group, from, data))
    this.syncClient = new GroupSyncClient(p.node, this)
    this.syncServer = new GroupSyncServer(p.node, this)
  }

  /** Load every group from the store, join the topics of joined ones, start sync. */
  async open (): Promise<void> {
    const store = this.p.store
    for (const { key, value } of await store.listGroupEntries('i/')) {
      const id = key.slice(2)
      if (!isGroupId(id)) continue
      try {
        const info = JSON.parse(Buffer.from(value).toString('utf8')) as GroupInfo
        // Counters written after `i/` (stores from before the split have them in `i/` only).
        const counters = await store.getGroupEntry(K.counters(id))
        if (counters !== undefined) Object.assign(info, readCounters(counters))
        const records = (await store.listGroupEntries(K.records(id))).map((e) => decodeRecord(e.value))
        const snapshot = await store.getGroupEntry(K.snapshot(id))
        const doc = GroupDoc.open({ group: id, self: this.p.self, privateKey: this.p.privateKey, records, ...(snapshot !== undefined ? { snapshot } : {}) })
        this.p.observe(doc.lamport)
        this.groups.set(id, { id, doc, info, infoVersion: 0, savedInfoVersion: 0, members: memberSet(doc), lock: Promise.resolve(), copies: new Map() })
      } catch (err) {
        // One damaged group must not keep the messenger from starting; its data stays on disk.
        log.error('group %s could not be opened: %e', id, err)
      }
    }
    await this.syncServer.start()
    this.running = true
    for (const g of this.groups.values()) {
      if (g.info.state === 'joined') this.gossip.join(g.id)
    }
    this.p.node.addEventListener('peer:connect', this.onConnect)
    // The node started before the groups opened: members that connected meanwhile sent no
    // event we saw, and their own sync to us found no handler. Sync with them now, whichever
    // side would usually start.
    for (const peer of this.p.node.getPeers()) this.memberConnected(peer.toString() as PeerIdString, true)
    this.timer = setInterval(() => { this.antiEntropy() }, SYNC_EVERY_MS)
    this.timer.unref?.()
    this.meetTimer = setInterval(() => { this.meetAll() }, MEET_EVERY_MS)
    this.meetTimer.unref?.()
    // Just started: members do not know we are back, so we dial them all (either side).
    this.meetAll()
    // Meeting members starts syncs, whose large batches verify signatures on the workers.
    if ([...this.groups.values()].some((g) => g.info.state === 'joined')) warmVerifiers()
    for (const ms of MEET_EARLY_MS) setTimeout(() => { this.meetAll() }, ms).unref?.()
  }

  async stop (): Promise<void> {
    this.running = false
    clearInterval(this.timer)
    clearInterval(this.meetTimer)
    this.meetQueue.length = 0
    this.meetFailures.clear()
    // The 1:1 copies still waiting (records sent moments ago): into the outbox, which keeps them.
    await Promise.allSettled([...this.groups.values()].flatMap((g) => this.flushCopies(g, true)))
    this.p.node.removeEventListener('peer:connect', this.onConnect)
    this.gossip.stop()
    await this.syncServer.stop().catch(() => {})
    await Promise.allSettled([...this.groups.values()].map(async (g) => {
      if (g.snapshotTimer === undefined) return await g.lock
      clearTimeout(g.snapshotTimer)
      g.snapshotTimer = undefined
      await this.locked(g, async () => { await this.persist(g, []) })
    }))
  }

  // ---- commands --------------------------------------------------------------------------

  async create (name: string, members: readonly string[]): Promise<GroupId> {
    const others = uniquePeers(members).filter((m) => m !== this.p.self)
    if (others.length + 1 > MAX_GROUP_MEMBERS) throw new TooManyMembersError(`a group has at most ${MAX_GROUP_MEMBERS} members`)
    const id = newGroupId()
    const { doc, record } = await GroupDoc.create({ group: id, self: this.p.self, privateKey: this.p.privateKey, name: groupName(name), members: others, now: Date.now() })
    const g: Group = { id, doc, info: { state: 'joined', epoch: 0, senders: {}, seq: 0, sinceSnapshot: 0 }, infoVersion: 1, savedInfoVersion: 0, members: memberSet(doc), lock: Promise.resolve(), copies: new Map() }
    await this.persist(g, [record])
    this.groups.set(id, g)
    this.gossip.join(id)
    // Each member's outbox keeps order: its invite goes before our key.
    for (const m of others) await this.invite(g, m)
    await this.sendKey(g, others)
    this.meetMembers(g)
    return id
  }

  async accept (group: string): Promise<GroupView> {
    const g = this.require(group)
    return await this.locked(g, async () => {
      if (g.info.state !== 'invited') throw new GroupStateError(`group is ${g.info.state}, not invited`)
      if (!g.doc.isMember(this.p.self)) throw new NotGroupMemberError('not-member', 'you are no longer a member of this group')
      g.info.state = 'joined'
      touchInfo(g)
      await this.persist(g, [])
      this.gossip.join(g.id)
      await this.sendKey(g, [...g.members])
      this.meetMembers(g)
      // Whatever the invite did not carry: fetch it from members we are connected to now.
      const { any } = this.connectedPeers()
      for (const m of shuffle([...g.members].filter((x) => x !== this.p.self && any.has(x))).slice(0, 3)) this.backgroundSync(m, g.id)
      this.p.emit({ event: 'group.updated', group: g.id })
      return this.view(g)
    })
  }

  async decline (group: string): Promise<GroupView> {
    const g = this.require(group)
    return await this.locked(g, async () => {
      if (g.info.state !== 'invited') throw new GroupStateError(`group is ${g.info.state}, not invited`)
      await this.leaveLocked(g)
      return this.view(g)
    })
  }

  async leave (group: string): Promise<GroupView> {
    const g = this.require(group)
    return await this.locked(g, async () => {
      if (g.info.state === 'left') throw new GroupStateError('you already left this group')
      await this.leaveLocked(g)
      return this.view(g)
    })
  }

  async send (group: string, text: string): Promise<GroupMessageView> {
    const g = this.require(group)
    if (typeof text !== 'string' || text.length === 0) throw new InvalidRequestError('text must be a non-empty string')
    if (textByteLength(text) > MAX_GROUP_SEND_BYTES) throw new MessageTooLargeError(`group text is over ${MAX_GROUP_SEND_BYTES} bytes`)
    return await this.locked(g, async () => {
      this.requireJoined(g)
      const id = newMessageId()
      const msg = { id, text, sentAt: Date.now(), lamport: this.p.tick() }
      const record = await g.doc.addMessage(msg)
      await this.persist(g, [record])
      await this.distribute(g, record)
      return this.messageView(g, { ...msg, from: this.p.self })
    })
  }

  async add (group: string, peer: string, role: 'admin' | 'member' = 'member'): Promise<GroupView> {
    const g = this.require(group)
    const id = parsePeerId(peer)
    return await this.locked(g, async () => {
      this.requireJoined(g)
      if (!g.members.has(id) && g.members.size + 1 > MAX_GROUP_MEMBERS) throw new TooManyMembersError(`a group has at most ${MAX_GROUP_MEMBERS} members`)
      const isNew = !g.members.has(id)
      const record = await g.doc.setMember(id, role)
      await this.persist(g, [record])
      await this.distribute(g, record)
      // The invite first: keys sent to a peer that does not know the group yet are dropped.
      if (isNew) await this.invite(g, id)
      await this.afterChange(g, { applied: true, members: true, meta: false, messages: [] })
      return this.view(g)
    })
  }

  async remove (group: string, peer: string): Promise<GroupView> {
    const g = this.require(group)
    const id = parsePeerId(peer)
    return await this.locked(g, async () => {
      this.requireJoined(g)
      const record = await g.doc.removeMember(id)
      await this.persist(g, [record])
      // The removed peer hears of it (sealed to it 1:1); it gets no key for what follows.
      await this.distribute(g, record, [id])
      await this.afterChange(g, { applied: true, members: true, meta: false, messages: [] })
      return this.view(g)
    })
  }

  async rename (group: string, name: string): Promise<GroupView> {
    const g = this.require(group)
    return await this.locked(g, async () => {
      this.requireJoined(g)
      const record = await g.doc.rename(groupName(name))
      await this.persist(g, [record])
      await this.distribute(g, record)
      this.p.emit({ event: 'group.updated', group: g.id })
      return this.view(g)
    })
  }

  history (group: string, limit: number, before?: string): GroupMessageView[] {
    const g = this.require(group)
    if (before !== undefined && !isMessageId(before)) throw new InvalidRequestError('"before" is not a message id')
    return g.doc.messages(limit, before).map((m) => this.messageView(g, m))
  }

  members (group: string): GroupMemberView[] {
    const g = this.require(group)
    return g.doc.members().map((m) => ({ peerId: m.peerId, role: m.role, name: this.p.nameOf(m.peerId) ?? '', addedBy: m.addedBy, addedAt: m.addedAt }))
  }

  list (): GroupView[] {
    return [...this.groups.values()].map((g) => this.view(g))
  }

  get (group: string): GroupView {
    return this.view(this.require(group))
  }

  // ---- incoming ---------------------------------------------------------------------------

  /** A group payload from `from` over the 1:1 channel (already decrypted and authenticated). */
  async onDirect (from: PeerIdString, body: Uint8Array): Promise<void> {
    let payload: GroupPayload
    try {
      payload = GroupPayload.decode(body, { limits: { records: 1024 } })
    } catch (err) {
      log('undecodable group payload from %s: %s', from, (err as Error).message)
      return
    }
    if (!isGroupId(payload.group)) return
    const id = payload.group
    try {
      switch (payload.kind) {
        case PayloadKind.INVITE: await this.onInvite(id, from, payload); break
        case PayloadKind.RECORDS: await this.onRecords(id, from, payload.records); break
        case PayloadKind.SENDER_KEY: await this.onSenderKey(id, from, payload.distribution, payload.epoch); break
        case PayloadKind.KEY_REQUEST: await this.onKeyRequest(id, from); break
        default: log('unknown group payload kind %s from %s', payload.kind, from)
      }
    } catch (err) {
      log('group payload %s for %s from %s dropped: %s', payload.kind, id, from, (err as Error).message)
    }
  }

  private async onInvite (id: GroupId, from: PeerIdString, payload: GroupPayload): Promise<void> {
    const records = payload.records.map((r) => decodeRecord(r))
    const known = this.groups.get(id)
    if (known !== undefined) {
      await this.locked(known, async () => {
        const wasMember = known.doc.isMember(this.p.self)
        await this.ingest(known, records)
        if (known.info.state === 'left' && !wasMember && known.doc.isMember(this.p.self)) {
          known.info = { ...known.info, state: 'invited', invitedBy: from }
          touchInfo(known)
          await this.persist(known, [])
          this.p.emit({ event: 'group.invite', group: id, name: known.doc.name, from })
        }
      })
      return
    }
    // A new group: its records must build a group in which both the inviter and we are members.
    const doc = GroupDoc.open({ group: id, self: this.p.self, privateKey: this.p.privateKey, records: [] })
    const result = await doc.applyMany(records)
    for (const r of result.refused) log('invite record for %s refused: %s', id, r.error.message)
    const accepted = doc.recordsSince(new Uint8Array(0))
    if (!doc.isMember(this.p.self) || !doc.isMember(from)) {
      log('invite to %s from %s does not make us both members; ignored', id, from)
      return
    }
    const g: Group = { id, doc, info: { state: 'invited', invitedBy: from, epoch: 0, senders: {}, seq: 0, sinceSnapshot: 0 }, infoVersion: 1, savedInfoVersion: 0, members: memberSet(doc), lock: Promise.resolve(), copies: new Map() }
    this.groups.set(id, g)
    await this.locked(g, async () => { await this.persist(g, accepted) })
    this.p.observe(doc.lamport)
    const early = this.earlyKeys.get(id) ?? []
    this.earlyKeys.delete(id)
    for (const k of early) await this.onSenderKey(id, k.from, k.distribution, k.epoch)
    this.p.emit({ event: 'group.invite', group: id, name: doc.name, from })
  }

  private async onRecords (id: GroupId, from: PeerIdString, raw: Uint8Array[]): Promise<void> {
    const g = this.groups.get(id)
    if (g === undefined) return
    const records = raw.map((r) => decodeRecord(r))
    await this.locked(g, async () => {
      if (!g.doc.isMember(from) && !records.every((r) => r.author === from)) return
      await this.ingest(g, records)
    })
  }

  private async onSenderKey (id: GroupId, from: PeerIdString, distribution: Uint8Array, epoch: number): Promise<void> {
    const g = this.groups.get(id)
    if (g === undefined) {
      // Members' keys can overtake the invite (they come from others): keep a few for a while.
      this.keepEarlyKey(id, { from, distribution, epoch })
      return
    }
    await this.locked(g, async () => {
      if (!g.doc.isMember(from)) return
      // The id must be the one this sender's key for this group and epoch has: a key for
      // another group (or someone else's) cannot be slipped in here.
      const distributionId = distributionIdOf(id, from, epoch)
      if (distributionIdOfDistribution(distribution) !== distributionId) {
        throw new SenderKeyMismatchError(`${from} sent a sender key that is not its key for ${id} at epoch ${epoch}`)
      }
      await this.p.cipher.processGroupDistribution(from, distribution)
      const known = g.info.senders[from] ?? []
      if (!known.includes(distributionId)) {
        g.info.senders[from] = [...known, distributionId]
        touchInfo(g)
        await this.persist(g, [])
      }
    })
  }

  private async onKeyRequest (id: GroupId, from: PeerIdString): Promise<void> {
    const g = this.groups.get(id)
    if (g === undefined || g.info.state !== 'joined' || !g.doc.isMember(from)) return
    if (!this.allowKeyRequest(`${id}/${from}/in`)) return
    await this.locked(g, async () => { await this.sendKey(g, [from]) })
  }

  /**
   * The topic validator: decrypt, check and apply one gossip message. What an honest member
   * can cause (a key not here yet, a replay, a record whose author or dependency has not
   * arrived) is ignored and repaired by sync; anything else is rejected, which costs the
   * forwarding peer gossipsub score.
   */
  private async onGossip (id: GroupId, from: PeerIdString, data: Uint8Array): Promise<GossipVerdict> {
    const g = this.groups.get(id)
    if (g === undefined || g.info.state !== 'joined') return 'ignore'
    // Not a member in our state: maybe one we have not heard of yet (sync will tell), so not
    // penalised; never shown either way.
    if (!g.members.has(from)) return 'ignore'
    return await this.locked(g, async () => {
      try {
        let direct = false
        const result = await this.p.cipher.groupDecrypt(from, data, async ({ plaintext, distributionId }, changes) => {
          if (!(g.info.senders[from] ?? []).includes(distributionId)) throw new SenderKeyMismatchError('a sender key this member never gave us for this group')
          const body = decodeGossipBody(plaintext)
          const record = body.record
          direct = body.direct
          if (record.group !== id || record.author !== from) throw new SenderKeyMismatchError('gossip record is not its sender\'s, for this group')
          // Its author sealed it with its own sender key (checked above and by libsignal): the
          // record's signature would prove nothing more here. It still travels with the record
          // for members who get it from someone else (sync, invites, 1:1 copies), who check it.
          const applied = await g.doc.apply(record, { authorVerified: true })
          // The chain moved even if the record was a duplicate: keep the key state in step.
          await this.persist(g, applied.applied ? [record] : [], changes)
          return applied
        })
        this.heard.set(from, Date.now())
        // Outside the cipher's lock (held during the save above): this may hand out keys.
        await this.afterChange(g, result)
        return direct ? 'deliver' : 'accept'
      } catch (err) {
        const e = err as Error & { reason?: string }
        if (IGNORABLE.has(e.name) || e.reason === 'unknown-author') {
          if (e.name === 'NoSenderKeyError') this.missedKey(g, from)
          else if (e.name !== 'DuplicateCiphertextError') this.backgroundSync(from, id)
          return 'ignore'
        }
        log('gossip from %s in %s rejected: %s: %s', from, id, e.name, e.message)
        return 'reject'
      }
    })
  }

  // ---- group-sync backend -------------------------------------------------------------------

  authorize (group: GroupId, peer: PeerIdString): boolean {
    const g = this.groups.get(group)
    const ok = g !== undefined && g.info.state !== 'left' && g.doc.isMember(this.p.self) && g.doc.isMember(peer)
    // The server asks once per inbound sync: a sync of this group with `peer` starts now.
    if (ok) this.syncStarted.set(`${group}/${peer}`, Date.now())
    return ok
  }

  stateVector (group: GroupId): Uint8Array | undefined {
    const g = this.groups.get(group)
    return g === undefined || g.info.state === 'left' ? undefined : g.doc.stateVector()
  }

  missing (group: GroupId, stateVector: Uint8Array): Uint8Array[] {
    const g = this.groups.get(group)
    if (g === undefined) return []
    return g.doc.recordsSince(stateVector).map((r) => encodeRecord(r))
  }

  async receive (group: GroupId, from: PeerIdString, raw: Uint8Array[]): Promise<void> {
    const g = this.groups.get(group)
    if (g === undefined) return
    const records: GroupRecord[] = []
    for (const r of raw) {
      try {
        records.push(decodeRecord(r))
      } catch (err) {
        log('undecodable record from %s: %s', from, (err as Error).message)
      }
    }
    await this.locked(g, async () => { await this.ingest(g, records, true) })
  }

  /** Sync one group with one member now (both ways). */
  async syncWith (peer: PeerIdString, group: GroupId): Promise<{ sent: number, received: number }> {
    return await this.syncClient.sync(peer, group)
  }

  // ---- internals ----------------------------------------------------------------------------

  /**
   * Apply records (any author, signatures checked by the doc), store the accepted ones, react.
   * `burst`: part of a group-sync, whose snapshot is deferred (SNAPSHOT_DEFER_MS).
   */
  private async ingest (g: Group, records: GroupRecord[], burst = false): Promise<void> {
    if (records.length === 0) return
    const before = g.doc.stateVector()
    const result = await g.doc.applyMany(records)
    for (const r of result.refused) log('record for %s by %s refused: %s', g.id, r.record.author, r.error.message)
    if (result.applied === 0) return
    await this.persist(g, g.doc.recordsSince(before), undefined, burst)
    await this.afterChange(g, { applied: true, members: result.members, meta: result.meta, messages: result.messages })
  }

  /** After records were applied: events, and the sender-key work a membership change needs. */
  private async afterChange (g: Group, result: ApplyResult): Promise<void> {
    for (const m of result.messages) {
      this.p.observe(m.lamport)
      if (m.from === this.p.self || g.info.state === 'left') continue
      this.p.emit({ event: 'group.message', group: g.id, from: m.from, id: m.id, text: m.text, sentAt: m.sentAt, lamport: m.lamport })
    }
    if (!result.members && !result.meta) return
    const before = g.members
    const now = memberSet(g.doc)
    g.members = now
    const gone = [...before].filter((m) => !now.has(m))
    const come = [...now].filter((m) => !before.has(m))
    if (!now.has(this.p.self) && g.info.state !== 'left') {
      // We were removed: stop taking part; history stays readable.
      g.info.state = 'left'
      touchInfo(g)
      this.gossip.leave(g.id)
      await this.persist(g, [])
    } else if (g.info.state === 'joined') {
      await this.sendKey(g, come)
      if (gone.length > 0) {
        // Whoever left keeps our old key: start a new epoch and give it only to those who stay.
        for (const m of gone) await this.forgetSender(g, m)
        g.info.epoch++
        touchInfo(g)
        await this.persist(g, [])
        await this.sendKey(g, [...now])
      }
    }
    this.p.emit({ event: 'group.updated', group: g.id })
  }

  private async leaveLocked (g: Group): Promise<void> {
    if (g.doc.isMember(this.p.self)) {
      const record = await g.doc.leave()
      await this.persist(g, [record])
      await this.distribute(g, record)
    }
    g.info.state = 'left'
    touchInfo(g)
    g.members = memberSet(g.doc)
    await this.persist(g, [])
    this.gossip.leave(g.id)
    this.p.emit({ event: 'group.updated', group: g.id })
  }

  /**
   * Send a record: gossip (sender key) to the group's topic, then 1:1 copies (through the
   * outbox: relay mailboxes when offline) to `extra` and to the members gossip cannot be
   * counted on to reach. A member the publish reached needs none. One it did not reach gets
   * none only if the message is forwarded along the mesh (not direct), we have no direct
   * connection to it and its gossip reached us lately (it is on the topic through others).
   * Every other member gets a copy: a firm one (sent whatever happens meanwhile) if the
   * publish failed, if it was direct, or if we are connected to the member but gossip did not
   * run to it (not subscribed yet, as just after either side restarted), since no forward will
   * reach it then. The copies are queued in memory and sent together a moment later
   * (queueCopies), so they cost the send nothing.
   */
  private async distribute (g: Group, record: GroupRecord, extra: PeerIdString[] = []): Promise<void> {
    const bytes = encodeRecord(record)
    let published = false
    // Sent straight to every other member: receivers need not forward it (GOSSIP_DIRECT).
    let direct = false
    let reached: ReadonlySet<string> = new Set()
    if (g.info.state === 'joined') {
      try {
        const subscribers = new Set<string>(this.gossip.subscribers(g.id))
        direct = [...g.members].every((m) => m === this.p.self || subscribers.has(m))
        const ct = await this.p.cipher.groupEncrypt(g.id, g.info.epoch, encodeGossipBody(direct, bytes))
        reached = new Set((await this.gossip.publish(g.id, ct)).peers)
        published = true
      } catch (err) {
        log('gossip publish to %s failed: %s', g.id, (err as Error).message)
      }
    }
    const now = Date.now()
    const firm = new Set(extra)
    const copyTo = new Set(extra)
    const { direct: linked } = this.connectedPeers()
    for (const m of g.members) {
      if (m === this.p.self || copyTo.has(m) || (published && reached.has(m))) continue
      const connected = linked.has(m)
      if (published && !direct && !connected && this.heardLately(m, now)) continue
      copyTo.add(m)
      if (!published || direct || connected) firm.add(m)
    }
    this.queueCopies(g, copyTo, bytes, firm)
  }

  /** Whether gossip we publish now reaches `peer`, as far as we know: we are connected, or its gossip reached us lately. */
  private onTopic (peer: PeerIdString, now: number): boolean {
    return this.heardLately(peer, now) || this.connectedTo(peer)
  }

  /** We accepted gossip authored by `peer` within HEARD_FRESH_MS. */
  private heardLately (peer: PeerIdString, now: number): boolean {
    return now - (this.heard.get(peer) ?? -Infinity) < HEARD_FRESH_MS
  }

  /** A direct (not relayed, so gossip-capable) connection to `peer`. */
  private connectedTo (peer: PeerIdString): boolean {
    return this.p.node.getConnections(peerIdFromString(peer)).some((c) => c.limits === undefined)
  }

  private queueCopies (g: Group, to: Iterable<PeerIdString>, record: Uint8Array, firm: ReadonlySet<PeerIdString>): void {
    for (const m of to) {
      const queued = g.copies.get(m)
      if (queued === undefined) g.copies.set(m, { records: [record], firm: firm.has(m) })
      else {
        queued.records.push(record)
        queued.firm ||= firm.has(m)
      }
    }
    if (g.copies.size === 0 || g.copyTimer !== undefined) return
    g.copyTimer = setTimeout(() => { void this.flushCopies(g) }, COPY_DELAY_MS)
  }

  /**
   * Send the queued 1:1 copies: one RECORDS payload per member (more if they do not fit one).
   * A copy that is not firm is dropped if its member is on the topic by now (a connection came
   * up since the publish: the group-sync it starts brings the records), and held while a dial
   * to its member is queued or running (checked again in COPY_RECHECK_MS, for at most
   * COPY_HOLD_MS): during a group's first minutes most members are still being met, and each
   * copy costs a Signal session and a stream. `all` (stopping) sends everything. Resolves
   * (never rejects) once each copy is queued, or failed to be.
   */
  private flushCopies (g: Group, all = false): Array<Promise<void>> {
    clearTimeout(g.copyTimer)
    g.copyTimer = undefined
    const copies = g.copies
    const sends: Array<Promise<void>> = []
    if (copies.size === 0) return sends
    g.copies = new Map()
    const now = Date.now()
    for (const [m, queued] of copies) {
      if (!all && !queued.firm) {
        if (this.onTopic(m, now)) continue
        const heldSince = queued.heldSince ?? now
        if ((this.meeting.has(m) || this.meetQueue.includes(m)) && now - heldSince < COPY_HOLD_MS) {
          g.copies.set(m, { ...queued, heldSince })
          continue
        }
      }
      for (const chunk of chunkRecords(queued.records, COPY_RECORD_BYTES, COPY_MAX_RECORDS)) {
        sends.push(this.p.sendDirect(m, payload(PayloadKind.RECORDS, g.id, { records: chunk }))
          .catch((err: unknown) => { log('1:1 copy for %s in %s not queued: %s', m, g.id, (err as Error).message) }))
      }
    }
    if (g.copies.size > 0) g.copyTimer = setTimeout(() => { void this.flushCopies(g) }, COPY_RECHECK_MS)
    return sends
  }

  private async invite (g: Group, to: PeerIdString): Promise<void> {
    const records: Uint8Array[] = []
    let size = 0
    for (const r of g.doc.recordsSince(new Uint8Array(0))) {
      const bytes = encodeRecord(r)
      if (size + bytes.byteLength > INVITE_RECORD_BYTES) break
      records.push(bytes)
      size += bytes.byteLength
    }
    await this.p.sendDirect(to, payload(PayloadKind.INVITE, g.id, { name: g.doc.name, records }))
  }

  /** Our sender key for the group's current epoch, to each of `to` (ourselves skipped): one distribution message for all. */
  private async sendKey (g: Group, to: Iterable<PeerIdString>): Promise<void> {
    if (g.info.state !== 'joined') return
    const others = [...to].filter((m) => m !== this.p.self)
    if (others.length === 0) return
    const distribution = await this.p.cipher.groupDistribution(g.id, g.info.epoch)
    const body = payload(PayloadKind.SENDER_KEY, g.id, { distribution, epoch: g.info.epoch })
    for (const m of others) await this.p.sendDirect(m, body)
  }

  private async forgetSender (g: Group, peer: PeerIdString): Promise<void> {
    for (const d of g.info.senders[peer] ?? []) await this.p.cipher.forgetGroupSender(peer, d)
    delete g.info.senders[peer]
    touchInfo(g)
  }

  /** Gossip from a member whose sender key we lack: ask for it, and fetch the records by sync soon. */
  private missedKey (g: Group, from: PeerIdString): void {
    if (this.allowKeyRequest(`${g.id}/${from}/out`)) {
      this.p.sendDirect(from, payload(PayloadKind.KEY_REQUEST, g.id, {}))
        .catch((err: unknown) => { log('key request to %s failed: %s', from, (err as Error).message) })
    }
    setTimeout(() => { this.backgroundSync(from, g.id) }, SYNC_AFTER_MISS_MS).unref?.()
  }

  private keepEarlyKey (id: GroupId, key: EarlyKey): void {
    const list = this.earlyKeys.get(id) ?? []
    if (list.length >= EARLY_KEYS_PER_GROUP) return
    if (!this.earlyKeys.has(id) && this.earlyKeys.size >= EARLY_KEY_GROUPS) {
      const oldest = this.earlyKeys.keys().next()
      if (oldest.done !== true) this.earlyKeys.delete(oldest.value)
    }
    this.earlyKeys.set(id, [...list, key])
  }

  private allowKeyRequest (key: string): boolean {
    const now = Date.now()
    if (now - (this.keyRequests.get(key) ?? -Infinity) < KEY_REQUEST_EVERY_MS) return false
    this.keyRequests.set(key, now)
    return true
  }

  /**
   * Write records (and optionally sender-key state) plus the group's info in one batch; with a
   * snapshot if one is due, unless `deferSnapshot` (then it is taken SNAPSHOT_DEFER_MS later).
   */
  private async persist (g: Group, records: GroupRecord[], crypto?: CryptoChanges, deferSnapshot = false): Promise<void> {
    const changes = new Map<string, Uint8Array | null>()
    for (const r of records) changes.set(K.record(g.id, g.info.seq++), encodeRecord(r))
    g.info.sinceSnapshot += records.length
    if (g.info.sinceSnapshot >= SNAPSHOT_EVERY && deferSnapshot && this.running) {
      this.deferSnapshot(g)
    } else if (g.info.sinceSnapshot >= SNAPSHOT_EVERY) {
      changes.set(K.snapshot(g.id), g.doc.snapshot())
      g.info.sinceSnapshot = 0
      clearTimeout(g.snapshotTimer)
      g.snapshotTimer = undefined
    }
    // GroupInfo holds every sender's distribution ids (about 5 KB in a group of 50): written
    // again only when it changed, not with every record as the counters are.
    const version = g.infoVersion
    if (version !== g.savedInfoVersion) changes.set(K.info(g.id), Buffer.from(JSON.stringify(g.info)))
    changes.set(K.counters(g.id), Buffer.from(JSON.stringify({ seq: g.info.seq, sinceSnapshot: g.info.sinceSnapshot })))
    await this.p.store.putGroupEntries(changes, crypto)
    g.savedInfoVersion = version
  }

  /** Take the snapshot SNAPSHOT_DEFER_MS from now (once), unless one is taken before. */
  private deferSnapshot (g: Group): void {
    if (g.snapshotTimer !== undefined) return
    g.snapshotTimer = setTimeout(() => {
      g.snapshotTimer = undefined
      if (!this.running) return
      this.locked(g, async () => {
        if (g.info.sinceSnapshot >= SNAPSHOT_EVERY) await this.persist(g, [])
      }).catch((err: unknown) => { log('snapshot of %s failed: %s', g.id, (err as Error).message) })
    }, SNAPSHOT_DEFER_MS)
    g.snapshotTimer.unref?.()
  }

  private readonly onConnect = (evt: CustomEvent<{ toString: () => string }>): void => {
    this.memberConnected(evt.detail.toString() as PeerIdString)
  }

  /** A connection to `peer` opened (`now`: before we could listen): sync each joined group it is a member of. */
  private memberConnected (peer: PeerIdString, now = false): void {
    this.meetFailures.delete(peer)
    for (const g of this.groups.values()) {
      if (g.info.state !== 'joined' || !g.members.has(peer)) continue
      // One side syncs (see CONNECT_SYNC_GRACE_MS); the other only if that did not happen.
      if (now || this.p.self < peer) {
        this.backgroundSync(peer, g.id)
      } else {
        setTimeout(() => {
          const started = this.syncStarted.get(`${g.id}/${peer}`) ?? -Infinity
          if (Date.now() - started >= RECENT_SYNC_MS) this.backgroundSync(peer, g.id)
        }, CONNECT_SYNC_GRACE_MS).unref?.()
      }
    }
  }

  private antiEntropy (): void {
    if (!this.running) return
    for (const g of this.groups.values()) {
      if (g.info.state !== 'joined') continue
      const { any } = this.connectedPeers()
      const connected = [...g.members].filter((m) => m !== this.p.self && any.has(m))
      const pick = connected[Math.floor(Math.random() * connected.length)]
      if (pick !== undefined) this.backgroundSync(pick, g.id)
      else this.meetMembers(g)
    }
  }

  private backgroundSync (peer: PeerIdString, group: GroupId): void {
    const key = `${group}/${peer}`
    if (!this.running || this.syncing.has(key)) return
    this.syncing.add(key)
    this.syncStarted.set(key, Date.now())
    this.syncClient.sync(peer, group)
      .then((r) => { log('synced %s with %s: sent %d, received %d', group, peer, r.sent, r.received) })
      .catch((err: unknown) => {
        this.syncStarted.delete(key)
        log('sync of %s with %s failed: %s', group, peer, (err as Error).message)
      })
      .finally(() => { this.syncing.delete(key) })
  }

  /**
   * Dial members of joined groups we have no connection to, whichever side we are, e.g. every
   * MEET_EVERY_MS: dials that failed before (once their backoff is over), and members whose
   * own dial to us never came.
   */
  private meetAll (): void {
    if (!this.running) return
    for (const g of this.groups.values()) if (g.info.state === 'joined') this.meetMembers(g, true)
  }

  /**
   * One of our relays (re)connected: we may have been away (the node just started, or the
   * network changed), so members do not know to dial us, and the relay's directory may know
   * where they are now. Dial every unconnected member, backoffs forgotten.
   */
  relayConnected (): void {
    this.meetFailures.clear()
    this.meetAll()
  }

  /**
   * Queue dials to members we are not connected to (up to MESH_DIALS connected per group). Of
   * two members who have never met, only the one with the smaller peer id dials at first, so
   * the pair does not end up with two connections; on a `retry` either side dials.
   */
  private meetMembers (g: Group, retry = false): void {
    const others = [...g.members].filter((m) => m !== this.p.self)
    const { any } = this.connectedPeers()
    const unconnected = others.filter((m) => !any.has(m))
    const want = Math.max(0, MESH_DIALS - (others.length - unconnected.length))
    const now = Date.now()
    const mine = unconnected.filter((m) => (retry || this.p.self < m) && (this.meetFailures.get(m)?.notBefore ?? 0) <= now)
    for (const m of shuffle(mine).slice(0, want)) {
      if (this.meeting.has(m) || this.meetQueue.includes(m)) continue
      this.meetQueue.push(m)
    }
    this.pumpMeetings()
  }

  /** Run queued dials, MEET_PARALLEL at a time (each may ask a relay's directory first). */
  private pumpMeetings (): void {
    while (this.running && this.meeting.size < MEET_PARALLEL) {
      const m = this.meetQueue.shift()
      if (m === undefined) return
      if (this.connected(m)) continue
      this.meeting.add(m)
      this.p.reach(m)
        .then(() => { this.meetFailures.delete(m) })
        .catch((err: unknown) => {
          const failures = (this.meetFailures.get(m)?.failures ?? 0) + 1
          const wait = Math.min(MEET_EVERY_MS * 2 ** (failures - 1), MEET_BACKOFF_MAX_MS) * (0.5 + Math.random() / 2)
          this.meetFailures.set(m, { failures, notBefore: Date.now() + wait })
          log('could not reach member %s (%d in a row; next try in %d s): %s', m, failures, Math.round(wait / 1000), (err as Error).message)
        })
        .finally(() => {
          this.meeting.delete(m)
          this.pumpMeetings()
        })
    }
  }

  /**
   * Everyone we have a connection to (`any`), and those with a direct one (`direct`: not
   * relayed, so gossip-capable), in one pass over the node's connections. Checking members one
   * by one parsed and re-encoded a peer id each time (base58 both ways): in a 50-member group,
   * every 5 s for each group, that was 3% of a node's allocations.
   */
  private connectedPeers (): { any: Set<string>, direct: Set<string> } {
    const any = new Set<string>()
    const direct = new Set<string>()
    for (const c of this.p.node.getConnections()) {
      const peer = c.remotePeer.toString()
      any.add(peer)
      if (c.limits === undefined) direct.add(peer)
    }
    return { any, direct }
  }

  private connected (peer: PeerIdString): boolean {
    return this.p.node.getConnections(peerIdFromString(peer)).length > 0
  }

  private view (g: Group): GroupView {
    const last = g.doc.messages(1)[0]
    return {
      group: g.id,
      name: g.doc.name,
      state: g.info.state,
      role: g.doc.memberState(this.p.self) ?? 'left',
      members: g.members.size,
      ...(last !== undefined ? { last: this.messageView(g, last) } : {})
    }
  }

  private messageView (g: Group, m: DocMessage): GroupMessageView {
    const out = m.from === this.p.self
    return { id: m.id, conversation: g.id, group: g.id, from: m.from, direction: out ? 'out' : 'in', text: m.text, sentAt: m.sentAt, lamport: m.lamport, status: out ? 'sent' : 'received' }
  }

  private require (group: string): Group {
    if (!this.running) throw new NotRunningError('messenger not running')
    if (!isGroupId(group)) throw new InvalidRequestError('"group" is not a group id')
    const g = this.groups.get(group)
    if (g === undefined) throw new UnknownGroupError(`no group ${group} here`)
    return g
  }

  private requireJoined (g: Group): void {
    if (g.info.state !== 'joined') throw new GroupStateError(`group is ${g.info.state}; accept the invite first`)
    if (!g.doc.isMember(this.p.self)) throw new NotGroupMemberError('not-member', 'you are not a member of this group')
  }

  private async locked<T> (g: Group, fn: () => Promise<T>): Promise<T> {
    const run = g.lock.then(fn)
    g.lock = run.catch(() => {})
    return await run
  }
}

/** Errors an honest member's gossip can meet (keys or records still on their way): ignored, not penalised. */
/** A GroupInfo field other than the counters changed: the next persist writes `i/<group>`. */
function touchInfo (g: Group): void {
  g.infoVersion++
}

/** The counters stored at `n/<group>`; CorruptRecordError if they are not two non-negative integers. */
function readCounters (bytes: Uint8Array): Pick<GroupInfo, 'seq' | 'sinceSnapshot'> {
  const c = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<Record<'seq' | 'sinceSnapshot', unknown>>
  if (!Number.isSafeInteger(c.seq) || !Number.isSafeInteger(c.sinceSnapshot) || (c.seq as number) < 0 || (c.sinceSnapshot as number) < 0) {
    throw new CorruptRecordError('group counters are not two non-negative integers')
  }
  return { seq: c.seq as number, sinceSnapshot: c.sinceSnapshot as number }
}

const IGNORABLE = new Set(['NoSenderKeyError', 'DuplicateCiphertextError', 'SenderKeyTooFarAheadError', 'MissingDependencyError'])

/** A sender key or gossip record that is not what its sender may send for this group. */
class SenderKeyMismatchError extends ParleyError {
  static override name = 'SenderKeyMismatchError'
  override name = 'SenderKeyMismatchError'
}

function payload (kind: PayloadKind, group: GroupId, fields: { name?: string, records?: Uint8Array[], distribution?: Uint8Array, epoch?: number }): Uint8Array {
  return GroupPayload.encode({
    kind,
    group,
    name: fields.name ?? '',
    records: (fields.records ?? []).map((r) => owned(r)),
    distribution: owned(fields.distribution ?? new Uint8Array(0)),
    epoch: fields.epoch ?? 0
  })
}

/** The distribution id a SenderKeyDistributionMessage names (lower case), without processing it. */
function distributionIdOfDistribution (bytes: Uint8Array): string {
  try {
    return SenderKeyDistributionMessage.deserialize(owned(bytes)).distributionId().toLowerCase()
  } catch (err) {
    throw new SenderKeyMismatchError(`not a sender key distribution: ${(err as Error).message}`)
  }
}

function memberSet (doc: GroupDoc): Set<PeerIdString> {
  return new Set(doc.members().map((m) => m.peerId))
}

function uniquePeers (members: readonly string[]): PeerIdString[] {
  if (!Array.isArray(members)) throw new InvalidRequestError('"members" must be an array of peer ids')
  return [...new Set(members.map((m) => parsePeerId(m)))]
}

function groupName (name: unknown): string {
  if (typeof name !== 'string') throw new InvalidRequestError('group name must be a string')
  const trimmed = name.trim()
  if (trimmed.length === 0 || trimmed.length > MAX_GROUP_NAME) throw new InvalidRequestError(`group name must be 1-${MAX_GROUP_NAME} characters`)
  return trimmed
}

function shuffle<T> (items: T[]): T[] {
  const a = [...items]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    const t = a[i] as T
    a[i] = a[j] as T
    a[j] = t
  }
  return a
}

/** Records in order, cut into runs of at most `maxBytes` (a single larger record goes alone) and `maxRecords`. */
function chunkRecords (records: Uint8Array[], maxBytes: number, maxRecords: number): Uint8Array[][] {
  const out: Uint8Array[][] = []
  let run: Uint8Array[] = []
  let size = 0
  for (const r of records) {
    if (run.length > 0 && (size + r.byteLength > maxBytes || run.length >= maxRecords)) {
      out.push(run)
      run = []
      size = 0
    }
    run.push(r)
    size += r.byteLength
  }
  if (run.length > 0) out.push(run)
  return out
}
