import '../../core/polyfill.js'
import { after, afterEach, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey as Libp2pPrivateKey } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import {
  CiphertextMessageType, IdentityKeyPair, KEMPublicKey, PreKeyBundle, PreKeySignalMessage, ProtocolAddress, PublicKey,
  processPreKeyBundle, signalDecryptPreKey, signalEncrypt
} from '@signalapp/libsignal-client'
import { signBinding } from '../../core/crypto/binding.js'
import type { PeerIdString } from '../../core/ids.js'
import { createNode, type ParleyLibp2p } from '../../core/net/node.js'
import { encodeFrames } from '../../core/protocols/framing.js'
import { requestResponse } from '../../core/protocols/request.js'
import { PrekeyClient } from '../../core/protocols/prekeys/client.js'
import { headerToPb, type BundleData, type OneTimeKeyData } from '../../core/protocols/prekeys/codec.js'
import {
  MAX_ONE_TIME_KEYS_PER_PUBLISH, MAX_ONE_TIME_KEYS_STORED, MAX_PREKEY_REQUEST_BYTES, MAX_PREKEY_RESPONSE_BYTES, PREKEYS_PROTOCOL
} from '../../core/protocols/prekeys/constants.js'
import { PrekeyRequest, PrekeyResponse } from '../../core/protocols/prekeys/pb/prekeys.js'
import { PrekeyServer, type PrekeyBackend } from '../../core/protocols/prekeys/server.js'
import { createRelayNode, DEFAULT_RELAY_LIMITS, type RelayLibp2p } from '../../relay/relay-node.js'
import { DEFAULT_PREKEY_LIMITS, type PrekeyLimits, type PrekeyService } from '../../relay/prekeys/service.js'
import { PrekeyStore } from '../../relay/prekeys/store.js'
import { attackStream, pseudoRandomBytes, RESET, varint } from '../helpers/bad-frames.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { Cluster, freePort } from '../helpers/node-process.js'
import { makeOneTimeKeys, makeSignalBundle, MemorySignalStores, type SignalBundleKeys } from '../helpers/signal-keys.js'

// A relay (createRelayNode with a PrekeyStore in a temp dir: the prekey service starts and
// stops with it) and peers, all in this process, over real TCP on 127.0.0.1. One test runs
// a real `parley relay` process and kills it with SIGKILL.

interface TestRelay {
  node: RelayLibp2p
  store: PrekeyStore
  service: PrekeyService
  id: PeerIdString
  addr: Multiaddr
  dir: string
  privateKey: Libp2pPrivateKey
  stop(): Promise<void>
}

const dirs: string[] = []
const running: Array<{ stop(): void | Promise<void> }> = []

async function startRelay (opts: { dir?: string, privateKey?: Libp2pPrivateKey, limits?: Partial<PrekeyLimits>, clock?: FakeClock } = {}): Promise<TestRelay> {
  const dir = opts.dir ?? await mkdtemp(join(tmpdir(), 'parley-prekeys-'))
  if (opts.dir === undefined) dirs.push(dir)
  const privateKey = opts.privateKey ?? await generateKeyPair('Ed25519')
  const store = new PrekeyStore(join(dir, 'prekeys'))
  await store.open()
  const node = await createRelayNode({
    privateKey,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    limits: { ...DEFAULT_RELAY_LIMITS, inboundConnectionThreshold: 1000 },
    prekeys: { store, limits: { ...DEFAULT_PREKEY_LIMITS, ...opts.limits }, now: (opts.clock ?? new FakeClock()).now }
  })
  await node.start()
  const service = node.services.prekeys
  assert.ok(service !== undefined, 'the relay runs the prekey service')
  const addr = node.getMultiaddrs()[0]
  assert.ok(addr !== undefined)
  let stopped = false
  const relay: TestRelay = {
    node,
    store,
    service,
    id: node.peerId.toString() as PeerIdString,
    addr,
    dir,
    privateKey,
    async stop () {
      if (stopped) return
      stopped = true
      await node.stop()
      await store.close()
    }
  }
  running.push(relay)
  return relay
}

interface Peer { node: ParleyLibp2p, id: PeerIdString, key: Libp2pPrivateKey, client: PrekeyClient }

async function startPeer (): Promise<Peer> {
  const key = await generateKeyPair('Ed25519')
  const node = await createNode({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, inboundConnectionThreshold: 1000 })
  await node.start()
  running.push(node)
  return { node, id: node.peerId.toString() as PeerIdString, key, client: new PrekeyClient(node) }
}

async function connected (relay: TestRelay, ...peers: Peer[]): Promise<void> {
  for (const p of peers) await p.node.dial(relay.addr)
}

/** A relay, Alice who published a bundle with `oneTimeKeys` one-time keys there, and Bob; both connected. */
async function aliceHasPublished (oneTimeKeys: number): Promise<{ r: TestRelay, alice: Peer, bob: Peer, keys: SignalBundleKeys }> {
  const r = await startRelay()
  const alice = await startPeer()
  const bob = await startPeer()
  await connected(r, alice, bob)
  const keys = await makeSignalBundle(alice.key, { oneTimeKeys })
  assert.equal(await alice.client.publish(r.id, keys.header, keys.oneTimeKeys), oneTimeKeys)
  return { r, alice, bob, keys }
}

/** A request the client library would not send. */
async function rawCall (from: Peer, server: PeerIdString, req: PrekeyRequest): Promise<PrekeyResponse> {
  const stream = await from.node.dialProtocol(peerIdFromString(server), PREKEYS_PROTOCOL)
  return PrekeyResponse.decode(await requestResponse(stream, PrekeyRequest.encode(req), MAX_PREKEY_RESPONSE_BYTES))
}

function pbKeys (keys: readonly OneTimeKeyData[]): Array<{ id: number, publicKey: Uint8Array<ArrayBuffer> }> {
  return keys.map((k) => ({ id: k.id, publicKey: new Uint8Array(k.publicKey) }))
}

/** Fetch `n` times; the one-time key ids handed out (undefined: header only). */
async function fetchIds (from: Peer, server: PeerIdString, owner: PeerIdString, n: number): Promise<Array<number | undefined>> {
  const out: Array<number | undefined> = []
  for (let i = 0; i < n; i++) {
    const b = await from.client.fetch(server, owner)
    assert.ok(b !== undefined, 'bundle found')
    out.push(b.oneTime?.id)
  }
  return out
}

const ab = (b: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b)

/** Bob starts a Signal session from a fetched bundle; Alice (who holds the private parts) decrypts. */
async function provesSession (bundle: BundleData, alice: { id: PeerIdString, keys: SignalBundleKeys }, bobId: PeerIdString): Promise<void> {
  const h = bundle.header
  const aliceAddr = ProtocolAddress.new(alice.id, h.deviceId)
  const bobAddr = ProtocolAddress.new(bobId, 1)
  const bob = new MemorySignalStores(IdentityKeyPair.generate(), 4242)
  const preKeyBundle = PreKeyBundle.new(
    h.registrationId, h.deviceId,
    bundle.oneTime?.id ?? null, bundle.oneTime === undefined ? null : PublicKey.deserialize(ab(bundle.oneTime.publicKey)),
    h.signedPreKey.id, PublicKey.deserialize(ab(h.signedPreKey.publicKey)), ab(h.signedPreKey.signature),
    PublicKey.deserialize(ab(h.identityKey)),
    h.kyberPreKey.id, KEMPublicKey.deserialize(ab(h.kyberPreKey.publicKey)), ab(h.kyberPreKey.signature)
  )
  await processPreKeyBundle(preKeyBundle, aliceAddr, bobAddr, bob.sessions, bob.identities)
  const text = new TextEncoder().encode(`hello over ${bundle.oneTime === undefined ? 'no' : 'a'} one-time key`)
  const ct = await signalEncrypt(text, aliceAddr, bobAddr, bob.sessions, bob.identities)
  assert.equal(ct.type(), CiphertextMessageType.PreKey)
  const a = new MemorySignalStores(alice.keys.identity, h.registrationId, alice.keys)
  const pt = await signalDecryptPreKey(PreKeySignalMessage.deserialize(ct.serialize()), bobAddr, aliceAddr, a.sessions, a.identities, a.preKeys, a.signedPreKeys, a.kyberPreKeys)
  assert.deepEqual(pt, text)
}

after(async () => {
  for (const r of running.splice(0).reverse()) await r.stop()
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

describe('prekey directory on a relay', () => {
  it('stores an owner\'s bundle; another peer fetches it verified and starts a Signal session with it', { timeout: 30_000 }, async () => {
    const { r, alice, bob, keys } = await aliceHasPublished(5)
    assert.deepEqual(r.store.totals(), { owners: 1, oneTimeKeys: 5 })

    const bundle = await bob.client.fetch(r.id, alice.id)
    assert.ok(bundle !== undefined)
    assert.deepEqual(bundle.header, keys.header, 'the header as published')
    assert.deepEqual(bundle.oneTime, keys.oneTimeKeys[0], 'the lowest-id one-time key')
    assert.equal(r.store.oneTimeCount(alice.id), 4)
    await provesSession(bundle, { id: alice.id, keys }, bob.id)

    assert.equal(await bob.client.fetch(r.id, bob.id), undefined, 'no bundle for a peer that never published')
    const strangerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString() as PeerIdString
    assert.equal(await bob.client.fetch(r.id, strangerId), undefined)
    await assert.rejects(bob.client.fetch(r.id, 'not-a-peer-id' as PeerIdString), { name: 'InvalidPeerIdError' })
    assert.equal(r.service.server.stats.publishes, 1)
    assert.equal(r.service.stats.handedOut, 1)
  })

  it('hands out each one-time key once, then the header alone (also under concurrent fetches)', { timeout: 30_000 }, async () => {
    const r = await startRelay()
    const alice = await startPeer()
    const fetchers = [await startPeer(), await startPeer(), await startPeer()]
    await connected(r, alice, ...fetchers)
    const keys = await makeSignalBundle(alice.key, { oneTimeKeys: 12 })
    assert.equal(await alice.client.publish(r.id, keys.header, keys.oneTimeKeys), 12)

    const sequential = await fetchIds(fetchers[0] as Peer, r.id, alice.id, 4)
    const concurrent = await Promise.all(Array.from({ length: 12 }, async (_, i) => {
      const b = await (fetchers[i % 3] as Peer).client.fetch(r.id, alice.id)
      assert.ok(b !== undefined)
      assert.deepEqual(b.header, keys.header)
      return b.oneTime?.id
    }))
    const handed = [...sequential, ...concurrent].filter((id): id is number => id !== undefined)
    assert.equal(handed.length, 12, 'every one-time key handed out')
    assert.equal(new Set(handed).size, 12, `each once: ${handed.join(',')}`)
    assert.deepEqual([...handed].sort((x, y) => x - y), keys.oneTimeKeys.map((k) => k.id))
    assert.equal([...sequential, ...concurrent].filter((id) => id === undefined).length, 4, 'then the header alone')
    assert.equal(r.store.oneTimeCount(alice.id), 0)
    assert.equal(r.service.stats.handedOut, 12)
    assert.equal(r.service.stats.withheld, 0)
    // A bundle without a one-time key still starts a session (signed + Kyber prekeys).
    const headerOnly = await (fetchers[1] as Peer).client.fetch(r.id, alice.id)
    assert.ok(headerOnly !== undefined && headerOnly.oneTime === undefined)
    await provesSession(headerOnly, { id: alice.id, keys }, (fetchers[1] as Peer).id)
  })

  it('reports how many one-time keys it holds: retried ids once, capped, dropped on a new identity', { timeout: 60_000 }, async () => {
    const r = await startRelay()
    const alice = await startPeer()
    const bob = await startPeer()
    await connected(r, alice, bob)
    const keys = await makeSignalBundle(alice.key)
    const batch = (first: number): OneTimeKeyData[] => makeOneTimeKeys(MAX_ONE_TIME_KEYS_PER_PUBLISH, first).keys
    const first = batch(1)
    assert.equal(await alice.client.publish(r.id, keys.header, first), 100)
    assert.equal(await alice.client.publish(r.id, keys.header, first), 100, 'a retried publish adds nothing')
    assert.equal(await alice.client.publish(r.id, keys.header, []), 100, 'a header-only publish keeps the keys')
    assert.equal(await alice.client.publish(r.id, keys.header, batch(101)), MAX_ONE_TIME_KEYS_STORED)
    assert.equal(await alice.client.publish(r.id, keys.header, batch(201)), MAX_ONE_TIME_KEYS_STORED, 'over the cap: dropped')
    assert.equal((await bob.client.fetch(r.id, alice.id))?.oneTime?.id, 1)
    assert.equal(r.store.oneTimeCount(alice.id), MAX_ONE_TIME_KEYS_STORED - 1)
    assert.equal(await alice.client.publish(r.id, keys.header, makeOneTimeKeys(3, 1000).keys), MAX_ONE_TIME_KEYS_STORED, 'room for one')
    assert.equal((await bob.client.fetch(r.id, alice.id))?.oneTime?.id, 2, 'ids 201..300 were never stored, 1 was handed out')

    // A new signed prekey (same identity): the header is replaced, the one-time keys stay.
    const rotated = await makeSignalBundle(alice.key, { identity: keys.identity, signedPreKeyId: 2, kyberPreKeyId: 2 })
    assert.equal(await alice.client.publish(r.id, rotated.header, []), MAX_ONE_TIME_KEYS_STORED - 1)
    const afterRotation = await bob.client.fetch(r.id, alice.id)
    assert.deepEqual(afterRotation?.header, rotated.header)
    assert.equal(afterRotation?.oneTime?.id, 3)

    // A new identity (a reinstall): the old one-time keys are useless and dropped.
    const reinstalled = await makeSignalBundle(alice.key, { oneTimeKeys: 2, firstOneTimeId: 7 })
    assert.equal(await alice.client.publish(r.id, reinstalled.header, reinstalled.oneTimeKeys), 2)
    assert.deepEqual(await fetchIds(bob, r.id, alice.id, 3), [7, 8, undefined])
    const last = await bob.client.fetch(r.id, alice.id)
    assert.deepEqual(last?.header, reinstalled.header)
    assert.deepEqual(r.store.totals(), { owners: 1, oneTimeKeys: 0 })
  })

  it('keeps bundles over a relay restart and never hands a one-time key out again', { timeout: 30_000 }, async () => {
    const { r, alice, bob, keys } = await aliceHasPublished(5)
    const before = await fetchIds(bob, r.id, alice.id, 2)
    await r.stop()

    const r2 = await startRelay({ dir: r.dir, privateKey: r.privateKey })
    assert.equal(r2.id, r.id)
    assert.deepEqual(r2.store.totals(), { owners: 1, oneTimeKeys: 3 }, 'counts rebuilt on open')
    await connected(r2, bob)
    const afterIds = await fetchIds(bob, r2.id, alice.id, 4)
    assert.deepEqual(before, [1, 2])
    assert.deepEqual(afterIds, [3, 4, 5, undefined])
    const bundle = await bob.client.fetch(r2.id, alice.id)
    assert.deepEqual(bundle?.header, keys.header, 'header intact after restart')
  })

  it('takes the owner from the connection: nobody publishes for someone else', { timeout: 30_000 }, async () => {
    const r = await startRelay()
    const alice = await startPeer()
    const mallory = await startPeer()
    const bob = await startPeer()
    await connected(r, alice, mallory, bob)
    const aliceKeys = await makeSignalBundle(alice.key, { oneTimeKeys: 2 })
    await alice.client.publish(r.id, aliceKeys.header, aliceKeys.oneTimeKeys)

    // Mallory replays Alice's header (bound to Alice): refused, the owner is Mallory.
    await assert.rejects(mallory.client.publish(r.id, aliceKeys.header, []), { name: 'BindingError' })
    // Mallory's own identity key with Alice's binding: refused too.
    const malloryKeys = await makeSignalBundle(mallory.key, { oneTimeKeys: 1, firstOneTimeId: 50 })
    await assert.rejects(mallory.client.publish(r.id, { ...malloryKeys.header, binding: aliceKeys.header.binding }, []), { name: 'BindingError' })
    // Naming Alice in the request's owner field changes nothing: that field is FETCH's.
    const named = await rawCall(mallory, r.id, { op: PrekeyRequest.Op.PUBLISH, header: headerToPb(aliceKeys.header), preKeys: pbKeys(malloryKeys.oneTimeKeys), owner: alice.id })
    assert.equal(named.ok, false)
    assert.equal(named.errorName, 'BindingError')
    const ownWithAliceNamed = await rawCall(mallory, r.id, { op: PrekeyRequest.Op.PUBLISH, header: headerToPb(malloryKeys.header), preKeys: pbKeys(malloryKeys.oneTimeKeys), owner: alice.id })
    assert.equal(ownWithAliceNamed.ok, true, 'Mallory\'s own bundle is stored, as Mallory\'s')
    assert.equal(ownWithAliceNamed.remaining, 1)

    const aliceBundle = await bob.client.fetch(r.id, alice.id)
    assert.deepEqual(aliceBundle?.header, aliceKeys.header, 'Alice\'s bundle untouched')
    assert.equal(aliceBundle?.oneTime?.id, 1)
    assert.equal(r.store.oneTimeCount(alice.id), 1, 'no one-time key of Mallory\'s added to Alice\'s')
    assert.deepEqual((await bob.client.fetch(r.id, mallory.id))?.header, malloryKeys.header)
    assert.equal(r.service.server.stats.refused.get('BindingError'), 3)
  })

  it('refuses bundles whose prekeys the identity key did not sign, and malformed one-time keys', { timeout: 30_000 }, async () => {
    const r = await startRelay()
    const alice = await startPeer()
    await connected(r, alice)
    const keys = await makeSignalBundle(alice.key, { oneTimeKeys: 3 })
    const badSig = { ...keys.header, signedPreKey: { ...keys.header.signedPreKey, signature: new Uint8Array(64).fill(7) } }
    await assert.rejects(alice.client.publish(r.id, badSig, []), { name: 'InvalidBundleError' })
    const other = await makeSignalBundle(alice.key)
    const foreignKyber = { ...keys.header, kyberPreKey: other.header.kyberPreKey }
    await assert.rejects(alice.client.publish(r.id, foreignKyber, []), { name: 'InvalidBundleError' })
    assert.equal(r.store.has(alice.id), false, 'nothing stored')

    const dup = pbKeys([keys.oneTimeKeys[0] as OneTimeKeyData, keys.oneTimeKeys[0] as OneTimeKeyData])
    const dupRes = await rawCall(alice, r.id, { op: PrekeyRequest.Op.PUBLISH, header: headerToPb(keys.header), preKeys: dup, owner: '' })
    assert.deepEqual([dupRes.ok, dupRes.errorName], [false, 'InvalidBundleError'])
    const bad = await rawCall(alice, r.id, { op: PrekeyRequest.Op.PUBLISH, header: headerToPb(keys.header), preKeys: [{ id: 1, publicKey: new Uint8Array(33) }], owner: '' })
    assert.deepEqual([bad.ok, bad.errorName], [false, 'InvalidBundleError'])
    const tooMany = makeOneTimeKeys(MAX_ONE_TIME_KEYS_PER_PUBLISH + 1).keys
    await assert.rejects(alice.client.publish(r.id, keys.header, tooMany), { name: 'ProtocolLimitError' }, 'the client refuses before sending')
    const tooManyRes = await rawCall(alice, r.id, { op: PrekeyRequest.Op.PUBLISH, header: headerToPb(keys.header), preKeys: pbKeys(tooMany), owner: '' })
    assert.deepEqual([tooManyRes.ok, tooManyRes.errorName], [false, 'ProtocolLimitError'])
    const noHeader = await rawCall(alice, r.id, { op: PrekeyRequest.Op.PUBLISH, preKeys: [], owner: '' })
    assert.deepEqual([noHeader.ok, noHeader.errorName], [false, 'InvalidBundleError'])
    const unknownOp = await rawCall(alice, r.id, { op: PrekeyRequest.Op.OP_UNSPECIFIED, preKeys: [], owner: alice.id })
    assert.deepEqual([unknownOp.ok, unknownOp.errorName], [false, 'InvalidRequestError'])
    assert.equal(r.store.has(alice.id), false, 'still nothing stored')
    assert.deepEqual(Object.fromEntries(r.service.server.stats.refused), { InvalidBundleError: 5, ProtocolLimitError: 1, InvalidRequestError: 1 })
  })

  it('limits one-time keys per requester (header alone when over budget) and owners per relay', { timeout: 30_000 }, async () => {
    const clock = new FakeClock()
    const r = await startRelay({ clock, limits: { claimBurst: 3, claimsPerMinute: 60, maxOwners: 3 } })
    const [alice, bob, carol, dave] = [await startPeer(), await startPeer(), await startPeer(), await startPeer()]
    await connected(r, alice, bob, carol, dave)
    const aliceKeys = await makeSignalBundle(alice.key, { oneTimeKeys: 10 })
    const carolKeys = await makeSignalBundle(carol.key, { oneTimeKeys: 10 })
    await alice.client.publish(r.id, aliceKeys.header, aliceKeys.oneTimeKeys)
    await carol.client.publish(r.id, carolKeys.header, carolKeys.oneTimeKeys)

    // Bob's burst is 3 one-time keys, across owners; then headers alone.
    assert.deepEqual(await fetchIds(bob, r.id, alice.id, 2), [1, 2])
    assert.deepEqual(await fetchIds(bob, r.id, carol.id, 3), [1, undefined, undefined])
    assert.equal(r.service.stats.withheld, 2)
    // Dave has his own budget.
    assert.deepEqual(await fetchIds(dave, r.id, alice.id, 1), [3])
    clock.advance(1000) // one claim back for Bob
    assert.deepEqual(await fetchIds(bob, r.id, alice.id, 2), [4, undefined])
    assert.equal(r.service.stats.withheld, 3)
    assert.equal(r.store.oneTimeCount(alice.id), 6)
    assert.equal(r.store.oneTimeCount(carol.id), 9)

    // maxOwners 3: Bob is the third owner, Dave the fourth.
    await bob.client.publish(r.id, (await makeSignalBundle(bob.key)).header, [])
    await assert.rejects(dave.client.publish(r.id, (await makeSignalBundle(dave.key)).header, []), { name: 'PrekeyStoreFullError' })
    assert.equal(await alice.client.publish(r.id, aliceKeys.header, []), 6, 'a stored owner may still publish')
    assert.equal(r.store.totals().owners, 3)
    assert.equal(r.service.server.stats.refused.get('PrekeyStoreFullError'), 1)
    // A bundle without one-time keys costs no budget and is not counted as withheld.
    assert.deepEqual(await fetchIds(dave, r.id, bob.id, 3), [undefined, undefined, undefined])
    assert.equal(r.service.stats.withheld, 3)
    assert.deepEqual(await fetchIds(dave, r.id, carol.id, 1), [2], 'Dave still had budget left')
  })
})

describe('a malicious prekey server', () => {
  let alice: Peer
  let mallory: Peer
  let bob: Peer
  let aliceKeys: SignalBundleKeys
  let serve: (owner: PeerIdString) => Promise<BundleData | undefined> = async () => undefined
  let server: PrekeyServer

  before(async () => {
    alice = await startPeer()
    mallory = await startPeer()
    bob = await startPeer()
    aliceKeys = await makeSignalBundle(alice.key, { oneTimeKeys: 1 })
    // Mallory serves prekeys itself (like a node serving its own bundle), and lies.
    const backend: PrekeyBackend = { fetch: async (owner) => await serve(owner) }
    server = new PrekeyServer(mallory.node, backend)
    await server.start()
    await bob.node.dial(mallory.node.getMultiaddrs()[0] ?? multiaddr(''))
  })

  afterEach(() => { serve = async () => undefined })

  it('cannot swap in its own identity key: the binding does not verify', { timeout: 20_000 }, async () => {
    const own = IdentityKeyPair.generate()
    const ownKey = own.publicKey.serialize()
    // Its own identity key, bound with its own libp2p key, prekeys re-signed with its identity.
    const forged = await makeSignalBundle(mallory.key, { identity: own })
    serve = async () => ({ header: { ...forged.header, binding: await signBinding(mallory.key, ownKey) } })
    await assert.rejects(bob.client.fetch(mallory.id, alice.id), { name: 'BindingError' })
    // The same with Alice's binding signature left in place.
    serve = async () => ({ header: { ...forged.header, binding: aliceKeys.header.binding } })
    await assert.rejects(bob.client.fetch(mallory.id, alice.id), { name: 'BindingError' })
  })

  it('cannot pass off another peer\'s valid bundle', { timeout: 20_000 }, async () => {
    const carolKey = await generateKeyPair('Ed25519')
    const carol = await makeSignalBundle(carolKey, { oneTimeKeys: 1 })
    serve = async () => ({ header: carol.header, oneTime: carol.oneTimeKeys[0] })
    await assert.rejects(bob.client.fetch(mallory.id, alice.id), { name: 'BindingError' })
    const own = await makeSignalBundle(mallory.key)
    serve = async () => ({ header: own.header })
    await assert.rejects(bob.client.fetch(mallory.id, alice.id), { name: 'BindingError' })
  })

  it('cannot swap a prekey under Alice\'s real identity, nor serve a broken one-time key', { timeout: 20_000 }, async () => {
    const own = await makeSignalBundle(mallory.key)
    serve = async () => ({ header: { ...aliceKeys.header, signedPreKey: own.header.signedPreKey } })
    await assert.rejects(bob.client.fetch(mallory.id, alice.id), { name: 'InvalidBundleError' })
    serve = async () => ({ header: { ...aliceKeys.header, kyberPreKey: own.header.kyberPreKey } })
    await assert.rejects(bob.client.fetch(mallory.id, alice.id), { name: 'InvalidBundleError' })
    serve = async () => ({ header: aliceKeys.header, oneTime: { id: 1, publicKey: new Uint8Array(33) } })
    await assert.rejects(bob.client.fetch(mallory.id, alice.id), { name: 'InvalidBundleError' })
    // Honest answers from the same server pass.
    serve = async (owner) => owner === alice.id ? { header: aliceKeys.header, oneTime: aliceKeys.oneTimeKeys[0] } : undefined
    assert.deepEqual(await bob.client.fetch(mallory.id, alice.id), { header: aliceKeys.header, oneTime: aliceKeys.oneTimeKeys[0] })
    assert.equal(await bob.client.fetch(mallory.id, bob.id), undefined)
  })

  it('refuses PUBLISH when it stores nobody\'s bundles', { timeout: 20_000 }, async () => {
    await assert.rejects(bob.client.publish(mallory.id, (await makeSignalBundle(bob.key)).header, []), { name: 'PublishNotAcceptedError' })
    assert.equal(server.stats.refused.get('PublishNotAcceptedError'), 1)
  })
})

describe('bad input on /parley/prekeys/1.0.0', () => {
  let r: TestRelay
  let raw: Peer
  let honest: Peer

  before(async () => {
    r = await startRelay()
    raw = await startPeer()
    honest = await startPeer()
    await connected(r, raw, honest)
  })

  /** Write `bytes` (see attackStream) and report how the stream ended. */
  async function attack (bytes: Uint8Array, closeWrite: boolean): Promise<string> {
    return await attackStream(raw.node, r.id, PREKEYS_PROTOCOL, bytes, closeWrite, MAX_PREKEY_RESPONSE_BYTES, (f) => PrekeyResponse.decode(f))
  }

  const refused = (name: string): number => r.service.server.stats.refused.get(name) ?? 0

  it('resets streams carrying hostile prefixes, cut-off frames, undecodable and random bytes', { timeout: 30_000 }, async () => {
    assert.match(await attack(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x10, 1, 2, 3]), false), RESET) // claims 4 GiB
    assert.match(await attack(varint(MAX_PREKEY_REQUEST_BYTES + 1), false), RESET) // one byte over
    assert.equal(refused('FrameTooLargeError'), 2)
    assert.match(await attack(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), false), RESET)
    assert.equal(refused('InvalidLengthPrefixError'), 1)
    const whole = encodeFrames([PrekeyRequest.encode({ op: PrekeyRequest.Op.FETCH, preKeys: [], owner: honest.id })])
    assert.match(await attack(whole.subarray(0, whole.byteLength - 3), true), RESET)
    assert.match(await attack(new Uint8Array(0), true), RESET)
    assert.equal(refused('TruncatedFrameError'), 2)
    assert.match(await attack(encodeFrames([Uint8Array.from([0x12, 100, 1, 2])]), true), RESET) // field 2 claims 100 bytes
    assert.match(await attack(encodeFrames([Uint8Array.from([0x0f, 0xff, 0xff])]), true), RESET) // wire type 7
    assert.equal(refused('MalformedFrameError'), 2)

    // Deterministic random bytes (SHA-256 in counter mode). A random frame that happens to
    // decode gets a named answer (an unknown op, say) instead; none may be stored.
    const outcomes: string[] = []
    for (let round = 0; round < 30; round++) {
      outcomes.push(await attack(pseudoRandomBytes(`prekeys ${round}`, 300), true))
    }
    assert.ok(outcomes.every((o) => RESET.test(o) || o.startsWith('answer:')), outcomes.join(', '))
    assert.ok(outcomes.filter((o) => RESET.test(o)).length >= 20, `most random streams reset: ${outcomes.join(', ')}`)
    const resets = ['FrameTooLargeError', 'InvalidLengthPrefixError', 'TruncatedFrameError', 'MalformedFrameError'].reduce((n, name) => n + refused(name), 0)
    assert.equal(resets, 7 + outcomes.filter((o) => RESET.test(o)).length, `every reset counted by name: ${JSON.stringify([...r.service.server.stats.refused])} ${outcomes.join(', ')}`)
    assert.equal(r.store.totals().owners, 0, 'nothing stored from bad input')

    // Still serving honest peers.
    const keys = await makeSignalBundle(honest.key, { oneTimeKeys: 1 })
    assert.equal(await honest.client.publish(r.id, keys.header, keys.oneTimeKeys), 1)
    assert.deepEqual(await raw.client.fetch(r.id, honest.id), { header: keys.header, oneTime: keys.oneTimeKeys[0] })
  })

  it('does not wait forever for a request that never comes', { timeout: 20_000 }, async () => {
    const before = r.service.server.stats.refused.get('MalformedFrameError') ?? 0
    const started = Date.now()
    const outcome = await attack(Uint8Array.from([0x10, 1, 2]), false) // a partial frame, then silence
    assert.match(outcome, RESET)
    assert.ok(Date.now() - started < 10_000)
    assert.equal(refused('MalformedFrameError'), before + 1, 'the timeout is counted')
  })
})

describe('prekeys on a real relay process', () => {
  const cluster = new Cluster()
  after(async () => { await cluster.cleanup() })

  it('never hands a one-time key out twice across kill -9, and exports metrics', { timeout: 90_000 }, async () => {
    const port = await freePort()
    const metricsPort = await freePort()
    const extraArgs = ['--metrics', `127.0.0.1:${metricsPort}`, '--prekeys-claim-burst', '1000']
    const relay = await cluster.start({ command: 'relay', label: 'R', port, extraArgs })
    const relayId = relay.ready.peerId as PeerIdString
    const relayAddr = multiaddr(relay.ready.addrs[0] ?? '')
    const alice = await startPeer()
    const bob = await startPeer()
    await alice.node.dial(relayAddr)
    await bob.node.dial(relayAddr)
    const keys = await makeSignalBundle(alice.key, { oneTimeKeys: 40 })
    assert.equal(await alice.client.publish(relayId, keys.header, keys.oneTimeKeys), 40)

    // Fetch as fast as possible and kill the relay in the middle of it.
    const handed: number[] = []
    let stop = false
    const storm = (async () => {
      while (!stop) {
        try {
          const b = await bob.client.fetch(relayId, alice.id)
          if (b?.oneTime !== undefined) handed.push(b.oneTime.id)
        } catch {
          // the relay is gone
        }
      }
    })()
    while (handed.length < 15) await new Promise((resolve) => setTimeout(resolve, 2))
    await relay.kill9()
    stop = true
    await storm
    const before = [...handed]
    assert.equal(new Set(before).size, before.length, 'distinct before the kill')

    const again = await cluster.restart(relay, { command: 'relay', extraArgs })
    await bob.node.dial(relayAddr)
    const after: number[] = []
    for (;;) {
      const b = await bob.client.fetch(relayId, alice.id)
      assert.deepEqual(b?.header, keys.header)
      if (b?.oneTime === undefined) break
      after.push(b.oneTime.id)
    }
    const all = [...before, ...after]
    assert.equal(new Set(all).size, all.length, `no one-time key handed out twice: ${before.join(',')} | ${after.join(',')}`)
    // At most the one key deleted for an answer that never left (lost, never duplicated).
    assert.ok(all.length >= 39, `${all.length} of 40 one-time keys handed out`)

    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
    assert.match(text, /^parley_prekeys_owners 1$/m)
    assert.match(text, /^parley_prekeys_one_time_keys 0$/m)
    assert.match(text, new RegExp(`^parley_prekeys_one_time_handed_out_total ${after.length}$`, 'm'))
    assert.match(text, new RegExp(`^parley_prekeys_fetches_total ${after.length + 1}$`, 'm'))
    assert.match(text, /^parley_prekeys_publishes_total 0$/m)
    await again.terminate()
  })
})
