/**
 * The per-process side of the E2EE crypto-cost scenario (crypto.ts): two SignalCiphers
 * (core/crypto/cipher.ts), each over a real LevelStore in its own directory, in one process
 * with no network in between. A starts a session from B's own bundle; then each message is
 * a typical text envelope (writeEnvelope of a `messageBytes`-byte text, as sendText makes)
 * that A encrypts and B decrypts, one at a time, each operation timed on its own:
 *   - encrypt: `cipher.encrypt(peer, [envelope])`, which commits the ratchet state to A's
 *     store (Store.putCrypto) before it resolves;
 *   - decrypt: `cipher.decrypt(peer, [ciphertext], save)` with `save` calling
 *     `store.saveIncoming([], 0, changes)`, the write the Messenger does with its messages.
 * Three phases, in this order:
 *   - prekey: A's messages before B has ever answered (every one a PreKeySignalMessage, as
 *     in a conversation's first burst, or a one-way stream);
 *   - whisper: after B answered once, A -> B again (plain SignalMessages: the steady state);
 *   - alternating: A -> B, B -> A, ... (every message turns the DH ratchet).
 * Then the floor: the same prekey and whisper phases with libsignal alone (`signalEncrypt`,
 * `signalDecrypt(PreKey)`) over in-memory stores (test/helpers/signal-keys.ts), no lock, no
 * store, no binding check: what any caller of libsignal's Node binding pays, so the report
 * can tell libsignal's own cost (its store callbacks are called asynchronously; the first waits for an event-loop turn)
 * from what SignalCipher adds.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import {
  CiphertextMessageType, IdentityKeyPair, KEMPublicKey, PreKeyBundle, PreKeySignalMessage, ProtocolAddress, PublicKey, SignalMessage,
  processPreKeyBundle, signalDecrypt, signalDecryptPreKey, signalEncrypt
} from '@signalapp/libsignal-client'
import { owned } from '../../../core/bytes.js'
import { pad, SignalCipher, type Ciphertext } from '../../../core/crypto/cipher.js'
import { newMessageId, type PeerIdString } from '../../../core/ids.js'
import { writeEnvelope, writeSealed } from '../../../core/protocols/dm/codec.js'
import { LevelStore } from '../../../core/store/level-store.js'
import { makeSignalBundle, MemorySignalStores } from '../../helpers/signal-keys.js'
import { now, payload } from '../util.js'

export type CryptoPhaseName = 'prekey' | 'whisper' | 'alternating' | 'floor-prekey' | 'floor-whisper'

export interface CryptoParams {
  /** Parent of the two stores' directories (the harness removes it). */
  dataDir: string
  /** Text bytes per envelope (the DM scenarios' message size). */
  messageBytes: number
  warmup: number
  /** Timed messages per phase. */
  samples: number
}

/** One phase's raw figures (ms, process-local clock), warm-up excluded. */
export interface CryptoPhaseRun {
  phase: CryptoPhaseName
  encryptMs: number[]
  decryptMs: number[]
  /** Ciphertext (libsignal's serialized message) and the whole Sealed frame, per message. */
  ciphertextBytes: number[]
  sealedBytes: number[]
  kinds: Record<string, number>
}

export interface CryptoRun {
  /** The plaintext: one encoded text envelope (before Signal's padding). */
  envelopeBytes: number
  phases: CryptoPhaseRun[]
}

interface Party {
  cipher: SignalCipher
  store: LevelStore
  peer: PeerIdString
}

async function party (dir: string): Promise<Party> {
  await mkdir(dir, { recursive: true })
  const key: PrivateKey = await generateKeyPair('Ed25519')
  const peer = peerIdFromPrivateKey(key).toString() as PeerIdString
  const store = new LevelStore(join(dir, 'db'))
  await store.open()
  const cipher = new SignalCipher(store, key, peer)
  await cipher.open()
  return { cipher, store, peer }
}

let lamport = 0

/** A text envelope as Messenger.sendText encodes it. */
function envelope (tag: string, messageBytes: number): Uint8Array {
  return writeEnvelope({ id: newMessageId(), lamport: ++lamport, sentAt: Date.now(), type: 'text', text: payload(tag, messageBytes) })
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((x, i) => x === b[i])
}

/** Encrypt on `from`, decrypt on `to`, each timed; checks the plaintext came back. */
async function oneMessage (from: Party, to: Party, plain: Uint8Array): Promise<{ encryptMs: number, decryptMs: number, ct: Ciphertext, sealedBytes: number }> {
  const t0 = now()
  const [ct] = await from.cipher.encrypt(to.peer, [plain])
  const t1 = now()
  if (ct === undefined) throw new Error('encrypt returned nothing')
  const binding = ct.kind === 'prekey' ? from.cipher.ownBinding : undefined
  const item = { kind: ct.kind, body: ct.body, ...(binding !== undefined ? { binding } : {}) }
  const t2 = now()
  const results = await to.cipher.decrypt(from.peer, [item], async (res, changes) => {
    await to.store.saveIncoming([], 0, changes)
    return res
  })
  const t3 = now()
  const r = results[0]
  if (r === undefined || !r.ok) throw new Error(`crypto bench: decrypt failed: ${r !== undefined && !r.ok ? r.error.message : 'no result'}`)
  if (!sameBytes(r.plaintext, plain)) throw new Error('crypto bench: decrypted text differs')
  const sealedBytes = writeSealed({ id: newMessageId(), kind: ct.kind, ciphertext: ct.body, ...(binding !== undefined ? { binding } : {}) }).byteLength
  return { encryptMs: t1 - t0, decryptMs: t3 - t2, ct, sealedBytes }
}

async function phase (name: CryptoPhaseName, p: CryptoParams, next: (i: number) => [Party, Party]): Promise<CryptoPhaseRun> {
  const run: CryptoPhaseRun = { phase: name, encryptMs: [], decryptMs: [], ciphertextBytes: [], sealedBytes: [], kinds: {} }
  for (let i = 0; i < p.warmup + p.samples; i++) {
    const [from, to] = next(i)
    const m = await oneMessage(from, to, envelope(`${name}-${i}`, p.messageBytes))
    if (i < p.warmup) continue
    run.encryptMs.push(m.encryptMs)
    run.decryptMs.push(m.decryptMs)
    run.ciphertextBytes.push(m.ct.body.byteLength)
    run.sealedBytes.push(m.sealedBytes)
    run.kinds[m.ct.kind] = (run.kinds[m.ct.kind] ?? 0) + 1
  }
  return run
}

export async function runCryptoBench (p: CryptoParams): Promise<CryptoRun> {
  const a = await party(join(p.dataDir, 'A'))
  const b = await party(join(p.dataDir, 'B'))
  try {
    await a.cipher.startSession(b.peer, await b.cipher.ownBundle(true))
    const phases: CryptoPhaseRun[] = []
    phases.push(await phase('prekey', p, () => [a, b]))
    // B answers once: A's session is acknowledged, its next messages are plain SignalMessages.
    await oneMessage(b, a, envelope('reply', p.messageBytes))
    phases.push(await phase('whisper', p, () => [a, b]))
    phases.push(await phase('alternating', p, (i) => i % 2 === 0 ? [a, b] : [b, a]))
    phases.push(...await floorPhases(p))
    return { envelopeBytes: envelope('size', p.messageBytes).byteLength, phases }
  } finally {
    await Promise.allSettled([a.store.close(), b.store.close()])
  }
}

interface FloorParty { stores: MemorySignalStores, address: ProtocolAddress }

/** libsignal alone, A -> B: encrypt and decrypt one padded envelope, each timed. */
async function floorMessage (from: FloorParty, to: FloorParty, plain: Uint8Array): Promise<{ encryptMs: number, decryptMs: number, ct: Ciphertext }> {
  const t0 = now()
  const msg = await signalEncrypt(pad(plain), to.address, from.address, from.stores.sessions, from.stores.identities)
  const t1 = now()
  const ct: Ciphertext = { kind: msg.type() === (CiphertextMessageType.PreKey as number) ? 'prekey' : 'whisper', body: msg.serialize() }
  const t2 = now()
  const s = to.stores
  if (ct.kind === 'prekey') {
    await signalDecryptPreKey(PreKeySignalMessage.deserialize(ct.body), from.address, to.address, s.sessions, s.identities, s.preKeys, s.signedPreKeys, s.kyberPreKeys)
  } else {
    await signalDecrypt(SignalMessage.deserialize(ct.body), from.address, to.address, s.sessions, s.identities)
  }
  return { encryptMs: t1 - t0, decryptMs: now() - t2, ct }
}

/** The floor phases (see the header): prekey, then B answers once, then whisper. */
async function floorPhases (p: CryptoParams): Promise<CryptoPhaseRun[]> {
  const keys = await makeSignalBundle(await generateKeyPair('Ed25519'))
  const a: FloorParty = { stores: new MemorySignalStores(IdentityKeyPair.generate(), 1), address: ProtocolAddress.new('A', 1) }
  const b: FloorParty = { stores: new MemorySignalStores(keys.identity, keys.header.registrationId, keys), address: ProtocolAddress.new('B', 1) }
  const h = keys.header
  const bundle = PreKeyBundle.new(
    h.registrationId, h.deviceId, null, null,
    h.signedPreKey.id, PublicKey.deserialize(owned(h.signedPreKey.publicKey)), owned(h.signedPreKey.signature), PublicKey.deserialize(owned(h.identityKey)),
    h.kyberPreKey.id, KEMPublicKey.deserialize(owned(h.kyberPreKey.publicKey)), owned(h.kyberPreKey.signature)
  )
  await processPreKeyBundle(bundle, b.address, a.address, a.stores.sessions, a.stores.identities)
  const phaseOf = async (name: CryptoPhaseName): Promise<CryptoPhaseRun> => {
    const run: CryptoPhaseRun = { phase: name, encryptMs: [], decryptMs: [], ciphertextBytes: [], sealedBytes: [], kinds: {} }
    for (let i = 0; i < p.warmup + p.samples; i++) {
      const m = await floorMessage(a, b, envelope(`${name}-${i}`, p.messageBytes))
      if (i < p.warmup) continue
      run.encryptMs.push(m.encryptMs)
      run.decryptMs.push(m.decryptMs)
      run.ciphertextBytes.push(m.ct.body.byteLength)
      run.sealedBytes.push(writeSealed({ id: newMessageId(), kind: m.ct.kind, ciphertext: m.ct.body }).byteLength)
      run.kinds[m.ct.kind] = (run.kinds[m.ct.kind] ?? 0) + 1
    }
    return run
  }
  const phases = [await phaseOf('floor-prekey')]
  await floorMessage(b, a, envelope('reply', p.messageBytes))
  phases.push(await phaseOf('floor-whisper'))
  return phases
}
