import '../../core/polyfill.js'
import { before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey as Libp2pPrivateKey } from '@libp2p/interface'
import { IdentityKeyPair } from '@signalapp/libsignal-client'
import { signBinding } from '../../core/crypto/binding.js'
import type { PeerIdString } from '../../core/ids.js'
import {
  bundleFromPb, bundleToPb, checkHeaderShape, checkOneTimeKeys, decodeHeader, encodeHeader, headerFromPb, headerToPb,
  oneTimeKeysFromPb, verifyHeader, type BundleHeaderData, type OneTimeKeyData
} from '../../core/protocols/prekeys/codec.js'
import { MAX_ONE_TIME_KEYS_PER_PUBLISH, MAX_PREKEY_REQUEST_BYTES, MAX_PREKEY_RESPONSE_BYTES } from '../../core/protocols/prekeys/constants.js'
import { refusalError } from '../../core/protocols/prekeys/client.js'
import { Bundle, BundleHeader, PrekeyRequest, PrekeyResponse } from '../../core/protocols/prekeys/pb/prekeys.js'
import { makeOneTimeKeys, makeSignalBundle, type SignalBundleKeys } from '../helpers/signal-keys.js'

/** A deep copy with `change` applied (the header under test is never mutated). */
function tweak (header: BundleHeaderData, change: (h: BundleHeaderData) => void): BundleHeaderData {
  const c = (b: Uint8Array): Uint8Array => new Uint8Array(b) // Buffer#slice would share memory
  const copy: BundleHeaderData = {
    ...header,
    identityKey: c(header.identityKey),
    binding: c(header.binding),
    signedPreKey: { ...header.signedPreKey, publicKey: c(header.signedPreKey.publicKey), signature: c(header.signedPreKey.signature) },
    kyberPreKey: { ...header.kyberPreKey, publicKey: c(header.kyberPreKey.publicKey), signature: c(header.kyberPreKey.signature) }
  }
  change(copy)
  return copy
}

function flip (bytes: Uint8Array, at: number): void {
  bytes[at] = (bytes[at] ?? 0) ^ 0x01
}

describe('prekey codec', () => {
  let key: Libp2pPrivateKey
  let owner: PeerIdString
  let keys: SignalBundleKeys

  before(async () => {
    key = await generateKeyPair('Ed25519')
    owner = peerIdFromPrivateKey(key).toString() as PeerIdString
    keys = await makeSignalBundle(key, { oneTimeKeys: 3 })
  })

  it('verifies a real bundle made with libsignal', async () => {
    await verifyHeader(owner, keys.header)
  })

  it('checks the shape of a header: every field present, exact sizes, ranges', () => {
    checkHeaderShape(keys.header)
    const bad: Array<[string, (h: BundleHeaderData) => void]> = [
      ['identity key 32 bytes', (h) => { h.identityKey = h.identityKey.subarray(0, 32) }],
      ['identity key 34 bytes', (h) => { h.identityKey = new Uint8Array([...h.identityKey, 0]) }],
      ['empty binding', (h) => { h.binding = new Uint8Array(0) }],
      ['binding of 129 bytes', (h) => { h.binding = new Uint8Array(129) }],
      ['device id 0', (h) => { h.deviceId = 0 }],
      ['device id 128', (h) => { h.deviceId = 128 }],
      ['registration id -1', (h) => { h.registrationId = -1 }],
      ['registration id 1.5', (h) => { h.registrationId = 1.5 }],
      ['registration id 2^32', (h) => { h.registrationId = 2 ** 32 }],
      ['signed prekey id NaN', (h) => { h.signedPreKey.id = Number.NaN }],
      ['signed prekey missing', (h) => { (h as Partial<BundleHeaderData>).signedPreKey = undefined }],
      ['signed prekey signature 63 bytes', (h) => { h.signedPreKey.signature = h.signedPreKey.signature.subarray(0, 63) }],
      ['signed prekey is a Kyber-sized key', (h) => { h.signedPreKey.publicKey = h.kyberPreKey.publicKey }],
      ['Kyber prekey is an EC-sized key', (h) => { h.kyberPreKey.publicKey = h.signedPreKey.publicKey }],
      ['Kyber prekey missing', (h) => { (h as Partial<BundleHeaderData>).kyberPreKey = undefined }],
      ['identity key not bytes', (h) => { (h as unknown as { identityKey: string }).identityKey = 'x'.repeat(33) }]
    ]
    for (const [what, change] of bad) {
      assert.throws(() => { checkHeaderShape(tweak(keys.header, change)) }, { name: 'InvalidBundleError' }, what)
    }
    assert.throws(() => { checkHeaderShape(undefined) }, { name: 'InvalidBundleError' })
  })

  it('refuses a header bound to another peer, or whose identity key was swapped (BindingError)', async () => {
    const other = await generateKeyPair('Ed25519')
    const otherId = peerIdFromPrivateKey(other).toString() as PeerIdString
    await assert.rejects(verifyHeader(otherId, keys.header), { name: 'BindingError' }, 'a valid header, but not otherId\'s')
    // A relay swaps in its own identity key and binds it with its own libp2p key.
    const mallory = IdentityKeyPair.generate()
    const swapped = tweak(keys.header, (h) => { h.identityKey = mallory.publicKey.serialize() })
    await assert.rejects(verifyHeader(owner, swapped), { name: 'BindingError' }, 'swapped identity key, owner\'s binding')
    const rebound = tweak(swapped, (h) => { h.binding = new Uint8Array(64) })
    await assert.rejects(verifyHeader(owner, rebound), { name: 'BindingError' }, 'swapped identity key, zero binding')
    const flipped = tweak(keys.header, (h) => { flip(h.binding, 10) })
    await assert.rejects(verifyHeader(owner, flipped), { name: 'BindingError' }, 'binding with a flipped bit')
    await assert.rejects(verifyHeader('not-a-peer-id' as PeerIdString, keys.header), { name: 'InvalidPeerIdError' })
  })

  it('refuses prekeys the identity key did not sign, and keys that do not deserialize (InvalidBundleError)', async () => {
    const cases: Array<[string, (h: BundleHeaderData) => void]> = [
      ['signed prekey signature flipped', (h) => { flip(h.signedPreKey.signature, 5) }],
      ['Kyber prekey signature flipped', (h) => { flip(h.kyberPreKey.signature, 5) }],
      ['signed prekey replaced', (h) => { h.signedPreKey.publicKey = keys.oneTimeKeys[0]?.publicKey ?? new Uint8Array(33) }],
      ['Kyber key bit flipped', (h) => { flip(h.kyberPreKey.publicKey, 100) }],
      ['signatures swapped', (h) => { [h.signedPreKey.signature, h.kyberPreKey.signature] = [h.kyberPreKey.signature, h.signedPreKey.signature] }],
      ['signed prekey with an unknown key type', (h) => { h.signedPreKey.publicKey[0] = 0 }],
      ['Kyber prekey with an unknown key type', (h) => { h.kyberPreKey.publicKey[0] = 0 }]
    ]
    for (const [what, change] of cases) {
      await assert.rejects(verifyHeader(owner, tweak(keys.header, change)), { name: 'InvalidBundleError' }, what)
    }
    // An identity key with an unknown type byte, but properly bound: it must still not deserialize.
    const badIdentity = new Uint8Array(33)
    const bound = tweak(keys.header, (h) => { h.identityKey = badIdentity })
    bound.binding = await signBinding(key, badIdentity)
    await assert.rejects(verifyHeader(owner, bound), { name: 'InvalidBundleError' })
    // Prekeys signed by a different identity key than the bound one.
    const stranger = await makeSignalBundle(key)
    const mixed = tweak(keys.header, (h) => { h.signedPreKey = stranger.header.signedPreKey })
    await assert.rejects(verifyHeader(owner, mixed), { name: 'InvalidBundleError' })
  })

  it('checks one-time keys: count, distinct ids, id range, size, type', () => {
    checkOneTimeKeys(keys.oneTimeKeys)
    checkOneTimeKeys([])
    const one = keys.oneTimeKeys[0] as OneTimeKeyData
    const bad: Array<[string, unknown[]]> = [
      ['duplicate id', [one, { ...one }]],
      ['duplicate id, other key', [one, { id: one.id, publicKey: keys.oneTimeKeys[1]?.publicKey }]],
      ['id -1', [{ ...one, id: -1 }]],
      ['id 2^32', [{ ...one, id: 2 ** 32 }]],
      ['id 0.5', [{ ...one, id: 0.5 }]],
      ['32 bytes', [{ ...one, publicKey: one.publicKey.subarray(1) }]],
      ['unknown key type', [{ ...one, publicKey: new Uint8Array(33) }]],
      ['no key', [{ id: 5 }]],
      ['not an object', [null]]
    ]
    for (const [what, list] of bad) assert.throws(() => { checkOneTimeKeys(list) }, { name: 'InvalidBundleError' }, what)
    const many = makeOneTimeKeys(MAX_ONE_TIME_KEYS_PER_PUBLISH + 1).keys
    assert.throws(() => { checkOneTimeKeys(many) }, { name: 'ProtocolLimitError' })
    checkOneTimeKeys(many.slice(1))
  })

  it('round-trips bundles through the wire types, copying the bytes out of the frame', () => {
    const bundle = { header: keys.header, oneTime: keys.oneTimeKeys[1] as OneTimeKeyData }
    const frame = Buffer.from(Bundle.encode(bundleToPb(bundle))) // a Buffer, as from a socket
    const decoded = bundleFromPb(Bundle.decode(frame))
    assert.deepEqual(decoded, bundle)
    frame.fill(0)
    assert.deepEqual(decoded, bundle, 'no view into the frame')
    assert.ok(!Buffer.isBuffer(decoded.header.identityKey), 'plain Uint8Array, not a Buffer slice')
    assert.deepEqual(bundleFromPb(Bundle.decode(Bundle.encode(bundleToPb({ header: keys.header })))), { header: keys.header })
    assert.deepEqual(decodeHeader(encodeHeader(keys.header)), keys.header)
  })

  it('refuses decoded headers and keys of the wrong shape', () => {
    assert.throws(() => headerFromPb(undefined), { name: 'InvalidBundleError' })
    const pb = headerToPb(keys.header)
    assert.throws(() => headerFromPb({ ...pb, kyberPreKey: undefined }), { name: 'InvalidBundleError' })
    assert.throws(() => headerFromPb({ ...pb, deviceId: 0 }), { name: 'InvalidBundleError' })
    assert.throws(() => bundleFromPb({}), { name: 'InvalidBundleError' })
    assert.throws(() => bundleFromPb({ header: pb, oneTime: { id: 1, publicKey: new Uint8Array(33) } }), { name: 'InvalidBundleError' })
    assert.throws(() => decodeHeader(Uint8Array.from([0x0f, 0xff])), { name: 'InvalidBundleError' })
    assert.throws(() => decodeHeader(BundleHeader.encode({ ...pb, identityKey: new Uint8Array(10) })), { name: 'InvalidBundleError' })
    const twice = keys.oneTimeKeys.slice(0, 1).map((k) => ({ id: k.id, publicKey: new Uint8Array(k.publicKey) }))
    assert.throws(() => oneTimeKeysFromPb([...twice, ...twice]), { name: 'InvalidBundleError' })
    const many = makeOneTimeKeys(MAX_ONE_TIME_KEYS_PER_PUBLISH + 1).keys.map((k) => ({ id: k.id, publicKey: new Uint8Array(k.publicKey) }))
    assert.throws(() => oneTimeKeysFromPb(many), { name: 'ProtocolLimitError' })
  })

  it('fits the largest publish and the largest answer in their frame limits', async () => {
    const big = await makeSignalBundle(key, { oneTimeKeys: MAX_ONE_TIME_KEYS_PER_PUBLISH, firstOneTimeId: 0xffff_ff00 - MAX_ONE_TIME_KEYS_PER_PUBLISH, registrationId: 0xffff_ffff, signedPreKeyId: 0xffff_ffff, kyberPreKeyId: 0xffff_ffff })
    const header = { ...big.header, binding: new Uint8Array(128).fill(0xff) } // the largest binding allowed
    const publish = PrekeyRequest.encode({ op: PrekeyRequest.Op.PUBLISH, header: headerToPb(header), preKeys: big.oneTimeKeys.map((k) => ({ id: k.id, publicKey: new Uint8Array(k.publicKey) })), owner: '' })
    assert.ok(publish.byteLength <= MAX_PREKEY_REQUEST_BYTES, `publish of ${publish.byteLength} bytes`)
    const answer = PrekeyResponse.encode({ ok: true, errorName: '', errorMessage: '', remaining: 0xffff_ffff, bundle: bundleToPb({ header, oneTime: { id: 0xffff_ffff, publicKey: big.oneTimeKeys[0]?.publicKey ?? new Uint8Array() } }) })
    assert.ok(answer.byteLength <= MAX_PREKEY_RESPONSE_BYTES, `answer of ${answer.byteLength} bytes`)
    const refusal = PrekeyResponse.encode({ ok: false, errorName: 'X'.repeat(64), errorMessage: '\u{1F600}'.repeat(256), remaining: 0 })
    assert.ok(refusal.byteLength <= MAX_PREKEY_RESPONSE_BYTES, `refusal of ${refusal.byteLength} bytes`)
  })

  it('turns refusals into named errors', () => {
    for (const name of ['BindingError', 'InvalidBundleError', 'PrekeyStoreFullError', 'PublishNotAcceptedError', 'ProtocolLimitError', 'InvalidPeerIdError', 'InvalidRequestError']) {
      const err = refusalError(name, 'because')
      assert.equal(err.name, name)
      assert.match(err.message, /because/)
    }
    const unknown = refusalError('SomethingNewError', 'later versions')
    assert.equal(unknown.name, 'PrekeyRefusedError')
    assert.equal((unknown as Error & { remoteName: string }).remoteName, 'SomethingNewError')
  })
})
