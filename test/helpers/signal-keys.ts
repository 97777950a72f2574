/**
 * Real Signal prekey bundles for tests, made with libsignal and bound to a libp2p key, plus
 * minimal in-memory libsignal stores to prove a fetched bundle really starts a session.
 *
 * @example
 * const keys = await makeSignalBundle(libp2pPrivateKey, { oneTimeKeys: 10 })
 * await new PrekeyClient(node).publish(relayId, keys.header, keys.oneTimeKeys)
 */
import type { PrivateKey as Libp2pPrivateKey } from '@libp2p/interface'
import {
  IdentityChange, IdentityKeyPair, IdentityKeyStore, KEMKeyPair, KyberPreKeyRecord, KyberPreKeyStore,
  PreKeyRecord, PreKeyStore, PrivateKey, SessionStore, SignedPreKeyRecord, SignedPreKeyStore,
  type Direction, type ProtocolAddress, type PublicKey, type SessionRecord
} from '@signalapp/libsignal-client'
import { signBinding } from '../../core/crypto/binding.js'
import type { BundleHeaderData, OneTimeKeyData } from '../../core/protocols/prekeys/codec.js'

export interface SignalBundleKeys {
  /** What the owner publishes (bound to its libp2p key). */
  header: BundleHeaderData
  oneTimeKeys: OneTimeKeyData[]
  /** The private parts, for the owner's side of a session. */
  identity: IdentityKeyPair
  signedPreKey: SignedPreKeyRecord
  kyberPreKey: KyberPreKeyRecord
  oneTimePrivate: Map<number, PreKeyRecord>
}

export interface MakeBundleOptions {
  /** How many one-time keys (default 0), numbered from `firstOneTimeId` (default 1). */
  oneTimeKeys?: number
  firstOneTimeId?: number
  /** Reuse an identity (a new signed/Kyber prekey generation); a fresh one otherwise. */
  identity?: IdentityKeyPair
  registrationId?: number
  signedPreKeyId?: number
  kyberPreKeyId?: number
}

/** `n` one-time prekeys with ids from `firstId`. */
export function makeOneTimeKeys (n: number, firstId = 1): { keys: OneTimeKeyData[], records: Map<number, PreKeyRecord> } {
  const keys: OneTimeKeyData[] = []
  const records = new Map<number, PreKeyRecord>()
  for (let id = firstId; id < firstId + n; id++) {
    const priv = PrivateKey.generate()
    keys.push({ id, publicKey: priv.getPublicKey().serialize() })
    records.set(id, PreKeyRecord.new(id, priv.getPublicKey(), priv))
  }
  return { keys, records }
}

/**
 * A bundle as a Parley node would publish it: a Signal identity key bound to `libp2pKey`
 * (core/crypto/binding.ts), a signed EC prekey and a Kyber prekey, each signed by the
 * identity key over its serialized public key, and `oneTimeKeys` one-time prekeys.
 */
export async function makeSignalBundle (libp2pKey: Libp2pPrivateKey, options: MakeBundleOptions = {}): Promise<SignalBundleKeys> {
  const identity = options.identity ?? IdentityKeyPair.generate()
  const identityKey = identity.publicKey.serialize()
  const now = Date.now()

  const signedId = options.signedPreKeyId ?? 1
  const signedPriv = PrivateKey.generate()
  const signedPub = signedPriv.getPublicKey().serialize()
  const signedSig = identity.privateKey.sign(signedPub)

  const kyberId = options.kyberPreKeyId ?? 1
  const kyber = KEMKeyPair.generate()
  const kyberPub = kyber.getPublicKey().serialize()
  const kyberSig = identity.privateKey.sign(kyberPub)

  const { keys, records } = makeOneTimeKeys(options.oneTimeKeys ?? 0, options.firstOneTimeId ?? 1)
  return {
    header: {
      identityKey,
      binding: new Uint8Array(await signBinding(libp2pKey, identityKey)), // a plain array, as decoded ones are
      registrationId: options.registrationId ?? 1 + Math.floor(Math.random() * 16380),
      deviceId: 1,
      signedPreKey: { id: signedId, publicKey: signedPub, signature: signedSig },
      kyberPreKey: { id: kyberId, publicKey: kyberPub, signature: kyberSig }
    },
    oneTimeKeys: keys,
    identity,
    signedPreKey: SignedPreKeyRecord.new(signedId, now, signedPriv.getPublicKey(), signedPriv, signedSig),
    kyberPreKey: KyberPreKeyRecord.new(kyberId, now, kyber, kyberSig),
    oneTimePrivate: records
  }
}

/** libsignal's stores, in memory: enough for one side of a 1:1 session in a test. */
export class MemorySignalStores {
  readonly sessions = new (class extends SessionStore {
    private readonly map = new Map<string, SessionRecord>()
    async saveSession (name: ProtocolAddress, record: SessionRecord): Promise<void> { this.map.set(name.toString(), record) }
    async getSession (name: ProtocolAddress): Promise<SessionRecord | null> { return this.map.get(name.toString()) ?? null }
    async getExistingSessions (addresses: ProtocolAddress[]): Promise<SessionRecord[]> {
      return addresses.map((a) => this.map.get(a.toString())).filter((r): r is SessionRecord => r !== undefined)
    }
  })()

  readonly identities: IdentityKeyStore
  readonly preKeys: PreKeyStore
  readonly signedPreKeys: SignedPreKeyStore
  readonly kyberPreKeys: KyberPreKeyStore

  constructor (identity: IdentityKeyPair, registrationId: number, keys?: SignalBundleKeys) {
    const known = new Map<string, PublicKey>()
    this.identities = new (class extends IdentityKeyStore {
      async getIdentityKey (): Promise<PrivateKey> { return identity.privateKey }
      async getLocalRegistrationId (): Promise<number> { return registrationId }
      async saveIdentity (name: ProtocolAddress, key: PublicKey): Promise<IdentityChange> {
        const old = known.get(name.toString())
        known.set(name.toString(), key)
        return old !== undefined && !old.equals(key) ? IdentityChange.ReplacedExisting : IdentityChange.NewOrUnchanged
      }

      async isTrustedIdentity (name: ProtocolAddress, key: PublicKey, _direction: Direction): Promise<boolean> {
        const old = known.get(name.toString())
        return old === undefined || old.equals(key)
      }

      async getIdentity (name: ProtocolAddress): Promise<PublicKey | null> { return known.get(name.toString()) ?? null }
    })()
    const oneTime = keys?.oneTimePrivate ?? new Map<number, PreKeyRecord>()
    this.preKeys = new (class extends PreKeyStore {
      async savePreKey (id: number, record: PreKeyRecord): Promise<void> { oneTime.set(id, record) }
      async getPreKey (id: number): Promise<PreKeyRecord> {
        const r = oneTime.get(id)
        if (r === undefined) throw new Error(`no one-time prekey ${id}`)
        return r
      }

      async removePreKey (id: number): Promise<void> { oneTime.delete(id) }
    })()
    this.signedPreKeys = new (class extends SignedPreKeyStore {
      async saveSignedPreKey (): Promise<void> {}
      async getSignedPreKey (id: number): Promise<SignedPreKeyRecord> {
        if (keys === undefined || keys.signedPreKey.id() !== id) throw new Error(`no signed prekey ${id}`)
        return keys.signedPreKey
      }
    })()
    this.kyberPreKeys = new (class extends KyberPreKeyStore {
      async saveKyberPreKey (): Promise<void> {}
      async getKyberPreKey (id: number): Promise<KyberPreKeyRecord> {
        if (keys === undefined || keys.kyberPreKey.id() !== id) throw new Error(`no Kyber prekey ${id}`)
        return keys.kyberPreKey
      }

      async markKyberPreKeyUsed (): Promise<void> {}
    })()
  }
}
