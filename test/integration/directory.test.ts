import '../../core/polyfill.js'
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import type { PeerIdString } from '../../core/ids.js'
import { createNode, type ParleyLibp2p } from '../../core/net/node.js'
import { DirectoryClient } from '../../core/protocols/directory/client.js'
import { DIRECTORY_PROTOCOL } from '../../core/protocols/directory/constants.js'
import { DirectoryRequest, DirectoryResponse } from '../../core/protocols/directory/pb/directory.js'
import { readOneFrame, writeOneFrame } from '../../core/protocols/request.js'
import { encodeInvite } from '../../core/identity/invite.js'
import { DirectoryService } from '../../relay/directory/service.js'
import { createRelayNode, DEFAULT_RELAY_LIMITS, type RelayLibp2p } from '../../relay/relay-node.js'
import { freePort } from '../helpers/node-process.js'
import { eventually, messageEvents, removeDir, startPeer } from '../helpers/messengers.js'

// Real libp2p nodes on loopback: a relay running the directory service, and peers that
// register simply by being connected to it (identify hands it their signed peer records).
describe('directory: where is a peer reachable now', () => {
  let relay: RelayLibp2p
  let relayAddr: string
  let directory: DirectoryService
  const nodes: ParleyLibp2p[] = []

  async function peer (): Promise<ParleyLibp2p> {
    const n = await createNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, inboundConnectionThreshold: 1000 })
    await n.start()
    nodes.push(n)
    return n
  }

  before(async () => {
    relay = await createRelayNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], limits: { ...DEFAULT_RELAY_LIMITS, inboundConnectionThreshold: 1000 } })
    directory = new DirectoryService(relay)
    await directory.start()
    await relay.start()
    relayAddr = relay.getMultiaddrs()[0]?.toString() ?? ''
  })

  after(async () => {
    await Promise.all(nodes.map(async (n) => { await n.stop() }))
    await relay.stop()
  })

  it('answers with the peer\'s own signed record while it is connected, and nothing once it left', async () => {
    const a = await peer()
    const b = await peer()
    await a.dial(multiaddr(relayAddr))
    await b.dial(multiaddr(relayAddr))
    const client = new DirectoryClient(a)
    const relayId = relay.peerId.toString() as PeerIdString
    const bId = b.peerId.toString() as PeerIdString
    let addrs: string[] | undefined
    await eventually(async () => {
      addrs = await client.lookup(relayId, bId)
      return addrs !== undefined
    }, 'B registered (identify delivered its record)', 10_000)
    const bListen = b.getMultiaddrs().map((x) => x.toString().replace(/\/p2p\/[^/]+$/, ''))
    assert.ok(addrs?.some((x) => bListen.includes(x)), `record carries B's address: ${JSON.stringify(addrs)}`)

    const strangerKey = await generateKeyPair('Ed25519')
    const stranger = (await createNode({ privateKey: strangerKey, listen: [], mdns: false })).peerId.toString() as PeerIdString
    assert.equal(await client.lookup(relayId, stranger), undefined, 'unknown peer: not found')

    await b.hangUp(relay.peerId)
    await eventually(async () => await client.lookup(relayId, bId) === undefined, 'B no longer advertised after it left', 10_000)
  })

  it('answers many lookups asked at once (more than the relay takes streams per connection)', async () => {
    const a = await peer()
    const others = await Promise.all(Array.from({ length: 24 }, async () => await peer()))
    await a.dial(multiaddr(relayAddr))
    await Promise.all(others.map(async (o) => await o.dial(multiaddr(relayAddr))))
    const client = new DirectoryClient(a)
    const relayId = relay.peerId.toString() as PeerIdString
    const last = others[others.length - 1]?.peerId.toString() as PeerIdString
    await eventually(async () => await client.lookup(relayId, last) !== undefined, 'the last one registered', 10_000)
    // 24 lookups at once over one connection: the relay takes 8 directory streams at a time
    // and resets the rest, so the client must queue its own (DIRECTORY_PARALLEL).
    const answers = await Promise.all(others.map(async (o) => await client.lookup(relayId, o.peerId.toString() as PeerIdString)))
    assert.equal(answers.filter((x) => x !== undefined && x.length > 0).length, others.length)
  })

  it('refuses a record that the peer asked about did not sign (a lying relay)', async () => {
    const liarKey = await generateKeyPair('Ed25519')
    const liar = await createNode({ privateKey: liarKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
    await liar.start()
    nodes.push(liar)
    const c = await peer()
    const victim = await peer()
    await c.dial(liar.getMultiaddrs()[0] ?? multiaddr(''))
    // The liar answers every lookup with a valid record signed by itself, pointing at itself.
    const ownRecord = (await RecordEnvelope.seal(new PeerRecord({ peerId: liar.peerId, multiaddrs: liar.getMultiaddrs() }), liarKey)).marshal()
    await liar.handle(DIRECTORY_PROTOCOL, (stream) => {
      void (async () => {
        DirectoryRequest.decode(await readOneFrame(stream, 1024))
        await writeOneFrame(stream, DirectoryResponse.encode({ found: true, record: new Uint8Array(ownRecord) }))
      })().catch(() => {})
    })
    await assert.rejects(new DirectoryClient(c).lookup(liar.peerId.toString() as PeerIdString, victim.peerId.toString() as PeerIdString), { name: 'ForgedRecordError' })
  })

  it('resets streams carrying bad frames and keeps answering', async () => {
    const raw = await peer()
    await raw.dial(multiaddr(relayAddr))
    const attack = async (bytes: Uint8Array, close: boolean, mayDecode = false): Promise<void> => {
      const s = await raw.dialProtocol(relay.peerId, DIRECTORY_PROTOCOL)
      s.send(bytes)
      if (close) await s.close().catch(() => {})
      let reply = 0
      try {
        for await (const chunk of s) reply += chunk.byteLength
      } catch {
        // reset: expected
      }
      if (!mayDecode) assert.equal(reply, 0, 'no answer to a bad frame')
    }
    await attack(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x10, 1, 2, 3]), false) // claims 4 GiB
    await attack(Uint8Array.from([0x10, 1, 2]), true) // truncated
    await attack(Uint8Array.from([0x03, 0xff, 0xff, 0xff]), true) // does not decode
    // Random bytes sometimes form a valid (if meaningless) request, which gets a normal answer.
    for (let i = 0; i < 10; i++) await attack(new Uint8Array(64).map(() => Math.floor(Math.random() * 256)), true, true)
    for (const name of ['FrameTooLargeError', 'TruncatedFrameError', 'MalformedFrameError']) {
      assert.ok((directory.stats.refused.get(name) ?? 0) >= 1, `${name} counted: ${JSON.stringify([...directory.stats.refused])}`)
    }
    // Still answering honest lookups.
    const c = await peer()
    await c.dial(multiaddr(relayAddr))
    await eventually(async () => await new DirectoryClient(c).lookup(relay.peerId.toString() as PeerIdString, raw.peerId.toString() as PeerIdString) !== undefined, 'honest lookup after attacks', 10_000)
  })

  it('lets a sender find a contact that moved to a new address', { timeout: 60_000 }, async () => {
    const b = await startPeer({ relays: [relayAddr] })
    const a = await startPeer({ relays: [relayAddr] })
    try {
      // A knows B only at B's old address; B then moves to another port.
      await a.m.addContact(encodeInvite({ peerId: b.m.peerId, addrs: b.m.whoami().addrs.map((x) => x.replace(/\/p2p\/[^/]+$/, '')) }))
      await b.m.stop()
      const newPort = await freePort()
      const moved = await startPeer({ dir: b.dir, relays: [relayAddr], listen: [`/ip4/127.0.0.1/tcp/${newPort}`] })
      try {
        const sent = await a.m.sendText(moved.m.peerId, 'found you again')
        await eventually(() => messageEvents(moved.events).some((e) => e.id === sent.id), 'delivery after a directory lookup', 30_000)
        assert.ok(a.m.listContacts()[0]?.addrs.some((x) => x.endsWith(`/tcp/${newPort}`)), 'contact updated with the new address')
      } finally {
        await moved.stop()
      }
    } finally {
      await a.stop()
      await removeDir(a.dir)
      await removeDir(b.dir)
    }
  })
})
