import '../../core/polyfill.js'
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createNode, type ParleyLibp2p } from '../../core/net/node.js'
import { newMessageId, type PeerIdString } from '../../core/ids.js'
import { MailboxClient } from '../../core/protocols/mailbox/client.js'
import { MAILBOX_PROTOCOL } from '../../core/protocols/mailbox/constants.js'
import { createRelayNode, DEFAULT_RELAY_LIMITS, type RelayLibp2p, type RelayLimits } from '../../relay/relay-node.js'
import { DEFAULT_MAILBOX_LIMITS, MailboxService } from '../../relay/mailbox/service.js'
import { MailboxStore } from '../../relay/mailbox/store.js'

// RELIABILITY.md, load: a relay keeps its limits under a flood (new connections and streams
// beyond them are refused) and the peers already connected to it keep being served. A real
// relay (libp2p node, MailboxService, level store in a temp dir) and real libp2p peers in this
// process, on 127.0.0.1. How fast honest peers are served meanwhile is a benchmark question,
// not asserted here.

/** Small limits, so a flood reaches them quickly; the per-host rate limit is off (everyone is 127.0.0.1 here). */
const LIMITS: RelayLimits = { ...DEFAULT_RELAY_LIMITS, maxConnections: 16, maxIncomingPendingConnections: 4, inboundConnectionThreshold: 100_000 }

interface Peer { node: ParleyLibp2p, id: PeerIdString, mb: MailboxClient }

let dir: string
let relay: RelayLibp2p
let relayAddr: Multiaddr
let service: MailboxService
let store: MailboxStore
const peers: Peer[] = []

async function peer (): Promise<Peer> {
  const node = await createNode({ privateKey: await generateKeyPair('Ed25519'), listen: [], mdns: false, pubsub: false, inboundConnectionThreshold: 100_000 })
  await node.start()
  const p = { node, id: node.peerId.toString() as PeerIdString, mb: new MailboxClient(node) }
  peers.push(p)
  return p
}

/** A deposits for B and B fetches and acks it: the relay serves its connected peers. */
async function honestRound (a: Peer, b: Peer): Promise<void> {
  const id = newMessageId()
  const [r] = await a.mb.deposit(relay.peerId.toString() as PeerIdString, [{ recipient: b.id, id, envelope: new Uint8Array(randomBytes(200)) }])
  assert.equal(r?.ok, true, 'honest deposit accepted')
  const { items } = await b.mb.fetch(relay.peerId.toString() as PeerIdString, 10)
  assert.deepEqual(items.map((i) => i.id), [id], 'honest fetch gets the deposit')
  assert.equal(await b.mb.ack(relay.peerId.toString() as PeerIdString, [id]), 1)
}

/** A TCP socket that connects and never says a word; resolves when it is open. */
async function silentSocket (port: number): Promise<Socket> {
  return await new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => { resolve(s) })
    s.on('error', () => {})
    s.once('error', reject)
  })
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'parley-flood-'))
  store = new MailboxStore(join(dir, 'mailbox'))
  await store.open()
  relay = await createRelayNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], limits: LIMITS })
  service = new MailboxService(relay, store, DEFAULT_MAILBOX_LIMITS)
  await service.start()
  await relay.start()
  const addr = relay.getMultiaddrs()[0]
  assert.ok(addr !== undefined)
  relayAddr = addr
})

after(async () => {
  await Promise.all(peers.map(async (p) => { await p.node.stop() }))
  await service.stop()
  await relay.stop()
  await store.close()
  await rm(dir, { recursive: true, force: true })
})

describe('a relay under a flood', () => {
  it('refuses handshakes beyond its pending limit, connections beyond its maximum and mailbox streams beyond the per-connection limit, and keeps serving its connected peers', { timeout: 120_000 }, async () => {
    const a = await peer()
    const b = await peer()
    await a.node.dial(relayAddr)
    await b.node.dial(relayAddr)
    await honestRound(a, b)

    // 1. Sockets that connect and never handshake. Four may wait in the handshake; the rest
    // are closed at once.
    const port = Number(/\/tcp\/(\d+)/.exec(relayAddr.toString())?.[1])
    const sockets = await Promise.all(Array.from({ length: 60 }, async () => await silentSocket(port)))
    const closed = new Set<Socket>()
    for (const s of sockets) s.once('close', () => { closed.add(s) })
    const deadline = Date.now() + 5_000
    while (closed.size < sockets.length - LIMITS.maxIncomingPendingConnections && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    assert.ok(closed.size >= sockets.length - LIMITS.maxIncomingPendingConnections, `only ${closed.size} of ${sockets.length} silent sockets were refused`)
    await honestRound(a, b)
    for (const s of sockets) s.destroy()

    // 2. Many peers connect at once. The relay admits a connection while it has fewer than
    // maxConnections, so handshakes running side by side (at most the pending limit) can take it
    // over for a moment; it then closes the newest. Once settled it holds maxConnections, the
    // rest are refused, and the peers that were there first keep their connections.
    const flood = await Promise.all(Array.from({ length: 30 }, async () => await peer()))
    let most = 0
    const watch = setInterval(() => { most = Math.max(most, relay.getConnections().length) }, 5)
    await Promise.allSettled(flood.map(async (p) => await p.node.dial(relayAddr, { signal: AbortSignal.timeout(20_000) })))
    await new Promise((resolve) => setTimeout(resolve, 1000))
    clearInterval(watch)
    const admitted = flood.filter((p) => p.node.getConnections(relay.peerId).length > 0)
    assert.ok(most <= LIMITS.maxConnections + LIMITS.maxIncomingPendingConnections, `the relay held ${most} connections at once (limit ${LIMITS.maxConnections}, ${LIMITS.maxIncomingPendingConnections} handshakes at a time)`)
    assert.ok(relay.getConnections().length <= LIMITS.maxConnections, `${relay.getConnections().length} connections once settled`)
    assert.ok(admitted.length <= LIMITS.maxConnections - 2, `${admitted.length} of ${flood.length} flooding peers got in`)
    assert.equal(a.node.getConnections(relay.peerId).length, 1, 'A kept its connection')
    assert.equal(b.node.getConnections(relay.peerId).length, 1, 'B kept its connection')
    // Connected peers are still served (their connections were not pruned for the newcomers).
    await honestRound(a, b)

    // 3. One peer opens far more mailbox streams than a connection may have (8) and holds them.
    const attacker = admitted[0]
    assert.ok(attacker !== undefined, 'some flooding peer got in')
    const opened = await Promise.allSettled(Array.from({ length: 30 }, async () => await attacker.node.dialProtocol(relay.peerId, MAILBOX_PROTOCOL)))
    const held: Stream[] = opened.flatMap((o) => o.status === 'fulfilled' ? [o.value] : [])
    // A stream over the limit is reset by the relay as soon as its protocol is agreed: write to each and see which live.
    const outcomes = await Promise.all(held.map(async (s) => {
      try {
        s.send(new Uint8Array([0]))
        await new Promise((resolve) => setTimeout(resolve, 500))
        return s.status === 'open' && s.readStatus !== 'closed' ? 'open' : 'reset'
      } catch {
        return 'reset'
      }
    }))
    const live = outcomes.filter((o) => o === 'open').length
    assert.ok(live <= 8, `${live} mailbox streams stayed open on one connection (limit 8)`)
    assert.ok(opened.length - live >= 22, `only ${opened.length - live} of ${opened.length} excess streams were refused`)
    await honestRound(a, b)
    for (const s of held) s.abort(new Error('done'))
  })
})
