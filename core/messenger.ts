import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { ConnectionGater, PrivateKey } from '@libp2p/interface'
import type { ContactView, ConversationView, MessageView, MessengerEvent, ProfileAvatarView, SafetyNumberView, SettingsView, WhoAmI } from './api/contract.js'
import { IdentityChangedError, NoSessionError, SignalCipher, type Ciphertext, type DecryptResult, type IdentityStatus, type SignalCipherOptions } from './crypto/cipher.js'
import { InvalidRequestError, MessageTooLargeError, NotRunningError, ParleyError, SelfContactError, UnknownContactError } from './errors.js'
import { TokenBuckets } from './token-bucket.js'
import { newMessageId, type MessageId, type PeerIdString } from './ids.js'
import { ensurePrivateDir, loadOrCreateIdentity, peerIdString } from './identity/identity.js'
import type { KeyProtector } from './identity/key-protector.js'
import { decodeInvite, encodeInvite, parsePeerId } from './identity/invite.js'
import { forComponent } from './logger.js'
import { createNode, DEFAULT_LISTEN, listenPorts, reusePorts, type ListenPorts, type ParleyLibp2p } from './net/node.js'
import { RelayKeeper, parseRelayAddr } from './net/relays.js'
import { DEFAULT_NETWORK_SETTINGS, mergeRelayFlags, NETWORK_SETTING, parseSettingsPatch, readNetworkSettings, type NetworkSettings } from './settings.js'
import { MailboxClient } from './protocols/mailbox/client.js'
import { readOneFrame } from './protocols/request.js'
import { DirectoryClient } from './protocols/directory/client.js'
import { MAILBOX_NOTIFY_PROTOCOL } from './protocols/mailbox/constants.js'
import { MailboxCourier, relaysOf } from './mailbox/courier.js'
import { Outbox, type OutboxOptions } from './outbox/outbox.js'
import { MAX_RECEIPT_IDS, readEnvelope, textByteLength, writeEnvelope, writeSealed, type DmEnvelope, type ProfileData, type Rejection, type SealedFrame } from './protocols/dm/codec.js'
import { InvalidEnvelopeError } from './protocols/dm/errors.js'
import { PrekeyClient } from './protocols/prekeys/client.js'
import { PrekeyServer } from './protocols/prekeys/server.js'
import { MAX_TEXT_BYTES } from './protocols/dm/constants.js'
import { DmProtocol, type DmChannel } from './protocols/dm/dm-protocol.js'
import { LevelStore } from './store/level-store.js'
import { GroupManager } from './groups/manager.js'
import { Gate } from './gate.js'
import type { Contact, ContactProfile, CryptoChanges, MessageRecord, OutboxRecord, SettledStatus, Store } from './store/types.js'
import { avatarHash, avatarProblem, decodeBase64, imageType, MAX_AVATAR_BYTES, nameProblem, type AvatarMime } from './profile.js'

const log = forComponent('messenger')

/** What became of received frames: the text messages among them, the frames refused, and the prekey (session-starting) frames taken. */
export interface ReceiveOutcome { texts: MessageId[], rejected: Rejection[], prekeys: MessageId[] }

/** No prekey bundle for a peer could be had (from the peer itself or any relay). */
export class NoBundleError extends ParleyError {
  static override name = 'NoBundleError'
  override name = 'NoBundleError'
}

export const DEFAULT_MESSAGE_TTL_MS = 30 * 24 * 60 * 60 * 1000
const CIRCUIT_WAIT_MS = 10_000
const MAILBOX_POLL_MS = 30_000
/** Top up a relay's one-time prekeys when it holds fewer than this, up to PREKEY_BATCH. */
const PREKEY_LOW_WATER = 25
const PREKEY_BATCH = 100
/** How often to check whether the signed prekey is due for rotation (more often if the period is shorter). */
const ROTATION_CHECK_MS = 60 * 60 * 1000
/** One-time prekeys one peer may take from us directly: this many at once, refilled per minute. */
const PREKEY_GRANTS_PER_PEER = 5
/** Non-contacts whose addresses are remembered (group members' relays, for their mail). */
const MAX_PEER_ADDRS = 4096
/** A message is sent again on a peer's retry request at most this often. */
const MAX_RETRIES = 3

export interface MessengerOptions {
  /** Holds identity.key and the level database (`db/`). */
  dataDir: string
  listen?: string[]
  /**
   * `false` forces mDNS LAN discovery off (`--no-mdns`) whatever the `lanDiscovery` setting
   * says; otherwise that setting decides (on by default).
   */
  mdns?: boolean
  /** Display name; kept in the store once set. */
  name?: string
  /**
   * Relays (multiaddrs with /p2p/<id>) to add to the stored relay list at start (`--relay`);
   * the stored list is what runs (see `settings.set`, RelayKeeper).
   */
  relays?: string[]
  /** Use this store instead of a LevelStore under dataDir (simulations). */
  store?: Store
  /** Use this key instead of the one in dataDir. */
  privateKey?: PrivateKey
  /** Seal the identity key file in dataDir and the Signal identity key pair in the store with this (the desktop app: safeStorage); see KeyProtector. */
  keyProtector?: KeyProtector
  outbox?: OutboxOptions
  /** How long an undelivered message is retried before it is marked failed. */
  messageTtlMs?: number
  /** fsync every store batch (see LevelStoreOptions.sync). */
  syncWrites?: boolean
  inboundConnectionThreshold?: number
  /** libp2p connection gater: tests and simulations cut the network with it (partitions). */
  connectionGater?: ConnectionGater
  /** Signal key schedule (signed prekey rotation); mostly for tests. */
  crypto?: SignalCipherOptions
  /**
   * BENCHMARKS ONLY: put envelopes on the wire unencrypted (in a Sealed frame of kind
   * whisper), so `npm run bench` can measure what E2EE costs on the very same path. Not
   * reachable from the CLI or MessengerApi; both ends must set it.
   */
  benchmarkWithoutE2ee?: boolean
}

export type MessengerListener = (event: MessengerEvent) => void

/** An avatar as this node holds it. */
interface Avatar { mime: AvatarMime, hash: string, bytes: Uint8Array }

/**
 * Our profile as contacts get it: `version` grows with every change (0: nothing set yet, so
 * nothing to share), `name` is the name this version carries. Kept in the `profile` setting.
 */
interface OwnProfile { version: number, name: string, avatar?: Avatar }

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
  private cipher: SignalCipher | undefined
  private prekeys: PrekeyClient | undefined
  private prekeyServer: PrekeyServer | undefined
  private groupManager: GroupManager | undefined
  /**
   * Inbound envelopes (direct or from a mailbox) are handled only while the group manager is
   * open: one may carry a group payload, which would otherwise be acknowledged and dropped.
   * Before that they wait; from stop() on they are refused, unacknowledged (see Gate).
   */
  private inbound = new Gate(() => new NotRunningError('messenger not running'))
  /** Session set-ups in progress, per peer (one bundle fetch at a time). */
  private readonly establishing = new Map<PeerIdString, Promise<void>>()
  /** Identity trust per peer, mirrored from the cipher for synchronous views. */
  private readonly identities = new Map<PeerIdString, IdentityStatus>()
  /** Messages re-queued on a peer's retry request, and how often (in memory). */
  private readonly retried = new Map<MessageId, number>()
  /** One-time prekeys each peer asking us directly may take (a few a minute). */
  private readonly prekeyGrants = new TokenBuckets(PREKEY_GRANTS_PER_PEER, PREKEY_GRANTS_PER_PEER / 60, 4096)
  /** One-time prekeys each relay said it holds for us after our last publish there. */
  private readonly prekeysAtRelays = new Map<string, number>()
  /** Envelopes refused (e.g. do not decrypt), by error name: direct and mailbox. */
  readonly rejections = new Map<string, number>()
  private pollTimer: ReturnType<typeof setInterval> | undefined
  private rotationTimer: ReturnType<typeof setInterval> | undefined
  private readonly listeners = new Set<MessengerListener>()
  private readonly contacts = new Map<PeerIdString, Contact>()
  /** Last known addresses of peers who are not contacts (bounded; see rememberPeerAddrs). */
  private readonly peerAddrs = new Map<PeerIdString, string[]>()
  /** Outgoing messages written to a stream but not yet acked (not persisted: see docs). */
  private readonly sentNotAcked = new Map<MessageId, PeerIdString>()
  /** Outgoing messages whose record is still being written; their status events wait for it. */
  private readonly unsaved = new Map<MessageId, Promise<void>>()
  /** Outbox entries that are control envelopes (receipts, retry requests), not messages: no status events for them. */
  private readonly controlIds = new Set<MessageId>()
  /** The PROFILE envelope queued to each contact and not yet settled: a newer one supersedes it. */
  private readonly profileQueued = new Map<PeerIdString, MessageId>()
  /** The receipt queued to acknowledge a peer's new Signal session and not yet settled (see acknowledgeSession). */
  private readonly sessionAckQueued = new Map<PeerIdString, MessageId>()
  private profile: OwnProfile = { version: 0, name: '' }
  private clock = 0
  private name = ''
  /** Relays and LAN discovery as stored (`settings.get`/`settings.set`). */
  private network: NetworkSettings = DEFAULT_NETWORK_SETTINGS
  /** settings.set calls run one after another. */
  private settingsQueue: Promise<unknown> = Promise.resolve()
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

  /** Group commands (create, send, members...): see GroupManager. */
  get groups (): GroupManager {
    if (this.groupManager === undefined || !this.running) throw new NotRunningError('messenger not running')
    return this.groupManager
  }

  get libp2p (): ParleyLibp2p {
    if (this.node === undefined) throw new NotRunningError('messenger not started')
    return this.node
  }

  async start (): Promise<void> {
    const o = this.options
    await ensurePrivateDir(o.dataDir)
    const privateKey = o.privateKey ?? await loadOrCreateIdentity(o.dataDir, { protector: o.keyProtector })
    this.selfId = peerIdString(privateKey)
    this.inbound = new Gate(() => new NotRunningError('messenger not running'))
    const store = o.store ?? new LevelStore(join(o.dataDir, 'db'), { sync: o.syncWrites === true })
    await store.open()
    this.store = store
    try {
      const cipher = new SignalCipher(store, privateKey, this.selfId, { ...o.crypto, ...(o.keyProtector !== undefined ? { protector: o.keyProtector } : {}) })
      await cipher.open()
      cipher.onIdentityChange = (peer) => { void this.refreshIdentity(peer) }
      this.cipher = cipher
      for (const [peer, status] of await cipher.identityStatuses()) this.identities.set(peer, status)
      this.clock = await store.getClock()
      if (o.name !== undefined) await store.putSetting('name', validateName(o.name))
      this.name = await store.getSetting('name') ?? ''
      const stored = readNetworkSettings(await store.getSetting(NETWORK_SETTING))
      this.network = { ...stored, relays: mergeRelayFlags(stored.relays, o.relays ?? []) }
      if (this.network.relays.join() !== stored.relays.join()) await store.putSetting(NETWORK_SETTING, JSON.stringify(this.network))
      this.profile = parseOwnProfile(await store.getSetting('profile'))
      // A name set at start (--name), or a crash between the two writes of setProfile.
      if (this.profile.name !== this.name) await this.saveProfile(store, this.name, this.profile.avatar)
      for (const c of await store.listContacts()) this.contacts.set(c.peerId, c)

      this.outbox = new Outbox({
        open: async (peer, signal) => await this.openDm(peer, signal),
        sent: (peer, ids) => { this.onSent(peer, ids) },
        delivered: async (peer, ids) => { await this.settle(peer, ids, 'delivered') },
        failed: async (peer, ids) => { await this.settle(peer, ids, 'failed') },
        seal: async (peer, records) => await this.seal(peer, records, true),
        rejected: async (peer, rejected) => { await this.onRejected(peer, rejected) },
        holds: (err) => err instanceof IdentityChangedError,
        deposit: async (peer, records) => {
          const courier = this.courier
          if (courier === undefined) return []
          const frames = await this.seal(peer, records, false)
          return await courier.deposit(peer, records.map((r, i) => ({ ...r, frame: frames[i] as Uint8Array<ArrayBuffer> })))
        }
      }, o.outbox)
      const requested = o.listen ?? DEFAULT_LISTEN
      const node = await this.startNode(privateKey, requested, parsePorts(await store.getSetting('listenPorts')))
      await store.putSetting('listenPorts', JSON.stringify(listenPorts(node.getMultiaddrs().map(String))))
      this.running = true
      // Our own bundle is served directly too, so rotation runs with or without relays.
      this.rotationTimer = setInterval(() => { this.rotatePrekeys() }, Math.min(ROTATION_CHECK_MS, (o.crypto?.rotationMs ?? ROTATION_CHECK_MS) / 2))
      this.rotationTimer.unref?.()
      // Always kept, even with no relays: settings.set adds and removes relays while we run.
      const circuit = requested.some((a) => a.includes('/p2p-circuit'))
      this.relayKeeper = new RelayKeeper(node, this.network.relays, {
        onConnected: (relay) => {
          this.drainMailbox(relay)
          this.publishPrekeys(relay)
          // We may have been away, and the relay's directory may now tell us where members are.
          this.groupManager?.relayConnected()
        },
        // A relay that is also a contact keeps its connection when it leaves the relay list.
        inUse: (relay) => this.contacts.has(relay as PeerIdString),
        reserve: circuit
      })
      this.relayKeeper.start()
      // Mail deposited while we were connected but unreachable (e.g. between reservations).
      this.pollTimer = setInterval(() => {
        for (const r of this.relayKeeper?.relayPeers ?? []) this.drainMailbox(r)
      }, MAILBOX_POLL_MS)
      this.pollTimer.unref?.()
      // From here on peers can connect and send, and relays connect. What is queued goes out
      // at once. No inbound envelope (direct or from a mailbox) is handled before the groups
      // are open (this.inbound); peers connected by then are synced with as if they had just
      // connected. The circuit address is waited for last.
      for (const rec of await store.listOutbox()) {
        const type = envelopeType(rec.frame)
        if (type !== 'text' && type !== undefined) this.controlIds.add(rec.id)
        if (type === 'profile') this.profileQueued.set(rec.to, rec.id) // the newest per contact
        this.outbox.enqueue(rec)
      }
      this.groupManager = new GroupManager({
        self: this.selfId,
        privateKey,
        store,
        cipher,
        node,
        sendDirect: async (to, body) => { await this.sendGroupPayload(to, body) },
        tick: () => ++this.clock,
        observe: (lamport) => { if (lamport > this.clock) this.clock = lamport },
        emit: (event) => { this.emit(event) },
        reach: async (peer) => { await this.reach(peer) },
        nameOf: (peer) => { const c = this.contacts.get(peer); return c === undefined ? undefined : displayName(c) }
      })
      await this.groupManager.open()
      this.inbound.open()
      if (this.network.relays.length > 0 && circuit) await this.waitForCircuitAddress(CIRCUIT_WAIT_MS)
      this.greetContacts()
      // Contacts that have not had this version of our profile yet (it changed while we were off).
      this.shareProfileWithAll()
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
      mdns: o.mdns !== false,
      mdnsPaused: !this.network.lanDiscovery,
      ...(o.inboundConnectionThreshold !== undefined ? { inboundConnectionThreshold: o.inboundConnectionThreshold } : {}),
      ...(o.connectionGater !== undefined ? { connectionGater: o.connectionGater } : {})
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
    this.dm = new DmProtocol(node, async (from, frames) => {
      const outcome = await this.receive(from, frames)
      if (outcome.prekeys.length > 0) this.acknowledgeSession(from, outcome.prekeys)
      return outcome.rejected
    })
    this.courier = new MailboxCourier(new MailboxClient(node), {
      dial: async (addr) => { await node.dial(multiaddr(addr)) },
      addrsOf: (peer) => this.contacts.get(peer)?.addrs ?? this.peerAddrs.get(peer),
      receive: async (from, frames) => await this.receive(from, frames),
      sendReceipt: async (to, ids) => { await this.sendReceipt(to, ids) },
      requestRetry: async (to, ids) => { await this.sendControl(to, 'retry', ids) },
      settle: async (peer, ids, status) => { await this.settle(peer, ids, status) },
      getMessage: async (id) => await this.requireStore().getMessage(id)
    })
    this.directory = new DirectoryClient(node)
    this.prekeys = new PrekeyClient(node)
    // Our own bundle, for peers that meet us directly (each asker gets a few one-time keys).
    this.prekeyServer = new PrekeyServer(node, {
      fetch: async (owner, requester) => {
        if (owner !== this.selfId || this.cipher === undefined) return undefined
        return await this.cipher.ownBundle(this.prekeyGrants.take(requester, Date.now()))
      }
    })
    await this.prekeyServer.start()
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
      this.rememberPeerAddrs(peer, addrs)
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
    // Envelopes being handled finish (their group payloads reach the groups); later ones are
    // refused unacknowledged, and their senders send them again.
    await this.inbound.close()
    await this.groupManager?.stop().catch((err: unknown) => { log.error('stopping groups failed: %e', err) })
    this.groupManager = undefined
    this.relayKeeper?.stop()
    this.relayKeeper = undefined
    clearInterval(this.pollTimer)
    clearInterval(this.rotationTimer)
    await this.prekeyServer?.stop().catch(() => {})
    await this.outbox?.stop()
    await this.dm?.stop().catch(() => {})
    await this.node?.stop()
    await this.store?.close()
    this.outbox = undefined
    this.cipher = undefined
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
      invite: encodeInvite({ peerId: this.peerId, addrs: addrs.map(stripP2p), name: this.name }),
      ...(this.profile.avatar !== undefined ? { avatar: this.profile.avatar.hash } : {})
    }
  }

  /** Set our display name (kept, put in invites, and shared with contacts as our profile). */
  async setName (name: string): Promise<WhoAmI> {
    return await this.setProfile({ name })
  }

  /**
   * Set our name and/or avatar (base64 PNG, JPEG or WebP; null removes it). Everything is
   * checked before anything is written (InvalidRequestError otherwise); a change goes to
   * every contact as a PROFILE envelope through the outbox.
   */
  async setProfile (change: { name?: string, avatar?: string | null }): Promise<WhoAmI> {
    const store = this.requireStore()
    const name = change.name !== undefined ? validateName(change.name) : this.name
    const avatar = change.avatar === undefined ? this.profile.avatar : change.avatar === null ? undefined : parseAvatar(change.avatar)
    if (name === this.profile.name && name === this.name && avatar?.hash === this.profile.avatar?.hash) return this.whoami()
    if (name !== this.name) {
      await store.putSetting('name', name)
      this.name = name
    }
    await this.saveProfile(store, name, avatar)
    this.shareProfileWithAll()
    return this.whoami()
  }

  /** Relays and privacy settings as stored, and what is running now. */
  settings (): SettingsView {
    this.requireNode()
    return {
      relays: [...this.network.relays],
      relaysConnected: this.relayKeeper?.connected() ?? [],
      lanDiscovery: this.network.lanDiscovery,
      lanDiscoveryForcedOff: this.options.mdns === false
    }
  }

  /**
   * Change relays and/or LAN discovery (any of SettingsPatch's fields). Every field is checked
   * first (InvalidRequestError, nothing changed); then the new settings are stored and applied
   * at once: new relays are dialled and kept (mailbox, prekeys, reservation), removed ones are
   * hung up on, mDNS starts or stops.
   */
  async updateSettings (input: unknown): Promise<SettingsView> {
    const patch = parseSettingsPatch(input)
    const run = this.settingsQueue.then(async () => {
      const store = this.requireStore()
      const before = this.network
      const next: NetworkSettings = { relays: patch.relays ?? before.relays, lanDiscovery: patch.lanDiscovery ?? before.lanDiscovery }
      await store.putSetting(NETWORK_SETTING, JSON.stringify(next))
      this.network = next
      const keeper = this.relayKeeper
      if (keeper !== undefined) {
        const kept = new Set(next.relays.map((r) => parseRelayAddr(r).peerId))
        for (const r of before.relays) {
          const peer = parseRelayAddr(r).peerId
          if (kept.has(peer)) continue
          this.prekeysAtRelays.delete(peer)
          await keeper.remove(r)
        }
        for (const r of next.relays) keeper.add(r)
      }
      await this.requireNode().services.lan?.setEnabled(next.lanDiscovery)
      return this.settings()
    })
    this.settingsQueue = run.catch(() => {})
    return await run
  }

  /** Someone's avatar: ours (our own peer id) or a contact's. */
  async avatarOf (peerId: string): Promise<ProfileAvatarView> {
    if (peerId === this.peerId) return { peerId, avatar: avatarView(this.profile.avatar) }
    const c = this.requireContact(peerId)
    const meta = c.profile?.avatar
    const bytes = meta === undefined ? undefined : await this.requireStore().getAvatar(c.peerId)
    return { peerId: c.peerId, avatar: meta === undefined || bytes === undefined ? null : avatarView({ ...meta, bytes }) }
  }

  /** A new version of our profile, written before anyone is sent it. */
  private async saveProfile (store: Store, name: string, avatar: Avatar | undefined): Promise<void> {
    // Time-based, so a re-installed node (which lost its counter) still supersedes what contacts hold.
    const next: OwnProfile = { version: Math.max(this.profile.version + 1, Date.now()), name, ...(avatar !== undefined ? { avatar } : {}) }
    // Taken before the write, so two changes at once never get the same version.
    this.profile = next
    await store.putSetting('profile', JSON.stringify({
      version: next.version,
      name,
      ...(avatar !== undefined ? { avatar: Buffer.from(avatar.bytes).toString('base64') } : {})
    }))
  }

  private shareProfileWithAll (): void {
    for (const peer of this.contacts.keys()) {
      this.shareProfile(peer).catch((err: unknown) => { log('sharing our profile with %s failed: %s', peer, (err as Error).message) })
    }
  }

  /**
   * Queue our profile for a contact unless it has had this version (or `force`: it asked).
   * An older PROFILE envelope still waiting for it is dropped: only the latest matters.
   */
  private async shareProfile (peer: PeerIdString, force = false): Promise<void> {
    const p = this.profile
    const c = this.contacts.get(peer)
    if (p.version === 0 || c === undefined || !this.running) return
    if (!force && (c.profileSent ?? 0) >= p.version) return
    const store = this.requireStore()
    const updated: Contact = { ...c, profileSent: p.version }
    this.contacts.set(peer, updated)
    const entry = this.controlEntry(peer, {
      type: 'profile',
      text: '',
      profile: { version: p.version, name: p.name, ...(p.avatar !== undefined ? { avatar: p.avatar.bytes } : {}), request: c.profile === undefined }
    })
    const previous = this.profileQueued.get(peer)
    this.profileQueued.set(peer, entry.id)
    // One tick, so the store's group commit makes them one write.
    await Promise.all([store.queueOutbox(entry), store.putContact(updated)])
    this.requireOutbox().enqueue(entry)
    if (previous !== undefined && this.requireOutbox().cancel(peer, previous)) {
      this.controlIds.delete(previous)
      await store.settleOutgoing([{ id: previous, to: peer, status: 'delivered' }])
    }
  }

  /** A contact's profile arrived: keep it if newer than the one we hold; answer with ours if due or asked. */
  private async applyProfile (from: PeerIdString, p: ProfileData): Promise<void> {
    const c = this.contacts.get(from)
    if (c === undefined) {
      // They learn ours, and we theirs, once one side writes (see addInboundContact).
      log('profile from %s dropped: not a contact', from)
      return
    }
    if (p.version > (c.profile?.version ?? 0)) {
      const mime = p.avatar === undefined ? undefined : imageType(p.avatar)?.mime
      const profile: ContactProfile = {
        version: p.version,
        name: p.name,
        ...(p.avatar !== undefined && mime !== undefined ? { avatar: { mime, hash: avatarHash(p.avatar) } } : {})
      }
      const updated: Contact = { ...c, profile }
      this.contacts.set(from, updated)
      await this.requireStore().putContact(updated, p.avatar ?? null)
      this.emit({ event: 'contact', contact: this.contactView(updated) })
    }
    await this.shareProfile(from, p.request)
  }

  async addContact (invite: string, name?: string): Promise<ContactView> {
    const store = this.requireStore()
    const parsed = decodeInvite(invite)
    if (parsed.peerId === this.peerId) throw new SelfContactError('that invite is your own')
    const existing = this.contacts.get(parsed.peerId)
    const named = name !== undefined || existing?.named === true
    const contact: Contact = {
      ...existing,
      peerId: parsed.peerId,
      name: name !== undefined ? validateName(name) : existing?.named === true ? existing.name : parsed.name ?? existing?.name ?? shortId(parsed.peerId),
      addrs: mergeAddrs(parsed.addrs, existing?.addrs ?? []),
      origin: 'invite',
      addedAt: existing?.addedAt ?? Date.now(),
      ...(named ? { named } : {})
    }
    await store.putContact(contact)
    this.contacts.set(contact.peerId, contact)
    await this.rememberAddrs(contact)
    // Say hello so the contact's outbox (if it has mail for us) runs now.
    this.requireNode().dial(peerIdFromString(contact.peerId)).catch(() => {})
    await this.shareProfile(contact.peerId)
    return this.contactView(this.contacts.get(contact.peerId) ?? contact)
  }

  listContacts (): ContactView[] {
    return [...this.contacts.values()].map((c) => this.contactView(c)).sort((a, b) => a.name.localeCompare(b.name))
  }

  async renameContact (peerId: string, name: string): Promise<ContactView> {
    const c = this.requireContact(peerId)
    const updated: Contact = { ...c, name: validateName(name), named: true }
    this.contacts.set(updated.peerId, updated)
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
      name: nameOrShortId(this.contacts.get(c.peerId), c.peerId),
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

  /**
   * Decrypt and store what a peer sent (directly or through a mailbox). The ratchet state
   * and the messages are written together; frames that do not decrypt are rejected by name
   * (the sender's outbox resets its session and tries again) and change nothing.
   */
  private async receive (from: PeerIdString, frames: SealedFrame[]): Promise<ReceiveOutcome> {
    return await this.inbound.run(async () => await this.receiveNow(from, frames))
  }

  private async receiveNow (from: PeerIdString, frames: SealedFrame[]): Promise<ReceiveOutcome> {
    const store = this.requireStore()
    const cipher = this.requireCipher()
    const items = frames.map((f) => ({ kind: f.kind, body: f.ciphertext, ...(f.binding !== undefined ? { binding: f.binding } : {}) }))
    const decrypt = this.options.benchmarkWithoutE2ee === true ? plaintextPassThrough : cipher.decrypt.bind(cipher)
    const { envs, fresh, rejected, prekeys } = await decrypt(from, items, async (results, changes) => {
      const envs: DmEnvelope[] = []
      const rejected: Rejection[] = []
      const prekeys: MessageId[] = []
      results.forEach((r, i) => {
        const frame = frames[i] as SealedFrame
        if (!r.ok) {
          // A replayed ciphertext: its message was stored the first time; nothing to do.
          if (r.error.name !== 'DuplicateCiphertextError') rejected.push({ id: frame.id, error: r.error.name })
          return
        }
        try {
          const env = readEnvelope(r.plaintext)
          // The id in clear must be the id inside, or acks and dedupe could be steered.
          if (env.id !== frame.id) throw new InvalidEnvelopeError('sealed id does not match the envelope inside')
          envs.push(env)
          if (frame.kind === 'prekey') prekeys.push(env.id)
        } catch (err) {
          log('refused envelope %s from %s: %s', frame.id, from, (err as Error).message)
          rejected.push({ id: frame.id, error: (err as Error).name })
        }
      })
      let clock = this.clock
      const now = Date.now()
      const records: MessageRecord[] = []
      for (const e of envs) {
        if (e.type !== 'text') continue
        if (e.lamport > clock) clock = e.lamport
        records.push({ id: e.id, conversation: from, from, direction: 'in', text: e.text, lamport: e.lamport, sentAt: e.sentAt, receivedAt: now, status: 'received' })
      }
      this.clock = clock
      const fresh = await store.saveIncoming(records, clock, changes)
      return { envs, fresh, rejected, prekeys }
    })
    for (const r of rejected) {
      this.rejections.set(r.error, (this.rejections.get(r.error) ?? 0) + 1)
      log('rejected envelope %s from %s: %s', r.id, from, r.error)
    }
    // Group payloads come from members who need not be contacts; only a text makes one.
    if (envs.some((e) => e.type === 'text') && !this.contacts.has(from)) await this.addInboundContact(from)
    for (const e of envs) {
      if (e.type === 'profile' && e.profile !== undefined) await this.applyProfile(from, e.profile)
    }
    // Stored by the group manager before the ack goes out (a payload it cannot use is dropped
    // there; group-sync repairs what is missing).
    for (const e of envs) {
      if (e.type === 'group' && e.body !== undefined) await this.groupManager?.onDirect(from, e.body)
    }
    const receipts = envs.filter((e) => e.type === 'receipt')
    if (receipts.length > 0) await this.applyReceipts(from, receipts.flatMap((e) => e.refs ?? []))
    const retries = envs.filter((e) => e.type === 'retry')
    if (retries.length > 0) await this.applyRetry(from, retries.flatMap((e) => e.refs ?? []))
    for (const m of fresh) {
      this.emit({ event: 'message', conversation: m.conversation, from: m.from, id: m.id, text: m.text, sentAt: m.sentAt, lamport: m.lamport })
    }
    return { rejected, texts: envs.filter((e) => e.type === 'text').map((e) => e.id), prekeys }
  }

  /**
   * Answer a peer's prekey messages (which start a session) with a receipt for them. A
   * sender keeps sending prekey messages, each carrying its whole session start (about 1.9 KB
   * with the Kyber ciphertext, against about 270 B), until it decrypts something from us over
   * the session; a direct chat where only one side writes would never get there. One such
   * receipt per peer is in flight at a time. Mailbox deliveries need none: the courier's
   * delivery receipt does the same.
   */
  private acknowledgeSession (from: PeerIdString, ids: MessageId[]): void {
    if (this.options.benchmarkWithoutE2ee === true || this.sessionAckQueued.has(from)) return
    const entry = this.controlEntry(from, { type: 'receipt', text: '', refs: ids.slice(0, MAX_RECEIPT_IDS) })
    this.sessionAckQueued.set(from, entry.id)
    this.queueEntry(entry).catch((err: unknown) => {
      this.sessionAckQueued.delete(from)
      this.controlIds.delete(entry.id)
      log('could not queue a session receipt for %s: %s', from, (err as Error).message)
    })
  }

  /**
   * Encrypt queued envelopes for a peer, starting a session from its bundle if there is
   * none: from the peer itself when `direct` (we are connected), else from relays.
   */
  private async seal (peer: PeerIdString, records: OutboxRecord[], direct: boolean): Promise<Array<Uint8Array<ArrayBuffer>>> {
    const cipher = this.requireCipher()
    if (this.options.benchmarkWithoutE2ee === true) return records.map((r) => writeSealed({ id: r.id, kind: 'whisper', ciphertext: r.frame }))
    const plaintexts = records.map((r) => r.frame)
    let cts: Ciphertext[]
    try {
      cts = await cipher.encrypt(peer, plaintexts)
    } catch (err) {
      if (!(err instanceof NoSessionError)) throw err
      await this.establishSession(peer, direct)
      cts = await cipher.encrypt(peer, plaintexts)
    }
    return cts.map((c, i) => writeSealed({
      id: (records[i] as OutboxRecord).id,
      kind: c.kind,
      ciphertext: c.body,
      ...(c.kind === 'prekey' ? { binding: cipher.ownBinding } : {})
    }))
  }

  private async establishSession (peer: PeerIdString, direct: boolean): Promise<void> {
    let running = this.establishing.get(peer)
    if (running === undefined) {
      running = this.fetchBundleAndStart(peer, direct).finally(() => { this.establishing.delete(peer) })
      this.establishing.set(peer, running)
    }
    await running
  }

  /** Try the peer itself (if `direct`), then our relays and the relays its addresses name. */
  private async fetchBundleAndStart (peer: PeerIdString, direct: boolean): Promise<void> {
    const client = this.prekeys
    if (client === undefined) throw new NotRunningError('messenger not running')
    const sources: PeerIdString[] = direct ? [peer] : []
    for (const r of [...(this.relayKeeper?.relayPeers ?? []), ...relaysOf(this.contacts.get(peer)?.addrs ?? []).map((x) => x.peerId)]) {
      if (!sources.includes(r as PeerIdString)) sources.push(r as PeerIdString)
    }
    const reasons: string[] = []
    for (const source of sources) {
      try {
        const bundle = await client.fetch(source, peer)
        if (bundle === undefined) { reasons.push(`${source}: none`); continue }
        await this.requireCipher().startSession(peer, bundle)
        return
      } catch (err) {
        if (err instanceof IdentityChangedError) throw err
        // A relay that lies (BindingError) or is down: try the next source.
        reasons.push(`${source}: ${(err as Error).name}`)
        log('no usable bundle for %s from %s: %s', peer, source, (err as Error).message)
      }
    }
    throw new NoBundleError(`no prekey bundle for ${peer} (${reasons.join('; ') || 'no sources'})`)
  }

  /** The peer could not decrypt what we sent: drop our session so the next try starts afresh. */
  private async onRejected (peer: PeerIdString, rejected: Rejection[]): Promise<void> {
    log('%s rejected %d envelopes (%s); resetting the session', peer, rejected.length, rejected[0]?.error)
    // Written but not taken: back to pending until they go through.
    for (const r of rejected) {
      if (this.sentNotAcked.delete(r.id)) this.emitStatus(r.id, peer, 'pending')
    }
    await this.requireCipher().resetSession(peer)
  }

  /**
   * Seal envelopes for a peer exactly as the outbox would (starting a session from a
   * relay's bundle if needed), without queueing them: for tools and tests that hand frames
   * to a mailbox or stream themselves.
   */
  async sealEnvelopes (to: string, envelopes: DmEnvelope[]): Promise<Array<Uint8Array<ArrayBuffer>>> {
    const peer = this.requireContact(to).peerId
    const records = envelopes.map((e) => ({ id: e.id, to: peer, frame: writeEnvelope(e), createdAt: e.sentAt, expiresAt: e.sentAt + DEFAULT_MESSAGE_TTL_MS }))
    return await this.seal(peer, records, this.requireNode().getConnections(peerIdFromString(peer)).length > 0)
  }

  /** One-time prekeys each of our relays holds for us, as of our last publish there. */
  prekeysAtRelay (): Record<string, number> {
    return Object.fromEntries(this.prekeysAtRelays)
  }

  /** Publish our bundle header at a relay and top up its one-time prekeys. */
  private publishPrekeys (relay: string): void {
    const cipher = this.cipher
    const client = this.prekeys
    if (cipher === undefined || client === undefined || !this.running) return
    const run = async (): Promise<void> => {
      const header = await cipher.header()
      let remaining = await client.publish(relay as PeerIdString, header, [])
      if (remaining < PREKEY_LOW_WATER) {
        const keys = await cipher.newOneTimeKeys(PREKEY_BATCH - remaining)
        remaining = await client.publish(relay as PeerIdString, header, keys)
      }
      this.prekeysAtRelays.set(relay, remaining)
    }
    run().catch((err: unknown) => { log('publishing prekeys at %s failed: %s', relay, (err as Error).message) })
  }

  private rotatePrekeys (): void {
    this.cipher?.rotateIfDue().then((rotated) => {
      if (rotated) for (const r of this.relayKeeper?.relayPeers ?? []) this.publishPrekeys(r)
    }, (err: unknown) => { log.error('prekey rotation failed: %e', err) })
  }

  private async refreshIdentity (peer: PeerIdString): Promise<void> {
    const cipher = this.cipher
    if (cipher === undefined) return
    const status = await cipher.identityStatus(peer)
    const previous = this.identities.get(peer)?.state
    this.identities.set(peer, status)
    if (previous === status.state) return
    if (status.state === 'changed') log('identity key of %s changed: sending is held until the user accepts it', peer)
    this.emit({ event: 'identity', peerId: peer, identity: status.state })
  }

  async safetyNumber (peerId: string): Promise<SafetyNumberView> {
    const peer = this.requireContact(peerId).peerId
    const cipher = this.requireCipher()
    if (this.identities.get(peer) === undefined || this.identities.get(peer)?.state === 'unknown') {
      // No key seen yet: fetch a bundle (this also starts the session).
      try { await this.establishSession(peer, true) } catch (err) { if (!(err instanceof IdentityChangedError)) log('no bundle for %s: %s', peer, (err as Error).message) }
      this.identities.set(peer, await cipher.identityStatus(peer))
    }
    const n = await cipher.safetyNumber(peer)
    return { peerId: peer, safetyNumber: n.displayable, scannable: n.scannable, changed: n.changed, verified: n.verified }
  }

  /** Mark a contact verified (optionally checking the number the user compared); accepts a changed key. */
  async verifyContact (peerId: string, safetyNumber?: string): Promise<ContactView> {
    return await this.decideIdentity(peerId, async (cipher, peer) => await cipher.verify(peer, safetyNumber))
  }

  /** Accept a contact's new identity key: held messages go out, encrypted to the new key. */
  async acceptIdentity (peerId: string): Promise<ContactView> {
    return await this.decideIdentity(peerId, async (cipher, peer) => await cipher.acceptIdentity(peer))
  }

  /** Record the user's trust decision, tell every client, and release the contact's held queue. */
  private async decideIdentity (peerId: string, decide: (cipher: SignalCipher, peer: PeerIdString) => Promise<IdentityStatus>): Promise<ContactView> {
    const c = this.requireContact(peerId)
    const status = await decide(this.requireCipher(), c.peerId)
    this.identities.set(c.peerId, status)
    this.emit({ event: 'identity', peerId: c.peerId, identity: status.state })
    this.outbox?.kick(c.peerId)
    return this.contactView(c)
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

  /**
   * `from` could not decrypt these messages of ours that it fetched from a mailbox (it lost
   * its session, e.g. re-installed) and asks for them again: queue them anew, to be sealed
   * with the session its request came over. Only our own, still undelivered messages to that
   * very peer, each at most MAX_RETRIES times.
   */
  private async applyRetry (from: PeerIdString, ids: MessageId[]): Promise<void> {
    const store = this.requireStore()
    const outbox = this.requireOutbox()
    for (const id of ids) {
      const m = await store.getMessage(id)
      if (m === undefined || m.direction !== 'out' || m.conversation !== from || m.status !== 'sent') continue
      const tries = (this.retried.get(id) ?? 0) + 1
      if (tries > MAX_RETRIES) continue
      this.retried.set(id, tries)
      const frame = writeEnvelope({ id, lamport: m.lamport, sentAt: m.sentAt, type: 'text', text: m.text })
      const entry: OutboxRecord = { id, to: from, frame, createdAt: Date.now(), expiresAt: m.sentAt + (this.options.messageTtlMs ?? DEFAULT_MESSAGE_TTL_MS) }
      await store.queueOutbox(entry)
      outbox.enqueue(entry)
      log('%s asked for %s again (could not decrypt it from a mailbox)', from, id)
    }
  }

  /** Tell `to` that we stored these of its messages (queued like any envelope, never shown). */
  private async sendReceipt (to: PeerIdString, ids: MessageId[]): Promise<void> {
    await this.sendControl(to, 'receipt', ids)
  }

  /** Queue control envelopes (receipts, retry requests) about `to`'s messages: never shown, no status. */
  private async sendControl (to: PeerIdString, type: 'receipt' | 'retry', ids: MessageId[]): Promise<void> {
    for (let i = 0; i < ids.length; i += MAX_RECEIPT_IDS) {
      await this.queueControl(to, { type, text: '', refs: ids.slice(i, i + MAX_RECEIPT_IDS) })
    }
  }

  /** Queue a group payload (core/groups) for a peer: a control envelope, sealed like any other. */
  private async sendGroupPayload (to: PeerIdString, body: Uint8Array): Promise<void> {
    await this.queueControl(to, { type: 'group', text: '', body })
  }

  private async queueControl (to: PeerIdString, env: Pick<DmEnvelope, 'type' | 'text' | 'refs' | 'body'>): Promise<void> {
    await this.queueEntry(this.controlEntry(to, env))
  }

  /**
   * Write a control entry to the outbox and hand it over. Also while stopping, as long as the
   * store is open: what is queued then (the group manager's last 1:1 copies, a receipt) is
   * kept for the next start.
   */
  private async queueEntry (entry: OutboxRecord): Promise<void> {
    const store = this.store
    const outbox = this.outbox
    if (store === undefined || outbox === undefined) throw new NotRunningError('messenger not running')
    await store.queueOutbox(entry)
    outbox.enqueue(entry)
  }

  /** An outbox entry for a control envelope (never shown, no status events), not yet written. */
  private controlEntry (to: PeerIdString, env: Pick<DmEnvelope, 'type' | 'text' | 'refs' | 'body' | 'profile'>): OutboxRecord {
    const id = newMessageId()
    const sentAt = Date.now()
    const frame = writeEnvelope({ ...env, id, lamport: Math.max(1, this.clock), sentAt })
    this.controlIds.add(id)
    return { id, to, frame, createdAt: sentAt, expiresAt: sentAt + (this.options.messageTtlMs ?? DEFAULT_MESSAGE_TTL_MS) }
  }

  /** Get a connection to a peer: from the peer store, else ask our relays' directories first. */
  private async reach (peer: PeerIdString): Promise<void> {
    const node = this.requireNode()
    const id = peerIdFromString(peer)
    if (node.getConnections(id).length > 0) return
    await this.locatingOnce(peer, async () => { await node.dial(id) })
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
      if (this.profileQueued.get(peer) === id) this.profileQueued.delete(peer)
      if (this.sessionAckQueued.get(peer) === id) this.sessionAckQueued.delete(peer)
      if (this.controlIds.delete(id)) continue
      this.sentNotAcked.delete(id)
      this.emitStatus(id, peer, status)
    }
  }

  /** A status event, held back until the message's own record is on disk. */
  private emitStatus (id: MessageId, peer: PeerIdString, status: 'pending' | 'sent' | 'delivered' | 'failed'): void {
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
    return await this.locatingOnce(peer, async () => await this.requireDm().open(peer, { signal }))
  }

  /** Run `attempt`; if it fails and our relays' directories know new addresses for the peer, run it once more. */
  private async locatingOnce<T> (peer: PeerIdString, attempt: () => Promise<T>): Promise<T> {
    try {
      return await attempt()
    } catch (err) {
      if (!(await this.locate(peer))) throw err
      return await attempt()
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
      this.rememberPeerAddrs(peer, addrs)
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
    // Ours goes with a request for theirs: one they sent before we knew them was dropped.
    await this.shareProfile(peer)
  }

  /**
   * Addresses of peers who are not contacts (e.g. fellow group members), as last seen by
   * identify or a directory: their relays are where their mail goes when they are offline.
   */
  private rememberPeerAddrs (peer: PeerIdString, addrs: string[]): void {
    if (this.contacts.has(peer) || addrs.length === 0) return
    this.peerAddrs.delete(peer)
    this.peerAddrs.set(peer, mergeAddrs(addrs.map(stripP2p), []))
    if (this.peerAddrs.size > MAX_PEER_ADDRS) {
      const oldest = this.peerAddrs.keys().next()
      if (oldest.done !== true) this.peerAddrs.delete(oldest.value)
    }
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
    return {
      peerId: c.peerId,
      name: displayName(c),
      ...(c.profile !== undefined && c.profile.name !== '' ? { profileName: c.profile.name } : {}),
      ...(c.profile?.avatar !== undefined ? { avatar: c.profile.avatar.hash } : {}),
      addrs: c.addrs,
      origin: c.origin,
      addedAt: c.addedAt,
      connected,
      identity: this.identities.get(c.peerId)?.state ?? 'unknown'
    }
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

  private requireCipher (): SignalCipher {
    if (this.cipher === undefined || !this.running) throw new NotRunningError('messenger not running')
    return this.cipher
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

/** benchmarkWithoutE2ee: the "ciphertext" is the envelope itself. */
async function plaintextPassThrough<T> (
  _from: PeerIdString,
  items: ReadonlyArray<{ body: Uint8Array }>,
  save: (results: DecryptResult[], changes: CryptoChanges) => Promise<T>
): Promise<T> {
  return await save(items.map((i) => ({ ok: true, plaintext: i.body })), new Map())
}

function messageView (r: MessageRecord): MessageView {
  return { id: r.id, conversation: r.conversation, from: r.from, direction: r.direction, text: r.text, sentAt: r.sentAt, lamport: r.lamport, status: r.status }
}

function validateName (name: unknown): string {
  const problem = nameProblem(name)
  if (problem !== undefined) throw new InvalidRequestError(problem)
  return (name as string).trim()
}

/** An avatar given as base64 by the user: checked exactly as a contact's (core/profile.ts). */
function parseAvatar (text: string): Avatar {
  const bytes = decodeBase64(text, MAX_AVATAR_BYTES)
  if (bytes === undefined) throw new InvalidRequestError('avatar must be base64 (standard alphabet, padded, no spaces, no data: prefix)')
  if (bytes === 'too large') throw new InvalidRequestError(`avatar is over ${MAX_AVATAR_BYTES} bytes (${MAX_AVATAR_BYTES / 1024} KiB)`)
  const problem = avatarProblem(bytes)
  const info = imageType(bytes)
  if (problem !== undefined || info === undefined) throw new InvalidRequestError(problem ?? 'avatar is not an image')
  return { mime: info.mime, hash: avatarHash(bytes), bytes }
}

function avatarView (a: Avatar | undefined): ProfileAvatarView['avatar'] {
  return a === undefined ? null : { hash: a.hash, mime: a.mime, data: Buffer.from(a.bytes).toString('base64') }
}

/** Our `profile` setting; an avatar that no longer passes the checks is left out. */
function parseOwnProfile (value: string | undefined): OwnProfile {
  if (value === undefined) return { version: 0, name: '' }
  try {
    const v = JSON.parse(value) as { version?: unknown, name?: unknown, avatar?: unknown }
    const version = typeof v.version === 'number' && Number.isSafeInteger(v.version) && v.version > 0 ? v.version : 0
    const name = typeof v.name === 'string' ? v.name : ''
    let avatar: Avatar | undefined
    if (typeof v.avatar === 'string') {
      try { avatar = parseAvatar(v.avatar) } catch (err) { log.error('stored avatar dropped: %s', (err as Error).message) }
    }
    return { version, name, ...(avatar !== undefined ? { avatar } : {}) }
  } catch {
    log.error('stored profile is not JSON; starting a new one')
    return { version: 0, name: '' }
  }
}

/** The name to show: ours for the contact if the user chose one, else theirs, else the invite's (or short id). */
function displayName (c: Contact): string {
  if (c.named !== true && c.profile !== undefined && c.profile.name !== '') return c.profile.name
  return c.name
}

function nameOrShortId (c: Contact | undefined, peer: PeerIdString): string {
  return c === undefined ? shortId(peer) : displayName(c)
}

function shortId (peer: string): string {
  return `${peer.slice(0, 4)}…${peer.slice(-6)}`
}

/** The type of a queued envelope; undefined if it does not read (it is then sent as is). */
function envelopeType (frame: Uint8Array): DmEnvelope['type'] | undefined {
  try {
    return readEnvelope(frame).type
  } catch {
    return undefined
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
