import { createHash } from 'node:crypto'
import {
  CiphertextMessageType, ErrorCode, Fingerprint, IdentityKeyPair, KEMKeyPair, KEMPublicKey, KyberPreKeyRecord, LibSignalErrorBase,
  PreKeyBundle, PreKeyRecord, PreKeySignalMessage, PrivateKey, ProtocolAddress, PublicKey, SenderKeyDistributionMessage, SenderKeyMessage,
  SignalMessage, SignedPreKeyRecord, groupDecrypt, groupEncrypt, processPreKeyBundle, processSenderKeyDistributionMessage, signalDecrypt,
  signalDecryptPreKey, signalEncrypt
} from '@signalapp/libsignal-client'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey as Libp2pPrivateKey } from '@libp2p/interface'
import { owned } from '../bytes.js'
import { InvalidRequestError, ParleyError } from '../errors.js'
import type { GroupId, PeerIdString } from '../ids.js'
import { forComponent } from '../logger.js'
import type { BundleData, BundleHeaderData, OneTimeKeyData } from '../protocols/prekeys/codec.js'
import { verifyHeader } from '../protocols/prekeys/codec.js'
import type { CryptoChanges, Store } from '../store/types.js'
import { sealBytes, unsealBytes, type KeyProtector } from '../identity/key-protector.js'
import { BindingError, signBinding, verifyBinding } from './binding.js'
import { CryptoKeys, hex, SignalState, unhex, type IdentityRecord } from './signal-state.js'

const log = forComponent('crypto')

/** One device per peer id for now; the Signal address is (peer id, 1). */
export const DEVICE_ID = 1
/** Signed prekey and Kyber last-resort key are replaced this often by default. */
export const DEFAULT_ROTATION_MS = 7 * 24 * 3600 * 1000
/** Old signed/Kyber prekeys are kept this long after rotation, for first messages in flight (mailbox TTL). */
export const DEFAULT_PREKEY_GRACE_MS = 31 * 24 * 3600 * 1000
/** Unused one-time prekeys this device keeps at most; beyond it bundles go out without one. */
const MAX_LOCAL_ONE_TIME_KEYS = 10_000
/** Safety numbers: Signal's iteration count and version-2 fingerprint format. */
const FINGERPRINT_ITERATIONS = 5200
const FINGERPRINT_VERSION = 2
/** Plaintexts are padded to a multiple of this (Signal's block), so lengths leak less. */
const PAD_BLOCK = 160

/** There is no Signal session with this peer yet: a bundle must be fetched first. */
export class NoSessionError extends ParleyError {
  static override name = 'NoSessionError'
  override name = 'NoSessionError'
}

/**
 * The peer's identity key changed and the user has not accepted the new one: nothing is
 * sent to it until `acceptIdentity` (or `verify`).
 */
export class IdentityChangedError extends ParleyError {
  static override name = 'IdentityChangedError'
  override name = 'IdentityChangedError'
}

/** A ciphertext that does not decrypt (tampered, truncated, or for a session we do not have). */
export class DecryptionError extends ParleyError {
  static override name = 'DecryptionError'
  override name = 'DecryptionError'
}

/** The same ciphertext again (its message key is spent): a replay or a duplicate copy. */
export class DuplicateCiphertextError extends ParleyError {
  static override name = 'DuplicateCiphertextError'
  override name = 'DuplicateCiphertextError'
}

/** We do not know this peer's identity key yet (no session, no bundle seen). */
export class UnknownIdentityError extends ParleyError {
  static override name = 'UnknownIdentityError'
  override name = 'UnknownIdentityError'
}

/** A safety number given to `verify` does not match the one computed for the contact. */
export class SafetyNumberMismatchError extends ParleyError {
  static override name = 'SafetyNumberMismatchError'
  override name = 'SafetyNumberMismatchError'
}

/**
 * No sender key from this member for this distribution: its SenderKeyDistributionMessage has
 * not been processed (not arrived yet, or for a new epoch we were not given), or it was
 * forgotten (the member was removed). For our own sending: no distribution made yet.
 */
export class NoSenderKeyError extends ParleyError {
  static override name = 'NoSenderKeyError'
  override name = 'NoSenderKeyError'
}

/** Bytes that are not a SenderKeyDistributionMessage libsignal accepts (or one claiming to be our own). */
export class InvalidSenderKeyDistributionError extends ParleyError {
  static override name = 'InvalidSenderKeyDistributionError'
  override name = 'InvalidSenderKeyDistributionError'
}

/** Bytes that do not parse as a SenderKeyMessage (so they name no distribution). */
export class InvalidSenderKeyMessageError extends ParleyError {
  static override name = 'InvalidSenderKeyMessageError'
  override name = 'InvalidSenderKeyMessageError'
}

/**
 * A sender-key message further ahead of the chain we hold than libsignal will step (25,000
 * messages): its signature checked out, but our copy of the chain cannot reach it. Forgetting
 * the sender's key and processing its distribution afresh (which hands out the chain where it
 * stands now) makes its later messages readable again; so does a new epoch.
 */
export class SenderKeyTooFarAheadError extends ParleyError {
  static override name = 'SenderKeyTooFarAheadError'
  override name = 'SenderKeyTooFarAheadError'
}

export type SealedKind = 'prekey' | 'whisper'

/** A ciphertext as it travels: libsignal's serialized message, and its kind. */
export interface Ciphertext {
  kind: SealedKind
  body: Uint8Array<ArrayBuffer>
}

export type DecryptResult = { ok: true, plaintext: Uint8Array } | { ok: false, error: Error }

/** A group message decrypted: the plaintext and the sender-key distribution it came under. */
export interface GroupDecryptResult {
  plaintext: Uint8Array
  distributionId: string
}

export interface SafetyNumber {
  /** 60 digits in 12 groups of 5, the same on both sides. */
  displayable: string
  /** Base64 of libsignal's scannable fingerprint (what a QR code carries). */
  scannable: string
  /** The key the number is for is the pending (changed) one, not yet accepted. */
  changed: boolean
  verified: boolean
}

export interface IdentityStatus {
  state: 'unknown' | 'trusted' | 'verified' | 'changed'
  changedAt?: number
}

export interface SignalCipherOptions {
  rotationMs?: number
  graceMs?: number
  now?: () => number
  /**
   * Seal this device's Signal identity key pair in the store with this (the desktop app:
   * safeStorage), as the libp2p identity key file is; see KeyProtector. A plain one found is
   * sealed on open; a sealed one is refused without it (SealedKeyError).
   */
  protector?: KeyProtector
}

interface Checkpoint { pending: Map<string, Uint8Array | null>, changed: number, oneTimeKeys: number }
/** This device's key bookkeeping in memory, to restore when the write that goes with it fails. */
interface LocalMark { counters: LocalCounters, current: LocalCurrent | undefined, oneTimeKeys: number }
interface LocalCounters { preKey: number, signed: number, kyber: number }
interface LocalCurrent { signed: number, kyber: number, rotatedAt: number }

/**
 * Everything Signal for one device: its keys (identity, registration id, signed prekey,
 * Kyber last-resort prekey, one-time prekeys; rotation), sessions with peers (PQXDH from a
 * verified bundle, then the Double Ratchet), identity trust (TOFU, changes held until the
 * user accepts), safety numbers, and group sender keys (one distribution per group, sender
 * and epoch). Every operation runs under one lock, and every state change is committed with
 * the store write it belongs to.
 *
 * @example
 * const cipher = new SignalCipher(store, libp2pKey, selfPeerId)
 * await cipher.open()
 * if (!await cipher.hasSession(bob)) await cipher.startSession(bob, await prekeys.fetch(relay, bob))
 * const [ct] = await cipher.encrypt(bob, [plaintext])
 * const results = await cipher.decrypt(alice, [ct], async (results, changes) => { await store.saveIncoming(records, clock, changes) })
 * const skdm = await cipher.groupDistribution(group, epoch) // to each member over the 1:1 session
 * const payload = await cipher.groupEncrypt(group, epoch, recordBytes)
 * await cipher.groupDecrypt(alice, payload, async ({ plaintext }, changes) => { await store.putGroupEntries(entries, changes) })
 */
export class SignalCipher {
  readonly state: SignalState
  private lock: Promise<unknown> = Promise.resolve()
  private binding: Uint8Array | undefined
  private counters: LocalCounters = { preKey: 1, signed: 1, kyber: 1 }
  private current: LocalCurrent | undefined
  private localOneTimeKeys = 0
  private readonly selfAddress: ProtocolAddress
  /** The binding that came with the first message being decrypted (checked for new identity keys). */
  private incomingBinding: Uint8Array | undefined
  private readonly options: Required<Omit<SignalCipherOptions, 'protector'>>
  private readonly protector: KeyProtector | undefined
  /** Peers whose identity record changed during the current operation (reported after it commits). */
  private changed: string[] = []
  /** A peer's identity record changed (first key recorded, or a new key pending); see identityStatus. */
  onIdentityChange: (peer: PeerIdString) => void = () => {}

  constructor (private readonly store: Store, private readonly libp2pKey: Libp2pPrivateKey, private readonly self: PeerIdString, options: SignalCipherOptions = {}) {
    this.state = new SignalState(store)
    this.selfAddress = ProtocolAddress.new(self, DEVICE_ID)
    this.options = {
      rotationMs: options.rotationMs ?? DEFAULT_ROTATION_MS,
      graceMs: options.graceMs ?? DEFAULT_PREKEY_GRACE_MS,
      now: options.now ?? Date.now
    }
    this.protector = options.protector
    this.state.onIdentityChange = (peer) => { this.changed.push(peer) }
    this.state.checkNewIdentity = async (peer, key) => {
      const binding = this.incomingBinding
      if (binding === undefined) return false
      try {
        await verifyBinding(peer as PeerIdString, key.serialize(), binding)
        return true
      } catch {
        return false
      }
    }
  }

  /** Load this device's keys, making them on first start; rotate the signed prekey if due. */
  async open (): Promise<void> {
    await this.locked(async () => {
      const s = this.state
      let identity: IdentityKeyPair
      const stored = await s.get(CryptoKeys.selfIdentity)
      let registrationId: number
      if (stored === undefined) {
        identity = IdentityKeyPair.generate()
        registrationId = 1 + Math.floor(Math.random() * 16380)
        s.set(CryptoKeys.selfIdentity, await sealBytes(identity.serialize(), this.protector))
        s.set(CryptoKeys.selfRegistrationId, encodeJson(registrationId))
        log('made a new Signal identity')
      } else {
        const { plain, wasSealed } = await unsealBytes('the Signal identity key', stored, this.protector)
        identity = IdentityKeyPair.deserialize(owned(plain))
        // A plain key met with a protector (the desktop app adopting a data dir): seal it.
        if (!wasSealed && this.protector !== undefined) s.set(CryptoKeys.selfIdentity, await sealBytes(identity.serialize(), this.protector))
        registrationId = decodeJson<number>(await s.get(CryptoKeys.selfRegistrationId)) ?? 1
      }
      s.setLocal(identity, registrationId)
      this.counters = decodeJson<LocalCounters>(await s.get(CryptoKeys.selfCounters)) ?? this.counters
      this.current = decodeJson<LocalCurrent>(await s.get(CryptoKeys.selfCurrent))
      this.localOneTimeKeys = (await s.list(CryptoKeys.preKeyPrefix)).length
      this.binding = await signBinding(this.libp2pKey, identity.publicKey.serialize())
      await this.rotateIfDueLocked()
      await s.commit(async (changes) => { await this.store.putCrypto(changes) })
    })
  }

  /** This device's Signal identity public key (serialized). */
  get identityKey (): Uint8Array {
    return this.state.identity.publicKey.serialize()
  }

  /** Rotate the signed prekey and Kyber last-resort key if older than the rotation period. True if rotated. */
  async rotateIfDue (): Promise<boolean> {
    return await this.locked(async () => {
      const mark = this.localMark()
      const rotated = await this.rotateIfDueLocked()
      await this.commitLocal(mark)
      return rotated
    })
  }

  /** The part of our bundle every fetcher gets: identity, binding, signed and Kyber prekeys. */
  async header (): Promise<BundleHeaderData> {
    return await this.locked(async () => await this.headerLocked())
  }

  /** Make `count` new one-time prekeys (stored before they are returned, so they can be published). */
  async newOneTimeKeys (count: number): Promise<OneTimeKeyData[]> {
    return await this.locked(async () => {
      const mark = this.localMark()
      const keys = this.makeOneTimeKeysLocked(Math.max(0, Math.min(count, MAX_LOCAL_ONE_TIME_KEYS - this.localOneTimeKeys)))
      await this.commitLocal(mark)
      return keys
    })
  }

  /** Our bundle as we hand it out ourselves: the header and, if `withOneTimeKey`, a fresh one-time prekey. */
  async ownBundle (withOneTimeKey: boolean): Promise<BundleData> {
    return await this.locked(async () => {
      const mark = this.localMark()
      const header = await this.headerLocked()
      const [oneTime] = withOneTimeKey && this.localOneTimeKeys < MAX_LOCAL_ONE_TIME_KEYS ? this.makeOneTimeKeysLocked(1) : []
      await this.commitLocal(mark)
      return { header, ...(oneTime !== undefined ? { oneTime } : {}) }
    })
  }

  async hasSession (peer: PeerIdString): Promise<boolean> {
    return await this.locked(async () => await this.hasSessionLocked(peer))
  }

  /**
   * Start a session from a peer's bundle (PQXDH). The bundle's binding and signatures are
   * checked first (BindingError, InvalidBundleError). A bundle with an identity key other
   * than the accepted one records the change and throws IdentityChangedError.
   */
  async startSession (peer: PeerIdString, bundle: BundleData): Promise<void> {
    await verifyHeader(peer, bundle.header)
    await this.locked(async () => {
      const h = bundle.header
      const key = hex(h.identityKey)
      const record = await this.state.getIdentityRecord(peer)
      if (record !== undefined && record.accepted !== key) {
        if (record.pending !== key) {
          this.state.putIdentityRecord(peer, { ...record, pending: key, changedAt: this.options.now() })
          this.changed.push(peer)
        }
        await this.commitState()
        throw new IdentityChangedError(`${peer} has a new identity key; accept it before sending`)
      }
      const libBundle = PreKeyBundle.new(
        h.registrationId, h.deviceId,
        bundle.oneTime?.id ?? null, bundle.oneTime !== undefined ? PublicKey.deserialize(owned(bundle.oneTime.publicKey)) : null,
        h.signedPreKey.id, PublicKey.deserialize(owned(h.signedPreKey.publicKey)), owned(h.signedPreKey.signature),
        PublicKey.deserialize(owned(h.identityKey)),
        h.kyberPreKey.id, KEMPublicKey.deserialize(owned(h.kyberPreKey.publicKey)), owned(h.kyberPreKey.signature)
      )
      try {
        await processPreKeyBundle(libBundle, address(peer), this.selfAddress, this.state.sessions, this.state.identities, new Date(this.options.now()))
      } catch (err) {
        this.state.discard()
        throw translate(err)
      }
      await this.commitState()
    })
  }

  /**
   * Encrypt plaintexts for a peer, in order. The ratchet state is durable before this
   * resolves, so a ciphertext is never produced twice from one chain position, even across
   * a crash. Throws NoSessionError or IdentityChangedError (nothing is encrypted then).
   */
  async encrypt (peer: PeerIdString, plaintexts: readonly Uint8Array[]): Promise<Ciphertext[]> {
    return await this.locked(async () => {
      const addr = address(peer)
      const now = new Date(this.options.now())
      const out: Ciphertext[] = []
      try {
        for (const p of plaintexts) {
          const msg = await signalEncrypt(pad(p), addr, this.selfAddress, this.state.sessions, this.state.identities, now)
          out.push({ kind: msg.type() === (CiphertextMessageType.PreKey as number) ? 'prekey' : 'whisper', body: msg.serialize() })
        }
      } catch (err) {
        this.state.discard()
        // libsignal reports a missing or stale session as a generic error; the session tells
        // (checked only on failure: a check before every encrypt cost ~50-90 µs per message).
        if (!await this.hasSessionLocked(peer)) throw new NoSessionError(`no Signal session with ${peer}`)
        throw translate(err)
      }
      await this.commitState()
      return out
    })
  }

  /** The binding signature to send along with first (prekey) messages. */
  get ownBinding (): Uint8Array {
    if (this.binding === undefined) throw new ParleyError('cipher not open')
    return this.binding
  }

  /**
   * Decrypt a peer's ciphertexts, in order. Each gets a result; a failure (DecryptionError,
   * DuplicateCiphertextError, BindingError...) leaves the session as it was, so later ones
   * still decrypt. `save` gets the results and the state changes and must persist both in
   * one write (e.g. Store.saveIncoming with `crypto`); only then is the new state in force.
   */
  async decrypt<T> (
    peer: PeerIdString,
    items: ReadonlyArray<{ kind: SealedKind, body: Uint8Array, binding?: Uint8Array }>,
    save: (results: DecryptResult[], changes: CryptoChanges) => Promise<T>
  ): Promise<T> {
    return await this.locked(async () => {
      const addr = address(peer)
      const results: DecryptResult[] = []
      const oneTimeKeysBefore = this.localOneTimeKeys
      for (const item of items) {
        const mark = this.checkpoint()
        this.state.callbackError = undefined
        try {
          let plain: Uint8Array
          if (item.kind === 'prekey') {
            this.incomingBinding = item.binding
            const msg = PreKeySignalMessage.deserialize(owned(item.body))
            const oneTimeId = msg.preKeyId()
            const hadOneTime = oneTimeId !== null && await this.state.get(CryptoKeys.preKey(oneTimeId)) !== undefined
            plain = await signalDecryptPreKey(msg, addr, this.selfAddress, this.state.sessions, this.state.identities,
              this.state.preKeys, this.state.signedPreKeys, this.state.kyberPreKeys)
            // Every prekey message of a session names the one-time key; only the first one spends it.
            if (oneTimeId !== null && hadOneTime && await this.state.get(CryptoKeys.preKey(oneTimeId)) === undefined) this.localOneTimeKeys--
          } else {
            plain = await signalDecrypt(SignalMessage.deserialize(owned(item.body)), addr, this.selfAddress, this.state.sessions, this.state.identities)
          }
          results.push({ ok: true, plaintext: unpad(plain) })
        } catch (err) {
          this.rollback(mark)
          results.push({ ok: false, error: translate(namedCause(err, this.state.callbackError), item.kind === 'prekey') })
        } finally {
          this.incomingBinding = undefined
          this.state.callbackError = undefined
        }
      }
      const changed = this.changed
      this.changed = []
      let saved: T
      try {
        saved = await this.state.commit(async (changes) => await save(results, changes))
      } catch (err) {
        // Nothing was written: the one-time keys these messages spent are still there.
        this.localOneTimeKeys = oneTimeKeysBefore
        throw err
      }
      for (const p of changed) this.onIdentityChange(p as PeerIdString)
      return saved
    })
  }

  /** Forget the session with a peer (it lost its state): the next send starts a new one from a bundle. */
  async resetSession (peer: PeerIdString): Promise<void> {
    await this.locked(async () => {
      this.state.delete(CryptoKeys.session(address(peer)))
      await this.commitState()
    })
  }

  /**
   * Our SenderKeyDistributionMessage for `group` at `epoch` (serialized), to send to each
   * member over the 1:1 session. The sender key is made on first use and is durable before
   * this resolves; later calls hand out the same chain at its current position (a member
   * given it reads what we send from then on, not before).
   */
  async groupDistribution (group: GroupId, epoch: number): Promise<Uint8Array> {
    const distributionId = distributionIdOf(group, this.self, epoch)
    return await this.locked(async () => await this.groupStep(async () =>
      (await SenderKeyDistributionMessage.create(this.selfAddress, distributionId, this.state.senderKeys)).serialize()))
  }

  /**
   * Take a member's SenderKeyDistributionMessage. `from` must be the peer it authentically
   * came from (the 1:1 session it was decrypted from): its group messages are then read as
   * `from`'s. The caller checks that the returned id is the one it expects
   * (distributionIdOf(group, from, epoch)). InvalidSenderKeyDistributionError on garbage;
   * the same distribution again changes nothing (its chain keeps its position, so a replayed
   * message stays a duplicate).
   */
  async processGroupDistribution (from: PeerIdString, skdm: Uint8Array): Promise<{ distributionId: string }> {
    if (from === this.self) throw new InvalidSenderKeyDistributionError('a sender-key distribution claiming to be our own')
    return await this.locked(async () => {
      let distributionId: string
      try {
        const message = SenderKeyDistributionMessage.deserialize(owned(skdm))
        distributionId = message.distributionId()
        await processSenderKeyDistributionMessage(address(from), message, this.state.senderKeys)
      } catch (err) {
        this.state.discard()
        if (err instanceof ParleyError) throw err // the store's, e.g. a corrupt record
        throw new InvalidSenderKeyDistributionError(`not a sender-key distribution: ${(err as Error).message}`)
      }
      await this.commitState()
      return { distributionId }
    })
  }

  /**
   * Encrypt (padded, like 1:1 messages) for everyone holding our distribution for `group`
   * at `epoch`; returns the SenderKeyMessage bytes. The chain step is durable before this
   * resolves, so no two ciphertexts ever come from one chain position, even across a crash.
   * NoSenderKeyError if groupDistribution was never called for this group and epoch.
   */
  async groupEncrypt (group: GroupId, epoch: number, plaintext: Uint8Array): Promise<Uint8Array> {
    const distributionId = distributionIdOf(group, this.self, epoch)
    return await this.locked(async () => {
      if (await this.state.get(CryptoKeys.senderKey(this.selfAddress, distributionId)) === undefined) {
        throw new NoSenderKeyError(`no sender key of ours for group ${group} at epoch ${epoch}: make its distribution first`)
      }
      return await this.groupStep(async () => (await groupEncrypt(this.selfAddress, distributionId, this.state.senderKeys, pad(plaintext))).serialize())
    })
  }

  /**
   * Decrypt a member's SenderKeyMessage. `from` is the authenticated sender (the gossip
   * message's signed author); the message only decrypts under a distribution processed from
   * that very peer. Like `decrypt`, `save` gets the result and the state changes and must
   * persist both in one write (Store.putGroupEntries with `crypto`), and the changes even
   * when it keeps nothing else (else the message would read again). On any failure nothing
   * changes and `save` is not called: NoSenderKeyError (no distribution from `from` with the
   * message's id or chain), DecryptionError (garbage, tampered, bad padding),
   * DuplicateCiphertextError (already decrypted: a replay; also a message sent before the
   * distribution we were given, which libsignal cannot tell apart), SenderKeyTooFarAheadError.
   */
  async groupDecrypt<T> (from: PeerIdString, ciphertext: Uint8Array, save: (result: GroupDecryptResult, changes: CryptoChanges) => Promise<T>): Promise<T> {
    return await this.locked(async () => {
      let result: GroupDecryptResult
      try {
        const body = owned(ciphertext)
        const distributionId = SenderKeyMessage.deserialize(body).distributionId()
        if (await this.state.get(CryptoKeys.senderKey(address(from), distributionId)) === undefined) {
          throw new NoSenderKeyError(`no sender key from ${from} for distribution ${distributionId}`)
        }
        result = { plaintext: unpad(await groupDecrypt(address(from), this.state.senderKeys, body)), distributionId }
      } catch (err) {
        this.state.discard()
        throw translateGroup(err)
      }
      return await this.state.commit(async (changes) => await save(result, changes))
    })
  }

  /**
   * Drop `from`'s sender key for a distribution (a removed member's): its later messages
   * under it fail with NoSenderKeyError. Forgetting one we do not hold is not an error.
   */
  async forgetGroupSender (from: PeerIdString, distributionId: string): Promise<void> {
    await this.locked(async () => {
      // libsignal names distributions in lower case; so do the stored keys.
      this.state.delete(CryptoKeys.senderKey(address(from), distributionId.toLowerCase()))
      await this.commitState()
    })
  }

  /** The distribution id a SenderKeyMessage names, read without decrypting it; InvalidSenderKeyMessageError on garbage. */
  distributionIdOfMessage (ciphertext: Uint8Array): string {
    try {
      return SenderKeyMessage.deserialize(owned(ciphertext)).distributionId()
    } catch (err) {
      throw new InvalidSenderKeyMessageError(`not a sender-key message: ${(err as Error).message}`)
    }
  }

  async identityStatus (peer: PeerIdString): Promise<IdentityStatus> {
    const record = await this.locked(async () => await this.state.getIdentityRecord(peer))
    return statusOf(record)
  }

  /** Trust state of every peer whose identity key we know. */
  async identityStatuses (): Promise<Map<PeerIdString, IdentityStatus>> {
    return await this.locked(async () => {
      const out = new Map<PeerIdString, IdentityStatus>()
      for (const { key } of await this.state.list(CryptoKeys.identityPrefix)) {
        const peer = key.slice(CryptoKeys.identityPrefix.length) as PeerIdString
        out.set(peer, statusOf(await this.state.getIdentityRecord(peer)))
      }
      return out
    })
  }

  /** Accept a peer's changed identity key: sending resumes (to the new key), unverified. */
  async acceptIdentity (peer: PeerIdString): Promise<IdentityStatus> {
    return await this.locked(async () => {
      const record = await this.state.getIdentityRecord(peer)
      if (record === undefined) throw new UnknownIdentityError(`no identity key known for ${peer}`)
      if (record.pending === undefined) return statusOf(record)
      const accepted: IdentityRecord = { accepted: record.pending, verified: false, firstSeen: record.firstSeen }
      this.state.putIdentityRecord(peer, accepted)
      // A session built on the old key (if it is still current) must not be used again.
      const session = await this.state.sessions.getSession(address(peer))
      if (session !== null && !await this.sessionUsable(peer)) this.state.delete(CryptoKeys.session(address(peer)))
      await this.commitState()
      return statusOf(accepted)
    })
  }

  /**
   * Mark a peer's identity as verified (the user compared safety numbers). If `expected` is
   * given (typed digits or a scanned code, base64), it must match. A pending key is accepted.
   */
  async verify (peer: PeerIdString, expected?: string): Promise<IdentityStatus> {
    const number = await this.safetyNumber(peer)
    if (expected !== undefined) {
      const digits = expected.replace(/\s+/g, '')
      if (digits !== number.displayable.replace(/\s+/g, '') && digits !== await this.theirScannable(peer)) {
        throw new SafetyNumberMismatchError('that safety number does not match this contact\'s key')
      }
    }
    if (number.changed) await this.acceptIdentity(peer)
    return await this.locked(async () => {
      const record = await this.state.getIdentityRecord(peer)
      if (record === undefined) throw new UnknownIdentityError(`no identity key known for ${peer}`)
      const verified = { ...record, verified: true }
      this.state.putIdentityRecord(peer, verified)
      await this.commitState()
      return statusOf(verified)
    })
  }

  /** The safety number for a peer's current key (the pending one if it changed). */
  async safetyNumber (peer: PeerIdString): Promise<SafetyNumber> {
    const record = await this.locked(async () => await this.state.getIdentityRecord(peer))
    if (record === undefined) throw new UnknownIdentityError(`no identity key known for ${peer} yet: exchange a message first`)
    const remote = PublicKey.deserialize(unhex(record.pending ?? record.accepted))
    const fp = Fingerprint.new(FINGERPRINT_ITERATIONS, FINGERPRINT_VERSION,
      peerIdBytes(this.self), this.state.identity.publicKey, peerIdBytes(peer), remote)
    const digits = fp.displayableFingerprint().toString()
    return {
      displayable: digits.match(/.{1,5}/g)?.join(' ') ?? digits,
      scannable: Buffer.from(fp.scannableFingerprint().toBuffer()).toString('base64'),
      changed: record.pending !== undefined,
      verified: record.verified && record.pending === undefined
    }
  }

  /**
   * The code `peer`'s own safety number screen shows (base64), which is what scanning its QR
   * code gives: the same fingerprint seen from its side, local and remote swapped.
   */
  private async theirScannable (peer: PeerIdString): Promise<string> {
    const record = await this.locked(async () => await this.state.getIdentityRecord(peer))
    if (record === undefined) throw new UnknownIdentityError(`no identity key known for ${peer}`)
    const remote = PublicKey.deserialize(unhex(record.pending ?? record.accepted))
    const fp = Fingerprint.new(FINGERPRINT_ITERATIONS, FINGERPRINT_VERSION,
      peerIdBytes(peer), remote, peerIdBytes(this.self), this.state.identity.publicKey)
    return Buffer.from(fp.scannableFingerprint().toBuffer()).toString('base64')
  }

  /** Unused one-time prekeys this device holds. */
  get oneTimeKeyCount (): number {
    return this.localOneTimeKeys
  }

  private async sessionUsable (peer: PeerIdString): Promise<boolean> {
    // libsignal does not expose a session's remote identity; its trust check at encrypt time
    // compares it with the accepted key, so a probe (rolled back) tells whether they match.
    const mark = this.checkpoint()
    try {
      await signalEncrypt(new Uint8Array(1), address(peer), this.selfAddress, this.state.sessions, this.state.identities)
      return true
    } catch {
      return false
    } finally {
      this.rollback(mark)
    }
  }

  private async hasSessionLocked (peer: PeerIdString): Promise<boolean> {
    const s = await this.state.sessions.getSession(address(peer))
    return s !== null && s.hasCurrentState(new Date(this.options.now()))
  }

  private async headerLocked (): Promise<BundleHeaderData> {
    const current = this.current
    if (current === undefined || this.binding === undefined) throw new ParleyError('cipher not open')
    const signedBytes = await this.state.get(CryptoKeys.signedPreKey(current.signed))
    const kyberBytes = await this.state.get(CryptoKeys.kyberPreKey(current.kyber))
    if (signedBytes === undefined || kyberBytes === undefined) throw new ParleyError('current prekeys missing')
    const signed = SignedPreKeyRecord.deserialize(owned(signedBytes))
    const kyber = KyberPreKeyRecord.deserialize(owned(kyberBytes))
    return {
      identityKey: this.state.identity.publicKey.serialize(),
      binding: this.binding,
      registrationId: this.state.localRegistrationId,
      deviceId: DEVICE_ID,
      signedPreKey: { id: signed.id(), publicKey: signed.publicKey().serialize(), signature: signed.signature() },
      kyberPreKey: { id: kyber.id(), publicKey: kyber.publicKey().serialize(), signature: kyber.signature() }
    }
  }

  private makeOneTimeKeysLocked (count: number): OneTimeKeyData[] {
    const out: OneTimeKeyData[] = []
    for (let i = 0; i < count; i++) {
      const id = this.nextId('preKey')
      const priv = PrivateKey.generate()
      const record = PreKeyRecord.new(id, priv.getPublicKey(), priv)
      this.state.set(CryptoKeys.preKey(id), record.serialize())
      out.push({ id, publicKey: priv.getPublicKey().serialize() })
    }
    this.localOneTimeKeys += out.length
    this.state.set(CryptoKeys.selfCounters, encodeJson(this.counters))
    return out
  }

  private async rotateIfDueLocked (): Promise<boolean> {
    const now = this.options.now()
    if (this.current !== undefined && now - this.current.rotatedAt < this.options.rotationMs) return false
    const identity = this.state.identity
    const signedId = this.nextId('signed')
    const signedPriv = PrivateKey.generate()
    const signedPub = signedPriv.getPublicKey()
    const signed = SignedPreKeyRecord.new(signedId, now, signedPub, signedPriv, identity.privateKey.sign(signedPub.serialize()))
    this.state.set(CryptoKeys.signedPreKey(signedId), signed.serialize())
    const kyberId = this.nextId('kyber')
    const kem = KEMKeyPair.generate()
    const kyber = KyberPreKeyRecord.new(kyberId, now, kem, identity.privateKey.sign(kem.getPublicKey().serialize()))
    this.state.set(CryptoKeys.kyberPreKey(kyberId), kyber.serialize())
    this.current = { signed: signedId, kyber: kyberId, rotatedAt: now }
    this.state.set(CryptoKeys.selfCurrent, encodeJson(this.current))
    this.state.set(CryptoKeys.selfCounters, encodeJson(this.counters))
    // Old keys stay for first messages still in flight, graceMs after they were replaced,
    // then go (forward secrecy).
    const cutoff = now - this.options.graceMs
    const signedKeys = (await this.state.list(CryptoKeys.signedPreKeyPrefix)).map(({ key, value }) => {
      const r = SignedPreKeyRecord.deserialize(owned(value))
      return { key, id: r.id(), made: r.timestamp() }
    })
    for (const old of replacedBefore(signedKeys, signedId, cutoff)) this.state.delete(old.key)
    const kyberKeys = (await this.state.list(CryptoKeys.kyberPreKeyPrefix)).map(({ key, value }) => {
      const r = KyberPreKeyRecord.deserialize(owned(value))
      return { key, id: r.id(), made: r.timestamp() }
    })
    for (const old of replacedBefore(kyberKeys, kyberId, cutoff)) {
      this.state.delete(old.key)
      for (const used of await this.state.list(CryptoKeys.kyberUsedPrefix(old.id))) this.state.delete(used.key)
    }
    log('rotated signed prekey to %d and Kyber prekey to %d', signedId, kyberId)
    return true
  }

  private nextId (kind: keyof LocalCounters): number {
    const id = this.counters[kind]
    // libsignal ids are 24-bit for prekeys in practice; wrap well inside u32.
    this.counters[kind] = id >= 0xfffffe ? 1 : id + 1
    return id
  }

  private checkpoint (): Checkpoint {
    return { pending: this.state.snapshot(), changed: this.changed.length, oneTimeKeys: this.localOneTimeKeys }
  }

  private rollback (mark: Checkpoint): void {
    this.state.restore(mark.pending)
    this.changed.length = mark.changed
    this.localOneTimeKeys = mark.oneTimeKeys
  }

  private localMark (): LocalMark {
    return { counters: { ...this.counters }, current: this.current, oneTimeKeys: this.localOneTimeKeys }
  }

  /**
   * Commit new local keys (rotation, one-time keys). If the write fails they do not exist,
   * so the bookkeeping goes back to `mark` (else the header would name keys never stored).
   */
  private async commitLocal (mark: LocalMark): Promise<void> {
    try {
      await this.state.commit(async (changes) => { await this.store.putCrypto(changes) })
    } catch (err) {
      this.counters = mark.counters
      this.current = mark.current
      this.localOneTimeKeys = mark.oneTimeKeys
      throw err
    }
  }

  /** One sender-key step on the write set: committed if it succeeds, dropped (named error) if not. */
  private async groupStep<T> (step: () => Promise<T>): Promise<T> {
    let out: T
    try {
      out = await step()
    } catch (err) {
      this.state.discard()
      throw translateGroup(err)
    }
    await this.commitState()
    return out
  }

  private async commitState (): Promise<void> {
    const changed = this.changed
    this.changed = []
    await this.state.commit(async (changes) => { await this.store.putCrypto(changes) })
    for (const p of changed) this.onIdentityChange(p as PeerIdString)
  }

  private async locked<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn)
    this.lock = run.catch(() => {})
    return await run
  }
}

/** Domain separation for distribution ids (see distributionIdOf). */
const DISTRIBUTION_DOMAIN = 'parley/group-sender-key/1'

/**
 * The sender-key distribution id of `sender` in `group` at `epoch`, so every member
 * computes which distribution is current without being told: the first 16 bytes of
 * sha256(utf8('parley/group-sender-key/1') 0x00 utf8(group) 0x00 utf8(sender) 0x00
 * epoch as u64 big-endian), as a version-8 (custom) UUID in lower case.
 *
 * @example
 * const id = distributionIdOf(group, alice, 0) // '3c1f...-....-8...-....-............'
 * if (cipher.distributionIdOfMessage(payload) !== id) return 'reject'
 */
export function distributionIdOf (group: GroupId, sender: PeerIdString, epoch: number): string {
  if (!Number.isSafeInteger(epoch) || epoch < 0) throw new InvalidRequestError(`epoch must be a non-negative integer, not ${epoch}`)
  const sep = Buffer.of(0)
  const counter = Buffer.alloc(8)
  counter.writeBigUInt64BE(BigInt(epoch))
  const digest = createHash('sha256')
    .update(DISTRIBUTION_DOMAIN).update(sep).update(group).update(sep).update(sender).update(sep).update(counter)
    .digest()
  digest[6] = ((digest[6] as number) & 0x0f) | 0x80 // version 8
  digest[8] = ((digest[8] as number) & 0x3f) | 0x80 // RFC 9562 variant
  const h = digest.subarray(0, 16).toString('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

function address (peer: string): ProtocolAddress {
  return ProtocolAddress.new(peer, DEVICE_ID)
}

function statusOf (record: IdentityRecord | undefined): IdentityStatus {
  if (record === undefined) return { state: 'unknown' }
  if (record.pending !== undefined) return { state: 'changed', ...(record.changedAt !== undefined ? { changedAt: record.changedAt } : {}) }
  return { state: record.verified ? 'verified' : 'trusted' }
}

function peerIdBytes (peer: string): Uint8Array<ArrayBuffer> {
  return owned(peerIdFromString(peer).toMultihash().bytes)
}

/**
 * A key a store callback reports missing (or a replayed first message) reaches us from
 * libsignal as a generic error with the callback's message in its text: report the named one.
 */
function namedCause (err: unknown, cause: ParleyError | undefined): unknown {
  if (cause !== undefined && err instanceof LibSignalErrorBase && err.message.includes(cause.message)) return cause
  return err
}

/**
 * Signed or Kyber prekeys other than `current` that were replaced before `cutoff`. A key is
 * replaced when the next one is made, so its grace period runs from its successor's
 * timestamp, not its own (rotations can come late, e.g. after the node was offline).
 */
function replacedBefore<K extends { id: number, made: number }> (keys: readonly K[], current: number, cutoff: number): K[] {
  const sorted = [...keys].sort((a, b) => a.made - b.made || a.id - b.id)
  return sorted.filter((k, i) => k.id !== current && (sorted[i + 1]?.made ?? Infinity) < cutoff)
}

/** libsignal errors as Parley's named errors (callers branch on the name). */
function translate (err: unknown, prekey = false): Error {
  if (err instanceof ParleyError) return err
  if (err instanceof LibSignalErrorBase) {
    if (err.code === ErrorCode.DuplicatedMessage) return new DuplicateCiphertextError('message already decrypted (replay or duplicate)')
    if (err.code === ErrorCode.UntrustedIdentity) {
      return prekey
        ? new BindingError('first message from a Signal identity not signed by the sender\'s peer id')
        : new IdentityChangedError('the peer\'s identity key changed; accept it before sending')
    }
    if (err.code === ErrorCode.InvalidSession) return new NoSessionError(err.message)
    return new DecryptionError(err.message)
  }
  return new DecryptionError((err as Error).message ?? String(err))
}

/**
 * libsignal's group errors as Parley's named errors. Its "no sender key state" (no record,
 * or none for the message's chain) and "too far into the future" are generic errors that
 * only their text tells apart; the tests pin that text down for the version we use.
 */
function translateGroup (err: unknown): Error {
  if (err instanceof LibSignalErrorBase) {
    if (err.code === ErrorCode.InvalidSenderKeySession || err.message.includes('missing sender key state')) return new NoSenderKeyError(err.message)
    if (err.message.includes('too far into the future')) return new SenderKeyTooFarAheadError(err.message)
  }
  return translate(err)
}

export function pad (plain: Uint8Array): Uint8Array<ArrayBuffer> {
  const len = Math.ceil((plain.byteLength + 1) / PAD_BLOCK) * PAD_BLOCK
  const out = new Uint8Array(len)
  out.set(plain)
  out[plain.byteLength] = 0x80
  return out
}

export function unpad (padded: Uint8Array): Uint8Array {
  let i = padded.byteLength - 1
  while (i >= 0 && padded[i] === 0) i--
  if (i < 0 || padded[i] !== 0x80) throw new DecryptionError('plaintext padding is invalid')
  return padded.subarray(0, i)
}

function encodeJson (value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value))
}

function decodeJson<T> (bytes: Uint8Array | undefined): T | undefined {
  if (bytes === undefined) return undefined
  return JSON.parse(new TextDecoder().decode(bytes)) as T
}
