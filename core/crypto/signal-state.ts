import {
  Direction, IdentityChange, IdentityKeyStore, KyberPreKeyRecord, KyberPreKeyStore, PreKeyRecord, PreKeyStore,
  PublicKey, SenderKeyRecord, SenderKeyStore, SessionRecord, SessionStore, SignedPreKeyRecord, SignedPreKeyStore,
  type IdentityKeyPair, type PrivateKey, type ProtocolAddress, type Uuid
} from '@signalapp/libsignal-client'
import { owned } from '../bytes.js'
import { CorruptRecordError, ParleyError } from '../errors.js'
import type { CryptoChanges, Store } from '../store/types.js'

/** libsignal asked for a prekey this device does not have (spent, expired, or never made). */
export class MissingPreKeyError extends ParleyError {
  static override name = 'MissingPreKeyError'
  override name = 'MissingPreKeyError'
}

/** A last-resort Kyber prekey was used twice with the same base key: a replayed first message. */
export class ReplayedPreKeyMessageError extends ParleyError {
  static override name = 'ReplayedPreKeyMessageError'
  override name = 'ReplayedPreKeyMessageError'
}

/**
 * What this device knows about a peer's Signal identity key. `accepted` is the key messages
 * may be sent to (trust on first use, or accepted by the user after a change); `pending` is
 * a new key seen since (in a bundle or an incoming first message) that the user has not
 * accepted yet; `verified` is true once the user compared safety numbers for `accepted`.
 */
export interface IdentityRecord {
  accepted: string
  pending?: string
  verified: boolean
  firstSeen: number
  changedAt?: number
}

/** Key names in the Store's crypto area (one namespace per kind of record). */
export const CryptoKeys = {
  selfIdentity: 'self:identity',
  selfRegistrationId: 'self:registration-id',
  selfCounters: 'self:counters',
  selfCurrent: 'self:current',
  identity: (peer: string) => `identity:${peer}`,
  identityPrefix: 'identity:',
  session: (addr: ProtocolAddress) => `session:${addr.name()}.${addr.deviceId()}`,
  preKey: (id: number) => `prekey:${pad(id)}`,
  preKeyPrefix: 'prekey:',
  signedPreKey: (id: number) => `signed:${pad(id)}`,
  signedPreKeyPrefix: 'signed:',
  kyberPreKey: (id: number) => `kyber:${pad(id)}`,
  kyberPreKeyPrefix: 'kyber:',
  kyberUsed: (id: number, signedId: number, baseKey: PublicKey) => `kyber-used:${pad(id)}:${pad(signedId)}:${hex(baseKey.serialize())}`,
  kyberUsedPrefix: (id: number) => `kyber-used:${pad(id)}:`,
  senderKey: (addr: ProtocolAddress, distributionId: Uuid) => `senderkey:${addr.name()}.${addr.deviceId()}:${distributionId}`
}

/** Entries kept in the read cache (sessions, identities and keys are small; this bounds memory). */
const CACHE_LIMIT = 4096

/** Put `key` in `map` as its most recent entry (Map keeps insertion order), dropping the oldest past CACHE_LIMIT. */
function rememberRecent<V> (map: Map<string, V>, key: string, value: V): void {
  map.delete(key)
  map.set(key, value)
  if (map.size > CACHE_LIMIT) {
    const oldest = map.keys().next()
    if (oldest.done !== true) map.delete(oldest.value)
  }
}

/**
 * The Signal protocol state of this device, over the Store's crypto area, with a write set:
 * libsignal's store callbacks read through it and write into it, and nothing reaches disk
 * until `commit` hands the changes to a store write, usually the very write that saves the
 * messages they belong to. A decrypted message and the ratchet step that decrypted it land
 * together or not at all, so a crash can neither lose a message (ratchet moved, message not
 * stored) nor replay one.
 *
 * Not safe for concurrent use: SignalCipher runs every operation under one lock.
 *
 * @example
 * const state = new SignalState(store)
 * await signalEncrypt(plain, addr, self, state.sessions, state.identities)
 * await state.commit(async (changes) => { await store.putCrypto(changes) })
 */
export class SignalState {
  private readonly cache = new Map<string, Uint8Array | null>()
  private pending = new Map<string, Uint8Array | null>()
  /** Identity records parsed from the bytes they came from (see getIdentityRecord). */
  private readonly parsedIdentities = new Map<string, { bytes: Uint8Array, record: Readonly<IdentityRecord> }>()
  /** Called by the identity store for keys it has not seen for a peer (binding check). */
  checkNewIdentity: (peer: string, key: PublicKey) => Promise<boolean> = async () => false
  /** Called when a peer's identity record changes: first key recorded, or a new key pending. */
  onIdentityChange: (peer: string) => void = () => {}
  /**
   * The named error a store callback threw last. libsignal hands callback errors back as a
   * generic error that keeps only their text; SignalCipher uses this to report the name.
   */
  callbackError: ParleyError | undefined

  readonly sessions: SessionStore
  readonly identities: IdentityKeyStore
  readonly preKeys: PreKeyStore
  readonly signedPreKeys: SignedPreKeyStore
  readonly kyberPreKeys: KyberPreKeyStore
  readonly senderKeys: SenderKeyStore

  private identityPair: IdentityKeyPair | undefined
  private registrationId = 0

  constructor (private readonly store: Store) {
    this.sessions = new LevelSessionStore(this)
    this.identities = new LevelIdentityStore(this)
    this.preKeys = new LevelPreKeyStore(this)
    this.signedPreKeys = new LevelSignedPreKeyStore(this)
    this.kyberPreKeys = new LevelKyberPreKeyStore(this)
    this.senderKeys = new LevelSenderKeyStore(this)
  }

  /** This device's identity (made by SignalCipher on first start). */
  get identity (): IdentityKeyPair {
    if (this.identityPair === undefined) throw new CorruptRecordError('signal identity not loaded')
    return this.identityPair
  }

  get localRegistrationId (): number {
    return this.registrationId
  }

  setLocal (identity: IdentityKeyPair, registrationId: number): void {
    this.identityPair = identity
    this.registrationId = registrationId
  }

  async get (key: string): Promise<Uint8Array | undefined> {
    if (this.pending.has(key)) return this.pending.get(key) ?? undefined
    if (this.cache.has(key)) {
      const v = this.cache.get(key) ?? null
      // Refresh recency (Map keeps insertion order).
      this.cache.delete(key)
      this.cache.set(key, v)
      return v ?? undefined
    }
    const v = await this.store.getCrypto(key)
    this.remember(key, v ?? null)
    return v
  }

  /** A key that must exist (a prekey libsignal asks for), as libsignal wants it; MissingPreKeyError if not. */
  async require (key: string, missing: string): Promise<Uint8Array<ArrayBuffer>> {
    const bytes = await this.get(key)
    if (bytes === undefined) throw this.fail(new MissingPreKeyError(missing))
    return owned(bytes)
  }

  async list (prefix: string): Promise<Array<{ key: string, value: Uint8Array }>> {
    const merged = new Map<string, Uint8Array>()
    for (const { key, value } of await this.store.listCrypto(prefix)) merged.set(key, value)
    for (const [key, value] of this.pending) {
      if (!key.startsWith(prefix)) continue
      if (value === null) merged.delete(key)
      else merged.set(key, value)
    }
    return [...merged.entries()].sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0).map(([key, value]) => ({ key, value }))
  }

  set (key: string, value: Uint8Array): void {
    this.pending.set(key, value)
  }

  delete (key: string): void {
    this.pending.set(key, null)
  }

  get dirty (): boolean {
    return this.pending.size > 0
  }

  /**
   * Hand the write set to `write` (which must persist it, with whatever else belongs in the
   * same batch). On success the changes become the cached state; on failure they are
   * dropped and the cache forgets those keys, so the next read comes from disk.
   */
  async commit<T> (write: (changes: CryptoChanges) => Promise<T>): Promise<T> {
    const changes = this.pending
    this.pending = new Map()
    try {
      const result = await write(changes)
      for (const [key, value] of changes) this.remember(key, value)
      return result
    } catch (err) {
      for (const key of changes.keys()) this.cache.delete(key)
      throw err
    }
  }

  /** A copy of the write set, to roll back to if one step of an operation fails. */
  snapshot (): Map<string, Uint8Array | null> {
    return new Map(this.pending)
  }

  restore (snapshot: Map<string, Uint8Array | null>): void {
    this.pending = new Map(snapshot)
  }

  /** Forget the write set (the operation it belonged to failed). */
  discard (): void {
    this.pending = new Map()
  }

  /**
   * A peer's identity record. libsignal asks twice per message (isTrustedIdentity and
   * saveIdentity), so the record parsed from the current bytes is kept and handed out again
   * while those very bytes are the state (frozen: callers make new records, as
   * putIdentityRecord wants).
   */
  async getIdentityRecord (peer: string): Promise<Readonly<IdentityRecord> | undefined> {
    const key = CryptoKeys.identity(peer)
    const bytes = await this.get(key)
    if (bytes === undefined) return undefined
    const known = this.parsedIdentities.get(key)
    if (known?.bytes === bytes) return known.record
    let record: Readonly<IdentityRecord>
    try {
      record = Object.freeze(JSON.parse(new TextDecoder().decode(bytes)) as IdentityRecord)
    } catch {
      throw new CorruptRecordError(`identity record of ${peer} is not valid JSON`)
    }
    rememberRecent(this.parsedIdentities, key, { bytes, record })
    return record
  }

  putIdentityRecord (peer: string, record: IdentityRecord): void {
    this.set(CryptoKeys.identity(peer), new TextEncoder().encode(JSON.stringify(record)))
  }

  /** Record `err` as the callback error (see callbackError) and return it, to be thrown. */
  fail (err: ParleyError): ParleyError {
    this.callbackError = err
    return err
  }

  private remember (key: string, value: Uint8Array | null): void {
    rememberRecent(this.cache, key, value)
  }
}

/**
 * Sessions are 4-6 KiB (the post-quantum ratchet's state) and are read and written for every
 * message, so the record object made from the current bytes is kept: it is handed out again
 * as long as those very bytes are still the state (a rolled-back write set brings back older
 * bytes, and with them a fresh parse). libsignal copies what it is given; it never changes it.
 */
class LevelSessionStore extends SessionStore {
  private readonly parsed = new Map<string, { bytes: Uint8Array, record: SessionRecord }>()

  constructor (private readonly state: SignalState) { super() }

  async saveSession (name: ProtocolAddress, record: SessionRecord): Promise<void> {
    const key = CryptoKeys.session(name)
    const bytes = record.serialize()
    this.state.set(key, bytes)
    rememberRecent(this.parsed, key, { bytes, record })
  }

  async getSession (name: ProtocolAddress): Promise<SessionRecord | null> {
    const key = CryptoKeys.session(name)
    const bytes = await this.state.get(key)
    if (bytes === undefined) return null
    const known = this.parsed.get(key)
    if (known?.bytes === bytes) return known.record
    const record = SessionRecord.deserialize(owned(bytes))
    rememberRecent(this.parsed, key, { bytes, record })
    return record
  }

  async getExistingSessions (addresses: ProtocolAddress[]): Promise<SessionRecord[]> {
    const out: SessionRecord[] = []
    for (const a of addresses) {
      const s = await this.getSession(a)
      if (s === null) throw new CorruptRecordError(`no session for ${a.toString()}`)
      out.push(s)
    }
    return out
  }
}

/**
 * Identity trust policy (docs/architecture.md, "Identity keys"): a peer's first key is
 * trusted on first use once its binding verified; a different key later is recorded as
 * pending and reported. Receiving from a pending key is allowed (the user sees the
 * message and the warning); sending only ever goes to the accepted key.
 */
class LevelIdentityStore extends IdentityKeyStore {
  constructor (private readonly state: SignalState) { super() }

  async getIdentityKey (): Promise<PrivateKey> {
    return this.state.identity.privateKey
  }

  async getLocalRegistrationId (): Promise<number> {
    return this.state.localRegistrationId
  }

  async saveIdentity (name: ProtocolAddress, key: PublicKey): Promise<IdentityChange> {
    const peer = name.name()
    const k = hex(key.serialize())
    const record = await this.state.getIdentityRecord(peer)
    if (record === undefined) {
      this.state.putIdentityRecord(peer, { accepted: k, verified: false, firstSeen: Date.now() })
      this.state.onIdentityChange(peer)
      return IdentityChange.NewOrUnchanged
    }
    if (record.accepted === k) return IdentityChange.NewOrUnchanged
    if (record.pending !== k) {
      this.state.putIdentityRecord(peer, { ...record, pending: k, changedAt: Date.now() })
      this.state.onIdentityChange(peer)
    }
    return IdentityChange.ReplacedExisting
  }

  async isTrustedIdentity (name: ProtocolAddress, key: PublicKey, direction: Direction): Promise<boolean> {
    const peer = name.name()
    const k = hex(key.serialize())
    const record = await this.state.getIdentityRecord(peer)
    if (direction === Direction.Sending) {
      // First contact: the caller verified the bundle's binding before getting here.
      return record === undefined || record.accepted === k
    }
    if (record !== undefined && (record.accepted === k || record.pending === k)) return true
    return await this.state.checkNewIdentity(peer, key)
  }

  async getIdentity (name: ProtocolAddress): Promise<PublicKey | null> {
    const record = await this.state.getIdentityRecord(name.name())
    return record === undefined ? null : PublicKey.deserialize(unhex(record.accepted))
  }
}

class LevelPreKeyStore extends PreKeyStore {
  constructor (private readonly state: SignalState) { super() }

  async savePreKey (id: number, record: PreKeyRecord): Promise<void> {
    this.state.set(CryptoKeys.preKey(id), record.serialize())
  }

  async getPreKey (id: number): Promise<PreKeyRecord> {
    return PreKeyRecord.deserialize(await this.state.require(CryptoKeys.preKey(id), `no one-time prekey ${id}`))
  }

  async removePreKey (id: number): Promise<void> {
    this.state.delete(CryptoKeys.preKey(id))
  }
}

class LevelSignedPreKeyStore extends SignedPreKeyStore {
  constructor (private readonly state: SignalState) { super() }

  async saveSignedPreKey (id: number, record: SignedPreKeyRecord): Promise<void> {
    this.state.set(CryptoKeys.signedPreKey(id), record.serialize())
  }

  async getSignedPreKey (id: number): Promise<SignedPreKeyRecord> {
    return SignedPreKeyRecord.deserialize(await this.state.require(CryptoKeys.signedPreKey(id), `no signed prekey ${id}`))
  }
}

class LevelKyberPreKeyStore extends KyberPreKeyStore {
  constructor (private readonly state: SignalState) { super() }

  async saveKyberPreKey (id: number, record: KyberPreKeyRecord): Promise<void> {
    this.state.set(CryptoKeys.kyberPreKey(id), record.serialize())
  }

  async getKyberPreKey (id: number): Promise<KyberPreKeyRecord> {
    return KyberPreKeyRecord.deserialize(await this.state.require(CryptoKeys.kyberPreKey(id), `no Kyber prekey ${id}`))
  }

  /**
   * Our Kyber prekeys are last-resort keys (reused until rotated), so each use is recorded
   * by (signed prekey, base key): the same first message arriving twice is a replay.
   */
  async markKyberPreKeyUsed (id: number, signedPreKeyId: number, baseKey: PublicKey): Promise<void> {
    const key = CryptoKeys.kyberUsed(id, signedPreKeyId, baseKey)
    if (await this.state.get(key) !== undefined) throw this.state.fail(new ReplayedPreKeyMessageError(`Kyber prekey ${id} already used with this base key`))
    this.state.set(key, new Uint8Array([1]))
  }
}

class LevelSenderKeyStore extends SenderKeyStore {
  constructor (private readonly state: SignalState) { super() }

  async saveSenderKey (sender: ProtocolAddress, distributionId: Uuid, record: SenderKeyRecord): Promise<void> {
    this.state.set(CryptoKeys.senderKey(sender, distributionId), record.serialize())
  }

  async getSenderKey (sender: ProtocolAddress, distributionId: Uuid): Promise<SenderKeyRecord | null> {
    const bytes = await this.state.get(CryptoKeys.senderKey(sender, distributionId))
    return bytes === undefined ? null : SenderKeyRecord.deserialize(owned(bytes))
  }
}


function pad (n: number): string {
  return n.toString(16).padStart(8, '0')
}

export function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export function unhex (s: string): Uint8Array<ArrayBuffer> {
  return owned(Buffer.from(s, 'hex'))
}
