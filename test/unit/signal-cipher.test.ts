import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { groupEncrypt, ProtocolAddress, SenderKeyMessage } from '@signalapp/libsignal-client'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey as Libp2pPrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { BindingError, signBinding } from '../../core/crypto/binding.js'
import {
  DEVICE_ID, DecryptionError, DuplicateCiphertextError, IdentityChangedError, NoSenderKeyError, NoSessionError, SafetyNumberMismatchError,
  SenderKeyTooFarAheadError, SignalCipher, UnknownIdentityError, distributionIdOf, pad, unpad, type Ciphertext, type DecryptResult,
  type GroupDecryptResult, type SignalCipherOptions
} from '../../core/crypto/cipher.js'
import { CryptoKeys, MissingPreKeyError, ReplayedPreKeyMessageError } from '../../core/crypto/signal-state.js'
import { CorruptRecordError, ParleyError } from '../../core/errors.js'
import { newGroupId, type GroupId, type PeerIdString } from '../../core/ids.js'
import type { BundleData } from '../../core/protocols/prekeys/codec.js'
import { LevelStore } from '../../core/store/level-store.js'
import { MemoryStore } from '../../core/store/memory-store.js'
import type { CryptoChanges, Store } from '../../core/store/types.js'
import { decodeSealed } from '../../core/identity/key-protector.js'
import { fakeProtector } from '../helpers/key-protectors.js'
import { removeDir, tempDir } from '../helpers/messengers.js'
import { Rng } from '../helpers/prng.js'

/** Every error a failed decrypt may report: Parley's named errors, never a raw libsignal one. */
const NAMED_ERRORS = new Set([
  DecryptionError.name, DuplicateCiphertextError.name, NoSessionError.name, IdentityChangedError.name, BindingError.name,
  MissingPreKeyError.name, ReplayedPreKeyMessageError.name, CorruptRecordError.name, UnknownIdentityError.name
])

const encoder = new TextEncoder()
const decoder = new TextDecoder()

interface Party {
  cipher: SignalCipher
  store: Store
  key: Libp2pPrivateKey
  peer: PeerIdString
  /** LevelStore location, for parties that can be reopened. */
  location?: string
}

/** A MemoryStore whose next `failures` crypto writes fail (a full disk). */
class FlakyStore extends MemoryStore {
  failures = 0
  override async putCrypto (changes: CryptoChanges): Promise<void> {
    if (this.failures > 0) {
      this.failures--
      throw new Error('disk full')
    }
    await super.putCrypto(changes)
  }
}

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

async function libp2pKey (): Promise<{ key: Libp2pPrivateKey, peer: PeerIdString }> {
  const key = await generateKeyPair('Ed25519')
  return { key, peer: peerIdFromPrivateKey(key).toString() as PeerIdString }
}

async function openParty (store: Store, id: { key: Libp2pPrivateKey, peer: PeerIdString }, options: SignalCipherOptions = {}): Promise<SignalCipher> {
  const cipher = new SignalCipher(store, id.key, id.peer, options)
  await cipher.open()
  return cipher
}

/** A party over a MemoryStore (no reopening needed). `id` reuses a libp2p key (a re-install). */
async function memoryParty (options: SignalCipherOptions = {}, id?: { key: Libp2pPrivateKey, peer: PeerIdString }): Promise<Party> {
  const who = id ?? await libp2pKey()
  const store = new MemoryStore()
  await store.open()
  return { ...who, store, cipher: await openParty(store, who, options) }
}

/** A party over a LevelStore in a fresh temp dir (closed and removed after the file). */
async function levelParty (options: SignalCipherOptions = {}): Promise<Party> {
  const who = await libp2pKey()
  const dir = await tempDir('parley-signal-')
  const location = join(dir, 'db')
  const party: Party = { ...who, location, store: new LevelStore(location), cipher: undefined as unknown as SignalCipher }
  await party.store.open()
  party.cipher = await openParty(party.store, who, options)
  cleanups.push(async () => {
    await party.store.close().catch(() => {})
    await removeDir(dir)
  })
  return party
}

/** Close a level party's store and open it again with a new SignalCipher over it. */
async function reopen (party: Party, options: SignalCipherOptions = {}): Promise<void> {
  assert.ok(party.location !== undefined)
  await party.store.close()
  party.store = new LevelStore(party.location)
  await party.store.open()
  party.cipher = await openParty(party.store, party, options)
}

async function encryptTexts (from: Party, to: Party, texts: readonly string[]): Promise<Ciphertext[]> {
  return await from.cipher.encrypt(to.peer, texts.map((t) => encoder.encode(t)))
}

/**
 * `to` decrypts `cts` from `from`, saving the state changes the way the messenger does.
 * `binding` goes with every item (the sender's own unless given; null sends none).
 */
async function deliver (to: Party, from: Party, cts: readonly Ciphertext[], binding: Uint8Array | null = from.cipher.ownBinding): Promise<DecryptResult[]> {
  const items = cts.map((ct) => ({ kind: ct.kind, body: ct.body, ...(binding !== null ? { binding } : {}) }))
  return await to.cipher.decrypt(from.peer, items, async (results, changes) => {
    await to.store.saveIncoming([], 0, changes)
    return results
  })
}

function plaintextOf (r: DecryptResult | undefined): string {
  assert.ok(r !== undefined, 'no result')
  if (!r.ok) assert.fail(`decrypt failed: ${r.error.name}: ${r.error.message}`)
  return decoder.decode(r.plaintext)
}

function failureOf (r: DecryptResult | undefined): Error {
  assert.ok(r !== undefined, 'no result')
  if (r.ok) assert.fail(`expected a failure, decrypted ${JSON.stringify(decoder.decode(r.plaintext))}`)
  assert.ok(r.error instanceof ParleyError, `${r.error.name} is not a ParleyError: ${r.error.message}`)
  assert.ok(NAMED_ERRORS.has(r.error.name), `unexpected error name ${r.error.name}`)
  return r.error
}

/** One message each way: A starts from B's bundle, B answers; both sides then hold a confirmed session. */
async function converse (a: Party, b: Party, bundle?: BundleData): Promise<void> {
  await a.cipher.startSession(b.peer, bundle ?? await b.cipher.ownBundle(true))
  const [first] = await encryptTexts(a, b, ['hello'])
  assert.equal(first?.kind, 'prekey')
  assert.equal(plaintextOf((await deliver(b, a, [first]))[0]), 'hello')
  const [reply] = await encryptTexts(b, a, ['hi'])
  assert.equal(plaintextOf((await deliver(a, b, [reply as Ciphertext]))[0]), 'hi')
}

/** A and B after one message each way; `changes` collects the identity changes A reports from then on. */
async function watchedPair (): Promise<{ a: Party, b: Party, changes: string[] }> {
  const a = await memoryParty()
  const b = await memoryParty()
  await converse(a, b)
  const changes: string[] = []
  a.cipher.onIdentityChange = (peer) => { changes.push(peer) }
  return { a, b, changes }
}

/** The cipher's one-time key count agrees with the keys actually stored. */
async function assertOneTimeKeysConsistent (p: Party): Promise<void> {
  const stored = (await p.store.listCrypto(CryptoKeys.preKeyPrefix)).length
  assert.equal(p.cipher.oneTimeKeyCount, stored, 'oneTimeKeyCount does not match the stored one-time keys')
}

/** Decrypt without committing anything (the save fails on purpose): what `to` would make of `cts` now. */
async function dryRun (to: Party, from: Party, cts: readonly Ciphertext[]): Promise<DecryptResult[]> {
  let out: DecryptResult[] | undefined
  await assert.rejects(to.cipher.decrypt(from.peer, cts.map((c) => ({ ...c, binding: from.cipher.ownBinding })), async (results) => {
    out = results
    throw new Error('dry run')
  }), /dry run/)
  assert.ok(out !== undefined)
  return out
}

function flip (ct: Ciphertext, index: number): Ciphertext {
  const body = new Uint8Array(ct.body)
  body[index] = (body[index] as number) ^ 0x01
  return { kind: ct.kind, body }
}

describe('SignalCipher', () => {
  it('pads plaintexts to 160-byte blocks and unpads them back, at every length around a block boundary', () => {
    for (const n of [0, 1, 158, 159, 160, 161, 319, 320, 1000]) {
      const p = new Uint8Array(n).fill(0xab)
      const padded = pad(p)
      assert.equal(padded.byteLength % 160, 0)
      assert.ok(padded.byteLength > n)
      assert.deepEqual(unpad(padded), p)
    }
    // Trailing zeros in the plaintext survive (the 0x80 marker ends it, not the zeros).
    assert.deepEqual(unpad(pad(new Uint8Array([1, 0, 0]))), new Uint8Array([1, 0, 0]))
    assert.throws(() => unpad(new Uint8Array(160)), { name: 'DecryptionError' })
  })

  it('A→B first message is a prekey message; after B replies A sends whisper messages; plaintexts round-trip', async () => {
    const a = await memoryParty()
    const b = await memoryParty()
    assert.equal(await a.cipher.hasSession(b.peer), false)
    await assert.rejects(encryptTexts(a, b, ['x']), { name: 'NoSessionError' })

    await a.cipher.startSession(b.peer, await b.cipher.ownBundle(true))
    assert.equal(await a.cipher.hasSession(b.peer), true)
    const first = await encryptTexts(a, b, ['first', 'second'])
    assert.deepEqual(first.map((c) => c.kind), ['prekey', 'prekey'], 'unacknowledged session: every message carries the prekey header')
    const got = await deliver(b, a, first)
    assert.deepEqual(got.map(plaintextOf), ['first', 'second'])
    assert.equal(await b.cipher.hasSession(a.peer), true)

    const reply = await encryptTexts(b, a, ['reply'])
    assert.equal(reply[0]?.kind, 'whisper', 'the responder never sends prekey messages')
    assert.equal(plaintextOf((await deliver(a, b, reply))[0]), 'reply')

    const next = await encryptTexts(a, b, ['third'])
    assert.equal(next[0]?.kind, 'whisper', 'once B answered, A\'s messages are plain whisper messages')
    assert.equal(plaintextOf((await deliver(b, a, next))[0]), 'third')

    // Empty and 64 KiB plaintexts, both ways; binary content survives exactly.
    const big = new Rng(7).bytes(64 * 1024)
    const cts = await a.cipher.encrypt(b.peer, [new Uint8Array(0), big])
    const res = await deliver(b, a, cts)
    assert.ok(res[0]?.ok === true && res[0].plaintext.byteLength === 0)
    assert.ok(res[1]?.ok === true)
    assert.deepEqual(res[1].plaintext, big)
    const back = await b.cipher.encrypt(a.peer, [big, new Uint8Array(0)])
    const res2 = await deliver(a, b, back)
    assert.ok(res2[0]?.ok === true && res2[1]?.ok === true)
    assert.deepEqual(res2[0].plaintext, big)
    assert.equal(res2[1].plaintext.byteLength, 0)

    // Padding hides length within a block: 1 byte and 150 bytes make equally long ciphertexts.
    const [short, long] = await a.cipher.encrypt(b.peer, [new Uint8Array(1), new Uint8Array(150)])
    assert.equal(short?.body.byteLength, long?.body.byteLength)
    await deliver(b, a, [short as Ciphertext, long as Ciphertext])
  })

  it('sessions, identities and keys survive closing and reopening both LevelStores', async () => {
    const a = await levelParty()
    const b = await levelParty()
    await converse(a, b)
    const idA = a.cipher.identityKey
    const idB = b.cipher.identityKey
    const headerB = await b.cipher.header()

    await reopen(a)
    await reopen(b)
    assert.deepEqual(a.cipher.identityKey, idA)
    assert.deepEqual(b.cipher.identityKey, idB)
    assert.deepEqual(await b.cipher.header(), headerB, 'no rotation, no new keys on reopen')
    assert.equal(await a.cipher.hasSession(b.peer), true)
    assert.equal(await b.cipher.hasSession(a.peer), true)
    assert.equal((await a.cipher.identityStatus(b.peer)).state, 'trusted')

    const ab = await encryptTexts(a, b, ['after reopen 1', 'after reopen 2'])
    assert.deepEqual(ab.map((c) => c.kind), ['whisper', 'whisper'])
    assert.deepEqual((await deliver(b, a, ab)).map(plaintextOf), ['after reopen 1', 'after reopen 2'])
    const ba = await encryptTexts(b, a, ['and back'])
    assert.equal(plaintextOf((await deliver(a, b, ba))[0]), 'and back')

    // Once more, with messages sent before the close and delivered after it.
    const inFlight = await encryptTexts(a, b, ['in flight'])
    await reopen(a)
    await reopen(b)
    assert.equal(plaintextOf((await deliver(b, a, inFlight))[0]), 'in flight')
    assert.equal(failureOf((await deliver(b, a, inFlight))[0]).name, 'DuplicateCiphertextError', 'the spent key stayed spent across the reopen')
    const again = await encryptTexts(b, a, ['still here'])
    assert.equal(plaintextOf((await deliver(a, b, again))[0]), 'still here')
  })

  it('only a committed decrypt moves the ratchet: when the save fails the same messages decrypt again', async () => {
    const a = await levelParty()
    const b = await levelParty()
    await a.cipher.startSession(b.peer, await b.cipher.ownBundle(true))
    const keysBefore = b.cipher.oneTimeKeyCount
    const first = await encryptTexts(a, b, ['first'])
    assert.equal(first[0]?.kind, 'prekey')

    const failing = async (cts: Ciphertext[]): Promise<void> => {
      await assert.rejects(b.cipher.decrypt(a.peer, cts.map((c) => ({ ...c, binding: a.cipher.ownBinding })), async () => {
        throw new Error('disk full')
      }), /disk full/)
    }

    // A first message whose save fails: no session, the one-time key still there.
    await failing(first)
    assert.equal(await b.cipher.hasSession(a.peer), false)
    assert.equal(b.cipher.oneTimeKeyCount, keysBefore, 'the one-time key was not spent by a decrypt that was never saved')
    await assertOneTimeKeysConsistent(b)
    assert.equal(plaintextOf((await deliver(b, a, first))[0]), 'first')
    assert.equal(b.cipher.oneTimeKeyCount, keysBefore - 1)
    await assertOneTimeKeysConsistent(b)

    // Whisper messages (after B answered): a failed save twice, then success, then the duplicate.
    const [reply] = await encryptTexts(b, a, ['reply'])
    assert.equal(plaintextOf((await deliver(a, b, [reply as Ciphertext]))[0]), 'reply')
    const batch = await encryptTexts(a, b, ['w1', 'w2', 'w3'])
    assert.deepEqual(batch.map((c) => c.kind), ['whisper', 'whisper', 'whisper'])
    await failing(batch)
    await failing(batch.slice(1))
    assert.deepEqual((await deliver(b, a, batch)).map(plaintextOf), ['w1', 'w2', 'w3'])
    assert.deepEqual((await deliver(b, a, batch)).map((r) => failureOf(r).name), Array(3).fill('DuplicateCiphertextError'))

    // And it holds on disk: a failed save, close, reopen, the message is still decryptable.
    const [late] = await encryptTexts(a, b, ['late'])
    await failing([late as Ciphertext])
    await reopen(b)
    assert.equal(plaintextOf((await deliver(b, a, [late as Ciphertext]))[0]), 'late')
  })

  it('1,000 messages delivered shuffled with 10% dropped: each survivor decrypts once, to the right text; redelivery is a duplicate', async () => {
    const rng = new Rng(0x5eed)
    const a = await memoryParty()
    const b = await memoryParty()
    await converse(a, b)
    const texts = Array.from({ length: 1000 }, (_, i) => `message #${i} ${'x'.repeat(i % 37)}`)
    const cts: Ciphertext[] = []
    for (let i = 0; i < texts.length; i += 100) cts.push(...await encryptTexts(a, b, texts.slice(i, i + 100)))
    assert.equal(cts.length, 1000)

    const order = rng.shuffle(texts.map((_, i) => i)).filter(() => rng.next() >= 0.1)
    assert.ok(order.length > 850 && order.length < 950, `${order.length} survivors`)
    const seen = new Map<number, string>()
    for (let i = 0; i < order.length;) {
      const n = 1 + rng.int(20) // batches of 1..20, like a mailbox drain
      const idx = order.slice(i, i + n)
      i += n
      const results = await deliver(b, a, idx.map((k) => cts[k] as Ciphertext))
      idx.forEach((k, j) => {
        assert.ok(!seen.has(k), `message ${k} delivered twice`)
        seen.set(k, plaintextOf(results[j]))
      })
    }
    assert.equal(seen.size, order.length)
    for (const [k, text] of seen) assert.equal(text, texts[k])

    // Any of them again (shuffled again): a duplicate every time, never a second plaintext.
    const again = rng.shuffle(order)
    const results = await deliver(b, a, again.map((k) => cts[k] as Ciphertext))
    for (const r of results) assert.equal(failureOf(r).name, 'DuplicateCiphertextError')

    // The session still works both ways afterwards.
    const [tail] = await encryptTexts(a, b, ['tail'])
    assert.equal(plaintextOf((await deliver(b, a, [tail as Ciphertext]))[0]), 'tail')
    const [back] = await encryptTexts(b, a, ['back'])
    assert.equal(plaintextOf((await deliver(a, b, [back as Ciphertext]))[0]), 'back')
  })

  it('a tampered ciphertext fails with a named error and leaves the session as it was', async () => {
    const a = await memoryParty()
    const b = await memoryParty()
    await a.cipher.startSession(b.peer, await b.cipher.ownBundle(true))

    // Every byte of a first (prekey) message, flipped in turn, each tried on B's untouched
    // state. libsignal authenticates all of it but the registration id and the low nibble of
    // the version byte: a flip there may still decrypt, but only ever to the genuine plaintext.
    const [first] = await encryptTexts(a, b, ['first'])
    assert.ok(first !== undefined && first.kind === 'prekey')
    const names = new Set<string>()
    let harmless = 0
    for (let i = 0; i < first.body.byteLength; i++) {
      const [r] = await dryRun(b, a, [flip(first, i)])
      if (r?.ok === true) {
        assert.equal(decoder.decode(r.plaintext), 'first')
        harmless++
      } else {
        names.add(failureOf(r).name)
      }
    }
    assert.ok(harmless <= 5, `${harmless} flipped bytes went unnoticed`)
    assert.ok(names.has('DecryptionError') && names.has('BindingError') && names.has('MissingPreKeyError'), [...names].join())
    // Delivered for real, a tampered first message changes nothing either.
    const [tampered] = await deliver(b, a, [flip(first, first.body.byteLength - 5)])
    assert.equal(failureOf(tampered).name, 'DecryptionError')
    assert.equal(await b.cipher.hasSession(a.peer), false)
    assert.equal(plaintextOf((await deliver(b, a, [first]))[0]), 'first', 'the genuine first message still decrypts')

    const [reply] = await encryptTexts(b, a, ['reply'])
    assert.ok(reply !== undefined)
    for (let i = 0; i < reply.body.byteLength; i++) failureOf((await deliver(a, b, [flip(reply, i)]))[0])
    assert.equal(plaintextOf((await deliver(a, b, [reply]))[0]), 'reply')

    // Whisper messages: a flipped byte anywhere (header, ciphertext, MAC) fails; the next genuine message decrypts.
    const cts = await encryptTexts(a, b, ['one', 'two'])
    const [one, two] = cts as [Ciphertext, Ciphertext]
    assert.equal(one.kind, 'whisper')
    for (let i = 0; i < one.body.byteLength; i++) {
      const [r] = await deliver(b, a, [flip(one, i)])
      assert.equal(failureOf(r).name === 'BindingError', false)
    }
    const [bad, good] = await deliver(b, a, [flip(one, one.body.byteLength - 3), two])
    assert.equal(failureOf(bad).name, 'DecryptionError')
    assert.equal(plaintextOf(good), 'two')
    assert.equal(plaintextOf((await deliver(b, a, [one]))[0]), 'one', 'the genuine one, late, still decrypts')

    // Truncated and garbage bodies, and a whisper body labelled as a prekey message.
    const [three] = await encryptTexts(a, b, ['three'])
    assert.ok(three !== undefined)
    const junk: Ciphertext[] = [
      { kind: 'whisper', body: three.body.slice(0, 10) },
      { kind: 'whisper', body: new Uint8Array(0) },
      { kind: 'whisper', body: new Rng(3).bytes(200) },
      { kind: 'prekey', body: three.body }
    ]
    for (const r of await deliver(b, a, junk)) failureOf(r)
    assert.equal(plaintextOf((await deliver(b, a, [three]))[0]), 'three')
  })

  it('rejects a first message whose binding is missing or made by another libp2p key, and keeps no session', async () => {
    const a = await memoryParty()
    const b = await memoryParty()
    const bKeysBefore = b.cipher.oneTimeKeyCount
    await a.cipher.startSession(b.peer, await b.cipher.ownBundle(true))
    const [first] = await encryptTexts(a, b, ['hello'])
    assert.ok(first !== undefined && first.kind === 'prekey')

    const [noBinding] = await deliver(b, a, [first], null)
    assert.equal(failureOf(noBinding).name, 'BindingError')
    const mallory = await libp2pKey()
    const forged = await signBinding(mallory.key, a.cipher.identityKey)
    const [wrongKey] = await deliver(b, a, [first], forged)
    assert.equal(failureOf(wrongKey).name, 'BindingError')
    // Garbage in place of a signature.
    const [garbage] = await deliver(b, a, [first], new Uint8Array(64))
    assert.equal(failureOf(garbage).name, 'BindingError')
    // A's real binding, but claimed for another peer id: B must not bind A's key to Mallory.
    const [otherPeer] = await b.cipher.decrypt(mallory.peer, [{ ...first, binding: a.cipher.ownBinding }], async (results, changes) => {
      await b.store.saveIncoming([], 0, changes)
      return results
    })
    failureOf(otherPeer)

    assert.equal(await b.cipher.hasSession(a.peer), false)
    assert.equal(await b.cipher.hasSession(mallory.peer), false)
    await assert.rejects(b.cipher.encrypt(a.peer, [encoder.encode('x')]), { name: 'NoSessionError' })
    assert.deepEqual(await b.cipher.identityStatus(a.peer), { state: 'unknown' })
    assert.deepEqual(await b.cipher.identityStatus(mallory.peer), { state: 'unknown' })
    assert.equal(b.cipher.oneTimeKeyCount, bKeysBefore + 1, 'the one-time key is not spent by a rejected message')

    // Nothing was spent: with the right binding the very same message is accepted.
    assert.equal(plaintextOf((await deliver(b, a, [first]))[0]), 'hello')
    assert.equal((await b.cipher.identityStatus(a.peer)).state, 'trusted')
  })

  it('one-time prekeys are spent by the first message; bundles without one still work; replays are refused', async () => {
    const a = await memoryParty()
    const b = await memoryParty()
    const c = await memoryParty()
    assert.equal(b.cipher.oneTimeKeyCount, 0)
    await b.cipher.newOneTimeKeys(3)
    const bundle = await b.cipher.ownBundle(true)
    assert.ok(bundle.oneTime !== undefined)
    assert.equal(b.cipher.oneTimeKeyCount, 4)
    await assertOneTimeKeysConsistent(b)

    await a.cipher.startSession(b.peer, bundle)
    const firsts = await encryptTexts(a, b, ['one', 'two', 'three'])
    assert.deepEqual(firsts.map((x) => x.kind), ['prekey', 'prekey', 'prekey'])
    assert.deepEqual((await deliver(b, a, firsts.slice(0, 1))).map(plaintextOf), ['one'])
    assert.equal(b.cipher.oneTimeKeyCount, 3, 'the first message spent the one-time key')
    assert.equal(await b.store.getCrypto(CryptoKeys.preKey(bundle.oneTime.id)), undefined)
    await assertOneTimeKeysConsistent(b)
    // More prekey messages of the same session (they name the same key) spend nothing more.
    assert.deepEqual((await deliver(b, a, firsts.slice(1))).map(plaintextOf), ['two', 'three'])
    assert.equal(b.cipher.oneTimeKeyCount, 3)
    await assertOneTimeKeysConsistent(b)

    // The same first message again: refused, not shown twice.
    const [replay] = await deliver(b, a, firsts.slice(0, 1))
    assert.equal(failureOf(replay).name, 'DuplicateCiphertextError')

    // C uses the same (already spent) bundle: its first message cannot decrypt at B.
    await c.cipher.startSession(b.peer, bundle)
    const [fromC] = await encryptTexts(c, b, ['from c'])
    const [spent] = await deliver(b, c, [fromC as Ciphertext])
    assert.equal(failureOf(spent).name, 'MissingPreKeyError')
    assert.equal(await b.cipher.hasSession(c.peer), false)
    assert.equal(b.cipher.oneTimeKeyCount, 3)

    // A bundle without a one-time key (signed + Kyber last resort) works, and spends nothing.
    const d = await memoryParty()
    const plain = await b.cipher.ownBundle(false)
    assert.equal(plain.oneTime, undefined)
    assert.equal(b.cipher.oneTimeKeyCount, 3)
    await d.cipher.startSession(b.peer, plain)
    const [fromD] = await encryptTexts(d, b, ['from d'])
    assert.equal(plaintextOf((await deliver(b, d, [fromD as Ciphertext]))[0]), 'from d')
    assert.equal(b.cipher.oneTimeKeyCount, 3)
    await assertOneTimeKeysConsistent(b)
    // Its replay is refused too, even after B dropped the session (the Kyber key is a last-resort key).
    assert.ok(['DuplicateCiphertextError', 'ReplayedPreKeyMessageError'].includes(failureOf((await deliver(b, d, [fromD as Ciphertext]))[0]).name))
    await b.cipher.resetSession(d.peer)
    assert.equal(await b.cipher.hasSession(d.peer), false)
    const [replayed] = await deliver(b, d, [fromD as Ciphertext])
    assert.equal(failureOf(replayed).name, 'ReplayedPreKeyMessageError')
    assert.equal(await b.cipher.hasSession(d.peer), false)
    // The first session's replay after a reset: the one-time key is gone.
    await b.cipher.resetSession(a.peer)
    assert.equal(failureOf((await deliver(b, a, firsts.slice(0, 1)))[0]).name, 'MissingPreKeyError')

    // A's session with B did not depend on any of that.
    assert.equal(await a.cipher.hasSession(b.peer), true)
  })

  it('rotates signed and Kyber prekeys on schedule; old ones decrypt first messages for the grace period after rotation', async () => {
    const clock = { t: 1_700_000_000_000 }
    const options = { now: () => clock.t, rotationMs: 1000, graceMs: 5000 }
    const b = await levelParty(options)
    const t0 = clock.t
    const h1 = await b.cipher.header()

    clock.t = t0 + 999
    assert.equal(await b.cipher.rotateIfDue(), false)
    assert.deepEqual(await b.cipher.header(), h1)
    // A fetches B's bundle (the header as published) just before the rotation.
    const oldBundle: BundleData = { header: h1 }
    const early = await memoryParty(options)
    await early.cipher.startSession(b.peer, oldBundle)
    const [earlyFirst] = await encryptTexts(early, b, ['made from the old header'])

    // B is offline for a while: the rotation comes late, at t0 + 4000.
    clock.t = t0 + 4000
    assert.equal(await b.cipher.rotateIfDue(), true)
    const h2 = await b.cipher.header()
    assert.notEqual(h2.signedPreKey.id, h1.signedPreKey.id)
    assert.notEqual(h2.kyberPreKey.id, h1.kyberPreKey.id)
    assert.notDeepEqual(h2.signedPreKey.publicKey, h1.signedPreKey.publicKey)
    assert.deepEqual(h2.identityKey, h1.identityKey)
    assert.equal(await b.cipher.rotateIfDue(), false, 'just rotated')

    // Regular rotations follow; B restarts in between (the schedule is persisted).
    const late = await memoryParty(options)
    await late.cipher.startSession(b.peer, oldBundle)
    const [lateFirst] = await encryptTexts(late, b, ['also from the old header'])
    for (const t of [5000, 6000, 7000, 8000]) {
      clock.t = t0 + t
      assert.equal(await b.cipher.rotateIfDue(), true, `rotation at +${t}`)
    }
    await reopen(b, options)
    clock.t = t0 + 8999
    assert.equal(await b.cipher.rotateIfDue(), false)

    // Within the grace period after the rotation (4000 + 5000), the old header's first messages decrypt.
    assert.equal(plaintextOf((await deliver(b, early, [earlyFirst as Ciphertext]))[0]), 'made from the old header')
    // The new header works too, of course.
    const fresh = await memoryParty(options)
    await fresh.cipher.startSession(b.peer, { header: h2 })
    const [freshFirst] = await encryptTexts(fresh, b, ['from h2'])
    assert.equal(plaintextOf((await deliver(b, fresh, [freshFirst as Ciphertext]))[0]), 'from h2')

    // Grace over, another rotation: the first header's keys are gone.
    clock.t = t0 + 10_000
    assert.equal(await b.cipher.rotateIfDue(), true)
    const [gone] = await deliver(b, late, [lateFirst as Ciphertext])
    assert.equal(failureOf(gone).name, 'MissingPreKeyError')
    assert.equal(await b.cipher.hasSession(late.peer), false)
    assert.equal((await b.store.getCrypto(CryptoKeys.signedPreKey(h1.signedPreKey.id))), undefined, 'old signed prekey deleted')
    assert.equal((await b.store.getCrypto(CryptoKeys.kyberPreKey(h1.kyberPreKey.id))), undefined, 'old Kyber prekey deleted')
    assert.deepEqual(await b.store.listCrypto(CryptoKeys.kyberUsedPrefix(h1.kyberPreKey.id)), [], 'its replay markers too')
  })

  it('a failed write of new local keys leaves the cipher as it was: header, rotation schedule, one-time key count', async () => {
    const clock = { t: 1_700_000_000_000 }
    const options = { now: () => clock.t, rotationMs: 1000, graceMs: 5000 }
    const who = await libp2pKey()
    const store = new FlakyStore()
    const b: Party = { ...who, store, cipher: await openParty(store, who, options) }
    const h1 = await b.cipher.header()

    clock.t += 1000
    store.failures = 1
    await assert.rejects(b.cipher.rotateIfDue(), /disk full/)
    assert.deepEqual(await b.cipher.header(), h1, 'the header still names keys that exist')
    const a = await memoryParty(options)
    await a.cipher.startSession(b.peer, await b.cipher.ownBundle(false))
    const [first] = await encryptTexts(a, b, ['after a failed rotation'])
    assert.equal(plaintextOf((await deliver(b, a, [first as Ciphertext]))[0]), 'after a failed rotation')
    assert.equal(await b.cipher.rotateIfDue(), true, 'the rotation is still due, and now succeeds')
    const h2 = await b.cipher.header()
    assert.notEqual(h2.signedPreKey.id, h1.signedPreKey.id)
    const c = await memoryParty(options)
    await c.cipher.startSession(b.peer, { header: h2 })
    const [fromC] = await encryptTexts(c, b, ['new header'])
    assert.equal(plaintextOf((await deliver(b, c, [fromC as Ciphertext]))[0]), 'new header')

    store.failures = 1
    await assert.rejects(b.cipher.ownBundle(true), /disk full/)
    await assertOneTimeKeysConsistent(b)
    store.failures = 1
    await assert.rejects(b.cipher.newOneTimeKeys(5), /disk full/)
    await assertOneTimeKeysConsistent(b)
    assert.equal((await b.cipher.newOneTimeKeys(5)).length, 5)
    assert.equal(b.cipher.oneTimeKeyCount, 5)
    await assertOneTimeKeysConsistent(b)
  })

  it('identity change seen in a bundle: IdentityChangedError, nothing goes to the new key until it is accepted', async () => {
    const { a, b, changes } = await watchedPair()
    const before = await a.cipher.safetyNumber(b.peer)

    // B re-installs: same libp2p key, new Signal identity and store.
    const b2 = await memoryParty({}, b)
    assert.notDeepEqual(b2.cipher.identityKey, b.cipher.identityKey)
    const newBundle = await b2.cipher.ownBundle(true)
    await assert.rejects(a.cipher.startSession(b.peer, newBundle), { name: 'IdentityChangedError' })
    assert.equal((await a.cipher.identityStatus(b.peer)).state, 'changed')
    assert.deepEqual(changes, [b.peer])
    // Seeing the same new key again does not report it again.
    await assert.rejects(a.cipher.startSession(b.peer, newBundle), { name: 'IdentityChangedError' })
    assert.deepEqual(changes, [b.peer])

    // The old session (to the old, still accepted key) is all A has: B' cannot read what it makes.
    const [old] = await encryptTexts(a, b2, ['to the old key'])
    assert.ok(old !== undefined)
    assert.equal(old.kind, 'whisper')
    failureOf((await deliver(b2, a, [old]))[0])
    assert.equal(await b2.cipher.hasSession(a.peer), false)

    const changed = await a.cipher.safetyNumber(b.peer)
    assert.equal(changed.changed, true)
    assert.notEqual(changed.displayable, before.displayable)

    assert.equal((await a.cipher.acceptIdentity(b.peer)).state, 'trusted')
    assert.equal(await a.cipher.hasSession(b.peer), false, 'the session with the old key is dropped on acceptance')
    await assert.rejects(encryptTexts(a, b2, ['x']), { name: 'NoSessionError' })
    await a.cipher.startSession(b.peer, newBundle)
    const [first] = await encryptTexts(a, b2, ['to the new key'])
    assert.equal(plaintextOf((await deliver(b2, a, [first as Ciphertext]))[0]), 'to the new key')
    const [reply] = await encryptTexts(b2, a, ['from the new key'])
    assert.equal(plaintextOf((await deliver(a, b2, [reply as Ciphertext]))[0]), 'from the new key')
    assert.equal((await a.cipher.identityStatus(b.peer)).state, 'trusted')
    assert.equal((await a.cipher.safetyNumber(b.peer)).displayable, changed.displayable)
  })

  it('identity change seen in a first message: decrypted and reported; sending waits for acceptance', async () => {
    const { a, b, changes } = await watchedPair()

    const b2 = await memoryParty({}, b)
    await b2.cipher.startSession(a.peer, await a.cipher.ownBundle(true))
    const [first] = await encryptTexts(b2, a, ['I re-installed'])
    assert.equal(first?.kind, 'prekey')
    assert.equal(plaintextOf((await deliver(a, b2, [first]))[0]), 'I re-installed', 'receiving from a changed key is allowed')
    const status = await a.cipher.identityStatus(b.peer)
    assert.equal(status.state, 'changed')
    assert.equal(typeof status.changedAt, 'number')
    assert.deepEqual(changes, [b.peer])

    await assert.rejects(encryptTexts(a, b2, ['not yet']), { name: 'IdentityChangedError' })
    // More from B' is still received meanwhile.
    const [more] = await encryptTexts(b2, a, ['still me'])
    assert.equal(plaintextOf((await deliver(a, b2, [more as Ciphertext]))[0]), 'still me')
    await assert.rejects(encryptTexts(a, b2, ['not yet']), { name: 'IdentityChangedError' })
    assert.deepEqual(changes, [b.peer], 'reported once')

    assert.equal((await a.cipher.acceptIdentity(b.peer)).state, 'trusted')
    const [ok] = await encryptTexts(a, b2, ['welcome back'])
    assert.equal(plaintextOf((await deliver(b2, a, [ok as Ciphertext]))[0]), 'welcome back')

    // A first message from an identity that is neither accepted nor bound to the peer id is refused.
    const b3 = await memoryParty({}, b)
    await b3.cipher.startSession(a.peer, await a.cipher.ownBundle(false))
    const [fake] = await encryptTexts(b3, a, ['impostor'])
    const mallory = await libp2pKey()
    assert.equal(failureOf((await deliver(a, b3, [fake as Ciphertext], await signBinding(mallory.key, b3.cipher.identityKey)))[0]).name, 'BindingError')
    assert.equal((await a.cipher.identityStatus(b.peer)).state, 'trusted', 'a rejected message records no identity change')
  })

  it('safety numbers: equal on both sides, verify checks them, and an identity change shows', async () => {
    const a = await memoryParty()
    const b = await memoryParty()
    await assert.rejects(a.cipher.safetyNumber(b.peer), { name: 'UnknownIdentityError' })
    await converse(a, b)
    const na = await a.cipher.safetyNumber(b.peer)
    const nb = await b.cipher.safetyNumber(a.peer)
    assert.match(na.displayable, /^\d{5}( \d{5}){11}$/)
    assert.equal(na.displayable.replace(/ /g, '').length, 60)
    assert.equal(na.displayable, nb.displayable)
    assert.ok(na.scannable.length > 0)
    assert.ok(Buffer.from(na.scannable, 'base64').byteLength > 32)
    assert.equal(na.changed, false)
    assert.equal(na.verified, false)

    const wrong = na.displayable.replace(/^\d/, (d) => String((Number(d) + 1) % 10))
    await assert.rejects(a.cipher.verify(b.peer, wrong), { name: SafetyNumberMismatchError.name })
    await assert.rejects(a.cipher.verify(b.peer, 'not a number'), { name: 'SafetyNumberMismatchError' })
    assert.equal((await a.cipher.identityStatus(b.peer)).state, 'trusted')
    assert.equal((await a.cipher.verify(b.peer, na.displayable)).state, 'verified')
    assert.equal((await a.cipher.identityStatus(b.peer)).state, 'verified')
    assert.equal((await a.cipher.safetyNumber(b.peer)).verified, true)
    // Typed without spaces works too; and B verifies A by scanning A's code.
    assert.equal((await b.cipher.verify(a.peer, nb.displayable.replace(/ /g, ''))).state, 'verified')
    const c = await memoryParty()
    await converse(c, a)
    const nc = await c.cipher.safetyNumber(a.peer)
    const nca = await a.cipher.safetyNumber(c.peer)
    assert.equal((await c.cipher.verify(a.peer, nca.scannable)).state, 'verified', 'the other side\'s scanned code verifies')
    // A code scanned from someone else's conversation does not.
    await assert.rejects(a.cipher.verify(c.peer, na.scannable), { name: 'SafetyNumberMismatchError' })
    await assert.rejects(a.cipher.verify(c.peer, nc.scannable.slice(0, 8)), { name: 'SafetyNumberMismatchError' })

    // B re-installs and writes first: the number changes, and the verification no longer holds.
    const b2 = await memoryParty({}, b)
    await b2.cipher.startSession(a.peer, await a.cipher.ownBundle(true))
    await deliver(a, b2, await encryptTexts(b2, a, ['new me']))
    const after = await a.cipher.safetyNumber(b.peer)
    assert.equal(after.changed, true)
    assert.equal(after.verified, false)
    assert.notEqual(after.displayable, na.displayable)
    assert.equal((await a.cipher.identityStatus(b.peer)).state, 'changed')
    // Verifying with the old number fails; with B''s number it verifies and accepts the new key.
    await assert.rejects(a.cipher.verify(b.peer, na.displayable), { name: 'SafetyNumberMismatchError' })
    assert.equal((await a.cipher.identityStatus(b.peer)).state, 'changed')
    const nb2 = await b2.cipher.safetyNumber(a.peer)
    assert.equal(nb2.displayable, after.displayable)
    assert.equal((await a.cipher.verify(b.peer, nb2.displayable)).state, 'verified')
    const [hi] = await encryptTexts(a, b2, ['verified you'])
    assert.equal(plaintextOf((await deliver(b2, a, [hi as Ciphertext]))[0]), 'verified you')
  })

  it('50 concurrent encrypt calls to one peer make ciphertexts that all decrypt, in call order', async () => {
    const a = await levelParty()
    const b = await levelParty()
    await converse(a, b)
    const texts = Array.from({ length: 50 }, (_, i) => `concurrent ${i}`)
    const cts = await Promise.all(texts.map(async (t) => (await encryptTexts(a, b, [t]))[0] as Ciphertext))
    assert.equal(new Set(cts.map((c) => Buffer.from(c.body).toString('hex'))).size, 50)
    for (let i = 0; i < cts.length; i++) {
      assert.equal(plaintextOf((await deliver(b, a, [cts[i] as Ciphertext]))[0]), texts[i])
    }
    // Concurrent encrypts and decrypts on both sides at once.
    const [x, y] = await Promise.all([
      Promise.all(texts.slice(0, 20).map(async (t) => (await encryptTexts(a, b, [t]))[0] as Ciphertext)),
      Promise.all(texts.slice(20, 40).map(async (t) => (await encryptTexts(b, a, [t]))[0] as Ciphertext))
    ])
    const [rx, ry] = await Promise.all([
      Promise.all(x.map(async (ct) => (await deliver(b, a, [ct]))[0])),
      Promise.all(y.map(async (ct) => (await deliver(a, b, [ct]))[0]))
    ])
    assert.deepEqual(rx.map(plaintextOf), texts.slice(0, 20))
    assert.deepEqual(ry.map(plaintextOf), texts.slice(20, 40))
  })
})

/** `from`'s distribution for (group, epoch), processed by each of `to` (in Parley it travels over the 1:1 session). */
async function distribute (group: GroupId, epoch: number, from: Party, to: readonly Party[]): Promise<void> {
  const skdm = await from.cipher.groupDistribution(group, epoch)
  for (const member of to) {
    const { distributionId } = await member.cipher.processGroupDistribution(from.peer, skdm)
    assert.equal(distributionId, distributionIdOf(group, from.peer, epoch))
  }
}

async function groupSend (from: Party, group: GroupId, epoch: number, text: string): Promise<Uint8Array> {
  return await from.cipher.groupEncrypt(group, epoch, encoder.encode(text))
}

/** `to` decrypts a group message from `from` and saves it with its state changes in one group-area write, as the manager does. */
async function groupReceive (to: Party, from: Party, ct: Uint8Array): Promise<string> {
  return await to.cipher.groupDecrypt(from.peer, ct, async (result, changes) => {
    await to.store.putGroupEntries(new Map([[`g/${result.distributionId}/${hexOf(ct).slice(-32)}`, result.plaintext]]), changes)
    return decoder.decode(result.plaintext)
  })
}

function hexOf (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

/** A group of three level-backed members, each holding the others' epoch-0 distributions. */
async function threeMembers (): Promise<{ group: GroupId, alice: Party, bob: Party, carol: Party }> {
  const [alice, bob, carol] = await Promise.all([levelParty(), levelParty(), levelParty()])
  const group = newGroupId()
  await distribute(group, 0, alice, [bob, carol])
  await distribute(group, 0, bob, [alice, carol])
  await distribute(group, 0, carol, [alice, bob])
  return { group, alice, bob, carol }
}

describe('the Signal identity key sealed by a KeyProtector', () => {
  it('is stored sealed, opens with its protector (same identity), is refused without it, and a plain one is sealed on open', async () => {
    const protector = fakeProtector(0x42)
    const party = await levelParty({ protector })
    const identity = party.cipher.identityKey
    const stored = await party.store.getCrypto(CryptoKeys.selfIdentity)
    assert.ok(stored !== undefined)
    assert.equal(decodeSealed(stored)?.protector, 'fake-keychain', 'sealed in the store')
    const header = await party.cipher.header()

    await reopen(party, { protector })
    assert.deepEqual(party.cipher.identityKey, identity, 'the same identity after a restart')
    assert.deepEqual((await party.cipher.header()).identityKey, header.identityKey)

    await party.store.close()
    party.store = new LevelStore(party.location as string)
    await party.store.open()
    await assert.rejects(openParty(party.store, party), (err: Error) => err.name === 'SealedKeyError' && /sealed by "fake-keychain"/.test(err.message))
    await assert.rejects(openParty(party.store, party, { protector: fakeProtector(0x43) }), (err: Error) => err.name === 'SealedKeyError' && /cannot be opened/.test(err.message))
    assert.deepEqual(await party.store.getCrypto(CryptoKeys.selfIdentity), stored, 'a refused key is left alone')

    // A data dir from before (plain key) adopted by the desktop app: sealed on open, same identity.
    const plain = await levelParty()
    const plainIdentity = plain.cipher.identityKey
    assert.equal(decodeSealed(await plain.store.getCrypto(CryptoKeys.selfIdentity) as Uint8Array), undefined, 'no protector: plain')
    await reopen(plain, { protector })
    assert.deepEqual(plain.cipher.identityKey, plainIdentity)
    assert.equal(decodeSealed(await plain.store.getCrypto(CryptoKeys.selfIdentity) as Uint8Array)?.protector, 'fake-keychain', 'now sealed')
  })
})

describe('SignalCipher sender keys', () => {
  it('distribution ids: derived from (group, sender, epoch), version-8 UUIDs, the same everywhere; bad epochs refused', async () => {
    const a = await libp2pKey()
    const b = await libp2pKey()
    const g = newGroupId()
    const id = distributionIdOf(g, a.peer, 0)
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    assert.equal(distributionIdOf(g, a.peer, 0), id)
    const others = [distributionIdOf(g, a.peer, 1), distributionIdOf(g, b.peer, 0), distributionIdOf(newGroupId(), a.peer, 0), distributionIdOf(g, a.peer, 2 ** 40)]
    assert.equal(new Set([id, ...others]).size, 5)
    for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53]) assert.throws(() => distributionIdOf(g, a.peer, bad), { name: 'InvalidRequestError' })
  })

  it('three members distribute sender keys and read each other\'s group messages, padded, in or out of order', async (t) => {
    const { group, alice, bob, carol } = await threeMembers()
    const members = [alice, bob, carol]
    for (const from of members) {
      const cts: Uint8Array[] = []
      for (let i = 0; i < 5; i++) cts.push(await groupSend(from, group, 0, `${from.peer.slice(-4)} says ${i}`))
      assert.equal(from.cipher.distributionIdOfMessage(cts[0] as Uint8Array), distributionIdOf(group, from.peer, 0))
      for (const to of members.filter((m) => m !== from)) {
        // Bob reads in order; the others in reverse (skipped message keys are kept).
        const order = to === bob ? [0, 1, 2, 3, 4] : [4, 3, 2, 1, 0]
        for (const i of order) assert.equal(await groupReceive(to, from, cts[i] as Uint8Array), `${from.peer.slice(-4)} says ${i}`)
      }
    }
    // Padding: 1 byte and 150 bytes make equally long ciphertexts; 64 KiB and empty round-trip.
    const short = await alice.cipher.groupEncrypt(group, 0, new Uint8Array(1))
    const long = await alice.cipher.groupEncrypt(group, 0, new Uint8Array(150))
    assert.equal(short.byteLength, long.byteLength)
    const big = new Rng(5).bytes(64 * 1024)
    const bigCt = await alice.cipher.groupEncrypt(group, 0, big)
    const emptyCt = await alice.cipher.groupEncrypt(group, 0, new Uint8Array(0))
    const plain = async (ct: Uint8Array): Promise<Uint8Array> => await bob.cipher.groupDecrypt(alice.peer, ct, async (r, changes) => {
      await bob.store.putCrypto(changes)
      return r.plaintext
    })
    for (const ct of [short, long]) await plain(ct)
    assert.deepEqual(await plain(bigCt), big)
    assert.equal((await plain(emptyCt)).byteLength, 0)
    // The decrypted records went into the group area with the chain state.
    assert.equal((await bob.store.listGroupEntries(`g/${distributionIdOf(group, alice.peer, 0)}/`)).length, 5)

    // Our own sending needs a distribution first; a second group is independent of the first.
    const other = newGroupId()
    await assert.rejects(alice.cipher.groupEncrypt(other, 0, encoder.encode('x')), { name: 'NoSenderKeyError' })
    await distribute(other, 0, alice, [bob])
    const ct = await groupSend(alice, other, 0, 'other group')
    assert.equal(await groupReceive(bob, alice, ct), 'other group')
    await assert.rejects(groupReceive(carol, alice, ct), { name: 'NoSenderKeyError' })

    // Timing (not asserted): groupEncrypt + groupDecrypt of a 300-byte record, each with its durable write.
    const n = 200
    const record = new Rng(9).bytes(300)
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const c = await alice.cipher.groupEncrypt(group, 0, record)
      await bob.cipher.groupDecrypt(alice.peer, c, async (_r, changes) => { await bob.store.putGroupEntries(new Map([[`t/${i}`, record]]), changes) })
    }
    const perMessage = (performance.now() - t0) / n
    t.diagnostic(`groupEncrypt + groupDecrypt (LevelStore, 300-byte record): ${perMessage.toFixed(3)} ms per message over ${n}`)
  })

  it('chains persist: after a cipher restart or a store reopen, sending continues at new positions and receiving continues where it was', async () => {
    const { group, alice, bob } = await threeMembers()
    const iterations: number[] = []
    const send = async (text: string): Promise<Uint8Array> => {
      const ct = await groupSend(alice, group, 0, text)
      iterations.push(SenderKeyMessage.deserialize(new Uint8Array(ct)).iteration())
      return ct
    }
    const early = [await send('one'), await send('two')]
    for (const [i, ct] of early.entries()) assert.equal(await groupReceive(bob, alice, ct), ['one', 'two'][i])

    // The cipher's memory is lost (a crash of everything but what the store acknowledged).
    alice.cipher = await openParty(alice.store, alice)
    bob.cipher = await openParty(bob.store, bob)
    const mid = await send('three')
    assert.equal(await groupReceive(bob, alice, mid), 'three')
    await assert.rejects(groupReceive(bob, alice, early[1] as Uint8Array), { name: 'DuplicateCiphertextError' })

    // Both stores closed and reopened.
    await reopen(alice)
    await reopen(bob)
    const late = [await send('four'), await send('five')]
    // Our distribution for the same epoch is the same chain after the restart (no new key).
    const again = await alice.cipher.groupDistribution(group, 0)
    assert.equal(alice.cipher.distributionIdOfMessage(late[0] as Uint8Array), distributionIdOf(group, alice.peer, 0))
    assert.ok(again.byteLength > 0)
    assert.equal(await groupReceive(bob, alice, late[1] as Uint8Array), 'five')
    assert.equal(await groupReceive(bob, alice, late[0] as Uint8Array), 'four')
    for (const ct of [...early, mid]) await assert.rejects(groupReceive(bob, alice, ct), { name: 'DuplicateCiphertextError' })
    assert.deepEqual(iterations, [0, 1, 2, 3, 4], 'every ciphertext at its own chain position')
  })

  it('a replay is DuplicateCiphertextError; tampered or garbage bytes are DecryptionError and the chain still reads the next message', async () => {
    const { group, alice, bob } = await threeMembers()
    const first = await groupSend(alice, group, 0, 'first')
    assert.equal(await groupReceive(bob, alice, first), 'first')
    let saves = 0
    const counting = async (): Promise<void> => { await bob.cipher.groupDecrypt(alice.peer, first, async () => { saves++ }) }
    await assert.rejects(counting(), (err: unknown) => err instanceof DuplicateCiphertextError)
    assert.equal(saves, 0, 'save is not called for a failure')

    const second = await groupSend(alice, group, 0, 'second')
    for (const at of [0, 5, 20, second.byteLength - 70, second.byteLength - 1]) {
      const tampered = second.slice()
      tampered[at] = (tampered[at] as number) ^ 0x01
      await assert.rejects(groupReceive(bob, alice, tampered), (err: unknown) => {
        assert.ok(err instanceof ParleyError, String(err))
        // A flipped distribution-id byte names a distribution bob does not hold.
        assert.ok(err instanceof DecryptionError || err instanceof NoSenderKeyError, `${err.name}: ${err.message}`)
        return true
      })
    }
    for (const garbage of [new Uint8Array(0), new Uint8Array([1, 2, 3]), new Rng(3).bytes(200), second.subarray(0, 40)]) {
      await assert.rejects(groupReceive(bob, alice, garbage), { name: 'DecryptionError' })
      assert.throws(() => bob.cipher.distributionIdOfMessage(garbage), { name: 'InvalidSenderKeyMessageError' })
    }
    assert.equal(await groupReceive(bob, alice, second), 'second')
    assert.equal(await groupReceive(bob, alice, await groupSend(alice, group, 0, 'third')), 'third')
  })

  it('refuses distributions that are garbage or claim to be our own, with InvalidSenderKeyDistributionError', async () => {
    const { group, alice, bob } = await threeMembers()
    const skdm = await alice.cipher.groupDistribution(group, 0)
    for (const garbage of [new Uint8Array(0), new Uint8Array([1, 2, 3]), new Rng(4).bytes(96), skdm.subarray(0, 50), await groupSend(alice, group, 0, 'not a distribution')]) {
      await assert.rejects(bob.cipher.processGroupDistribution(alice.peer, garbage), { name: 'InvalidSenderKeyDistributionError' })
    }
    await assert.rejects(alice.cipher.processGroupDistribution(alice.peer, await bob.cipher.groupDistribution(group, 0)), { name: 'InvalidSenderKeyDistributionError' })
    // Alice's own sending was not disturbed.
    assert.equal(await groupReceive(bob, alice, await groupSend(alice, group, 0, 'still mine')), 'still mine')
    // The same distribution processed again keeps the chain's position: a replay stays a duplicate.
    const ct = await groupSend(alice, group, 0, 'once')
    assert.equal(await groupReceive(bob, alice, ct), 'once')
    await bob.cipher.processGroupDistribution(alice.peer, skdm)
    await assert.rejects(groupReceive(bob, alice, ct), { name: 'DuplicateCiphertextError' })
  })

  it('NoSenderKeyError: from a member whose distribution was never processed, or a message passed off as another member\'s', async () => {
    const [alice, bob, carol] = await Promise.all([levelParty(), levelParty(), levelParty()])
    const group = newGroupId()
    await distribute(group, 0, alice, [bob])
    await distribute(group, 0, carol, [alice])
    const fromCarol = await groupSend(carol, group, 0, 'bob never got my key')
    await assert.rejects(groupReceive(bob, carol, fromCarol), { name: 'NoSenderKeyError' })
    const fromAlice = await groupSend(alice, group, 0, 'mine')
    // Carol re-publishing Alice's ciphertext as her own: bob has no distribution of that id from carol.
    await assert.rejects(groupReceive(bob, carol, fromAlice), { name: 'NoSenderKeyError' })
    // Alice holds Carol's key, but a message of Alice's own distribution presented as Carol's does not decrypt.
    await assert.rejects(groupReceive(alice, carol, fromAlice), { name: 'NoSenderKeyError' })
    assert.equal(await groupReceive(bob, alice, fromAlice), 'mine')
    // A sender who lost its state and made a new chain under the same id: NoSenderKeyError until its new distribution arrives.
    const reinstalled = await memoryParty({}, { key: alice.key, peer: alice.peer })
    const skdm = await reinstalled.cipher.groupDistribution(group, 0)
    const fresh = await groupSend(reinstalled, group, 0, 'new chain')
    await assert.rejects(groupReceive(bob, reinstalled, fresh), { name: 'NoSenderKeyError' })
    await bob.cipher.processGroupDistribution(reinstalled.peer, skdm)
    assert.equal(await groupReceive(bob, reinstalled, fresh), 'new chain')
  })

  it('a distribution hands out the chain from where it stands: what was sent before it reads as DuplicateCiphertextError', async () => {
    const [alice, bob, dave] = await Promise.all([levelParty(), levelParty(), levelParty()])
    const group = newGroupId()
    await distribute(group, 0, alice, [bob])
    const early = await groupSend(alice, group, 0, 'before dave joined')
    assert.equal(await groupReceive(bob, alice, early), 'before dave joined')
    await distribute(group, 0, alice, [dave])
    // libsignal cannot tell "before my distribution" from "already read": both are an old counter.
    await assert.rejects(groupReceive(dave, alice, early), { name: 'DuplicateCiphertextError' })
    const late = await groupSend(alice, group, 0, 'after dave joined')
    for (const m of [bob, dave]) assert.equal(await groupReceive(m, alice, late), 'after dave joined')
  })

  it('removal: a forgotten sender\'s messages fail, and a new epoch\'s messages are unreadable to a member without its distribution', async () => {
    const { group, alice, bob, carol } = await threeMembers()
    const before = await groupSend(alice, group, 0, 'before the removal')
    const carolBefore = await groupSend(carol, group, 0, 'carol, still a member')
    for (const m of [bob, carol]) assert.equal(await groupReceive(m, alice, before), 'before the removal')

    // Carol is removed: alice and bob forget her key and start epoch 1 among themselves.
    for (const m of [alice, bob]) await m.cipher.forgetGroupSender(carol.peer, distributionIdOf(group, carol.peer, 0))
    await distribute(group, 1, alice, [bob])
    await distribute(group, 1, bob, [alice])

    const after = await groupSend(alice, group, 1, 'after the removal')
    assert.equal(alice.cipher.distributionIdOfMessage(after), distributionIdOf(group, alice.peer, 1))
    assert.equal(await groupReceive(bob, alice, after), 'after the removal')
    await assert.rejects(groupReceive(carol, alice, after), { name: 'NoSenderKeyError' })
    const fromBob = await groupSend(bob, group, 1, 'also after')
    await assert.rejects(groupReceive(carol, bob, fromBob), { name: 'NoSenderKeyError' })
    assert.equal(await groupReceive(alice, bob, fromBob), 'also after')

    // Carol's messages, earlier (undelivered) or later, no longer decrypt for alice or bob.
    const carolAfter = await groupSend(carol, group, 0, 'let me back in')
    for (const m of [alice, bob]) {
      await assert.rejects(groupReceive(m, carol, carolBefore), { name: 'NoSenderKeyError' })
      await assert.rejects(groupReceive(m, carol, carolAfter), { name: 'NoSenderKeyError' })
    }
    // Even after a reopen; the forgetting is durable. Distribution ids are accepted in any case.
    await reopen(bob)
    await assert.rejects(groupReceive(bob, carol, carolAfter), { name: 'NoSenderKeyError' })
    await bob.cipher.forgetGroupSender(alice.peer, distributionIdOf(group, alice.peer, 0).toUpperCase())
    await assert.rejects(groupReceive(bob, alice, await groupSend(alice, group, 0, 'old epoch')), { name: 'NoSenderKeyError' })
    await bob.cipher.forgetGroupSender(carol.peer, distributionIdOf(group, carol.peer, 7)) // never held: not an error
    // The epoch-1 chain still reads.
    assert.equal(await groupReceive(bob, alice, await groupSend(alice, group, 1, 'epoch 1 goes on')), 'epoch 1 goes on')
  })

  it('only a committed groupDecrypt moves the chain: a failed save leaves it, and the message decrypts on retry', async () => {
    const { group, alice, bob } = await threeMembers()
    const cts = [await groupSend(alice, group, 0, 'one'), await groupSend(alice, group, 0, 'two')]
    const failing = async (ct: Uint8Array): Promise<void> => {
      await bob.cipher.groupDecrypt(alice.peer, ct, async (result: GroupDecryptResult) => {
        assert.equal(result.distributionId, distributionIdOf(group, alice.peer, 0))
        throw new Error('disk full')
      })
    }
    await assert.rejects(failing(cts[1] as Uint8Array), /disk full/)
    await assert.rejects(failing(cts[1] as Uint8Array), /disk full/, 'not a duplicate: nothing was committed')
    assert.equal(await groupReceive(bob, alice, cts[0] as Uint8Array), 'one')
    // Nothing of the failed saves reached the store, not after a restart either.
    await reopen(bob)
    assert.equal(await groupReceive(bob, alice, cts[1] as Uint8Array), 'two')
    await assert.rejects(groupReceive(bob, alice, cts[1] as Uint8Array), { name: 'DuplicateCiphertextError' })
  })

  it('a failed write of a groupEncrypt or groupDistribution step hands out nothing, and sending goes on afterwards', async () => {
    const who = await libp2pKey()
    const store = new FlakyStore()
    await store.open()
    const alice: Party = { ...who, store, cipher: await openParty(store, who) }
    const bob = await memoryParty()
    const group = newGroupId()
    store.failures = 1
    await assert.rejects(alice.cipher.groupDistribution(group, 0), /disk full/)
    await assert.rejects(alice.cipher.groupEncrypt(group, 0, encoder.encode('x')), { name: 'NoSenderKeyError' }, 'the failed distribution made no key')
    await distribute(group, 0, alice, [bob])
    const first = await groupSend(alice, group, 0, 'first')
    store.failures = 1
    await assert.rejects(groupSend(alice, group, 0, 'lost'), /disk full/)
    const second = await groupSend(alice, group, 0, 'second')
    assert.deepEqual([first, second].map((c) => SenderKeyMessage.deserialize(new Uint8Array(c)).iteration()), [0, 1],
      'the position of the failed step was never handed out, so it is used now')
    assert.equal(await groupReceive(bob, alice, second), 'second')
    assert.equal(await groupReceive(bob, alice, first), 'first')
  })

  it('concurrent calls: each groupEncrypt takes its own chain position; the same message decrypted twice at once is read once', async () => {
    const { group, alice, bob } = await threeMembers()
    const texts = Array.from({ length: 30 }, (_, i) => `concurrent ${i}`)
    const cts = await Promise.all(texts.map(async (t) => await groupSend(alice, group, 0, t)))
    assert.deepEqual(cts.map((c) => SenderKeyMessage.deserialize(new Uint8Array(c)).iteration()), texts.map((_, i) => i))
    const results = await Promise.allSettled([...cts, ...cts].map(async (ct) => await groupReceive(bob, alice, ct)))
    const read = results.filter((r) => r.status === 'fulfilled').map((r) => r.value)
    assert.deepEqual(read, texts, 'each text read once, in call order')
    for (const r of results.slice(cts.length)) {
      assert.ok(r.status === 'rejected' && r.reason instanceof DuplicateCiphertextError)
    }
  })

  it('a message more than 25,000 steps ahead of the chain is SenderKeyTooFarAheadError (tampered, DecryptionError); nothing moves', async () => {
    const { group, alice, bob } = await threeMembers()
    const distributionId = distributionIdOf(group, alice.peer, 0)
    const self = ProtocolAddress.new(alice.peer, DEVICE_ID)
    // Straight through libsignal on alice's uncommitted write set: fast, and thrown away after.
    let far = new Uint8Array(0)
    for (let i = 0; i < 25_002; i++) far = (await groupEncrypt(self, distributionId, alice.cipher.state.senderKeys, pad(encoder.encode('far')))).serialize()
    alice.cipher.state.discard()
    await assert.rejects(groupReceive(bob, alice, far), (err: unknown) => err instanceof SenderKeyTooFarAheadError)
    const tampered = far.slice()
    tampered[tampered.byteLength - 70] = (tampered[tampered.byteLength - 70] as number) ^ 1
    await assert.rejects(groupReceive(bob, alice, tampered), { name: 'DecryptionError' })
    assert.equal(await groupReceive(bob, alice, await groupSend(alice, group, 0, 'near')), 'near')
  })
})
