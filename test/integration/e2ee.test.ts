import '../../core/polyfill.js'
import { afterEach, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { IdentityKeyPair, KEMKeyPair, PrivateKey } from '@signalapp/libsignal-client'
import type { MessengerEvent } from '../../core/api/contract.js'
import { loadOrCreateIdentity } from '../../core/identity/identity.js'
import { encodeInvite } from '../../core/identity/invite.js'
import type { PeerIdString } from '../../core/ids.js'
import { createNode, type ParleyLibp2p } from '../../core/net/node.js'
import type { BundleData } from '../../core/protocols/prekeys/codec.js'
import { PrekeyClient } from '../../core/protocols/prekeys/client.js'
import { PrekeyServer } from '../../core/protocols/prekeys/server.js'
import { signBinding } from '../../core/crypto/binding.js'
import { eventually, messageEvents, removeDir, startPeer, statusEvents, type TestPeer } from '../helpers/messengers.js'
import { Cluster, freePort } from '../helpers/node-process.js'

// Real relays and nodes on 127.0.0.1 (spawned `parley relay` / `parley node` processes, or
// Messengers in this process over real libp2p and level): what Signal must guarantee.
let cluster = new Cluster()
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
  await cluster.cleanup()
  cluster = new Cluster()
})

async function peer (opts: Parameters<typeof startPeer>[0] = {}): Promise<TestPeer> {
  const p = await startPeer(opts)
  cleanups.push(async () => { await p.stop().catch(() => {}); await removeDir(p.dir) })
  return p
}

/** Every file under `dir`, recursively, as bytes. */
async function filesUnder (dir: string): Promise<Array<{ path: string, bytes: Buffer }>> {
  const out: Array<{ path: string, bytes: Buffer }> = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    out.push({ path, bytes: await readFile(path) })
  }
  return out
}

function identityEvents (events: MessengerEvent[]): Array<Extract<MessengerEvent, { event: 'identity' }>> {
  return events.filter((e): e is Extract<MessengerEvent, { event: 'identity' }> => e.event === 'identity')
}

describe('end-to-end encryption', () => {
  it('leaves no plaintext at rest on the relay: marker bytes are in neither its data dir nor its logs', { timeout: 90_000 }, async () => {
    const relay = await cluster.start({ command: 'relay', label: 'R', port: await freePort(), env: { DEBUG: 'parley*' } })
    const relayAddr = relay.ready.addrs[0] ?? ''
    const bPort = await freePort()
    const a = await cluster.start({ listen: ['/p2p-circuit'], extraArgs: ['--relay', relayAddr], label: 'A' })
    let b = await cluster.start({ listen: ['/p2p-circuit'], extraArgs: ['--relay', relayAddr], label: 'B', port: bPort })
    const whoB = await b.call('whoami', {})
    await a.call('contact.add', { invite: whoB.invite })
    const hello = await a.call('dm.send', { to: whoB.peerId, text: 'hello first' })
    await b.waitFor((l) => l.event === 'message' && l.id === hello.id, 20_000, { description: 'first message' })
    await b.terminate()

    const marker = `MARKER-${randomBytes(12).toString('hex')}`
    const ids: string[] = []
    for (let i = 0; i < 20; i++) ids.push((await a.call('dm.send', { to: whoB.peerId, text: `${marker} #${i}` })).id)
    await a.poll(async () => {
      const h = await a.call('dm.history', { with: whoB.peerId, limit: 50 })
      return h.messages.filter((m) => ids.includes(m.id) && m.status === 'sent').length === ids.length ? true : undefined
    }, 30_000, 'all 20 deposited at R')
    await relay.terminate() // flush everything level holds to disk

    const needles = [Buffer.from(marker, 'utf8'), Buffer.from(Buffer.from(marker).toString('base64').slice(0, 16)), Buffer.from(Buffer.from(marker).toString('hex'))]
    const files = await filesUnder(relay.dataDir)
    assert.ok(files.length > 0)
    for (const f of files) {
      for (const n of needles) assert.equal(f.bytes.includes(n), false, `marker found in ${f.path}`)
    }
    const logs = Buffer.from(relay.stderr + relay.lines.map((l) => JSON.stringify(l)).join('\n'))
    assert.ok(logs.length > 0, 'the relay logged something')
    for (const n of needles) assert.equal(logs.includes(n), false, 'marker found in the relay\'s logs')

    // The marker was really carried: B comes back (R too) and shows all 20.
    await cluster.restart(relay, { command: 'relay', label: 'R' })
    b = await cluster.restart(b, { listen: ['/p2p-circuit'], extraArgs: ['--relay', relayAddr] })
    const history = await b.poll(async () => {
      const h = await b.call('dm.history', { with: a.ready.peerId, limit: 50 })
      return h.messages.filter((m) => m.text.startsWith(marker)).length === 20 ? h : undefined
    }, 30_000, 'all 20 at B')
    assert.deepEqual(history.messages.filter((m) => m.text.startsWith(marker)).map((m) => m.id), ids)
  })

  it('first contact with someone offline: bundle from the relay, three messages via the mailbox', { timeout: 90_000 }, async () => {
    const relay = await cluster.start({ command: 'relay', label: 'R' })
    const relayAddr = relay.ready.addrs[0] ?? ''
    const opts = { listen: ['/p2p-circuit'], relays: [relayAddr] }
    const b = await peer(opts)
    await eventually(() => (b.m.prekeysAtRelay()[relay.ready.peerId] ?? 0) > 0, 'B published its bundle at R')
    const invite = b.m.whoami().invite
    await b.stop()

    const a = await peer(opts) // has never talked to B
    await a.m.addContact(invite)
    const ids: string[] = []
    for (const text of ['one', 'two', 'three']) ids.push((await a.m.sendText(b.m.peerId, text)).id)
    await eventually(() => ids.every((id) => statusEvents(a.events, 'sent').some((e) => e.id === id)), 'deposited', 30_000)

    await b.m.start()
    await eventually(() => messageEvents(b.events).length >= 3, 'B shows three', 30_000)
    assert.deepEqual(messageEvents(b.events).map((e) => e.text), ['one', 'two', 'three'])
    assert.deepEqual(messageEvents(b.events).map((e) => e.id), ids)
    // Receipts flow back through the new session: A sees them delivered.
    await eventually(() => ids.every((id) => statusEvents(a.events, 'delivered').some((e) => e.id === id)), 'delivered at A', 30_000)
  })

  it('tops up its one-time prekeys at a relay under the low-water mark, and rotates its signed prekey on schedule', { timeout: 90_000 }, async () => {
    const relay = await cluster.start({ command: 'relay', label: 'R' })
    const relayAddr = relay.ready.addrs[0] ?? ''
    const relayId = relay.ready.peerId as PeerIdString
    const b = await peer({ listen: ['/p2p-circuit'], relays: [relayAddr] })
    await eventually(() => b.m.prekeysAtRelay()[relayId] === 100, 'B published 100 one-time prekeys')

    // Others take 80 one-time keys (4 askers, under the relay's per-asker budget).
    const askers: ParleyLibp2p[] = []
    for (let i = 0; i < 4; i++) {
      const n = await createNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
      await n.start()
      await n.dial(multiaddr(relayAddr))
      askers.push(n)
      cleanups.push(async () => { await n.stop() })
    }
    const asker = askers[0] as ParleyLibp2p
    const taken = new Set<number>()
    for (const n of askers) {
      for (let i = 0; i < 20; i++) {
        const bundle = await new PrekeyClient(n).fetch(relayId, b.m.peerId)
        assert.ok(bundle?.oneTime !== undefined, 'a one-time key each time')
        taken.add(bundle.oneTime.id)
      }
    }
    assert.equal(taken.size, 80, 'all distinct')

    // 20 left, under the low-water mark (25): on its next connection to R, B tops up to 100.
    await b.restart()
    await eventually(() => b.m.prekeysAtRelay()[relayId] === 100, `topped up to 100 (${JSON.stringify(b.m.prekeysAtRelay())})`, 30_000)
    const fresh = await new PrekeyClient(asker).fetch(relayId, b.m.peerId)
    assert.ok(fresh?.oneTime !== undefined && !taken.has(fresh.oneTime.id), 'a new one-time key')

    // C rotates every 3 s (instead of 7 days): R soon serves a new signed and Kyber prekey.
    const c = await peer({ listen: ['/p2p-circuit'], relays: [relayAddr], crypto: { rotationMs: 3000, graceMs: 60_000 } })
    await eventually(() => (c.m.prekeysAtRelay()[relayId] ?? 0) > 0, 'C published')
    const first = await new PrekeyClient(asker).fetch(relayId, c.m.peerId)
    assert.ok(first !== undefined)
    await eventually(async () => {
      const now = await new PrekeyClient(asker).fetch(relayId, c.m.peerId)
      return now !== undefined && now.header.signedPreKey.id !== first.header.signedPreKey.id && now.header.kyberPreKey.id !== first.header.kyberPreKey.id
    }, 'rotated prekeys at R', 20_000)
    // A new contact starts a session from the rotated bundle. (A first message made from a
    // pre-rotation bundle within the grace period: test/unit/signal-cipher.test.ts.)
    const a = await peer({ listen: ['/p2p-circuit'], relays: [relayAddr] })
    await a.m.addContact(c.m.whoami().invite)
    const sent = await a.m.sendText(c.m.peerId, 'hello after rotation')
    await eventually(() => messageEvents(c.events).some((e) => e.id === sent.id), 'delivered after rotation', 30_000)
  })

  it('refuses a bundle a lying relay swapped for its own keys, and uses an honest relay\'s', { timeout: 90_000 }, async () => {
    const relay = await cluster.start({ command: 'relay', label: 'R' })
    const relayAddr = relay.ready.addrs[0] ?? ''
    const b = await peer({ listen: ['/p2p-circuit'], relays: [relayAddr] })
    await eventually(() => (b.m.prekeysAtRelay()[relay.ready.peerId] ?? 0) > 0, 'B published its bundle at R')

    // The liar: fetches B's real bundle from R and swaps in its own identity key, signing the
    // binding with its own libp2p key (it cannot sign as B). Everything else stays valid.
    const liarKey = await generateKeyPair('Ed25519')
    const liar: ParleyLibp2p = await createNode({ privateKey: liarKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
    let lies = 0
    const server = new PrekeyServer(liar, {
      fetch: async (owner) => {
        const real = await new PrekeyClient(liar).fetch(relay.ready.peerId as PeerIdString, owner)
        if (real === undefined) return undefined
        const fake = IdentityKeyPair.generate()
        const sign = (k: Uint8Array): Uint8Array => fake.privateKey.sign(new Uint8Array(k))
        lies++
        const swapped: BundleData = {
          header: {
            ...real.header,
            identityKey: fake.publicKey.serialize(),
            binding: await signBinding(liarKey, fake.publicKey.serialize()),
            signedPreKey: { ...real.header.signedPreKey, signature: sign(real.header.signedPreKey.publicKey) },
            kyberPreKey: { ...real.header.kyberPreKey, signature: sign(real.header.kyberPreKey.publicKey) }
          }
        }
        return swapped
      }
    })
    await server.start()
    await liar.start()
    await liar.dial(multiaddr(relayAddr))
    cleanups.push(async () => { await liar.stop() })
    const liarAddr = `${liar.getMultiaddrs()[0]?.toString() ?? ''}`

    // A's own relay is the liar, so A asks it first; then the relay B's address names (R).
    // B is offline, so there is no direct bundle either.
    await b.stop()
    const a = await peer({ relays: [liarAddr] })
    await a.m.addContact(encodeInvite({ peerId: b.m.peerId, addrs: [`${relayAddr}/p2p-circuit`], name: 'B' }))
    const sent = await a.m.sendText(b.m.peerId, 'only for the real B')
    await eventually(() => statusEvents(a.events, 'sent').some((e) => e.id === sent.id), 'deposited at R', 30_000)
    assert.ok(lies >= 1, 'the liar was asked')

    await b.m.start()
    await eventually(() => messageEvents(b.events).some((e) => e.id === sent.id), 'B decrypts it', 30_000)
    // A holds B's real key: both sides compute the same safety number.
    const atA = await a.m.safetyNumber(b.m.peerId)
    const atB = await b.m.safetyNumber(a.m.peerId)
    assert.equal(atA.safetyNumber, atB.safetyNumber)
  })

  it('with only a lying relay, sends nothing and learns no key', { timeout: 60_000 }, async () => {
    const bPeer = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString() as PeerIdString // offline, never seen
    const liarKey = await generateKeyPair('Ed25519')
    const liar: ParleyLibp2p = await createNode({ privateKey: liarKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
    let lies = 0
    const server = new PrekeyServer(liar, {
      fetch: async () => {
        lies++
        // A perfectly valid bundle, but of the liar's own peer id: the binding does not name B.
        const id = IdentityKeyPair.generate()
        const spk = PrivateKey.generate().getPublicKey().serialize()
        const kyber = KEMKeyPair.generate().getPublicKey().serialize()
        return {
          header: {
            identityKey: id.publicKey.serialize(),
            binding: await signBinding(liarKey, id.publicKey.serialize()),
            registrationId: 7,
            deviceId: 1,
            signedPreKey: { id: 1, publicKey: spk, signature: id.privateKey.sign(spk) },
            kyberPreKey: { id: 1, publicKey: kyber, signature: id.privateKey.sign(kyber) }
          }
        }
      }
    })
    await server.start()
    await liar.start()
    cleanups.push(async () => { await liar.stop() })
    const liarAddr = `${liar.getMultiaddrs()[0]?.toString() ?? ''}`
    const invite = encodeInvite({ peerId: bPeer, addrs: [`${liarAddr}/p2p-circuit`], name: 'B' })

    const a = await peer({ relays: [liarAddr] })
    await a.m.addContact(invite)
    const sent = await a.m.sendText(bPeer, 'must not leave')
    await eventually(() => lies >= 2, 'A asked the liar more than once', 30_000)
    assert.equal((await a.m.history(bPeer, 5)).find((m) => m.id === sent.id)?.status, 'pending')
    assert.equal(a.m.listContacts().find((c) => c.peerId === bPeer)?.identity, 'unknown', 'no key accepted')
    assert.equal(statusEvents(a.events, 'sent').length, 0)
  })

  it('identity change: A is warned and sends nothing to the new key until it accepts', { timeout: 90_000 }, async () => {
    const bPort = await freePort()
    const bListen = [`/ip4/127.0.0.1/tcp/${bPort}`]
    const a = await peer()
    const b = await peer({ listen: bListen })
    await a.m.addContact(b.m.whoami().invite)
    await b.m.addContact(a.m.whoami().invite)
    const first = await a.m.sendText(b.m.peerId, 'before the re-install')
    await eventually(() => messageEvents(b.events).some((e) => e.id === first.id), 'first message')
    const reply = await b.m.sendText(a.m.peerId, 'hi A')
    await eventually(() => messageEvents(a.events).some((e) => e.id === reply.id), 'reply')
    assert.equal(a.m.listContacts()[0]?.identity, 'trusted')
    const before = await a.m.safetyNumber(b.m.peerId)

    // B re-installs: same libp2p key (same peer id, same address), fresh Signal identity.
    const bKey = await loadOrCreateIdentity(b.dir)
    await b.stop()
    const b2 = await peer({ listen: bListen, privateKey: bKey })
    assert.equal(b2.m.peerId, b.m.peerId)

    const held = await a.m.sendText(b.m.peerId, 'to whoever holds B now')
    await eventually(() => identityEvents(a.events).some((e) => e.peerId === b.m.peerId && e.identity === 'changed'), 'identity warning at A', 30_000)
    assert.equal(a.m.listContacts()[0]?.identity, 'changed')
    const changed = await a.m.safetyNumber(b.m.peerId)
    assert.equal(changed.changed, true)
    assert.notEqual(changed.safetyNumber, before.safetyNumber)
    await new Promise((resolve) => setTimeout(resolve, 1500))
    assert.equal(messageEvents(b2.events).length, 0, 'nothing reached the new key')
    assert.equal((await a.m.history(b.m.peerId, 10)).find((m) => m.id === held.id)?.status, 'pending')

    await a.m.acceptIdentity(b.m.peerId)
    await eventually(() => messageEvents(b2.events).some((e) => e.id === held.id), 'held message delivered after accepting', 30_000)
    assert.equal(a.m.listContacts()[0]?.identity, 'trusted')
    const after = await a.m.safetyNumber(b.m.peerId)
    assert.equal(after.safetyNumber, changed.safetyNumber)
    assert.equal(after.safetyNumber, (await b2.m.safetyNumber(a.m.peerId)).safetyNumber)
  })

  it('a re-installed recipient asks for the mailbox messages it cannot decrypt, and gets them once the sender accepts its new key', { timeout: 90_000 }, async () => {
    const relay = await cluster.start({ command: 'relay', label: 'R' })
    const relayAddr = relay.ready.addrs[0] ?? ''
    const opts = { listen: ['/p2p-circuit'], relays: [relayAddr] }
    const a = await peer(opts)
    const b = await peer(opts)
    await a.m.addContact(b.m.whoami().invite)
    const hello = await a.m.sendText(b.m.peerId, 'hello')
    await eventually(() => messageEvents(b.events).some((e) => e.id === hello.id), 'first message')
    const bKey = await loadOrCreateIdentity(b.dir)
    await b.stop()
    const ids: string[] = []
    for (const text of ['while you were away 1', 'while you were away 2', 'while you were away 3']) ids.push((await a.m.sendText(b.m.peerId, text)).id)
    await eventually(() => ids.every((id) => statusEvents(a.events, 'sent').some((e) => e.id === id)), 'deposited', 30_000)

    // B re-installs (same libp2p key, new Signal identity) and drains its mailbox: nothing
    // decrypts, so it asks A for those messages again, over a new session.
    const b2 = await peer({ ...opts, privateKey: bKey })
    await eventually(() => identityEvents(a.events).some((e) => e.identity === 'changed'), 'A warned of B\'s new key', 30_000)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    assert.equal(messageEvents(b2.events).length, 0, 'held until A accepts')
    await a.m.acceptIdentity(b.m.peerId)
    await eventually(() => ids.every((id) => messageEvents(b2.events).some((e) => e.id === id)), 'all three at the new install', 30_000)
    assert.deepEqual(messageEvents(b2.events).map((e) => e.text), ['while you were away 1', 'while you were away 2', 'while you were away 3'])
    await eventually(() => ids.every((id) => statusEvents(a.events, 'delivered').some((e) => e.id === id)), 'delivered at A', 30_000)
  })

  it('a receiver that never writes back still acknowledges the session, so the sender stops sending prekey messages', { timeout: 60_000 }, async () => {
    const a = await peer()
    const b = await peer()
    await a.m.addContact(b.m.whoami().invite)
    // The kind of every sealed frame reaching B directly (wrapping B's private receive: the
    // frames are otherwise only visible on the wire, inside Noise).
    const kinds: string[] = []
    const inner = b.m as unknown as { receive: (from: PeerIdString, frames: Array<{ kind: string }>) => Promise<unknown> }
    const receive = inner.receive.bind(b.m)
    inner.receive = async (from, frames) => { kinds.push(...frames.map((f) => f.kind)); return await receive(from, frames) }

    const first = await a.m.sendText(b.m.peerId, 'first')
    await eventually(() => messageEvents(b.events).some((e) => e.id === first.id), 'first message')
    // B's answer is an encrypted receipt for the prekey message; it settles once A stored it.
    await eventually(() => b.m.pendingCount(a.m.peerId) === 0, 'B\'s session receipt taken by A')
    for (const text of ['second', 'third']) {
      const sent = await a.m.sendText(b.m.peerId, text)
      await eventually(() => messageEvents(b.events).some((e) => e.id === sent.id), text)
    }
    assert.deepEqual(kinds, ['prekey', 'whisper', 'whisper'])
    assert.deepEqual(messageEvents(b.events).map((e) => e.text), ['first', 'second', 'third'])
    assert.equal(messageEvents(a.events).length, 0, 'the receipt is never shown')
    await eventually(() => statusEvents(a.events, 'delivered').length === 3, 'all three delivered')
  })

  it('identity change seen first in an incoming message: shown, warned, replies held until accepted', { timeout: 90_000 }, async () => {
    const bPort = await freePort()
    const bListen = [`/ip4/127.0.0.1/tcp/${bPort}`]
    const a = await peer()
    const b = await peer({ listen: bListen })
    await a.m.addContact(b.m.whoami().invite)
    const first = await a.m.sendText(b.m.peerId, 'hello')
    await eventually(() => messageEvents(b.events).some((e) => e.id === first.id), 'first message')
    const bKey = await loadOrCreateIdentity(b.dir)
    await b.stop()
    const b2 = await peer({ listen: bListen, privateKey: bKey })
    await b2.m.addContact(a.m.whoami().invite)
    const fromNew = await b2.m.sendText(a.m.peerId, 'it is me, re-installed')
    await eventually(() => messageEvents(a.events).some((e) => e.id === fromNew.id), 'A shows the message from the new key', 30_000)
    await eventually(() => identityEvents(a.events).some((e) => e.identity === 'changed'), 'warning', 10_000)

    const answer = await a.m.sendText(b.m.peerId, 'who are you?')
    await new Promise((resolve) => setTimeout(resolve, 1500))
    assert.equal(messageEvents(b2.events).some((e) => e.id === answer.id), false, 'held')
    // Verifying with the right number accepts the key and marks it verified.
    const number = (await a.m.safetyNumber(b.m.peerId)).safetyNumber
    const view = await a.m.verifyContact(b.m.peerId, number)
    assert.equal(view.identity, 'verified')
    await eventually(() => messageEvents(b2.events).some((e) => e.id === answer.id), 'released after verify', 30_000)
    await assert.rejects(a.m.verifyContact(b.m.peerId, '1'.repeat(60)), { name: 'SafetyNumberMismatchError' })
  })
})
