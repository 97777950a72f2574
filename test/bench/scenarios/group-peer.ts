/**
 * The per-process side of the group scenarios (group.ts): one peer process hosts several group
 * members, each a real Messenger (own level database, own libp2p node on loopback TCP, the
 * relay in `relays`), addressed by its index in this process. It records, per member and
 * message id, when that member's `group.message` event fired (shared clock), sends on a
 * schedule the harness hands out (so several processes send in turn at a fixed rate), and
 * reports connections and gossip state. It can also open a stopped member's stored group in
 * a fresh process to measure the group's heap (GroupDoc.open, as GroupManager.open does).
 * Every timestamp is on the shared clock (sharedNow).
 */
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { MessengerEvent } from '../../../core/api/contract.js'
import { GroupDoc } from '../../../core/groups/doc.js'
import { GroupGossip } from '../../../core/groups/gossip.js'
import { decodeRecord } from '../../../core/groups/record.js'
import { loadOrCreateIdentity, peerIdString } from '../../../core/identity/identity.js'
import type { GroupId } from '../../../core/ids.js'
import { Messenger } from '../../../core/messenger.js'
import { LevelStore } from '../../../core/store/level-store.js'
import { collectGarbage, snapshot, type MemorySnapshot } from '../memory.js'
import { payload, sharedNow, withTimeout } from '../util.js'

export interface GroupMemberStartParams {
  /** One data directory per member to start here (reused if it exists: a restart). */
  dataDirs: string[]
  relays: string[]
}

export interface GroupMemberInfo {
  index: number
  peerId: string
  invite: string
  /** Loopback TCP addresses, each ending in /p2p/<peer id>. */
  addrs: string[]
  /** Shared clock: Messenger.start called / resolved. */
  startCalledAt: number
  startedAt: number
}

export interface GroupScheduleParams {
  group: string
  /** Shared clock time of message 0. */
  startAt: number
  gapMs: number
  /** This process's share: message number i, sent by local member `member` at startAt + i x gapMs. */
  sends: Array<{ i: number, member: number }>
  messageBytes: number
  timeoutMs: number
}

export interface GroupSent {
  i: number
  member: number
  id: string
  /** groups.send called / resolved (shared clock). */
  sentAt: number
  resolvedAt: number
  /** Connected members the sender's gossipsub knew on the topic just before sending (the rest get a 1:1 copy). */
  subscribers: number
}

export interface GroupWaitParams {
  group: string
  /** Messages every local member's history must hold. */
  count: number
  timeoutMs: number
  members?: number[]
}

export interface GroupWaitResult {
  complete: boolean
  /** Per local member: history length at the end, and when it first reached `count` (shared clock; NaN if never). */
  counts: number[]
  doneAt: number[]
}

export interface GroupMemberState {
  index: number
  peerId: string
  /** Open connections, and how many of them lead to other members of the group. */
  connections: number
  memberConnections: number
  /** Members gossipsub knows on the topic, and in its mesh. */
  subscribers: number
  mesh: number
  /** Group records this member's outbox still holds (all peers). */
  pending: number
}

export interface GroupBlastParams {
  member: number
  group: string
  count: number
  messageBytes: number
}

export interface GroupBlastRun {
  startedAt: number
  doneAt: number
}

export interface GroupOpenParams {
  dataDir: string
  group: string
}

export interface GroupOpenRun {
  gcAvailable: boolean
  records: number
  messages: number
  /** Bytes of the group's stored records and snapshot (values as stored, before level's compression). */
  recordBytes: number
  snapshotBytes: number
  /** The whole level directory on disk. */
  dbDiskBytes: number
  /** Store open, after a GC / the group's doc open and referenced, after a GC. */
  before: MemorySnapshot
  after: MemorySnapshot
  openMs: number
}

interface Member {
  m: Messenger
  dataDir: string
  /** Message id -> when this member's group.message event fired. */
  arrivals: Map<string, number>
  invites: Set<string>
}

async function sleepUntil (t: number): Promise<void> {
  const ms = t - sharedNow()
  if (ms > 0) await new Promise<void>((resolve) => { setTimeout(resolve, ms) })
}

async function dirBytes (dir: string): Promise<number> {
  let total = 0
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    total += e.isDirectory() ? await dirBytes(p) : (await stat(p)).size
  }
  return total
}

export class GroupPeer {
  private readonly members: Array<Member | undefined> = []
  /** Indexes of members stopped (their data directories stay, for a restart). */
  private readonly stopped = new Set<number>()
  /** Kept referenced between the two snapshots of openGroup. */
  private openedDoc: GroupDoc | undefined

  /** Start Messengers, appended after those already here (their indexes are returned). */
  async start (p: GroupMemberStartParams): Promise<GroupMemberInfo[]> {
    const out: GroupMemberInfo[] = []
    for (const dataDir of p.dataDirs) out.push(await this.startOne(this.members.length, dataDir, p.relays))
    return out
  }

  /** Start (again) the member at `index`, with its data directory. */
  async restart (index: number, relays: string[]): Promise<GroupMemberInfo> {
    const old = this.members[index]
    if (old === undefined) throw new Error(`no member ${index} to restart`)
    if (this.running(index)) throw new Error(`member ${index} is running`)
    return await this.startOne(index, old.dataDir, relays)
  }

  private running (index: number): boolean {
    return !this.stopped.has(index) && this.members[index] !== undefined
  }

  private async startOne (index: number, dataDir: string, relays: string[]): Promise<GroupMemberInfo> {
    const m = new Messenger({
      dataDir,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      ...(relays.length > 0 ? { relays } : {}),
      mdns: false,
      inboundConnectionThreshold: 1000
    })
    const member: Member = { m, dataDir, arrivals: new Map(), invites: new Set() }
    m.on((e) => { this.onEvent(member, e) })
    const startCalledAt = sharedNow()
    await m.start()
    const startedAt = sharedNow()
    this.members[index] = member
    this.stopped.delete(index)
    const peerId = m.peerId
    const addrs = m.libp2p.getMultiaddrs().map(String)
      .filter((a) => a.includes('/tcp/') && !a.includes('/p2p-circuit'))
      .map((a) => a.includes('/p2p/') ? a : `${a}/p2p/${peerId}`)
    return { index, peerId, invite: m.whoami().invite, addrs, startCalledAt, startedAt }
  }

  private onEvent (member: Member, e: MessengerEvent): void {
    if (e.event === 'group.message') member.arrivals.set(e.id, sharedNow())
    else if (e.event === 'group.invite') member.invites.add(e.group)
  }

  async addContacts (index: number, invites: string[]): Promise<void> {
    const m = this.require(index)
    for (const invite of invites) await m.addContact(invite)
  }

  async create (index: number, name: string, members: string[]): Promise<string> {
    return await this.require(index).groups.create(name, members)
  }

  /** Every local member (but `except`) waits for the invite to `group` and accepts it, each on its own (as real members would). */
  async acceptAll (group: string, timeoutMs: number, except: number[] = []): Promise<void> {
    const deadline = sharedNow() + timeoutMs
    let invited = 0
    let accepted = 0
    const accept = async (i: number, member: Member): Promise<void> => {
      while (!member.invites.has(group)) {
        if (sharedNow() > deadline) throw new Error(`member ${i} got no invite to ${group} within ${timeoutMs} ms`)
        await new Promise<void>((resolve) => { setTimeout(resolve, 20) })
      }
      invited++
      await member.m.groups.accept(group)
      accepted++
    }
    const all: Array<Promise<void>> = []
    this.members.forEach((member, i) => {
      if (member !== undefined && this.running(i) && !except.includes(i)) all.push(accept(i, member))
    })
    try {
      await withTimeout(Promise.all(all), timeoutMs + 1000, `every member here to accept ${group}`)
    } catch (err) {
      throw new Error(`${(err as Error).message} (${invited} of ${all.length} invited, ${accepted} accepted)`, { cause: err })
    }
  }

  /** Send on a schedule: each of this process's messages at its own time, whatever the others take. */
  async schedule (p: GroupScheduleParams): Promise<GroupSent[]> {
    const topic = GroupGossip.topicOf(p.group as GroupId)
    const sends = [...p.sends].sort((a, b) => a.i - b.i)
    const pending: Array<Promise<GroupSent>> = []
    for (const s of sends) {
      await sleepUntil(p.startAt + s.i * p.gapMs)
      const m = this.require(s.member)
      const subscribers = m.libp2p.services.pubsub?.getSubscribers(topic).length ?? 0
      const sentAt = sharedNow()
      pending.push(m.groups.send(p.group, payload(`g-${s.i}`, p.messageBytes)).then((view) => ({
        i: s.i, member: s.member, id: view.id, sentAt, resolvedAt: sharedNow(), subscribers
      })))
    }
    return await withTimeout(Promise.all(pending), p.timeoutMs, 'scheduled group sends')
  }

  /** Per local member: the arrival times recorded so far (message id -> shared clock); then forget them. */
  takeArrivals (): Array<Record<string, number>> {
    return this.members.map((member) => {
      if (member === undefined) return {}
      const out = Object.fromEntries(member.arrivals)
      member.arrivals.clear()
      return out
    })
  }

  /** Wait until every (listed, running) local member's group history holds `count` messages. */
  async waitCount (p: GroupWaitParams): Promise<GroupWaitResult> {
    const which = p.members ?? this.members.map((_m, i) => i).filter((i) => this.running(i))
    const deadline = sharedNow() + p.timeoutMs
    const doneAt = which.map(() => Number.NaN)
    const counts = which.map(() => 0)
    for (;;) {
      let all = true
      which.forEach((idx, k) => {
        const n = this.require(idx).groups.history(p.group, p.count + 1).length
        counts[k] = n
        if (n >= p.count) {
          if (Number.isNaN(doneAt[k])) doneAt[k] = sharedNow()
        } else {
          all = false
        }
      })
      if (all) return { complete: true, counts, doneAt }
      if (sharedNow() > deadline) return { complete: false, counts, doneAt }
      await new Promise<void>((resolve) => { setTimeout(resolve, 5) })
    }
  }

  /** Connections, gossip subscribers and mesh of each running local member, for `group`. */
  state (group: string, memberIds: string[]): GroupMemberState[] {
    const topic = GroupGossip.topicOf(group as GroupId)
    const others = new Set(memberIds)
    const out: GroupMemberState[] = []
    this.members.forEach((member, index) => {
      if (member === undefined || !this.running(index)) return
      const node = member.m.libp2p
      const conns = node.getConnections()
      const peers = new Set(conns.map((c) => c.remotePeer.toString()))
      out.push({
        index,
        peerId: member.m.peerId,
        connections: conns.length,
        memberConnections: [...peers].filter((p) => others.has(p) && p !== member.m.peerId).length,
        subscribers: node.services.pubsub?.getSubscribers(topic).length ?? 0,
        mesh: node.services.pubsub?.getMeshPeers(topic).length ?? 0,
        pending: member.m.pendingCount()
      })
    })
    return out
  }

  /** Shared clock: when member `index`'s first open connection to `peer` was upgraded (undefined: none). */
  connectedAt (index: number, peer: string): number | undefined {
    const conns = this.require(index).libp2p.getConnections(peerIdFromString(peer))
    const times = conns.map((c) => c.timeline.upgraded ?? c.timeline.open)
    if (times.length === 0) return undefined
    return Math.min(...times) - Date.now() + sharedNow()
  }

  async dial (index: number, addr: string): Promise<void> {
    await this.require(index).libp2p.dial(multiaddr(addr))
  }

  /** Group records (and other 1:1 envelopes) member `index`'s outbox still holds for `peer` (all peers if omitted). */
  pending (index: number, peer?: string): number {
    return this.require(index).pendingCount(peer)
  }

  /** `count` groups.send calls from one member, one after the other (set-up: the catch-up backlog). */
  async blast (p: GroupBlastParams): Promise<GroupBlastRun> {
    const m = this.require(p.member)
    const startedAt = sharedNow()
    for (let i = 0; i < p.count; i++) await m.groups.send(p.group, payload(`c-${i}`, p.messageBytes))
    return { startedAt, doneAt: sharedNow() }
  }

  async stopMember (index: number): Promise<void> {
    const member = this.members[index]
    if (member === undefined || !this.running(index)) return
    this.stopped.add(index)
    await member.m.stop()
  }

  /**
   * In this (fresh) process: open a stopped member's store and, after a GC, build the group's
   * document from its stored records and snapshot exactly as GroupManager.open does; after
   * another GC the heap difference is what the group costs to hold open.
   */
  async openGroup (p: GroupOpenParams): Promise<GroupOpenRun> {
    const store = new LevelStore(join(p.dataDir, 'db'))
    await store.open()
    try {
      const privateKey = await loadOrCreateIdentity(p.dataDir)
      const gcAvailable = collectGarbage()
      collectGarbage()
      const before = snapshot()
      const t0 = sharedNow()
      const entries = await store.listGroupEntries(`r/${p.group}/`)
      const records = entries.map((e) => decodeRecord(e.value))
      const snap = await store.getGroupEntry(`s/${p.group}`)
      this.openedDoc = GroupDoc.open({ group: p.group as GroupId, self: peerIdString(privateKey), privateKey, records, ...(snap !== undefined ? { snapshot: snap } : {}) })
      const openMs = sharedNow() - t0
      const recordBytes = entries.reduce((n, e) => n + e.value.byteLength, 0)
      const recordCount = entries.length
      entries.length = 0
      records.length = 0
      collectGarbage()
      collectGarbage()
      const after = snapshot()
      return {
        gcAvailable,
        records: recordCount,
        messages: this.openedDoc.messages(1_000_000).length,
        recordBytes,
        snapshotBytes: snap?.byteLength ?? 0,
        dbDiskBytes: await dirBytes(join(p.dataDir, 'db')),
        before,
        after,
        openMs
      }
    } finally {
      await store.close()
    }
  }

  async stop (): Promise<void> {
    const all = this.members.map((member, i) => ({ member, i })).filter(({ i }) => this.running(i))
    for (const { i } of all) this.stopped.add(i)
    this.openedDoc = undefined
    const results = await Promise.allSettled(all.map(async ({ member }) => { await member?.m.stop() }))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
  }

  private require (index: number): Messenger {
    const member = this.members[index]
    if (member === undefined || !this.running(index)) throw new Error(`group member ${index} is not running`)
    return member.m
  }
}
