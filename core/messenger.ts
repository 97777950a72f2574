import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { PrivateKey } from '@libp2p/interface'
import type { ContactView, ConversationView, MessageView, MessengerEvent, WhoAmI } from './api/contract.js'
import { InvalidRequestError, MessageTooLargeError, NotRunningError, SelfContactError, UnknownContactError } from './errors.js'
import { newMessageId, type MessageId, type PeerIdString } from './ids.js'
import { ensurePrivateDir, loadOrCreateIdentity, peerIdString } from './identity/identity.js'
import { decodeInvite, encodeInvite, parsePeerId } from './identity/invite.js'
import { forComponent } from './logger.js'
import { createNode, DEFAULT_LISTEN, listenPorts, reusePorts, type ListenPorts, type ParleyLibp2p } from './net/node.js'
import { RelayKeeper } from './net/relays.js'
import { MailboxClient } from './protocols/mailbox/client.js'
import { readOneFrame } from './protocols/request.js'
import { DirectoryClient } from './protocols/directory/client.js'
import { MAILBOX_NOTIFY_PROTOCOL } from './protocols/mailbox/constants.js'
import { MailboxCourier } from './mailbox/courier.js'
import { Outbox, type OutboxOptions } from './outbox/outbox.js'
import { MAX_RECEIPT_IDS, readEnvelope, textByteLength, writeEnvelope, type DmEnvelope } from './protocols/dm/codec.js'
import { MAX_TEXT_BYTES } from './protocols/dm/constants.js'
import { DmProtocol, type DmChannel } from './protocols/dm/dm-protocol.js'
import { LevelStore } from './store/level-store.js'
import type { Contact, MessageRecord, OutboxRecord, SettledStatus, Store } from './store/types.js'

const log = forComponent('messenger')

export const DEFAULT_MESSAGE_TTL_MS = 30 * 24 * 60 * 60 * 1000
const CIRCUIT_WAIT_MS = 10_000
const MAILBOX_POLL_MS = 30_000
const MAX_NAME_LENGTH = 64

export interface MessengerOptions {
  /** Holds identity.key and the level database (`db/`). */
  dataDir: string
  listen?: string[]
  mdns?: boolean
  /** Display name; kept in the store once set. */
  name?: string
  /** Relays (multiaddrs with /p2p/<id>) to stay connected to; see RelayKeeper. */
  relays?: string[]
  /** Use this store instead of a LevelStore under dataDir (simulations). */
  store?: Store
  /** Use this key instead of the one in dataDir. */
  privateKey?: PrivateKey
  outbox?: OutboxOptions
  /** How long an undelivered message is retried before it is marked failed. */
  messageTtlMs?: number
  /** fsync every store batch (see LevelStoreOptions.sync). */
  syncWrites?: boolean
  inboundConnectionThreshold?: number
}

export type MessengerListener = (event: MessengerEvent) => void

/**
 * The engine behind every shell: a libp2p node, a store, the DM protocol and the outbox.
 * Commands are methods; everything that happens (messages, status changes) is an event.
 *
 * @example
 * const m = new Messenger({ dataDir: '/tmp/ada', listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
 * await m.start()
 * m.on((e) => { if (e.event === 'message') console.log(e.text) })
 * await m.addContact(inviteFromBob)
 * await m.sendText(bobPeerId, 'hello')
 */
export class Messenger {
  private node: ParleyLibp2p | undefined
  private store: Store | undefined
  private dm: DmProtocol | undefined
  private outbox: Outbox | undefined
  private relayKeeper: RelayKeeper | undefined
  private courier: MailboxCourier | undefined
  private directory: DirectoryClient | undefined
  private pollTimer: ReturnType<typeof setInterval> | undefined
  private readonly listeners = new Set<MessengerListener>()
  private readonly contacts = new Map<PeerIdString, Contact>()
  /** Outgoing messages written to a stream but not yet acked (not persisted: see docs). */
  private readonly sentNotAcked = new Map<MessageId, PeerIdString>()
  /** Outgoing messages whose record is still being written; their status events wait for it. */
  private readonly unsaved = new Map<MessageId, Promise<void>>()
  /** Outbox entries that are receipts, not messages: no status events for them. */
  private readonly controlIds = new Set<MessageId>()
  private clock = 0
  private name = ''
  private selfId: PeerIdString | undefined
  private running = false

  constructor (private readonly options: MessengerOptions) {}

  on (listener: MessengerListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  get peerId (): PeerIdString {
    if (this.selfId === undefined) throw new NotRunningError('messenger not started')
    return this.selfId
  }

  get libp2p (): ParleyLibp2p {
    if (this.node === undefined) throw new NotRunningError('messenger not started')
    return this.node
  }

  async start (): Promise<void> {
    const o = this.options
    await ensurePrivateDir(o.dataDir)
    const privateKey = o.privateKey ?? await loadOrCreateIdentity(o.dataDir)
    this.selfId = peerIdString(privateKey)
    const store = o.store ?? new LevelStore(join(o.dataDir, 'db'), { sync: o.syncWrites === true })
    await store.open()
    this.store = store
    try {
      this.clock = await store.getClock()
      if (o.name !== undefined) await store.putSetting('name', validateName(o.name))
      this.name = await store.getSetting('name') ?? ''
      for (const c of await store.listContacts()) this.contacts.set(c.peerId, c)

      this.outbox = new Outbox({
        open: async (peer, signal) => await this.openDm(peer, signal),
        sent: (peer, ids) => { this.onSent(peer, ids) },
        delivered: async (peer, ids) => { await this.settle(peer, ids, 'delivered') },
        expired: async (peer, ids) => { await this.settle(peer, ids, 'failed') },
        deposit: async (peer, records) => await this.courier?.deposit(peer, records) ?? []
      }, o.outbox)
      const requested = o.listen ?? DEFAULT_LISTEN
      const node = await this.startNode(privateKey, requested, parsePorts(await store.getSetting('listenPorts')))
      await store.putSetting('listenPorts', JSON.stringify(listenPorts(node.getMultiaddrs().map(String))))
      this.running = true
      if ((o.relays ?? []).length > 0) {
        this.relayKeeper = new RelayKeeper(node, o.relays ?? [], (relay) => { this.drainMailbox(relay) })
        this.relayKeeper.start()
        // Mail deposited while we were connected but unreachable (e.g. between reservations).
        this.pollTimer = setInterval(() => {
          for (const r of this.relayKeeper?.relayPeers ?? []) this.drainMailbox(r)
        }, MAILBOX_POLL_MS)
        this.pollTimer.unref?.()
        if (requested.some((a) => a.includes('/p2p-circuit'))) await this.waitForCircuitAddress(CIRCUIT_WAIT_MS)
      }
      for (const rec of await store.listOutbox()) {
        if (isReceipt(rec.frame)) this.controlIds.add(rec.id)
        this.outbox.enqueue(rec)
      }
      this.greetContacts()
    } catch (err) {
      await this.stop().catch(() => {})
      throw err
    }
  }

  /** Start libp2p on last run's ports if free, else on the requested ones. */
  private async startNode (privateKey: PrivateKey, requested: string[], last: ListenPorts): Promise<ParleyLibp2p> {
    const o = this.options
    const make = async (listen: string[]): Promise<ParleyLibp2p> => await createNode({
      privateKey,
      listen,
      mdns: o.mdns ?? true,
      ...(o.inboundConnectionThreshold !== undefined ? { inboundConnectionThreshold: o.inboundConnectionThreshold } : {})
    })
    const preferred = reusePorts(requested, last)
    const node = await make(preferred)
    try {
      await this.wire(node)
      await node.start()
      return node
    } catch (err) {
      await this.dm?.stop().catch(() => {})
      await Promise.resolve(node.stop()).catch(() => {})
      if (preferred.join() === requested.join()) throw err
      log('last ports unavailable (%s); listening on %s', (err as Error).message, requested.join(', '))
      const fresh = await make(requested)
      await this.wire(fresh)
      await fresh.start()
      return fresh
    }
  }

  /** Attach the DM protocol and event handlers to a node that has not started yet. */
  private async wire (node: ParleyLibp2p): Promise<void> {
    this.node = node
    for (const c of this.contacts.values()) await this.rememberAddrs(c)
    this.dm = new DmProtocol(node, async (from, envs) => { await this.receive(from, envs) })
    this.courier = new MailboxCourier(new MailboxClient(node), {
      dial: async (addr) => { await node.dial(multiaddr(addr)) },
      addrsOf: (peer) => this.contacts.get(peer)?.addrs,
      receive: async (from, envs) => { await this.receive(from, envs) },
      sendReceipt: async (to, ids) => { await this.sendReceipt(to, ids) },
      settle: async (peer, ids, status) => { await this.settle(peer, ids, status) },
      getMessage: async (id) => await this.requireStore().getMessage(id)
    })
    this.directory = new DirectoryClient(node)
    // A relay saying "mail is waiting": fetch from it (only from our own relays).
    await node.handle(MAILBOX_NOTIFY_PROTOCOL, (stream, connection) => {
      const relay = connection.remotePeer.toString()
      readOneFrame(stream, 64).then(async () => {
        await stream.close()
        if (this.relayKeeper?.relayPeers.includes(relay) === true) this.drainMailbox(relay)
      }, (err: unknown) => { stream.abort(err as Error) })
    }, { maxInboundStreams: 2, maxOutboundStreams: 1, runOnLimitedConnection: true })
    node.addEventListener('peer:connect', (evt) => {
      const peer = evt.detail.toString() as PeerIdString
      this.outbox?.kick(peer)
      if (this.contacts.has(peer)) this.emit({ event: 'peer', peerId: peer, connected: true })
    })
    node.addEventListener('peer:disconnect', (evt) => {
      const peer = evt.detail.toString() as PeerIdString
      if (this.contacts.has(peer)) this.emit({ event: 'peer', peerId: peer, connected: false })
    })
    node.addEventListener('peer:identify', (evt) => {
      const peer = evt.detail.peerId.toString() as PeerIdString
      const addrs = evt.detail.listenAddrs.map((a) => a.toString())
      this.updateContactAddrs(peer, addrs).catch((err: unknown) => { log.error('saving addresses failed: %e', err) })
    })
    node.addEventListener('peer:discovery', (evt) => {
      const peer = evt.detail.id.toString() as PeerIdString
      if (this.contacts.has(peer) && this.outbox !== undefined && this.outbox.pending(peer) > 0) {
        node.dial(evt.detail.id).catch(() => {})
      }
    })
    await this.dm.start()
  }

  /**
   * Listening on /p2p-circuit: give the relay a moment to grant the reservation, so the
   * addresses (and invite) reported right after start already carry the circuit address.
   */
  private async waitForCircuitAddress (timeoutMs: number): Promise<void> {
    const node = this.requireNode()
    const has = (): boolean => node.getMultiaddrs().some((a) => a.toString().includes('/p2p-circuit'))
    if (has()) return
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        node.removeEventListener('self:peer:update', check)
        resolve()
      }
      const check = (): void => { if (has()) done() }
      const timer = setTimeout(() => {
        log('no relay reservation after %d ms; continuing without a circuit address', timeoutMs)
        done()
      }, timeoutMs)
      node.addEventListener('self:peer:update', check)
    })
  }

  async stop (): Promise<void> {
    this.running = false
    this.relayKeeper?.stop()
    this.relayKeeper = undefined
    clearInterval(this.pollTimer)
    await this.outbox?.stop()
    await this.dm?.stop().catch(() => {})
    await this.node?.stop()
    await this.store?.close()
    this.outbox = undefined
    this.dm = undefined
    this.node = undefined
    this.store = undefined
  }

  whoami (): WhoAmI {
    const node = this.requireNode()
    const addrs = node.getMultiaddrs().map((a) => a.toString())
    return {
      peerId: this.peerId,
      name: this.name,
      addrs,
      invite: encodeInvite({ peerId: this.peerId, addrs: addrs.map(stripP2p), name: this.name })
    }
  }

  async setName (name: string): Promise<WhoAmI> {
    const valid = validateName(name)
    await this.requireStore().putSetting('name', valid)
    this.name = valid
    return this.whoami()
  }

  async addContact (invite: string, name?: string): Promise<ContactView> {
    const store = this.requireStore()
    const parsed = decodeInvite(invite)
    if (parsed.peerId === this.peerId) throw new SelfContactError('that invite is your own')
    const existing = this.contacts.get(parsed.peerId)
    const contact: Contact = {
      peerId: parsed.peerId,
      name: name !== undefined ? validateName(name) : parsed.name ?? existing?.name ?? shortId(parsed.peerId),
      addrs: mergeAddrs(parsed.addrs, existing?.addrs ?? []),
      origin: 'invite',
      addedAt: existing?.addedAt ?? Date.now()
    }
    await store.putContact(contact)
    this.contacts.set(contact.peerId, contact)
    await this.rememberAddrs(contact)
    // Say hello so the contact's outbox (if it has mail for us) runs now.
    this.requireNode().dial(peerIdFromString(contact.peerId)).catch(() => {})
    return this.contactView(contact)
  }

  listContacts (): ContactView[] {
    return [...this.contacts.values()].sort((a, b) => a.name.localeCompare(b.name)).map((c) => this.contactView(c))
  }

  async renameContact (peerId: string, name: string): Promise<ContactView> {
    const c = this.requireContact(peerId)
    const updated = { ...c, name: validateName(name) }
    await this.requireStore().putContact(updated)
    this.contacts.set(updated.peerId, updated)
    return this.contactView(updated)
  }

  async removeContact (peerId: string): Promise<boolean> {
    const id = parsePeerId(peerId)
    if (!this.contacts.has(id)) return false
    await this.requireStore().deleteContact(id)
    this.contacts.delete(id)
    return true
  }

  /**
   * Compose and queue a text message. Resolves once the local copy and its outbox entry are
   * durably written (status 'pending'); delivery continues in the background.
   */
  async sendText (to: string, text: string): Promise<MessageView> {
    const store = this.requireStore()
    const outbox = this.requireOutbox()
    const peer = this.requireContact(to).peerId
    if (typeof text !== 'string' || text.length === 0) throw new InvalidRequestError('text must be a non-empty string')
    if (textByteLength(text) > MAX_TEXT_BYTES) throw new MessageTooLargeError(`text is over ${MAX_TEXT_BYTES} bytes`)
    // id, clock and time are taken synchronously: concurrent sends keep their call order.
    const id = newMessageId()
    const lamport = ++this.clock
    const sentAt = Date.now()
    const frame = writeEnvelope({ id, lamport, sentAt, type: 'text', text })
    const message: MessageRecord = { id, conversation: peer, from: this.peerId, direction: 'out', text, lamport, sentAt, status: 'pending' }
    const entry: OutboxRecord = { id, to: peer, frame, createdAt: sentAt, expiresAt: sentAt + (this.options.messageTtlMs ?? DEFAULT_MESSAGE_TTL_MS) }
    // Pipelined: the envelope goes on the wire first and its record is written meanwhile;
    // the call answers only after the write, so nothing acknowledged to the user is lost.
    // Status events wait for the record (the gate), and the store's group commit orders the
    // delivery write after the record's.
    let release = (): void => {}
    this.unsaved.set(id, new Promise<void>((resolve) => { release = resolve }))
    outbox.enqueue(entry)
    try {
      await store.saveOutgoing(message, entry, lamport)
    } catch (err) {
      outbox.cancel(peer, id)
      throw err
    } finally {
      this.unsaved.delete(id)
      release()
    }
    return messageView(message)
  }

  async history (withPeer: string, limit: number, before?: string): Promise<MessageView[]> {
    const peer = parsePeerId(withPeer)
    const records = await this.requireStore().history(peer, { limit, ...(before !== undefined ? { before: before as MessageId } : {}) })
    return records.map((r) => this.overlay(r))
  }

  async conversations (): Promise<ConversationView[]> {
    const list = await this.requireStore().listConversations()
    const views = list.map((c) => ({
      peerId: c.peerId,
      name: this.contacts.get(c.peerId)?.name ?? shortId(c.peerId),
      ...(c.last !== undefined ? { last: this.overlay(c.last) } : {})
    }))
    return views.sort((a, b) => (b.last?.sentAt ?? 0) - (a.last?.sentAt ?? 0))
  }

  /** Inbound DM streams reset so far, by error name. */
  dmRejections (): Record<string, number> {
    return Object.fromEntries(this.dm?.rejections ?? [])
  }

  /** Entries waiting in the outbox (for a peer, or all). */
  pendingCount (peer?: string): number {
    return this.outbox?.pending(peer === undefined ? undefined : parsePeerId(peer)) ?? 0
  }

  private async receive (from: PeerIdString, all: DmEnvelope[]): Promise<void> {
    const store = this.requireStore()
    if (!this.contacts.has(from)) await this.addInboundContact(from)
    const receipts = all.filter((e) => e.type === 'receipt')
    if (receipts.length > 0) await this.applyReceipts(from, receipts.flatMap((e) => e.receiptFor ?? []))
    const envs = all.filter((e) => e.type === 'text')
    if (envs.length === 0) return
    let clock = this.clock
    const now = Date.now()
    const records: MessageRecord[] = envs.map((e) => {
      if (e.lamport > clock) clock = e.lamport
      return { id: e.id, conversation: from, from, direction: 'in', text: e.text, lamport: e.lamport, sentAt: e.sentAt, receivedAt: now, status: 'received' }
    })
    this.clock = clock
    const fresh = await store.saveIncoming(records, clock)
    for (const m of fresh) {
      this.emit({ event: 'message', conversation: m.conversation, from: m.from, id: m.id, text: m.text, sentAt: m.sentAt, lamport: m.lamport })
    }
  }

  /** `from` stored these messages of ours (they went through a mailbox): mark them delivered. */
  private async applyReceipts (from: PeerIdString, ids: MessageId[]): Promise<void> {
    const store = this.requireStore()
    const done: MessageId[] = []
    for (const id of ids) {
      const m = await store.getMessage(id)
      // Only our own messages to this very peer; anything else in a receipt is ignored.
      if (m === undefined || m.direction !== 'out' || m.conversation !== from || m.status === 'delivered') continue
      this.outbox?.cancel(from, id)
      done.push(id)
    }
    if (done.length > 0) await this.settle(from, done, 'delivered')
  }

  /** Tell `to` that we stored these of its messages (queued like any envelope, never shown). */
  private async sendReceipt (to: PeerIdString, ids: MessageId[]): Promise<void> {
    const store = this.requireStore()
    const outbox = this.requireOutbox()
    for (let i = 0; i < ids.length; i += MAX_RECEIPT_IDS) {
      const id = newMessageId()
      const sentAt = Date.now()
      const frame = writeEnvelope({ id, lamport: Math.max(1, this.clock), sentAt, type: 'receipt', text: '', receiptFor: ids.slice(i, i + MAX_RECEIPT_IDS) })
      const entry: OutboxRecord = { id, to, frame, createdAt: sentAt, expiresAt: sentAt + (this.options.messageTtlMs ?? DEFAULT_MESSAGE_TTL_MS) }
      this.controlIds.add(id)
      await store.queueOutbox(entry)
      outbox.enqueue(entry)
    }
  }

  private onSent (peer: PeerIdString, ids: MessageId[]): void {
    for (const id of ids) {
      if (this.sentNotAcked.has(id) || this.controlIds.has(id)) continue
      this.sentNotAcked.set(id, peer)
      this.emitStatus(id, peer, 'sent')
    }
  }

  private async settle (peer: PeerIdString, ids: MessageId[], status: SettledStatus): Promise<void> {
    // Group commit keeps this write after the messages' own records (see LevelStore.commit).
    // A receipt leaving the outbox, however it went, just goes (no status, no event).
    await this.requireStore().settleOutgoing(ids.map((id) => ({ id, to: peer, status: this.controlIds.has(id) ? 'delivered' : status })))
    for (const id of ids) {
      if (this.controlIds.delete(id)) continue
      this.sentNotAcked.delete(id)
      this.emitStatus(id, peer, status)
    }
  }

  /** A status event, held back until the message's own record is on disk. */
  private emitStatus (id: MessageId, peer: PeerIdString, status: 'sent' | 'delivered' | 'failed'): void {
    const saved = this.unsaved.get(id)
    if (saved === undefined) {
      this.emit({ event: 'status', id, conversation: peer, status })
      return
    }
    saved.then(() => { this.emit({ event: 'status', id, conversation: peer, status }) }, () => {})
  }

  private overlay (r: MessageRecord): MessageView {
    const view = messageView(r)
    if (view.status === 'pending' && this.sentNotAcked.has(r.id)) view.status = 'sent'
    return view
  }

  /** Open a DM stream; if the peer cannot be reached, ask our relays where it is now and try once more. */
  private async openDm (peer: PeerIdString, signal: AbortSignal): Promise<DmChannel> {
    try {
      return await this.requireDm().open(peer, { signal })
    } catch (err) {
      if (!(await this.locate(peer))) throw err
      return await this.requireDm().open(peer, { signal })
    }
  }

  /**
   * Ask each connected relay's directory for the peer's current signed record. New
   * addresses go into the peer store and the contact. True if anything new was learned.
   */
  async locate (peer: PeerIdString): Promise<boolean> {
    const directory = this.directory
    if (directory === undefined) return false
    for (const relay of this.relayKeeper?.relayPeers ?? []) {
      let addrs: string[] | undefined
      try {
        addrs = await directory.lookup(relay as PeerIdString, peer)
      } catch (err) {
        log('directory lookup of %s at %s failed: %s', peer, relay, (err as Error).message)
        continue
      }
      if (addrs === undefined || addrs.length === 0) continue
      const known = new Set(this.contacts.get(peer)?.addrs ?? [])
      const fresh = addrs.map(stripP2p).filter((a) => !known.has(a))
      if (fresh.length === 0) continue
      await this.requireNode().peerStore.merge(peerIdFromString(peer), { multiaddrs: addrs.map((a) => multiaddr(a)) })
      await this.updateContactAddrs(peer, [...fresh, ...known])
      return true
    }
    return false
  }

  private drainMailbox (relay: string): void {
    if (this.running) this.courier?.drain(relay)
  }

  private async addInboundContact (peer: PeerIdString): Promise<void> {
    // In the map first: identify usually lands while we read the peer store, and
    // updateContactAddrs must find the contact then or the address is lost.
    this.contacts.set(peer, { peerId: peer, name: shortId(peer), addrs: [], origin: 'inbound', addedAt: Date.now() })
    const known = await this.requireNode().peerStore.get(peerIdFromString(peer)).catch(() => undefined)
    const current = this.contacts.get(peer)
    if (current === undefined) return
    const contact: Contact = { ...current, addrs: mergeAddrs(current.addrs, known?.addresses.map((a) => a.multiaddr.toString()) ?? []) }
    this.contacts.set(peer, contact)
    await this.requireStore().putContact(contact)
    this.emit({ event: 'contact', contact: this.contactView(contact) })
  }

  private async updateContactAddrs (peer: PeerIdString, addrs: string[]): Promise<void> {
    const c = this.contacts.get(peer)
    if (c === undefined || addrs.length === 0) return
    const merged = mergeAddrs(addrs, [])
    if (merged.join(' ') === c.addrs.join(' ')) return
    const updated = { ...c, addrs: merged }
    this.contacts.set(peer, updated)
    await this.store?.putContact(updated)
  }

  private async rememberAddrs (c: Contact): Promise<void> {
    const addrs = c.addrs.flatMap((a) => { try { return [multiaddr(a)] } catch { return [] } })
    if (addrs.length === 0 || this.node === undefined) return
    await this.node.peerStore.merge(peerIdFromString(c.peerId), { multiaddrs: addrs })
  }

  /** After a start, dial contacts so any mail they hold for us flows now, not at their next retry. */
  private greetContacts (): void {
    const node = this.requireNode()
    for (const c of this.contacts.values()) {
      if (c.addrs.length === 0) continue
      node.dial(peerIdFromString(c.peerId)).catch(() => {})
    }
  }

  private contactView (c: Contact): ContactView {
    const connected = this.node !== undefined && this.node.getConnections(peerIdFromString(c.peerId)).length > 0
    return { peerId: c.peerId, name: c.name, addrs: c.addrs, origin: c.origin, addedAt: c.addedAt, connected }
  }

  private requireContact (peerId: string): Contact {
    const known = this.contacts.get(peerId as PeerIdString) // hot path: no re-parse for contacts
    if (known !== undefined) return known
    const id = parsePeerId(peerId)
    const c = this.contacts.get(id)
    if (c === undefined) throw new UnknownContactError(`${id} is not a contact; add them by invite first`)
    return c
  }

  private emit (event: MessengerEvent): void {
    for (const l of this.listeners) {
      try {
        l(event)
      } catch (err) {
        log.error('event listener threw: %e', err)
      }
    }
  }

  private requireNode (): ParleyLibp2p {
    if (this.node === undefined || !this.running) throw new NotRunningError('messenger not running')
    return this.node
  }

  private requireStore (): Store {
    if (this.store === undefined || !this.running) throw new NotRunningError('messenger not running')
    return this.store
  }

  private requireDm (): DmProtocol {
    if (this.dm === undefined) throw new NotRunningError('messenger not running')
    return this.dm
  }

  private requireOutbox (): Outbox {
    if (this.outbox === undefined || !this.running) throw new NotRunningError('messenger not running')
    return this.outbox
  }
}

function messageView (r: MessageRecord): MessageView {
  return { id: r.id, conversation: r.conversation, from: r.from, direction: r.direction, text: r.text, sentAt: r.sentAt, lamport: r.lamport, status: r.status }
}

function validateName (name: unknown): string {
  if (typeof name !== 'string') throw new InvalidRequestError('name must be a string')
  const trimmed = name.trim()
  if (trimmed.length === 0 || trimmed.length > MAX_NAME_LENGTH) throw new InvalidRequestError(`name must be 1-${MAX_NAME_LENGTH} characters`)
  return trimmed
}

function shortId (peer: string): string {
  return `${peer.slice(0, 4)}…${peer.slice(-6)}`
}

function isReceipt (frame: Uint8Array): boolean {
  try {
    return readEnvelope(frame).type === 'receipt'
  } catch {
    return false
  }
}

/** Drop a trailing /p2p/<id> (the peer id travels separately); keep relay hops intact. */
function stripP2p (addr: string): string {
  return addr.replace(/\/p2p\/[^/]+$/, '')
}

/** Addresses without their /p2p suffix, deduplicated, newest first, at most 16. */
function mergeAddrs (fresh: string[], old: string[]): string[] {
  const seen = new Set<string>()
  const out: string[] = []
  for (const a of [...fresh, ...old].map(stripP2p)) {
    if (seen.has(a)) continue
    seen.add(a)
    out.push(a)
  }
  return out.slice(0, 16)
}

function parsePorts (value: string | undefined): ListenPorts {
  if (value === undefined) return {}
  try {
    const v = JSON.parse(value) as ListenPorts
    return { ...(typeof v.tcp === 'number' ? { tcp: v.tcp } : {}), ...(typeof v.ws === 'number' ? { ws: v.ws } : {}) }
  } catch {
    return {}
  }
}
